"""Compare an attestation report with the reference values a log or a set predicts.

Rule 1: every field the reference values predict is compared, and every difference is
reported (expected vs got), not only the first. What they do not predict (REPORT_DATA, TCB
values, RTMRs unless the values carry them, ...) is not compared and is listed as such.

Rule 2: the measurement may be one of a set (:class:`~cvmlaunch.measure.reference_set.
ReferenceSet`): the report matches when its MEASUREMENT / MRTD is any of them, and the
configurations with that digest are named.

What an SEV-SNP report carries for a launch (SNP Firmware ABI, SNP_LAUNCH_FINISH and
ATTESTATION_REPORT): MEASUREMENT the launch digest, POLICY the guest policy, HOST_DATA as
given; with an ID block, FAMILY_ID, IMAGE_ID and GUEST_SVN from it, ID_KEY_DIGEST the SHA-384
of the ID key, and AUTHOR_KEY_EN with AUTHOR_KEY_DIGEST when an author key signed the ID key.
A TDX quote carries MRTD and, as given at TD creation, MRCONFIGID, MROWNER, MROWNERCONFIG;
RTMR0-3 as the TD left them (compared where the reference values predict them: reference-values
--rtmr-events).

Pure: typed reports and reference values in, differences out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from cvmlaunch.attest.errors import ReportFormatError, ReportMismatch
from cvmlaunch.attest.snp_report import SnpReport
from cvmlaunch.attest.tdx_quote import TdxQuote

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cvmlaunch.measure.reference import ReferenceValues
    from cvmlaunch.measure.reference_set import Configuration, ReferenceSet

__all__ = [
    "Comparison",
    "Difference",
    "Expected",
    "check_report",
    "compare_report",
    "expected_from_document",
    "expected_from_set",
    "expected_from_values",
]

Value = bytes | int | bool


@dataclass(frozen=True, slots=True)
class Difference:
    """One report field that differs: its name and both values as text."""

    field: str
    expected: str
    got: str

    def as_dict(self) -> dict[str, str]:
        """JSON form."""
        return {"field": self.field, "expected": self.expected, "got": self.got}


@dataclass(frozen=True, slots=True)
class Expected:
    """What a report must hold.

    Args:
        technology: ``sev-snp`` or ``tdx``.
        measurements: the accepted MEASUREMENT (SNP) or MRTD (TDX) values.
        fields: other report fields that must be equal, by report field name.
        configurations: the set's configurations (empty for a single launch).
    """

    technology: str
    measurements: tuple[bytes, ...]
    fields: tuple[tuple[str, Value], ...] = ()
    configurations: tuple[Configuration, ...] = ()

    @property
    def measurement_field(self) -> str:
        """The report's name for the launch digest."""
        return "measurement" if self.technology == "sev-snp" else "mr_td"


@dataclass(frozen=True, slots=True)
class Comparison:
    """The outcome of :func:`compare_report`.

    Args:
        checked: the fields compared, in order.
        differences: those that differ.
        matched: the set's configurations whose digest the report carries.
    """

    checked: tuple[str, ...]
    differences: tuple[Difference, ...]
    matched: tuple[Configuration, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether every compared field holds."""
        return not self.differences


def _text(name: str, value: Value) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return f"{value:#x}" if name == "policy" else str(value)
    return value.hex()


def expected_from_values(values: ReferenceValues) -> Expected:
    """What a report of the launch ``values`` describes must hold (see the module doc)."""
    fields: list[tuple[str, Value]] = []
    if values.is_snp:
        if values.policy is not None:
            fields.append(("policy", values.policy.value))
        if values.host_data is not None:
            fields.append(("host_data", values.host_data))
        block, auth = values.id_block, values.id_auth
        if block is not None and auth is not None:
            fields += [
                ("family_id", block.family_id),
                ("image_id", block.image_id),
                ("guest_svn", block.guest_svn),
                ("id_key_digest", auth.id_key_digest),
                ("author_key_en", auth.has_author_key),
                ("author_key_digest", values.author_key_digest or bytes(48)),
            ]
        return Expected("sev-snp", (values.measurement,), tuple(fields))
    if values.technology == "tdx":
        from cvmlaunch.launch_identity import TdxLaunchIdentity

        tdx = values.tdx or TdxLaunchIdentity()
        fields = [
            ("mr_config_id", tdx.mrconfigid),
            ("mr_owner", tdx.mrowner),
            ("mr_owner_config", tdx.mrownerconfig),
        ]
        fields += [(f"rtmr{i}", r) for i, r in enumerate(values.rtmrs or ()) if r is not None]
        return Expected("tdx", (values.measurement,), tuple(fields))
    raise ReportFormatError(f"no attestation report carries {values.technology} values")


def expected_from_set(values: ReferenceSet) -> Expected:
    """What a report of any configuration of ``values`` must hold."""
    fields: tuple[tuple[str, Value], ...] = ()
    if values.policy is not None:
        fields = (("policy", values.policy.value),)
    return Expected(values.technology, values.measurements, fields, values.configurations)


_SNP_DOC = {
    "policy": None,
    "host_data": 32,
    "id_key_digest": 48,
    "author_key_digest": 48,
    "family_id": 16,
    "image_id": 16,
    "guest_svn": None,
}
_TDX_DOC = {
    "mr_config_id": 48,
    "mr_owner": 48,
    "mr_owner_config": 48,
    **{f"rtmr{i}": 48 for i in range(4)},
}


def expected_from_document(text: str, *, name: str) -> Expected:
    """Read reference values written by ``cvmlaunch reference-values`` as JSON: a set
    (``cvmlaunch-reference-set``) or one launch's values. A null value is not compared.

    Raises:
        ReportFormatError: not JSON, or values of the wrong form.
        ImageError: a malformed set (from :meth:`ReferenceSet.from_dict`).
    """
    from cvmlaunch.measure.reference_set import SET_FORMAT, ReferenceSet

    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ReportFormatError(
            f"not a JSON document ({type(exc).__name__})", source=name
        ) from None
    if isinstance(doc, dict) and doc.get("format") == SET_FORMAT:
        return expected_from_set(ReferenceSet.from_dict(doc, name=name))
    if not isinstance(doc, dict) or doc.get("technology") not in ("sev-snp", "tdx"):
        raise ReportFormatError(
            "not reference values (a JSON object with technology sev-snp or tdx)", source=name
        )
    technology = str(doc["technology"])
    key, sizes = ("measurement", _SNP_DOC) if technology == "sev-snp" else ("mr_td", _TDX_DOC)
    measurement = _doc_bytes(doc, key, 48, name)
    if measurement is None:
        raise ReportFormatError(f"{key} is missing", source=name)
    fields: list[tuple[str, Value]] = []
    for field, size in sizes.items():
        if doc.get(field) is None:
            continue
        if size is None:
            fields.append((field, _doc_int(doc, field, name)))
        else:
            value = _doc_bytes(doc, field, size, name)
            assert value is not None
            fields.append((field, value))
    return Expected(technology, (measurement,), tuple(fields))


def _doc_bytes(doc: dict[str, object], key: str, size: int, name: str) -> bytes | None:
    value = doc.get(key)
    if value is None:
        return None
    try:
        raw = bytes.fromhex(value) if isinstance(value, str) else None
    except ValueError:
        raw = None
    if raw is None or len(raw) != size:
        raise ReportFormatError(f"{key} must be {2 * size} hex digits", source=name)
    return raw


def _doc_int(doc: dict[str, object], key: str, name: str) -> int:
    value = doc.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value, 0)
        except ValueError:
            pass
    raise ReportFormatError(f"{key} must be an integer or 0x-hex", source=name)


def _report_value(report: SnpReport | TdxQuote, field: str) -> Value:
    value: Value = getattr(report, field)
    return value


def compare_report(report: SnpReport | TdxQuote, expected: Expected) -> Comparison:
    """Compare every field ``expected`` predicts; collect every difference.

    Raises:
        ReportFormatError: an SNP report against TDX values or the reverse.
    """
    is_snp = isinstance(report, SnpReport)
    if is_snp != (expected.technology == "sev-snp"):
        kind = "an SEV-SNP report" if is_snp else "a TDX quote"
        raise ReportFormatError(f"{kind} cannot be checked against {expected.technology} values")
    differences: list[Difference] = []
    field = expected.measurement_field
    got = _report_value(report, field)
    assert isinstance(got, bytes)
    matched: tuple[Configuration, ...] = ()
    if got not in expected.measurements:
        if len(expected.measurements) == 1:
            want = expected.measurements[0].hex()
        else:
            want = f"one of the {len(expected.measurements)} values of the set"
        differences.append(Difference(field, want, got.hex()))
    else:
        matched = tuple(c for c in expected.configurations if c.measurement == got)
    checked = [field]
    for name, value in expected.fields:
        checked.append(name)
        actual = _report_value(report, name)
        if actual != value:
            differences.append(Difference(name, _text(name, value), _text(name, actual)))
    return Comparison(tuple(checked), tuple(differences), matched)


def check_report(report: SnpReport | TdxQuote, expected: Expected) -> Comparison:
    """:func:`compare_report`, raising when a field differs.

    Raises:
        ReportMismatch: naming every differing field (exit 1).
        ReportFormatError: see :func:`compare_report`.
    """
    result = compare_report(report, expected)
    if result.differences:
        raise ReportMismatch(result.differences)
    return result
