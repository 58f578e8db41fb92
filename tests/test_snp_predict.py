"""measure.snp_predict: every default of SnpRequest checked against its source, mostly the
sev-snp-measure 0.0.13 known answers (tests.vectors.snp_case, by case id)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from cvmlaunch.errors import CheckFailed, ConfigError
from cvmlaunch.image.ovmf import OvmfImage, parse_ovmf
from cvmlaunch.measure.snp import SevMode
from cvmlaunch.measure.snp_predict import (
    VMM_RESET_VCPU_SIG,
    SnpRequest,
    digest_size,
    predict,
)
from cvmlaunch.plan.sev import SevSettings
from cvmlaunch.plan.snp import SnpSettings
from cvmlaunch.plan.vmsa import FpuInit, VmmType
from cvmlaunch.snp_policy import DEFAULT_POLICY, GuestPolicy
from cvmlaunch.vcpu_signature import vcpu_type_signature
from tests.errors_util import raises_cvm
from tests.snp_inputs import materialize
from tests.vectors import snp_case

MILAN = vcpu_type_signature("EPYC-Milan")
EPYC_V4 = vcpu_type_signature("EPYC-v4")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return materialize(tmp_path_factory.mktemp("snp-predict-inputs"))


@pytest.fixture(scope="module")
def amdsev(inputs: dict[str, Path]) -> OvmfImage:
    if "OVMF.amdsev.fd" not in inputs:
        pytest.skip("OVMF.amdsev.fd not available")
    return parse_ovmf(inputs["OVMF.amdsev.fd"].read_bytes(), name="OVMF.amdsev.fd")


def _expected(case_id: str) -> str:
    return snp_case(case_id).expected


def test_ec2_and_gce_vmsas_carry_the_reset_signature(amdsev: OvmfImage) -> None:
    """EC2/GCE: RDX = 0x600 whatever signature is given (the peer's amdsev-4-ec2 gives
    --vcpu-type EPYC-v4, amdsev-4-gce none; both digests are reproduced)."""
    assert VMM_RESET_VCPU_SIG == 0x600
    for vmm, sig, case in (
        (VmmType.EC2, EPYC_V4, "amdsev-4-ec2"),
        (VmmType.GCE, None, "amdsev-4-gce"),
    ):
        request = SnpRequest(vcpus=4, vcpu_sig=sig, vmm=vmm)
        assert request.settings().vcpu_sig == 0x600
        assert predict(amdsev, request).digest.hex() == _expected(case)
    # under QEMU the given signature is kept
    assert SnpRequest(vcpus=1, vcpu_sig=EPYC_V4, vmm=VmmType.QEMU).settings().vcpu_sig == EPYC_V4


def test_snp_fpu_defaults_to_init2_and_sev_es_to_legacy(amdsev: OvmfImage) -> None:
    """SNP: INIT2 (amdsev-1-epyc-v4, where the peer agrees); SEV-ES: QEMU's legacy launch,
    where the peer assumes INIT2 (div-seves-legacy-fpu holds the peer's value: the default
    differs from it, fpu=INIT2 reproduces it)."""
    snp = SnpRequest(vcpus=1, vcpu_sig=EPYC_V4)
    assert snp.settings().fpu is FpuInit.INIT2
    assert predict(amdsev, snp).digest.hex() == _expected("amdsev-1-epyc-v4")
    es = SnpRequest(mode=SevMode.SEV_ES, vcpus=2, vcpu_sig=EPYC_V4)
    assert es.settings().fpu is FpuInit.LEGACY
    assert predict(amdsev, es).digest.hex() != _expected("div-seves-legacy-fpu")
    es_init2 = SnpRequest(mode=SevMode.SEV_ES, vcpus=2, vcpu_sig=EPYC_V4, fpu=FpuInit.INIT2)
    assert predict(amdsev, es_init2).digest.hex() == _expected("div-seves-legacy-fpu")
    # the legacy value by hand: the updates the peer's INIT2 answer checks (SHA-256 over them
    # in order), with each VMSA's MXCSR (0x408, u32) and x87 FCW (0x410, u16) set to 0 as the
    # legacy KVM_SEV_ES_INIT leaves them (APM vol. 2, VMSA layout)
    from cvmlaunch.plan.sev import sev_updates

    updates = [bytes(u.data) for u in sev_updates(amdsev, es_init2.settings())]  # type: ignore[arg-type]
    assert hashlib.sha256(b"".join(updates)).hexdigest() == _expected("div-seves-legacy-fpu")
    firmware, vmsas = updates[:-2], updates[-2:]
    legacy_vmsas = []
    for vmsa in vmsas:
        assert len(vmsa) == 4096
        assert vmsa[0x408:0x40C] == (0x1F80).to_bytes(4, "little")
        assert vmsa[0x410:0x412] == (0x37F).to_bytes(2, "little")
        legacy_vmsas.append(vmsa[:0x408] + bytes(4) + vmsa[0x40C:0x410] + bytes(2) + vmsa[0x412:])
    by_hand = hashlib.sha256(b"".join(firmware + legacy_vmsas)).digest()
    assert predict(amdsev, es).digest == by_hand


def test_guest_features_default(amdsev: OvmfImage) -> None:
    """SNP: 0x1, SNPActive (amdsev-4-milan has no --guest-features); 0x21 as given
    (amdsev-4-milan-gf21); SEV-ES: 0."""
    default = SnpRequest(vcpus=4, vcpu_sig=MILAN)
    assert default.settings().guest_features == 0x1
    assert predict(amdsev, default).digest.hex() == _expected("amdsev-4-milan")
    given = SnpRequest(vcpus=4, vcpu_sig=MILAN, guest_features=0x21)
    assert predict(amdsev, given).digest.hex() == _expected("amdsev-4-milan-gf21")
    es = SnpRequest(mode=SevMode.SEV_ES, vcpus=1, vcpu_sig=MILAN).settings()
    assert isinstance(es, SevSettings)
    assert es.guest_features == 0


def test_vcpus_and_signature_where_no_vmsa_is_measured(amdsev: OvmfImage) -> None:
    """sev and snp:ovmf-hash take no vCPUs: 1 and signature 0 (sev-amdsev: the digest is the
    firmware's SHA-256; ovmfhash-amdsev)."""
    sev = SnpRequest(mode=SevMode.SEV)
    settings = sev.settings()
    assert isinstance(settings, SevSettings)
    assert (settings.vcpus, settings.vcpu_sig, settings.es) == (1, 0, False)
    assert predict(amdsev, sev).digest.hex() == _expected("sev-amdsev")
    assert digest_size(SevMode.SEV) == 32
    firmware_only = predict(amdsev, SnpRequest(mode=SevMode.SNP_OVMF_HASH))
    assert firmware_only.digest.hex() == _expected("ovmfhash-amdsev")
    assert firmware_only.settings == {}
    assert digest_size(SevMode.SNP_OVMF_HASH) == 48


def test_vmsa_modes_need_vcpus_and_with_qemu_a_signature() -> None:
    for mode in (SevMode.SNP, SevMode.SEV_ES):
        with raises_cvm(ConfigError, setting="vcpus", match=f"^mode {mode.value} needs vcpus$"):
            SnpRequest(mode=mode, vcpu_sig=0)
        with raises_cvm(ConfigError, setting="vcpu_sig", match="with QEMU needs vcpu_type"):
            SnpRequest(mode=mode, vcpus=1)
        SnpRequest(mode=mode, vcpus=1, vmm=VmmType.GCE)  # GCE: the reset signature
    assert SnpRequest(vcpus=1, vcpu_sig=0).settings().vcpu_sig == 0  # zero is a value


def test_direct_boot_defaults(inputs: dict[str, Path], amdsev: OvmfImage) -> None:
    """No initrd: SHA-256 of no bytes; no command line: SHA-256 of a lone NUL (amdsev-4-milan-k:
    --kernel alone; amdsev-4-milan-kia with both)."""
    kernel = hashlib.sha256(inputs["kernel.bin"].read_bytes()).digest()
    request = SnpRequest(vcpus=4, vcpu_sig=MILAN, kernel_sha256=kernel)
    hashes = request.kernel_hashes()
    assert hashes is not None
    assert hashes.initrd == hashlib.sha256(b"").digest()
    assert hashes.cmdline == hashlib.sha256(b"\0").digest()
    assert predict(amdsev, request).digest.hex() == _expected("amdsev-4-milan-k")
    full = SnpRequest(
        vcpus=4,
        vcpu_sig=MILAN,
        kernel_sha256=kernel,
        initrd_sha256=hashlib.sha256(inputs["initrd.bin"].read_bytes()).digest(),
        cmdline=b"console=ttyS0 root=/dev/vda1 ro",
    )
    assert predict(amdsev, full).digest.hex() == _expected("amdsev-4-milan-kia")
    with raises_cvm(ConfigError, setting="cmdline", match="^initrd and cmdline need kernel$"):
        SnpRequest(vcpus=1, vcpu_sig=0, cmdline=b"quiet")
    with raises_cvm(ConfigError, setting="initrd") as info:
        SnpRequest(vcpus=1, vcpu_sig=0, initrd_sha256=bytes(32))
    assert info.value.also == ("cmdline", "kernel")


def test_launch_identity_defaults_and_log(amdsev: OvmfImage) -> None:
    """The policy defaults to QEMU's 0x30000 and host data to zero; recorded, not measured,
    and only in the SNP modes."""
    plain = predict(amdsev, SnpRequest(vcpus=1, vcpu_sig=EPYC_V4, record_identity=False))
    assert "policy" not in plain.settings
    recorded = predict(amdsev, SnpRequest(vcpus=1, vcpu_sig=EPYC_V4, log=True))
    assert recorded.digest == plain.digest
    assert DEFAULT_POLICY.value == 0x30000
    assert recorded.settings["policy"] == "0x30000"
    assert recorded.settings["host_data"] == "00" * 32
    assert recorded.settings["id_block"] is None
    assert recorded.log is not None
    assert recorded.log.digest == plain.digest
    header = recorded.log.header
    assert [i.role for i in header.inputs] == ["firmware"]
    assert header.inputs[0].name == "OVMF.amdsev.fd"
    assert header.settings["ap_reset_address"] == amdsev.sev_es_reset_eip
    assert header.settings["mode"] == "snp"
    with raises_cvm(ConfigError, setting="policy", match="^policy is an SNP launch setting"):
        SnpRequest(mode=SevMode.SEV, policy=GuestPolicy(0x30000))
    with raises_cvm(ConfigError, setting="id_block", match="^id_block and id_auth go together"):
        SnpRequest(vcpus=1, vcpu_sig=0, id_block=bytes(96))


def test_the_id_block_is_checked_against_the_digest_and_policy(amdsev: OvmfImage) -> None:
    from cvmlaunch.measure import identity as ident
    from tests.test_identity import AUTHOR_KEY, ID_KEY

    request = SnpRequest(vcpus=1, vcpu_sig=EPYC_V4)
    digest = predict(amdsev, request).digest

    def pair(ld: bytes) -> tuple[bytes, bytes]:
        block = ident.IdBlock(ld=ld, family_id=b"F" * 16, image_id=b"I" * 16, guest_svn=1,
                              policy=DEFAULT_POLICY)  # fmt: skip
        return block.pack(), ident.sign_id_block(block, ID_KEY, AUTHOR_KEY).pack()

    block, auth = pair(digest)
    fits = predict(amdsev, SnpRequest(vcpus=1, vcpu_sig=EPYC_V4, id_block=block, id_auth=auth))
    assert fits.settings["id_block"] == block.hex()
    block, auth = pair(bytes(48))
    other = SnpRequest(vcpus=1, vcpu_sig=EPYC_V4, id_block=block, id_auth=auth, id_source="b/a")
    with pytest.raises(CheckFailed, match="b/a"):
        predict(amdsev, other)


def test_mode_rules() -> None:
    with raises_cvm(ConfigError, setting="ovmf_hash", match="^ovmf_hash works only with mode snp"):
        SnpRequest(mode=SevMode.SEV, ovmf_hash=bytes(48))
    with raises_cvm(ConfigError, setting="kernel", match="measures the firmware only"):
        SnpRequest(mode=SevMode.SNP_OVMF_HASH, kernel_sha256=bytes(32))
    with raises_cvm(ConfigError, setting="svsm", match="^mode snp:svsm needs svsm$"):
        SnpRequest(mode=SevMode.SNP_SVSM, vcpus=1, vcpu_sig=0, vars_size=0)
    with raises_cvm(
        ConfigError, setting="vars_size", match="exactly one of vars_size or vars_file"
    ):
        SnpRequest(mode=SevMode.SNP_SVSM, vcpus=1, vcpu_sig=0, svsm=True)
    with raises_cvm(ConfigError, setting="vars_size", match="belong to mode snp:svsm"):
        SnpRequest(vcpus=1, vcpu_sig=0, vars_size=0)
    assert isinstance(SnpRequest(mode=SevMode.SNP_SVSM, vcpus=1, vcpu_sig=0, svsm=True,
                                 vars_size=0).settings(), SnpSettings)  # fmt: skip


def test_the_signature_comes_from_exactly_one_source() -> None:
    """vcpu_signature.resolve_vcpu_signature: a name, a value or family/model/stepping; errors
    name the settings (the CLI spells them as its flags)."""
    from cvmlaunch.vcpu_signature import cpu_signature, resolve_vcpu_signature

    assert resolve_vcpu_signature() is None
    assert resolve_vcpu_signature(vcpu_type="EPYC-Milan") == MILAN
    assert resolve_vcpu_signature(vcpu_sig=0) == 0
    assert resolve_vcpu_signature(family=25, model=1, stepping=1) == cpu_signature(25, 1, 1)
    for kwargs, setting in (
        ({"vcpu_type": "EPYC", "vcpu_sig": 1}, "vcpu_type"),
        ({"family": 25}, "vcpu_family"),
        ({"vcpu_sig": 1 << 32}, "vcpu_sig"),
    ):
        with pytest.raises(ConfigError) as info:
            resolve_vcpu_signature(**kwargs)
        assert info.value.setting == setting
        assert "--" not in str(info.value)


def test_snp_inputs_parse_the_text_and_stand_in_for_the_files() -> None:
    """measure snp's one object: hex and names parsed into a SnpRequest, zeros standing in
    for what the files give until with_files replaces them."""
    from cvmlaunch.measure.snp_predict import SnpInputs

    given = SnpInputs(
        ovmf="OVMF.fd",
        vcpus=2,
        vcpu_type="EPYC-v4",
        kernel="vmlinuz",
        initrd_sha256="11" * 32,
        append="console=ttyS0",
        policy="0x30000",
        host_data="22" * 32,
        id_block="block",
        id_auth="auth",
    )
    assert given.files == ["OVMF.fd", "vmlinuz", "block", "auth"]
    request = given.request(record_identity=False, log=True)
    assert (request.vcpus, request.vcpu_sig, request.log) == (2, EPYC_V4, True)
    assert request.kernel_sha256 == bytes(32)  # the file's stand-in
    assert request.initrd_sha256 == bytes.fromhex("11" * 32)
    assert request.cmdline == b"console=ttyS0"
    assert request.policy == DEFAULT_POLICY
    assert request.host_data == bytes.fromhex("22" * 32)
    assert (request.id_block, request.id_auth) == (bytes(96), bytes(4096))
    assert request.id_source == "block / auth"
    read = given.with_files(
        request,
        kernel_sha256=b"k" * 32,
        initrd_sha256=None,
        vars_size=None,
        id_block=b"b" * 96,
        id_auth=b"a" * 4096,
    )
    assert read.kernel_sha256 == b"k" * 32
    assert read.initrd_sha256 == bytes.fromhex("11" * 32)  # given as hex, not a file
    assert (read.id_block, read.id_auth) == (b"b" * 96, b"a" * 4096)
    with raises_cvm(
        ConfigError, setting="kernel", match="^give kernel or kernel_sha256, not both$"
    ):
        SnpInputs(ovmf="x", kernel="k", kernel_sha256="00" * 32).request(
            record_identity=False, log=False
        )
    with raises_cvm(
        ConfigError, setting="initrd", match="^give initrd or initrd_sha256, not both$"
    ):
        SnpInputs(ovmf="x", initrd="i", initrd_sha256="00" * 32).request(
            record_identity=False, log=False
        )
    svsm = SnpInputs(ovmf="x", mode="snp:svsm", svsm="s", vars_file="v", vcpus=1, vcpu_sig=1)
    assert svsm.request(record_identity=False, log=False).vars_size == 0  # the file's stand-in
    both = SnpInputs(ovmf="x", mode="snp:svsm", svsm="s", vars_file="v", vars_size=1)
    with raises_cvm(
        ConfigError, setting="vars_size", match="exactly one of vars_size or vars_file"
    ):
        both.request(record_identity=False, log=False)
