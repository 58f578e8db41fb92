"""Attestation evidence: SEV-SNP reports and TDX quotes, checked against reference values.

Rule 1: pure. Bytes in, typed reports out (:func:`parse_report`); comparison against the
reference values a launch log or a reference-value set predicts (:mod:`.compare`); SNP report
and VCEK chain signatures with ``cryptography`` (:mod:`.verify`). No file, no network.

Rule 2: the parsers' error discipline: malformed input raises
:class:`~cvmlaunch.attest.errors.ReportFormatError` (exit 2); a report that does not hold
raises a :class:`~cvmlaunch.errors.CheckFailed` (exit 1) naming every differing field.

TDX quote signatures are not verified (that needs Intel's collateral); see :mod:`.tdx_quote`.

Typical use::

    from cvmlaunch import attest

    report = attest.parse_report(data, name="report.bin")
    result = attest.check_report(report, attest.expected_from_values(values))
"""

from __future__ import annotations

from cvmlaunch import _lazy_exports

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cvmlaunch.attest.compare import (
        Comparison,
        Difference,
        Expected,
        check_report,
        compare_report,
        expected_from_document,
        expected_from_set,
        expected_from_values,
    )
    from cvmlaunch.attest.errors import (
        CertificateError,
        ReportFormatError,
        ReportMismatch,
        SignatureInvalid,
        UnknownReportVersion,
    )
    from cvmlaunch.attest.snp_report import SnpReport, parse_snp_report
    from cvmlaunch.attest.tdx_quote import TdxQuote, parse_tdx_quote
    from cvmlaunch.attest.verify import (
        load_certificate,
        load_certificates,
        verify_snp_signature,
        verify_vcek_chain,
    )
    from cvmlaunch.layout import Buffer

__all__ = [
    "CertificateError",
    "Comparison",
    "Difference",
    "Expected",
    "ReportFormatError",
    "ReportMismatch",
    "SignatureInvalid",
    "SnpReport",
    "TdxQuote",
    "UnknownReportVersion",
    "check_report",
    "compare_report",
    "expected_from_document",
    "expected_from_set",
    "expected_from_values",
    "load_certificate",
    "load_certificates",
    "parse_report",
    "parse_snp_report",
    "parse_tdx_quote",
    "verify_snp_signature",
    "verify_vcek_chain",
]

_EXPORTS: dict[str, str] = {
    "CertificateError": "errors",
    "Comparison": "compare",
    "Difference": "compare",
    "Expected": "compare",
    "ReportFormatError": "errors",
    "ReportMismatch": "errors",
    "SignatureInvalid": "errors",
    "SnpReport": "snp_report",
    "TdxQuote": "tdx_quote",
    "UnknownReportVersion": "errors",
    "check_report": "compare",
    "compare_report": "compare",
    "expected_from_document": "compare",
    "expected_from_set": "compare",
    "expected_from_values": "compare",
    "load_certificate": "verify",
    "load_certificates": "verify",
    "parse_snp_report": "snp_report",
    "parse_tdx_quote": "tdx_quote",
    "verify_snp_signature": "verify",
    "verify_vcek_chain": "verify",
}


def parse_report(data: Buffer, *, name: str = "report") -> SnpReport | TdxQuote:
    """An SEV-SNP ATTESTATION_REPORT or a TDX quote (v4/v5), told apart by their headers.

    Binary as the firmware returns it (``snpguest report`` writes that), or the same bytes as
    hex or base64 text (surrounding whitespace and line breaks ignored): binary evidence is
    never all printable ASCII, so the forms cannot be confused.

    Raises:
        ReportFormatError: malformed, truncated or oversized input.
        UnknownReportVersion: a version the parsers do not know.
    """
    from cvmlaunch.attest.snp_report import parse_snp_report
    from cvmlaunch.attest.tdx_quote import looks_like_tdx_quote, parse_tdx_quote

    raw = _from_text(data)
    if looks_like_tdx_quote(raw):
        return parse_tdx_quote(raw, name=name)
    return parse_snp_report(raw, name=name)


def _from_text(data: Buffer) -> bytes:
    """``data`` decoded from hex or base64 text when it is such text, else as it is."""
    raw = bytes(data)
    if not raw or not raw.isascii() or not all(32 <= b < 127 or b in b"\t\n\r" for b in raw):
        return raw
    compact = b"".join(raw.split())
    try:
        return bytes.fromhex(compact.decode())
    except ValueError:
        pass
    import base64
    import binascii

    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        return raw


__getattr__, __dir__ = _lazy_exports(globals(), _EXPORTS)
