"""DSSE envelopes over launch logs: the PAE of the DSSE specification, and any byte edited
fails verification."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from cvmlaunch.errors import CheckFailed, ConfigError, LogFormatError
from cvmlaunch.measure.log_sign import (
    PAYLOAD_TYPE,
    key_id,
    load_private_key,
    load_public_key,
    pae,
    sign_log,
    verify_signed_log,
)
from tests.cli_runner import run_cli


def test_pae_matches_the_dsse_specification_vector() -> None:
    """secure-systems-lab/dsse protocol.md, "Test Vectors"."""
    assert (
        pae("http://example.com/HelloWorld", b"hello world")
        == b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )
    assert pae("", b"") == b"DSSEv1 0  0 "


@pytest.fixture(scope="module")
def signed_log(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    from tests.conftest import find_firmware

    fw = find_firmware("OVMF.inteltdx.ms.fd")
    if fw is None:
        pytest.skip("firmware OVMF.inteltdx.ms.fd not found")
    out = tmp_path_factory.mktemp("sign") / "tdx.jsonl"
    assert run_cli(["measure", "tdx", "--firmware", str(fw), "--log", str(out)]).exit_code == 0
    return out.read_bytes()


@pytest.mark.parametrize("kind", ["p384", "ed25519"])
def test_any_byte_edited_fails(signed_log: bytes, kind: str) -> None:
    key = ec.generate_private_key(ec.SECP384R1()) if kind == "p384" else (
        ed25519.Ed25519PrivateKey.generate()
    )  # fmt: skip
    envelope = sign_log(signed_log, key)
    doc = json.loads(envelope)
    assert doc["payloadType"] == PAYLOAD_TYPE
    assert base64.b64decode(doc["payload"]) == signed_log
    # docs/log-format.md: keyid is the hex SHA-256 of the DER SubjectPublicKeyInfo
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert doc["signatures"][0]["keyid"] == hashlib.sha256(spki).hexdigest()
    # the signature is over PAE(type, payload), checked here with cryptography directly
    sig = base64.b64decode(doc["signatures"][0]["sig"])
    message = b"DSSEv1 %d %b %d %b" % (
        len(PAYLOAD_TYPE),
        PAYLOAD_TYPE.encode(),
        len(signed_log),
        signed_log,
    )
    public = key.public_key()
    if isinstance(public, ec.EllipticCurvePublicKey):
        public.verify(sig, message, ec.ECDSA(hashes.SHA384()))
    else:
        public.verify(sig, message)
    assert verify_signed_log(signed_log, envelope, public) == hashlib.sha256(spki).hexdigest()
    # every byte of the log, changed: the signature no longer covers it
    for i in range(len(signed_log)):
        edited = bytearray(signed_log)
        edited[i] ^= 0x01
        with pytest.raises(CheckFailed, match="changed after signing"):
            verify_signed_log(bytes(edited), envelope, public)
    with pytest.raises(CheckFailed):
        verify_signed_log(signed_log + b"\n", envelope, public)
    # the envelope's payload edited: the signature fails
    doc["payload"] = base64.b64encode(signed_log.replace(b"tdx", b"sev", 1)).decode()
    with pytest.raises(CheckFailed, match="does not verify"):
        verify_signed_log(signed_log, json.dumps(doc).encode(), public)
    # another key
    other = ec.generate_private_key(ec.SECP384R1()).public_key()
    with pytest.raises(CheckFailed, match="does not verify"):
        verify_signed_log(signed_log, envelope, other)


def test_ecdsa_envelopes_are_reproducible(signed_log: bytes) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    assert sign_log(signed_log, key) == sign_log(signed_log, key)


def test_keys_and_envelopes_are_checked(tmp_path: Path) -> None:
    p256 = ec.generate_private_key(ec.SECP256R1())
    pem = p256.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(ConfigError, match="P-384 or an Ed25519"):
        load_private_key(pem, "k.pem")
    with pytest.raises(ConfigError, match="not a PEM"):
        load_public_key(b"junk", "k.pub")
    key = ed25519.Ed25519PrivateKey.generate()
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert key_id(load_public_key(public_pem, "k.pub")) == hashlib.sha256(spki).hexdigest()
    for bad in (b"[" * 100_000, b"{}", b'{"payloadType":"x"}'):
        with pytest.raises((LogFormatError, CheckFailed)):
            verify_signed_log(b"", bad, key.public_key())
