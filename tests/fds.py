"""The process's open file descriptors, for tests that check a run leaks none."""

from __future__ import annotations

import gc
import os

__all__ = ["leaked_fds", "open_fds"]


def open_fds() -> set[str]:
    """The fds open now, after a garbage collection: a file object another test dropped is
    closed here, not in the middle of the check."""
    gc.collect()
    return set(os.listdir("/proc/self/fd"))


def leaked_fds(before: set[str]) -> set[str]:
    """The fds open now that were not open at ``before`` (one closed meanwhile, e.g. by
    another test's daemon thread, is no leak)."""
    return open_fds() - before
