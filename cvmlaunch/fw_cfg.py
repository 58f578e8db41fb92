"""QEMU's fw_cfg device, as the x86 firmware sees it: a pure model (:class:`FwCfg`).

The device serves numbered items and named files to the guest through I/O ports (QEMU
docs/specs/fw_cfg.rst, hw/nvram/fw_cfg.c; edk2 OvmfPkg/Library/QemuFwCfgLib is the reader).
This module holds the state machines; the KVM edge (:mod:`cvmlaunch.kvm_map`) hands it the
port accesses of a vCPU and a guest-memory accessor for DMA.

Rule 1 (pure): no OS call. Guest memory is reached only through the :class:`GuestRam` object
passed to :meth:`FwCfg.io_out`; an address it cannot reach raises ``ValueError`` there, which
the DMA engine turns into the error bit, as QEMU's failed ``dma_memory_*`` calls do.

Rule 2 (ports, fw_cfg.rst "Selector Register" / "Data Register"): a 16-bit write to the
selector port 0x510 selects an item (little endian) and rewinds its offset to 0; each 8-bit
read of the data port 0x511 returns the next byte of the selected item, and 0 once past its
end, or when the item does not exist. 8-bit data writes are ignored (QEMU 2.4+).

Rule 3 (DMA, fw_cfg.rst "DMA interface"): the guest writes the guest-physical address of a
``FWCfgDmaAccess {be32 control; be32 length; be64 address}`` to port 0x514 as two 32-bit
big-endian halves, high (0x514) first; writing the low half (0x518) runs the transfer.
Control bits: ERROR 0x01, READ 0x02, SKIP 0x04, SELECT 0x08 (selects ``control >> 16`` first),
WRITE 0x10. READ copies item bytes to ``address`` (zeros past the end), SKIP advances the
offset, WRITE is refused (ERROR) since every item here is read-only, as QEMU refuses writes
to items without ``allow_write``. The control word is written back as 0 on success or ERROR
(a failed read of the access structure writes ERROR and stops). Reading 0x514..0x51b gives
the DMA signature ``"QEMU CFG"``.

Rule 4 (items, fw_cfg.rst "Firmware Configuration Items"; QEMU hw/i386/x86-common.c
``x86_load_linux``): SIGNATURE 0x0000 is ``"QEMU"``, ID 0x0001 is 3 (traditional interface
and DMA), FILE_DIR 0x0019 is ``be32 count`` then per file ``be32 size, be16 select, be16
reserved, char name[56]`` (NUL padded), files sorted by name and numbered from 0x0020. The
kernel items (sizes little-endian u32): KERNEL_SIZE 0x08, INITRD_SIZE 0x0b, KERNEL_DATA 0x11,
INITRD_DATA 0x12, CMDLINE_SIZE 0x14, CMDLINE_DATA 0x15 (the command line and its NUL),
SETUP_SIZE 0x17, SETUP_DATA 0x18.

Rule 5 (the kernel of an encrypted guest, QEMU ``x86_load_linux``): for SEV/SNP QEMU serves
the bzImage unpatched, split at ``(setup_sects + 1) * 512`` (``setup_sects`` the byte at
0x1f1, 0 meaning 4): SETUP_DATA is the head, KERNEL_DATA the rest. OVMF hashes SETUP_DATA ||
KERNEL_DATA, the initrd and CMDLINE_DATA and compares them with the SEV kernel-hashes table,
so what :func:`kernel_items` serves must be byte for byte the file the table hashed
(:mod:`cvmlaunch.plan.sev_hashes`); no initrd serves no initrd items (their size reads 0).

Rule 6 (the RAM map, QEMU hw/i386/e820_memory_layout.c, read by OVMF's PlatformPei): the file
``etc/e820`` is an array of packed ``{le64 address; le64 length; le32 type}`` entries, one
E820_RAM (1) entry per RAM memslot in address order (q35: below 4 GiB, then from 4 GiB up).
QEMU also reserves KVM's identity-map pages (0xFEFFC000, 16 KiB) there; this VMM does not
place them, so it does not list them.
"""

from __future__ import annotations

import contextlib
import enum
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from cvmlaunch.errors import ImageError

__all__ = [
    "DATA_PORT",
    "DMA_PORT",
    "DMA_SIGNATURE",
    "E820_FILE",
    "FILE_FIRST",
    "SELECTOR_PORT",
    "Data",
    "DmaControl",
    "FwCfg",
    "GuestRam",
    "Item",
    "KernelBoot",
    "e820_table",
    "file_directory",
    "kernel_items",
    "split_kernel",
]

SELECTOR_PORT = 0x510
DATA_PORT = 0x511
DMA_PORT = 0x514
#: What a read of the DMA address register returns (fw_cfg.rst).
DMA_SIGNATURE = b"QEMU CFG"
#: The first file's selector (FW_CFG_FILE_FIRST).
FILE_FIRST = 0x20
_NAME_SIZE = 56
_DIR_ENTRY = struct.Struct(">IHH56s")
_DMA_ACCESS = struct.Struct(">IIQ")
#: The fw_cfg file with the guest's RAM map (Rule 6), and its entries.
E820_FILE = "etc/e820"
_E820_ENTRY = struct.Struct("<QQI")
_E820_RAM = 1
#: The key bits QEMU ignores when it indexes its entries (FW_CFG_WRITE_CHANNEL).
_WRITE_CHANNEL = 0x4000
_SECTOR = 512
#: Item bytes: a memoryview (e.g. of a mapped kernel file) is served without a copy.
Data = bytes | memoryview
_SETUP_SECTS_OFFSET = 0x1F1
_DEFAULT_SETUP_SECTS = 4


class Item(enum.IntEnum):
    """The numbered fw_cfg items this model serves (fw_cfg.rst; QEMU include/standard-headers/
    linux/qemu_fw_cfg.h)."""

    SIGNATURE = 0x0000
    ID = 0x0001
    KERNEL_SIZE = 0x0008
    INITRD_SIZE = 0x000B
    KERNEL_DATA = 0x0011
    INITRD_DATA = 0x0012
    CMDLINE_SIZE = 0x0014
    CMDLINE_DATA = 0x0015
    SETUP_SIZE = 0x0017
    SETUP_DATA = 0x0018
    FILE_DIR = 0x0019


class DmaControl(enum.IntFlag):
    """``FWCfgDmaAccess.control`` bits (fw_cfg.rst)."""

    ERROR = 0x01
    READ = 0x02
    SKIP = 0x04
    SELECT = 0x08
    WRITE = 0x10


#: FW_CFG_ID: bit 0 the traditional interface, bit 1 DMA.
_ID_FEATURES = 0x3


class GuestRam(Protocol):
    """Guest-physical memory as the DMA engine reaches it (Rule 1)."""

    def read(self, gpa: int, size: int) -> bytes:
        """``size`` bytes at ``gpa``; ``ValueError`` if no memory backs the range."""
        ...

    def write(self, gpa: int, data: bytes) -> None:
        """Store ``data`` at ``gpa``; ``ValueError`` if no memory backs the range."""
        ...


def split_kernel(kernel: Data, *, name: str = "kernel") -> tuple[Data, Data]:
    """The (setup, kernel) halves QEMU serves of a kernel file for an encrypted guest (Rule 5).

    Raises:
        ImageError: the file is shorter than the setup its header declares (QEMU: "invalid
            kernel header").
    """
    if len(kernel) <= _SETUP_SECTS_OFFSET:
        raise ImageError(f"{len(kernel)} bytes hold no setup header", source=name)
    setup_size = ((kernel[_SETUP_SECTS_OFFSET] or _DEFAULT_SETUP_SECTS) + 1) * _SECTOR
    if setup_size > len(kernel):
        raise ImageError(
            f"the setup header declares {setup_size:#x} bytes of setup, more than the file's "
            f"{len(kernel):#x} (QEMU: invalid kernel header)",
            source=name,
            offset=_SETUP_SECTS_OFFSET,
        )
    return kernel[:setup_size], kernel[setup_size:]


@dataclass(frozen=True, slots=True)
class KernelBoot:
    """What a direct kernel boot serves: the kernel file, initrd and command line bytes.

    Args:
        kernel: the kernel file as on disk.
        initrd: the initrd file, or None.
        cmdline: the command line bytes without its NUL (``-append``); None: no ``-append``
            (QEMU serves the empty command line, i.e. a single NUL).
    """

    kernel: Data
    initrd: Data | None = None
    cmdline: bytes | None = None


def _u32(value: int) -> bytes:
    return value.to_bytes(4, "little")


def kernel_items(boot: KernelBoot, *, name: str = "kernel") -> dict[int, Data]:
    """The kernel items QEMU serves an encrypted guest for ``boot`` (Rules 4 and 5).

    Raises:
        ImageError: see :func:`split_kernel`.
    """
    setup, kernel = split_kernel(boot.kernel, name=name)
    cmdline = (boot.cmdline or b"") + b"\0"
    items: dict[Item, Data] = {
        Item.SETUP_SIZE: _u32(len(setup)),
        Item.SETUP_DATA: setup,
        Item.KERNEL_SIZE: _u32(len(kernel)),
        Item.KERNEL_DATA: kernel,
        Item.CMDLINE_SIZE: _u32(len(cmdline)),
        Item.CMDLINE_DATA: cmdline,
    }
    if boot.initrd is not None:
        items[Item.INITRD_SIZE] = _u32(len(boot.initrd))
        items[Item.INITRD_DATA] = boot.initrd
    return {int(k): v for k, v in items.items()}


def e820_table(ram: Iterable[tuple[int, int]]) -> bytes:
    """The ``etc/e820`` file for RAM ranges ``(gpa, size)`` (Rule 6), in address order."""
    return b"".join(_E820_ENTRY.pack(gpa, size, _E820_RAM) for gpa, size in sorted(ram))


def file_directory(files: Mapping[str, Data]) -> tuple[bytes, dict[str, int]]:
    """The FILE_DIR item for ``files`` and each file's selector (Rule 4).

    Raises:
        ValueError: a name longer than 55 bytes, or too many files for the key space (a bug
            of the caller: names are the program's, not the user's).
    """
    names = sorted(files)
    if FILE_FIRST + len(names) > _WRITE_CHANNEL:
        raise ValueError(f"{len(names)} fw_cfg files do not fit the key space")
    out = bytearray(len(names).to_bytes(4, "big"))
    selectors = {}
    for index, file_name in enumerate(names):
        raw = file_name.encode()
        if len(raw) >= _NAME_SIZE:
            raise ValueError(f"fw_cfg file name {file_name!r} is longer than 55 bytes")
        selectors[file_name] = FILE_FIRST + index
        out += _DIR_ENTRY.pack(len(files[file_name]), FILE_FIRST + index, 0, raw)
    return bytes(out), selectors


class FwCfg:
    """The device: items, the selector/data ports and the DMA engine (Rules 2 and 3).

    Args:
        items: numbered items (e.g. :func:`kernel_items`); SIGNATURE, ID and FILE_DIR are the
            device's own.
        files: named files, numbered from :data:`FILE_FIRST` in name order.

    Raises:
        ValueError: an item number in the device's own or the files' range.
    """

    PORTS = frozenset((SELECTOR_PORT, DATA_PORT, *range(DMA_PORT, DMA_PORT + 8)))

    def __init__(
        self, items: Mapping[int, Data] | None = None, files: Mapping[str, Data] | None = None
    ) -> None:
        items = dict(items or {})
        for key in items:
            if key in (Item.SIGNATURE, Item.ID, Item.FILE_DIR) or not 0 <= key < FILE_FIRST:
                raise ValueError(f"fw_cfg item {key:#x} is not a free numbered item")
        directory, selectors = file_directory(files or {})
        self._items: dict[int, Data] = {
            Item.SIGNATURE: b"QEMU",
            Item.ID: _ID_FEATURES.to_bytes(4, "little"),
            Item.FILE_DIR: directory,
            **items,
        }
        for file_name, selector in selectors.items():
            self._items[selector] = (files or {})[file_name]
        self.selectors: dict[str, int] = selectors
        self._selected: int | None = None
        self._offset = 0
        self._dma_high = 0

    def item(self, key: int) -> bytes:
        """The bytes of item ``key`` (empty if there is none)."""
        return bytes(self._items.get(key & ~_WRITE_CHANNEL, b""))

    def handles(self, port: int) -> bool:
        """Whether ``port`` is one of the device's."""
        return port in self.PORTS

    # ports ------------------------------------------------------------------
    def select(self, key: int) -> None:
        """Select item ``key`` and rewind (a selector write, or DMA's SELECT)."""
        self._offset = 0
        key &= 0xFFFF
        self._selected = key & ~_WRITE_CHANNEL if key & ~_WRITE_CHANNEL in self._items else None

    def _read(self, size: int) -> bytes:
        data = self._items.get(self._selected, b"") if self._selected is not None else b""
        start = min(self._offset, len(data))
        chunk = bytes(data[start : start + size])
        self._offset += len(chunk)
        return chunk + bytes(size - len(chunk))

    def io_in(self, port: int, size: int, count: int = 1) -> bytes:
        """The bytes ``count`` IN instructions of ``size`` bytes at ``port`` read.

        Data reads (8-bit at 0x510/0x511, as QEMU's combined region answers them) advance the
        selected item; the DMA register reads its signature; other widths read zeros.
        """
        out = bytearray()
        for _ in range(count):
            if port in (SELECTOR_PORT, DATA_PORT) and size == 1:
                out += self._read(1)
            elif port >= DMA_PORT and port + size <= DMA_PORT + 8:
                out += DMA_SIGNATURE[port - DMA_PORT : port - DMA_PORT + size]
            else:
                out += bytes(size)
        return bytes(out)

    def io_out(self, port: int, size: int, data: bytes, memory: GuestRam) -> None:
        """``len(data) // size`` OUT instructions of ``size`` bytes at ``port`` (Rules 2, 3)."""
        for at in range(0, len(data) - size + 1, size):
            value = data[at : at + size]
            if port == SELECTOR_PORT and size == 2:
                self.select(int.from_bytes(value, "little"))
            elif port == DMA_PORT and size == 4:
                self._dma_high = int.from_bytes(value, "big")
            elif port == DMA_PORT + 4 and size == 4:
                address = self._dma_high << 32 | int.from_bytes(value, "big")
                self._dma_high = 0
                self.dma(address, memory)

    # DMA --------------------------------------------------------------------
    def dma(self, access: int, memory: GuestRam) -> None:
        """Run the ``FWCfgDmaAccess`` at guest-physical ``access`` (Rule 3)."""
        try:
            control, length, address = _DMA_ACCESS.unpack(memory.read(access, _DMA_ACCESS.size))
        except ValueError:
            _put(memory, access, DmaControl.ERROR)
            return
        if control & DmaControl.SELECT:
            self.select(control >> 16)
        mode = DmaControl(0)
        if control & DmaControl.READ:
            mode = DmaControl.READ
        elif control & DmaControl.WRITE:
            mode = DmaControl.WRITE
        elif control & DmaControl.SKIP:
            mode = DmaControl.SKIP
        else:
            length = 0
        status = 0
        data = self._items.get(self._selected, b"") if self._selected is not None else b""
        while length > 0 and not status:
            left = len(data) - self._offset
            n = length if left <= 0 else min(length, left)
            if mode is DmaControl.WRITE:
                status = DmaControl.ERROR  # every item is read-only
            elif mode is DmaControl.READ:
                chunk = bytes(data[self._offset : self._offset + n]) if left > 0 else bytes(n)
                try:
                    memory.write(address, chunk)
                except ValueError:
                    status = DmaControl.ERROR
            if left > 0:
                self._offset += n
            address, length = address + n, length - n
        _put(memory, access, status)


def _put(memory: GuestRam, access: int, control: int) -> None:
    with contextlib.suppress(ValueError):  # QEMU ignores a failed write-back too
        memory.write(access, int(control).to_bytes(4, "big"))
