"""ELF firmware and kernels (x86, 32- and 64-bit): program headers -> page-granular regions.

Rule 1: this is the only module that imports pyelftools, and nothing of it escapes: headers
are decoded once into frozen values (:class:`ElfImage`, :class:`ElfSegment`) made of ints and
enums; every pyelftools failure becomes an :class:`~cvmlaunch.errors.ImageError` ``from`` it.
Segment bytes are sliced from the caller's buffer (an mmap'd file is not copied).

Rule 2: PT_LOAD segments are placed by their physical address (``p_paddr``), as firmware
loaders and linux-loader do; ``p_vaddr`` is kept for display only (a vmlinux links at
0xffffffff8... virtual addresses with low physical ones).

Rule 3: guest pages are populated once. Segments need not be page aligned, so the page that
holds the end of one segment and the start of the next is built once from both;
``p_memsz - p_filesz`` (BSS) is populated as explicit zero pages, never assumed zero (private
memory of an SNP or TDX guest is not zero until it is populated).

Formats: System V ABI, "ELF Header" and "Program Header" (gABI 4.1); x86-64 psABI for
EM_X86_64; the PVH entry note is ``XEN_ELFNOTE_PHYS32_ENTRY`` (type 18, name ``"Xen"``) from
Xen's ``public/elfnote.h``, whose descriptor holds the 32-bit physical entry point (Linux emits a
pointer-sized descriptor; only its first u32 is used). Notes are read with 4-byte alignment,
as the gABI "Note Section" specifies for both classes.
"""

from __future__ import annotations

import enum
import itertools
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from elftools.common.exceptions import ELFError
from elftools.common.utils import struct_parse
from elftools.elf.elffile import ELFFile

from cvmlaunch.errors import ImageError
from cvmlaunch.layout import (
    MAX_GPA,
    PAGE_SIZE,
    Buffer,
    PageType,
    Provenance,
    Region,
    SourceKind,
    align_down,
    align_up,
)
from cvmlaunch.memory_map import MemoryMap

__all__ = [
    "MAX_LOAD_SEGMENTS",
    "MAX_PROGRAM_HEADERS",
    "XEN_ELFNOTE_PHYS32_ENTRY",
    "ElfClass",
    "ElfImage",
    "ElfMachine",
    "ElfSegment",
    "SegmentFlag",
    "elf_regions",
    "is_elf",
    "parse_elf",
]

ELF_MAGIC = b"\x7fELF"
#: Xen ``public/elfnote.h``: the 32-bit physical entry point of a PVH guest.
XEN_ELFNOTE_PHYS32_ENTRY = 18
_XEN_NOTE_NAME = b"Xen\x00"
#: gABI "Note Section": ``u32 namesz, u32 descsz, u32 type``, then name and desc, each padded
#: to 4 bytes.
_NOTE_HEADER = struct.Struct("<III")
_U32 = struct.Struct("<I")

#: Caps that no real image comes near (a vmlinux has about 5 program headers, firmware fewer);
#: they keep a corrupt count from making the parser loop for long. Linux's own ELF loader
#: refuses program header tables larger than 64 KiB (1170 ELF64 headers).
MAX_PROGRAM_HEADERS = 1024
MAX_LOAD_SEGMENTS = 256

#: gABI "Program Header": p_type values used here.
_PT_LOAD = "PT_LOAD"
_PT_NOTE = "PT_NOTE"


class ElfClass(enum.IntEnum):
    """``e_ident[EI_CLASS]`` (gABI "ELF Identification")."""

    ELF32 = 1
    ELF64 = 2


class ElfMachine(enum.IntEnum):
    """``e_machine`` values accepted (gABI "ELF Header"): x86 only."""

    I386 = 3  # EM_386
    X86_64 = 62  # EM_X86_64


#: pyelftools' names for the machines we accept (its enum decoding, converted once here).
_MACHINES = {"EM_386": ElfMachine.I386, "EM_X86_64": ElfMachine.X86_64}
_CLASSES = {32: ElfClass.ELF32, 64: ElfClass.ELF64}
#: ``e_type`` values that can be loaded: executables and position-independent executables.
_LOADABLE_TYPES = ("ET_EXEC", "ET_DYN")


class SegmentFlag(enum.IntFlag):
    """``p_flags`` (gABI "Segment Permissions"); unknown bits are kept."""

    X = 1
    W = 2
    R = 4


@dataclass(frozen=True, slots=True)
class ElfSegment:
    """One PT_LOAD program header (gABI "Program Header").

    Args:
        index: the program header's index in the table.
        paddr: ``p_paddr``: the guest-physical address the segment is loaded at.
        vaddr: ``p_vaddr`` (informational).
        offset: ``p_offset``: where the segment's bytes start in the file.
        filesz: ``p_filesz``: bytes taken from the file.
        memsz: ``p_memsz``: bytes in memory; the part past ``filesz`` is zero (BSS).
        flags: ``p_flags``.
        align: ``p_align`` (informational).
    """

    index: int
    paddr: int
    vaddr: int
    offset: int
    filesz: int
    memsz: int
    flags: SegmentFlag
    align: int

    @property
    def end(self) -> int:
        """First guest-physical address after the segment in memory."""
        return self.paddr + self.memsz


@dataclass(frozen=True, slots=True, eq=False)
class ElfImage:
    """A parsed x86 ELF executable: what a loader needs, as plain values.

    Args:
        name: the input's name, for messages and provenance.
        data: the whole file (not copied).
        elf_class: 32- or 64-bit.
        machine: EM_386 or EM_X86_64.
        entry: ``e_entry``.
        pvh_entry: the PVH entry point from the ``XEN_ELFNOTE_PHYS32_ENTRY`` note, if any.
        segments: the PT_LOAD segments, in program header order.
    """

    name: str
    data: Buffer
    elf_class: ElfClass
    machine: ElfMachine
    entry: int
    pvh_entry: int | None
    segments: tuple[ElfSegment, ...]

    def segment_data(self, segment: ElfSegment) -> memoryview:
        """The ``filesz`` bytes of ``segment`` in the file, not copied."""
        return memoryview(self.data)[segment.offset : segment.offset + segment.filesz]


class _ViewStream:
    """A read-only, seekable stream over a buffer, for pyelftools, that does not copy it."""

    def __init__(self, data: Buffer):
        self._view = memoryview(data)
        self._pos = 0

    def seek(self, offset: int, whence: int = 0) -> int:
        base = (0, self._pos, len(self._view))[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, size: int = -1) -> bytes:
        end = len(self._view) if size is None or size < 0 else self._pos + size
        chunk = bytes(self._view[self._pos : end])
        self._pos += len(chunk)
        return chunk


class _ProgramHeader(NamedTuple):
    """One program header as pyelftools decoded it (gABI "Program Header"), with its number in
    the table; ``p_type`` is pyelftools' name for the type (``"PT_LOAD"``)."""

    number: int  # its index in the table
    p_type: str
    p_offset: int
    p_vaddr: int
    p_paddr: int
    p_filesz: int
    p_memsz: int
    p_flags: int
    p_align: int


@dataclass(frozen=True, slots=True)
class _RawHeaders:
    """What pyelftools decoded, as plain ints and strings (nothing of pyelftools inside)."""

    elfclass: int
    little_endian: bool
    e_type: str
    machine: str
    entry: int
    phoff: int
    phentsize: int
    phnum: int
    program_headers: tuple[_ProgramHeader, ...]


def is_elf(data: Buffer) -> bool:
    """Whether ``data`` starts with the ELF magic (``\\x7fELF``)."""
    return bytes(data[:4]) == ELF_MAGIC


def _decode(data: Buffer, name: str) -> _RawHeaders:
    """Decode the ELF header and program headers with pyelftools, bounds-checked first.

    Raises:
        ImageError: anything pyelftools cannot decode, or a program header table that does
            not fit in the file or is absurdly large.
    """
    size = len(data)
    try:
        elf: Any = ELFFile(_ViewStream(data))  # type: ignore[arg-type]
        header = elf.header
        phoff = int(header["e_phoff"])
        phentsize = int(header["e_phentsize"])
        phnum = int(header["e_phnum"])
        machine = str(header["e_machine"])
        e_type = str(header["e_type"])
        elfclass = int(elf.elfclass)
        little_endian = bool(elf.little_endian)
        entry = int(header["e_entry"])
        expected = elf.structs.Elf_Phdr.sizeof()
    except ELFError as exc:
        raise ImageError(f"not a valid ELF file: {exc}", source=name) from exc
    except Exception as exc:  # pyelftools (and its construct) raise a variety of types
        raise ImageError(f"cannot decode the ELF header: {exc!r}", source=name) from exc
    if not little_endian:
        raise ImageError("big-endian ELF is not x86", source=name, offset=5)
    if phnum > MAX_PROGRAM_HEADERS:
        raise ImageError(
            f"{phnum} program headers (at most {MAX_PROGRAM_HEADERS} accepted)",
            source=name,
            offset=phoff,
        )
    if phnum and phentsize != expected:
        raise ImageError(
            f"program header size {phentsize} (expected {expected} for ELF{elfclass})",
            source=name,
        )
    if phoff + phnum * phentsize > size:
        raise ImageError(
            f"program header table {phoff:#x}+{phnum * phentsize:#x} lies outside the "
            f"{size:#x}-byte file",
            source=name,
        )
    phdrs: list[_ProgramHeader] = []
    try:
        stream = elf.stream
        for i in range(phnum):
            ph = struct_parse(elf.structs.Elf_Phdr, stream, stream_pos=phoff + i * phentsize)
            phdrs.append(
                _ProgramHeader(
                    number=i,
                    p_type=str(ph["p_type"]),
                    p_offset=int(ph["p_offset"]),
                    p_vaddr=int(ph["p_vaddr"]),
                    p_paddr=int(ph["p_paddr"]),
                    p_filesz=int(ph["p_filesz"]),
                    p_memsz=int(ph["p_memsz"]),
                    p_flags=int(ph["p_flags"]),
                    p_align=int(ph["p_align"]),
                )
            )
    except ELFError as exc:
        raise ImageError(f"cannot decode program header {len(phdrs)}: {exc}", source=name) from exc
    except Exception as exc:
        raise ImageError(
            f"cannot decode program header {len(phdrs)}: {exc!r}", source=name
        ) from exc
    return _RawHeaders(
        elfclass, little_endian, e_type, machine, entry, phoff, phentsize, phnum, tuple(phdrs)
    )


def _iter_notes(
    data: Buffer, offset: int, size: int, name: str
) -> Iterator[tuple[bytes, int, int, int]]:
    """Yield ``(name, type, desc_offset, desc_size)`` for each note in ``[offset, offset+size)``.

    Raises:
        ImageError: a note that does not fit in its segment.
    """
    pos, end = offset, offset + size
    while pos + _NOTE_HEADER.size <= end:
        namesz, descsz, ntype = _NOTE_HEADER.unpack_from(data, pos)
        name_at = pos + _NOTE_HEADER.size
        desc_at = name_at + align_up(namesz, 4)
        nxt = desc_at + align_up(descsz, 4)
        if desc_at + descsz > end:
            raise ImageError(
                f"ELF note (name size {namesz}, desc size {descsz}) overruns its PT_NOTE segment",
                source=name,
                offset=pos,
            )
        yield bytes(data[name_at : name_at + namesz]), ntype, desc_at, descsz
        pos = nxt


def parse_elf(data: Buffer, *, name: str = "elf") -> ElfImage:
    """Parse an x86 ELF executable (firmware or kernel) into an :class:`ElfImage`.

    Bad input raises only :class:`~cvmlaunch.errors.ImageError`; any other exception is a bug.

    Args:
        data: the whole file; a memoryview of an mmap'd file is used without copying.
        name: the input's name for error messages (usually its path).

    Returns:
        The image's class, machine, entry points and PT_LOAD segments.

    Raises:
        ImageError: not an ELF file, not little-endian x86, not an executable, a program
            header table or segment outside the file, ``p_filesz > p_memsz``, overlapping
            segments, a segment beyond the 52-bit physical address space, no loadable
            segment, absurd counts, or a malformed PVH note.
    """
    if not is_elf(data):
        raise ImageError("not an ELF file (no \\x7fELF magic)", source=name, offset=0)
    raw = _decode(data, name)
    if raw.machine not in _MACHINES:
        raise ImageError(
            f"machine {raw.machine} is not x86 (EM_386 or EM_X86_64)", source=name, offset=0x12
        )
    if raw.e_type not in _LOADABLE_TYPES:
        raise ImageError(
            f"ELF type {raw.e_type} is not an executable (ET_EXEC or ET_DYN)",
            source=name,
            offset=0x10,
        )
    size = len(data)
    segments: list[ElfSegment] = []
    pvh_entry: int | None = None
    for ph in raw.program_headers:
        if ph.p_type not in (_PT_LOAD, _PT_NOTE):
            continue
        index, offset, filesz, memsz, paddr = (
            ph.number,
            ph.p_offset,
            ph.p_filesz,
            ph.p_memsz,
            ph.p_paddr,
        )
        where = raw.phoff + index * raw.phentsize
        if offset + filesz > size:
            raise ImageError(
                f"segment {index} file range {offset:#x}+{filesz:#x} lies outside the "
                f"{size:#x}-byte file",
                source=name,
                offset=where,
            )
        if ph.p_type == _PT_NOTE:
            for note_name, ntype, desc_at, descsz in _iter_notes(data, offset, filesz, name):
                if note_name == _XEN_NOTE_NAME and ntype == XEN_ELFNOTE_PHYS32_ENTRY:
                    if descsz < _U32.size:
                        raise ImageError(
                            f"PVH entry note has a {descsz}-byte descriptor (needs 4)",
                            source=name,
                            offset=desc_at,
                        )
                    (pvh_entry,) = _U32.unpack_from(data, desc_at)
            continue
        if filesz > memsz:
            raise ImageError(
                f"segment {index} has p_filesz {filesz:#x} > p_memsz {memsz:#x}",
                source=name,
                offset=where,
            )
        if align_up(paddr + memsz) > MAX_GPA:
            raise ImageError(
                f"segment {index} at physical {paddr:#x}+{memsz:#x} is beyond the 52-bit "
                "physical address space",
                source=name,
                offset=where,
            )
        if len(segments) >= MAX_LOAD_SEGMENTS:
            raise ImageError(
                f"more than {MAX_LOAD_SEGMENTS} PT_LOAD segments", source=name, offset=where
            )
        segments.append(
            ElfSegment(
                index=index,
                paddr=paddr,
                vaddr=ph.p_vaddr,
                offset=offset,
                filesz=filesz,
                memsz=memsz,
                flags=SegmentFlag(ph.p_flags),
                align=ph.p_align,
            )
        )
    if not any(s.memsz for s in segments):
        raise ImageError("no loadable (PT_LOAD) segment with a non-zero size", source=name)
    nonempty = sorted((s for s in segments if s.memsz), key=lambda s: s.paddr)
    for a, b in itertools.pairwise(nonempty):
        if b.paddr < a.end:
            raise ImageError(
                f"segment {a.index} [{a.paddr:#x}-{a.end:#x}) overlaps segment {b.index} "
                f"[{b.paddr:#x}-{b.end:#x})",
                source=name,
            )
    return ElfImage(
        name=name,
        data=data,
        elf_class=_CLASSES[raw.elfclass],
        machine=_MACHINES[raw.machine],
        entry=raw.entry,
        pvh_entry=pvh_entry,
        segments=tuple(segments),
    )


@dataclass(frozen=True, slots=True)
class _Piece:
    """A byte range of one segment in guest-physical memory: file bytes, or BSS when
    ``file_offset`` is None."""

    segment: ElfSegment
    start: int
    end: int
    file_offset: int | None


def _pieces(image: ElfImage) -> list[_Piece]:
    out: list[_Piece] = []
    for s in sorted(image.segments, key=lambda s: s.paddr):
        if s.filesz:
            out.append(_Piece(s, s.paddr, s.paddr + s.filesz, s.offset))
        if s.memsz > s.filesz:
            out.append(_Piece(s, s.paddr + s.filesz, s.end, None))
    return out


def elf_regions(
    image: ElfImage,
    *,
    measured: bool = True,
    page_type: PageType = PageType.NORMAL,
    memory: MemoryMap | None = None,
) -> tuple[Region, ...]:
    """Turn an ELF image's PT_LOAD segments into page-granular regions, in ascending GPA.

    Whole pages of file bytes are zero-copy slices of the file (provenance ``ELF_SEGMENT``
    with the segment index and file offset); whole pages of BSS are explicit zero regions
    (provenance ``BSS``). A page only partly covered by a segment, or shared by two, is built
    once: the bytes of every segment that touches it, zero elsewhere.

    Args:
        image: the parsed ELF.
        measured: the regions' measured flag (see :class:`~cvmlaunch.layout.Region`).
        page_type: the populate page type (NORMAL for a measured load).
        memory: the guest's memory; when given, every segment must lie inside one memslot.

    Returns:
        The regions, ascending by GPA and never sharing a page.

    Raises:
        ImageError: a segment lies outside guest memory.
    """
    if memory is not None:
        for s in image.segments:
            if not s.memsz:
                continue
            lo, hi = align_down(s.paddr), align_up(s.end)
            if memory.slot_for(lo, hi - lo) is None:
                raise ImageError(
                    f"segment {s.index} [{s.paddr:#x}-{s.end:#x}) lies outside guest memory",
                    source=image.name,
                )
    view = memoryview(image.data)
    # page GPA -> pieces touching it only partly; filled in GPA order
    partial: dict[int, list[_Piece]] = {}
    whole: list[tuple[int, int, _Piece]] = []  # (gpa, size, piece) runs of whole pages
    for piece in _pieces(image):
        first_whole, last_whole = align_up(piece.start), align_down(piece.end)
        if first_whole < last_whole:
            whole.append((first_whole, last_whole - first_whole, piece))
            if piece.start < first_whole:
                partial.setdefault(align_down(piece.start), []).append(piece)
            if piece.end > last_whole:
                partial.setdefault(last_whole, []).append(piece)
        else:  # the piece sits within at most two pages without covering either
            for page in range(align_down(piece.start), piece.end, PAGE_SIZE):
                partial.setdefault(page, []).append(piece)

    regions: list[tuple[int, Region]] = []
    for gpa, size, piece in whole:
        s = piece.segment
        if piece.file_offset is None:
            prov = Provenance(SourceKind.BSS, image.name, index=s.index)
            region = Region(gpa, size, page_type, measured, prov)
        else:
            off = piece.file_offset + (gpa - piece.start)
            prov = Provenance(SourceKind.ELF_SEGMENT, image.name, offset=off, index=s.index)
            region = Region(gpa, size, page_type, measured, prov, view[off : off + size])
        regions.append((gpa, region))
    for page, pieces in partial.items():
        buf = bytearray(PAGE_SIZE)
        file_offset: int | None = None
        for p in pieces:
            lo, hi = max(p.start, page), min(p.end, page + PAGE_SIZE)
            if p.file_offset is not None:
                src = p.file_offset + (lo - p.start)
                buf[lo - page : hi - page] = view[src : src + (hi - lo)]
                if file_offset is None:
                    file_offset = src
        first = pieces[0].segment
        indices = sorted({p.segment.index for p in pieces})
        detail = (
            "partial page"
            if len(indices) == 1
            else "page shared by segments " + ", ".join(str(i) for i in indices)
        )
        if file_offset is None:
            prov = Provenance(SourceKind.BSS, image.name, index=first.index, detail=detail)
        else:
            prov = Provenance(
                SourceKind.ELF_SEGMENT,
                image.name,
                offset=file_offset,
                index=first.index,
                detail=detail,
            )
        data = bytes(buf.rstrip(b"\x00"))
        regions.append((page, Region(page, PAGE_SIZE, page_type, measured, prov, data)))
    regions.sort(key=lambda item: item[0])
    return tuple(r for _, r in regions)
