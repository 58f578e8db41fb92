"""The CLI's common behaviour: version, help, error mapping."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from cvmlaunch import __version__
from cvmlaunch.cli import cli


def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_help_on_every_command() -> None:
    runner = CliRunner()
    for name in cli.list_commands(None):  # type: ignore[arg-type]
        result = runner.invoke(cli, [name, "--help"])
        assert result.exit_code == 0, name
        assert "Usage:" in result.output


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
