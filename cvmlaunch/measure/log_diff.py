"""Comparing two launch logs: every differing setting, the first diverging range, a verdict.

Rule 1: a diff explains. :func:`diff_logs` lists every header difference (technology,
algorithm, each setting, the initial digest, each input's size and hashes, the tool version),
then the first record where the two launches diverge, then whether the final digests differ:
the verdict a caller's exit status follows (two launches can differ in settings that never
enter the digest, such as the SNP policy or host data; those are listed, and the digests are
still equal).

Rule 2: values are shown readably: long values (an ID auth is 5.5 KB of base64) are shortened
to their start, their length and their SHA-256; counts and sizes in decimal, GPAs and
register-like settings in hex.

Pure: logs in, values out.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cvmlaunch.layout import PAGE_SIZE, PageType
from cvmlaunch.log_entry import LogEntry
from cvmlaunch.measure.log import HOST_DETAILS, MeasurementLog, SettingValue

__all__ = ["LogDiff", "LogDifference", "diff_logs", "host_differences", "show_value"]

#: Values longer than this many characters are shortened (:func:`show_value`).
SHORT_VALUE = 40
#: Settings whose integers read best in hex (addresses, register values, bit fields);
#: other integers (counts, sizes) are shown in decimal.
_HEX_SETTINGS = frozenset({"vcpu_sig", "guest_features", "ap_reset_address", "pvh_entry"})


def show_value(value: object, *, key: str = "") -> str:
    """``value`` as text for a diff: ``(absent)``/``(none)``, ``true``/``false``, integers in
    decimal (hex for GPAs and the settings in ``_HEX_SETTINGS``), bytes as hex; text longer
    than :data:`SHORT_VALUE` characters as ``start… (N chars, sha256 abcd…)``."""
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return str(value.name if isinstance(value, PageType) else value.value)
    if isinstance(value, int):
        return hex(value) if key in _HEX_SETTINGS or key == "gpa" else str(value)
    text = value.hex() if isinstance(value, bytes) else str(value)
    if len(text) <= SHORT_VALUE:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return f"{text[:16]}… ({len(text)} chars, sha256 {digest}…)"


@dataclass(frozen=True, slots=True)
class LogDifference:
    """One place where two logs differ.

    Args:
        where: ``header``, ``record N`` or ``footer``.
        what: the field that differs (e.g. ``setting vcpus``, ``gpa``, ``content_sha384``).
        a: the value in the first log, as text (:func:`show_value`).
        b: the value in the second log, as text.
    """

    where: str
    what: str
    a: str
    b: str

    def describe(self) -> str:
        """One line, e.g. ``record 7: gpa differs: 0x810000 vs 0x811000``."""
        return f"{self.where}: {self.what} differs: {self.a} vs {self.b}"

    def to_json(self) -> dict[str, str]:
        """The difference as a JSON object."""
        return {"where": self.where, "what": self.what, "a": self.a, "b": self.b}


@dataclass(frozen=True, slots=True)
class LogDiff:
    """The result of :func:`diff_logs`.

    Args:
        header: every header difference, in a fixed order (technology, algorithm, settings
            by name, initial digest, inputs by role, tool version); not the host details.
        first_range: the first record where the launches diverge (a field of it, or a record
            only one log has), or None.
        digest_a: the first log's final digest.
        digest_b: the second log's.
        host: the host details that differ (:data:`~cvmlaunch.measure.log.HOST_DETAILS`:
            non-measured metadata about the host, not the launch).
        first_event: the first RTMR event that differs, named (``"RTMR2 command line:
            digest …"``; :func:`cvmlaunch.measure.rtmr.first_difference`), or None.
        rtmrs_a: the first log's footer RTMRs (empty: no RTMR events).
        rtmrs_b: the second log's.
    """

    header: tuple[LogDifference, ...]
    first_range: LogDifference | None
    digest_a: bytes
    digest_b: bytes
    host: tuple[LogDifference, ...] = ()
    first_event: str | None = None
    rtmrs_a: tuple[bytes | None, ...] = ()
    rtmrs_b: tuple[bytes | None, ...] = ()

    @property
    def differing_rtmrs(self) -> tuple[int, ...]:
        """The RTMRs whose footer values differ (a log without events has none)."""
        a = self.rtmrs_a or (None,) * len(self.rtmrs_b)
        b = self.rtmrs_b or (None,) * len(self.rtmrs_a)
        return tuple(i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y)

    @property
    def same_digest(self) -> bool:
        """Whether the final digests (and the RTMRs the logs carry) are equal (the verdict;
        exit 0 when they are)."""
        return self.digest_a == self.digest_b and not self.differing_rtmrs

    @property
    def identical(self) -> bool:
        """Whether the logs describe the same launch: nothing differs but host details."""
        return (
            not self.header
            and self.first_range is None
            and self.first_event is None
            and self.same_digest
        )

    def verdict(self) -> str:
        """The last line of the explanation."""
        if self.same_digest:
            extra = (
                f", {len(self.header)} header difference(s) outside the digest"
                if self.header or self.first_range is not None
                else ""
            )
            rtmrs = " and RTMRs" if self.rtmrs_a else ""
            return f"verdict: same final digest{rtmrs} {show_value(self.digest_a)}{extra}"
        if self.digest_a == self.digest_b:
            names = ", ".join(f"RTMR{i}" for i in self.differing_rtmrs)
            return f"verdict: same final digest, the RTMRs differ: {names}"
        return f"verdict: the final digests differ: {self.digest_a.hex()} vs {self.digest_b.hex()}"

    def lines(self) -> Iterator[str]:
        """The explanation: each header difference, the first diverging range, the verdict."""
        if self.identical:
            yield "the logs describe the same launch"
        for d in self.host:
            yield f"  {d.what} differs (not measured): {d.a} vs {d.b}"
        for d in self.header:
            yield d.describe()
        if self.first_range is not None:
            yield f"first diverging range: {self.first_range.describe()}"
        elif not self.identical:
            yield "the records are the same"
        if self.first_event is not None:
            yield f"first differing RTMR event: {self.first_event}"
        yield self.verdict()

    def to_json(self) -> dict[str, Any]:
        """The result as a JSON object (``log diff --json``)."""
        return {
            "header": [d.to_json() for d in self.header],
            "first_range": None if self.first_range is None else self.first_range.to_json(),
            "digest_a": self.digest_a.hex(),
            "digest_b": self.digest_b.hex(),
            "same_digest": self.same_digest,
            "host": [d.to_json() for d in self.host],
            "first_event": self.first_event,
            "differing_rtmrs": [f"rtmr{i}" for i in self.differing_rtmrs],
        }


def _header_differences(a: MeasurementLog, b: MeasurementLog) -> Iterator[LogDifference]:
    ha, hb = a.header, b.header
    for what, va, vb in (
        ("technology", ha.technology, hb.technology),
        ("algorithm", ha.algorithm, hb.algorithm),
    ):
        if va != vb:
            yield LogDifference("header", what, show_value(va), show_value(vb))
    absent = "(absent)"
    for key in sorted((set(ha.settings) | set(hb.settings)) - HOST_DETAILS):
        va_s: SettingValue | str = ha.settings.get(key, absent)
        vb_s: SettingValue | str = hb.settings.get(key, absent)
        if va_s != vb_s or type(va_s) is not type(vb_s):
            yield LogDifference(
                "header",
                f"setting {key}",
                absent if va_s is absent else show_value(va_s, key=key),
                absent if vb_s is absent else show_value(vb_s, key=key),
            )
    if ha.initial_digest != hb.initial_digest:
        yield LogDifference(
            "header",
            "initial digest",
            show_value(ha.initial_digest),
            show_value(hb.initial_digest),
        )
    roles = [i.role for i in ha.inputs] + [i.role for i in hb.inputs if ha.input(i.role) is None]
    for role in roles:
        ia, ib = ha.input(role), hb.input(role)
        if ia is None or ib is None:
            yield LogDifference(
                "header",
                f"input {role}",
                absent if ia is None else "present",
                absent if ib is None else "present",
            )
            continue
        if ia.size != ib.size:
            yield LogDifference("header", f"input {role} size", str(ia.size), str(ib.size))
        for what, ha_, hb_ in (("sha256", ia.sha256, ib.sha256), ("sha384", ia.sha384, ib.sha384)):
            if ha_ is not None and hb_ is not None and ha_ != hb_:
                yield LogDifference(
                    "header", f"input {role} {what}", show_value(ha_), show_value(hb_)
                )
    if (ha.tool, ha.tool_version) != (hb.tool, hb.tool_version):
        yield LogDifference(
            "header",
            "tool",
            f"{ha.tool} {ha.tool_version}",
            f"{hb.tool} {hb.tool_version}",
        )


def host_differences(a: MeasurementLog, b: MeasurementLog) -> tuple[LogDifference, ...]:
    """The :data:`~cvmlaunch.measure.log.HOST_DETAILS` settings in which two logs' headers
    differ (non-measured metadata: two launches that differ only there describe the same
    launch)."""
    out = []
    absent = "(absent)"
    for key in sorted(HOST_DETAILS & (set(a.header.settings) | set(b.header.settings))):
        va: SettingValue | str = a.header.settings.get(key, absent)
        vb: SettingValue | str = b.header.settings.get(key, absent)
        if va != vb or type(va) is not type(vb):
            out.append(
                LogDifference(
                    "header",
                    f"host detail {key}",
                    absent if va is absent else show_value(va, key=key),
                    absent if vb is absent else show_value(vb, key=key),
                )
            )
    return tuple(out)


def _record_difference(ea: LogEntry, eb: LogEntry) -> LogDifference | None:
    where = f"record {ea.seq}"
    pairs: list[tuple[str, object, object]] = [
        ("op", ea.op, eb.op),
        ("gpa", ea.gpa, eb.gpa),
        ("size", ea.size, eb.size),
        ("page_type", ea.page_type, eb.page_type),
        ("measured", ea.measured, eb.measured),
        ("content_sha384", _contents(ea), _contents(eb)),
    ]
    for what, va, vb in pairs:
        if va != vb:
            key = "gpa" if what == "gpa" else ""
            return LogDifference(where, what, show_value(va, key=key), show_value(vb, key=key))
    for i, (pa, pb) in enumerate(zip(ea.page_sha384, eb.page_sha384, strict=False)):
        if pa != pb:
            gpa = ea.gpa + i * PAGE_SIZE
            return LogDifference(
                where, f"page_sha384[{i}] (GPA {gpa:#x})", show_value(pa), show_value(pb)
            )
    if len(ea.page_sha384) != len(eb.page_sha384):
        return LogDifference(
            where, "page hash count", str(len(ea.page_sha384)), str(len(eb.page_sha384))
        )
    pa_, pb_ = ea.provenance, eb.provenance
    if (pa_.kind, pa_.offset, pa_.index) != (pb_.kind, pb_.offset, pb_.index):
        return LogDifference(where, "provenance", pa_.describe(), pb_.describe())
    if ea.digest_after != eb.digest_after:
        return LogDifference(
            where, "digest_after", show_value(ea.digest_after), show_value(eb.digest_after)
        )
    return None


def _first_range(a: MeasurementLog, b: MeasurementLog) -> LogDifference | None:
    for ea, eb in zip(a.entries, b.entries, strict=False):
        found = _record_difference(ea, eb)
        if found is not None:
            return found
    if len(a.entries) != len(b.entries):
        n = min(len(a.entries), len(b.entries))
        return LogDifference(
            f"record {n}",
            "presence",
            "present" if len(a.entries) > n else "(absent)",
            "present" if len(b.entries) > n else "(absent)",
        )
    return None


def diff_logs(a: MeasurementLog, b: MeasurementLog) -> LogDiff:
    """Explain how two logs differ.

    Header: technology, algorithm, every setting (by name; the host details apart, see
    :func:`host_differences`), the initial digest, each input's
    size and hashes (by role; names are informational, like provenance names), the tool.
    Records: the first that differs in op, GPA, size, page type, measured flag, contents
    hash, page hashes (naming the page), provenance (kind, offset, index) or running digest,
    or the first record only one log has. Then the final digests.

    RTMR events (format version 4): the first event that differs, per RTMR in log order,
    named by its description; the footers' RTMRs enter the verdict.

    Returns:
        The differences and the verdict (:attr:`LogDiff.same_digest`).
    """
    from cvmlaunch.measure.rtmr import first_difference

    return LogDiff(
        header=tuple(_header_differences(a, b)),
        first_range=_first_range(a, b),
        digest_a=a.footer.digest,
        digest_b=b.footer.digest,
        host=host_differences(a, b),
        first_event=first_difference(a.events, b.events),
        rtmrs_a=a.footer.rtmrs,
        rtmrs_b=b.footer.rtmrs,
    )


def _contents(entry: LogEntry) -> object:
    """A record's ``content_sha384`` for a diff: the hash, or ``zero`` for the zero marker."""
    return "zero (marker)" if entry.content_sha384 is None else entry.content_sha384
