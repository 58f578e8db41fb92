"""Linux bzImage kernels: the x86 boot protocol's setup header, and where the kernel goes.

Rule 1: take a buffer, never a path; do not copy the kernel (the protected-mode part is a
slice of the caller's buffer).

Rule 2: a field is only read from kernels whose boot protocol defines it; older kernels get
the protocol's documented default (e.g. ``cmdline_size`` 255 before 2.06, ``initrd_addr_max``
0x37FFFFFF before 2.03) or None when there is none.

Format: ``struct setup_header`` at file offset 0x1F1 (``asm/bootparam.h``; field meanings and
the protocol version that introduced each one: ``Documentation/arch/x86/boot.rst``, "The Real-
Mode Kernel Header" and "Details of Header Fields"). The file is the boot sector plus
``setup_sects`` 512-byte setup sectors (the real-mode part), then the protected-mode kernel,
which a boot loader places at ``code32_start`` (0x100000 for a bzImage) or, when the kernel is
relocatable, at any ``kernel_alignment``-aligned address (``pref_address`` preferred), with
``init_size`` bytes of room from there.
"""

from __future__ import annotations

import enum
import re
import struct
from dataclasses import dataclass

from cvmlaunch._struct import StructTable
from cvmlaunch.errors import ImageError
from cvmlaunch.layout import Buffer

__all__ = [
    "HDRS_MAGIC",
    "QEMU_ACPI_DATA_SIZE",
    "SETUP_HEADER",
    "SETUP_HEADER_FIELDS",
    "SETUP_HEADER_OFFSET",
    "BzImage",
    "LoadFlag",
    "PayloadFormat",
    "SetupHeader",
    "XLoadFlag",
    "apply_patches",
    "is_bzimage",
    "parse_bzimage",
    "qemu_initrd_max",
    "qemu_setup_header_patches",
]

#: boot.rst "The Real-Mode Kernel Header": the setup header starts at 0x1F1 ...
SETUP_HEADER_OFFSET = 0x1F1
#: ... and carries the magic "HdrS" at 0x202 (protocol 2.00+).
HDRS_MAGIC = b"HdrS"
_MAGIC_OFFSET = 0x202
#: asm/bootparam.h ``struct setup_header`` (packed, little-endian), 0x1F1..0x26C: each field's
#: file offset and, in the comment, the boot protocol version that introduced it (boot.rst,
#: "The Real-Mode Kernel Header").
SETUP_HEADER_FIELDS = StructTable(
    "struct setup_header",
    (
        ("setup_sects", 0x1F1, "B"),
        ("root_flags", 0x1F2, "H"),
        ("syssize", 0x1F4, "I"),  # 2.04+: protected-mode size in 16-byte paragraphs
        ("ram_size", 0x1F8, "H"),
        ("vid_mode", 0x1FA, "H"),
        ("root_dev", 0x1FC, "H"),
        ("boot_flag", 0x1FE, "H"),  # 0xAA55
        ("jump", 0x200, "H"),
        ("header", 0x202, "I"),  # "HdrS"
        ("version", 0x206, "H"),  # boot protocol version (major << 8 | minor)
        ("realmode_swtch", 0x208, "I"),
        ("start_sys_seg", 0x20C, "H"),
        ("kernel_version", 0x20E, "H"),  # pointer to the version string, less 0x200
        ("type_of_loader", 0x210, "B"),
        ("loadflags", 0x211, "B"),
        ("setup_move_size", 0x212, "H"),
        ("code32_start", 0x214, "I"),  # 2.00+: where the protected-mode part is loaded/entered
        ("ramdisk_image", 0x218, "I"),
        ("ramdisk_size", 0x21C, "I"),
        ("bootsect_kludge", 0x220, "I"),
        ("heap_end_ptr", 0x224, "H"),
        ("ext_loader_ver", 0x226, "B"),
        ("ext_loader_type", 0x227, "B"),
        ("cmd_line_ptr", 0x228, "I"),
        ("initrd_addr_max", 0x22C, "I"),  # 2.03+
        ("kernel_alignment", 0x230, "I"),  # 2.05+
        ("relocatable_kernel", 0x234, "B"),  # 2.05+
        ("min_alignment", 0x235, "B"),  # 2.10+ (log2)
        ("xloadflags", 0x236, "H"),  # 2.12+
        ("cmdline_size", 0x238, "I"),  # 2.06+
        ("hardware_subarch", 0x23C, "I"),  # 2.07+
        ("hardware_subarch_data", 0x240, "Q"),  # 2.07+
        ("payload_offset", 0x248, "I"),  # 2.08+ (from the start of the protected-mode part)
        ("payload_length", 0x24C, "I"),  # 2.08+
        ("setup_data", 0x250, "Q"),  # 2.09+
        ("pref_address", 0x258, "Q"),  # 2.10+
        ("init_size", 0x260, "I"),  # 2.10+
        ("handover_offset", 0x264, "I"),  # 2.11+
        ("kernel_info_offset", 0x268, "I"),  # 2.15+
    ),
    end=0x26C,
)
SETUP_HEADER = SETUP_HEADER_FIELDS.struct
_AT = SETUP_HEADER_FIELDS.offsets
_BOOT_FLAG = 0xAA55
#: boot.rst: "setup_sects ... If this field is 0, the real value is 4."
_DEFAULT_SETUP_SECTS = 4
_SECTOR = 512
#: boot.rst, initrd_addr_max: "For boot protocols 2.02 or earlier, ... the maximum address
#: is 0x37FFFFFF."
_OLD_INITRD_ADDR_MAX = 0x37FFFFFF
#: boot.rst, cmdline_size: "For boot protocol 2.05 and earlier, the maximum size was 255."
_OLD_CMDLINE_SIZE = 255
#: boot.rst, "64-bit boot protocol": the 64-bit entry is 0x200 bytes after the load address.
STARTUP_64_OFFSET = 0x200
#: kernel_version points 0x200 below the string (boot.rst: "less 0x200").
_KERNEL_VERSION_BIAS = 0x200
_MAX_VERSION_STRING = 256


class LoadFlag(enum.IntFlag):
    """``loadflags`` (asm/bootparam.h); unknown bits are kept."""

    LOADED_HIGH = 1 << 0
    KASLR_FLAG = 1 << 1
    QUIET_FLAG = 1 << 5
    KEEP_SEGMENTS = 1 << 6
    CAN_USE_HEAP = 1 << 7


class XLoadFlag(enum.IntFlag):
    """``xloadflags`` (asm/bootparam.h, protocol 2.12+); unknown bits are kept."""

    KERNEL_64 = 1 << 0
    CAN_BE_LOADED_ABOVE_4G = 1 << 1
    EFI_HANDOVER_32 = 1 << 2
    EFI_HANDOVER_64 = 1 << 3
    EFI_KEXEC = 1 << 4
    FIVE_LEVEL = 1 << 5
    FIVE_LEVEL_ENABLED = 1 << 6
    MEM_ENCRYPTION = 1 << 7


class PayloadFormat(enum.Enum):
    """The compression of the kernel payload, from its magic bytes (the formats the kernel's
    ``arch/x86/boot/compressed`` can build)."""

    GZIP = "gzip"
    BZIP2 = "bzip2"
    LZMA = "lzma"
    XZ = "xz"
    LZO = "lzo"
    LZ4 = "lz4"
    ZSTD = "zstd"
    UNCOMPRESSED = "uncompressed"  # an ELF vmlinux (CONFIG_KERNEL_UNCOMPRESSED)
    UNKNOWN = "unknown"


_PAYLOAD_MAGICS: tuple[tuple[bytes, PayloadFormat], ...] = (
    (b"\x1f\x8b", PayloadFormat.GZIP),
    (b"BZh", PayloadFormat.BZIP2),
    (b"\x5d\x00\x00", PayloadFormat.LZMA),
    (b"\xfd7zXZ\x00", PayloadFormat.XZ),
    (b"\x89LZO", PayloadFormat.LZO),
    (b"\x02\x21\x4c\x18", PayloadFormat.LZ4),
    (b"\x28\xb5\x2f\xfd", PayloadFormat.ZSTD),
    (b"\x7fELF", PayloadFormat.UNCOMPRESSED),
)


@dataclass(frozen=True, slots=True)
class SetupHeader:
    """``struct setup_header`` as stored (asm/bootparam.h), every field raw: the fields of
    :data:`SETUP_HEADER_FIELDS`, by name.

    Fields a kernel's protocol version does not define hold whatever bytes are there; use
    :class:`BzImage` for values that honour the version.
    """

    setup_sects: int
    root_flags: int
    syssize: int
    ram_size: int
    vid_mode: int
    root_dev: int
    boot_flag: int
    jump: int
    header: int
    version: int
    realmode_swtch: int
    start_sys_seg: int
    kernel_version: int
    type_of_loader: int
    loadflags: int
    setup_move_size: int
    code32_start: int
    ramdisk_image: int
    ramdisk_size: int
    bootsect_kludge: int
    heap_end_ptr: int
    ext_loader_ver: int
    ext_loader_type: int
    cmd_line_ptr: int
    initrd_addr_max: int
    kernel_alignment: int
    relocatable_kernel: int
    min_alignment: int
    xloadflags: int
    cmdline_size: int
    hardware_subarch: int
    hardware_subarch_data: int
    payload_offset: int
    payload_length: int
    setup_data: int
    pref_address: int
    init_size: int
    handover_offset: int
    kernel_info_offset: int

    @classmethod
    def from_bytes(cls, data: Buffer) -> SetupHeader:
        """Unpack the header from a whole kernel image (it sits at 0x1F1).

        Raises:
            ImageError: the image is too short to hold the header (no source name; the
                caller adds it).
        """
        end = SETUP_HEADER_FIELDS.end
        if len(data) < end:
            raise ImageError(f"{len(data)} bytes is too small for a Linux setup header")
        return cls(**SETUP_HEADER_FIELDS.unpack(data))


@dataclass(frozen=True, slots=True, eq=False)
class BzImage:
    """A parsed bzImage: the setup header and the values a boot loader derives from it.

    Fields that the kernel's protocol version does not define are the protocol's default or
    None. ``kernel_offset`` / ``kernel_size`` delimit the protected-mode part in the file.
    """

    name: str
    data: Buffer
    header: SetupHeader
    protocol: tuple[int, int]
    setup_sects: int
    kernel_offset: int
    kernel_size: int
    load_address: int
    loadflags: LoadFlag
    xloadflags: XLoadFlag
    relocatable: bool
    kernel_alignment: int | None
    min_alignment: int | None  # in bytes (the header stores its log2)
    pref_address: int | None
    init_size: int | None
    initrd_addr_max: int
    cmdline_size: int
    payload_offset: int | None
    payload_length: int | None
    payload_format: PayloadFormat | None
    handover_offset: int | None
    kernel_info_offset: int | None
    kernel_version: str | None

    @property
    def protocol_string(self) -> str:
        """The boot protocol version as ``major.minor``, e.g. ``2.15``."""
        return f"{self.protocol[0]}.{self.protocol[1]:02d}"

    @property
    def setup_size(self) -> int:
        """Bytes of the real-mode part (boot sector plus setup sectors)."""
        return self.kernel_offset

    @property
    def startup_64(self) -> int | None:
        """The 64-bit entry point at the load address, if the kernel has one (KERNEL_64)."""
        if XLoadFlag.KERNEL_64 in self.xloadflags:
            return self.load_address + STARTUP_64_OFFSET
        return None

    def kernel(self) -> memoryview:
        """The protected-mode part of the file, not copied."""
        return memoryview(self.data)[self.kernel_offset :]


def is_bzimage(data: Buffer) -> bool:
    """Whether ``data`` carries the boot protocol magic ``HdrS`` at 0x202."""
    return bytes(data[_MAGIC_OFFSET : _MAGIC_OFFSET + 4]) == HDRS_MAGIC


def _payload_format(payload: Buffer) -> PayloadFormat:
    head = bytes(payload[:8])
    for magic, fmt in _PAYLOAD_MAGICS:
        if head.startswith(magic):
            return fmt
    return PayloadFormat.UNKNOWN


def parse_bzimage(data: Buffer, *, name: str = "kernel") -> BzImage:
    """Parse a bzImage (Linux x86 boot protocol 2.00 or later, loaded high).

    Bad input raises only :class:`~cvmlaunch.errors.ImageError`; any other exception is a bug.

    Args:
        data: the whole kernel file; a memoryview of an mmap'd file is used without copying.
        name: the input's name for error messages (usually its path).

    Returns:
        The header and the derived load parameters.

    Raises:
        ImageError: too small, no ``HdrS`` magic or boot flag, a zImage (not loaded high),
            setup sectors or payload outside the file, a file shorter than ``syssize`` says,
            a bad ``kernel_alignment`` for a relocatable kernel, or a version string pointer
            outside the setup area.
    """
    size = len(data)
    if not is_bzimage(data):
        raise ImageError(
            "no Linux boot protocol magic 'HdrS' (not a bzImage)", source=name, offset=0x202
        )
    try:
        h = SetupHeader.from_bytes(data)
    except ImageError as exc:
        raise ImageError(exc.message, source=name) from exc
    if h.boot_flag != _BOOT_FLAG:
        raise ImageError(f"boot flag {h.boot_flag:#06x} is not 0xaa55", source=name, offset=0x1FE)
    version = h.version
    if version < 0x0200:
        raise ImageError(
            f"boot protocol {version >> 8}.{version & 0xFF:02d} is older than 2.00",
            source=name,
            offset=0x206,
        )
    loadflags = LoadFlag(h.loadflags)
    if LoadFlag.LOADED_HIGH not in loadflags:
        raise ImageError(
            "a zImage (protected-mode part loaded at 0x10000) is not supported: need a bzImage",
            source=name,
            offset=0x211,
        )
    setup_sects = h.setup_sects or _DEFAULT_SETUP_SECTS
    kernel_offset = (setup_sects + 1) * _SECTOR
    if kernel_offset >= size:
        raise ImageError(
            f"{setup_sects} setup sectors ({kernel_offset:#x} bytes) leave no kernel in the "
            f"{size:#x}-byte file",
            source=name,
            offset=SETUP_HEADER_OFFSET,
        )
    kernel_size = size - kernel_offset
    if version >= 0x0204 and h.syssize * 16 > kernel_size + 15:
        raise ImageError(
            f"truncated: syssize says {h.syssize * 16:#x} bytes of kernel, the file has "
            f"{kernel_size:#x}",
            source=name,
            offset=0x1F4,
        )

    relocatable = version >= 0x0205 and h.relocatable_kernel != 0
    kernel_alignment = h.kernel_alignment if version >= 0x0205 else None
    if relocatable and (
        kernel_alignment is None
        or kernel_alignment == 0
        or kernel_alignment & (kernel_alignment - 1)
    ):
        raise ImageError(
            f"relocatable kernel with kernel_alignment {h.kernel_alignment:#x} "
            "(not a power of two)",
            source=name,
            offset=0x230,
        )

    if version >= 0x020A and h.min_alignment >= 64:
        raise ImageError(f"min_alignment 2^{h.min_alignment} is absurd", source=name, offset=0x235)

    payload_offset = payload_length = None
    payload_format = None
    if version >= 0x0208 and h.payload_length:
        payload_offset, payload_length = h.payload_offset, h.payload_length
        if payload_offset + payload_length > kernel_size:
            raise ImageError(
                f"payload {payload_offset:#x}+{payload_length:#x} lies outside the "
                f"{kernel_size:#x}-byte protected-mode part",
                source=name,
                offset=0x248,
            )
        start = kernel_offset + payload_offset
        payload_format = _payload_format(memoryview(data)[start : start + payload_length])

    kernel_version = None
    if h.kernel_version:
        at = h.kernel_version + _KERNEL_VERSION_BIAS
        if at >= kernel_offset:
            raise ImageError(
                f"kernel version string pointer {h.kernel_version:#x} points outside the "
                f"{kernel_offset:#x}-byte setup area",
                source=name,
                offset=0x20E,
            )
        raw = bytes(data[at : min(at + _MAX_VERSION_STRING, kernel_offset)])
        kernel_version = raw.split(b"\x00", 1)[0].decode("ascii", errors="replace")

    return BzImage(
        name=name,
        data=data,
        header=h,
        protocol=(version >> 8, version & 0xFF),
        setup_sects=setup_sects,
        kernel_offset=kernel_offset,
        kernel_size=kernel_size,
        load_address=h.code32_start,
        loadflags=loadflags,
        xloadflags=XLoadFlag(h.xloadflags) if version >= 0x020C else XLoadFlag(0),
        relocatable=relocatable,
        kernel_alignment=kernel_alignment,
        min_alignment=(1 << h.min_alignment) if version >= 0x020A else None,
        pref_address=h.pref_address if version >= 0x020A else None,
        init_size=h.init_size if version >= 0x020A else None,
        initrd_addr_max=h.initrd_addr_max if version >= 0x0203 else _OLD_INITRD_ADDR_MAX,
        cmdline_size=h.cmdline_size if version >= 0x0206 else _OLD_CMDLINE_SIZE,
        payload_offset=payload_offset,
        payload_length=payload_length,
        payload_format=payload_format,
        handover_offset=h.handover_offset if version >= 0x020B else None,
        kernel_info_offset=h.kernel_info_offset if version >= 0x020F else None,
        kernel_version=kernel_version,
    )


#: QEMU's ``acpi_data_size`` for current q35/pc machine types (0x20000 + 0x8000): the top of
#: low RAM it keeps free of the initrd.
QEMU_ACPI_DATA_SIZE = 0x28000
#: ``type_of_loader`` QEMU writes ("High nybble = B reserved for QEMU").
QEMU_LOADER_TYPE = 0xB0
#: QEMU reads (and patches) at most this many bytes of the setup area.
_QEMU_HEADER_BUFFER = 8192


def qemu_initrd_max(data: Buffer, below_4g_mem_size: int, acpi_data_size: int) -> int:
    """The highest address QEMU lets an initrd reach (``x86_load_linux``): UINT32_MAX for a
    2.12+ kernel with XLF_CAN_BE_LOADED_ABOVE_4G, else ``initrd_addr_max`` (2.03+) or
    0x37FFFFFF, clamped to ``below_4g_mem_size - acpi_data_size - 1``."""
    h = SetupHeader.from_bytes(data)
    if h.version >= 0x020C and h.xloadflags & XLoadFlag.CAN_BE_LOADED_ABOVE_4G:
        initrd_max = 0xFFFFFFFF
    elif h.version >= 0x0203:
        initrd_max = h.initrd_addr_max
    else:
        initrd_max = _OLD_INITRD_ADDR_MAX
    if initrd_max >= below_4g_mem_size - acpi_data_size:
        initrd_max = below_4g_mem_size - acpi_data_size - 1
    return initrd_max


def _vga_mode(cmdline: str) -> int | None:
    """QEMU's ``vga=`` handling: normal/ext/ask, else a C ``strtoul(..., 0)`` number that must
    end the word."""
    at = cmdline.find("vga=")
    if at < 0:
        return None
    value = cmdline[at + 4 :]
    for word, mode in (("normal", 0xFFFF), ("ext", 0xFFFE), ("ask", 0xFFFD)):
        if value.startswith(word):
            return mode
    text = value.split(" ", 1)[0]
    if re.fullmatch(r"0[xX][0-9a-fA-F]+", text):
        mode = int(text, 16)
    elif re.fullmatch(r"0[0-7]*", text):
        mode = int(text, 8)
    elif re.fullmatch(r"[1-9][0-9]*", text):
        mode = int(text)
    else:
        mode = -1
    if not 0 <= mode <= 0xFFFFFFFF:
        raise ImageError(f"invalid 'vga=' kernel parameter {text!r} (QEMU refuses it)")
    return mode & 0xFFFF


def qemu_setup_header_patches(
    data: Buffer,
    *,
    below_4g_mem_size: int,
    initrd_size: int | None,
    cmdline: str,
    acpi_data_size: int = QEMU_ACPI_DATA_SIZE,
) -> dict[int, bytes]:
    """The bytes QEMU's ``x86_load_linux`` (hw/i386/x86-common.c) writes into a bzImage's
    setup header before serving it over fw_cfg as KERNEL_SETUP_DATA (QEMU before 10.2 did so
    for TDX guests too; OVMF then measures the patched image).

    Patches, by protocol version (``real_addr``/``cmdline_addr`` = 0x10000/0x20000 for 2.02+
    loaded high, else 0x90000/0x9A000 - cmdline_size):

    * 0x228 ``cmd_line_ptr`` = cmdline_addr (2.02+), else the old 0x20 magic 0xA33F and 0x22
      offset;
    * 0x1FA ``vid_mode`` when the command line has ``vga=``;
    * 0x210 ``type_of_loader`` = 0xB0 (2.00+);
    * 0x211 ``loadflags`` |= CAN_USE_HEAP and 0x224 ``heap_end_ptr`` = cmdline_addr -
      real_addr - 0x200 (2.01+);
    * with an initrd: 0x218 ``ramdisk_image`` = (initrd_max - size) & ~4095 and 0x21C
      ``ramdisk_size`` (:func:`qemu_initrd_max`).

    Args:
        data: the kernel file.
        below_4g_mem_size: RAM below 4 GiB (q35: the RAM size if < 0xB0000000, else 2 GiB).
        initrd_size: bytes of the initrd, None without one.
        cmdline: the kernel command line (``-append``).
        acpi_data_size: QEMU's reserve at the top of low RAM.

    Returns:
        ``{file offset: new bytes}``; :func:`apply_patches` writes them into a copy.

    Raises:
        ImageError: not a bzImage, an initrd too large for the space QEMU allows, or a bad
            ``vga=`` (QEMU exits on both).
    """
    if not is_bzimage(data):
        raise ImageError("no Linux boot protocol magic 'HdrS': QEMU would not patch it")
    h = SetupHeader.from_bytes(data)
    protocol = h.version
    cmdline_size = (len(cmdline.encode()) + 16) & ~15
    if protocol < 0x202 or not h.loadflags & LoadFlag.LOADED_HIGH:  # low, or high but ancient
        real_addr, cmdline_addr = 0x90000, 0x9A000 - cmdline_size
    else:
        real_addr, cmdline_addr = 0x10000, 0x20000
    patches: dict[int, bytes] = {}
    if protocol >= 0x202:
        patches[_AT["cmd_line_ptr"]] = struct.pack("<I", cmdline_addr)
    else:
        patches[0x20] = struct.pack("<HH", 0xA33F, (cmdline_addr - real_addr) & 0xFFFF)
    vga = _vga_mode(cmdline)
    if vga is not None:
        patches[_AT["vid_mode"]] = struct.pack("<H", vga)
    loadflags = h.loadflags
    if protocol >= 0x200:
        patches[_AT["type_of_loader"]] = bytes([QEMU_LOADER_TYPE])
    if protocol >= 0x201:
        loadflags |= LoadFlag.CAN_USE_HEAP
        patches[_AT["heap_end_ptr"]] = struct.pack(
            "<H", (cmdline_addr - real_addr - 0x200) & 0xFFFF
        )
    patches[_AT["loadflags"]] = bytes([loadflags])
    if initrd_size is not None:
        initrd_max = qemu_initrd_max(data, below_4g_mem_size, acpi_data_size)
        if initrd_size >= initrd_max:
            raise ImageError(
                f"initrd of {initrd_size:#x} bytes is too large: QEMU allows below {initrd_max:#x}"
            )
        patches[_AT["ramdisk_image"]] = struct.pack(
            "<II", (initrd_max - initrd_size) & ~4095, initrd_size
        )
    return patches


def apply_patches(data: Buffer, patches: dict[int, bytes]) -> bytearray:
    """A copy of ``data`` with each ``{offset: bytes}`` written in (QEMU copies at most the first
    8 KiB of the setup area back; every header patch lies there).

    Raises:
        ImageError: a patch outside the first 8 KiB or outside the image.
    """
    out = bytearray(data)
    for offset, raw in patches.items():
        if offset + len(raw) > min(_QEMU_HEADER_BUFFER, len(out)):
            raise ImageError(f"setup header patch at {offset:#x} lies outside the header")
        out[offset : offset + len(raw)] = raw
    return out
