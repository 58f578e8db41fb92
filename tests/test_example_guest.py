"""The bundled example guest: the shipped copy is what examples/guest builds, byte for byte."""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

DATA = REPO / "cvmlaunch" / "data"
GUEST = REPO / "examples" / "guest"


def _phdrs(elf: bytes) -> list[tuple[int, ...]]:
    """ELF32 program headers (gABI Elf32_Phdr): type, offset, vaddr, paddr, filesz, memsz, flags."""
    assert elf[:5] == b"\x7fELF\x01"
    (phoff,) = struct.unpack_from("<I", elf, 28)
    phentsize, phnum = struct.unpack_from("<HH", elf, 42)
    return [struct.unpack_from("<7I", elf, phoff + i * phentsize) for i in range(phnum)]


def test_shipped_guest_shape() -> None:
    elf = (DATA / "example-guest.elf").read_bytes()
    phdrs = _phdrs(elf)
    loads = [p for p in phdrs if p[0] == 1]
    notes = [p for p in phdrs if p[0] == 4]
    # one read+execute PT_LOAD at 1 MiB, no writable segment (start.S keeps its stack outside)
    assert [(p[3], p[6]) for p in loads] == [(0x100000, 5)]
    assert loads[0][4] == loads[0][5]  # no BSS
    # the PVH note: name "Xen", type XEN_ELFNOTE_PHYS32_ENTRY (18), 32-bit entry at 1 MiB
    off = notes[0][1]
    namesz, descsz, ntype = struct.unpack_from("<3I", elf, off)
    assert (namesz, descsz, ntype) == (4, 4, 18)
    assert elf[off + 12 : off + 16] == b"Xen\0"
    assert struct.unpack_from("<I", elf, off + 16) == (0x100000,)


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc on this machine")
def test_build_is_reproducible(tmp_path: Path) -> None:
    out = tmp_path / "guest.elf"
    subprocess.run([str(GUEST / "build.sh"), str(out)], check=True)
    toolchain = (tmp_path / "guest.elf.toolchain").read_text()
    shipped_toolchain = (DATA / "example-guest.elf.toolchain").read_text()
    if toolchain != shipped_toolchain:
        pytest.skip(f"toolchain differs from the shipped build's: {toolchain!r}")
    # Same gcc and binutils: the same bytes (no timestamps, build ids or paths in the image).
    assert out.read_bytes() == (DATA / "example-guest.elf").read_bytes()
    again = tmp_path / "again.elf"
    subprocess.run([str(GUEST / "build.sh"), str(again)], check=True)
    assert again.read_bytes() == out.read_bytes()


def test_initrd_is_reproducible(tmp_path: Path) -> None:
    out = tmp_path / "initrd.img"
    subprocess.run([sys.executable, str(GUEST / "make_initrd.py"), str(out)], check=True)
    data = out.read_bytes()
    assert data == (DATA / "example-initrd.img").read_bytes()
    # newc cpio: first entry is hello.txt, archive ends with the TRAILER!!! entry
    assert data.startswith(b"070701")
    assert data[110 : 110 + 10] == b"hello.txt\0"
    assert b"TRAILER!!!\0" in data[-128:]
