"""A launch log as a table (``cvmlaunch log show``): the header, then one line per record.

Rule 1: everything a log names came from whoever wrote it, so every line returned is safe to
print as it is: text from the log goes through :func:`cvmlaunch.text.printable` before the
columns are measured (an escape widens its cell, and the table stays aligned).

Rule 2: digests are shortened to a 16-digit prefix unless ``full``; integers in the settings
are shown in hex, except the vCPU count and sizes (decimal); host details are marked as not
measured (:data:`~cvmlaunch.measure.log.HOST_DETAILS`).

Pure: a log in, lines out.
"""

from __future__ import annotations

from cvmlaunch.measure.log import HOST_DETAILS, MeasurementLog
from cvmlaunch.text import printable

__all__ = ["show_lines"]

#: How many hex digits of a digest are shown: a prefix, or (``full``) the whole SHA-384.
_SHORT, _FULL = 16, 96


def _short(value: bytes | None, width: int) -> str:
    return "-" if value is None else value.hex()[:width]


def show_lines(log: MeasurementLog, *, full: bool = False) -> list[str]:
    """``log`` as text lines: technology and tool, settings, inputs, the initial digest, a
    table of the records (sequence, op, GPA, size, page type, measured, source, contents,
    running digest) and the final digest; escaped (Rule 1)."""
    width = _FULL if full else _SHORT
    h = log.header
    lines = [
        printable(f"{h.technology.value} ({h.algorithm}), written by {h.tool} {h.tool_version}")
    ]
    for key, value in h.settings.items():
        shown: object = value
        if isinstance(value, int) and not isinstance(value, bool) and key != "vcpus":
            shown = hex(value) if not key.endswith("size") else value
        note = "  (host detail, not measured)" if key in HOST_DETAILS else ""
        lines.append(printable(f"  {key} = {shown}{note}"))
    for item in h.inputs:
        digest = item.sha256 if item.sha256 is not None else item.sha384
        lines.append(
            printable(
                f"  input {item.role}: {item.name} ({item.size} bytes) {_short(digest, width)}"
            )
        )
    if h.initial_digest is not None:
        lines.append(f"  initial digest {_short(h.initial_digest, width)}")
    rows = [("#", "op", "GPA", "size", "type", "meas", "source", "contents", "digest after")]
    for e in log.entries:
        rows.append(
            (
                str(e.seq),
                e.op.value,
                f"{e.gpa:#x}",
                f"{e.size:#x}",
                e.page_type.name,
                "yes" if e.measured else "no",
                printable(e.provenance.describe()),
                "zero" if e.content_sha384 is None else _short(e.content_sha384, width),
                _short(e.digest_after, width),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    lines.append(f"final digest {log.footer.digest.hex()}")
    return lines
