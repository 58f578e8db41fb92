"""The check of a PVH guest's own report against the launch log.

Rule 1: pure. This module parses the guest's serial output and compares its digests with the
log's records; it does no I/O and never imports the KVM layer. The plan the guest reports on
is built by :func:`cvmlaunch.plan.pvh.pvh_launch` (where the guest contract is written down).

Rule 2: the report on COM1, one line per range: ``range <i> 0x<gpa>+0x<size> sha384 <hex>``
(or ``... unreachable`` for a range the guest cannot address), then ``end <count>``.

Rule 3: the launch succeeds only when, for every listed range, the SHA-384 the guest computed
over guest memory equals the ``content_sha384`` of the launch-log record for that range.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cvmlaunch.errors import CheckFailed, GuestError, MeasurementMismatch
from cvmlaunch.layout import Region
from cvmlaunch.log_entry import LogEntry, LogOp

__all__ = ["GuestDigest", "GuestReport", "check_report", "parse_report"]


@dataclass(frozen=True, slots=True)
class GuestDigest:
    """One ``range`` line of the guest's report.

    Args:
        index: the range's index in the table.
        gpa: first GPA, as the guest read it from the table.
        size: bytes, as the guest read it.
        sha384: the digest the guest computed, or None if it could not reach the range.
    """

    index: int
    gpa: int
    size: int
    sha384: bytes | None


@dataclass(frozen=True, slots=True)
class GuestReport:
    """The guest's report: its ``range`` lines and its ``end`` count (None if it never ended)."""

    digests: tuple[GuestDigest, ...]
    end: int | None


_RANGE_LINE = re.compile(
    r"^range (\d+) 0x([0-9a-f]+)\+0x([0-9a-f]+) (?:sha384 ([0-9a-f]{96})|(unreachable))$"
)
_END_LINE = re.compile(r"^end (\d+)$")


def parse_report(text: str) -> GuestReport:
    """Parse the guest's serial output (other lines are ignored).

    Raises:
        GuestError: a ``range`` line out of sequence.
    """
    digests: list[GuestDigest] = []
    end: int | None = None
    for line in text.splitlines():
        line = line.strip()
        m = _RANGE_LINE.match(line)
        if m:
            index = int(m.group(1))
            if index != len(digests):
                raise GuestError(f"guest report: range {index} out of sequence in {line!r}")
            digest = bytes.fromhex(m.group(4)) if m.group(4) else None
            digests.append(GuestDigest(index, int(m.group(2), 16), int(m.group(3), 16), digest))
            continue
        m = _END_LINE.match(line)
        if m:
            end = int(m.group(1))
    return GuestReport(tuple(digests), end)


def _describe(entry: LogEntry) -> str:
    return f"range [{entry.gpa:#x}-{entry.gpa + entry.size:#x}) ({entry.provenance.describe()})"


def check_report(report: GuestReport, hashed: Iterable[Region], log: Sequence[LogEntry]) -> int:
    """Check the guest's digests against the log's content hashes, range by range.

    Args:
        report: what the guest printed.
        hashed: the ranges of the range table, in table order.
        log: the launch measurement log (what was populated).

    Returns:
        The number of ranges checked.

    Raises:
        MeasurementMismatch: the guest's digest of a range differs from the log's; the message
            names the range.
        CheckFailed: the guest's report is incomplete, lists other ranges than the table, or a
            range has no log record.
    """
    ranges = list(hashed)
    # pre-fault records copy nothing: the contents a range was given are in its copy record
    by_range = {(e.gpa, e.size): e for e in log if e.op is not LogOp.PRE_FAULT}
    if report.end is None:
        raise CheckFailed(
            f"the guest's report is incomplete: {len(report.digests)} of {len(ranges)} ranges "
            "and no end line"
        )
    if report.end != len(ranges) or len(report.digests) != len(ranges):
        raise CheckFailed(
            f"the guest reported {len(report.digests)} ranges (end {report.end}), "
            f"the table lists {len(ranges)}"
        )
    for region, got in zip(ranges, report.digests, strict=True):
        entry = by_range.get((region.gpa, region.size))
        if entry is None:
            raise CheckFailed(
                f"no launch-log record covers range [{region.gpa:#x}-{region.end:#x}) "
                f"({region.provenance.describe()})"
            )
        if (got.gpa, got.size) != (region.gpa, region.size):
            raise CheckFailed(
                f"guest range {got.index} is {got.gpa:#x}+{got.size:#x}, the table says "
                f"{region.gpa:#x}+{region.size:#x}"
            )
        if got.sha384 is None:
            raise CheckFailed(f"the guest could not address {_describe(entry)}")
        # a range the log marks zero: the guest hashed its bytes, the host hashes zeros
        if entry.content_sha384 is None:
            from cvmlaunch.measure.log import zero_range_sha384

            want = zero_range_sha384(entry.size)
        else:
            want = entry.content_sha384
        if got.sha384 != want:
            raise MeasurementMismatch(
                f"guest digest of {_describe(entry)}", expected=want, actual=got.sha384
            )
    return len(ranges)
