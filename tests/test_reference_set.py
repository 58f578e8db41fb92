"""Reference-value sets: the resumable SNP fold, sets equal to single digests, and every output
format checked against its consumer's published schema or example."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cvmlaunch import measure
from cvmlaunch.errors import ConfigError, ImageError
from cvmlaunch.image.ovmf import parse_ovmf
from cvmlaunch.launch_identity import SnpLaunchIdentity, TdxLaunchIdentity
from cvmlaunch.layout import VMSA_GPA, PageType
from cvmlaunch.measure import identity as ident
from cvmlaunch.measure import snp_chain
from cvmlaunch.measure.reference import ReferenceValues, identity_settings
from cvmlaunch.measure.reference_set import (
    Configuration,
    ReferenceSet,
    parse_vcpu_ranges,
    snp_reference_set,
    tdx_reference_set,
)
from cvmlaunch.measure.tdx import PageOrder, measure_tdvf
from cvmlaunch.plan.sev_hashes import KernelHashes, cmdline_sha256
from cvmlaunch.plan.snp import snp_plan
from tests.cli_runner import run_cli
from tests.errors_util import raises_cvm
from tests.test_identity import AUTHOR_KEY, ID_KEY
from tests.vectors import snp_case

TYPES = ["EPYC-Milan", "EPYC-Genoa", "EPYC-Turin", "EPYC-v4"]
Firmware = Callable[[str], Path]


# ---------------------------------------------------------------- the resumable fold


def test_parse_vcpu_ranges() -> None:
    assert parse_vcpu_ranges("1-16,32,64") == (*range(1, 17), 32, 64)
    assert parse_vcpu_ranges("4, 2-3,4") == (2, 3, 4)
    for bad, why in [
        ("", "is not N or N-M"),
        ("3-1", "runs backwards"),
        ("0-2", "out of range"),
        ("1-4097", "out of range"),
        ("a", "is not N or N-M"),
    ]:
        with raises_cvm(ConfigError, setting="vcpus", match=why):
            parse_vcpu_ranges(bad)


def test_fold_state_resumes_anywhere(firmware: Firmware) -> None:
    image = parse_ovmf(firmware("OVMF.amdsev.fd").read_bytes(), name="OVMF.amdsev.fd")
    plan = snp_plan(image, measure.SnpSettings(vcpus=3, vcpu_sig=0xA00F11))
    whole = measure.fold_plan(plan)
    for k in range(len(plan.regions) + 1):
        state = snp_chain.fold_from(plan, stop=k, workers=1)
        saved = snp_chain.FoldState.from_dict(json.loads(json.dumps(state.to_dict())))
        assert saved == state
        assert snp_chain.fold_from(plan, saved).digest == whole
    with pytest.raises(ConfigError, match=r"cannot fold regions 3\.\.1"):
        snp_chain.fold_from(plan, snp_chain.FoldState(whole, 3), stop=1)
    with pytest.raises(ConfigError, match="48 bytes"):
        snp_chain.FoldState(b"short")


def test_fold_vmsas_is_the_page_info_chain() -> None:
    """Against the PAGE_INFO steps spelt out one page at a time
    (:func:`~cvmlaunch.measure.snp_chain.page_info`)."""
    bsp, ap = b"\x01" * 4096, b"\x02" * 4096
    start = hashlib.sha384(b"prefix").digest()
    got = snp_chain.fold_vmsas(start, bsp, ap, [3, 1, 3])
    digest, want = start, {}
    for n, page in enumerate([bsp, ap, ap], start=1):
        info = snp_chain.page_info(digest, hashlib.sha384(page).digest(), PageType.VMSA, VMSA_GPA)
        digest = hashlib.sha384(info).digest()
        want[n] = digest
    assert got == {1: want[1], 3: want[3]}


def test_a_set_of_256_equals_256_single_digests(firmware: Firmware) -> None:
    data = firmware("OVMF.amdsev.fd").read_bytes()
    s = snp_reference_set(
        [("OVMF.amdsev.fd", data)], vcpus=parse_vcpu_ranges("1-64"), vcpu_types=TYPES
    )
    assert len(s.configurations) == 256
    image = parse_ovmf(data, name="OVMF.amdsev.fd")
    order = []
    for c in s.configurations:
        settings = dict(c.settings)
        order.append((settings["vcpu_type"], settings["vcpus"]))
        single = measure.snp_digest(
            image,
            measure.SnpSettings(
                vcpus=int(str(settings["vcpus"])),
                vcpu_sig=measure.vcpu_type_signature(str(settings["vcpu_type"])),
            ),
        )
        assert c.measurement == single, (settings["vcpu_type"], settings["vcpus"])
    assert order == [(t, n) for t in TYPES for n in range(1, 65)]  # stable order
    # snp-measure.md's worked trace: 1 vCPU, EPYC-v4 (sev-snp-measure's value)
    assert (
        s.matching(bytes.fromhex(snp_case("amdsev-1-epyc-v4").expected))[0].settings
        == s.configurations[192].settings
    )


@pytest.mark.parametrize(
    ("vcpus", "vcpu_type"), [("1", "EPYC-Milan"), ("17", "EPYC-Genoa"), ("64", "EPYC-Turin")]
)
def test_a_set_agrees_with_the_measure_snp_command(
    firmware: Firmware, vcpus: str, vcpu_type: str
) -> None:
    ovmf = firmware("OVMF.amdsev.fd")
    s = snp_reference_set(
        [("OVMF.amdsev.fd", ovmf.read_bytes())], vcpus=[1, 17, 64], vcpu_types=TYPES
    )
    result = run_cli(
        ["measure", "snp", "--ovmf", str(ovmf), "--vcpus", vcpus, "--vcpu-type", vcpu_type]
    )
    assert result.exit_code == 0, result.output
    want = {(dict(c.settings)["vcpu_type"], dict(c.settings)["vcpus"]): c for c in s.configurations}
    assert result.stdout.strip() == want[(vcpu_type, int(vcpus))].measurement.hex()


def test_kernel_hashes_vmm_and_features_enter_the_set(firmware: Firmware) -> None:
    data = firmware("OVMF.amdsev.fd").read_bytes()
    image = parse_ovmf(data, name="fw")
    hashes = KernelHashes(
        hashlib.sha256(b"kernel").digest(),
        hashlib.sha256(b"initrd").digest(),
        cmdline_sha256(b"console=ttyS0"),
    )
    vmm = measure.VmmType.EC2
    s = snp_reference_set(
        [("fw", data)],
        vcpus=[1, 2, 8],
        vcpu_types=["EPYC-Milan"],
        vmm=vmm,
        guest_features=0x21,
        kernel_hashes=hashes,
    )
    for c in s.configurations:
        settings = dict(c.settings)
        base = measure.SnpSettings(
            vcpus=int(str(settings["vcpus"])),
            vcpu_sig=int(str(settings["vcpu_sig"]), 16),
            vmm=vmm,
            guest_features=0x21,
            kernel_hashes=hashes,
        )
        assert c.measurement == measure.snp_digest(image, base)
        assert settings["kernel_sha256"] == hashes.kernel.hex()
        assert settings["vmm_type"] == "ec2"


def test_two_firmwares_and_a_saved_prefix(firmware: Firmware) -> None:
    a, g = firmware("OVMF.amdsev.fd").read_bytes(), firmware("OVMF.generic.fd").read_bytes()
    s = snp_reference_set([("a.fd", a), ("g.fd", g)], vcpus=[2], vcpu_types=["EPYC"])
    assert [dict(c.settings)["firmware"] for c in s.configurations] == ["a.fd", "g.fd"]
    image = parse_ovmf(g, name="g")
    settings = measure.SnpSettings(vcpus=2, vcpu_sig=measure.vcpu_type_signature("EPYC"))
    assert s.configurations[1].measurement == measure.snp_digest(image, settings)
    from cvmlaunch.measure.snp import snp_digest_set
    from cvmlaunch.plan.snp import snp_prefix_plan

    prefix = snp_chain.fold_from(snp_prefix_plan(image, settings))
    again = snp_digest_set(image, settings, [settings.vcpu_sig], [2], prefix=prefix)
    assert again[(settings.vcpu_sig, 2)] == s.configurations[1].measurement
    with pytest.raises(ConfigError, match="covers 0 regions"):
        snp_digest_set(image, settings, [1], [2], prefix=snp_chain.FoldState())


def test_tdx_set_is_builds_times_page_orders(firmware: Firmware) -> None:
    data = firmware("OVMF.inteltdx.ms.fd").read_bytes()
    s = tdx_reference_set([("tdx.fd", data)], orders=list(PageOrder))
    assert [dict(c.settings)["order"] for c in s.configurations] == ["per-page", "two-pass"]
    for c, order in zip(s.configurations, PageOrder, strict=True):
        assert c.measurement == measure_tdvf(data, order=order).mrtd


def test_set_json_reads_back_and_refuses_junk() -> None:
    s = ReferenceSet(
        "sev-snp",
        (Configuration.of(bytes(48), vcpus=1), Configuration.of(b"\x01" * 48, vcpus=2)),
        ident.GuestPolicy(0x30000),
    )
    text = s.render("json")
    assert ReferenceSet.parse(text) == s
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True)
    for junk in ("[", "{}", '{"format": "cvmlaunch-reference-set", "version": 9}'):
        with pytest.raises(ImageError):
            ReferenceSet.parse(junk)


# ---------------------------------------------------------------- issue 16 item 4


def test_a_firmware_only_log_is_refused() -> None:
    with raises_cvm(
        ConfigError, setting="mode", match=r"firmware pages alone .* with mode snp \("
    ) as info:
        ReferenceValues.from_settings("sev-snp", bytes(48), {"mode": "snp:ovmf-hash"})
    assert info.value.also == ("ovmf_hash",)


# ---------------------------------------------------------------- the consumers' schemas
#
# go-sev-guest check.Config / check.Policy: github.com/google/go-sev-guest proto/check.proto
# (commit 130884d1, read through the search tool): field name -> (type, bytes length).
GO_SEV_GUEST_POLICY: dict[str, tuple[str, int | None]] = {
    "minimum_guest_svn": ("uint32", None),
    "policy": ("uint64", None),
    "family_id": ("bytes", 16),
    "image_id": ("bytes", 16),
    "minimum_tcb": ("uint64", None),
    "minimum_launch_tcb": ("uint64", None),
    "require_author_key": ("bool", None),
    "report_data": ("bytes", 64),
    "measurement": ("bytes", 48),
    "host_data": ("bytes", 32),
    "report_id": ("bytes", 32),
    "report_id_ma": ("bytes", 32),
    "minimum_build": ("uint32", None),
    "permit_provisional_firmware": ("bool", None),
    "require_id_block": ("bool", None),
    "trusted_author_key_hashes": ("repeated bytes", 48),
    "trusted_id_key_hashes": ("repeated bytes", 48),
}
# go-tdx-guest checkconfig.Config / Policy / TDQuoteBodyPolicy: github.com/google/go-tdx-guest
# proto/checkconfig.proto (commit 0b10f14c).
GO_TDX_GUEST_BODY: dict[str, tuple[str, int | None]] = {
    "minimum_tee_tcb_svn": ("bytes", 16),
    "mr_seam": ("bytes", 48),
    "td_attributes": ("bytes", 8),
    "xfam": ("bytes", 8),
    "mr_td": ("bytes", 48),
    "mr_config_id": ("bytes", 48),
    "mr_owner": ("bytes", 48),
    "mr_owner_config": ("bytes", 48),
    "rtmrs": ("repeated bytes", 48),
    "report_data": ("bytes", 64),
    "any_mr_td": ("repeated bytes", 48),
}
# snpguest `verify attestation` options (virtee/snpguest d3a2aed src/main.rs; research
# ecosystem.md §2.4, PR #153): option -> hex length in bytes.
SNPGUEST_OPTIONS = {
    "--measurement": 48,
    "--host-data": 32,
    "--report-data": 64,
    "--id-key-digest": 48,
    "--author-key-digest": 48,
}
# Trustee RVPS `sample` extractor payload: a JSON object, reference-value name -> list of
# values (confidential-containers/trustee rvps/src/extractors/sample/mod.rs, commit ec6706d8);
# the names the attestation service's default CPU policy queries (ear_default_policy_cpu.rego,
# ecosystem.md §2.4) plus snp_* identity names for custom policies.
TRUSTEE_NAMES = {
    "snp_launch_measurement": 48,
    "snp_host_data": 32,
    "snp_id_key_digest": 48,
    "snp_author_key_digest": 48,
    "mr_td": 48,
    "mr_config_id": 48,
    "mr_owner": 48,
    "mr_owner_config": 48,
}


def _textproto(text: str) -> dict[str, list[object]]:
    """A protobuf text-format reader for what the tests need (written from the text-format
    spec): ``#`` comments, ``name {`` ... ``}`` messages, ``name: value`` with integers,
    true/false and double-quoted strings with ``\\xNN`` escapes. Values become lists."""
    stack: list[dict[str, list[object]]] = [{}]
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("{"):
            child: dict[str, list[object]] = {}
            stack[-1].setdefault(line[:-1].strip(), []).append(child)
            stack.append(child)
        elif line == "}":
            stack.pop()
        else:
            name, value = (part.strip() for part in line.split(":", 1))
            parsed: object
            if value.startswith('"'):
                assert value.endswith('"')
                assert re.fullmatch(r"(\\x[0-9a-f]{2})*", value[1:-1]), value
                parsed = bytes.fromhex(value[1:-1].replace("\\x", ""))
            elif value in ("true", "false"):
                parsed = value == "true"
            else:
                parsed = int(value, 10)
            stack[-1].setdefault(name, []).append(parsed)
    assert len(stack) == 1, "unbalanced braces"
    return stack[0]


def _check_message(
    fields: dict[str, list[object]], schema: dict[str, tuple[str, int | None]]
) -> None:
    for name, values in fields.items():
        assert name in schema, f"{name} is not a field of the consumer's message"
        kind, size = schema[name]
        if not kind.startswith("repeated"):
            assert len(values) == 1, f"{name} is not repeated"
        for v in values:
            if kind.endswith("bytes"):
                assert isinstance(v, bytes), name
                assert len(v) == size, name
            elif kind == "bool":
                assert isinstance(v, bool), name
            else:
                assert isinstance(v, int), name
                assert not isinstance(v, bool), name
                assert 0 <= v < 1 << (32 if kind == "uint32" else 64), name


def _full_snp() -> ReferenceValues:
    ld = hashlib.sha384(b"schema").digest()
    policy = ident.GuestPolicy(0x30000)
    block = ident.IdBlock(ld, b"\x0f" * 16, b"\x1e" * 16, 9, policy)
    auth = ident.sign_id_block(block, ID_KEY, AUTHOR_KEY)
    snp = SnpLaunchIdentity(b"\xaa" * 32, block.pack(), auth.pack())
    return ReferenceValues.from_settings("sev-snp", ld, identity_settings(snp=snp, policy=policy))


def _sets() -> tuple[ReferenceSet, ReferenceSet]:
    snp = ReferenceSet(
        "sev-snp",
        tuple(Configuration.of(bytes([i]) * 48, vcpus=i) for i in (1, 2)),
        ident.GuestPolicy(0x30000),
    )
    tdx = ReferenceSet(
        "tdx", tuple(Configuration.of(bytes([i]) * 48, order=o) for i, o in ((1, "a"), (2, "b")))
    )
    return snp, tdx


def test_go_sev_guest_matches_check_proto() -> None:
    values = _full_snp()
    doc = _textproto(values.render("go-sev-guest"))
    assert set(doc) == {"policy"}  # check.Config: root_of_trust, policy
    (policy,) = doc["policy"]
    assert isinstance(policy, dict)
    _check_message(policy, GO_SEV_GUEST_POLICY)
    assert policy["minimum_guest_svn"] == [9]
    assert policy["measurement"] == [values.measurement]
    snp_set, _ = _sets()
    for chunk in snp_set.render("go-sev-guest").split("\n\n"):
        (p,) = _textproto(chunk)["policy"]
        assert isinstance(p, dict)
        _check_message(p, GO_SEV_GUEST_POLICY)


def test_go_tdx_guest_matches_checkconfig_proto() -> None:
    tdx = TdxLaunchIdentity(b"\x11" * 48, b"\x22" * 48, b"\x33" * 48)
    single = ReferenceValues.from_settings("tdx", b"\x44" * 48, identity_settings(tdx=tdx))
    _, tdx_set = _sets()
    for text in (single.render("go-tdx-guest"), tdx_set.render("go-tdx-guest")):
        doc = _textproto(text)
        assert set(doc) == {"policy"}
        (policy,) = doc["policy"]
        assert isinstance(policy, dict)
        assert set(policy) == {"td_quote_body_policy"}  # checkconfig.Policy
        (body,) = policy["td_quote_body_policy"]
        assert isinstance(body, dict)
        _check_message(body, GO_TDX_GUEST_BODY)
    assert _textproto(tdx_set.render("go-tdx-guest"))["policy"][0] == {
        "td_quote_body_policy": [{"any_mr_td": [b"\x01" * 48, b"\x02" * 48]}]
    }


def test_snpguest_options_match_verify_attestation() -> None:
    snp_set, _ = _sets()
    lines = [_full_snp().render("snpguest")] + [
        line for line in snp_set.render("snpguest").splitlines() if not line.startswith("#")
    ]
    for line in lines:
        words = line.split()
        assert len(words) % 2 == 0
        for option, value in zip(words[::2], words[1::2], strict=True):
            assert option in SNPGUEST_OPTIONS, option
            assert len(bytes.fromhex(value)) == SNPGUEST_OPTIONS[option]


def test_trustee_matches_the_sample_extractor() -> None:
    tdx = ReferenceValues.from_settings("tdx", b"\x44" * 48, {})
    snp_set, tdx_set = _sets()
    for values in (_full_snp(), tdx, snp_set, tdx_set):
        doc = json.loads(values.render("trustee"))
        assert isinstance(doc, dict)
        for name, listed in doc.items():
            assert isinstance(listed, list), name
            assert listed, name
            assert all(isinstance(v, str) for v in listed), name
            if name == "snp_policy":
                assert all(int(v, 16) >= 0 for v in listed)
            else:
                assert name in TRUSTEE_NAMES, name
                assert all(len(bytes.fromhex(v)) == TRUSTEE_NAMES[name] for v in listed)
    assert json.loads(snp_set.render("trustee"))["snp_launch_measurement"] == [
        "01" * 48,
        "02" * 48,
    ]


def test_formats_refuse_the_other_technology() -> None:
    snp_set, tdx_set = _sets()
    with raises_cvm(ConfigError, setting="format", match="^format go-tdx-guest is for TDX sets"):
        snp_set.render("go-tdx-guest")
    with raises_cvm(ConfigError, setting="format", match="^format snpguest is for SEV-SNP sets"):
        tdx_set.render("snpguest")
    with raises_cvm(ConfigError, setting="format", match="unknown reference-value format"):
        tdx_set.render("yaml")


def test_reference_values_of_a_firmware_only_log_exits_2(
    tmp_path: Path, firmware: Firmware
) -> None:
    log = tmp_path / "fw.jsonl"
    ovmf = str(firmware("OVMF.amdsev.fd"))
    made = run_cli(["measure", "snp", "--mode", "snp:ovmf-hash", "--ovmf", ovmf, "--log", str(log)])
    assert made.exit_code == 0, made.output
    result = run_cli(["reference-values", str(log)])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "--mode snp:ovmf-hash" in result.stderr
    assert "cvmlaunch measure snp --mode snp --ovmf FW" in result.stderr


@settings(max_examples=200, deadline=None)
@given(st.sets(st.integers(min_value=1, max_value=4096), min_size=1, max_size=40))
def test_vcpu_ranges_round_trip(counts: set[int]) -> None:
    """Any set of counts, written as N and N-M items (runs of consecutive counts), reads back."""
    ordered = sorted(counts)
    runs = [[ordered[0]]]
    for count in ordered[1:]:
        if count == runs[-1][-1] + 1:
            runs[-1].append(count)
        else:
            runs.append([count])
    items = [str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs]
    assert parse_vcpu_ranges(",".join(items)) == tuple(ordered)


def test_parse_page_orders_defaults_to_every_order() -> None:
    from cvmlaunch.measure.reference_set import parse_page_orders

    assert parse_page_orders([]) == [PageOrder.PER_PAGE, PageOrder.TWO_PASS]
    assert parse_page_orders(["two-pass"]) == [PageOrder.TWO_PASS]
    with raises_cvm(setting="order", match=r"^order two-pass,3-pass: each must be one of per"):
        parse_page_orders(["two-pass", "3-pass"])


def test_kernel_hashes_for_a_direct_boot() -> None:
    kernel, initrd = hashlib.sha256(b"k").digest(), hashlib.sha256(b"i").digest()
    assert KernelHashes.for_boot(kernel) == KernelHashes(
        kernel, hashlib.sha256(b"").digest(), hashlib.sha256(b"\0").digest()
    )
    assert KernelHashes.for_boot(kernel, initrd, "console=ttyS0") == KernelHashes(
        kernel, initrd, hashlib.sha256(b"console=ttyS0\0").digest()
    )
    escaped = KernelHashes.for_boot(kernel, None, "a\udcffb")  # the byte 0xff, as argv has it
    assert escaped.cmdline == hashlib.sha256(b"a\xffb\0").digest()
    with raises_cvm(setting="append", match=r"^append: character U\+D800 at 1"):
        KernelHashes.for_boot(kernel, None, "a\ud800b")  # no escaped byte: no text
