"""Output helpers for the CLI: atomic file writes and digest formatting."""

from __future__ import annotations

import base64
import contextlib
import os
import tempfile
from pathlib import Path

from cvmlaunch.errors import ImageError

__all__ = ["format_digest", "write_atomic"]


def write_atomic(path: str | os.PathLike[str], data: bytes | str, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one.

    Writes a temporary file in the same directory, fsyncs it and renames it over ``path``.

    Raises:
        ImageError: the file cannot be written (a missing or read-only directory, a
            directory in the way, a full disk).
    """
    target = Path(path)
    payload = data.encode() if isinstance(data, str) else data
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=".tmp", dir=target.parent or "."
        )
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if isinstance(exc, OSError):
            raise ImageError(
                f"cannot write: {exc.strerror or exc}", source=os.fspath(path)
            ) from exc
        raise


def format_digest(digest: bytes, output_format: str) -> str:
    """Format a digest as ``hex`` or ``base64`` (JSON output is built by each command)."""
    if output_format == "base64":
        return base64.b64encode(digest).decode()
    return digest.hex()
