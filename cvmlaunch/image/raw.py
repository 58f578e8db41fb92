"""Raw inputs: the initrd (bytes placed as they are) and the kernel command line.

Rule 1: the initrd is never copied: its region's data is the caller's buffer (e.g. an mmap'd
file), zero-padded to whole pages by the region itself.

Rule 2: the command line is what the kernel reads: the bytes plus one terminating NUL (the
SEV kernel-hashes table also hashes it with the NUL). Its length without the NUL may not
exceed the kernel's ``cmdline_size`` (boot.rst, "cmdline_size": "The maximum size of the
command line without the terminating zero").
"""

from __future__ import annotations

from cvmlaunch.errors import ConfigError, ImageError
from cvmlaunch.layout import (
    PAGE_SIZE,
    Buffer,
    PageType,
    Provenance,
    Region,
    SourceKind,
    align_down,
    align_up,
)
from cvmlaunch.memory_map import MemoryMap, MemslotKind

__all__ = ["OLD_INITRD_ADDR_MAX", "initrd_gpa", "initrd_region", "kernel_cmdline"]

#: boot.rst, initrd_addr_max: the limit for kernels whose header does not say (protocol < 2.03).
OLD_INITRD_ADDR_MAX = 0x37FFFFFF


def kernel_cmdline(
    cmdline: str | bytes, *, limit: int | None = None, name: str = "command line"
) -> bytes:
    """The command line as the kernel reads it: its bytes plus a terminating NUL.

    Args:
        cmdline: the command line; ``str`` is encoded as UTF-8 (as sev-snp-measure does).
        limit: the kernel's ``cmdline_size`` (see
            :attr:`~cvmlaunch.image.bzimage.BzImage.cmdline_size`), if known.
        name: what to call it in messages.

    Returns:
        ``cmdline`` bytes followed by one NUL.

    Raises:
        ConfigError: the command line contains a NUL, or is longer than ``limit`` bytes.
    """
    raw = cmdline.encode() if isinstance(cmdline, str) else bytes(cmdline)
    nul = raw.find(0)
    if nul >= 0:
        raise ConfigError(f"{name} contains a NUL byte at offset {nul}")
    if limit is not None and len(raw) > limit:
        raise ConfigError(
            f"{name} is {len(raw)} bytes; the kernel accepts at most {limit} (cmdline_size)"
        )
    return raw + b"\x00"


def initrd_gpa(size: int, *, memory: MemoryMap, addr_max: int = OLD_INITRD_ADDR_MAX) -> int:
    """Where a boot loader puts an initrd: as high in low RAM as the kernel allows.

    The initrd ends at the top of the RAM below 4 GiB or just above ``addr_max`` (the kernel's
    ``initrd_addr_max``: the highest address its last byte may have), whichever is lower, and
    starts on a page boundary (as QEMU and Firecracker place it).

    Args:
        size: the initrd's size in bytes.
        memory: the guest's memory map.
        addr_max: the kernel's ``initrd_addr_max``.

    Returns:
        The initrd's guest-physical address (4 KiB aligned).

    Raises:
        ConfigError: the initrd is empty or does not fit in low RAM below the limit.
    """
    if size <= 0:
        raise ConfigError("the initrd is empty")
    low = [s for s in memory.memslots if s.kind is MemslotKind.RAM_LOW]
    if not low:
        raise ConfigError("the guest has no RAM below 4 GiB for the initrd")
    slot = low[0]
    top = min(slot.end, align_down(addr_max + 1))
    gpa = align_down(top - align_up(size))
    if gpa < slot.gpa or top <= 0:
        raise ConfigError(
            f"an initrd of {size:#x} bytes does not fit below {top:#x} "
            f"(low RAM ends at {slot.end:#x}, initrd_addr_max {addr_max:#x})"
        )
    return gpa


def initrd_region(
    data: Buffer,
    *,
    gpa: int,
    name: str = "initrd",
    measured: bool = True,
    page_type: PageType = PageType.NORMAL,
) -> Region:
    """The region that places an initrd (not copied) at ``gpa``, padded to whole pages.

    Args:
        data: the initrd file's bytes.
        gpa: where it goes (4 KiB aligned; see :func:`initrd_gpa`).
        name: the input's name, for provenance and messages.
        measured: the region's measured flag.
        page_type: the populate page type.

    Returns:
        One region with provenance ``FILE`` at offset 0.

    Raises:
        ImageError: the initrd is empty.
        LayoutError: ``gpa`` is not page aligned or the range is out of bounds.
    """
    if len(data) == 0:
        raise ImageError("the initrd is empty", source=name)
    size = align_up(len(data), PAGE_SIZE)
    prov = Provenance(SourceKind.FILE, name, offset=0, detail="initrd")
    return Region(gpa, size, page_type, measured, prov, data)
