"""The input edge: open files for the pure layers without reading them whole.

Rule: parsing and measurement take buffers. This module turns paths into buffers (read-only
mmaps, or bytes for small and empty files) and streams digests, so a 256 MiB initrd is hashed
in chunks and never copied. Errors become :class:`~cvmlaunch.errors.ImageError` naming the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import mmap
import os
from collections.abc import Iterator
from pathlib import Path

from cvmlaunch.errors import ImageError

__all__ = ["file_digest", "map_file"]

_CHUNK = 1 << 20


@contextlib.contextmanager
def map_file(path: str | os.PathLike[str]) -> Iterator[memoryview]:
    """Map ``path`` read-only and yield a memoryview of it (empty files yield an empty view).

    The view is released when the context exits; do not keep slices of it beyond that.

    Raises:
        ImageError: the file cannot be opened or mapped.
    """
    name = os.fspath(path)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise ImageError(f"cannot open: {exc.strerror}", source=name) from exc
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            yield memoryview(b"")
            return
        try:
            mapping = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
        except (OSError, ValueError) as exc:
            raise ImageError(f"cannot map: {exc}", source=name) from exc
    finally:
        os.close(fd)
    view = memoryview(mapping)
    try:
        yield view
    finally:
        view.release()
        with contextlib.suppress(BufferError):
            mapping.close()


def file_digest(path: str | os.PathLike[str], algorithm: str = "sha256") -> bytes:
    """Stream ``path`` through ``algorithm`` (any hashlib name) in 1 MiB chunks.

    Raises:
        ImageError: the file cannot be read.
    """
    name = os.fspath(path)
    try:
        with Path(name).open("rb") as f:
            return hashlib.file_digest(f, algorithm).digest()
    except OSError as exc:
        raise ImageError(f"cannot read: {exc.strerror}", source=name) from exc
