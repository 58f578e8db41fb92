"""Synthesize ELF executables and bzImage kernels in code, for the loader tests.

(OVMF/TDVF images are built by :mod:`tests.ovmf_builder`.) The layouts follow the same specs
the loaders cite: gABI "ELF Header" / "Program Header" / "Note Section", and the Linux boot
protocol's setup header (``asm/bootparam.h``, ``Documentation/arch/x86/boot.rst``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

# ---------------------------------------------------------------- ELF

EM_386 = 3
EM_X86_64 = 62
EM_AARCH64 = 183
PT_LOAD = 1
PT_NOTE = 4
ET_EXEC = 2
ET_REL = 1

_EHDR64 = struct.Struct("<16sHHIQQQIHHHHHH")
_EHDR32 = struct.Struct("<16sHHIIIIIHHHHHH")
_PHDR64 = struct.Struct("<IIQQQQQQ")  # type, flags, offset, vaddr, paddr, filesz, memsz, align
_PHDR32 = struct.Struct("<IIIIIIII")  # type, offset, vaddr, paddr, filesz, memsz, flags, align


@dataclass
class Seg:
    """A segment to build: ``data`` at ``paddr`` (file bytes), ``memsz`` >= len(data)."""

    paddr: int
    data: bytes
    memsz: int | None = None
    vaddr: int | None = None
    flags: int = 5
    type: int = PT_LOAD
    align: int = 0x1000
    offset: int | None = None  # override p_offset (to build bad files)
    filesz: int | None = None  # override p_filesz (to build bad files)


def note(name: bytes, ntype: int, desc: bytes) -> bytes:
    """One ELF note, name and descriptor padded to 4 bytes (gABI "Note Section")."""

    def pad(b: bytes) -> bytes:
        return b + bytes(-len(b) % 4)

    return struct.pack("<III", len(name), len(desc), ntype) + pad(name) + pad(desc)


def pvh_note(entry: int, size: int = 4) -> bytes:
    """The Xen PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY = 18, name "Xen")."""
    return note(b"Xen\x00", 18, entry.to_bytes(size, "little"))


@dataclass
class ElfSpec:
    """An ELF to build."""

    segments: list[Seg] = field(default_factory=list)
    elf_class: int = 64
    machine: int = EM_X86_64
    entry: int = 0x100000
    e_type: int = ET_EXEC
    big_endian: bool = False
    phnum: int | None = None  # override e_phnum
    phoff: int | None = None  # override e_phoff


def build_elf(spec: ElfSpec) -> bytes:
    """Pack ``spec``: headers, the program header table, then each segment's data at a
    4 KiB-aligned file offset congruent to its paddr (as a linker would)."""
    is64 = spec.elf_class == 64
    ehdr, phdr = (_EHDR64, _PHDR64) if is64 else (_EHDR32, _PHDR32)
    phoff = ehdr.size
    body_start = 0x1000
    blobs: list[tuple[int, bytes]] = []
    offsets: list[int] = []
    pos = body_start
    for s in spec.segments:
        off = pos + (s.paddr % 0x1000) if s.offset is None else s.offset
        offsets.append(off)
        if s.offset is None:
            blobs.append((off, s.data))
            pos = (off + len(s.data) + 0xFFF) & ~0xFFF
    ident = b"\x7fELF" + bytes([2 if is64 else 1, 2 if spec.big_endian else 1, 1]) + bytes(9)
    phnum = len(spec.segments) if spec.phnum is None else spec.phnum
    header = ehdr.pack(
        ident,
        spec.e_type,
        spec.machine,
        1,
        spec.entry,
        phoff if spec.phoff is None else spec.phoff,
        0,
        0,
        ehdr.size,
        phdr.size,
        phnum,
        0,
        0,
        0,
    )
    table = b""
    for s, off in zip(spec.segments, offsets, strict=True):
        filesz = len(s.data) if s.filesz is None else s.filesz
        memsz = len(s.data) if s.memsz is None else s.memsz
        vaddr = s.paddr if s.vaddr is None else s.vaddr
        if is64:
            table += phdr.pack(s.type, s.flags, off, vaddr, s.paddr, filesz, memsz, s.align)
        else:
            table += phdr.pack(s.type, off, vaddr, s.paddr, filesz, memsz, s.flags, s.align)
    end = max([body_start] + [off + len(b) for off, b in blobs])
    image = bytearray(end)
    image[: len(header)] = header
    image[phoff : phoff + len(table)] = table
    for off, b in blobs:
        image[off : off + len(b)] = b
    return bytes(image)


# ---------------------------------------------------------------- bzImage

#: The setup header at 0x1f1 (asm/bootparam.h struct setup_header).
SETUP_HEADER = struct.Struct("<BHIHHHHHIHIHHBBHIIIIHBBIIIBBHIIQIIQQIII")


def build_bzimage(
    *,
    version: int = 0x020F,
    setup_sects: int = 4,
    payload: bytes = b"\x90" * 0x3000,
    magic: bytes = b"HdrS",
    loadflags: int = 0x01,
    code32_start: int = 0x100000,
    initrd_addr_max: int = 0x7FFFFFFF,
    kernel_alignment: int = 0x200000,
    relocatable: int = 1,
    min_alignment: int = 21,
    xloadflags: int = 0x7F,
    cmdline_size: int = 2047,
    pref_address: int = 0x1000000,
    init_size: int = 0x800000,
    payload_offset: int = 0x2CC,
    payload_length: int = 0x1000,
    handover_offset: int = 0x190,
    kernel_info_offset: int = 0x1000,
    version_string: bytes | None = b"6.99.0-test (builder@tests) #1",
    boot_flag: int = 0xAA55,
    syssize: int | None = None,
) -> bytes:
    """A bzImage: a boot sector and ``setup_sects`` setup sectors, then ``payload``."""
    real_sects = setup_sects or 4
    setup = bytearray((real_sects + 1) * 512)
    kernel_version = 0
    if version_string is not None:
        at = 0x300
        setup[at : at + len(version_string) + 1] = version_string + b"\x00"
        kernel_version = at - 0x200
    if syssize is None:
        syssize = (len(payload) + 15) // 16
    fields = (
        setup_sects,
        1,  # root_flags
        syssize,
        0,  # ram_size
        0xFFFF,  # vid_mode
        0,  # root_dev
        boot_flag,
        0x6AEB,  # jump
        int.from_bytes(magic.ljust(4, b"\x00")[:4], "little"),
        version,
        0,  # realmode_swtch
        0x1000,  # start_sys_seg
        kernel_version,
        0,  # type_of_loader
        loadflags,
        0x8000,  # setup_move_size
        code32_start,
        0,  # ramdisk_image
        0,  # ramdisk_size
        0,  # bootsect_kludge
        0x5BE0,  # heap_end_ptr
        0,  # ext_loader_ver
        0,  # ext_loader_type
        0,  # cmd_line_ptr
        initrd_addr_max,
        kernel_alignment,
        relocatable,
        min_alignment,
        xloadflags,
        cmdline_size,
        0,  # hardware_subarch
        0,  # hardware_subarch_data
        payload_offset,
        payload_length,
        0,  # setup_data
        pref_address,
        init_size,
        handover_offset,
        kernel_info_offset,
    )
    SETUP_HEADER.pack_into(setup, 0x1F1, *fields)
    return bytes(setup) + payload
