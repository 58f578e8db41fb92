"""Run the ``cvmlaunch`` CLI in-process and capture what it prints and its exit code."""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from cvmlaunch.cli import main

__all__ = ["CliResult", "run_cli"]


@dataclass(frozen=True)
class CliResult:
    """What one run printed and how it ended."""

    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        """stdout, then stderr (what a terminal would show, for one-stream commands)."""
        return self.stdout + self.stderr


def run_cli(args: Sequence[str], *, input: str | bytes | None = None) -> CliResult:
    """Run ``cvmlaunch ARGS`` in this process. Exceptions other than ``SystemExit`` (bugs:
    the CLI maps every CvmLaunchError to an exit code) propagate to the test."""
    out, err = io.BytesIO(), io.BytesIO()
    stdout = io.TextIOWrapper(out, encoding="utf-8", write_through=True)
    stderr = io.TextIOWrapper(err, encoding="utf-8", write_through=True)
    data = input.encode() if isinstance(input, str) else (input or b"")
    stdin = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8")
    code: int
    with (
        contextlib.redirect_stdout(stdout),
        contextlib.redirect_stderr(stderr),
        _replace_stdin(stdin),
    ):
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if isinstance(exc.code, str):
                print(exc.code, file=sys.stderr)
    return CliResult(code, out.getvalue().decode(), err.getvalue().decode())


@contextlib.contextmanager
def _replace_stdin(stdin: io.TextIOWrapper) -> Iterator[None]:
    saved = sys.stdin
    sys.stdin = stdin
    try:
        yield
    finally:
        sys.stdin = saved
