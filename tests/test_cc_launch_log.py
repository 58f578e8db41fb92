"""The log a confidential launch writes is evidence ``log verify`` checks whole.

One plan, two consumers: the log ``launch --tech snp|tdx`` writes (here against the model
firmware of tests/model_firmware.py, through the CLI's composition) and the log
``measure snp|tdx --log`` writes for the same settings have the same records; what differs
is what the host decided at launch (an SNP CPUID page's contents, which SNP does not
measure) and what the prediction cannot know (a TD's RAM size, hence its TD HOB's bytes).
``log verify --firmware`` passes the launch's log (exit 0), and every edit of one of its
fields that changes meaning fails naming the field (the approach of tests/test_log_check.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from cvmlaunch.cli._cc_launch import launch_confidential
from cvmlaunch.errors import LogFormatError
from cvmlaunch.image.ovmf import parse_ovmf
from cvmlaunch.image.td_hob import build_td_hob
from cvmlaunch.launch_settings import LaunchSettings
from cvmlaunch.layout import PageType
from cvmlaunch.log_entry import LogEntry
from cvmlaunch.measure.log import MeasurementLog
from cvmlaunch.measure.log_check import check_log
from cvmlaunch.measure.log_json import parse_log
from cvmlaunch.technology import Technology
from tests.cli_runner import run_cli
from tests.conftest import find_firmware
from tests.model_firmware import CPU_TYPES, ModelKernel
from tests.test_log_check import (
    FORMAT_FIELDS,
    NAME_FIELDS,
    SIGNATURE_FIELDS,
    _edits,
    _field_name,
    _host_decided,
)

MEMORY = 128 << 20
VCPUS = 2
SIG = CPU_TYPES["EPYC-Genoa"]
APPEND = "console=ttyS0 root=/dev/vda1"
#: The settings a TD launch adds that only a signature protects (their form is checked).
TDX_LAUNCH_SIGNATURE = {("header", "settings", "vcpus"), ("header", "settings", "td_attributes")}


def _fw(name: str) -> Path:
    path = find_firmware(name)
    if path is None:
        pytest.skip(f"firmware {name} not found (see tests/conftest.py firmware_dirs)")
    return Path(path)


@dataclasses.dataclass
class Launched:
    text: str
    inputs: dict[str, bytes]
    model_digest: bytes
    verify_args: list[str]


def _launch(tmp: Path, tech: str, fw: Path, *, kernel: bool = False) -> Launched:
    """``launch --tech TECH --firmware FW [--kernel K --append A] --log L`` (the CLI's
    composition: inputs, identity settings, the log), against the model firmware."""
    kernel_file = tmp / "vmlinuz"
    kernel_bytes = bytearray(b"MZ a bzImage, as far as the hashes page is concerned" * 100)
    kernel_bytes[0x1F1] = 0  # setup_sects 0 (means 4): the file holds the setup QEMU serves apart
    kernel_file.write_bytes(kernel_bytes)
    settings = LaunchSettings(
        memory=MEMORY,
        vcpus=VCPUS,
        firmware=str(fw),
        kernel=str(kernel_file) if kernel else None,
        append=APPEND if kernel else "",
        tech=Technology.SEV_SNP if tech == "snp" else Technology.TDX,
    )
    model = ModelKernel(signature=SIG) if tech == "snp" else ModelKernel()
    log_file = tmp / f"{tech}-launch.jsonl"
    launch_confidential(settings, dry_run=False, log_file=str(log_file), kernel=model)
    assert model.violations == []
    inputs = {"firmware": fw.read_bytes()}
    args = ["--firmware", str(fw)]
    if kernel:
        inputs |= {"kernel": kernel_file.read_bytes(), "cmdline": APPEND.encode() + b"\0"}
        args += ["--kernel", str(kernel_file), "--append", APPEND]
    digest = model.snp_digest() if tech == "snp" else model.mrtd()
    return Launched(log_file.read_text(), inputs, digest, [str(log_file), *args])


def _measure(tmp: Path, tech: str, fw: Path, *, kernel: bool = False) -> MeasurementLog:
    """The log ``measure snp|tdx --log`` writes for the launch's settings."""
    log_file = tmp / f"{tech}-measure.jsonl"
    if tech == "snp":
        args = ["measure", "snp", "--ovmf", str(fw), "--vcpus", str(VCPUS),
                "--vcpu-sig", hex(SIG)]  # fmt: skip
        if kernel:
            args += ["--kernel", str(tmp / "vmlinuz"), "--append", APPEND]
    else:
        args = ["measure", "tdx", "--firmware", str(fw)]
    result = run_cli([*args, "--log", str(log_file)])
    assert result.exit_code == 0, result.output
    return parse_log(log_file.read_text())


CASES = [("snp", "OVMF.amdsev.fd", False), ("snp", "OVMF.amdsev.fd", True),
         ("snp", "OVMF.generic.fd", True), ("tdx", "OVMF.inteltdx.ms.fd", False),
         ("tdx", "OVMF.generic.fd", False)]  # fmt: skip


def _id(case: tuple[str, str, bool]) -> str:
    return f"{case[0]}-{case[1]}-{'hashes' if case[2] else 'nohashes'}"


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_a_launch_log_passes_log_verify(tmp_path: Path, case: tuple[str, str, bool]) -> None:
    tech, name, kernel = case
    launched = _launch(tmp_path, tech, _fw(name), kernel=kernel)
    log = parse_log(launched.text)
    result = check_log(log, launched.inputs)
    assert result.findings == (), "\n".join(f.describe() for f in result.findings)
    assert result.unchecked == ()
    assert result.digest == launched.model_digest == log.footer.digest
    cli = run_cli(["log", "verify", *launched.verify_args])
    assert cli.exit_code == 0, cli.output
    assert f"OK {len(log.entries)} records, digest {launched.model_digest.hex()}" in cli.stdout
    assert "unchecked" not in cli.stdout
    cpuid = [e for e in log.entries if e.page_type is PageType.CPUID]
    if tech == "snp":
        # the CPUID page the launch filled from the host: reported, never a finding
        (page,) = cpuid
        assert page.content_sha384 is not None
        assert result.host_decided == (result.host_decided[0],)
        assert f"record {page.seq} " in result.host_decided[0]
        assert "host-decided (a signature protects it)" in cli.stdout
        strict = run_cli(["log", "verify", "--require-inputs", *launched.verify_args])
        assert strict.exit_code == 0, strict.output
        doc = json.loads(run_cli(["log", "verify", "--json", *launched.verify_args]).stdout)
        assert doc["ok"]
        assert doc["complete"]
        assert doc["host_decided"] == list(result.host_decided)
    else:
        assert result.host_decided == ()


def _without(entry: LogEntry, host: bool) -> LogEntry:
    """A record without what the launch's host decides (the CPUID page's contents) and
    without the running digest (a launch's log carries it only where it replays)."""
    return dataclasses.replace(
        entry,
        content_sha384=None if host else entry.content_sha384,
        digest_after=None,
    )


@pytest.mark.parametrize("kernel", [False, True], ids=["nohashes", "hashes"])
def test_snp_launch_and_measure_logs_have_the_same_records(tmp_path: Path, kernel: bool) -> None:
    fw = _fw("OVMF.amdsev.fd")
    launched = parse_log(_launch(tmp_path, "snp", fw, kernel=kernel).text)
    predicted = _measure(tmp_path, "snp", fw, kernel=kernel)
    assert len(launched.entries) == len(predicted.entries)
    for got, want in zip(launched.entries, predicted.entries, strict=True):
        host = got.page_type is PageType.CPUID
        assert _without(got, host) == _without(want, host), got.seq
        if not host:
            assert got.content_sha384 == want.content_sha384
    assert launched.footer.digest == predicted.footer.digest
    assert launched.header.settings == predicted.header.settings
    assert launched.header.initial_digest == predicted.header.initial_digest
    roles = {i.role: (i.size, i.sha256) for i in launched.header.inputs}
    assert roles == {i.role: (i.size, i.sha256) for i in predicted.header.inputs}


def test_tdx_launch_and_measure_logs_have_the_same_records(tmp_path: Path) -> None:
    fw = _fw("OVMF.inteltdx.ms.fd")
    launched = parse_log(_launch(tmp_path, "tdx", fw).text)
    predicted = _measure(tmp_path, "tdx", fw)
    assert launched.footer.digest == predicted.footer.digest
    # the launch's log names the RAM its TD HOB describes; the prediction (no --memory) has
    # an empty TD_HOB section: the one record whose content hash differs, and the TD HOB's
    # bytes are QEMU's for that RAM (PAGE.ADDed, not in MRTD)
    hob = build_td_hob(parse_ovmf(fw.read_bytes(), name=fw.name).tdx_sections or (), MEMORY)
    assert len(launched.entries) == len(predicted.entries)
    for got, want in zip(launched.entries, predicted.entries, strict=True):
        if got.provenance.detail == "TD_HOB":
            padded = hob + bytes(got.size - len(hob))
            assert got.content_sha384 == hashlib.sha384(padded).digest()
            assert want.content_sha384 is None
            got = dataclasses.replace(got, content_sha384=None)
        assert got == want, got.seq
    extra = set(launched.header.settings) - set(predicted.header.settings)
    assert extra == {"memory", "vcpus", "td_hob_memory", "td_attributes", "xfam"}
    for key in predicted.header.settings:
        assert launched.header.settings[key] == predicted.header.settings[key], key
    assert launched.header.settings["td_hob_memory"] == MEMORY


def _run_launch_edits(text: str, tech: str, inputs: dict[str, bytes]) -> dict[str, list[str]]:
    """Every field of the launch's log edited alone (tests/test_log_check.py's edits)."""
    technology = "sev-snp" if tech == "snp" else "tdx"
    assert check_log(parse_log(text), inputs).findings == ()
    signature = SIGNATURE_FIELDS["all"] | SIGNATURE_FIELDS[technology]
    if tech == "tdx":
        signature |= TDX_LAUNCH_SIGNATURE
    outcome: dict[str, list[str]] = {"found": [], "format": [], "signature": [], "missed": []}
    for n, kind, path, edited in _edits(text):
        label = f"line {n + 1} {kind}.{'.'.join(map(str, path))}"
        try:
            log = parse_log(edited)
        except LogFormatError:
            outcome["format"].append(label)
            assert _field_name(path) in FORMAT_FIELDS or path == ("records",), label
            continue
        result = check_log(log, inputs)
        text_out = "\n".join(f.describe() for f in result.findings)
        keys = (kind, *[p for p in path if isinstance(p, str)])
        if keys in signature or _host_decided(text, n, path):
            outcome["signature"].append(label)
            assert result.ok, (label, text_out)
        elif _field_name(path) in NAME_FIELDS and kind == "header":
            outcome["signature" if result.ok else "found"].append(label)
        elif result.ok or _field_name(path) not in text_out:
            outcome["missed"].append(f"{label}: {text_out[:300]}")
        else:
            outcome["found"].append(label)
    return outcome


@pytest.mark.parametrize("case", CASES[:2] + CASES[3:4], ids=_id)
def test_every_field_of_a_launch_log(tmp_path: Path, case: tuple[str, str, bool]) -> None:
    tech, name, kernel = case
    launched = _launch(tmp_path, tech, _fw(name), kernel=kernel)
    outcome = _run_launch_edits(launched.text, tech, launched.inputs)
    assert outcome["missed"] == []
    assert len(outcome["found"]) > 20
    if tech == "snp":  # the CPUID page's content hash: host-decided, signature only
        (n,) = [i for i, line in enumerate(launched.text.splitlines()) if '"CPUID"' in line]
        assert f"line {n + 1} range.content_sha384" in outcome["signature"]


def test_a_tdx_launch_log_with_a_wrong_ram_size_fails(tmp_path: Path) -> None:
    """The TD HOB is rebuilt from td_hob_memory: a log that says other RAM fails on the HOB
    record's contents (and on memory != td_hob_memory when only one is edited)."""
    fw = _fw("OVMF.inteltdx.ms.fd")
    launched = _launch(tmp_path, "tdx", fw)
    lines = launched.text.splitlines()
    header: dict[str, Any] = json.loads(lines[0])
    header["settings"]["memory"] = header["settings"]["td_hob_memory"] = 2 * MEMORY
    lines[0] = json.dumps(header, sort_keys=True, separators=(",", ":"))
    result = check_log(parse_log("\n".join(lines) + "\n"), launched.inputs)
    described = [f.describe() for f in result.findings]
    assert len(described) == 1, described
    assert "TD_HOB" in described[0]
    assert "content_sha384" in described[0]
