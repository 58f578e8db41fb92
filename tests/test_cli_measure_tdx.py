"""``cvmlaunch measure tdx``: output formats, --expect, --two-pass, bad input."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cvmlaunch.cli import cli
from tests.gce_fake_ovmf import CLEAN_TDX_EXAMPLE_MRTD, clean_example
from tests.ovmf_builder import build_ovmf


@pytest.fixture
def fake_fw(tmp_path: Path) -> Path:
    path = tmp_path / "clean.fd"
    path.write_bytes(clean_example())
    return path


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["measure", "tdx", *args])
    return result.exit_code, result.stdout, result.stderr


def test_hex_is_the_mrtd_alone(fake_fw: Path) -> None:
    code, out, _ = run("--firmware", str(fake_fw))
    assert code == 0
    assert out == CLEAN_TDX_EXAMPLE_MRTD + "\n"


def test_base64_and_json(fake_fw: Path) -> None:
    code, out, _ = run("--firmware", str(fake_fw), "--output-format", "base64")
    assert code == 0
    assert base64.b64decode(out.strip()).hex() == CLEAN_TDX_EXAMPLE_MRTD
    code, out, _ = run("--firmware", str(fake_fw), "--output-format", "json")
    assert code == 0
    doc = json.loads(out)
    assert doc["mrtd"] == CLEAN_TDX_EXAMPLE_MRTD
    assert doc["order"] == "per-page"
    assert (doc["page_add"], doc["mr_extend"]) == (0x1E0 + 0x20 + 0x10 + 2 + 2 + 6, 0x1E0 * 16)


def test_two_pass_differs(fake_fw: Path) -> None:
    code, out, _ = run("--firmware", str(fake_fw), "--two-pass")
    assert code == 0
    assert len(out.strip()) == 96
    assert out.strip() != CLEAN_TDX_EXAMPLE_MRTD


def test_expect(fake_fw: Path) -> None:
    code, out, _ = run(
        "--firmware", str(fake_fw), "--expect", "0x" + CLEAN_TDX_EXAMPLE_MRTD.upper()
    )
    assert (code, out.strip()) == (0, CLEAN_TDX_EXAMPLE_MRTD)
    wrong = "00" * 48
    code, out, err = run("--firmware", str(fake_fw), "--expect", wrong)
    assert code == 1
    assert out.strip() == CLEAN_TDX_EXAMPLE_MRTD
    assert err.strip() == (
        f"cvmlaunch: error: MRTD mismatch: expected {wrong}, got {CLEAN_TDX_EXAMPLE_MRTD}"
    )
    code, _, err = run("--firmware", str(fake_fw), "--expect", "xyz")
    assert code == 2
    assert "not a hex MRTD" in err


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (build_ovmf(0x40000), "fw.fd: no TDX metadata"),
        (
            build_ovmf(
                0x40000, tdx=[(0, 0, 0x800000, 0x1000, 5, 0), (0, 0, 0x801000, 0x1000, 2, 0)]
            ),
            "fw.fd: TDVF section 0 (PAYLOAD): upstream QEMU accepts only",
        ),
        (b"\0" * 0x10000, "fw.fd: "),
    ],
)
def test_bad_firmware_is_one_line_exit_2(tmp_path: Path, image: bytes, message: str) -> None:
    path = tmp_path / "fw.fd"
    path.write_bytes(image)
    proc = subprocess.run(
        [sys.executable, "-m", "cvmlaunch", "measure", "tdx", "--firmware", "fw.fd"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("cvmlaunch: error: " + message)
