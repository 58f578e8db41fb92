"""Issue 15, items 9 and 13: text from inputs is escaped before it reaches a terminal, and
a lone surrogate (a non-UTF-8 file name) never makes a strict UTF-8 stream raise."""

from __future__ import annotations

import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from cvmlaunch.errors import ConfigError, ImageError, LogFormatError
from cvmlaunch.text import printable


def test_13_newline_in_a_source_cannot_split_an_error() -> None:
    e = ImageError("not a TDVF image", source="fw\ncvmlaunch: OK everything matched")
    assert str(e) == "fw\\ncvmlaunch: OK everything matched: not a TDVF image"
    assert e.source == "fw\ncvmlaunch: OK everything matched"  # the raw value is kept


def test_13_ansi_escape_in_a_message_is_shown_not_obeyed() -> None:
    e = LogFormatError("provenance name '\x1b[2J\x1b[31mOK\x1b[0m'")
    assert str(e) == "provenance name '\\x1b[2J\\x1b[31mOK\\x1b[0m'"


def test_13_c1_bidi_and_separators_escaped() -> None:
    assert printable("a\x9bb") == "a\\x9bb"  # a one-byte CSI on 8-bit terminals
    assert printable("x\u202ey") == "x\\u202ey"  # RIGHT-TO-LEFT OVERRIDE
    assert printable("x\u2028y") == "x\\u2028y"
    assert printable("tab\there\r") == "tab\\there\\r"


def test_9_surrogate_escaped_bytes_shown_as_bytes() -> None:
    name = b"fw-\xff\xfe.fd".decode("utf-8", "surrogateescape")
    e = ImageError("cannot open: No such file or directory", source=name)
    text = str(e)
    assert text == "fw-\\xff\\xfe.fd: cannot open: No such file or directory"
    text.encode("utf-8", "strict")  # a strict UTF-8 stdout takes it


def test_ordinary_text_unchanged() -> None:
    for s in ["", "OVMF.fd: not a TDVF image", "Grüße, 日本語, ß", "C:\\path\\n"]:
        assert printable(s) == s


def test_every_exception_class_escapes() -> None:
    assert str(ConfigError("--append 'a\nb'")) == "--append 'a\\nb'"


def _unsafe_by_spec(ch: str) -> bool:
    """Independent of the implementation: Unicode category Cc (C0, DEL, C1), Cs
    (surrogates), Zl/Zp (line/paragraph separators) and the Bidi_Control characters."""
    bidi_controls = {0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)}
    return unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp") or ord(ch) in bidi_controls


@given(st.text(st.characters(codec=None, exclude_categories=())))
def test_property_printable_has_no_unsafe_char_and_encodes(s: str) -> None:
    out = printable(s)
    assert not any(_unsafe_by_spec(ch) for ch in out)
    out.encode("utf-8", "strict")
    if not any(_unsafe_by_spec(ch) for ch in s):
        assert out == s
