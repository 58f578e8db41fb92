"""The fw_cfg device model (cvmlaunch.fw_cfg) against QEMU docs/specs/fw_cfg.rst and
hw/nvram/fw_cfg.c: expected bytes are computed by hand from the spec, not by the module."""

from __future__ import annotations

import hashlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cvmlaunch.errors import ImageError
from cvmlaunch.fw_cfg import (
    DATA_PORT,
    DMA_PORT,
    SELECTOR_PORT,
    DmaControl,
    FwCfg,
    Item,
    KernelBoot,
    kernel_items,
    split_kernel,
)
from cvmlaunch.plan.sev_hashes import KernelHashes, cmdline_bytes


class Ram:
    """Guest memory [base, base + size): other addresses raise ValueError (the protocol)."""

    def __init__(self, base: int = 0x1000, size: int = 0x10000) -> None:
        self.base, self.data = base, bytearray(size)

    def _off(self, gpa: int, size: int) -> int:
        if not (self.base <= gpa and gpa + size <= self.base + len(self.data)):
            raise ValueError(f"{gpa:#x}+{size:#x} unbacked")
        return gpa - self.base

    def read(self, gpa: int, size: int) -> bytes:
        off = self._off(gpa, size)
        return bytes(self.data[off : off + size])

    def write(self, gpa: int, data: bytes) -> None:
        off = self._off(gpa, len(data))
        self.data[off : off + len(data)] = data


def select(dev: FwCfg, key: int, ram: Ram) -> None:
    dev.io_out(SELECTOR_PORT, 2, key.to_bytes(2, "little"), ram)


def port_read(dev: FwCfg, n: int) -> bytes:
    return dev.io_in(DATA_PORT, 1, n)


def dma(dev: FwCfg, ram: Ram, control: int, length: int, address: int, at: int = 0x1000) -> int:
    """Write an FWCfgDmaAccess at ``at``, trigger it as edk2 does, return the control word."""
    ram.write(at, struct.pack(">IIQ", control, length, address))
    dev.io_out(DMA_PORT, 4, (at >> 32).to_bytes(4, "big"), ram)
    dev.io_out(DMA_PORT + 4, 4, (at & 0xFFFFFFFF).to_bytes(4, "big"), ram)
    return int.from_bytes(ram.read(at, 4), "big")


def bzimage(setup_sects: int, size: int) -> bytes:
    data = bytearray((i * 7 + 3) & 0xFF for i in range(size))
    data[0x1F1] = setup_sects
    return bytes(data)


def test_signature_id_and_the_dma_signature() -> None:
    dev, ram = FwCfg(), Ram()
    select(dev, 0x0000, ram)
    assert port_read(dev, 6) == b"QEMU\0\0"  # past the end reads 0
    select(dev, 0x0001, ram)
    assert port_read(dev, 4) == b"\x03\0\0\0"  # traditional | DMA
    assert dev.io_in(DMA_PORT, 4) + dev.io_in(DMA_PORT + 4, 4) == b"QEMU CFG"


def test_file_directory_bytes_by_hand() -> None:
    dev, ram = FwCfg(files={"etc/b": b"12345", "etc/a": b"xy"}), Ram()
    select(dev, 0x0019, ram)
    expected = (
        b"\x00\x00\x00\x02"
        + b"\x00\x00\x00\x02\x00\x20\x00\x00"
        + b"etc/a".ljust(56, b"\0")
        + b"\x00\x00\x00\x05\x00\x21\x00\x00"
        + b"etc/b".ljust(56, b"\0")
    )
    assert port_read(dev, len(expected) + 3) == expected + b"\0\0\0"
    select(dev, 0x21, ram)
    assert port_read(dev, 5) == b"12345"
    assert dev.selectors == {"etc/a": 0x20, "etc/b": 0x21}


def test_unknown_item_reads_zeros_and_reselect_rewinds() -> None:
    dev, ram = FwCfg({0x08: b"\x05\0\0\0"}), Ram()
    select(dev, 0x1234, ram)
    assert port_read(dev, 3) == b"\0\0\0"
    select(dev, 0x08, ram)
    assert port_read(dev, 2) == b"\x05\0"
    select(dev, 0x08, ram)
    assert port_read(dev, 4) == b"\x05\0\0\0"


def test_dma_select_and_read_in_one_operation_then_partial_reads() -> None:
    dev, ram = FwCfg({0x11: bytes(range(1, 11))}), Ram()
    control = (0x11 << 16) | DmaControl.SELECT | DmaControl.READ
    assert dma(dev, ram, control, 4, 0x2000) == 0
    assert ram.read(0x2000, 4) == b"\x01\x02\x03\x04"
    # the offset carries on; past the end the guest gets zeros
    ram.write(0x3000, b"\xee" * 8)
    assert dma(dev, ram, DmaControl.READ, 8, 0x3000) == 0
    assert ram.read(0x3000, 8) == b"\x05\x06\x07\x08\x09\x0a\0\0"


def test_dma_skip_then_port_read_continues() -> None:
    dev, ram = FwCfg({0x12: b"abcdefgh"}), Ram()
    assert dma(dev, ram, (0x12 << 16) | DmaControl.SELECT | DmaControl.SKIP, 5, 0) == 0
    assert port_read(dev, 4) == b"fgh\0"


def test_dma_error_bit_on_a_bad_address() -> None:
    dev, ram = FwCfg({0x11: b"kernel"}), Ram()
    control = (0x11 << 16) | DmaControl.SELECT | DmaControl.READ
    assert dma(dev, ram, control, 6, 0xDEAD0000) == DmaControl.ERROR
    # an access structure outside memory: nothing to write back, nothing happens
    dev.io_out(DMA_PORT + 4, 4, (0xDEAD0000).to_bytes(4, "big"), ram)


def test_dma_writes_are_refused_and_leave_memory_alone() -> None:
    dev, ram = FwCfg({0x15: b"ro\0"}), Ram()
    ram.write(0x2000, b"XY")
    assert dma(dev, ram, (0x15 << 16) | DmaControl.SELECT | DmaControl.WRITE, 2, 0x2000) == 1
    select(dev, 0x15, ram)
    assert port_read(dev, 3) == b"ro\0"


def test_dma_with_no_operation_bit_transfers_nothing() -> None:
    dev, ram = FwCfg({0x11: b"abc"}), Ram()
    assert dma(dev, ram, (0x11 << 16) | DmaControl.SELECT, 3, 0x2000) == 0
    assert ram.read(0x2000, 3) == bytes(3)
    assert port_read(dev, 3) == b"abc"  # selected, offset untouched


def test_kernel_split_follows_setup_sects() -> None:
    kernel = bzimage(0, 0x2000)  # 0 means 4: (4 + 1) * 512
    assert split_kernel(kernel) == (kernel[:0xA00], kernel[0xA00:])
    kernel = bzimage(27, 0x4000)
    assert split_kernel(kernel) == (kernel[: 28 * 512], kernel[28 * 512 :])
    with pytest.raises(ImageError, match="invalid kernel header"):
        split_kernel(bzimage(30, 0x1000))


def test_kernel_items_by_hand() -> None:
    kernel = bzimage(0, 0x1000)
    items = kernel_items(KernelBoot(kernel, b"initrd!", b"console=ttyS0"))
    assert items[0x17] == b"\x00\x0a\0\0"
    assert items[0x18] == kernel[:0xA00]
    assert items[0x08] == b"\x00\x06\0\0"
    assert items[0x11] == kernel[0xA00:]
    assert items[0x0B] == b"\x07\0\0\0"
    assert items[0x12] == b"initrd!"
    assert items[0x14] == b"\x0e\0\0\0"
    assert items[0x15] == b"console=ttyS0\0"
    no_initrd = kernel_items(KernelBoot(kernel))
    assert 0x0B not in no_initrd
    assert no_initrd[0x15] == b"\0"


@pytest.mark.parametrize(
    ("initrd", "append"), [(None, None), (b"\x1f\x8b initrd" * 99, "console=ttyS0 \udcff")]
)
def test_served_bytes_hash_to_the_sev_hashes_table(
    initrd: bytes | None, append: str | None
) -> None:
    kernel = bzimage(0x1B, 0x9000)
    dev, ram = (
        FwCfg(
            kernel_items(
                KernelBoot(kernel, initrd, None if append is None else cmdline_bytes(append))
            )
        ),
        Ram(size=0x20000),
    )

    def fetch(size_key: int, data_key: int) -> bytes:
        select(dev, size_key, ram)
        size = int.from_bytes(port_read(dev, 4), "little")
        assert (
            dma(dev, ram, (data_key << 16) | DmaControl.SELECT | DmaControl.READ, size, 0x2000) == 0
        )
        return ram.read(0x2000, size)

    served = fetch(Item.SETUP_SIZE, Item.SETUP_DATA) + fetch(Item.KERNEL_SIZE, Item.KERNEL_DATA)
    table = KernelHashes.for_boot(
        hashlib.sha256(kernel).digest(),
        None if initrd is None else hashlib.sha256(initrd).digest(),
        append,
    )
    assert hashlib.sha256(served).digest() == table.kernel
    assert hashlib.sha256(fetch(Item.INITRD_SIZE, Item.INITRD_DATA)).digest() == table.initrd
    assert hashlib.sha256(fetch(Item.CMDLINE_SIZE, Item.CMDLINE_DATA)).digest() == table.cmdline


_items = st.dictionaries(
    st.integers(0x02, 0x18).filter(lambda k: k != 0x19), st.binary(max_size=300), max_size=4
)


@settings(max_examples=60, deadline=None)
@given(
    items=_items,
    files=st.dictionaries(
        st.text("abc/", min_size=1, max_size=8), st.binary(max_size=200), max_size=3
    ),
    chunks=st.lists(st.integers(1, 64), min_size=1, max_size=12),
    data=st.data(),
)
def test_ports_in_any_chunks_equal_dma_equal_the_item(
    items: dict[int, bytes], files: dict[str, bytes], chunks: list[int], data: st.DataObject
) -> None:
    dev, ram = FwCfg(items, files), Ram(size=0x4000)
    # each item's bytes written here from the spec, not read from the device: the signature,
    # the feature bits (traditional | DMA), the directory (be32 count; be32 size, be16
    # select, be16 reserved, 56-byte name, sorted by name from selector 0x20), the blobs
    by_key = {0: b"QEMU", 1: b"\x03\0\0\0", **items}
    directory = len(files).to_bytes(4, "big")
    for select_, name in enumerate(sorted(files), start=0x20):
        directory += struct.pack(">IHH56s", len(files[name]), select_, 0, name.encode())
        by_key[select_] = files[name]
    by_key[0x19] = directory
    assert dev.selectors == {name: k for k, name in enumerate(sorted(files), start=0x20)}
    key = data.draw(st.sampled_from(sorted(by_key)))
    expected = by_key[key]
    assert dev.item(key) == expected
    total = len(expected) + 8
    # ports, in the drawn chunk sizes
    select(dev, key, ram)
    by_ports = b""
    for n in chunks * (total // sum(chunks) + 1):
        by_ports += port_read(dev, min(n, total - len(by_ports)))
        if len(by_ports) == total:
            break
    # DMA, in the same chunks
    select(dev, key, ram)
    by_dma = b""
    for n in chunks * (total // sum(chunks) + 1):
        n = min(n, total - len(by_dma))
        assert dma(dev, ram, DmaControl.READ, n, 0x2000) == 0
        by_dma += ram.read(0x2000, n)
        if len(by_dma) == total:
            break
    assert by_ports == by_dma == expected + bytes(8)


def test_e820_table_by_hand() -> None:
    """QEMU's packed ``struct e820_entry {le64 address; le64 length; le32 type}``, E820_RAM 1."""
    from cvmlaunch.fw_cfg import e820_table

    low = (0).to_bytes(8, "little") + (0x8000_0000).to_bytes(8, "little") + b"\1\0\0\0"
    high = (1 << 32).to_bytes(8, "little") + (0x8000_0000).to_bytes(8, "little") + b"\1\0\0\0"
    assert e820_table([(1 << 32, 0x8000_0000), (0, 0x8000_0000)]) == low + high
    assert e820_table([]) == b""


@pytest.mark.parametrize(
    ("memory", "ram"),
    [(256 << 20, [(0, 256 << 20)]), (4 << 30, [(0, 2 << 30), (4 << 30, 2 << 30)])],
)
def test_every_firmware_launch_serves_its_ram_map(memory: int, ram: list[tuple[int, int]]) -> None:
    """With or without a kernel, the device of a firmware launch serves ``etc/e820``: one RAM
    entry per q35 RAM range (below the PCI hole, then from 4 GiB), read through the ports."""
    from cvmlaunch.launcher.firmware import FirmwareLaunch, served_fw_cfg

    expected = b"".join(struct.pack("<QQI", gpa, size, 1) for gpa, size in ram)
    for tech in ("snp", "tdx"):
        req = FirmwareLaunch(tech=tech, firmware="unused.fd", memory=memory, vcpus=1)
        with served_fw_cfg(req) as dev:
            directory = dev.item(0x19)
            assert int.from_bytes(directory[:4], "big") == 1
            size, select, _, name = struct.unpack(">IHH56s", directory[4:68])
            assert (name.rstrip(b"\0"), size) == (b"etc/e820", len(expected))
            dev.io_out(0x510, 2, select.to_bytes(2, "little"), Ram())
            assert dev.io_in(0x511, 1, len(expected)) == expected
