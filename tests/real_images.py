"""Real inputs for the loader tests: ELFs linked here with the machine's gcc/ld, and a Debian
kernel fetched with apt (tests/fixtures/fetch-debian-kernel.sh). The fixtures that use these
live in conftest.py."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FETCH_KERNEL = FIXTURES / "fetch-debian-kernel.sh"

# A freestanding "kernel": code and a PVH note in the first PT_LOAD, data plus 0x3000 bytes
# of BSS in a second one that starts in the same page as the first ends (so the loader must
# merge the page), linked at high virtual addresses with low physical ones (AT()), like vmlinux.
_SOURCE = """
    .text
    .globl _start
_start:
    hlt
    jmp _start
    .globl pvh_start
pvh_start:
    cli
    hlt
    .data
    .globl data_word
data_word:
    .long 0x11223344
    .bss
    .globl bss_start
bss_start:
    .space 0x3000
    .section .note.Xen, "a"
    .balign 4
    .long 4
    .long {desc_size}
    .long 18
    .asciz "Xen"
    .balign 4
    {desc_directive} pvh_start - {kernel_map}
"""

_SCRIPT = """
ENTRY(_start)
PHDRS {{ text PT_LOAD; data PT_LOAD; note PT_NOTE; }}
SECTIONS {{
  . = {kernel_map} + 0x100000;
  .text : AT(0x100000) {{ *(.text) }} :text
  .note : AT(ADDR(.note) - {kernel_map}) {{ *(.note.Xen) }} :text :note
  . = ALIGN(16) + 0x10;
  .data : AT(ADDR(.data) - {kernel_map}) {{ *(.data) }} :data
  .bss : AT(ADDR(.bss) - {kernel_map}) {{ *(.bss) }} :data
  /DISCARD/ : {{ *(.note.gnu.property) }}
}}
"""


@dataclass(frozen=True)
class RealElf:
    """An ELF linked by the machine's toolchain, and what ``nm`` says about its symbols."""

    path: Path
    bits: int
    symbols: dict[str, int]
    kernel_map: int  # virtual minus physical


def have_toolchain() -> bool:
    """Whether gcc and ld are installed."""
    return shutil.which("gcc") is not None and shutil.which("ld") is not None


def link_elf(directory: Path, bits: int) -> RealElf:
    """Assemble and link the test program for ``bits`` (32 or 64) in ``directory``."""
    kernel_map = 0xFFFFFFFF80000000 if bits == 64 else 0xC0000000
    src = directory / f"pvh{bits}.S"
    script = directory / f"pvh{bits}.ld"
    obj = directory / f"pvh{bits}.o"
    out = directory / f"pvh{bits}.elf"
    src.write_text(
        _SOURCE.format(
            desc_size=8 if bits == 64 else 4,
            desc_directive=".quad" if bits == 64 else ".long",
            kernel_map=hex(kernel_map),
        )
    )
    script.write_text(_SCRIPT.format(kernel_map=hex(kernel_map)))
    cc_flag, ld_emulation = ("-m64", "elf_x86_64") if bits == 64 else ("-m32", "elf_i386")
    subprocess.run(["gcc", cc_flag, "-c", str(src), "-o", str(obj)], check=True)
    subprocess.run(
        [
            "ld",
            "-m",
            ld_emulation,
            "-T",
            str(script),
            "-z",
            "max-page-size=4096",
            "--build-id=none",
            "-o",
            str(out),
            str(obj),
        ],
        check=True,
    )
    nm = subprocess.run(["nm", str(out)], check=True, capture_output=True, text=True).stdout
    symbols = {}
    for line in nm.splitlines():
        value, _, name = line.split()
        symbols[name] = int(value, 16)
    return RealElf(out, bits, symbols, kernel_map)


def readelf_load_segments(path: Path) -> list[tuple[int, int, int, int, int, str]]:
    """``readelf -lW`` PT_LOAD rows as (offset, vaddr, paddr, filesz, memsz, flags)."""
    text = subprocess.run(
        ["readelf", "-lW", str(path)], check=True, capture_output=True, text=True
    ).stdout
    rows = []
    for line in text.splitlines():
        parts = line.split()
        if parts[:1] == ["LOAD"]:
            offset, vaddr, paddr, filesz, memsz = (int(p, 16) for p in parts[1:6])
            flags = "".join(parts[6:-1])
            rows.append((offset, vaddr, paddr, filesz, memsz, flags))
    return rows


def fetch_debian_kernel() -> tuple[Path, dict[str, str]]:
    """Run the fetch script (it returns at once when the cache is filled); the cached vmlinuz
    path and its provenance record (package, version, sha256)."""
    proc = subprocess.run([str(FETCH_KERNEL)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{FETCH_KERNEL.name} failed: {proc.stderr.strip()}")
    path = Path(proc.stdout.strip().splitlines()[-1])
    record = {}
    for line in path.with_name(path.name + ".source").read_text().splitlines():
        key, _, value = line.partition(": ")
        record[key] = value
    return path, record
