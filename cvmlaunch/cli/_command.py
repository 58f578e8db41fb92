"""What a ``cvmlaunch`` command is, and the argument types the commands share.

A command module defines one :class:`Command` per command: a function that adds its arguments
to an :class:`argparse.ArgumentParser`, and a function that runs it with the parsed arguments.
Commands are listed by name in :data:`cvmlaunch.cli.COMMANDS` and imported only when they are
the one being run (start-up time: ``cvmlaunch measure snp`` must not import the launcher).

The CLI is built on :mod:`argparse` (standard library; a few ms to import, where a CLI
framework costs 10-20 ms, which would dominate a 50 ms ``measure snp``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

TYPE_CHECKING = False  # typing is not imported at run time (start-up time)
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "Command",
    "Formatter",
    "any_int",
    "options",
]


@dataclass(frozen=True, slots=True)
class Command:
    """One command: its help text, how to declare its arguments, and how to run it.

    Attributes:
        description: the help text; its first line is the one-line summary listed by the
            group (and repeated in :data:`cvmlaunch.cli.COMMANDS`, checked by a test).
        configure: adds the command's arguments to its parser.
        run: runs the command. Returns the exit code (``None`` means 0); raises
            :class:`~cvmlaunch.errors.CvmLaunchError` for bad input or a failed check.
        epilog: text shown after the arguments in ``--help`` (examples).
    """

    description: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int | None]
    epilog: str = ""

    @property
    def summary(self) -> str:
        """The first line of the description."""
        return self.description.strip().splitlines()[0]


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Help layout: descriptions keep their paragraphs; text wraps at the terminal's width, at
    most 100 columns. (argparse makes a formatter for every ``add_argument``; the default one
    imports :mod:`shutil` for the width, ~3 ms of start-up.)"""

    def __init__(self, prog: str) -> None:
        try:
            columns = os.get_terminal_size(sys.stdout.fileno()).columns - 2
        except (OSError, ValueError):  # not a terminal
            columns = 100
        super().__init__(prog, max_help_position=32, width=min(100, columns))


def any_int(text: str) -> int:
    """An integer in any Python base (``0x1``, ``0o7``, ``42``), like sev-snp-measure's."""
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an integer (decimal, 0x hex, 0o octal)"
        ) from None


def options(args: argparse.Namespace) -> dict[str, Any]:
    """The command's own options from parsed arguments, by ``dest`` (the global options and
    the framework's entries start with ``_`` and are left out)."""
    return {k: v for k, v in vars(args).items() if not k.startswith("_")}
