"""Raw inputs: the kernel command line and the initrd."""

from __future__ import annotations

import hashlib

import pytest

from cvmlaunch.errors import ConfigError, ImageError, LayoutError
from cvmlaunch.image.bzimage import parse_bzimage
from cvmlaunch.image.raw import initrd_gpa, initrd_region, kernel_cmdline
from cvmlaunch.layout import PageType, SourceKind
from cvmlaunch.memory_map import MemoryMap
from tests.builders import build_bzimage

MIB = 1 << 20


def test_cmdline_gets_one_nul() -> None:
    assert kernel_cmdline("console=ttyS0 root=/dev/vda") == b"console=ttyS0 root=/dev/vda\x00"
    assert kernel_cmdline(b"quiet") == b"quiet\x00"
    # An empty command line is one NUL byte; the SEV kernel-hashes table hashes exactly that
    # (snp-measure.md §1.6: SHA-256 of the single byte 00 = 6e340b9c...).
    assert kernel_cmdline("") == b"\x00"
    assert hashlib.sha256(kernel_cmdline("")).hexdigest().startswith("6e340b9c")
    assert kernel_cmdline("é") == b"\xc3\xa9\x00"  # UTF-8, as sev-snp-measure encodes it


def test_cmdline_limit_from_kernel() -> None:
    kernel = parse_bzimage(build_bzimage(cmdline_size=2047))
    assert len(kernel_cmdline("x" * 2047, limit=kernel.cmdline_size)) == 2048
    with pytest.raises(
        ConfigError, match=r"^command line is 2048 bytes; the kernel accepts at most"
    ):
        kernel_cmdline("x" * 2048, limit=kernel.cmdline_size)
    old = parse_bzimage(build_bzimage(version=0x0205))
    with pytest.raises(ConfigError, match="at most 255"):
        kernel_cmdline("x" * 256, limit=old.cmdline_size)


def test_cmdline_rejects_nul() -> None:
    with pytest.raises(ConfigError, match="contains a NUL byte at offset 3"):
        kernel_cmdline("abc\x00def")


def test_initrd_region_is_not_copied_and_padded() -> None:
    data = bytearray(b"\x07" * 5000)
    view = memoryview(data)
    region = initrd_region(view, gpa=0x3000000, name="initrd.img")
    assert (region.gpa, region.size, region.page_type, region.measured) == (
        0x3000000,
        0x2000,
        PageType.NORMAL,
        True,
    )
    assert region.data is view
    assert region.provenance.kind is SourceKind.FILE
    assert region.provenance.describe() == "initrd.img+0x0 (initrd)"
    assert region.contents() == b"\x07" * 5000 + bytes(0x2000 - 5000)


def test_initrd_region_errors() -> None:
    with pytest.raises(ImageError, match=r"^initrd\.img: the initrd is empty"):
        initrd_region(b"", gpa=0, name="initrd.img")
    with pytest.raises(LayoutError, match="not 4 KiB aligned"):
        initrd_region(b"x", gpa=0x123)


def test_initrd_placement() -> None:
    small = MemoryMap.for_size(256 * MIB)
    # top of low RAM, page aligned
    assert initrd_gpa(5000, memory=small, addr_max=0x7FFFFFFF) == 256 * MIB - 0x2000
    # the kernel's initrd_addr_max is the highest byte the initrd may use
    assert initrd_gpa(0x1000, memory=small, addr_max=0x1FFFFFF) == 0x1FFF000
    big = MemoryMap.for_size(8 << 30)  # low RAM stops at 2 GiB
    assert initrd_gpa(MIB, memory=big, addr_max=0xFFFFFFFF) == 0x80000000 - MIB
    assert initrd_gpa(MIB, memory=big) == 0x38000000 - MIB  # protocol < 2.03 default
    with pytest.raises(ConfigError, match="does not fit below"):
        initrd_gpa(512 * MIB, memory=small, addr_max=0x7FFFFFFF)
    with pytest.raises(ConfigError, match="empty"):
        initrd_gpa(0, memory=small)
