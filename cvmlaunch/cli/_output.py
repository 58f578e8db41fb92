"""Output helpers for the CLI: atomic file writes and digest formatting."""

from __future__ import annotations

import base64
import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["format_digest", "write_atomic"]


def write_atomic(path: str | os.PathLike[str], data: bytes | str, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one.

    Writes a temporary file in the same directory, fsyncs it and renames it over ``path``.
    """
    target = Path(path)
    payload = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def format_digest(digest: bytes, output_format: str) -> str:
    """Format a digest as ``hex`` or ``base64`` (JSON output is built by each command)."""
    if output_format == "base64":
        return base64.b64encode(digest).decode()
    return digest.hex()
