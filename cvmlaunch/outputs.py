"""The output edge: every file a run writes, written so that nothing is lost.

Rule 1: :func:`write_outputs` validates every output of a run first, then writes
them as a group. A regular file (or a new one) is replaced atomically: a temporary file in
the same directory is written, fsynced and renamed over it, so a reader sees the old file or
the whole new one, and a run that fails changes no file. A symlink is followed to the file it
names (the link stays a link); a symlink to a missing file is refused, as nothing should be
created at a place the user did not name. A character device (``/dev/null``, a terminal) or a
FIFO is written through, never replaced; ``-`` means standard output. A directory, a block
device, a socket, an output that is one of the run's inputs (same device and inode), or two
outputs naming one file are refused. Every refusal is an
:class:`~cvmlaunch.errors.ImageError` naming the path (exit 2).

Start-up time: :mod:`base64` and :mod:`tempfile` are imported only when used.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cvmlaunch.errors import ImageError
from cvmlaunch.files import STDIO, file_kind, path_name, same_file

__all__ = ["Output", "check_outputs", "write_output", "write_outputs"]


@dataclass(frozen=True, slots=True)
class Output:
    """One output of a run.

    Attributes:
        path: where to write: a file path, or ``-`` for standard output.
        data: the bytes (or text, written as UTF-8).
        mode: the permission bits of a file this write creates or replaces.
        replace: whether an existing file may be replaced; if false, an existing file (or
            anything else at ``path``) is refused (a key never silently replaced).
        what: what the output is, for messages (``"--log"``, ``"ID block"``).
    """

    path: str
    data: bytes | str
    mode: int = 0o644
    replace: bool = True
    what: str = "output"

    @property
    def payload(self) -> bytes:
        """The bytes to write."""
        return self.data.encode() if isinstance(self.data, str) else self.data


@dataclass(slots=True)
class _Plan:
    """How one output will be written, decided before anything is written."""

    out: Output
    through: bool  # write through (stdout, a character device, a FIFO) instead of replacing
    target: str  # the file to replace (a symlink resolved), or the path to write through
    existed: bool  # a regular file is there now (to restore if the group fails)
    tmp: str | None = None
    backup: str | None = None
    placed: bool = False


def _plan(out: Output) -> tuple[_Plan, os.stat_result | None]:
    """Decide how ``out`` is written; return the plan and the target's stat (if it exists)."""
    name = path_name(out.path)
    if name == STDIO:
        return _Plan(out, True, STDIO, False), None
    try:
        link = os.lstat(name)
    except FileNotFoundError:
        link = None
    except OSError as exc:
        raise ImageError(f"cannot write: {exc.strerror}", source=name) from exc
    if link is None:
        return _Plan(out, False, name, False), None
    try:
        st = os.stat(name)  # follows symlinks
    except FileNotFoundError:
        raise ImageError(
            "a symlink to a missing file; refusing to create the file it names", source=name
        ) from None
    except OSError as exc:
        raise ImageError(f"cannot write: {exc.strerror}", source=name) from exc
    if not out.replace:
        raise ImageError("already exists; refusing to replace it", source=name)
    mode = st.st_mode
    if stat.S_ISREG(mode):
        target = os.path.realpath(name) if stat.S_ISLNK(link.st_mode) else name
        if _through_fd_link(name):  # /dev/stdout, /dev/fd/N, /proc/self/fd/N
            return _Plan(out, True, name, True), st
        return _Plan(out, False, target, True), st
    if stat.S_ISCHR(mode) or stat.S_ISFIFO(mode):
        return _Plan(out, True, name, False), st
    if stat.S_ISDIR(mode):  # in the words of EISDIR, as every command's --log said
        raise ImageError("cannot write: Is a directory", source=name)
    raise ImageError(f"{file_kind(mode)}; cannot write {out.what} there", source=name)


def _through_fd_link(name: str) -> bool:
    """Whether resolving ``name`` passes through an open descriptor's link (``/dev/fd/N``,
    ``/proc/*/fd/N``): the file is someone's open descriptor, so it is written through, not
    replaced (a shell's ``>`` redirection keeps writing the old file)."""
    seen = 0
    current = os.path.abspath(name)
    while seen < 40:
        head = os.path.dirname(current)
        if head in ("/dev/fd", "/proc/self/fd") or (
            head.startswith("/proc/") and head.endswith("/fd")
        ):
            return True
        try:
            nxt = os.readlink(current)
        except OSError:
            return False
        current = os.path.normpath(os.path.join(os.path.dirname(current), nxt))
        seen += 1
    return False  # pragma: no cover - a loop: os.stat above would have failed


def _write_through(plan: _Plan) -> None:
    data = plan.out.payload
    if plan.target == STDIO:
        stdout = sys.stdout
        if stdout is None:
            raise ImageError("standard output is closed", source=STDIO)
        try:
            stdout.flush()
            stdout.buffer.write(data)
            stdout.buffer.flush()
        except BrokenPipeError:
            raise
        except (OSError, ValueError) as exc:
            text = exc.strerror if isinstance(exc, OSError) else "closed"
            raise ImageError(f"cannot write standard output: {text}", source=STDIO) from exc
        return
    try:
        # O_NONBLOCK: a FIFO without a reader fails at once (ENXIO) instead of waiting.
        fd = os.open(
            plan.target, os.O_WRONLY | os.O_APPEND | os.O_NOCTTY | os.O_CLOEXEC | os.O_NONBLOCK
        )
    except OSError as exc:
        if exc.errno == 6:  # ENXIO
            raise ImageError("a FIFO with no reader", source=plan.target) from exc
        raise ImageError(f"cannot write: {exc.strerror}", source=plan.target) from exc
    try:
        os.set_blocking(fd, True)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except OSError as exc:
        raise ImageError(f"cannot write: {exc.strerror}", source=plan.target) from exc
    finally:
        os.close(fd)


def _tempfile(directory: str, mode: int, data: bytes | None) -> str:
    """A new file in ``directory`` with a short name (the target's own name may already be
    255 bytes long), holding ``data`` fsynced, with ``mode``; return its path."""
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=".cvmlaunch-", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, mode)
        if data is not None:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.close(fd)
    return tmp


def check_outputs(outputs: Sequence[Output], *, inputs: Iterable[str] = ()) -> None:
    """Check every output as :func:`write_outputs` would, and write nothing: for a command
    that runs long (a launch) before its outputs exist, so a bad ``--log`` fails first.

    Raises:
        ImageError: an output refused (see the module doc).
    """
    _plans(outputs, inputs)


def _plans(outputs: Sequence[Output], inputs: Iterable[str]) -> list[_Plan]:
    plans: list[_Plan] = []
    seen: list[tuple[os.stat_result, str]] = []
    for path in inputs:
        if path == STDIO or path == "":
            continue
        with contextlib.suppress(OSError):
            seen.append((os.stat(path), path))
    targets: set[str] = set()
    for out in outputs:
        plan, st = _plan(out)
        if st is not None:
            for other, other_name in seen:
                if same_file(st, other):
                    raise ImageError(
                        f"is the same file as {other_name}; refusing to write {out.what} "
                        "over an input",
                        source=out.path,
                    )
            seen.append((st, out.path))
        key = os.path.realpath(plan.target) if plan.target != STDIO else STDIO
        if key in targets:
            raise ImageError(f"named twice as an output ({out.what})", source=out.path)
        targets.add(key)
        plans.append(plan)
    for p in plans:
        if not p.through:
            directory = os.path.dirname(p.target) or "."
            if not os.path.isdir(directory):
                raise ImageError("cannot write: No such file or directory", source=p.out.path)
    return plans


def write_outputs(outputs: Sequence[Output], *, inputs: Iterable[str] = ()) -> None:
    """Write every output of a run, as a group: all land or none does.

    First every output is checked (see the module doc): a refusal writes nothing. Then each
    file to replace is written to a temporary file beside it; then outputs written through
    (standard output, a device, a FIFO) are written; then the temporary files are renamed
    into place. If a rename fails, the files already renamed are restored (an existing file
    from a hard-linked backup, a new one removed) and every temporary file is removed.

    Args:
        outputs: the run's outputs.
        inputs: the run's input paths (``-`` and missing paths are skipped): an output that
            is one of them (same device and inode) is refused.

    Raises:
        ImageError: an output refused, or one that cannot be written (the message names it).
    """
    plans = _plans(outputs, inputs)
    files = [p for p in plans if not p.through]
    try:
        for p in files:
            directory = os.path.dirname(p.target) or "."
            try:
                p.tmp = _tempfile(directory, p.out.mode, p.out.payload)
            except OSError as exc:
                raise ImageError(f"cannot write: {exc.strerror}", source=p.out.path) from exc
        for p in plans:
            if p.through:
                _write_through(p)
        for p in files:
            _place(p, group=len(files) > 1)
    except BaseException:
        for p in reversed(files):
            _undo(p)
        raise
    for p in files:
        if p.backup is not None:
            with contextlib.suppress(OSError):
                os.unlink(p.backup)


def _place(p: _Plan, *, group: bool) -> None:
    """Rename ``p``'s temporary file over its target (keeping a backup link of an existing
    file when other outputs follow, to restore it if one of them fails)."""
    assert p.tmp is not None
    try:
        if not p.out.replace:
            os.link(p.tmp, p.target)  # fails if anything appeared there meanwhile
            os.unlink(p.tmp)
        else:
            if group and p.existed:
                p.backup = _backup(p.target)
            os.replace(p.tmp, p.target)
        p.tmp = None
        p.placed = True
    except OSError as exc:
        if isinstance(exc, FileExistsError):
            raise ImageError("already exists; refusing to replace it", source=p.out.path) from exc
        raise ImageError(f"cannot write: {exc.strerror}", source=p.out.path) from exc


def _backup(target: str) -> str | None:
    """A hard link to ``target`` under a new name beside it, or None where links fail."""
    name = _tempfile(os.path.dirname(target) or ".", 0o600, None)
    try:
        os.unlink(name)
        os.link(target, name)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(name)
        return None
    return name


def _undo(p: _Plan) -> None:
    """Remove ``p``'s temporary file; if it was placed, put back what was there."""
    with contextlib.suppress(OSError):
        if p.tmp is not None:
            os.unlink(p.tmp)
    if not p.placed:
        if p.backup is not None:
            with contextlib.suppress(OSError):
                os.unlink(p.backup)
        return
    with contextlib.suppress(OSError):
        if p.backup is not None:
            os.replace(p.backup, p.target)
        elif not p.existed:
            os.unlink(p.target)


def write_output(
    path: str | os.PathLike[str],
    data: bytes | str,
    *,
    mode: int = 0o644,
    what: str = "output",
    inputs: Iterable[str] = (),
) -> None:
    """Write one output (see :func:`write_outputs`).

    Raises:
        ImageError: the output is refused or cannot be written.
    """
    write_outputs([Output(os.fspath(path), data, mode=mode, what=what)], inputs=inputs)
