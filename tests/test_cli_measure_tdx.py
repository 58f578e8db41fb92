"""``cvmlaunch measure tdx``: output formats, --expect, --two-pass, bad input."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_runner import run_cli
from tests.gce_fake_ovmf import CLEAN_TDX_EXAMPLE_MRTD, clean_example
from tests.ovmf_builder import build_ovmf


@pytest.fixture
def fake_fw(tmp_path: Path) -> Path:
    path = tmp_path / "clean.fd"
    path.write_bytes(clean_example())
    return path


def run(*args: str) -> tuple[int, str, str]:
    result = run_cli(["measure", "tdx", *args])
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
    assert doc["mrtd"] == doc["digest"] == CLEAN_TDX_EXAMPLE_MRTD
    zero = "00" * 48  # the TD owner values default to zero (recorded, not measured)
    assert doc["settings"] == {
        "order": "per-page",
        "profile": "qemu",
        "mrconfigid": zero,
        "mrowner": zero,
        "mrownerconfig": zero,
    }
    assert doc["firmware"]["sha256"] == hashlib.sha256(fake_fw.read_bytes()).hexdigest()
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
    assert err.strip() == "cvmlaunch: error: --expect: 'xyz' is not hexadecimal"
    code, _, err = run("--firmware", str(fake_fw), "--expect", "00" * 47)
    assert code == 2
    assert err.strip() == "cvmlaunch: error: --expect: 47 bytes given, exactly 48 needed"


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
        (
            build_ovmf(0x40000, tdx=[(0, 0, 0x800000, 0x1000, 3, 0)] * 2, tdvf_version=2),
            "fw.fd: TDVF descriptor version 2",
        ),
        (
            build_ovmf(
                0x40000, tdx=[(0, 0, 0x800000, 0x2000, 3, 0), (0, 0, 0x801000, 0x1000, 2, 0)]
            ),
            "fw.fd: TDVF section 0 (TEMP_MEM) overlaps TDVF section 1 (TD_HOB)",
        ),
        (
            build_ovmf(0x40000, tdx=[(0, 0, 0x800000, 0x1000, 3, 0)]),
            "fw.fd: TDVF metadata has 1 section; QEMU requires at least 2",
        ),
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


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cvmlaunch", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
    )


def test_log_written_and_verified(tmp_path: Path, fake_fw: Path) -> None:
    code, _, _ = run("--firmware", "clean.fd", "--log", str(tmp_path / "a.log"))
    assert code == 2  # clean.fd is not in the test's working directory
    proc = _cli("measure", "tdx", "--firmware", "clean.fd", "--log", "a.log", cwd=tmp_path)
    assert (proc.returncode, proc.stdout.strip()) == (0, CLEAN_TDX_EXAMPLE_MRTD)
    lines = (tmp_path / "a.log").read_text().splitlines()
    assert len(lines) == 8  # header, six sections, footer
    assert json.loads(lines[-1]) == {
        "digest": CLEAN_TDX_EXAMPLE_MRTD,
        "record": "footer",
        "records": 6,
    }
    # log verify never looks for the firmware by its name: without it, the records it
    # decides are listed as unchecked ...
    proc = _cli("log", "verify", "a.log", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (
        proc.stdout.splitlines()[-1]
        == "a.log: OK 6 records, digest not replayed (2 part(s) unchecked)"
    )
    # ... it checks them with the firmware given, which must be the same file ...
    proc = _cli(
        "log", "verify", "a.log", "--firmware", "clean.fd", "--require-inputs", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"a.log: OK 6 records, digest {CLEAN_TDX_EXAMPLE_MRTD}"
    other = tmp_path / "other.fd"
    changed = bytearray(clean_example())
    changed[0x30000] ^= 1
    other.write_bytes(changed)
    proc = _cli("log", "verify", "a.log", "--firmware", "other.fd", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stdout.startswith("a.log: input firmware: sha256: ")
    # ... or found by its SHA-256 in a directory, from anywhere
    elsewhere = tmp_path / "sub"
    elsewhere.mkdir()
    proc = _cli("log", "verify", "../a.log", "--inputs", "..", "--require-inputs", cwd=elsewhere)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == f"../a.log: OK 6 records, digest {CLEAN_TDX_EXAMPLE_MRTD}"


def test_tampered_log_fails_verify(tmp_path: Path, fake_fw: Path) -> None:
    _cli("measure", "tdx", "--firmware", "clean.fd", "--log", "a.log", cwd=tmp_path)
    lines = (tmp_path / "a.log").read_text().splitlines()
    header = json.loads(lines[0])
    header["settings"]["order"] = "two-pass"
    lines[0] = json.dumps(header, sort_keys=True, separators=(",", ":"))
    (tmp_path / "b.log").write_text("\n".join(lines) + "\n")
    proc = _cli("log", "verify", "b.log", "--firmware", "clean.fd", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stdout.startswith("b.log: record 0 (tdx.page_add+extend")
    assert "decided by the header's settings order, profile" in proc.stdout
