"""QEMU's setup-header patches (hw/i386/x86-common.c x86_load_linux), with the expected bytes
worked out by hand from the Debian kernel's header (tests/fixtures/README.md) and QEMU's code."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from cvmlaunch.errors import ImageError
from cvmlaunch.image.bzimage import apply_patches, qemu_initrd_max, qemu_setup_header_patches

GIB = 1 << 30


def header(
    version: int = 0x020F,
    loadflags: int = 0x01,
    xloadflags: int = 0x7F,
    initrd_addr_max: int = 0x7FFFFFFF,
) -> bytes:
    """A 0x1000-byte setup area with just the fields QEMU reads."""
    h = bytearray(0x1000)
    h[0x1F1] = 7
    struct.pack_into("<H", h, 0x1FE, 0xAA55)
    h[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", h, 0x206, version)
    h[0x211] = loadflags
    struct.pack_into("<I", h, 0x22C, initrd_addr_max)
    struct.pack_into("<H", h, 0x236, xloadflags)
    return bytes(h)


def test_debian_like_kernel_4gib_with_initrd() -> None:
    # Protocol 2.15, LOADED_HIGH, xloadflags 0x7f (CAN_BE_LOADED_ABOVE_4G): initrd_max =
    # UINT32_MAX clamped to 2 GiB (below 4 GiB at 4 GiB RAM) - 0x28000 - 1 = 0x7FFD7FFF;
    # ramdisk_image = (0x7FFD7FFF - 0x123456) & ~0xFFF = 0x7FEB4000.
    patches = qemu_setup_header_patches(
        header(), below_4g_mem_size=2 * GIB, initrd_size=0x123456, cmdline="console=ttyS0"
    )
    assert patches == {
        0x228: struct.pack("<I", 0x20000),
        0x210: b"\xb0",
        0x211: b"\x81",
        0x224: struct.pack("<H", 0xFE00),  # 0x20000 - 0x10000 - 0x200
        0x218: struct.pack("<II", 0x7FEB4000, 0x123456),
    }
    patched = apply_patches(header(), patches)
    assert patched[0x218:0x220] == bytes.fromhex("0040eb7f56341200")


def test_old_protocol_and_limits() -> None:
    # 2.03..2.11: initrd_addr_max from the header; 2 GiB below 4G does not clamp 0x37FFFFFF.
    p = qemu_setup_header_patches(
        header(version=0x020A, initrd_addr_max=0x37FFFFFF),
        below_4g_mem_size=2 * GIB,
        initrd_size=0x1000,
        cmdline="",
    )
    assert p[0x218] == struct.pack("<II", 0x37FFE000, 0x1000)
    # 2.12+ without CAN_BE_LOADED_ABOVE_4G reads initrd_addr_max too.
    assert (
        qemu_initrd_max(header(xloadflags=0x01, initrd_addr_max=0x12345678), 2 * GIB, 0x28000)
        == 0x12345678
    )
    # No initrd: no ramdisk fields.
    assert 0x218 not in qemu_setup_header_patches(
        header(), below_4g_mem_size=2 * GIB, initrd_size=None, cmdline=""
    )
    # Protocol 2.01: cmdline in the old place, heap_end relative to 0x90000.
    old = qemu_setup_header_patches(
        header(version=0x0201), below_4g_mem_size=GIB, initrd_size=None, cmdline="abc"
    )
    cmdline_addr = 0x9A000 - 16
    assert old[0x20] == struct.pack("<HH", 0xA33F, cmdline_addr - 0x90000)
    assert old[0x224] == struct.pack("<H", cmdline_addr - 0x90000 - 0x200)
    with pytest.raises(ImageError, match="too large"):
        qemu_setup_header_patches(header(), below_4g_mem_size=GIB, initrd_size=GIB, cmdline="")
    with pytest.raises(ImageError, match="HdrS"):
        qemu_setup_header_patches(
            bytes(0x1000), below_4g_mem_size=GIB, initrd_size=None, cmdline=""
        )


@pytest.mark.parametrize(
    ("arg", "mode"),
    [
        ("vga=normal", 0xFFFF),
        ("vga=ext", 0xFFFE),
        ("vga=ask", 0xFFFD),
        ("vga=0x318", 0x318),
        ("quiet vga=791 x", 791),
        ("vga=0717", 0o717),
    ],
)
def test_vga(arg: str, mode: int) -> None:
    p = qemu_setup_header_patches(header(), below_4g_mem_size=GIB, initrd_size=None, cmdline=arg)
    assert p[0x1FA] == struct.pack("<H", mode)


def test_bad_vga() -> None:
    with pytest.raises(ImageError, match="vga="):
        qemu_setup_header_patches(
            header(), below_4g_mem_size=GIB, initrd_size=None, cmdline="vga=12ab"
        )


def test_debian_kernel_patch_changes_only_header_bytes(
    debian_kernel: tuple[Path, dict[str, str]],
) -> None:
    path, _ = debian_kernel
    data = path.read_bytes()
    patches = qemu_setup_header_patches(
        data, below_4g_mem_size=2 * GIB, initrd_size=1000, cmdline="console=ttyS0"
    )
    patched = apply_patches(data, patches)
    assert len(patched) == len(data)
    assert patched[:0x1F1] == data[:0x1F1]
    assert patched[0x300:] == data[0x300:]
    assert patched[0x210] == 0xB0
    assert patched[0x211] == data[0x211] | 0x80
