"""Struct layouts declared once, as tables of ``(name, offset, format)`` rows.

Rule 1: a table declares every byte. Each row starts where the previous one ends, the first
at the table's ``start`` and the last ending at its ``end``: the spec's offsets are written
down and checked, never implied by position. A reserved range is a row too (a pad format
such as ``"4x"``, which yields no value, or a bytes format such as ``"16s"`` when the reader
keeps it). A gap, an overlap, a repeated name or a row that is not exactly one item is
refused when the table is made (``ValueError``: a bug in the declaration, found at import).

Rule 2: little-endian and unaligned (``"<"``), as every firmware and on-disk format here is.
The :class:`struct.Struct` is derived from the rows, so fields are paired with values by
name, never by their position in a format string.

Rule 3: offsets are the spec's: relative to the start of the record the spec's table
describes (the Linux setup header's rows start at 0x1F1, its offset in the kernel file).
``base`` arguments say where that record starts in a buffer.

This module imports only the standard library's :mod:`struct` (it is on the start-up path of
``cvmlaunch measure snp``) and nothing from cvmlaunch.
"""

from __future__ import annotations

import struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["StructTable"]

#: The :mod:`struct` codes a row may use: integers of each size, a bool, bytes, padding.
_SCALARS = frozenset("BHIQbhiq?")
_RUNS = frozenset("sx")  # the codes that take a count and still make one item (or none)


class StructTable:
    """One record layout: its rows, and the :class:`struct.Struct` derived from them.

    Args:
        name: what the spec calls the record (for messages), e.g. ``"struct setup_header"``.
        rows: ``(name, offset, format)`` for every field in order; ``format`` is one
            :mod:`struct` item without a byte-order prefix (``"B"``, ``"Q"``, ``"48s"``, or a
            pad ``"4x"`` that yields no value).
        end: the offset just past the record, as the spec gives it.

    Raises:
        ValueError: a gap or overlap between rows, a repeated name, a format that is not one
            item, or a last row that does not end at ``end``.
    """

    __slots__ = ("_name_set", "end", "name", "names", "offsets", "rows", "start", "struct")

    def __init__(self, name: str, rows: tuple[tuple[str, int, str], ...], *, end: int) -> None:
        if not rows:
            raise ValueError(f"{name}: no rows")
        at = rows[0][1]
        offsets: dict[str, int] = {}
        names: list[str] = []
        for field, offset, fmt in rows:
            if field in offsets:
                raise ValueError(f"{name}: field {field!r} declared twice")
            if offset != at:
                raise ValueError(
                    f"{name}: field {field!r} at {offset:#x}, but the previous field ends at "
                    f"{at:#x}"
                )
            code = fmt.lstrip("0123456789")
            count = fmt[: len(fmt) - len(code)]
            if not (
                (code in _SCALARS and not count)
                or (code in _RUNS and count.isdigit() and int(count) > 0)
            ):
                raise ValueError(f"{name}: field {field!r} format {fmt!r} is not one item")
            offsets[field] = offset
            if not fmt.endswith("x"):
                names.append(field)
            at += struct.calcsize("<" + fmt)
        if at != end:
            raise ValueError(f"{name}: the fields end at {at:#x}, the record at {end:#x}")
        self.name = name
        self.rows = rows
        self.start = rows[0][1]
        self.end = end
        #: The names of the fields that carry a value (pad rows carry none), in order.
        self.names = tuple(names)
        self._name_set = frozenset(names)
        #: Each row's offset, by name.
        self.offsets = offsets
        self.struct = struct.Struct("<" + "".join(fmt for _, _, fmt in rows))

    @property
    def size(self) -> int:
        """Bytes from the first row to the end."""
        return self.end - self.start

    def unpack(self, data: bytes | bytearray | memoryview, base: int = 0) -> dict[str, Any]:
        """The record at ``base`` in ``data``, field by field (``struct.error`` if short)."""
        return dict(zip(self.names, self.struct.unpack_from(data, base + self.start), strict=True))

    def pack(self, **values: Any) -> bytes:
        """The record's bytes (from ``start`` to ``end``) with every field given by name."""
        if values.keys() != self._name_set:
            missing = sorted(self._name_set - values.keys())
            extra = sorted(values.keys() - self._name_set)
            raise TypeError(f"{self.name}: missing fields {missing}, unknown fields {extra}")
        return self.struct.pack(*(values[field] for field in self.names))

    def __repr__(self) -> str:
        return f"StructTable({self.name!r}, {self.start:#x}..{self.end:#x})"
