"""SEV-SNP / SEV / SEV-ES launch digests: known answers from sev-snp-measure 0.0.13, the worked
trace of snp-measure.md 1.9, the places where the peer is wrong, properties and bad input."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cvmlaunch.errors import ConfigError, ImageError
from cvmlaunch.image.ovmf import OvmfImage, parse_ovmf
from cvmlaunch.layout import PAGE_SIZE, PageType, Plan, Region
from cvmlaunch.measure import snp_chain
from cvmlaunch.measure.sev import sev_digest
from cvmlaunch.measure.snp import snp_digest, snp_ovmf_hash
from cvmlaunch.plan.sev import SevSettings, sev_updates
from cvmlaunch.plan.sev_hashes import HASH_TABLE_SIZE, KernelHashes, cmdline_sha256
from cvmlaunch.plan.snp import MAX_VCPUS, SnpSettings, snp_plan, svsm_plan
from cvmlaunch.plan.vmsa import BSP_RESET_EIP, FpuInit, VmmType, svsm_vmsa_page, vmsa_page
from cvmlaunch.vcpu_signature import VCPU_TYPES, cpu_signature, vcpu_type_signature
from tests.cli_runner import CliResult, run_cli
from tests.errors_util import raises_cvm
from tests.snp_inputs import materialize, synthetic_images
from tests.vectors import SnpCase, snp_case, snp_cases, snp_inputs_sha256, snp_trace

EPYC_V4 = 0x800F12


@pytest.fixture(scope="session")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return materialize(tmp_path_factory.mktemp("snp-inputs"))


def _args(case: SnpCase, inputs: dict[str, Path]) -> list[str]:
    out: list[str] = []
    for a in case.args:
        if a.startswith("@"):
            if a[1:] not in inputs:
                pytest.skip(f"input {a[1:]} not available")
            out.append(str(inputs[a[1:]]))
        else:
            out.append(a)
    return out


def run(args: list[str]) -> CliResult:
    return run_cli(args)


def _image(inputs: dict[str, Path], name: str) -> OvmfImage:
    if name not in inputs:
        pytest.skip(f"{name} not available")
    return parse_ovmf(inputs[name].read_bytes(), name=name)


# ------------------------------------------------------------------ known answers


def test_inputs_are_the_ones_the_vectors_were_made_with(inputs: dict[str, Path]) -> None:
    assert len(snp_cases()) >= 40
    for name, digest in snp_inputs_sha256().items():
        if name in inputs:
            assert hashlib.sha256(inputs[name].read_bytes()).hexdigest() == digest, name


AGREE = [c.id for c in snp_cases() if c.group == "agree" and c.digest is not None]
FAIL = [c.id for c in snp_cases() if c.group == "agree" and c.peer_error is not None]


@pytest.mark.usefixtures("snp_fold_path")  # native and hashlib page hashes, 1 and 2 threads
@pytest.mark.parametrize("case_id", AGREE)
def test_agrees_with_peer(case_id: str, inputs: dict[str, Path]) -> None:
    case = snp_case(case_id)
    result = run(["measure", "snp", *_args(case, inputs)])
    assert result.exit_code == 0, result.output
    assert result.output == case.expected + "\n"


@pytest.mark.parametrize("case_id", FAIL)
def test_fails_where_peer_fails(case_id: str, inputs: dict[str, Path]) -> None:
    case = snp_case(case_id)
    result = run(["measure", "snp", *_args(case, inputs)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("cvmlaunch: error: ")
    assert "kernel" in lines[0]


def test_equal_signatures_give_equal_digests() -> None:
    same = ("amdsev-4-milan", "amdsev-4-milan-v2", "amdsev-4-sig")
    assert len({snp_case(c).expected for c in same}) == 1
    assert snp_case("amdsev-4-ibpb").expected != snp_case("amdsev-4-milan").expected
    # the 2026 AmdSev and generic builds differ in their firmware pages only
    assert snp_case("ovmfhash-amdsev").expected != snp_case("ovmfhash-generic").expected


def test_ovmf_hash_seed_reuse(inputs: dict[str, Path]) -> None:
    """--snp-ovmf-hash replaces the firmware pages; the metadata still comes from --ovmf."""
    seed = snp_case("ovmfhash-amdsev").expected
    args = ["--vcpus", "4", "--vcpu-type", "EPYC-Milan"]
    # the generic build has the same metadata, so a seed of the AmdSev build + the generic
    # file's layout gives the AmdSev digest
    for fw in ("OVMF.amdsev.fd", "OVMF.generic.fd"):
        result = run(["measure", "snp", "--ovmf", str(inputs[fw]), *args, "--snp-ovmf-hash", seed])
        assert result.exit_code == 0, result.output
        assert result.output.strip() == snp_case("amdsev-4-milan").expected
    seed_c = snp_case("ovmfhash-codeonly").expected
    result = run(
        ["measure", "snp", "--ovmf", str(inputs["OVMF.code-only.fd"]), *args, "--kernel",
         str(inputs["kernel.bin"]), "--initrd", str(inputs["initrd.bin"]), "--append",
         "console=ttyS0 root=/dev/vda1 ro", "--snp-ovmf-hash", seed_c]
    )  # fmt: skip
    assert result.output.strip() == snp_case("codeonly-4-milan-kia").expected


# ------------------------------------------------------------------ worked trace (1.9)


def test_worked_trace(inputs: dict[str, Path]) -> None:
    image = _image(inputs, "OVMF.amdsev.fd")
    settings_ = SnpSettings(vcpus=2, vcpu_sig=vcpu_type_signature("EPYC-v4"))
    plan = snp_plan(image, settings_)
    page0 = bytes(image.data[:PAGE_SIZE])
    contents0 = hashlib.sha384(page0).digest()
    page0_t, info_tail = snp_trace("page0-contents"), snp_trace("page0-info-tail")
    assert contents0.hex().startswith(page0_t.head)
    assert contents0.hex().endswith(page0_t.tail)
    info = snp_chain.page_info(bytes(48), contents0, PageType.NORMAL, image.gpa)
    assert info[96:].hex() == info_tail.head
    after_fw = snp_chain.fold_region(bytes(48), plan.regions[0])
    assert after_fw.hex().startswith(snp_trace("after-firmware").head)
    assert after_fw.hex().endswith(snp_trace("after-firmware").tail)
    digest = after_fw
    for region in plan.memory_regions[1:]:
        digest = snp_chain.fold_region(digest, region)
    assert len(plan.memory_regions) == 8
    assert digest.hex().startswith(snp_trace("after-metadata").head)
    assert digest.hex().endswith(snp_trace("after-metadata").tail)
    bsp, ap = plan.vmsa_regions
    bsp_t, ap_t = snp_trace("bsp-vmsa"), snp_trace("ap-vmsa")
    assert hashlib.sha384(bsp.data).hexdigest().startswith(bsp_t.head)
    assert hashlib.sha384(bsp.data).hexdigest().endswith(bsp_t.tail)
    assert hashlib.sha384(ap.data).hexdigest().startswith(ap_t.head)
    assert hashlib.sha384(ap.data).hexdigest().endswith(ap_t.tail)
    final = snp_chain.fold_region(digest, bsp)
    assert final.hex() == snp_case("amdsev-1-epyc-v4").expected
    assert snp_chain.fold_region(final, ap).hex() == snp_case("amdsev-2-epyc").expected


def test_plan_matches_the_measured_range_table(inputs: dict[str, Path]) -> None:
    """snp-measure.md 1.3: the AmdSev build's ranges, page types and order."""
    image = _image(inputs, "OVMF.amdsev.fd")
    plan = snp_plan(image, SnpSettings(vcpus=3, vcpu_sig=EPYC_V4))
    got = [(r.gpa, r.npages, r.page_type) for r in plan.regions]
    t = PageType
    assert got == [
        (0xFFC00000, 1024, t.NORMAL),
        (0x800000, 9, t.ZERO),
        (0x80A000, 3, t.ZERO),
        (0x80D000, 1, t.SECRETS),
        (0x80E000, 1, t.CPUID),
        (0x80F000, 1, t.ZERO),
        (0x811000, 31, t.ZERO),
        (0x810000, 1, t.ZERO),
        (0xFFFFFFFFF000, 1, t.VMSA),
        (0xFFFFFFFFF000, 1, t.VMSA),
        (0xFFFFFFFFF000, 1, t.VMSA),
    ]
    hashes = KernelHashes(kernel=bytes(32))
    with_k = snp_plan(image, SnpSettings(vcpus=1, vcpu_sig=EPYC_V4, kernel_hashes=hashes))
    page = with_k.regions[7]
    assert page.page_type is PageType.NORMAL
    assert page.measured
    assert page.contents()[0xC00 : 0xC00 + HASH_TABLE_SIZE] == hashes.table()
    assert page.contents()[:0xC00] == bytes(0xC00)
    gce = snp_plan(image, SnpSettings(vcpus=1, vcpu_sig=0, vmm=VmmType.GCE))
    assert [r.page_type for r in gce.regions[1:4]] == [t.UNMEASURED, t.UNMEASURED, t.SECRETS]
    ec2 = snp_plan(image, SnpSettings(vcpus=1, vcpu_sig=0, vmm=VmmType.EC2))
    assert [r.page_type for r in ec2.memory_regions][-1] is t.CPUID  # moved last


def test_hashes_table_layout() -> None:
    """snp-measure.md 1.6: 176 bytes, header GUID, length 168, entries cmdline/initrd/kernel."""
    k = hashlib.sha256(b"k").digest()
    table = KernelHashes(kernel=k).table()
    assert len(table) == 176
    assert table[:16].hex() == "06d63894224fc94cb479a793d411fd21"
    assert table[16:18] == (168).to_bytes(2, "little")
    assert table[18:34].hex() == "d82dd09720bd944caa78e7714d36ab2a"
    assert table[34:36] == (50).to_bytes(2, "little")
    assert table[36:68].hex().startswith("6e340b9c")  # SHA-256 of b"\0"
    assert table[86:118] == hashlib.sha256(b"").digest()
    assert table[136:168] == k
    assert table[168:] == bytes(8)
    assert cmdline_sha256(b"quiet") == hashlib.sha256(b"quiet\0").digest()


def test_cpu_signatures() -> None:
    assert vcpu_type_signature("EPYC-v4") == 0x800F12
    assert vcpu_type_signature("EPYC-Rome") == 0x830F10
    assert vcpu_type_signature("EPYC-Milan-v3") == 0xA00F11
    assert vcpu_type_signature("EPYC-Genoa-v2") == 0xA10F10
    assert vcpu_type_signature("EPYC-Turin-v1") == 0xB00F00
    assert cpu_signature(0, 0, 0) == 0
    assert cpu_signature(0x10E, 0xFF, 0xF) == 0xFFF0FFF
    assert len(VCPU_TYPES) == 22
    with raises_cvm(ConfigError, setting="vcpu_type", match="unknown vCPU type 'EPYC-Zen9'"):
        vcpu_type_signature("EPYC-Zen9")
    with raises_cvm(ConfigError, setting="vcpu_family", match="family 400 is out of range"):
        cpu_signature(400, 0, 0)


# ------------------------------------------------------------------ where the peer is wrong


def test_sev_es_legacy_fpu_follows_qemu_default(inputs: dict[str, Path]) -> None:
    """Peer wrong (snp-measure.md 2.2): it writes MXCSR/FCW 0x1F80/0x37F into SEV-ES VMSAs, but
    QEMU 9.1+ creates SEV-ES VMs through legacy KVM_SEV_ES_INIT, where KVM leaves them 0.
    cvmlaunch defaults to legacy and reproduces the peer with --fpu-init init2."""
    case = snp_case("div-seves-legacy-fpu")
    ours = run(["measure", "snp", *_args(case, inputs)])
    assert ours.exit_code == 0
    assert ours.output.strip() != case.expected
    init2 = run(["measure", "snp", *_args(case, inputs), "--fpu-init", "init2"])
    assert init2.output.strip() == case.expected
    # the only difference is the FPU fields: rebuild the peer's VMSAs, zero those two fields
    image = _image(inputs, "OVMF.amdsev.fd")
    plan = sev_updates(image, SevSettings(es=True, vcpus=2, vcpu_sig=EPYC_V4, fpu=FpuInit.INIT2))
    h = hashlib.sha256()
    for update in plan:
        data = bytearray(update.data)
        if len(data) == PAGE_SIZE and update.gpa == 0xFFFFFFFFF000:
            assert data[0x408:0x40C] == (0x1F80).to_bytes(4, "little")
            assert data[0x410:0x412] == (0x37F).to_bytes(2, "little")
            data[0x408:0x40C] = bytes(4)
            data[0x410:0x412] = bytes(2)
        h.update(data)
    assert ours.output.strip() == h.hexdigest()


def test_svsm_fcw_follows_kvm(inputs: dict[str, Path]) -> None:
    """Peer wrong (snp-measure.md 2.2): in snp:svsm it sets MXCSR 0x1F80 but misspells the FCW
    field, leaving FCW 0 - a state no KVM produces (SNP is always KVM_SEV_INIT2: 0x1F80/0x37F).
    Proof: the peer's value is our plan with exactly that FCW zeroed."""
    case = snp_case("div-svsm-fcw")
    ours = run(["measure", "snp", *_args(case, inputs)])
    assert ours.exit_code == 0, ours.output
    assert ours.output.strip() != case.expected
    ovmf = _image(inputs, "OVMF.amdsev.fd")
    svsm = parse_ovmf(synthetic_images()["synthetic-svsm.bin"], name="svsm")
    settings_ = SnpSettings(vcpus=2, vcpu_sig=EPYC_V4)
    plan = svsm_plan(ovmf, svsm, settings_, vars_size=0x84000)
    assert snp_chain.fold_plan(plan).hex() == ours.output.strip()
    svsm_gpa = 0xFFC00000 - 0x84000 - svsm.size
    assert plan.regions[1].gpa == svsm_gpa
    vmsa = bytearray(plan.vmsa_regions[0].data)
    assert int.from_bytes(vmsa[0x178:0x180], "little") == svsm_gpa + 0x1000  # RIP
    assert vmsa[0x410:0x412] == (0x37F).to_bytes(2, "little")
    vmsa[0x410:0x412] = bytes(2)  # the peer's defect
    peerish = [dataclasses.replace(r, data=bytes(vmsa)) for r in plan.vmsa_regions]
    peer_plan = Plan.of([*plan.memory_regions, *peerish])
    assert snp_chain.fold_plan(peer_plan).hex() == case.expected
    # legacy (pre-6.10 SNP hosts, the Jan 2024 hardware value's era): both fields 0
    legacy = svsm_vmsa_page(eip=svsm_gpa + 0x1000, vcpu_sig=EPYC_V4, fpu=FpuInit.LEGACY)
    assert legacy[0x408:0x40C] == bytes(4)
    assert legacy[0x410:0x412] == bytes(2)


def test_multi_page_secrets_and_cpuid_measure_every_page(inputs: dict[str, Path]) -> None:
    """Peer wrong (snp-measure.md 2.2, 4.11): it measures one SECRETS and one CPUID page
    whatever the section size; QEMU hands KVM the whole section and KVM measures every page.
    Proof: the peer's value is our plan with those two sections cut to one page."""
    case = snp_case("div-2page-secrets-cpuid")
    ours = run(["measure", "snp", *_args(case, inputs)])
    assert ours.exit_code == 0, ours.output
    assert ours.output.strip() != case.expected
    image = parse_ovmf(synthetic_images()["synthetic-2page.fd"], name="2page")
    plan = snp_plan(image, SnpSettings(vcpus=1, vcpu_sig=EPYC_V4))
    assert [r.npages for r in plan.regions[1:4]] == [2, 2, 2]
    cut = [
        dataclasses.replace(r, size=PAGE_SIZE)
        if r.page_type in (PageType.SECRETS, PageType.CPUID)
        else r
        for r in plan.regions
    ]
    assert snp_chain.fold_plan(Plan.of(cut)).hex() == case.expected


def test_firmware_without_sev_metadata_is_refused(inputs: dict[str, Path]) -> None:
    """Peer wrong: it measures an image without SEV metadata as if it had no sections; QEMU
    refuses to launch such a firmware as SNP. The peer's value is just firmware + VMSAs."""
    case = snp_case("div-no-asev")
    result = run(["measure", "snp", *_args(case, inputs)])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"cvmlaunch: error: {inputs['synthetic-no-asev.fd']}: no SEV metadata (GUID "
        "dc886566-984a-4798-a75e-5585a7bf67cc): not an SEV-SNP capable OVMF build"
    ]
    image = parse_ovmf(synthetic_images()["synthetic-no-asev.fd"], name="x")
    vmsa = vmsa_page(eip=BSP_RESET_EIP, vcpu_sig=EPYC_V4, sev_features=1)
    digest = snp_chain.fold_region(snp_ovmf_hash(image), _vmsa_region(vmsa))
    assert digest.hex() == case.expected


def _vmsa_region(page: bytes) -> Region:
    from cvmlaunch.layout import VMSA_GPA, Provenance, SourceKind

    return Region(VMSA_GPA, PAGE_SIZE, PageType.VMSA, True, Provenance(SourceKind.VMSA), page)


def test_vcpu_sig_zero_is_legal(inputs: dict[str, Path]) -> None:
    """Peer's CLI rejects --vcpu-sig 0 (falsy test); 0 is a real value. Its library agrees."""
    for args in (
        ["--vcpu-sig", "0"],
        ["--vcpu-family", "0", "--vcpu-model", "0", "--vcpu-stepping", "0"],
    ):
        result = run(["measure", "snp", "--ovmf", str(inputs["OVMF.amdsev.fd"]), "--vcpus", "4",
                      *args])  # fmt: skip
        assert result.output.strip() == snp_case("amdsev-4-sig0").expected


# ------------------------------------------------------------------ properties


def _small_firmware() -> bytes:
    return synthetic_images()["synthetic-2page.fd"]


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_changing_any_measured_byte_changes_the_digest(data: st.DataObject) -> None:
    fw = _small_firmware()
    hashes = KernelHashes(kernel=bytes(32), initrd=bytes(range(32)), cmdline=cmdline_sha256(b"x"))
    base_settings = SnpSettings(vcpus=2, vcpu_sig=EPYC_V4, kernel_hashes=hashes)
    base = snp_digest(parse_ovmf(fw, name="fw"), base_settings)
    which = data.draw(st.sampled_from(["firmware", "kernel", "initrd", "cmdline", "sig", "gf"]))
    settings_ = base_settings
    image = fw
    if which == "firmware":
        i = data.draw(st.integers(0, len(fw) - 1))
        flipped = bytearray(fw)
        flipped[i] ^= 1 << data.draw(st.integers(0, 7))
        image = bytes(flipped)
        try:
            parsed = parse_ovmf(image, name="fw")
            digest = snp_digest(parsed, settings_)
        except (ImageError, ConfigError):
            return  # the flip broke the metadata: refused, not mismeasured
        assert digest != base
        return
    if which in ("kernel", "initrd", "cmdline"):
        old = getattr(hashes, which)
        i = data.draw(st.integers(0, 31))
        new = bytearray(old)
        new[i] ^= 1 << data.draw(st.integers(0, 7))
        settings_ = dataclasses.replace(
            settings_, kernel_hashes=dataclasses.replace(hashes, **{which: bytes(new)})
        )
    elif which == "sig":
        settings_ = dataclasses.replace(
            settings_, vcpu_sig=EPYC_V4 ^ (1 << data.draw(st.integers(0, 31)))
        )
    else:
        settings_ = dataclasses.replace(
            settings_, guest_features=1 | (1 << data.draw(st.integers(1, 63)))
        )
    assert snp_digest(parse_ovmf(image, name="fw"), settings_) != base


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 6), st.sampled_from(list(VmmType)), st.booleans())
def test_page_fold_equals_range_fold_and_log_replays(
    vcpus: int, vmm: VmmType, with_kernel: bool
) -> None:
    from cvmlaunch.measure.log import dumps_log, parse_log, verify_log
    from cvmlaunch.measure.snp import SevMode, snp_log

    image = parse_ovmf(_small_firmware(), name="fw")
    hashes = KernelHashes(kernel=bytes(32)) if with_kernel else None
    s = SnpSettings(vcpus=vcpus, vcpu_sig=EPYC_V4, vmm=vmm, kernel_hashes=hashes)
    plan = snp_plan(image, s)
    digest = bytes(48)
    for region, gpa, page in plan.pages():
        contents = hashlib.sha384(page).digest() if region.measured else bytes(48)
        digest = snp_chain.extend(digest, contents, region.page_type, gpa)
    assert digest == snp_digest(image, s)
    log = snp_log(plan, s, mode=SevMode.SNP, inputs=(), tool_version="t")
    assert verify_log(parse_log(dumps_log(log))) == digest


# ------------------------------------------------------------------ settings and bad input


def test_settings_validation() -> None:
    with raises_cvm(
        ConfigError, setting="vcpus", match=r"vCPU count 0 is out of range \(1..4096\)"
    ):
        SnpSettings(vcpus=0, vcpu_sig=0)
    with raises_cvm(ConfigError, setting="vcpus", match="out of range"):
        SnpSettings(vcpus=MAX_VCPUS + 1, vcpu_sig=0)
    SnpSettings(vcpus=MAX_VCPUS, vcpu_sig=0)
    with raises_cvm(ConfigError, setting="guest_features", match="lack SNPActive"):
        SnpSettings(vcpus=1, vcpu_sig=0, guest_features=0x20)
    with raises_cvm(ConfigError, setting="ovmf_hash", match="48 bytes"):
        SnpSettings(vcpus=1, vcpu_sig=0, ovmf_hash=bytes(32))
    with raises_cvm(ConfigError, setting="vcpu_sig", match="32-bit"):
        SnpSettings(vcpus=1, vcpu_sig=1 << 32)
    with raises_cvm(ConfigError, setting="guest_features", match="guest_features 0"):
        SevSettings(es=True, guest_features=0x20, fpu=FpuInit.LEGACY)


def test_aps_need_a_reset_block() -> None:
    from tests.ovmf_builder import build_ovmf

    fw = build_ovmf(0x10000, sev=[(0x800000, 0x1000, 2)], reset_eip=None)
    image = parse_ovmf(fw, name="noreset.fd")
    snp_digest(image, SnpSettings(vcpus=1, vcpu_sig=0))
    with pytest.raises(ImageError, match=r"noreset.fd: no SEV-ES reset block .* 1 AP"):
        snp_digest(image, SnpSettings(vcpus=2, vcpu_sig=0))
    with pytest.raises(ImageError, match="no SEV-ES reset block"):
        sev_digest(image, SevSettings(es=True, vcpus=3))


def _one_error_line(result: Any, text: str, code: int = 2) -> None:
    assert result.exit_code == code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("cvmlaunch: error: ")
    assert text in lines[0], lines[0]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--vcpus", "2", "--vcpu-type", "EPYC-Zen9"], "unknown vCPU type 'EPYC-Zen9'"),
        (["--vcpus", "0", "--vcpu-type", "EPYC"], "vCPU count 0 is out of range (1..4096)"),
        (["--vcpus", "4097", "--vcpu-type", "EPYC"], "vCPU count 4097 is out of range"),
        (["--vcpus", "1"], "needs --vcpu-type, --vcpu-sig or"),
        (["--vcpu-type", "EPYC"], "--mode snp needs --vcpus"),
        (["--vcpus", "1", "--vcpu-type", "EPYC", "--vcpu-sig", "1"], "give only one of"),
        (["--vcpus", "1", "--vcpu-family", "25"], "go together"),
        (["--vcpus", "1", "--vcpu-sig", "0x1ffffffff"], "not a 32-bit value"),
        (["--vcpus", "1", "--vcpu-sig", "0", "--guest-features", "0"], "lack SNPActive"),
        (["--vcpus", "1", "--vcpu-sig", "0", "--initrd", "x"], "--initrd and --append need"),
        (
            ["--vcpus", "1", "--vcpu-sig", "0", "--snp-ovmf-hash", "00"],
            "--snp-ovmf-hash: 1 bytes given, exactly 48 needed",
        ),
        (["--vcpus", "1", "--vcpu-sig", "0", "--snp-ovmf-hash", "zz"], "not hexadecimal"),
        (
            ["--vcpus", "1", "--vcpu-sig", "0", "--expect", "abcd"],
            "--expect: 2 bytes given, exactly 48 needed",
        ),
        (["--mode", "sev", "--snp-ovmf-hash", "00" * 48], "works only with --mode snp"),
        (["--mode", "snp:svsm", "--vcpus", "1", "--vcpu-sig", "0"], "needs --svsm"),
        (["--vcpus", "1", "--vcpu-sig", "0", "--vars-size", "0"], "belong to --mode snp:svsm"),
        (
            ["--vcpus", "1", "--vcpu-sig", "0", "--kernel", "/nonexistent/vmlinuz"],
            "/nonexistent/vmlinuz: cannot read: No such file or directory",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2(
    extra: list[str], message: str, inputs: dict[str, Path]
) -> None:
    _one_error_line(
        run(["measure", "snp", "--ovmf", str(inputs["OVMF.amdsev.fd"]), *extra]), message
    )


def test_unreadable_firmware(tmp_path: Path) -> None:
    _one_error_line(
        run(
            ["measure", "snp", "--ovmf", "/nonexistent/OVMF.fd", "--vcpus", "1", "--vcpu-sig", "0"]
        ),
        "/nonexistent/OVMF.fd: cannot open: No such file or directory",
    )
    unreadable = tmp_path / "secret.fd"
    unreadable.write_bytes(b"")
    unreadable.chmod(0)
    result = run(["measure", "snp", "--ovmf", str(unreadable), "--vcpus", "1", "--vcpu-sig", "0"])
    assert result.exit_code == 2  # root reads it anyway: then it is too small
    _one_error_line(result, str(unreadable))


# ------------------------------------------------------------------ CLI output, --expect, --log


def test_output_formats_and_expect(inputs: dict[str, Path]) -> None:
    base = ["measure", "snp", "--ovmf", str(inputs["OVMF.amdsev.fd"]), "--vcpus", "1",
            "--vcpu-type", "EPYC-v4"]  # fmt: skip
    want = snp_case("amdsev-1-epyc-v4").expected
    import base64

    b64 = run([*base, "--output-format", "base64"])
    assert base64.b64decode(b64.output.strip()).hex() == want
    js = json.loads(run([*base, "--output-format", "json"]).output)
    assert js["digest"] == want
    assert js["settings"]["vcpu_sig"] == EPYC_V4
    assert run([*base, "--expect", want.upper()]).exit_code == 0
    bad = run([*base, "--expect", "00" * 48])
    assert bad.exit_code == 1
    assert bad.output.splitlines() == [
        want,
        f"cvmlaunch: error: launch digest mismatch: expected {'00' * 48}, got {want}",
    ]


def test_log_verify_show_diff(inputs: dict[str, Path], tmp_path: Path) -> None:
    fw = str(inputs["OVMF.amdsev.fd"])
    a, b, c = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    common = ["measure", "snp", "--ovmf", fw, "--vcpus", "4", "--vcpu-type", "EPYC-Milan"]
    kia = ["--kernel", str(inputs["kernel.bin"]), "--initrd", str(inputs["initrd.bin"]),
           "--append", "console=ttyS0 root=/dev/vda1 ro"]  # fmt: skip
    r = run([*common, *kia, "--log", str(a)])
    assert r.output.strip() == snp_case("amdsev-4-milan-kia").expected
    v = run(["log", "verify", str(a), "--ovmf", fw, "--require-inputs"])
    assert v.exit_code == 0, v.output
    assert v.output.strip().endswith(snp_case("amdsev-4-milan-kia").expected)
    text = a.read_text()
    head = json.loads(text.splitlines()[0])
    assert (
        head["settings"]["initrd_sha256"]
        == hashlib.sha256(inputs["initrd.bin"].read_bytes()).hexdigest()
    )
    assert [i["role"] for i in head["inputs"]] == ["firmware", "kernel", "initrd", "cmdline"]
    # the same launch from another directory gives the same bytes but for names
    run([*common, *kia, "--log", str(b)])
    assert b.read_text() == text
    # one different AP count: diff names the first missing record
    run([*common[:-3], "3", "--vcpu-type", "EPYC-Milan", *kia, "--log", str(c)])
    d = run(["log", "diff", str(a), str(c)])
    assert d.exit_code == 1
    assert d.output.splitlines()[:2] == [
        "header: setting vcpus differs: 4 vs 3",
        "first diverging range: record 11: presence differs: present vs (absent)",
    ]
    assert d.output.splitlines()[2].startswith("verdict: the final digests differ: ")
    assert run(["log", "diff", str(a), str(b)]).exit_code == 0
    # tamper with one running digest: verify names that record
    lines = text.splitlines()
    rec = json.loads(lines[8])
    rec["digest_after"] = "00" * 48
    lines[8] = json.dumps(rec, sort_keys=True, separators=(",", ":"))
    c.write_text("\n".join(lines) + "\n")
    bad = run(["log", "verify", str(c)])
    assert bad.exit_code == 1
    assert "record 7 (snp.launch_update NORMAL [0x810000-0x811000) sev-kernel-hashes" in bad.output
    # a different kernel-hashes page: diff names the range and the contents hash
    run([*common, *kia[:-1], "quiet", "--log", str(b)])
    d = run(["log", "diff", str(a), str(b)])
    assert "header: setting cmdline_sha256 differs" in d.output
    show = run(["log", "show", str(a)])
    assert show.exit_code == 0
    assert "0x810000" in show.output
    assert "SNP_KERNEL_HASHES, table at +0xc00" in show.output
    assert show.output.strip().endswith(snp_case("amdsev-4-milan-kia").expected)
    trunc = tmp_path / "t.jsonl"
    trunc.write_text("\n".join(text.splitlines()[:-1]) + "\n")
    _one_error_line(run(["log", "verify", str(trunc)]), "missing footer")


def test_sev_log_verify_needs_and_uses_the_firmware(
    inputs: dict[str, Path], tmp_path: Path
) -> None:
    fw = str(inputs["OVMF.amdsev.fd"])
    log = tmp_path / "es.jsonl"
    case = snp_case("seves-amdsev-4-milan-kia")
    r = run(["measure", "snp", *_args(case, inputs), "--log", str(log)])
    assert r.output.strip() == case.expected
    # without the firmware: nothing differs, but the replay is listed as unchecked ...
    alone = run(["log", "verify", str(log)])
    assert alone.exit_code == 0, alone.output
    assert "unchecked: every record's content_sha384 and running digest" in alone.output
    assert alone.output.splitlines()[-1].endswith("digest not replayed (2 part(s) unchecked)")
    # ... which --require-inputs refuses
    strict = run(["log", "verify", str(log), "--require-inputs"])
    assert strict.exit_code == 1
    assert "could not be checked without inputs" in strict.stderr
    ok = run(["log", "verify", str(log), "--ovmf", fw, "--require-inputs"])
    assert ok.exit_code == 0, ok.output
    assert ok.output.strip().endswith(f"digest {case.expected}")
    wrong = run(["log", "verify", str(log), "--ovmf", str(inputs["OVMF.generic.fd"])])
    assert wrong.exit_code == 1
    assert "input firmware: sha256: " in wrong.output


def test_library_entry_points_without_cli(inputs: dict[str, Path]) -> None:
    from cvmlaunch import measure

    image = _image(inputs, "OVMF.code-only.fd")
    assert image.gpa == 0xFFC84000
    kh = KernelHashes(
        kernel=hashlib.sha256(inputs["kernel.bin"].read_bytes()).digest(),
        initrd=hashlib.sha256(inputs["initrd.bin"].read_bytes()).digest(),
        cmdline=measure.cmdline_sha256(b"console=ttyS0 root=/dev/vda1 ro"),
    )
    s = measure.SnpSettings(vcpus=4, vcpu_sig=measure.vcpu_type_signature("EPYC-Milan"),
                            kernel_hashes=kh)  # fmt: skip
    assert measure.snp_digest(image, s).hex() == snp_case("codeonly-4-milan-kia").expected
    assert measure.snp_ovmf_hash(image).hex() == snp_case("ovmfhash-codeonly").expected
    assert (
        measure.sev_digest(image, measure.SevSettings(es=False, kernel_hashes=kh)).hex()
        != snp_case("sev-codeonly-k").expected  # that vector has no initrd/append
    )


def test_cli_choices_match_the_library_enums() -> None:
    from cvmlaunch.cli import _measure_snp
    from cvmlaunch.measure.snp import SevMode

    assert [m.value for m in SevMode] == _measure_snp.MODES
    assert [v.value for v in VmmType] == _measure_snp.VMMS
    assert [f.value for f in FpuInit] == _measure_snp.FPU_INITS


def test_measure_snp_start_up_imports_no_measurement_code() -> None:
    """Building the CLI must not import the measurement modules or the log model (start-up
    time); they are imported by the command that needs them."""
    import subprocess
    import sys

    code = (
        "import sys, cvmlaunch.cli as c; c.load_command(c.COMMANDS['measure'][1]['snp']); "
        "print(sorted(m for m in sys.modules if m.startswith(('cvmlaunch.', 'elftools')) "
        "or m in ('json', 'tempfile', 'importlib.metadata')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(
        sorted(
            [
                "cvmlaunch.cli",
                "cvmlaunch.cli._measure_snp",
                "cvmlaunch.cli._params",
                "cvmlaunch.errors",
                "cvmlaunch.vcpu_signature",  # the --vcpu-type choices (a core table)
                "cvmlaunch.text",  # errors' escaping helper (imports nothing)
            ]
        )
    )


def test_kernel_and_initrd_digests_stream_in_parallel(inputs: dict[str, Path]) -> None:
    from cvmlaunch.files import FileDigests

    kernel_in, initrd_in = (str(inputs["kernel.bin"]), "k"), (str(inputs["initrd.bin"]), "i")
    k, i = FileDigests(kernel_in, initrd_in).result()
    kernel, initrd = inputs["kernel.bin"].read_bytes(), inputs["initrd.bin"].read_bytes()
    assert k == (len(kernel), hashlib.sha256(kernel).digest())
    assert i == (len(initrd), hashlib.sha256(initrd).digest())
    assert FileDigests(None, initrd_in).result() == [(0, None), i]
    with pytest.raises(ImageError, match="/nonexistent/k: cannot read"):
        FileDigests(("/nonexistent/k", "k"), initrd_in).result()


def test_file_sha256_through_mmap_windows(tmp_path: Path) -> None:
    """Several windows and a partial one, an empty file and a pipe: hashlib's digests."""
    import os
    import threading

    from cvmlaunch.files import _WINDOW
    from cvmlaunch.files import sha256_of as _sha256_of

    big = tmp_path / "big"
    data = bytes(range(256)) * ((2 * _WINDOW + 5) // 256) + b"tail!"
    big.write_bytes(data)
    assert _sha256_of(str(big), "k") == (len(data), hashlib.sha256(data).digest())
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert _sha256_of(str(empty), "k") == (0, hashlib.sha256(b"").digest())
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(b"piped"))
    writer.start()
    assert _sha256_of(str(fifo), "k") == (5, hashlib.sha256(b"piped").digest())
    writer.join()
    with pytest.raises(ImageError, match="cannot read: Is a directory"):
        _sha256_of(str(tmp_path), "k")


def test_precomputed_kernel_and_initrd_hashes(inputs: dict[str, Path]) -> None:
    """--kernel-sha256/--initrd-sha256 stand in for the files (virtee/sev#277)."""
    case = snp_case("amdsev-4-milan-kia")
    k = hashlib.sha256(inputs["kernel.bin"].read_bytes()).hexdigest()
    i = hashlib.sha256(inputs["initrd.bin"].read_bytes()).hexdigest()
    base = ["measure", "snp", "--ovmf", str(inputs["OVMF.amdsev.fd"]), "--vcpus", "4",
            "--vcpu-type", "EPYC-Milan", "--append", "console=ttyS0 root=/dev/vda1 ro"]  # fmt: skip
    for extra in (
        ["--kernel-sha256", k, "--initrd-sha256", i],
        ["--kernel-sha256", k, "--initrd", str(inputs["initrd.bin"])],
        ["--kernel", str(inputs["kernel.bin"]), "--initrd-sha256", i.upper()],
    ):
        result = run([*base, *extra])
        assert result.output.strip() == case.expected, extra
    _one_error_line(
        run([*base, "--kernel-sha256", k[:-2]]),
        "--kernel-sha256: 31 bytes given, exactly 32 needed",
    )
    _one_error_line(
        run([*base, "--kernel-sha256", k, "--kernel", str(inputs["kernel.bin"])]),
        "give --kernel or --kernel-sha256, not both",
    )
    _one_error_line(run([*base[:-2], "--initrd-sha256", i]), "--initrd and --append need --kernel")


def test_measure_package_exports_resolve() -> None:
    import cvmlaunch.measure as m

    assert sorted(m._EXPORTS) == sorted(m.__all__)
    for name in m.__all__:
        assert getattr(m, name) is not None
    with pytest.raises(AttributeError):
        _ = m.no_such_name
