"""cvmlaunch.attest: SEV-SNP reports and TDX quotes made here from the specs, parsed, compared
with reference values field by field, and SNP signatures checked with a test VCEK and chain."""

from __future__ import annotations

import hashlib
import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from cvmlaunch import attest
from cvmlaunch.attest.errors import (
    CertificateError,
    ReportFormatError,
    ReportMismatch,
    SignatureInvalid,
    UnknownReportVersion,
)
from cvmlaunch.errors import CvmLaunchError
from cvmlaunch.launch_identity import SnpLaunchIdentity, TdxLaunchIdentity
from cvmlaunch.measure import identity as ident
from cvmlaunch.measure.reference import ReferenceValues, identity_settings
from cvmlaunch.measure.reference_set import Configuration, ReferenceSet
from tests import attest_builders as b
from tests.test_identity import AUTHOR_KEY, ID_KEY, _amd_pubkey
from tests.vectors import attest_field, attest_file

LD = hashlib.sha384(b"attest launch").digest()
POLICY = ident.GuestPolicy(0x30000)
BLOCK = ident.IdBlock(LD, b"\x0f" * 16, b"\x1e" * 16, 7, POLICY)
AUTH = ident.sign_id_block(BLOCK, ID_KEY, AUTHOR_KEY)
HOST_DATA = b"\xaa" * 32
ID_DIGEST = hashlib.sha384(_amd_pubkey(ID_KEY)).digest()
AUTHOR_DIGEST = hashlib.sha384(_amd_pubkey(AUTHOR_KEY)).digest()

#: What the firmware puts in the report for that launch (ABI: SNP_LAUNCH_FINISH).
GOOD: dict[str, int | bytes] = {
    "measurement": LD,
    "policy": POLICY.value,
    "host_data": HOST_DATA,
    "family_id": b"\x0f" * 16,
    "image_id": b"\x1e" * 16,
    "guest_svn": 7,
    "id_key_digest": ID_DIGEST,
    "author_key_digest": AUTHOR_DIGEST,
    "key_info": 1,  # AUTHOR_KEY_EN
    "report_data": b"\x42" * 64,
    "chip_id": b"\xc1" * 64,
    "reported_tcb": 0x1B00000000000304,
}


def _values() -> ReferenceValues:
    snp = SnpLaunchIdentity(HOST_DATA, BLOCK.pack(), AUTH.pack())
    return ReferenceValues.from_settings("sev-snp", LD, identity_settings(snp=snp, policy=POLICY))


def _signed(**changes: int | bytes) -> bytes:
    return b.sign_snp(b.snp_report_bytes(**{**GOOD, **changes}), b.chain().vcek_key)


# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize("version", [2, 3, 4, 5])
def test_every_version_the_abi_defines(version: int) -> None:
    raw = _signed(
        version=version,
        cpuid_fam_id=0x19,
        cpuid_mod_id=0x11,
        cpuid_step=1,
        launch_mit_vector=0x15,
        current_mit_vector=0x17,
        current_major=1,
        current_minor=55,
        current_build=22,
    )
    r = attest.parse_report(raw, name="r.bin")
    assert isinstance(r, attest.SnpReport)
    assert (r.version, r.measurement, r.policy, r.guest_svn) == (version, LD, 0x30000, 7)
    assert (r.host_data, r.id_key_digest, r.author_key_digest) == (
        HOST_DATA,
        ID_DIGEST,
        AUTHOR_DIGEST,
    )
    assert (r.family_id, r.image_id, r.report_data) == (b"\x0f" * 16, b"\x1e" * 16, b"\x42" * 64)
    assert r.author_key_en
    assert not r.mask_chip_key
    assert r.signing_key == 0
    assert r.reported_tcb == 0x1B00000000000304
    assert r.chip_id == b"\xc1" * 64
    assert r.current_version == (22, 55, 1)
    assert r.as_dict()["current_version"] == "1.55.22"
    cpuid = (r.cpuid_fam_id, r.cpuid_mod_id, r.cpuid_step)
    assert cpuid == ((None, None, None) if version == 2 else (0x19, 0x11, 1))
    mit = (r.launch_mit_vector, r.current_mit_vector)
    assert mit == ((0x15, 0x17) if version == 5 else (None, None))


@pytest.mark.parametrize("version", [0, 1, 6, 7, 0xFFFF_FFFF])
def test_unknown_versions_are_refused(version: int) -> None:
    with pytest.raises(UnknownReportVersion, match=f"version {version} is not one") as info:
        attest.parse_report(_signed(version=version), name="r.bin")
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    ("size", "word"), [(0, "truncated"), (1183, "truncated"), (1185, "oversized")]
)
def test_truncated_and_oversized_reports(size: int, word: str) -> None:
    raw = _signed()
    data = raw[:size] if size <= len(raw) else raw + bytes(size - len(raw))
    with pytest.raises(ReportFormatError, match=f"{word} SEV-SNP attestation report: {size} bytes"):
        attest.parse_report(data, name="r.bin")


def test_a_report_response_or_certificate_table_is_not_a_report() -> None:
    raw = _signed()
    for data in (bytes(0x20) + raw, raw + b"\x01" * 0x40):
        with pytest.raises(ReportFormatError, match="oversized"):
            attest.parse_report(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1400))
def test_any_bytes_give_a_report_or_one_error(data: bytes) -> None:
    try:
        attest.parse_report(data)
    except CvmLaunchError as exc:
        codes = {exc.exit_code}
    else:
        codes = {2}
    assert codes == {2}


# ---------------------------------------------------------------- signature and chain


def test_signature_with_the_vcek_pem_and_der() -> None:
    report = attest.parse_snp_report(_signed())
    c = b.chain()
    for data in (c.vcek_pem(), c.vcek_der()):
        attest.verify_snp_signature(report, attest.load_certificate(data, name="vcek"))


@pytest.mark.parametrize("field", ["measurement", "report_data", "policy", "vmpl"])
def test_a_changed_field_breaks_the_signature(field: str) -> None:
    raw = bytearray(_signed())
    offset, _ = b.SNP_FIELDS[field]
    raw[offset] ^= 1
    report = attest.parse_snp_report(bytes(raw))
    with pytest.raises(SignatureInvalid, match="does not verify") as info:
        attest.verify_snp_signature(report, b.chain().vcek)
    assert info.value.exit_code == 1


def test_a_wrong_key_and_a_wrong_algorithm() -> None:
    other = b.sign_snp(b.snp_report_bytes(**GOOD), ec.generate_private_key(ec.SECP384R1()))
    with pytest.raises(SignatureInvalid, match="another key signed it"):
        attest.verify_snp_signature(attest.parse_snp_report(other), b.chain().vcek)
    with pytest.raises(SignatureInvalid, match="SIGNATURE_ALGO 2"):
        attest.verify_snp_signature(
            attest.parse_snp_report(_signed(signature_algo=2)), b.chain().vcek
        )
    with pytest.raises(CertificateError, match="not an ECDSA P-384 key"):
        attest.verify_snp_signature(attest.parse_snp_report(_signed()), b.chain().ask)


def test_the_chain_in_either_order() -> None:
    c = b.chain()
    chain = attest.load_certificates(c.chain_pem(), name="cert_chain.pem")
    assert attest.verify_vcek_chain(c.vcek, chain) == (c.ark, c.ask)
    assert attest.verify_vcek_chain(c.vcek, chain[::-1]) == (c.ark, c.ask)


def test_a_chain_that_does_not_hold() -> None:
    milan, genoa = b.chain("Milan"), b.chain("Genoa")
    with pytest.raises(SignatureInvalid, match="VCEK signed by the ASK: issuer"):
        attest.verify_vcek_chain(milan.vcek, [genoa.ask, genoa.ark])
    with pytest.raises(SignatureInvalid, match="ASK signed by the ARK: issuer"):
        attest.verify_vcek_chain(milan.vcek, [milan.ask, genoa.ark])
    # same names, other keys: only the signatures can tell
    impostor = b.Chain("Milan", serial=30)
    with pytest.raises(SignatureInvalid, match="ASK signed by the ARK: the signature"):
        attest.verify_vcek_chain(milan.vcek, [milan.ask, impostor.ark])
    with pytest.raises(SignatureInvalid, match="VCEK signed by the ASK: the signature"):
        attest.verify_vcek_chain(milan.vcek, [impostor.ask, impostor.ark])
    with pytest.raises(CertificateError, match="holds 3 certificates"):
        attest.verify_vcek_chain(milan.vcek, [milan.ask, milan.ark, milan.ark])
    with pytest.raises(CertificateError, match="not a PEM or DER"):
        attest.load_certificates(b"junk", name="c.pem")


# ---------------------------------------------------------------- comparison

#: Every field a log with an ID block predicts, and a wrong value for each.
WRONG: dict[str, int | bytes] = {
    "measurement": bytes(48),
    "policy": 0x70000,
    "host_data": b"\xab" * 32,
    "family_id": b"\x00" * 16,
    "image_id": b"\x1f" * 16,
    "guest_svn": 6,
    "id_key_digest": b"\x01" * 48,
    "author_key_digest": b"\x02" * 48,
    "key_info": 0,  # AUTHOR_KEY_EN clear
}


def test_the_launch_report_matches() -> None:
    result = attest.check_report(
        attest.parse_report(_signed()), attest.expected_from_values(_values())
    )
    assert result.ok
    assert result.checked == (
        "measurement",
        "policy",
        "host_data",
        "family_id",
        "image_id",
        "guest_svn",
        "id_key_digest",
        "author_key_en",
        "author_key_digest",
    )


@pytest.mark.parametrize("field", sorted(WRONG))
def test_every_field_wrong_in_turn(field: str) -> None:
    report = attest.parse_report(_signed(**{field: WRONG[field]}))
    with pytest.raises(ReportMismatch) as info:
        attest.check_report(report, attest.expected_from_values(_values()))
    named = "author_key_en" if field == "key_info" else field
    assert [d.field for d in info.value.differences] == [named]
    d = info.value.differences[0]
    expected = {**GOOD, "author_key_en": 1}[named]
    got = {**WRONG, "author_key_en": 0}[named]
    text = {"policy": "{:#x}"}.get(named, "{}")
    if isinstance(expected, bytes) and isinstance(got, bytes):
        assert (d.expected, d.got) == (expected.hex(), got.hex())
    else:
        assert (d.expected, d.got) == (text.format(expected), text.format(got))
    assert info.value.exit_code == 1
    assert f"{named}: expected {d.expected}, got {d.got}" in str(info.value)


def test_every_difference_is_reported_not_only_the_first() -> None:
    report = attest.parse_report(_signed(measurement=bytes(48), host_data=bytes(32), guest_svn=1))
    result = attest.compare_report(report, attest.expected_from_values(_values()))
    assert [d.field for d in result.differences] == ["measurement", "host_data", "guest_svn"]


def test_without_identity_only_the_measurement_is_compared() -> None:
    values = ReferenceValues.from_settings("sev-snp", LD, {"vcpus": 1})
    result = attest.compare_report(
        attest.parse_report(_signed(policy=0x70000)), attest.expected_from_values(values)
    )
    assert result.ok
    assert result.checked == ("measurement",)


def test_a_set_matches_any_of_its_digests_and_names_the_configuration() -> None:
    other = hashlib.sha384(b"other").digest()
    s = ReferenceSet(
        "sev-snp",
        (
            Configuration.of(other, vcpu_type="EPYC-Milan", vcpus=1),
            Configuration.of(LD, vcpu_type="EPYC-Genoa", vcpus=4),
        ),
        POLICY,
    )
    result = attest.check_report(attest.parse_report(_signed()), attest.expected_from_set(s))
    assert [c.describe() for c in result.matched] == ["vcpu_type=EPYC-Genoa vcpus=4"]
    with pytest.raises(
        ReportMismatch, match="measurement: expected one of the 2 values of the set"
    ):
        attest.check_report(
            attest.parse_report(_signed(measurement=bytes(48))), attest.expected_from_set(s)
        )
    with pytest.raises(ReportMismatch, match=r"policy: expected 0x30000, got 0x70000"):
        attest.check_report(
            attest.parse_report(_signed(policy=0x70000)), attest.expected_from_set(s)
        )


def test_reference_documents_read_back() -> None:
    values = _values()
    from_doc = attest.expected_from_document(values.render("json"), name="rv.json")
    report = attest.parse_report(_signed())
    assert attest.compare_report(report, from_doc).ok
    assert {
        d.field
        for d in attest.compare_report(
            attest.parse_report(_signed(guest_svn=2)), from_doc
        ).differences
    } == {"guest_svn"}
    s = ReferenceSet("sev-snp", (Configuration.of(LD, vcpus=2),))
    assert attest.compare_report(
        report, attest.expected_from_document(s.render("json"), name="s")
    ).ok
    for bad in (
        "[",
        "[" * 100_000,
        "{}",
        '{"technology": "sev-snp"}',
        '{"technology": "sev-snp", "measurement": "00"}',
    ):
        with pytest.raises(CvmLaunchError) as info:
            attest.expected_from_document(bad, name="rv.json")
        assert info.value.exit_code == 2


# ---------------------------------------------------------------- TDX

MRTD = hashlib.sha384(b"mrtd").digest()
TD: dict[str, bytes] = {
    "mr_td": MRTD,
    "mr_config_id": b"\x11" * 48,
    "mr_owner": b"\x22" * 48,
    "mr_owner_config": b"\x33" * 48,
    "rtmr0": b"\x44" * 48,
    "rtmr3": b"\x47" * 48,
    "report_data": b"\x55" * 64,
    "td_attributes": bytes.fromhex("0000001000000000"),
    "xfam": bytes.fromhex("e702060000000000"),
}


def _tdx_values() -> ReferenceValues:
    tdx = TdxLaunchIdentity(b"\x11" * 48, b"\x22" * 48, b"\x33" * 48)
    return ReferenceValues.from_settings("tdx", MRTD, identity_settings(tdx=tdx))


@pytest.mark.parametrize(("version", "size"), [(4, 584), (5, 584), (5, 648)])
def test_tdx_quotes_v4_and_v5(version: int, size: int) -> None:
    extra = {"tee_tcb_svn_2": b"\x02" * 16, "mr_service_td": b"\x66" * 48} if size == 648 else {}
    q = attest.parse_report(b.tdx_quote(b.td_body(size, **TD, **extra), version=version))
    assert isinstance(q, attest.TdxQuote)
    assert (q.version, q.body_type, q.qe_svn, q.pce_svn) == (
        version,
        3 if size == 648 else 2,
        7,
        13,
    )
    for name, value in TD.items():
        assert getattr(q, name) == value, name
    assert q.tee_tcb_svn_2 == (b"\x02" * 16 if size == 648 else None)
    assert q.mr_service_td == (b"\x66" * 48 if size == 648 else None)
    assert q.signature_data == b"\x5a" * 64
    assert attest.check_report(q, attest.expected_from_values(_tdx_values())).checked == (
        "mr_td",
        "mr_config_id",
        "mr_owner",
        "mr_owner_config",
    )


@pytest.mark.parametrize("field", ["mr_td", "mr_config_id", "mr_owner", "mr_owner_config"])
def test_tdx_fields_wrong_in_turn(field: str) -> None:
    q = attest.parse_report(b.tdx_quote(b.td_body(**{**TD, field: b"\x99" * 48})))
    with pytest.raises(ReportMismatch) as info:
        attest.check_report(q, attest.expected_from_values(_tdx_values()))
    assert [(d.field, d.got) for d in info.value.differences] == [(field, "99" * 48)]


@pytest.mark.parametrize(
    ("quote", "error", "match"),
    [
        (
            b.tdx_quote(b.td_body(), version=3)[:8] + bytes(700),
            ReportFormatError,
            "truncated SEV-SNP",
        ),
        (b.tdx_quote(b.td_body(), version=5, body_type=1), ReportFormatError, "SGX enclave report"),
        (b.tdx_quote(b.td_body(), version=5, body_type=4), UnknownReportVersion, "body type 4"),
        (
            b.tdx_quote(b.td_body(648), version=5, body_type=2),
            ReportFormatError,
            "the descriptor says 648",
        ),
        (b.tdx_quote(b.td_body())[:600], ReportFormatError, "truncated TDX quote: 600 bytes"),
        (b.tdx_quote(b.td_body())[:-1], ReportFormatError, "the 64-byte signature data"),
    ],
)
def test_malformed_tdx_quotes(quote: bytes, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        attest.parse_report(quote, name="q.bin")


def test_quote_versions_and_tee_types() -> None:
    with pytest.raises(UnknownReportVersion, match="TDX quote version 3"):
        attest.parse_tdx_quote(b.tdx_quote(b.td_body(), version=3))
    with pytest.raises(ReportFormatError, match="TEE type 0x0 is not TDX"):
        attest.parse_tdx_quote(b.tdx_quote(b.td_body(), tee_type=0))
    with pytest.raises(ReportFormatError, match="a TDX quote cannot be checked against sev-snp"):
        attest.compare_report(
            attest.parse_report(b.tdx_quote(b.td_body(**TD))),
            attest.expected_from_values(_values()),
        )


def test_json_of_reports() -> None:
    r = attest.parse_snp_report(_signed(version=2))
    assert json.loads(json.dumps(r.as_dict()))["measurement"] == LD.hex()
    q = attest.parse_tdx_quote(b.tdx_quote(b.td_body(**TD)))
    assert q.as_dict()["signature_data_size"] == 64
    padded = attest.parse_tdx_quote(b.tdx_quote(b.td_body(**TD)) + bytes(7))
    assert padded.extra_bytes == bytes(7)  # kept, as go-tdx-guest keeps them; never checked
    assert padded.as_dict()["extra_bytes_size"] == 7


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([(4, 584), (5, 584), (5, 648)]),
    st.integers(min_value=0, max_value=800),
    st.lists(st.tuples(st.integers(0, 60), st.integers(0, 255)), max_size=4),
)
def test_damaged_quotes_give_a_quote_or_one_error(
    kind: tuple[int, int], cut: int, pokes: list[tuple[int, int]]
) -> None:
    """Truncated, extended or with header/descriptor bytes changed: a quote or exit 2."""
    version, size = kind
    raw = bytearray(b.tdx_quote(b.td_body(size, **TD), version=version))
    for offset, value in pokes:
        raw[offset] = value
    data = bytes(raw[:cut]) if cut < len(raw) else bytes(raw) + bytes(cut - len(raw))
    try:
        q = attest.parse_report(data)
    except CvmLaunchError as exc:
        assert exc.exit_code == 2  # noqa: PT017 - any error must be the exit-2 kind
    else:
        assert isinstance(q, attest.TdxQuote | attest.SnpReport)


# ---------------------------------------------------------------- a real report (known answer)


def _real() -> tuple[bytes, bytes, bytes]:
    report = bytes.fromhex(attest_file("report_milan.hex").read_text().strip())
    return (
        report,
        attest_file("vcek_milan.der").read_bytes(),
        attest_file("cert_chain_milan.pem").read_bytes(),
    )


def test_a_real_milan_report_verifies_with_amds_chain() -> None:
    """AMD's layout (R and S little endian), AMD's RSA-PSS chain, a real VCEK (serial 0)."""
    report, vcek_der, chain_pem = _real()
    r = attest.parse_snp_report(report, name="report_milan")
    assert (r.version, r.guest_svn, r.policy, r.vmpl, r.signature_algo) == (2, 0, 0x30000, 0, 1)
    assert r.measurement.hex() == attest_field("report_milan.hex", "measurement")
    assert r.cpuid_fam_id is None
    vcek = attest.load_certificate(vcek_der, name="vcek_milan.der")
    attest.verify_snp_signature(r, vcek)
    ark, ask = attest.verify_vcek_chain(vcek, attest.load_certificates(chain_pem, name="chain"))
    assert ark.subject.rfc4514_string().startswith("CN=ARK-Milan,O=Advanced Micro Devices")
    assert ask.subject.rfc4514_string().startswith("CN=SEV-Milan,O=Advanced Micro Devices")


def test_a_real_report_or_vcek_changed_fails_as_virtee_sev_expects() -> None:
    report, vcek_der, chain_pem = _real()
    vcek = attest.load_certificate(vcek_der, name="vcek")
    changed = bytearray(report)
    changed[21] ^= 0x80
    with pytest.raises(SignatureInvalid):
        attest.verify_snp_signature(attest.parse_snp_report(bytes(changed)), vcek)
    bad = bytearray(vcek_der)
    bad[40] ^= 0xFF
    chain = attest.load_certificates(chain_pem, name="chain")
    with pytest.raises(SignatureInvalid, match="VCEK signed by the ASK"):
        attest.verify_vcek_chain(attest.load_certificate(bytes(bad), name="bad"), chain)


def test_hex_and_base64_text_forms_are_the_same_report() -> None:
    import base64

    report, _, _ = _real()
    binary = attest.parse_report(report)
    wrapped = "\n".join(report.hex()[i : i + 64] for i in range(0, len(report) * 2, 64))
    assert attest.parse_report(wrapped.encode() + b"\n") == binary
    assert attest.parse_report(base64.b64encode(report)) == binary
    with pytest.raises(ReportFormatError, match="truncated SEV-SNP attestation report: 1183"):
        attest.parse_report(report[:-1].hex().encode())


SPR_E4 = "tdx_prod_quote_SPR_E4.dat"


def test_a_real_tdx_quote_v4_has_the_fields_go_tdx_guest_expects() -> None:
    """google/go-tdx-guest validate_test.go (TestTdxQuote) on tdx_prod_quote_SPR_E4.dat."""
    q = attest.parse_report(attest_file(SPR_E4).read_bytes())
    assert isinstance(q, attest.TdxQuote)
    assert (q.version, q.body_type, q.qe_svn, q.pce_svn) == (4, 2, 0, 0)
    assert q.qe_vendor_id.hex() == "939a7233f79c4ca9940a0db3957f0607"
    assert q.tee_tcb_svn.hex() == "03000400000000000000000000000000"
    assert q.mr_seam.hex() == attest_field(SPR_E4, "mr_seam")
    assert (q.td_attributes.hex(), q.xfam.hex()) == ("0000004000000000", "e71a060000000000")
    assert q.mr_td.hex() == attest_field(SPR_E4, "mr_td")
    assert q.mr_config_id == q.mr_owner == q.mr_owner_config == bytes(48)
    assert q.rtmr0.hex() == attest_field(SPR_E4, "rtmr0")
    assert q.rtmr1.hex().startswith("2c700b8ba9b85783f8be9fb9443647bd")
    assert q.rtmr2.hex().startswith("8652f0caaba7e215ea442dc36a4499d8")
    assert q.rtmr3 == bytes(48)
    assert q.extra_bytes == b"\nextra bytes(only for testing purpose)\n"


def test_a_tdx_quote_v5_with_a_tdx15_body() -> None:
    q = attest.parse_report(attest_file("quote_v5_sample.dat").read_bytes())
    assert isinstance(q, attest.TdxQuote)
    assert (q.version, q.body_type, q.extra_bytes) == (5, 3, b"")
    assert q.qe_vendor_id.hex() == "939a7233f79c4ca9940a0db3957f0607"  # Intel's QE
    assert q.tee_tcb_svn_2 is not None
    assert q.mr_service_td is not None
    assert len(q.signature_data) == 4300
