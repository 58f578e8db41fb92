"""Issue 15, item 14: a DSA key is refused in one line, with no deprecation warning first."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa

from cvmlaunch.errors import ConfigError
from cvmlaunch.measure.identity import load_private_key


def _dsa_pem() -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        key = dsa.generate_private_key(1024)
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def test_14_dsa_key_one_line_no_warning() -> None:
    pem = _dsa_pem()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ConfigError, match=r"^k\.pem: a DSA key; SEV-SNP ID and author keys"):
            load_private_key(pem, "k.pem")
    assert [str(w.message) for w in caught] == []


def test_14_dsa_key_nothing_on_stderr_but_the_error(tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    key.write_bytes(_dsa_pem())
    code = (
        "import sys; from cvmlaunch.measure.identity import load_private_key\n"
        "from pathlib import Path\n"
        "try: load_private_key(Path(sys.argv[1]).read_bytes(), sys.argv[1])\n"
        "except Exception as e: print(e, file=sys.stderr)\n"
    )
    r = subprocess.run(
        [sys.executable, "-W", "default", "-c", code, str(key)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert r.stderr.splitlines() == [
        f"{key}: a DSA key; SEV-SNP ID and author keys must be ECDSA P-384 (secp384r1)"
    ]
