"""OVMF / TDVF flat firmware images: the GUIDed footer table, SEV metadata, TDX metadata.

Rule 1: take a buffer (bytes or an mmap'd memoryview), never a path; do not copy the image.

Rule 2: fail where the problem is found, with an :class:`~cvmlaunch.errors.ImageError` that
names the image and the offset. A missing SEV or TDX metadata entry is not an error here (a
TDX build has no kernel-hashes page, an AmdSev build may lack TDX metadata): the field is None,
and the measurement code that needs it raises.

Formats (all little-endian; GUIDs in EFI mixed-endian form, see :func:`guid_bytes_le`; this
module holds them as lowercase ``8-4-4-4-12`` strings, without importing :mod:`uuid`):

* Footer table (edk2 ``OvmfPkg/ResetVector/Ia16/ResetVectorVtf0.asm``): the table ends 0x20
  bytes before the end of the image; the footer GUID occupies ``[size-0x30, size-0x20)`` and the
  u16 before it is the total table length including the footer's own 18 bytes. Entries are
  walked backwards: ``data | u16 length | GUID``, ``length`` counting data + 18.
* SEV metadata (``OvmfPkg/ResetVector/X64/OvmfSevMetadata.asm``): the GUID entry's u32 is the
  distance from the end of the image to the ``"ASEV"`` header ``{sig, u32 length, u32 version=1,
  u32 count}``, followed by ``count`` descriptors ``{u32 gpa, u32 size, u32 type}``.
* TDX metadata (TDVF design guide, "TDVF metadata"; ``IntelTdxMetadata.nasm.inc``): the GUID
  entry's u32 is the distance from the end of the image to the ``"TDVF"`` descriptor
  ``{sig, u32 length = 16 + 32 n, u32 version = 1, u32 n}`` followed by ``n`` sections
  ``{u32 data_offset, u32 raw_size, u64 gpa, u64 memory_size, u32 type, u32 attributes}``.
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass

from cvmlaunch._struct import StructTable
from cvmlaunch.errors import ImageError, UnsupportedSection
from cvmlaunch.layout import (
    FOUR_GIB,
    PAGE_SIZE,
    Buffer,
    SevSectionType,
    TdvfAttribute,
    TdvfSectionType,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "FOOTER_GUID",
    "GUID_NAMES",
    "HASH_TABLE_GUID",
    "IGVM_PARAMS_GUID",
    "SEV_ES_RESET_BLOCK_GUID",
    "SEV_METADATA_GUID",
    "SEV_SECRET_GUID",
    "SVSM_INFO_GUID",
    "TDX_METADATA_GUID",
    "TDX_METADATA_OFFSET_GUID",
    "GuidEntry",
    "OvmfImage",
    "SevSection",
    "TdvfSection",
    "guid_bytes_le",
    "guid_from_bytes_le",
    "parse_ovmf",
]


def guid_bytes_le(guid: str) -> bytes:
    """The 16 bytes of a GUID as EFI stores it: the first three fields little-endian, the
    last eight bytes as written (what ``uuid.UUID(guid).bytes_le`` gives).

    Args:
        guid: ``8-4-4-4-12`` hex digits, e.g. ``96b582de-1fb2-45f7-baea-a366c55a082d``.

    Raises:
        ValueError: ``guid`` is not in that form.
    """
    parts = guid.split("-")
    try:
        raw = bytes.fromhex("".join(parts))
    except ValueError:
        raw = b""
    if [len(p) for p in parts] != [8, 4, 4, 4, 12] or len(raw) != 16:
        raise ValueError(f"{guid!r} is not a GUID (8-4-4-4-12 hex digits)")
    return raw[3::-1] + raw[5:3:-1] + raw[7:5:-1] + raw[8:]


def guid_from_bytes_le(raw: Buffer) -> str:
    """The lowercase ``8-4-4-4-12`` form of a GUID stored the EFI way (the inverse of
    :func:`guid_bytes_le`; ``str(uuid.UUID(bytes_le=raw))``).

    Raises:
        ValueError: ``raw`` is not 16 bytes.
    """
    b = bytes(raw)
    if len(b) != 16:
        raise ValueError(f"a GUID is 16 bytes, not {len(b)}")
    h = (b[3::-1] + b[5:3:-1] + b[7:5:-1] + b[8:]).hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


FOOTER_GUID = "96b582de-1fb2-45f7-baea-a366c55a082d"
SEV_ES_RESET_BLOCK_GUID = "00f771de-1a7e-4fcb-890e-68c77e2fb44e"
HASH_TABLE_GUID = "7255371f-3a3b-4b04-927b-1da6efa8d454"
SEV_SECRET_GUID = "4c2eb361-7d9b-4cc3-8081-127c90d3d294"
SEV_METADATA_GUID = "dc886566-984a-4798-a75e-5585a7bf67cc"
TDX_METADATA_OFFSET_GUID = "e47a6535-984a-4798-865e-4685a7bf8ec2"
#: The GUID that sits right before a TDVF descriptor (checked by td-shim, not by QEMU).
TDX_METADATA_GUID = "e9eaf9f3-168e-44d5-a8eb-7f4d8738f6ae"
IGVM_PARAMS_GUID = "784fa70e-3176-4677-8a20-04b68699e374"
SVSM_INFO_GUID = "a789a612-0597-4c4b-a49f-cbb1fe9d1ddd"

#: Human names of the GUID table entries cvmlaunch knows.
GUID_NAMES: dict[str, str] = {
    FOOTER_GUID: "table footer",
    SEV_ES_RESET_BLOCK_GUID: "SEV-ES reset block",
    HASH_TABLE_GUID: "SEV hash table",
    SEV_SECRET_GUID: "SEV secret area",
    SEV_METADATA_GUID: "SEV metadata",
    TDX_METADATA_OFFSET_GUID: "TDX metadata",
    IGVM_PARAMS_GUID: "IGVM parameter area",
    SVSM_INFO_GUID: "SVSM info",
}

_FOOTER_GUID_LE = guid_bytes_le(FOOTER_GUID)
#: The reset vector area after the table (the table's footer ends this far from the end).
_RESET_AREA = 0x20
_ENTRY_HEADER = struct.Struct("<H16s")  # u16 length, GUID (entry data precedes it)
_U32 = struct.Struct("<I")
_U32_PAIR = struct.Struct("<II")
#: The metadata header the SEV list (OvmfSevMetadata.asm ``OVMF_SEV_METADATA``) and the TDVF
#: descriptor (TDVF design guide, "TDVF_DESCRIPTOR") share.
_METADATA_HEADER = StructTable(
    "metadata header",
    (
        ("signature", 0, "4s"),  # "ASEV" or "TDVF"
        ("length", 4, "I"),
        ("version", 8, "I"),
        ("count", 12, "I"),
    ),
    end=16,
)
#: OvmfSevMetadata.asm: one SEV metadata section descriptor.
_SEV_DESC = StructTable(
    "SEV metadata section", (("gpa", 0, "I"), ("size", 4, "I"), ("type", 8, "I")), end=12
)
#: TDVF design guide, "TDVF_SECTION".
_TDVF_SECTION = StructTable(
    "TDVF_SECTION",
    (
        ("data_offset", 0, "I"),
        ("raw_data_size", 4, "I"),
        ("memory_address", 8, "Q"),
        ("memory_data_size", 16, "Q"),
        ("type", 24, "I"),
        ("attributes", 28, "I"),
    ),
    end=32,
)
#: Upper bounds that no real image comes near; they keep a corrupt count from making us
#: allocate or loop absurdly (edk2 emits < 10 entries of each).
MAX_SEV_SECTIONS = 64
MAX_TDVF_SECTIONS = 64
MAX_GUID_ENTRIES = 64
#: Smallest image with room for the table footer and the reset vector area.
_MIN_SIZE = _RESET_AREA + _ENTRY_HEADER.size + 2


@dataclass(frozen=True, slots=True)
class GuidEntry:
    """One entry of the OVMF footer GUID table."""

    guid: str  # lowercase 8-4-4-4-12 form
    offset: int  # file offset of the entry's data
    data: bytes

    @property
    def name(self) -> str:
        """The entry's meaning, or ``unknown``."""
        return GUID_NAMES.get(self.guid, "unknown")


@dataclass(frozen=True, slots=True)
class SevSection:
    """One OVMF SEV metadata descriptor (``OvmfSevMetadata.asm``), in file order."""

    index: int
    gpa: int
    size: int
    type: SevSectionType
    offset: int  # file offset of the descriptor


@dataclass(frozen=True, slots=True)
class TdvfSection:
    """One TDVF metadata section (TDVF design guide, table "TDVF_SECTION"), in metadata order."""

    index: int
    data_offset: int
    raw_size: int
    gpa: int
    memory_size: int
    type: TdvfSectionType
    attributes: TdvfAttribute
    offset: int  # file offset of the section entry


@dataclass(frozen=True, slots=True, eq=False)
class OvmfImage:
    """A parsed OVMF/TDVF flat image, mapped to end at 4 GiB."""

    name: str
    data: Buffer
    size: int
    gpa: int
    guid_table: tuple[GuidEntry, ...]
    sev_sections: tuple[SevSection, ...] | None
    sev_es_reset_eip: int | None
    sev_hash_table: tuple[int, int] | None
    sev_secret: tuple[int, int] | None
    tdx_sections: tuple[TdvfSection, ...] | None
    svsm_entry_offset: int | None

    @property
    def has_kernel_hashes(self) -> bool:
        """Whether the image reserves a SEV kernel-hashes table (entry present, base != 0)."""
        return self.sev_hash_table is not None and self.sev_hash_table[0] != 0

    def tdvf_section_data(self, section: TdvfSection) -> Buffer:
        """The raw bytes of a TDVF section (``raw_size`` bytes at ``data_offset``), not copied.

        The parser does not require section data to lie inside the image, so that code-only
        images (OVMF_CODE*.fd, whose metadata describes the full flat image) can be inspected.

        Raises:
            ImageError: the section's data lies outside this image (e.g. a code-only image).
        """
        end = section.data_offset + section.raw_size
        if end > self.size:
            raise ImageError(
                f"TDVF section {section.index} ({section.type.name}) data "
                f"{section.data_offset:#x}+{section.raw_size:#x} lies outside the "
                f"{self.size:#x}-byte image (a code-only image? TDX needs the full flat image)",
                source=self.name,
                offset=section.offset,
            )
        return memoryview(self.data)[section.data_offset : end]

    def entry(self, guid: str) -> GuidEntry | None:
        """The GUID table entry with ``guid`` (``8-4-4-4-12`` hex digits), or None."""
        guid = guid.lower()
        for e in self.guid_table:
            if e.guid == guid:
                return e
        return None


class _Reader:
    """Bounds-checked little-endian reads from the image, errors naming the image."""

    def __init__(self, data: Buffer, name: str):
        self.data = data
        self.name = name

    def fail(self, message: str, offset: int | None = None) -> ImageError:
        return ImageError(message, source=self.name, offset=offset)

    def unpack(self, fmt: struct.Struct, offset: int, what: str) -> tuple[Any, ...]:
        if offset < 0 or offset + fmt.size > len(self.data):
            raise self.fail(f"{what} lies outside the image", offset)
        return fmt.unpack_from(self.data, offset)

    def fields(self, table: StructTable, offset: int, what: str) -> dict[str, Any]:
        if offset < 0 or offset + table.size > len(self.data):
            raise self.fail(f"{what} lies outside the image", offset)
        return table.unpack(self.data, offset)


def _walk_table(r: _Reader) -> tuple[GuidEntry, ...]:
    size = len(r.data)
    footer = size - _RESET_AREA - _ENTRY_HEADER.size
    table_len, raw_guid = r.unpack(_ENTRY_HEADER, footer, "footer")
    if raw_guid != _FOOTER_GUID_LE:
        raise r.fail("no OVMF GUID table footer (not an OVMF/TDVF flat image?)", footer + 2)
    table_start = footer + _ENTRY_HEADER.size - table_len
    if table_len < _ENTRY_HEADER.size or table_start < 0:
        raise r.fail(f"GUID table length {table_len:#x} points outside the image", footer)
    entries: list[GuidEntry] = []
    end = footer  # entries end where the footer's length field starts
    while end > table_start:
        if len(entries) >= MAX_GUID_ENTRIES:
            raise r.fail(f"more than {MAX_GUID_ENTRIES} GUID table entries", end)
        hdr = end - _ENTRY_HEADER.size
        if hdr < table_start:
            raise r.fail("truncated GUID table entry", max(hdr, 0))
        length, raw = r.unpack(_ENTRY_HEADER, hdr, "GUID table entry")
        start = end - length
        if length < _ENTRY_HEADER.size or start < table_start:
            raise r.fail(f"GUID table entry length {length:#x} is out of range", hdr)
        entries.append(GuidEntry(guid_from_bytes_le(raw), start, bytes(r.data[start:hdr])))
        end = start
    return tuple(entries)


def _entry_u32s(r: _Reader, entry: GuidEntry | None, count: int) -> tuple[int, ...] | None:
    if entry is None:
        return None
    fmt = _U32 if count == 1 else _U32_PAIR
    if len(entry.data) < fmt.size:
        raise r.fail(
            f"{entry.name} entry has {len(entry.data)} bytes of data, needs {fmt.size}",
            entry.offset,
        )
    values = fmt.unpack_from(entry.data, 0)
    return tuple(int(v) for v in values)


def _metadata_offset(r: _Reader, entry: GuidEntry, what: str) -> int:
    (distance,) = _entry_u32s(r, entry, 1) or (0,)
    offset = len(r.data) - distance
    if distance == 0 or offset < 0:
        raise r.fail(f"{what} offset {distance:#x} points outside the image", entry.offset)
    return offset


def _metadata_header(
    r: _Reader, entry: GuidEntry, what: str, signature: bytes, entry_size: int, counts: range
) -> tuple[int, int]:
    """Check a ``{signature, u32 length, u32 version = 1, u32 count}`` metadata header (the
    SEV "ASEV" list and the TDVF descriptor share this shape) found through ``entry``.

    Returns:
        The file offset of the first entry after the header, and the entry count.
    """
    base = _metadata_offset(r, entry, what)
    header = r.fields(_METADATA_HEADER, base, what)
    sig, length, version, count = (header[k] for k in ("signature", "length", "version", "count"))
    if sig != signature:
        raise r.fail(f"{what} signature is {sig!r}, expected {signature!r}", base)
    if version != 1:
        raise r.fail(f"{what} version {version} is not supported (expected 1)", base)
    if count not in counts:
        raise r.fail(f"{what} claims {count} sections ({counts.start}..{counts.stop - 1})", base)
    if length != _METADATA_HEADER.size + count * entry_size:
        raise r.fail(f"{what} length {length:#x} does not match {count} sections", base)
    return base + _METADATA_HEADER.size, count


def _parse_sev(r: _Reader, entry: GuidEntry) -> tuple[SevSection, ...]:
    base, count = _metadata_header(
        r, entry, "SEV metadata", b"ASEV", _SEV_DESC.size, range(MAX_SEV_SECTIONS + 1)
    )
    sections: list[SevSection] = []
    for i in range(count):
        off = base + i * _SEV_DESC.size
        desc = r.fields(_SEV_DESC, off, f"SEV metadata section {i}")
        gpa, size, raw_type = desc["gpa"], desc["size"], desc["type"]
        try:
            kind = SevSectionType(raw_type)
        except ValueError as exc:
            raise UnsupportedSection(
                f"SEV metadata section {i} has unknown type {raw_type:#x}",
                raw=raw_type,
                source=r.name,
                offset=off,
            ) from exc
        if size and (gpa % PAGE_SIZE or size % PAGE_SIZE):
            raise r.fail(f"SEV metadata section {i} ({gpa:#x}+{size:#x}) is not 4 KiB aligned", off)
        if gpa + size > FOUR_GIB:
            raise r.fail(f"SEV metadata section {i} ({gpa:#x}+{size:#x}) crosses 4 GiB", off)
        sections.append(SevSection(i, gpa, size, kind, off))
    _check_overlaps(r, [(s.gpa, s.size, f"SEV metadata section {s.index}") for s in sections])
    return tuple(sections)


def _parse_tdx(r: _Reader, entry: GuidEntry) -> tuple[TdvfSection, ...]:
    base, count = _metadata_header(
        r, entry, "TDVF descriptor", b"TDVF", _TDVF_SECTION.size, range(1, MAX_TDVF_SECTIONS + 1)
    )
    sections: list[TdvfSection] = []
    for i in range(count):
        off = base + i * _TDVF_SECTION.size
        section = r.fields(_TDVF_SECTION, off, f"TDVF section {i}")
        raw_size, raw_type = section["raw_data_size"], section["type"]
        gpa, mem_size = section["memory_address"], section["memory_data_size"]
        try:
            kind = TdvfSectionType(raw_type)
        except ValueError as exc:
            raise UnsupportedSection(
                f"TDVF section {i} has unknown type {raw_type:#x}",
                raw=raw_type,
                source=r.name,
                offset=off,
            ) from exc
        what = f"TDVF section {i} ({kind.name})"
        if gpa % PAGE_SIZE or mem_size % PAGE_SIZE:
            raise r.fail(f"{what} memory {gpa:#x}+{mem_size:#x} is not 4 KiB aligned", off)
        if mem_size == 0:
            raise r.fail(f"{what} has a memory size of zero", off)
        if raw_size > mem_size:
            raise r.fail(f"{what} raw size {raw_size:#x} exceeds memory size {mem_size:#x}", off)
        if gpa + mem_size > 1 << 52:
            raise r.fail(f"{what} memory {gpa:#x}+{mem_size:#x} exceeds 52 bits", off)
        sections.append(
            TdvfSection(
                index=i,
                data_offset=section["data_offset"],
                raw_size=raw_size,
                gpa=gpa,
                memory_size=mem_size,
                type=kind,
                attributes=TdvfAttribute(section["attributes"]),
                offset=off,
            )
        )
    _check_overlaps(
        r, [(s.gpa, s.memory_size, f"TDVF section {s.index} ({s.type.name})") for s in sections]
    )
    return tuple(sections)


def _check_overlaps(r: _Reader, spans: list[tuple[int, int, str]]) -> None:
    nonempty = sorted((gpa, gpa + size, what) for gpa, size, what in spans if size)
    for (_, end_a, what_a), (start_b, _, what_b) in itertools.pairwise(nonempty):
        if start_b < end_a:
            raise r.fail(f"{what_a} overlaps {what_b}")


def parse_ovmf(data: Buffer, *, name: str = "firmware") -> OvmfImage:
    """Parse an OVMF/TDVF flat firmware image (full or code-only, e.g. OVMF_CODE_4M.fd).

    Args:
        data: the whole image; a memoryview of an mmap'd file is used without copying.
        name: the image's name for error messages (usually its path).

    Returns:
        The image with its GUID table, SEV and TDX metadata (None where absent).

    Raises:
        ImageError: the image is too small, has no footer table, or a table or metadata
            structure is malformed or points outside the image.
        UnsupportedSection: a SEV or TDVF section type this version does not know.
    """
    r = _Reader(data, name)
    size = len(data)
    if size < _MIN_SIZE:
        raise r.fail(f"{size} bytes is too small for an OVMF image")
    if size % PAGE_SIZE:
        raise r.fail(f"size {size:#x} is not a multiple of 4 KiB")
    if size > FOUR_GIB // 2:
        raise r.fail(f"size {size:#x} is too large for a flat firmware image")
    table = _walk_table(r)
    by_guid = {e.guid: e for e in reversed(table)}  # the entry nearest the footer wins

    sev_entry = by_guid.get(SEV_METADATA_GUID)
    tdx_entry = by_guid.get(TDX_METADATA_OFFSET_GUID)
    reset = _entry_u32s(r, by_guid.get(SEV_ES_RESET_BLOCK_GUID), 1)
    hash_table = _entry_u32s(r, by_guid.get(HASH_TABLE_GUID), 2)
    secret = _entry_u32s(r, by_guid.get(SEV_SECRET_GUID), 2)
    svsm = _entry_u32s(r, by_guid.get(SVSM_INFO_GUID), 1)
    if svsm and svsm[0] >= size:
        raise r.fail(
            f"SVSM entry offset {svsm[0]:#x} is outside the {size:#x}-byte image (the SVSM "
            "info entry points the first vCPU's RIP into the image)"
        )
    return OvmfImage(
        name=name,
        data=data,
        size=size,
        gpa=FOUR_GIB - size,
        guid_table=table,
        sev_sections=_parse_sev(r, sev_entry) if sev_entry else None,
        sev_es_reset_eip=reset[0] if reset else None,
        sev_hash_table=(hash_table[0], hash_table[1]) if hash_table else None,
        sev_secret=(secret[0], secret[1]) if secret else None,
        tdx_sections=_parse_tdx(r, tdx_entry) if tdx_entry else None,
        svsm_entry_offset=svsm[0] if svsm else None,
    )
