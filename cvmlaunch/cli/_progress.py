"""A progress bar on standard error for long library steps (the launch's populate).

Rule 1: rendering only: the library reports progress through a callback
(:class:`cvmlaunch.launcher.ProgressFactory`); :class:`LazyProgress` is the CLI's.
"""

from __future__ import annotations

import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TextIO

__all__ = ["BAR_WIDTH", "PROGRESS_DELAY", "LazyProgress"]

#: A populate shorter than this shows no progress bar.
PROGRESS_DELAY = 0.5
#: The progress bar's width in columns (fewer on a narrow terminal).
BAR_WIDTH = 36


class LazyProgress:
    """A progress bar on stderr that appears only once a populate takes a while.

    On a terminal the bar is redrawn in place (only when the line changes) and ended with a
    newline by :meth:`close`; elsewhere (a pipe, a log file) the label is printed once.
    Standard error is looked up when the bar appears, not when this module is imported.
    """

    def __init__(self, total: int, label: str) -> None:
        self.total = total
        self.label = label
        self.start = time.monotonic()
        self.done = 0
        self.stream: TextIO | None = None
        self.terminal = False
        self.line = ""

    def __call__(self, done: int) -> None:
        self.done = done
        if self.stream is None:
            if time.monotonic() - self.start < PROGRESS_DELAY:
                return
            self.stream = sys.stderr
            self.terminal = self.stream.isatty()
            if not self.terminal:
                print(self.label, file=self.stream, flush=True)
        if self.terminal:
            self._draw(self.stream)

    def _draw(self, stream: TextIO) -> None:
        fraction = min(self.done / self.total, 1.0) if self.total > 0 else 1.0
        try:
            columns = os.get_terminal_size(stream.fileno()).columns
        except (OSError, ValueError):
            columns = 80
        # label, two spaces, [bar], two spaces, "100%", one column spare
        width = max(10, min(BAR_WIDTH, columns - len(self.label) - 11))
        filled = int(fraction * width)
        line = f"{self.label}  [{'#' * filled}{'-' * (width - filled)}]  {int(fraction * 100):3d}%"
        if line != self.line:
            self.line = line
            stream.write("\r" + line)
            stream.flush()

    def close(self) -> None:
        """End the bar's line (on a terminal, once the bar has appeared)."""
        if self.stream is not None and self.terminal:
            self.stream.write("\n")
            self.stream.flush()
