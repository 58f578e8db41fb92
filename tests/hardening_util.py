"""Helpers of the hardening tests: directory snapshots, a deadline for calls that hang, and
twins of /dev devices made inside a test's own directory."""

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


def dev_twin(directory: Path, name: str, filename: str | None = None) -> Path:
    """A character device node in ``directory`` with the same device number as ``/dev/<name>``
    (``null``, ``zero``, ``full``): it behaves as the real device, but a defect that replaced
    the output path would replace this node, never the machine's ``/dev/<name>``. Without the
    right to make device nodes (no CAP_MKNOD) nothing can replace a node in ``/dev`` either, so
    the real path is returned; a process that could write ``/dev`` but not make nodes fails."""
    real = os.stat(f"/dev/{name}")
    assert stat.S_ISCHR(real.st_mode), f"/dev/{name} is not a character device"
    twin = directory / (filename or f"dev-{name}")
    try:
        os.mknod(twin, stat.S_IFCHR | 0o666, real.st_rdev)
    except PermissionError:
        assert not os.access("/dev", os.W_OK), "cannot make a device twin, yet /dev is writable"
        return Path(f"/dev/{name}")
    return twin


def within(seconds: float, call: Callable[[], T]) -> T:
    """``call()``, failing with :class:`Hung` after ``seconds``."""
    with deadline(seconds):
        return call()
