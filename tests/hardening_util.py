"""Helpers of the hardening tests: directory snapshots and a deadline for calls that hang."""

from __future__ import annotations

import hashlib
import os
import signal
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

#: path -> (type and mode, inode, link target or SHA-256 of the contents)
Snapshot = dict[str, tuple[int, int, str]]


def snapshot(directory: Path) -> Snapshot:
    """Everything in ``directory`` (recursively, symlinks not followed): mode, inode and
    contents, so a test can assert that a failed run changed no file."""
    out: Snapshot = {}
    for root, dirs, files in os.walk(directory):
        for name in dirs + files:
            p = os.path.join(root, name)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                what = "-> " + os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                what = hashlib.sha256(Path(p).read_bytes()).hexdigest()
            else:
                what = ""
            out[os.path.relpath(p, directory)] = (st.st_mode, st.st_ino, what)
    return out


class Hung(Exception):
    """A call did not return before its deadline."""


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise :class:`Hung` in the main thread if the block runs longer than ``seconds``
    (a call that would block forever, e.g. opening a FIFO, fails the test instead)."""

    def expire(signum: int, frame: object) -> None:
        raise Hung(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def within(seconds: float, call: Callable[[], T]) -> T:
    """``call()``, failing with :class:`Hung` after ``seconds``."""
    with deadline(seconds):
        return call()
