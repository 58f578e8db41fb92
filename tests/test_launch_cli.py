"""``cvmlaunch launch`` without KVM: --dry-run, settings errors."""

from __future__ import annotations

import hashlib
import io
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from cvmlaunch import kvm_map
from cvmlaunch.cli._launch import example_config
from cvmlaunch.image.ovmf import parse_ovmf
from cvmlaunch.launch_settings import settings_from_toml
from cvmlaunch.launcher import load_pvh_launch
from cvmlaunch.plan.tdvf import tdvf_plan
from tests.cli_runner import run_cli
from tests.test_plain_log import reference_step


@pytest.fixture
def no_kvm(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any attempt to open /dev/kvm fail the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("--dry-run opened /dev/kvm")

    monkeypatch.setattr(kvm_map.Kvm, "open", refuse)
    monkeypatch.setattr(kvm_map.Vm, "open", refuse)


@pytest.mark.usefixtures("no_kvm")
@pytest.mark.parametrize("tech", ["none"])
def test_dry_run_prints_plan_and_prediction(tech: str) -> None:
    result = run_cli(["launch", "--example", "--dry-run", "--tech", tech])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == (
        f"plan: tech {tech}, memory 512 MiB, 1 vCPU, PVH entry 0x100000, start_info 0x2000"
    )
    assert lines[1] == "cmdline: console=ttyS0 cvmlaunch.example=1"
    assert lines[3] == "  0  [0x000000000000-0x000020000000)  ram-low  512 MiB"
    assert lines[5].split() == ["#", "GPA", "range", "pages", "type", "measured", "provenance"]
    ranges = re.findall(
        r"^ +\d+  \[0x(\w+)-0x(\w+)\) +(\d+)  NORMAL  yes +(.*)\n +sha384 (\w+)$",
        result.stdout,
        re.M,
    )
    settings = settings_from_toml(example_config().read_text(), base=str(example_config().parent))
    with load_pvh_launch(settings) as launch:
        expected = [
            (
                r.gpa,
                r.end,
                r.size // 4096,
                r.provenance.describe(),
                hashlib.sha384(r.contents()).hexdigest(),
            )
            for r in launch.hashed
        ]
    assert [(int(a, 16), int(b, 16), int(n), p, d) for a, b, n, p, d in ranges] == expected
    assert [p for _, _, _, p, _ in ranges][-3:] == [
        "cmdline (kernel command line)",
        "start_info (PVH hvm_start_info)",
        "range-table (cvmlaunch range table)",
    ]
    # the transcript chain of docs/log-format.md over the plan's ranges, in populate order
    digest = bytes(48)
    for gpa, end, _, _, content in expected:
        digest = reference_step(
            digest, "plain.copy", gpa, end - gpa, 1, True, bytes.fromhex(content)
        )
    assert lines[-1] == (
        "predicted launch log digest (plain, cvmlaunch-transcript-sha384; informational, "
        f"no hardware measures a plain launch): {digest.hex()}"
    )


@pytest.mark.usefixtures("no_kvm")
def test_flags_override_config(tmp_path: Path) -> None:
    cfg = tmp_path / "vm.toml"
    cfg.write_text(
        f'memory = "1G"\nkernel = "{example_config().parent / "example-guest.elf"}"\n'
        'append = "from-file"\n'
    )
    result = run_cli(
        ["launch", "--config", str(cfg), "--append", "from-flag", "--vcpus", "2", "--dry-run"]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[:2] == [
        "plan: tech none, memory 1024 MiB, 2 vCPUs, PVH entry 0x100000, start_info 0x2000",
        "cmdline: from-flag",
    ]


@pytest.mark.usefixtures("no_kvm")
@pytest.mark.parametrize(
    ("toml", "flags", "message"),
    [
        # a bad value in the file: the file and its key
        ("vcpus = 0", [], "{cfg}: vcpus 0: expected 1 to 255"),
        ('memory = "lots"', [], "{cfg}: memory 'lots': expected e.g. 512M, 5G or 1024 (MiB)"),
        ('tech = "snp"\nhost-data = "00"', [], "{cfg}: host-data: 1 bytes given, exactly 32"),
        ('tech = "snp"\nid-auth = "a.bin"', [], "{cfg}: id-block and id-auth go together"),
        ('host-data = "' + "00" * 32 + '"', [], "{cfg}: host-data is a snp launch setting"),
        # a bad value given as a flag, with a file of good ones: the flag
        ("vcpus = 2", ["--vcpus", "0"], "--vcpus 0: expected 1 to 255"),
        ('memory = "1G"', ["-m", "lots"], "--memory 'lots': expected e.g. 512M, 5G or 1024"),
        ('tech = "snp"', ["--host-data", "00"], "--host-data: 1 bytes given, exactly 32"),
        ('tech = "snp"', ["--id-auth", "a.bin"], "--id-block and --id-auth go together"),
        ('tech = "tdx"', ["--policy", "0x30000"], "--policy is a snp launch setting"),
        ('tech = "snp"', ["--policy", "0x10000"], "--policy: SNP policy 0x10000: bit 17"),
    ],
)
def test_launch_errors_name_their_source(
    tmp_path: Path, toml: str, flags: list[str], message: str
) -> None:
    """A bad setting is named where the user wrote it: the flag, or the file and key."""
    cfg = tmp_path / "vm.toml"
    guest = example_config().parent / "example-guest.elf"
    cfg.write_text(f'kernel = "{guest}"\n{toml}\n')
    result = run_cli(["launch", "--config", str(cfg), "--dry-run", *flags])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.startswith(f"cvmlaunch: error: {message.format(cfg=cfg)}")
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--memory", "lots"], "--memory 'lots': expected e.g. 512M, 5G or 1024 (MiB)"),
        (["--vcpus", "0"], "--vcpus 0: expected 1 to 255"),
        ([], "no kernel: give --kernel FILE, --config FILE or --example"),
    ],
)
def test_bad_settings_exit_2(args: list[str], message: str) -> None:
    extra = ["--kernel", str(example_config().parent / "example-guest.elf")] if args else []
    result = run_cli(["launch", "--dry-run", *extra, *args])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"cvmlaunch: error: {message}"


def test_progress_bar_appears_only_after_a_moment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cvmlaunch.cli import _progress

    assert _progress.PROGRESS_DELAY == 0.5
    # a populate that ends within the delay draws no bar; the delay is made an hour so that
    # a loaded machine (a descheduled test process) cannot make the check flaky
    monkeypatch.setattr(_progress, "PROGRESS_DELAY", 3600.0)
    quick = _progress.LazyProgress(100, "populating guest memory")
    quick(50)
    quick(100)
    quick.close()
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(_progress, "PROGRESS_DELAY", 0.0)
    slow = _progress.LazyProgress(100, "populating guest memory")
    slow(50)
    slow(100)
    slow.close()
    # on a non-terminal the label is printed once instead of a bar redrawn in place
    assert capsys.readouterr().err.splitlines() == ["populating guest memory"]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal_is_redrawn_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    from cvmlaunch.cli import _progress

    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setattr(_progress, "PROGRESS_DELAY", 0.0)
    bar = _progress.LazyProgress(1000, "populating guest memory")
    for done in (250, 251, 500, 1000):
        bar(done)
    bar.close()
    frames = terminal.getvalue().split("\r")
    assert frames[0] == ""
    # one frame per change of the drawn line (251 draws what 250 drew), then a newline
    assert frames[1:] == [
        f"populating guest memory  [{'#' * 9}{'-' * 27}]   25%",
        f"populating guest memory  [{'#' * 18}{'-' * 18}]   50%",
        f"populating guest memory  [{'#' * 36}]  100%\n",
    ]


@pytest.mark.usefixtures("no_kvm")
def test_unusable_log_path_exits_2_before_anything_runs(tmp_path: Path) -> None:
    """The log is written once the guest has halted; a path it cannot go to is refused
    first, with the message every command's --log gives."""
    for target, reason in [
        (tmp_path, "Is a directory"),
        (tmp_path / "missing" / "launch.jsonl", "No such file or directory"),
    ]:
        result = run_cli(["launch", "--example", "--log", str(target)])
        assert result.exit_code == 2, result.output
        assert result.stdout == ""
        assert result.stderr == f"cvmlaunch: error: {target}: cannot write: {reason}\n"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.usefixtures("no_kvm")
@pytest.mark.parametrize("option", ["--kernel", "--initrd", "--firmware", "--id-block"])
def test_a_directory_for_a_file_is_one_line_exit_2(tmp_path: Path, option: str) -> None:
    """click refused directories for file options; the library's errors do it now."""
    args = ["launch", "--example", "--dry-run", option, str(tmp_path)]
    if option == "--id-block":
        args += ["--tech", "snp", "--id-auth", str(tmp_path)]
    result = run_cli(args)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"cvmlaunch: error: {tmp_path}: ")
    assert line.endswith("Is a directory")


@pytest.mark.usefixtures("no_kvm")
def test_unreadable_config_is_one_line_exit_2(tmp_path: Path) -> None:
    binary = tmp_path / "vm.toml"
    binary.write_bytes(b"memory = 1\n\xff")
    for path, message in [
        (tmp_path / "missing.toml", "cannot read settings file: No such file or directory"),
        (tmp_path, "cannot read settings file: Is a directory"),
        (binary, "not UTF-8 text (byte 11)"),
    ]:
        result = run_cli(["launch", "--config", str(path), "--dry-run"])
        assert result.exit_code == 2, result.output
        assert result.stderr == f"cvmlaunch: error: {path}: {message}\n"


@pytest.mark.usefixtures("no_kvm")
@pytest.mark.parametrize(
    "cpu", [["--vcpu-type", "EPYC-Milan"], ["--vcpus", "4", "--vcpu-sig", "0xa10f10"]]
)
def test_snp_dry_run_prints_the_digest_measure_snp_prints(firmware: Any, cpu: list[str]) -> None:
    """The example's kernel, initrd and command line go in through the kernel-hashes page:
    the dry run's digest is measure snp's for the same firmware, vCPUs, signature, kernel."""
    fd = firmware("OVMF.amdsev.fd")
    args = ["launch", "--example", "--dry-run", "--tech", "snp", "--firmware", str(fd), *cpu]
    result = run_cli(args)
    assert result.exit_code == 0, result.output
    settings = settings_from_toml(example_config().read_text(), base=str(example_config().parent))
    assert settings.kernel is not None
    assert settings.initrd is not None
    vcpus = [] if "--vcpus" in cpu else ["--vcpus", "1"]
    measure = ["measure", "snp", "--ovmf", str(fd), *vcpus, *cpu, "--kernel", settings.kernel]
    measure += ["--initrd", settings.initrd, "--append", settings.append]
    predicted = run_cli(measure)
    assert predicted.exit_code == 0, predicted.output
    assert f"predicted SNP launch digest: {predicted.stdout.strip()}" in result.stdout
    # the firmware is the plan's first range, ending at 4 GiB; the kernel-hashes page is NORMAL
    first = r"^ +0  \[0x0000ffc00000-0x000100000000\) +1024 pages  NORMAL"
    assert re.search(first, result.stdout, re.M)
    assert re.search(r"NORMAL +measured +sev-kernel-hashes", result.stdout)


@pytest.mark.usefixtures("no_kvm")
def test_snp_dry_run_asks_no_host_cpu_so_needs_a_signature(firmware: Any) -> None:
    fd = firmware("OVMF.amdsev.fd")
    result = run_cli(["launch", "--dry-run", "--tech", "snp", "--firmware", str(fd)])
    assert result.exit_code == 2
    assert "give --vcpu-type or --vcpu-sig" in result.stderr


@pytest.mark.usefixtures("no_kvm")
@pytest.mark.parametrize("tech", ["snp", "tdx"])
def test_a_confidential_launch_needs_firmware(tech: str) -> None:
    result = run_cli(["launch", "--example", "--dry-run", "--tech", tech])
    assert result.exit_code == 2
    assert f"{tech.upper()} guests start in their firmware: give --firmware" in result.stderr
    assert "not implemented" not in result.stderr


def reference_mrtd(regions: list[tuple[int, bytes, bool]]) -> bytes:
    """MRTD from the TDX module spec's prose: one SHA-384 over, per page, the 128-byte
    TDH.MEM.PAGE.ADD buffer ("MEM.PAGE.ADD", GPA at byte 16) and, for measured pages, per
    256-byte chunk the TDH.MR.EXTEND buffer ("MR.EXTEND", GPA at byte 16) then the chunk."""
    h = hashlib.sha384()
    for gpa, contents, measured in regions:
        for off in range(0, len(contents), 4096):
            h.update(
                b"MEM.PAGE.ADD".ljust(16, b"\0") + (gpa + off).to_bytes(8, "little") + bytes(104)
            )
            if measured:
                for c in range(off, off + 4096, 256):
                    h.update(b"MR.EXTEND".ljust(16, b"\0") + (gpa + c).to_bytes(8, "little"))
                    h.update(bytes(104) + contents[c : c + 256])
    return h.digest()


@pytest.mark.usefixtures("no_kvm")
@pytest.mark.parametrize("name", ["OVMF.inteltdx.ms.fd", "OVMF.generic.fd"])
def test_tdx_dry_run_prints_the_mrtd_measure_tdx_prints(firmware: Any, name: str) -> None:
    fd = firmware(name)
    result = run_cli(["launch", "--dry-run", "--tech", "tdx", "--firmware", str(fd)])
    assert result.exit_code == 0, result.output
    predicted = run_cli(["measure", "tdx", "--firmware", str(fd)])
    assert predicted.exit_code == 0, predicted.output
    assert f"predicted MRTD: {predicted.stdout.strip()}" in result.stdout.splitlines()
    assert "TD HOB at 0x809000 (every vCPU's RCX)" in result.stdout
    image = parse_ovmf(fd.read_bytes(), name=name)
    regions = tdvf_plan(image).regions
    expected = reference_mrtd([(r.gpa, r.contents(), r.measured) for r in regions])
    assert predicted.stdout.strip() == expected.hex()
