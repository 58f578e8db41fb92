"""The bzImage loader: a real Debian kernel (values read by hand with od, and by file(1)),
and synthetic setup headers for each protocol-dependent field and each rejection."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from cvmlaunch.errors import ImageError
from cvmlaunch.image.bzimage import (
    SETUP_HEADER,
    LoadFlag,
    PayloadFormat,
    XLoadFlag,
    parse_bzimage,
)
from tests.builders import build_bzimage
from tests.vectors import debian_kernel

# linux-image-6.1.0-50-cloud-amd64 6.1.176-1 (Debian bookworm), /boot/vmlinuz-6.1.0-50-cloud-amd64.
# Values read by hand with `od -A x -t x1 -j 0x1f1 -N 0x7b vmlinuz` (see tests/fixtures/README.md).
DEBIAN_6_1_176_SHA256 = debian_kernel().vmlinuz_sha256
DEBIAN_6_1_176 = {
    "size": 14149568,
    "setup_sects": 0x27,
    "syssize": 0x000D7920,
    "version": 0x020F,
    "kernel_version_ptr": 0x42C0,
    "loadflags": 0x01,
    "code32_start": 0x00100000,
    "initrd_addr_max": 0x7FFFFFFF,
    "kernel_alignment": 0x00200000,
    "relocatable_kernel": 1,
    "min_alignment": 0x15,
    "xloadflags": 0x7F,
    "cmdline_size": 0x7FF,
    "payload_offset": 0x2CC,
    "payload_length": 0x00D5FD3F,
    "pref_address": 0x01000000,
    "init_size": 0x03378000,
    "handover_offset": 0x00D694F0,
    "kernel_info_offset": 0x00D75FDC,
}


def _patch(data: bytes, offset: int, byte: int) -> bytes:
    return data[:offset] + bytes([byte]) + data[offset + 1 :]


def test_setup_header_struct_size() -> None:
    # asm/bootparam.h: setup_header runs from 0x1f1 to kernel_info_offset at 0x268 + 4.
    assert SETUP_HEADER.size == 0x26C - 0x1F1


def test_debian_kernel(debian_kernel: tuple[Path, dict[str, str]]) -> None:
    path, record = debian_kernel
    data = path.read_bytes()
    k = parse_bzimage(data, name=path.name)
    # Invariants of every x86-64 Debian kernel (protocol >= 2.12, 64-bit, relocatable).
    assert k.protocol >= (2, 12)
    assert LoadFlag.LOADED_HIGH in k.loadflags
    assert XLoadFlag.KERNEL_64 in k.xloadflags
    assert k.relocatable
    assert k.load_address == 0x100000
    assert k.kernel_offset == (k.setup_sects + 1) * 512
    assert k.kernel_offset + k.kernel_size == len(data)
    assert k.startup_64 == 0x100200
    assert k.cmdline_size >= 255
    assert k.kernel_version is not None
    assert k.kernel_version.startswith(record["file"].removeprefix("/boot/vmlinuz-") + " ")
    assert bytes(k.kernel()[:16]) == data[k.kernel_offset : k.kernel_offset + 16]
    if shutil.which("file"):
        out = subprocess.run(["file", str(path)], capture_output=True, text=True).stdout
        assert "bzImage" in out
        match = re.search(r"version (.*?), RO-rootFS", out)
        assert match is not None
        assert k.kernel_version == match.group(1)
    if hashlib.sha256(data).hexdigest() != DEBIAN_6_1_176_SHA256:
        # apt served a newer kernel than the one read by hand; the invariants above held.
        assert record["package"].startswith("linux-image-")
        return
    v = DEBIAN_6_1_176
    h = k.header
    assert len(data) == v["size"]
    assert (h.setup_sects, k.setup_sects, k.kernel_offset) == (v["setup_sects"], 39, 0x5000)
    assert h.syssize == v["syssize"]
    assert h.version == v["version"]
    assert k.protocol == (2, 15)
    assert k.protocol_string == "2.15"
    assert h.kernel_version == v["kernel_version_ptr"]
    assert h.loadflags == v["loadflags"]
    assert k.load_address == v["code32_start"]
    assert k.initrd_addr_max == v["initrd_addr_max"]
    assert k.kernel_alignment == v["kernel_alignment"]
    assert h.relocatable_kernel == v["relocatable_kernel"]
    assert k.min_alignment == 1 << v["min_alignment"]
    assert k.xloadflags == v["xloadflags"]
    assert k.cmdline_size == v["cmdline_size"]
    assert (k.payload_offset, k.payload_length) == (v["payload_offset"], v["payload_length"])
    assert k.payload_format is PayloadFormat.LZ4  # od: 02 21 4c 18 at 0x5000 + 0x2cc
    assert k.pref_address == v["pref_address"]
    assert k.init_size == v["init_size"]
    assert k.handover_offset == v["handover_offset"]
    assert k.kernel_info_offset == v["kernel_info_offset"]
    assert k.kernel_version == (
        "6.1.0-50-cloud-amd64 (debian-kernel@lists.debian.org) #1 SMP PREEMPT_DYNAMIC "
        "Debian 6.1.176-1 (2026-07-02)"
    )


def test_synthetic_modern() -> None:
    k = parse_bzimage(build_bzimage(payload=b"\x28\xb5\x2f\xfd" + bytes(0x2FFC)), name="bz")
    assert k.protocol == (2, 15)
    assert (k.setup_sects, k.kernel_offset, k.kernel_size) == (4, 0xA00, 0x3000)
    assert k.kernel_version == "6.99.0-test (builder@tests) #1"
    assert k.xloadflags == XLoadFlag(0x7F)
    assert k.payload_format is PayloadFormat.UNKNOWN  # 0x2cc points past the zstd magic
    k = parse_bzimage(
        build_bzimage(payload=b"\x28\xb5\x2f\xfd" + bytes(0x2FFC), payload_offset=0), name="bz"
    )
    assert k.payload_format is PayloadFormat.ZSTD


def test_setup_sects_zero_means_four() -> None:
    k = parse_bzimage(build_bzimage(setup_sects=0))
    assert (k.header.setup_sects, k.setup_sects, k.kernel_offset) == (0, 4, 0xA00)


def test_old_protocol_defaults() -> None:
    # 2.02: no initrd_addr_max (0x37FFFFFF), cmdline limit 255, not relocatable, none of the
    # 2.05+ fields even though the bytes are there.
    k = parse_bzimage(build_bzimage(version=0x0202, initrd_addr_max=0x1234, cmdline_size=9999))
    assert k.initrd_addr_max == 0x37FFFFFF
    assert k.cmdline_size == 255
    assert not k.relocatable
    assert k.kernel_alignment is None
    assert k.pref_address is None
    assert k.init_size is None
    assert k.xloadflags == XLoadFlag(0)
    assert k.startup_64 is None
    assert k.payload_offset is None
    assert k.handover_offset is None
    k = parse_bzimage(build_bzimage(version=0x0206, cmdline_size=9999))
    assert k.cmdline_size == 9999
    assert k.kernel_info_offset is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "no Linux boot protocol magic 'HdrS'"),
        (build_bzimage(magic=b"HdrZ"), "no Linux boot protocol magic 'HdrS'"),
        (build_bzimage()[:0x210], "too small for a Linux setup header"),
        (build_bzimage(boot_flag=0x1234), "boot flag 0x1234 is not 0xaa55"),
        (build_bzimage(version=0x0105), "boot protocol 1.05 is older than 2.00"),
        (build_bzimage(loadflags=0), "a zImage"),
        (_patch(build_bzimage(), 0x1F1, 200), "200 setup sectors (0x19200 bytes) leave no kernel"),
        (build_bzimage(syssize=0x10000), "truncated: syssize says 0x100000 bytes"),
        (build_bzimage(kernel_alignment=0x3000), "kernel_alignment 0x3000 (not a power of two)"),
        (build_bzimage(min_alignment=80), "min_alignment 2^80 is absurd"),
        (build_bzimage(payload_length=0x4000), "payload 0x2cc+0x4000 lies outside"),
    ],
)
def test_rejects(data: bytes, message: str) -> None:
    with pytest.raises(ImageError, match="^vmlinuz: .*" + re.escape(message)):
        parse_bzimage(data, name="vmlinuz")


def test_version_pointer_outside_setup() -> None:
    data = bytearray(build_bzimage())
    data[0x20E:0x210] = (0x2000).to_bytes(2, "little")
    with pytest.raises(ImageError, match="version string pointer 0x2000 points outside"):
        parse_bzimage(bytes(data))
