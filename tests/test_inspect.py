"""``cvmlaunch inspect``: the Debian firmware builds (known answers from the research notes
snp-measure.md §1.5 and tdx-measure.md §2.3, cross-checked there with virt-fw-dump), a
code-only image, real ELFs and kernels, format detection, and the error contract."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cvmlaunch.errors import ImageError
from cvmlaunch.image.detect import ImageFormat, detect_format
from cvmlaunch.image.report import build_report, render_text
from tests.builders import ElfSpec, Seg, build_bzimage, build_elf
from tests.cli_runner import run_cli
from tests.ovmf_builder import build_ovmf
from tests.real_images import RealElf

FirmwareFn = Callable[[str], Path]

# snp-measure.md §1.5: SEV metadata descriptors (gpa, size, type), in file order.
SEV_2026 = [
    (0x800000, 0x9000, "SNP_SEC_MEM"),
    (0x80A000, 0x3000, "SNP_SEC_MEM"),
    (0x80D000, 0x1000, "SNP_SECRETS"),
    (0x80E000, 0x1000, "CPUID"),
    (0x80F000, 0x1000, "SVSM_CAA"),
    (0x811000, 0x1F000, "SNP_SEC_MEM"),
    (0x810000, 0x1000, "SNP_KERNEL_HASHES"),
]
SEV_INTELTDX = [
    (0x800000, 0x9000, "SNP_SEC_MEM"),
    (0x80A000, 0x3000, "SNP_SEC_MEM"),
    (0x80D000, 0x1000, "SNP_SECRETS"),
    (0x80E000, 0x1000, "CPUID"),
    (0, 0, "SVSM_CAA"),
    (0, 0, "SNP_SEC_MEM"),
]
SEV_2022 = [
    (0x800000, 0x9000, "SNP_SEC_MEM"),
    (0x80A000, 0x3000, "SNP_SEC_MEM"),
    (0x80D000, 0x1000, "SNP_SECRETS"),
    (0x80E000, 0x1000, "CPUID"),
    (0x80F000, 0x11000, "SNP_SEC_MEM"),
]

# tdx-measure.md §2.3: TDVF sections (type, data offset, raw size, GPA, memory size, attributes).
TdxRow = tuple[str, int, int, int, int, list[str]]
_BFV_4M: TdxRow = ("BFV", 0x84000, 0x37C000, 0xFFC84000, 0x37C000, ["MR_EXTEND"])
_CFV_4M: TdxRow = ("CFV", 0x0, 0x84000, 0xFFC00000, 0x84000, [])


def _mem(kind: str, gpa: int, size: int) -> TdxRow:
    return (kind, 0, 0, gpa, size, [])


TDX_GENERIC = [
    _BFV_4M,
    _CFV_4M,
    _mem("TEMP_MEM", 0x814000, 0xC000),
    _mem("TEMP_MEM", 0x80B000, 0x2000),
    _mem("TD_HOB", 0x809000, 0x2000),
    _mem("TEMP_MEM", 0x800000, 0x6000),
    _mem("TEMP_MEM", 0x820000, 0x10000),
]
TDX_INTELTDX = [
    _BFV_4M,
    _CFV_4M,
    _mem("TEMP_MEM", 0x810000, 0x10000),
    _mem("TEMP_MEM", 0x80B000, 0x2000),
    _mem("TD_HOB", 0x809000, 0x2000),
    _mem("TEMP_MEM", 0x800000, 0x6000),
]
TDX_2022 = [
    ("BFV", 0x20000, 0x1E0000, 0xFFE20000, 0x1E0000, ["MR_EXTEND"]),
    ("CFV", 0x0, 0x20000, 0xFFE00000, 0x20000, []),
    *TDX_INTELTDX[2:],
]

# name -> (size, SEV sections, TDX sections, hash table (base, size))
FIRMWARE: dict[str, tuple[int, Any, Any, tuple[int, int]]] = {
    "OVMF.amdsev.fd": (0x400000, SEV_2026, TDX_GENERIC, (0x810C00, 0x400)),
    "OVMF.generic.fd": (0x400000, SEV_2026, TDX_GENERIC, (0x810C00, 0x400)),
    "OVMF.inteltdx.ms.fd": (0x400000, SEV_INTELTDX, TDX_INTELTDX, (0, 0)),
    "OVMF.2022.fd": (0x200000, SEV_2022, TDX_2022, (0, 0)),
}


def inspect_json(path: Path | str) -> dict[str, Any]:
    result = run_cli(["inspect", "--json", str(path)])
    assert result.exit_code == 0, result.output
    report: dict[str, Any] = json.loads(result.output)
    return report


def sev_rows(report: dict[str, Any]) -> list[tuple[int, int, str]]:
    return [(s["gpa"], s["size"], s["type"]) for s in report["sev_sections"]]


def tdx_rows(report: dict[str, Any]) -> list[TdxRow]:
    return [
        (s["type"], s["data_offset"], s["raw_size"], s["gpa"], s["memory_size"], s["attributes"])
        for s in report["tdx_sections"]
    ]


@pytest.mark.parametrize("name", sorted(FIRMWARE))
def test_firmware_json(firmware: FirmwareFn, name: str) -> None:
    size, sev, tdx, hash_table = FIRMWARE[name]
    report = inspect_json(firmware(name))
    assert list(report)[:3] == ["file", "format", "size"]
    assert report["format"] == "ovmf"
    assert report["size"] == size
    assert report["gpa"] == (1 << 32) - size
    assert report["sev_es_reset_eip"] == 0x80B004  # in all Debian builds (§1.4)
    assert sev_rows(report) == sev
    assert [s["index"] for s in report["sev_sections"]] == list(range(len(sev)))
    assert tdx_rows(report) == tdx
    assert all(s["data_in_image"] for s in report["tdx_sections"])
    assert report["sev_hash_table"] == {"gpa": hash_table[0], "size": hash_table[1]}
    assert report["has_kernel_hashes"] is (hash_table[0] != 0)
    assert report["warnings"] == []
    names = [e["name"] for e in report["guid_table"]]
    assert names[:5] == [
        "SEV-ES reset block",
        "SEV secret area",
        "SEV hash table",
        "SEV metadata",
        "TDX metadata",
    ]


def test_firmware_text(firmware: FirmwareFn) -> None:
    result = run_cli(["inspect", str(firmware("OVMF.amdsev.fd"))])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert "format             OVMF/TDVF flat firmware" in lines
    assert "SEV-ES reset EIP   0x80b004" in lines
    assert "SEV hash table     0x810c00 size 0x400" in lines
    assert "  #  GPA       size     type" in lines
    assert "  6  0x810000  0x1000   SNP_KERNEL_HASHES" in lines
    assert "  0  BFV       0xffc84000  0x37c000     0x84000      0x37c000  MR_EXTEND" in lines
    assert (
        "  00f771de-1a7e-4fcb-890e-68c77e2fb44e  SEV-ES reset block   0x3fffb8  04b08000" in lines
    )


def test_code_only_image(firmware: FirmwareFn, tmp_path: Path) -> None:
    """The last 0x37C000 bytes of OVMF.generic.fd are its BFV, i.e. an OVMF_CODE_4M.fd: the
    SEV metadata is the same (snp-measure.md §1.5, row OVMF_CODE_4M.fd), the TDX metadata
    still describes the full 4 MiB image, so the BFV's bytes are not in this file."""
    full = firmware("OVMF.generic.fd").read_bytes()
    code = tmp_path / "OVMF_CODE_4M.fd"
    code.write_bytes(full[-0x37C000:])
    report = inspect_json(code)
    assert report["format"] == "ovmf"
    assert report["gpa"] == 0xFFC84000
    assert sev_rows(report) == SEV_2026
    assert report["sev_es_reset_eip"] == 0x80B004
    assert report["sev_hash_table"] == {"gpa": 0x810C00, "size": 0x400}
    assert tdx_rows(report) == TDX_GENERIC
    assert [s["data_in_image"] for s in report["tdx_sections"]] == [False] + [True] * 6
    assert report["warnings"] == [
        "the TDX metadata describes a 0x400000-byte image, this one has 0x37c000 bytes "
        "(a code-only image? TDX needs the full flat image)"
    ]


def test_real_elf(real_elf: RealElf) -> None:
    report = inspect_json(real_elf.path)
    assert report["format"] == "elf"
    assert report["class"] == ("ELF64" if real_elf.bits == 64 else "ELF32")
    assert report["machine"] == ("X86_64" if real_elf.bits == 64 else "I386")
    assert report["entry"] == real_elf.symbols["_start"]
    assert report["pvh_entry"] == 0x100003
    assert [(s["paddr"], s["flags"]) for s in report["segments"]] == [
        (0x100000, "R-X"),
        (0x100030, "RW-"),
    ]
    assert [(r["gpa"], r["size"], r["source"]) for r in report["regions"]] == [
        (0x100000, 0x1000, "elf-segment"),
        (0x101000, 0x2000, "bss"),
        (0x103000, 0x1000, "bss"),
    ]
    text = run_cli(["inspect", str(real_elf.path)]).output
    assert "PVH entry  0x100003" in text.splitlines()


def test_debian_kernel(debian_kernel: tuple[Path, dict[str, str]]) -> None:
    path, _ = debian_kernel
    report = inspect_json(path)
    assert report["format"] == "bzimage"
    assert report["load_address"] == 0x100000
    assert report["entry_points"] == {"startup_32": 0x100000, "startup_64": 0x100200}
    assert report["relocatable"] is True
    assert "KERNEL_64" in report["xloadflags"]
    assert report["loadflags"][0] == "LOADED_HIGH"


def test_synthetic_bzimage_text(tmp_path: Path) -> None:
    path = tmp_path / "bz"
    path.write_bytes(build_bzimage(version=0x0205, kernel_alignment=0x100000))
    result = run_cli(["inspect", str(path)])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert "boot protocol       2.05" in lines
    assert "cmdline size        255 bytes" in lines  # protocol < 2.06: the old limit
    assert "kernel alignment    0x100000" in lines
    assert "64-bit entry        -" in lines  # no xloadflags before 2.12


def test_the_library_report_is_what_inspect_prints(tmp_path: Path) -> None:
    """build_report/render_text take bytes (no file): the CLI maps the file and prints them."""
    data = build_bzimage(version=0x020C, kernel_alignment=0x200000)
    path = tmp_path / "bz"
    path.write_bytes(data)
    report = build_report(data, name=str(path))
    assert report["format"] == "bzimage"
    assert report["protocol"] == "2.12"
    assert report["kernel_alignment"] == 0x200000
    assert json.loads(run_cli(["inspect", "--json", str(path)]).output) == report
    text = render_text(report)
    assert "kernel alignment    0x200000" in text.splitlines()
    assert run_cli(["inspect", str(path)]).output == text + "\n"
    with pytest.raises(ImageError, match="unrecognised format"):
        build_report(b"\0" * 4096, name="zeros")


def test_json_is_deterministic(tmp_path: Path) -> None:
    path = tmp_path / "fw.fd"
    path.write_bytes(build_ovmf(sev=[(0x800000, 0x1000, 1)]))
    outs = {run_cli(["inspect", "--json", str(path)]).output for _ in range(3)}
    assert len(outs) == 1
    assert list(json.loads(outs.pop())) == [
        "file",
        "format",
        "size",
        "gpa",
        "end",
        "guid_table",
        "sev_es_reset_eip",
        "sev_hash_table",
        "sev_secret",
        "has_kernel_hashes",
        "sev_sections",
        "tdx_sections",
        "td_hob",
        "svsm_entry_offset",
        "warnings",
    ]


def test_detect_format() -> None:
    assert detect_format(build_elf(ElfSpec([Seg(0x100000, b"x")]))) is ImageFormat.ELF
    assert detect_format(build_bzimage()) is ImageFormat.BZIMAGE
    efi = bytearray(build_bzimage())
    efi[:2] = b"MZ"  # an EFI-stub bzImage is still a bzImage
    assert detect_format(bytes(efi)) is ImageFormat.BZIMAGE
    assert detect_format(build_ovmf()) is ImageFormat.OVMF
    assert detect_format(b"") is ImageFormat.UNKNOWN
    assert detect_format(bytes(0x1000)) is ImageFormat.UNKNOWN


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"hello\n", "unrecognised format (not OVMF/TDVF flat firmware"),
        (b"\x7fELF\x02\x01\x01" + bytes(40), "not a valid ELF file"),
        (build_bzimage()[:0x300], "leave no kernel"),
        (build_ovmf()[:-0x1000], "unrecognised format"),  # footer no longer at the end
    ],
)
def test_bad_input_one_line_exit_2(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.img"
    path.write_bytes(content)
    proc = subprocess.run(
        [sys.executable, "-m", "cvmlaunch", "inspect", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"cvmlaunch: error: {path}: ")
    assert message in lines[0]
    assert proc.stdout == ""


def test_corrupt_ovmf_table(tmp_path: Path) -> None:
    data = bytearray(build_ovmf(sev=[(0x800000, 0x1000, 1)]))
    data[-0x32:-0x30] = (0xFFFF).to_bytes(2, "little")  # table length beyond the image start
    path = tmp_path / "fw.fd"
    path.write_bytes(bytes(data))
    result = run_cli(["inspect", str(path)])
    assert result.exit_code == 2
    assert "GUID table length 0xffff points outside the image" in result.output


def test_a_tdvf_image_shows_the_td_hob_qemu_builds(firmware: Any) -> None:
    """inspect shows QEMU's TD HOB for --memory: the RAM entries describe every RAM byte once
    and the RTMR0 event is the SHA-384 of the HOB without its END header."""
    import hashlib

    from cvmlaunch.image.ovmf import parse_ovmf
    from cvmlaunch.image.td_hob import build_td_hob

    fd = firmware("OVMF.inteltdx.ms.fd")
    result = run_cli(["inspect", "--json", "--memory", "4G", str(fd)])
    assert result.exit_code == 0, result.output
    hob = json.loads(result.stdout)["td_hob"]
    ram = hob["ram"]
    assert sum(e["length"] for e in ram) == 4 << 30
    for a, b in itertools.pairwise(ram):
        assert a["address"] + a["length"] <= b["address"]
    assert ram[-1] == {"address": 1 << 32, "length": 2 << 30, "accepted": False}
    built = build_td_hob(parse_ovmf(fd.read_bytes(), name="x").tdx_sections or (), 4 << 30)
    assert hob["size"] == len(built) == 56 + 48 * len(ram) + 8
    assert hob["rtmr0_sha384"] == hashlib.sha384(built[:-8]).hexdigest()
    text = run_cli(["inspect", "--memory", "4G", str(fd)])
    assert (
        f"TD HOB (QEMU's, for 0x100000000 (4 GiB) of RAM): {len(built)} bytes at 0x809000"
        in text.stdout
    )


def test_the_td_hob_measurement_matches_dstack_mrs_for_2_gib(firmware: Any) -> None:
    """launch.md §2.4: for the section layout of common OVMF builds (TEMP_MEM 0x810000+0x10000,
    0x80b000+0x2000, TD_HOB 0x809000+0x2000, TEMP_MEM 0x800000+0x6000) and 2 GiB of RAM, the
    HOB's RTMR0 event is 0b8772e5...8ba8a749 (cross-checked with dstack-mr's measure_td_hob)."""
    fd = firmware("OVMF.inteltdx.ms.fd")
    result = run_cli(["inspect", "--json", "--memory", "2G", str(fd)])
    digest = json.loads(result.stdout)["td_hob"]["rtmr0_sha384"]
    assert digest.startswith("0b8772e5")
    assert digest.endswith("8ba8a749")
