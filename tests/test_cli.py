"""The CLI's common behaviour: version, help, error mapping."""

from __future__ import annotations

import base64
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import click
import pytest

from cvmlaunch import __version__
from cvmlaunch.cli import COMMANDS, Registry, load_command
from tests.cli_runner import run_cli
from tests.gce_fake_ovmf import clean_example
from tests.vectors import snp_case


def test_version() -> None:
    result = run_cli(["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"cvmlaunch, version {__version__}\n"


def _command_paths(registry: Registry = COMMANDS) -> list[tuple[str, ...]]:
    """Every command and group of the registry, as the words that name it."""
    paths: list[tuple[str, ...]] = []
    for name, entry in registry.items():
        paths.append((name,))
        if not isinstance(entry, str):
            paths.extend((name, *rest) for rest in _command_paths(entry[1]))
    return paths


def _summary(path: tuple[str, ...]) -> str:
    """The one-line help of the command at ``path`` (a group's from the registry)."""
    entry: str | tuple[str, Registry] = ("", COMMANDS)
    for word in path:
        assert not isinstance(entry, str)
        entry = entry[1][word]
    if isinstance(entry, str):
        help_text = load_command(entry).help or ""
        return help_text.strip().splitlines()[0]
    return entry[0]


def test_help_on_every_command() -> None:
    top = run_cli(["--help"])
    assert top.exit_code == 0
    assert top.stdout.startswith("Usage: cvmlaunch ")
    for path in _command_paths():
        result = run_cli([*path, "--help"])
        assert result.exit_code == 0, path
        assert result.stdout.startswith(f"Usage: cvmlaunch {' '.join(path)} "), path
        assert _summary(path) in " ".join(result.stdout.split()), path
        assert result.stderr == "", path
    # the top level lists every command by its summary (wrapped)
    listed = " ".join(top.stdout.split())
    for name in COMMANDS:
        assert " ".join(_summary((name,)).split()[:4]) in listed, name


def test_registry_names_click_commands_by_their_names() -> None:
    """Each registry line imports a click command whose own name is the registered one."""
    for path in _command_paths():
        entry: str | tuple[str, Registry] = ("", COMMANDS)
        for word in path:
            assert not isinstance(entry, str)
            entry = entry[1][word]
        if isinstance(entry, str):
            command = load_command(entry)
            assert isinstance(command, click.Command), path
            assert command.name == path[-1], path


def test_help_options_and_short_help_agree_with_click() -> None:
    """-h is --help everywhere, as with argparse before."""
    assert run_cli(["measure", "snp", "-h"]).stdout == run_cli(["measure", "snp", "--help"]).stdout


def test_usage_errors_exit_2() -> None:
    for args in (
        [],
        ["no-such-command"],
        ["measure"],
        ["measure", "snp"],  # --ovmf is required
        ["measure", "snp", "--ovmf", "x", "--vcpus", "four"],
        ["measure", "snp", "--ovmf", "x", "--no-such-option"],
        ["inspect"],  # FILE is required
        ["measure", "tdx"],  # --firmware is required
        ["measure", "tdx", "--firmware", "x", "--output-format", "xml"],
        ["reference-values", "x.jsonl", "--format", "yaml"],
        ["log", "verify"],
        ["log", "diff", "a.jsonl"],
        ["log", "show", "a.jsonl", "b.jsonl"],
        ["id-block", "snp", "--version", "one"],
        ["id-block", "verify", "block.bin"],
    ):
        result = run_cli(args)
        assert result.exit_code == 2, args
        assert result.stdout == "", args
        assert len(result.stderr.splitlines()) == 1, args
        assert result.stderr.startswith("cvmlaunch: error: "), args


def test_usage_errors_name_the_problem_and_where_help_is() -> None:
    cases = {
        ("measure", "snp"): "Missing option '--ovmf' / '--firmware'. "
        "(see 'cvmlaunch measure snp --help')",
        ("measure", "snp", "--ovmf", "x", "--vcpus", "four"): "Invalid value for '--vcpus': "
        "'four' is not an integer (decimal, 0x hex, 0o octal) (see 'cvmlaunch measure snp --help')",
        ("no-such-command",): "No such command 'no-such-command'. (see 'cvmlaunch --help')",
        ("measure",): "Missing command. (see 'cvmlaunch measure --help')",
        ("measure", "tdx", "--firmware", "x", "--output-format", "xml"): "Invalid value for "
        "'--output-format' (env var: 'CVMLAUNCH_OUTPUT_FORMAT'): "
        "'xml' is not one of 'hex', 'base64', 'json'. "
        "(see 'cvmlaunch measure tdx --help')",
    }
    for args, message in cases.items():
        result = run_cli(args)
        assert (result.exit_code, result.stderr) == (2, f"cvmlaunch: error: {message}\n"), args


def test_missing_file_is_one_line_exit_2() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "cvmlaunch", "inspect", "/nonexistent/firmware.fd"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "cvmlaunch: error: /nonexistent/firmware.fd: cannot open: No such file or directory"
    ]
    assert "Traceback" not in proc.stderr


def test_debug_shows_traceback() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "cvmlaunch", "--debug", "inspect", "/nonexistent/firmware.fd"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["inspect", "{dir}"],
        ["log", "show", "{dir}"],
        ["reference-values", "{dir}"],
        ["id-block", "verify", "{dir}", "{dir}"],
        ["measure", "tdx", "--firmware", "{dir}"],
    ],
)
def test_a_directory_for_a_file_is_one_line_exit_2(tmp_path: Path, args: list[str]) -> None:
    """click refused directories for file arguments; the library's errors do it now."""
    result = run_cli([a.format(dir=tmp_path) for a in args])
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"cvmlaunch: error: {tmp_path}: ")
    assert "Is a directory" in lines[0]


def test_an_unwritable_log_is_one_line_exit_2(tmp_path: Path) -> None:
    firmware = tmp_path / "clean.fd"
    firmware.write_bytes(clean_example())
    for target in (tmp_path / "missing" / "td.jsonl", tmp_path):
        result = run_cli(["measure", "tdx", "--firmware", str(firmware), "--log", str(target)])
        assert result.exit_code == 2
        assert result.stderr.splitlines() == [
            f"cvmlaunch: error: {target}: cannot write: "
            + ("No such file or directory" if target != tmp_path else "Is a directory")
        ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clean.fd"]  # no temporary left


def test_a_closed_pipe_ends_quietly(firmware: Callable[[str], Path]) -> None:
    """`cvmlaunch ... | head`: the reader goes away. No traceback, nothing on stderr; the
    output that could not be written ends the run with exit 1 (help text too)."""
    ovmf = firmware("OVMF.amdsev.fd")
    cases = [
        (["--help"], 1),
        (["measure", "snp", "--help"], 1),
        (["measure", "snp", "--ovmf", str(ovmf), "--vcpus", "1", "--vcpu-type", "EPYC"], 1),
    ]
    for args, code in cases:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cvmlaunch", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None
        assert proc.stderr is not None
        proc.stdout.close()  # before the child writes: its output meets a closed pipe
        stderr = proc.stderr.read().decode()
        assert proc.wait() == code, (args, stderr)
        assert stderr == "", args


def test_ctrl_c_is_one_line_exit_130(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not click's ``Aborted!``: one line, and the shell's code for SIGINT."""
    from cvmlaunch.cli import _inspect

    def interrupted(*_args: object, **_kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(_inspect, "build_report", interrupted)
    result = run_cli(["inspect", __file__])
    assert result.exit_code == 130
    assert result.stderr == "cvmlaunch: interrupted\n"
    assert result.stdout == ""


# ------------------------------------------------------------ the installed console script


def _console_script() -> str:
    """The ``cvmlaunch`` script pip wrote beside this interpreter (the venv under test)."""
    script = Path(sys.executable).parent / "cvmlaunch"
    if not script.exists():  # pragma: no cover - every supported setup installs it
        pytest.fail(f"no console script at {script}: install the package (pip install -e .)")
    return str(script)


def _script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_console_script(), *args], capture_output=True, text=True, check=False, timeout=60
    )


def test_console_script_version_and_help() -> None:
    version = _script("--version")
    assert (version.returncode, version.stdout, version.stderr) == (
        0,
        f"cvmlaunch, version {__version__}\n",
        "",
    )
    helped = _script("measure", "snp", "--help")
    assert helped.returncode == 0
    assert helped.stdout.startswith("Usage: cvmlaunch measure snp [OPTIONS]")


def test_console_script_exit_codes(firmware: Callable[[str], Path]) -> None:
    ovmf = str(firmware("OVMF.amdsev.fd"))
    # snp-measure.md's worked trace (1 vCPU, EPYC-v4, OVMF.amdsev.fd)
    digest = snp_case("amdsev-1-epyc-v4").expected
    base = ["measure", "snp", "--ovmf", ovmf, "--vcpus", "1", "--vcpu-type", "EPYC-v4"]
    ok = _script(*base, "--expect", digest)
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, digest + "\n", "")
    mismatch = _script(*base, "--expect", "00" * 48)
    assert mismatch.returncode == 1
    assert mismatch.stdout == digest + "\n"
    assert mismatch.stderr.startswith("cvmlaunch: error: launch digest mismatch")
    assert len(mismatch.stderr.splitlines()) == 1
    usage = _script("measure", "snp", "--ovmf", ovmf, "--no-such-option")
    assert (usage.returncode, usage.stdout) == (2, "")
    assert usage.stderr == (
        "cvmlaunch: error: No such option '--no-such-option'. "
        "(see 'cvmlaunch measure snp --help')\n"
    )
    bad = _script("measure", "snp", "--ovmf", "/nonexistent/OVMF.fd", *base[4:])
    assert (bad.returncode, bad.stdout) == (2, "")
    assert bad.stderr == (
        "cvmlaunch: error: /nonexistent/OVMF.fd: cannot open: No such file or directory\n"
    )
    debug = _script("--debug", "measure", "snp", "--ovmf", "/nonexistent/OVMF.fd", *base[4:])
    assert debug.returncode == 2  # the same code as without --debug
    assert debug.stderr.startswith("Traceback (most recent call last):")
    assert debug.stderr.splitlines()[-1] == (
        "cvmlaunch: error: /nonexistent/OVMF.fd: cannot open: No such file or directory"
    )


# ------------------------------------------------------------------ shell completion


def _complete(words: str, shell: str = "bash") -> list[str]:
    """What click's completion entry point offers for the command line ``words`` (the last
    word being completed), as the shell script it installs would ask."""
    env = {"_CVMLAUNCH_COMPLETE": f"{shell}_complete", "COMP_WORDS": words}
    if shell == "bash":
        env["COMP_CWORD"] = str(len(words.split()) - (0 if words.endswith(" ") else 1))
    elif shell == "fish":
        env["COMP_CWORD"] = words.split()[-1] if not words.endswith(" ") else ""
    elif shell == "zsh":
        env["COMP_CWORD"] = str(len(words.split()) - (0 if words.endswith(" ") else 1))
    result = run_cli([], env=env)
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()


def test_completion_of_vcpu_types_lists_the_table() -> None:
    from cvmlaunch.vcpu_signature import VCPU_TYPES

    got = _complete("cvmlaunch measure snp --vcpu-type EPYC-")
    expected = [f"plain,{name}" for name in VCPU_TYPES if name.startswith("EPYC-")]
    assert got == expected
    assert "plain,EPYC-Milan" in got
    assert "plain,EPYC-Genoa-v2" in got
    assert _complete("cvmlaunch measure snp --vcpu-type EPYC-Mil") == [
        f"plain,{name}" for name in VCPU_TYPES if name.startswith("EPYC-Mil")
    ]


def test_completion_of_choices_commands_and_files() -> None:
    assert _complete("cvmlaunch measure snp --mode snp:") == [
        "plain,snp:ovmf-hash",
        "plain,snp:svsm",
    ]
    assert _complete("cvmlaunch measure snp --vmm-type ") == [
        "plain,QEMU",
        "plain,ec2",
        "plain,gce",
    ]
    assert _complete("cvmlaunch measure tdx --output-format b") == ["plain,base64"]
    assert _complete("cvmlaunch me") == ["plain,measure"]
    assert _complete("cvmlaunch measure ") == ["plain,snp", "plain,tdx"]
    # file options hand completion to the shell's file names
    assert _complete("cvmlaunch measure snp --ovmf OV") == ["file,OV"]
    assert _complete("cvmlaunch id-block snp --out-dir d") == ["dir,d"]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_script_for_each_shell(shell: str) -> None:
    """``_CVMLAUNCH_COMPLETE={shell}_source cvmlaunch`` prints the script the README's
    one line evaluates."""
    result = run_cli([], env={"_CVMLAUNCH_COMPLETE": f"{shell}_source"})
    assert result.exit_code == 0
    assert "_CVMLAUNCH_COMPLETE" in result.stdout
    assert f"{shell}_complete" in result.stdout
    zsh = _complete("cvmlaunch measure snp --vcpu-type EPYC-Genoa", "zsh")
    assert zsh[:3] == ["plain", "EPYC-Genoa", "_"]
    fish = _complete("cvmlaunch measure snp --vcpu-type EPYC-Genoa", "fish")
    assert fish[0] == "plain,EPYC-Genoa"


# ------------------------------------------------------------------ environment defaults


def test_output_format_from_the_environment(firmware: Callable[[str], Path]) -> None:
    ovmf = str(firmware("OVMF.amdsev.fd"))
    args = ["measure", "snp", "--ovmf", ovmf, "--vcpus", "1", "--vcpu-type", "EPYC-v4"]
    hexed = run_cli(args).stdout.strip()
    as_b64 = run_cli(args, env={"CVMLAUNCH_OUTPUT_FORMAT": "base64"})
    assert as_b64.exit_code == 0
    assert base64.b64decode(as_b64.stdout.strip()).hex() == hexed
    flag_wins = run_cli([*args, "--output-format", "hex"], env={"CVMLAUNCH_OUTPUT_FORMAT": "json"})
    assert flag_wins.stdout.strip() == hexed
    bad = run_cli(args, env={"CVMLAUNCH_OUTPUT_FORMAT": "xml"})
    assert bad.exit_code == 2
    assert "CVMLAUNCH_OUTPUT_FORMAT" in bad.stderr
    assert "CVMLAUNCH_OUTPUT_FORMAT" in run_cli(["measure", "snp", "--help"]).stdout


def test_firmware_dir_from_the_environment(
    firmware: Callable[[str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative firmware name not found here is looked up in $CVMLAUNCH_FIRMWARE_DIR."""
    ovmf = firmware("OVMF.amdsev.fd")
    monkeypatch.chdir(tmp_path)
    args = ["measure", "snp", "--ovmf", ovmf.name, "--vcpus", "1", "--vcpu-type", "EPYC-v4"]
    missing = run_cli(args, env={"CVMLAUNCH_FIRMWARE_DIR": None})
    assert missing.exit_code == 2
    assert missing.stderr == (
        f"cvmlaunch: error: {ovmf.name}: cannot open: No such file or directory\n"
    )
    found = run_cli(args, env={"CVMLAUNCH_FIRMWARE_DIR": str(ovmf.parent)})
    assert found.exit_code == 0, found.output
    assert found.stdout == run_cli([*args[:3], str(ovmf), *args[4:]]).stdout
    by_flag = run_cli([*args, "--firmware-dir", str(ovmf.parent)])
    assert by_flag.stdout == found.stdout
    help_text = run_cli(["measure", "tdx", "--help"]).stdout
    assert "CVMLAUNCH_FIRMWARE_DIR" in help_text


@pytest.mark.parametrize("kernel_is_fifo", [False, True])
def test_ctrl_c_of_the_console_script_is_one_line_exit_130(
    tmp_path: Path, firmware: Callable[[str], Path], kernel_is_fifo: bool
) -> None:
    """A real SIGINT while ``measure snp`` waits for its initrd (a FIFO nobody writes), and
    while its own thread also waits on the kernel (hashed there: the Ctrl-C must not be kept
    as that file's error while the initrd's thread is joined forever)."""
    import errno
    import os
    import signal
    import time

    kernel = tmp_path / "kernel"
    if kernel_is_fifo:
        os.mkfifo(kernel)
    else:
        kernel.write_bytes(b"kernel")
    initrd = tmp_path / "initrd"
    os.mkfifo(initrd)
    ovmf = str(firmware("OVMF.amdsev.fd"))
    args = ["--ovmf", ovmf, "--vcpus", "1", "--vcpu-type", "EPYC-v4", "--kernel", str(kernel)]
    proc = subprocess.Popen(
        [_console_script(), "measure", "snp", *args, "--initrd", str(initrd)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # as an interactive shell starts it (a test runner may ignore SIGINT)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 30
    writers: list[int] = []
    try:
        for fifo in [initrd, kernel] if kernel_is_fifo else [initrd]:
            writer = -1
            while writer < 0:  # opening a FIFO's write end succeeds once the command reads it
                try:
                    writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                except OSError as exc:
                    if exc.errno != errno.ENXIO:  # ENXIO: no reader yet
                        raise
                    assert proc.poll() is None, proc.communicate()
                    assert time.monotonic() < deadline
                    time.sleep(0.01)
            writers.append(writer)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        for writer in writers:
            os.close(writer)
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert (proc.returncode, out, err) == (130, b"", b"cvmlaunch: interrupted\n")


def test_shared_option_groups_keep_their_flags_and_order() -> None:
    """An option group of cli._params lists its options in --help in the order declared, and
    the commands that share one take the same flags (help texts may differ per command)."""
    snp = load_command("cvmlaunch.cli._measure_snp:MEASURE_SNP")
    names = [p.name for p in snp.params]
    assert names[names.index("vcpus") : names.index("vcpus") + 7] == [
        "vcpus", "vcpu_type", "vcpu_sig", "vcpu_family", "vcpu_model", "vcpu_stepping",
        "vmm_type",
    ]  # fmt: skip
    assert names[-4:] == ["policy", "host_data", "id_block", "id_auth"]
    sets = load_command("cvmlaunch.cli._reference_set:REFERENCE_VALUES_SNP")
    boot = {p.name: p for p in snp.params if p.name in ("kernel", "initrd", "append")}
    for p in sets.params:
        if p.name in boot:
            assert (p.opts, p.help) == (boot[p.name].opts, boot[p.name].help)
    assert [p.name for p in sets.params if p.name in boot] == ["kernel", "initrd", "append"]
