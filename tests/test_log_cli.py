"""The log commands end to end: byte-reproducible logs from any directory, ``log diff`` that
explains, ``log sign`` / ``log verify --signed-by``, ``log verify --json``."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

REPO = Path(__file__).resolve().parent.parent


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``cvmlaunch ARGS`` in a fresh process, run in ``cwd``."""
    return subprocess.run(
        [sys.executable, "-m", "cvmlaunch", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
    )


@pytest.fixture
def amd(firmware: Any) -> Path:
    path: Path = firmware("OVMF.amdsev.fd")
    return path


@pytest.fixture
def tdx(firmware: Any) -> Path:
    path: Path = firmware("OVMF.inteltdx.ms.fd")
    return path


def test_logs_are_byte_identical_from_two_directories(tmp_path: Path, amd: Path, tdx: Path) -> None:
    """The same inputs, named by different relative and absolute paths from two working
    directories, give byte-identical logs (no paths, no host details in a log)."""
    one, two = tmp_path / "one", tmp_path / "two" / "deeper"
    (one / "fw").mkdir(parents=True)
    two.mkdir(parents=True)
    shutil.copy(amd, one / "fw" / amd.name)
    shutil.copy(tdx, one / "fw" / tdx.name)
    for d in (one, two):
        (d / "vmlinuz").write_bytes(b"kernel" * 10000)
    snp = ["--vcpus", "2", "--vcpu-type", "EPYC-Milan", "--append", "console=ttyS0"]
    a = cli("measure", "snp", "--ovmf", f"fw/{amd.name}", "--kernel", "vmlinuz", *snp,
            "--log", "snp.jsonl", cwd=one)  # fmt: skip
    b = cli("measure", "snp", "--ovmf", str(amd), "--kernel", str(two / "vmlinuz"), *snp,
            "--log", str(two / "snp.jsonl"), cwd=tmp_path)  # fmt: skip
    assert a.returncode == b.returncode == 0, a.stderr + b.stderr
    first, second = (one / "snp.jsonl").read_bytes(), (two / "snp.jsonl").read_bytes()
    assert first == second
    assert b"/" not in b"".join(
        line for line in first.splitlines() if b'"record":"header"' in line
    ).replace(b"snp:", b"")
    a = cli("measure", "tdx", "--firmware", f"fw/{tdx.name}", "--log", "t.jsonl", cwd=one)
    b = cli("measure", "tdx", "--firmware", str(tdx), "--log", "t.jsonl", cwd=two)
    assert a.returncode == b.returncode == 0, a.stderr + b.stderr
    assert (one / "t.jsonl").read_bytes() == (two / "t.jsonl").read_bytes()
    # and each verifies from the other directory, finding its inputs by SHA-256
    v = cli("log", "verify", str(one / "t.jsonl"), "--inputs", str(one / "fw"),
            "--require-inputs", cwd=two)  # fmt: skip
    assert v.returncode == 0, v.stdout + v.stderr


def test_log_diff_lists_three_settings_and_the_verdict(tmp_path: Path, amd: Path) -> None:
    base = ["measure", "snp", "--ovmf", str(amd), "--vcpu-type", "EPYC-Milan"]
    a = cli(*base, "--vcpus", "4", "--log", "a.jsonl", cwd=tmp_path)
    b = cli(*base, "--vcpus", "2", "--policy", "0x70000", "--host-data", "ab" * 32,
            "--log", "b.jsonl", cwd=tmp_path)  # fmt: skip
    assert a.returncode == b.returncode == 0, a.stderr + b.stderr
    d = cli("log", "diff", "a.jsonl", "b.jsonl", cwd=tmp_path)
    assert d.returncode == 1
    lines = d.stdout.splitlines()
    assert lines[:3] == [
        f"header: setting host_data differs: {'0' * 16}… (64 chars, sha256 "
        f"{hashlib.sha256(b'0' * 64).hexdigest()[:16]}…) vs "
        f"{'ab' * 8}… (64 chars, sha256 "
        f"{hashlib.sha256(b'ab' * 32).hexdigest()[:16]}…)",
        "header: setting policy differs: 0x30000 vs 0x70000",
        "header: setting vcpus differs: 4 vs 2",
    ]
    assert lines[3] == "first diverging range: record 10: presence differs: present vs (absent)"
    assert lines[4].startswith("verdict: the final digests differ: ")
    assert d.stderr == "cvmlaunch: error: the final digests differ\n"
    j = cli("log", "diff", "a.jsonl", "b.jsonl", "--json", cwd=tmp_path)
    doc = json.loads(j.stdout)
    assert [x["what"] for x in doc["header"]] == [
        "setting host_data",
        "setting policy",
        "setting vcpus",
    ]
    assert doc["same_digest"] is False
    # settings outside the digest only: listed, exit 0
    c = cli(*base, "--vcpus", "4", "--policy", "0x70000", "--log", "c.jsonl", cwd=tmp_path)
    assert c.returncode == 0
    d = cli("log", "diff", "a.jsonl", "c.jsonl", cwd=tmp_path)
    assert d.returncode == 0, d.stderr
    assert d.stdout.splitlines()[0] == "header: setting policy differs: 0x30000 vs 0x70000"
    assert "verdict: same final digest" in d.stdout.splitlines()[-1]


def _pem(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> tuple[bytes, bytes]:
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


@pytest.mark.parametrize("kind", ["p384", "ed25519"])
def test_sign_and_verify_signed_by(tmp_path: Path, tdx: Path, kind: str) -> None:
    key = ec.generate_private_key(ec.SECP384R1()) if kind == "p384" else (
        ed25519.Ed25519PrivateKey.generate()
    )  # fmt: skip
    private, public = _pem(key)
    (tmp_path / "k.pem").write_bytes(private)
    (tmp_path / "k.pub").write_bytes(public)
    assert cli("measure", "tdx", "--firmware", str(tdx), "--mrowner", "cd" * 48,
               "--log", "t.jsonl", cwd=tmp_path).returncode == 0  # fmt: skip
    s = cli("log", "sign", "t.jsonl", "--key", "k.pem", cwd=tmp_path)
    assert s.returncode == 0, s.stderr
    assert s.stdout.startswith("t.jsonl.dsse: signed t.jsonl (key ")
    v = cli("log", "verify", "t.jsonl", "--signed-by", "k.pub", cwd=tmp_path)
    assert v.returncode == 0, v.stdout + v.stderr
    assert v.stdout.startswith("t.jsonl: signature OK (key ")
    # the owner value enters no digest: verify alone accepts an edit, the signature does not
    text = (tmp_path / "t.jsonl").read_text()
    (tmp_path / "t.jsonl").write_text(text.replace("cd" * 48, "ce" + "cd" * 47))
    assert cli("log", "verify", "t.jsonl", cwd=tmp_path).returncode == 0
    bad = cli("log", "verify", "t.jsonl", "--signed-by", "k.pub", cwd=tmp_path)
    assert bad.returncode == 1
    assert bad.stderr == (
        "cvmlaunch: error: the signed payload is not this log: the log was changed after signing\n"
    )


def test_reference_values_signed_by_refuses_an_edited_owner(tmp_path: Path, tdx: Path) -> None:
    """MROWNER enters no digest: reference-values --signed-by prints it only from the log as
    signed, and refuses the log once that value is edited (exit 1, nothing on stdout)."""
    private, public = _pem(ec.generate_private_key(ec.SECP384R1()))
    (tmp_path / "k.pem").write_bytes(private)
    (tmp_path / "k.pub").write_bytes(public)
    assert cli("measure", "tdx", "--firmware", str(tdx), "--mrowner", "cd" * 48,
               "--log", "t.jsonl", cwd=tmp_path).returncode == 0  # fmt: skip
    assert cli("log", "sign", "t.jsonl", "--key", "k.pem", cwd=tmp_path).returncode == 0
    good = cli("reference-values", "t.jsonl", "--signed-by", "k.pub", cwd=tmp_path)
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["mr_owner"] == "cd" * 48
    assert "signature OK" in good.stderr
    text = (tmp_path / "t.jsonl").read_text()
    (tmp_path / "t.jsonl").write_text(text.replace("cd" * 48, "ce" + "cd" * 47))
    assert cli("reference-values", "t.jsonl", cwd=tmp_path).returncode == 0  # unsigned: as is
    bad = cli("reference-values", "t.jsonl", "--signed-by", "k.pub", cwd=tmp_path)
    assert (bad.returncode, bad.stdout) == (1, "")
    assert bad.stderr.startswith("cvmlaunch: error: the signed payload is not this log")


def test_verify_json_lists_findings_and_unchecked(tmp_path: Path, tdx: Path) -> None:
    assert cli("measure", "tdx", "--firmware", str(tdx), "--log", "t.jsonl",
               cwd=tmp_path).returncode == 0  # fmt: skip
    j = cli("log", "verify", "t.jsonl", "--json", cwd=tmp_path)
    assert j.returncode == 0
    doc = json.loads(j.stdout)
    assert doc["ok"] is True
    assert doc["complete"] is False
    assert doc["findings"] == []
    assert any("give the firmware" in u for u in doc["unchecked"])
    lines = (tmp_path / "t.jsonl").read_text().splitlines()
    rec = json.loads(lines[3])
    rec["gpa"] += 4096
    lines[3] = json.dumps(rec, sort_keys=True, separators=(",", ":"))
    (tmp_path / "t.jsonl").write_text("\n".join(lines) + "\n")
    j = cli("log", "verify", "t.jsonl", "--json", "--firmware", str(tdx), cwd=tmp_path)
    assert j.returncode == 1
    doc = json.loads(j.stdout)
    assert doc["ok"] is False
    assert doc["complete"] is True
    assert any(f["field"] == "gpa" and f["where"].startswith("record 2 ") for f in doc["findings"])


def test_hostile_json_is_one_line_exit_2(tmp_path: Path) -> None:
    (tmp_path / "deep.jsonl").write_text("[" * 100_000 + "\n")
    r = cli("log", "verify", "deep.jsonl", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr == (
        "cvmlaunch: error: deep.jsonl line 1: 100000 arrays and objects in one line (at most 64)\n"
    )
