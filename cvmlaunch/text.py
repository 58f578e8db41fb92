"""Text from untrusted input, made safe to print: one helper for every printer.

Rule: anything printed that came from an input (a file name, a provenance name from a log, a
bzImage version string, a section name) goes through :func:`printable` (error messages do so
in :class:`~cvmlaunch.errors.CvmLaunchError`), so an input cannot move the cursor, recolour
the terminal, split one error line into two (``...\\ncvmlaunch: OK``) or make a strict UTF-8
stream raise.

What is escaped, as Python writes it in a string literal: C0 controls and DEL (``\\n``,
``\\t``, ``\\r``, ``\\x1b``...), C1 controls (``\\x9b`` is a one-byte CSI on some
terminals), the Unicode line and paragraph separators, the bidirectional embeddings,
overrides and isolates (they reorder what follows on the line), and surrogates (a byte
of a non-UTF-8 file name, decoded with ``surrogateescape``, is shown as that byte:
``\\xff``). Everything else, backslashes included, is left as it is.

This module imports nothing (it is imported by :mod:`cvmlaunch.errors`).
"""

from __future__ import annotations

__all__ = ["printable"]

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
#: Format characters that change how the rest of a line is shown (Trojan Source).
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _escape(ch: str) -> str:
    code = ord(ch)
    if ch in _NAMED:
        return _NAMED[ch]
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: the raw byte
        return f"\\x{code - 0xDC00:02x}"
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def _unsafe(ch: str) -> bool:
    code = ord(ch)
    return (
        code < 0x20
        or 0x7F <= code <= 0x9F
        or code in (0x2028, 0x2029)
        or 0xD800 <= code <= 0xDFFF
        or ch in _BIDI
    )


def printable(text: str) -> str:
    """``text`` with every character that could change the terminal escaped (see the module
    doc); ordinary text, including non-ASCII letters, is returned unchanged."""
    if text.isascii() and text.isprintable():  # the common case, one C-level pass
        return text
    return "".join(_escape(ch) if _unsafe(ch) else ch for ch in text)
