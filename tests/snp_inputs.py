"""Deterministic inputs for the SNP known-answer vectors (tests/vectors/snp/).

Everything is recreated from the shared firmware files and from code, so no large file is
committed: a code-only image (the last 0x37C000 bytes of OVMF.generic.fd, i.e. the CODE part of
the 4 MiB flat image), small kernel/initrd stand-ins, and synthetic images built with
tests/ovmf_builder.py (no SEV metadata; multi-page SECRETS/CPUID sections; an SVSM image).
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

from cvmlaunch.image.ovmf import SVSM_INFO_GUID
from cvmlaunch.layout import SevSectionType
from tests.conftest import find_firmware
from tests.ovmf_builder import build_ovmf

SHARED = ("OVMF.amdsev.fd", "OVMF.generic.fd", "OVMF.inteltdx.ms.fd", "OVMF.2022.fd")
CODE_ONLY_SIZE = 0x37C000

#: The non-ASCII command line used by some vectors.
CMDLINE_UTF8 = "console=ttyS0 quiet café=ünïcode ✓"


def _pattern(seed: int, size: int) -> bytes:
    """Deterministic, non-repeating-per-page filler (SHA-256 counter stream)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(struct.pack("<II", seed, counter)).digest()
        counter += 1
    return bytes(out[:size])


def synthetic_images() -> dict[str, bytes]:
    """The synthetic images, by file name."""
    s = SevSectionType
    two_page = bytearray(
        build_ovmf(
            0x20000,
            sev=[
                (0x80_0000, 0x2000, s.SNP_SEC_MEM),
                (0x80_2000, 0x2000, s.SNP_SECRETS),
                (0x80_4000, 0x2000, s.CPUID),
                (0x80_6000, 0x1000, s.SNP_KERNEL_HASHES),
            ],
            hash_table=(0x80_6C00, 0x400),
        )
    )
    two_page[0x1000:0x9000] = _pattern(1, 0x8000)
    no_asev = bytearray(build_ovmf(0x10000, sev=None))
    no_asev[0x1000:0x3000] = _pattern(2, 0x2000)
    svsm = bytearray(
        build_ovmf(
            0x20000,
            sev=[
                (0x80_0000, 0x1000, s.SNP_SECRETS),
                (0x80_1000, 0x1000, s.CPUID),
                (0x80_2000, 0x3000, s.SNP_SEC_MEM),
                (0x80_5000, 0x1000, s.SVSM_CAA),
            ],
            reset_eip=None,
            extra=[(SVSM_INFO_GUID, struct.pack("<I", 0x1000))],
        )
    )
    svsm[0x1000:0x10000] = _pattern(3, 0xF000)
    return {
        "synthetic-2page.fd": bytes(two_page),
        "synthetic-no-asev.fd": bytes(no_asev),
        "synthetic-svsm.bin": bytes(svsm),
    }


def materialize(directory: Path) -> dict[str, Path]:
    """Create every input in ``directory``; return name -> path (shared firmware linked).

    Shared firmware files that cannot be found are left out (their vectors are skipped).
    """
    directory.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name in SHARED:
        found = find_firmware(name)
        if found is not None:
            link = directory / name
            if not link.exists():
                link.symlink_to(found)
            paths[name] = link
    generic = find_firmware("OVMF.generic.fd")
    files: dict[str, bytes] = {
        "kernel.bin": bytes(range(256)) * 4096,
        "initrd.bin": bytes(range(255, -1, -1)) * 2048,
        "empty.bin": b"",
        **synthetic_images(),
    }
    if generic is not None:
        files["OVMF.code-only.fd"] = generic.read_bytes()[-CODE_ONLY_SIZE:]
    for name, data in files.items():
        path = directory / name
        path.write_bytes(data)
        paths[name] = path
    return paths
