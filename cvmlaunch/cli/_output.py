"""Output helpers for the CLI: digest formatting (files are written by
:func:`cvmlaunch.outputs.write_outputs`)."""

from __future__ import annotations

import base64

__all__ = ["format_digest"]


def format_digest(digest: bytes, output_format: str) -> str:
    """Format a digest as ``hex`` or ``base64`` (JSON output is built by each command)."""
    if output_format == "base64":
        return base64.b64encode(digest).decode()
    return digest.hex()
