"""How a failed run of ``cvmlaunch`` ends: one line on stderr and an exit code (the rules
are :mod:`cvmlaunch.cli`'s Rule 2).

Rule: imported only when a run fails (:meth:`cvmlaunch.cli.CvmLaunchGroup.main`), so that a
run that succeeds never loads it; each function returns the exit code it decided.
"""

from __future__ import annotations

import contextlib
import os
import sys

import click

from cvmlaunch.errors import ConfigError, CvmLaunchError

__all__ = ["error", "failed", "output_failed", "pipe_closed"]


def error(message: str) -> None:
    """Print ``cvmlaunch: error: MESSAGE`` on stderr, after what stdout holds."""
    with contextlib.suppress(OSError, ValueError, AttributeError):  # stdout may be the problem
        sys.stdout.flush()
    print(f"cvmlaunch: error: {message}", file=sys.stderr)


def failed(
    exc: click.ClickException | CvmLaunchError, command: click.Command | None, debug: bool
) -> int:
    """Report the error ``exc`` of ``command`` (a ConfigError names its setting by the
    command's flag, :func:`cvmlaunch.cli.flag_for`); the traceback first with ``debug``."""
    if debug:
        _print_traceback()
    if isinstance(exc, click.ClickException):
        error(_click_message(exc))
        return exc.exit_code
    code = exc.exit_code
    if isinstance(exc, ConfigError):
        from cvmlaunch.cli import flag_for

        exc = exc.spelled(lambda setting: flag_for(command, setting))
    error(str(exc))
    return code


def pipe_closed() -> int:
    """A reader closed the pipe early (``cvmlaunch log show LOG | head``): end quietly, 1."""
    _silence_stdout()
    return 1


def output_failed(exc: OSError, debug: bool) -> int | None:
    """Report a failed write to standard output (exit 2); None when ``exc`` is something else
    (a bug: the caller re-raises it, with its traceback)."""
    if not _stdout_failed(exc):
        return None
    _silence_stdout()
    if debug:
        _print_traceback()
    error(f"cannot write standard output: {exc.strerror or exc}")
    return 2


def _click_message(exc: click.ClickException) -> str:
    """click's message for ``exc``, with where to find help for a usage error."""
    message = exc.format_message()
    if isinstance(exc, click.UsageError) and exc.ctx is not None:
        message += f" (see '{exc.ctx.command_path} --help')"
    return message


def _stdout_failed(exc: OSError) -> bool:
    """Whether ``exc`` is a failed write to standard output (``> /dev/full``, an I/O error
    on the terminal or the file): an OSError with no file name (the library turns every
    OSError of a file it names into a CvmLaunchError) and a write's errno."""
    import errno

    writes = {errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EFBIG, errno.EBADF}
    return exc.filename is None and exc.errno in writes


def _print_traceback() -> None:
    import traceback

    traceback.print_exc()


def _silence_stdout() -> None:
    """Point stdout at /dev/null: Python flushes it again at exit, which would raise again."""
    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError):  # not a file (click's test runner): nothing flushes it
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)
