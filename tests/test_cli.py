"""The CLI's common behaviour: version, help, error mapping."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from cvmlaunch import __version__
from cvmlaunch.cli import COMMANDS, load_command
from tests.cli_runner import run_cli
from tests.gce_fake_ovmf import clean_example


def test_version() -> None:
    result = run_cli(["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"cvmlaunch, version {__version__}\n"


def _command_paths() -> list[tuple[str, ...]]:
    paths: list[tuple[str, ...]] = []
    for name, (_summary, body) in COMMANDS.items():
        paths.append((name,))
        if not isinstance(body, str):
            paths.extend((name, leaf) for leaf in body)
    return paths


def test_help_on_every_command() -> None:
    top = run_cli(["--help"])
    assert top.exit_code == 0
    assert top.stdout.startswith("usage: cvmlaunch ")
    for path in _command_paths():
        result = run_cli([*path, "--help"])
        assert result.exit_code == 0, path
        assert result.stdout.startswith(f"usage: cvmlaunch {' '.join(path)} "), path
        summary = COMMANDS[path[0]][0] if len(path) == 1 else COMMANDS[path[0]][1][path[1]][0]  # type: ignore[index]
        assert summary in " ".join(top.stdout.split() + result.stdout.split()), path


def test_registry_summaries_are_the_commands_own() -> None:
    """COMMANDS repeats each command's first help line (so --help lists commands without
    importing them): the two must agree."""
    for name, (_summary, body) in COMMANDS.items():
        if isinstance(body, str):
            assert load_command(body).summary == _summary, name
            continue
        for leaf, (summary, target) in body.items():
            assert load_command(target).summary == summary, (name, leaf)


def _command_targets() -> list[tuple[str, str]]:
    targets: list[tuple[str, str]] = []
    for name, (_summary, body) in COMMANDS.items():
        if isinstance(body, str):
            targets.append((name, body))
        else:
            targets.extend((f"{name} {leaf}", target) for leaf, (_s, target) in body.items())
    return targets


def test_no_command_imports_click() -> None:
    """argparse replaced click (10-20 ms of start-up): building any command's parser, which
    imports its module, loads no click."""
    code = (
        "import sys, cvmlaunch.cli as c\n"
        f"for name, target in {_command_targets()!r}: c.command_parser(name, target)\n"
        "print('click' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == "False\n"


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
        assert "error: " in result.stderr.splitlines()[-1], args


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
    """`cvmlaunch ... | head`: the reader goes away. No traceback; a command's own output ends
    with exit 1, as click did (argparse's help printer ignores the error itself: exit 0)."""
    ovmf = firmware("OVMF.amdsev.fd")
    cases = [
        (["--help"], 0),
        (["measure", "snp", "--help"], 0),
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
    from cvmlaunch import cli

    def interrupted(_args: list[str]) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_main", interrupted)
    result = run_cli(["inspect", "x"])
    assert result.exit_code == 130
    assert result.stderr == "cvmlaunch: interrupted\n"
    assert result.stdout == ""


def test_measure_snp_runs_without_importing_inspect(firmware: Callable[[str], Path]) -> None:
    """The CLI defers dataclasses' ``inspect`` import (gh-137855; ~6 ms of start-up): a
    ``measure snp`` never loads it, and a dataclass without a docstring still gets its
    signature as one, through the deferred module."""
    ovmf = firmware("OVMF.amdsev.fd")
    code = (
        "import sys\n"
        "from cvmlaunch.cli import main\n"
        "try:\n"
        f"    main(['measure', 'snp', '--ovmf', {str(ovmf)!r}, '--vcpus', '1', '--vcpu-type',"
        " 'EPYC-v4'])\n"
        "except SystemExit as done:\n"
        "    print(done.code, 'inspect' in sys.modules)\n"
        "import dataclasses\n"
        "@dataclasses.dataclass\n"
        "class A:\n"
        "    x: int\n"
        "print(A.__doc__, 'inspect' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # snp-measure.md's worked trace (1 vCPU, EPYC-v4, OVMF.amdsev.fd)
    digest = (
        "d74bd3ea40b240c3228edc5177ce6193561ebff633dbd0be"
        "76d6c143b876d65102425c0e2e8a930857c48daa5eacda58"
    )
    assert out.stdout.splitlines() == [digest, "0 False", "A(x: int) True"]
