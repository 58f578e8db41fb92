"""The input edge: open files for the pure layers without reading them whole.

Rule: parsing and measurement take buffers. This module turns paths into buffers (read-only
mmaps, or bytes for small and empty files) and streams digests, so a 256 MiB initrd is hashed
in chunks and never copied. Errors become :class:`~cvmlaunch.errors.ImageError` naming the file.

Start-up time: paths are plain ``os`` paths (no :mod:`pathlib`, which drags in ``urllib``), and
:mod:`base64` is imported only to decode a base64 blob.
"""

from __future__ import annotations

import contextlib
import hashlib
import mmap
import os
import stat
from collections.abc import Iterator

from cvmlaunch.errors import ImageError

__all__ = ["file_digest", "map_file", "read_blob", "read_small"]

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
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):  # open() takes a directory; mmap would say EINVAL
            raise ImageError("cannot open: Is a directory", source=name)
        size = st.st_size
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
        with open(name, "rb") as f:
            return hashlib.file_digest(f, algorithm).digest()
    except OSError as exc:
        raise ImageError(f"cannot read: {exc.strerror}", source=name) from exc


def read_small(path: str | os.PathLike[str], what: str, limit: int = 1 << 20) -> bytes:
    """Read a small input file whole (a key, an ID block), refusing anything over ``limit``.

    Raises:
        ImageError: the file cannot be read or is larger than ``limit`` bytes.
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise ImageError(f"cannot read {what}: {exc.strerror}", source=name) from exc
    if len(data) > limit:
        raise ImageError(f"too large for {what}", source=name)
    return data


def read_blob(path: str | os.PathLike[str], size: int, what: str) -> bytes:
    """A fixed-size blob stored raw (exactly ``size`` bytes) or as base64 text decoding to
    ``size`` bytes (the form QEMU's command line takes, e.g. ``id-block=``/``id-auth=``).

    Raises:
        ImageError: the file cannot be read, or is neither form.
    """
    data = read_small(path, what)
    if len(data) == size:
        return data
    import base64
    import binascii

    try:
        decoded = base64.b64decode(b"".join(data.split()), validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if len(decoded) == size:
        return decoded
    raise ImageError(
        f"{what}: {len(data)} bytes; expected {size} raw bytes or their base64",
        source=os.fspath(path),
    )
