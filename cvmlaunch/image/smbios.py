"""The SMBIOS measurement of edk2's SmbiosMeasurementDxe (TDVF RTMR0, edk2 >= 202505).

edk2 commit cd76265f1a (first in edk2-stable202505) put
``MdeModulePkg/Universal/SmbiosMeasurementDxe`` into OvmfPkg/IntelTdx. At ReadyToBoot it copies
the SMBIOS structure table the firmware published, filters the copy (``FilterSmbiosTable``) and
measures it into PCR 1, which TDVF maps to RTMR0. The input here is that structure table as the
firmware published it: what a guest reads from ``/sys/firmware/dmi/tables/DMI``. Linux
(drivers/firmware/dmi_scan.c ``dmi_decode_table``) trims that file behind a 3.x entry point to
the first type 127, by the same double-NUL walk, and behind a 2.x one to NumberOfStructures
structures, which SmbiosDxe makes add up to TableLength: either way, the bytes the driver copies.

Rule 1: pure, bytes in, values out. A table that cannot be walked (a header or a string-set
that runs past the end, a structure Length below 4) is :class:`~cvmlaunch.errors.ImageError`
naming the structure and its offset; where the C code would read past the table, this module
refuses instead.

Rule 2: the C behaviour, quirks included (``SmbiosMeasurementDxe.c`` at mirror HEAD):

* Walk (``GetSmbiosStructureSize``): a structure ends just past the first double NUL at or
  after its Length; its strings are the runs of non-NUL bytes before it. A string of ``mMaxLen``
  bytes or more makes the size 0, and the walk stops there (the rest is left as it is).
  ``mMaxLen`` follows the SMBIOS protocol version: < 2.7: 64, 2.7-2.x: 0xFFFF, 3.x: 0xFFFFFFFF.
* Length (``MeasureSmbiosTable``): with protocol version >= 3 the SMBIOS3 entry point is used
  and the length is ``GetSmbiosTableLength``: structures up to and including the first type
  127, bounded by the entry point's TableMaximumSize (here: the buffer). Below 3 the 32-bit
  entry point is used and its TableLength is taken as it is, unwalked (here: the whole buffer).
  On OVMF the version is QEMU's anchor (``OvmfPkg/Library/SmbiosVersionLib``, fw_cfg
  ``etc/smbios/smbios-anchor``: ``_SM3_`` gives 3.0, ``_SM_`` 2.8), and SmbiosDxe publishes the
  SMBIOS3 entry point whenever the version is >= 3 (PcdSmbiosEntryPointProvideMethod 0x3).
  QEMU's ``smbios-entry-point-type`` decides: pc-q35-8.0 and older "32" (2.8), 8.1 and 8.2
  "64" (3.0), 9.0 and newer "auto" (QEMU commit "pc/q35: set SMBIOS entry point type to 'auto'
  by default", 2024-03): 2.8 unless the tables exceed 0xFFFF bytes or a socket has more than
  255 cores or threads, then 3.0 (type 4 is then 48 bytes, not 42). So a current
  QEMU usually gives the 2.x path. The guest's ``/sys/firmware/dmi/tables/smbios_entry_point``
  carries the version (:func:`parse_smbios_entry_point`); ``/sys/firmware/efi/systab`` the
  entry point's address (``SMBIOS3=`` or ``SMBIOS=``), which only the event data holds.
* Filter (``FilterSmbiosEntry``), per structure: type >= 128 and the types listed without
  fields (11, 15, 18, 31, 33) are zeroed from byte 4 to the end of the string-set (strings and
  terminator included). For the listed fields (:data:`FILTERS`, offsets of the packed C structs
  of ``SmBios.h``, the same as DSP0134's) a field is touched only when ``Length >= offset +
  size``: nothing past the formatted area is written. A string field with a non-zero index has
  its string overwritten with spaces (same length), then the field is zeroed. An index past the
  string count blanks the *last* string (``GetSmbiosStringById`` returns the last one it saw); a
  non-zero index with no strings writes to address 0 (RELEASE build: the ASSERT is compiled
  out), not into the copy. Zeroing a string-set changes where a re-walk of the output finds the
  structures: the filter is not idempotent on tables with strings in those types.
* Hash: SHA-384 of the filtered copy. Event: ``EV_EFI_HANDOFF_TABLES`` with
  ``EFI_HANDOFF_TABLE_POINTERS`` (one table: the SMBIOS3 or SMBIOS GUID and the entry point's
  address). ``EV_EFI_HANDOFF_TABLES2`` is used only when PcdTcgPfpMeasurementRevision >= 105;
  it is 0 (MdeModulePkg.dec) and IntelTdx does not set it: the Debian ovmf-inteltdx 2026.08
  driver holds 0x80000009 and no 0x8000000B, nor the "SmbiosTable" description.

Rule 3: the filter list and the hashing are the same from edk2-stable202505 to mirror HEAD
(2026-08-06). Only 21441cdf29 (2026-01-29, removes an unused variable of
``GetSmbiosStringById``) touched the .c file; the SmBios.h commits since (b35d53d589,
071b0778d9, 143e4441ed and others) move no filtered field. The filter list last changed in
838c730fe6 (2022, Type4 CurrentSpeed). The filter records compiled into the Debian driver match
:data:`FILTERS`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cvmlaunch._struct import StructTable
from cvmlaunch.errors import ImageError
from cvmlaunch.image.ovmf import guid_bytes_le

__all__ = [
    "EV_EFI_HANDOFF_TABLES",
    "FILTERS",
    "SMBIOS3_TABLE_GUID",
    "SMBIOS_DESCRIPTION",
    "SMBIOS_PCR",
    "SMBIOS_TABLE_GUID",
    "ZEROED_TYPES",
    "SmbiosEntryPoint",
    "SmbiosStructure",
    "measured_smbios_table",
    "parse_smbios_entry_point",
    "smbios_digest",
    "smbios_event_data",
    "smbios_structures",
    "smbios_table_length",
]

#: TCG PFP event type of the SMBIOS event.
EV_EFI_HANDOFF_TABLES = 0x80000009
#: The PCR the driver names; TDVF maps PCR 1 to MR index 1, RTMR0.
SMBIOS_PCR = 1
SMBIOS_DESCRIPTION = "RTMR0 SMBIOS tables"
#: gEfiSmbiosTableGuid (32-bit entry point) and gEfiSmbios3TableGuid (64-bit), MdePkg.dec.
SMBIOS_TABLE_GUID = "eb9d2d31-2d88-11d3-9a16-0090273fc14d"
SMBIOS3_TABLE_GUID = "f2fd1544-9794-4a2c-992e-e5bbcf20e394"

#: DSP0134 6.1.2 "Structure header format".
_HEADER = StructTable(
    "SMBIOS structure header",
    (("type", 0, "B"), ("length", 1, "B"), ("handle", 2, "H")),
    end=4,
)
#: UefiTcgPlatform.h EFI_HANDOFF_TABLE_POINTERS with one EFI_CONFIGURATION_TABLE (X64 UINTN).
_HANDOFF = StructTable(
    "EFI_HANDOFF_TABLE_POINTERS",
    (("number_of_tables", 0, "Q"), ("vendor_guid", 8, "16s"), ("vendor_table", 24, "Q")),
    end=32,
)

#: DSP0134 5.2.1 "SMBIOS 2.1 (32-bit) Entry Point structure".
_EP32 = StructTable(
    "SMBIOS 2.1 (32-bit) entry point",
    (
        ("anchor", 0x00, "4s"),
        ("checksum", 0x04, "B"),
        ("length", 0x05, "B"),
        ("major", 0x06, "B"),
        ("minor", 0x07, "B"),
        ("max_structure_size", 0x08, "H"),
        ("revision", 0x0A, "B"),
        ("formatted_area", 0x0B, "5s"),
        ("intermediate_anchor", 0x10, "5s"),
        ("intermediate_checksum", 0x15, "B"),
        ("table_length", 0x16, "H"),
        ("table_address", 0x18, "I"),
        ("structures", 0x1C, "H"),
        ("bcd_revision", 0x1E, "B"),
    ),
    end=0x1F,
)
#: DSP0134 5.2.2 "SMBIOS 3.0 (64-bit) Entry Point structure".
_EP64 = StructTable(
    "SMBIOS 3.0 (64-bit) entry point",
    (
        ("anchor", 0x00, "5s"),
        ("checksum", 0x05, "B"),
        ("length", 0x06, "B"),
        ("major", 0x07, "B"),
        ("minor", 0x08, "B"),
        ("docrev", 0x09, "B"),
        ("revision", 0x0A, "B"),
        ("reserved", 0x0B, "1x"),
        ("table_max_size", 0x0C, "I"),
        ("table_address", 0x10, "Q"),
    ),
    end=0x18,
)

_OEM_BEGIN = 128  # SMBIOS_OEM_BEGIN: from here on, zeroed past the header
_END_OF_TABLE = 127
_STRING = True

#: mSmbiosFilterStandardTableBlackList's types with a NULL filter: zeroed past the header.
ZEROED_TYPES = frozenset({11, 15, 18, 31, 33})

#: The per-field filters, by type: ``(offset, size, is_string)`` in the C table's order
#: (``OFFSET_OF``/``FIELD_SIZE_OF`` of the SMBIOS_TABLE_TYPEn structs; DSP0134 field names).
FILTERS: dict[int, tuple[tuple[int, int, bool], ...]] = {
    1: ((0x07, 1, _STRING), (0x08, 16, False), (0x18, 1, False)),  # serial, UUID, wake-up
    2: ((0x07, 1, _STRING), (0x0A, 1, _STRING)),  # serial, location in chassis
    3: ((0x07, 1, _STRING), (0x08, 1, _STRING)),  # serial, asset tag
    4: (
        (0x20, 1, _STRING),  # serial
        (0x21, 1, _STRING),  # asset tag
        (0x22, 1, _STRING),  # part number
        (0x23, 1, False),  # core count
        (0x24, 1, False),  # core enabled
        (0x25, 1, False),  # thread count
        (0x2A, 2, False),  # core count 2
        (0x2C, 2, False),  # core enabled 2
        (0x2E, 2, False),  # thread count 2
        (0x11, 1, False),  # voltage
        (0x16, 2, False),  # current speed
    ),
    17: ((0x18, 1, _STRING), (0x19, 1, _STRING), (0x1A, 1, _STRING)),  # serial, asset, part
    22: ((0x07, 1, _STRING), (0x10, 2, False), (0x12, 2, False)),  # serial, SBDS serial, date
    23: ((0x05, 2, False),),  # reset count
    27: ((0x0C, 2, False),),  # nominal speed
    39: ((0x08, 1, _STRING), (0x09, 1, _STRING), (0x0A, 1, _STRING)),  # serial, asset, part
}


@dataclass(frozen=True, slots=True)
class SmbiosStructure:
    """One structure as the C walk sees it; offsets are into the table."""

    offset: int
    type: int
    length: int  # the formatted area, header included
    handle: int
    strings: tuple[tuple[int, int], ...]  # (start, end) of each string, NUL excluded
    end: int  # just past the double NUL

    @property
    def size(self) -> int:
        return self.end - self.offset


@dataclass(frozen=True, slots=True)
class SmbiosEntryPoint:
    """The entry point the firmware published (``/sys/firmware/dmi/tables/smbios_entry_point``).

    SmbiosDxe writes the SMBIOS protocol version into it, so :attr:`version` is what the
    driver's choices follow (``version=`` of the functions here). A 64-bit (``_SM3_``) entry
    point has version >= 3 and the driver then takes the SMBIOS3 path.
    """

    bits: int  # 32 (_SM_) or 64 (_SM3_)
    version: tuple[int, int]
    table_length: int  # 32-bit: the exact TableLength; 64-bit: TableMaximumSize
    table_address: int


def parse_smbios_entry_point(data: bytes) -> SmbiosEntryPoint:
    """Read a 32-bit (``_SM_``) or 64-bit (``_SM3_``) entry point (DSP0134 5.2).

    Raises:
        ImageError: no anchor, too short, a Length below the structure or a checksum that does
            not sum to zero (the whole Length; the 32-bit one also from ``_DMI_``).
    """
    if data[:5] == b"_SM3_":
        table, name = _EP64, "64-bit"
    elif data[:4] == b"_SM_":
        table, name = _EP32, "32-bit"
    else:
        raise ImageError(f"SMBIOS entry point: no _SM_ or _SM3_ anchor (starts {data[:5]!r})")
    at = table.offsets["length"]
    length = data[at] if len(data) > at else 0
    if len(data) < table.end or not table.end <= length <= len(data):
        raise ImageError(
            f"SMBIOS {name} entry point: {len(data)} bytes with Length {length}, "
            f"the structure is {table.end} bytes"
        )
    f = table.unpack(data)
    if sum(data[: f["length"]]) & 0xFF:
        raise ImageError(f"SMBIOS {name} entry point: checksum does not sum to zero", offset=0)
    if table is _EP32:
        if f["intermediate_anchor"] != b"_DMI_" or sum(data[0x10:0x1F]) & 0xFF:
            raise ImageError("SMBIOS 32-bit entry point: bad _DMI_ part", offset=0x10)
        size = f["table_length"]
    else:
        size = f["table_max_size"]
    return SmbiosEntryPoint(
        64 if table is _EP64 else 32, (f["major"], f["minor"]), size, f["table_address"]
    )


def _max_string(version: tuple[int, int]) -> int:
    """``mMaxLen``: SmbiosMeasurementDriverEntryPoint."""
    major, minor = version
    if major < 2 or (major == 2 and minor < 7):
        return 64  # SMBIOS_STRING_MAX_LENGTH
    if major < 3:
        return 0xFFFF  # SMBIOS_TABLE_MAX_LENGTH
    return 0xFFFFFFFF  # SMBIOS_3_0_TABLE_MAX_LENGTH


def _structure(table: bytes, at: int, max_len: int) -> SmbiosStructure | None:
    """The structure at ``at`` (``GetSmbiosStructureSize``); None where the C size is 0."""
    n = len(table)
    if at + _HEADER.end > n:
        raise ImageError(
            f"SMBIOS structure header runs past the end of the table ({n} bytes)", offset=at
        )
    head = _HEADER.unpack(table, at)
    kind, length = head["type"], head["length"]
    if length < _HEADER.end:
        raise ImageError(f"SMBIOS structure type {kind}: Length {length} is below 4", offset=at)
    strings: list[tuple[int, int]] = []
    p = at + length
    while True:
        if p + 1 >= n:
            raise ImageError(
                f"SMBIOS structure type {kind}: its string-set has no double NUL before the "
                f"end of the table ({n} bytes)",
                offset=at,
            )
        if table[p] == 0 and table[p + 1] == 0:
            return SmbiosStructure(at, kind, length, head["handle"], tuple(strings), p + 2)
        if table[p] == 0:
            p += 1
        stop = table.find(0, p, p + max_len)
        if stop < 0:
            if p + max_len <= n:
                return None  # a string of mMaxLen bytes: the C walk gives up
            raise ImageError(
                f"SMBIOS structure type {kind}: a string runs past the end of the table",
                offset=p,
            )
        strings.append((p, stop))
        p = stop


def _walk(table: bytes, limit: int, max_len: int, *, stop_at_end: bool) -> list[SmbiosStructure]:
    out: list[SmbiosStructure] = []
    at = 0
    while at < limit:
        s = _structure(table, at, max_len)
        if s is None:
            break
        out.append(s)
        at = s.end
        if stop_at_end and s.type == _END_OF_TABLE:
            break
    return out


def smbios_table_length(table: bytes, *, version: tuple[int, int] = (3, 0)) -> int:
    """The byte count the driver copies and hashes (Rule 2, "Length").

    Args:
        table: the structure table (``/sys/firmware/dmi/tables/DMI``); for a 3.x entry point
            its length stands for TableMaximumSize, for 2.x for TableLength.
        version: the SMBIOS protocol version (major, minor).
    """
    if version[0] < 3:
        return len(table)
    walked = _walk(table, len(table), _max_string(version), stop_at_end=True)
    return walked[-1].end if walked else 0


def smbios_structures(
    table: bytes, *, version: tuple[int, int] = (3, 0)
) -> tuple[SmbiosStructure, ...]:
    """The structures ``FilterSmbiosTable`` visits, in table order."""
    length = smbios_table_length(table, version=version)
    return tuple(_walk(table[:length], length, _max_string(version), stop_at_end=False))


def measured_smbios_table(table: bytes, *, version: tuple[int, int] = (3, 0)) -> bytes:
    """The bytes SmbiosMeasurementDxe hashes: the table's measured length, filtered."""
    length = smbios_table_length(table, version=version)
    out = bytearray(table[:length])
    for s in smbios_structures(table, version=version):
        if s.type >= _OEM_BEGIN or s.type in ZEROED_TYPES:
            out[s.offset + _HEADER.end : s.end] = bytes(s.end - s.offset - _HEADER.end)
            continue
        for offset, size, is_string in FILTERS.get(s.type, ()):
            if s.length < offset + size:
                continue
            at = s.offset + offset
            index = out[at] if is_string else 0
            if index and s.strings:
                start, stop = s.strings[min(index, len(s.strings)) - 1]
                out[start:stop] = b" " * (stop - start)
            out[at : at + size] = bytes(size)
    return bytes(out)


def smbios_digest(table: bytes, *, version: tuple[int, int] = (3, 0)) -> bytes:
    """SHA-384 of :func:`measured_smbios_table`: the event's digest and RTMR0 extension."""
    return hashlib.sha384(measured_smbios_table(table, version=version)).digest()


def smbios_event_data(entry_point_address: int = 0, *, version: tuple[int, int] = (3, 0)) -> bytes:
    """The logged ``EFI_HANDOFF_TABLE_POINTERS`` (32 bytes).

    Args:
        entry_point_address: where the firmware put the entry point structure (the
            configuration table's VendorTable, a run-time address; 0 when unknown). It is in
            the event log only: the digest does not cover it.
        version: the SMBIOS protocol version; >= 3 names the SMBIOS3 GUID.

    Raises:
        ValueError: an address that does not fit 64 bits.
    """
    if not 0 <= entry_point_address < 1 << 64:
        raise ValueError(f"entry point address {entry_point_address:#x} is not a u64")
    guid = SMBIOS3_TABLE_GUID if version[0] >= 3 else SMBIOS_TABLE_GUID
    return _HANDOFF.pack(
        number_of_tables=1, vendor_guid=guid_bytes_le(guid), vendor_table=entry_point_address
    )
