"""The CLI's common behaviour: version, help, error mapping."""

from __future__ import annotations

import subprocess
import sys

from cvmlaunch import __version__
from cvmlaunch.cli import COMMANDS, load_command
from tests.cli_runner import run_cli


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


def test_usage_errors_exit_2() -> None:
    for args in (
        [],
        ["no-such-command"],
        ["measure"],
        ["measure", "snp"],  # --ovmf is required
        ["measure", "snp", "--ovmf", "x", "--vcpus", "four"],
        ["measure", "snp", "--ovmf", "x", "--no-such-option"],
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
