"""Known answers live in tests/vectors/, never as literals in test code.

Rule 1: no string literal in a tests/**/*.py file outside tests/vectors/ holds a run of 64 or
more hex digits (a SHA-256 in hex is 64 digits, a SHA-384 96). A test reads such a value with
an accessor of ``tests.vectors`` by id (``snp_case("amdsev-1-epyc-v4").expected``); a digest
the test computes at run time from an independent implementation is no literal and is fine.
Rule 2: adjacent string literals are joined first, as Python joins them (across lines and
comments inside brackets), so a digest split into pieces is one run. Runs longer than 96 are
flagged too: two digests written end to end, or a hex dump of a structure holding one, are
known-answer data as much as a single digest is. Shorter hex (GUIDs, 16-byte ids, 8-byte
fields, key prefixes) is out of scope.
Rule 3: the scan reads tokens (``tokenize``), not lines: comments are not strings, docstrings
are. Escapes are decoded (``ast.literal_eval``) before the hex is looked for.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import vectors

TESTS = Path(__file__).resolve().parent
VECTORS = TESTS / "vectors"
HEX_RUN = re.compile(r"[0-9a-fA-F]{64,}")

#: Tokens that may stand between two string literals Python joins into one.
_GLUE = {tokenize.NL, tokenize.COMMENT}
_FSTRING_GLUE = {
    getattr(tokenize, n) for n in ("FSTRING_START", "FSTRING_END") if hasattr(tokenize, n)
}
_FSTRING_MIDDLE = getattr(tokenize, "FSTRING_MIDDLE", None)


def _value(token: str) -> str:
    """The text of one string literal token (escapes decoded; an f-string's text as written)."""
    try:
        value = ast.literal_eval(token)
    except (ValueError, SyntaxError):  # an f-string (Python 3.11 gives it as one STRING token)
        body = token.lstrip("rRbBuUfF")
        quote = body[:3] if body[:3] in ('"""', "'''") else body[:1]
        return body[len(quote) : len(body) - len(quote)]
    return value.decode("latin-1") if isinstance(value, bytes) else str(value)


def strings(source: str) -> Iterator[tuple[int, str]]:
    """(line of the first piece, joined value) of each string literal of ``source``."""
    line, parts = 0, list[str]()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.STRING:
            line = line or tok.start[0]
            parts.append(_value(tok.string))
        elif tok.type == _FSTRING_MIDDLE:
            line = line or tok.start[0]
            parts.append(tok.string)
        elif tok.type in _GLUE or (tok.type in _FSTRING_GLUE and parts):
            continue
        else:
            if parts:
                yield line, "".join(parts)
            line, parts = 0, []
    if parts:
        yield line, "".join(parts)


def hex_literals(path: Path) -> list[str]:
    """``file:line: N hex digits`` for every string of ``path`` holding a run of >= 64."""
    found = []
    for line, text in strings(path.read_text(encoding="utf-8")):
        for run in HEX_RUN.finditer(text):
            found.append(f"{path}:{line}: {len(run.group())} hex digits ({run.group()[:8]}...)")
    return found


def scanned_modules() -> list[Path]:
    return [p for p in sorted(TESTS.rglob("*.py")) if VECTORS not in p.parents]


def test_no_known_answer_is_a_literal_in_test_code() -> None:
    modules = scanned_modules()
    assert len(modules) > 50  # the scan sees the test tree
    found = [f for p in modules for f in hex_literals(p)]
    assert found == [], "read these from tests/vectors (tests/vectors/__init__.py):\n" + "\n".join(
        found
    )


DIGEST = "0123456789abcdef" * 6  # 96 hex digits, built at run time


@pytest.mark.parametrize(
    ("source", "line"),
    [
        (f'X = "{DIGEST}"\n', 1),
        (f'X = "{DIGEST[:64]}"\n', 1),  # SHA-256 length
        (f'X = b"{DIGEST.upper()}"\n', 1),
        (f'\n\nX = (\n    "{DIGEST[:48]}"  # a comment\n\n    "{DIGEST[48:]}"\n)\n', 4),
        (f'X = bytes.fromhex(\n "{DIGEST[:32]}"\n "{DIGEST[32:64]}"\n r"{DIGEST[64:]}"\n)\n', 2),
        (f'def f() -> None:\n    """Digest {DIGEST}."""\n', 2),
        (f'X = f"digest {{x}} {DIGEST}"\n', 1),
        (f'X = "{DIGEST}{DIGEST}"\n', 1),  # longer than 96: flagged too
        (f'X = "{DIGEST[:60]}\\x61\\x62\\x63\\x64{DIGEST[64:]}"\n', 1),  # escapes decoded
    ],
)
def test_a_planted_literal_fails_naming_file_and_line(
    tmp_path: Path, source: str, line: int
) -> None:
    planted = tmp_path / "test_planted.py"
    planted.write_text(source)
    found = hex_literals(planted)
    assert len(found) == 1, found
    assert found[0].startswith(f"{planted}:{line}: ")


@pytest.mark.parametrize(
    "source",
    [
        f'X = "{DIGEST[:63]}"\n',  # shorter than a SHA-256
        f'X = "{DIGEST[:40]}" + "{DIGEST[40:80]}"\n',  # not adjacent: an expression
        f'X = ["{DIGEST[:48]}",\n     "{DIGEST[48:]}"]\n',  # two items, not one literal
        f"# {DIGEST}\nX = 1\n",  # comments are not strings
        'X = "ab" * 48\n',
        f'X = "{DIGEST[:48]}"\nY = "{DIGEST[48:]}"\n',  # two statements
        f'X = "{DIGEST[:60]}g{DIGEST[60:]}"\n',  # a non-hex character breaks the run
    ],
)
def test_what_is_not_a_literal_digest_passes(tmp_path: Path, source: str) -> None:
    planted = tmp_path / "test_planted.py"
    planted.write_text(source)
    assert hex_literals(planted) == []


def test_the_vectors_directory_is_left_out_and_scanned_files_are_real() -> None:
    modules = scanned_modules()
    assert Path(__file__).resolve() in modules
    assert TESTS / "gce_fake_ovmf.py" in modules
    assert not any(VECTORS in p.parents for p in modules)
    # the vectors package itself does hold known answers: JSON, read by tests/vectors/__init__.py
    assert any(HEX_RUN.search(p.read_text()) for p in VECTORS.rglob("*.json"))


def test_the_accessors_name_an_unknown_id() -> None:
    peer = re.escape("'no-such-case': no such id in tests/vectors/snp/peer.json")
    with pytest.raises(KeyError, match=peer):
        vectors.snp_case("no-such-case")
    with pytest.raises(KeyError, match=re.escape("no such file in tests/vectors/tdx/mrtd.json")):
        vectors.tdx_firmware("OVMF.fd")
    with pytest.raises(KeyError, match="no such vector file in tests/vectors/identity"):
        vectors.identity_file("../attest/vcek_milan.der")
    with pytest.raises(KeyError, match="'rtmr9': no such field"):
        vectors.attest_field("tdx_prod_quote_SPR_E4.dat", "rtmr9")
    with pytest.raises(LookupError, match="the peer refused this case"):
        _ = next(c for c in vectors.snp_cases() if c.peer_error is not None).expected
    assert len(vectors.snp_cases()) == 59
    assert vectors.identity_file("id_key.pem").read_bytes().startswith(b"-----BEGIN PRIVATE KEY")
