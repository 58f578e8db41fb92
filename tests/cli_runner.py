"""Run the ``cvmlaunch`` CLI in-process through :class:`click.testing.CliRunner`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from click.testing import CliRunner

from cvmlaunch.cli import CLI

__all__ = ["CliResult", "run_cli"]


@dataclass(frozen=True)
class CliResult:
    """What one run printed and how it ended."""

    exit_code: int
    stdout: str
    stderr: str
    #: stdout and stderr interleaved as written (what a terminal would show)
    output: str


def run_cli(
    args: Sequence[str],
    *,
    input: str | bytes | None = None,
    env: Mapping[str, str | None] | None = None,
) -> CliResult:
    """Run ``cvmlaunch ARGS`` in this process (stdin ``input``, extra environment ``env``).

    Exceptions other than ``SystemExit`` (bugs: the CLI maps every CvmLaunchError to an exit
    code) propagate to the test."""
    result = CliRunner().invoke(
        CLI, list(args), input=input, env=env, catch_exceptions=False, prog_name="cvmlaunch"
    )
    return CliResult(result.exit_code, result.stdout, result.stderr, result.output)
