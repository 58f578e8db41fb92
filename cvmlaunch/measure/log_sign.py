"""Signing a launch log: a DSSE envelope over the log's exact bytes.

Rule 1: what no replay proves is covered by a signature. Settings that never enter a digest
(the SNP policy without an ID block, HOST_DATA, the TDX owner values, host details, the tool)
can be changed without any check noticing (:data:`cvmlaunch.measure.log_check.SIGNATURE_ONLY`);
a signature over the log's bytes makes any change, of any byte, fail verification.

Rule 2: the envelope is DSSE v1 (secure-systems-lab/dsse, "envelope.md" and "protocol.md"),
the envelope in-toto and Sigstore sign in::

    {"payload": BASE64(log bytes), "payloadType": PAYLOAD_TYPE,
     "signatures": [{"keyid": KEYID, "sig": BASE64(signature)}]}

Each signature is over ``PAE(payloadType, payload)`` = ``"DSSEv1" SP LEN(type) SP type SP
LEN(body) SP body`` (LEN in ASCII decimal, no leading zeros), never over the payload alone,
so the type is signed too. Keys: ECDSA P-384 (signature: DER, over SHA-384; deterministic,
RFC 6979, so the same key and log give the same envelope) or Ed25519. The key ID is the
lowercase hex SHA-256 of the public key's DER SubjectPublicKeyInfo (a hint only: verification
tries the key it is given).

Pure: bytes and keys in, bytes out.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from typing import Any

from cvmlaunch.errors import CheckFailed, ConfigError, LogFormatError

TYPE_CHECKING = False
if TYPE_CHECKING:  # cryptography is imported only by code that signs or verifies
    from cryptography.hazmat.primitives.asymmetric.ec import (
        EllipticCurvePrivateKey,
        EllipticCurvePublicKey,
    )
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

    PrivateKey = EllipticCurvePrivateKey | Ed25519PrivateKey
    PublicKey = EllipticCurvePublicKey | Ed25519PublicKey

__all__ = [
    "MAX_ENVELOPE_BYTES",
    "PAYLOAD_TYPE",
    "key_id",
    "load_private_key",
    "load_public_key",
    "pae",
    "sign_log",
    "verify_signed_log",
]

#: The DSSE payloadType of a signed launch log (the payload is the log file's bytes).
PAYLOAD_TYPE = "application/vnd.cvmlaunch.launch-log+jsonl"
#: The largest envelope read (a log of up to 192 MiB in base64).
MAX_ENVELOPE_BYTES = 1 << 28


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: the bytes a signature covers."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)


def load_private_key(pem: bytes, name: str) -> PrivateKey:
    """An unencrypted PEM private key: ECDSA P-384 or Ed25519.

    Raises:
        ConfigError: not a PEM private key, encrypted, or another kind of key.
    """
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError as exc:
        raise ConfigError(f"{name}: encrypted private keys are not supported") from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ConfigError(f"{name}: not a PEM private key") from exc
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP384R1):
        return key
    raise ConfigError(f"{name}: a log is signed with an ECDSA P-384 or an Ed25519 key")


def load_public_key(pem: bytes, name: str) -> PublicKey:
    """A PEM public key (SubjectPublicKeyInfo), or the public half of a PEM private key:
    ECDSA P-384 or Ed25519.

    Raises:
        ConfigError: not a PEM key of those kinds.
    """
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    if b"PRIVATE KEY" in pem:
        return load_private_key(pem, name).public_key()
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ConfigError(f"{name}: not a PEM public key") from exc
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP384R1):
        return key
    raise ConfigError(f"{name}: a log is signed with an ECDSA P-384 or an Ed25519 key")


def key_id(key: PublicKey) -> str:
    """Lowercase hex SHA-256 of the key's DER SubjectPublicKeyInfo."""
    from cryptography.hazmat.primitives import serialization

    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def _sign(key: PrivateKey, message: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(message, ec.ECDSA(hashes.SHA384(), deterministic_signing=True))
    return key.sign(message)


def _verifies(key: PublicKey, signature: bytes, message: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, message, ec.ECDSA(hashes.SHA384()))
        else:
            key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


def sign_log(log_bytes: bytes, key: PrivateKey) -> bytes:
    """A DSSE envelope (canonical JSON, one line and a newline) over ``log_bytes``.

    Args:
        log_bytes: the log file's exact bytes.
        key: an ECDSA P-384 or Ed25519 private key (:func:`load_private_key`).
    """
    signature = _sign(key, pae(PAYLOAD_TYPE, log_bytes))
    envelope = {
        "payload": base64.b64encode(log_bytes).decode(),
        "payloadType": PAYLOAD_TYPE,
        "signatures": [
            {"keyid": key_id(key.public_key()), "sig": base64.b64encode(signature).decode()}
        ],
    }
    return (json.dumps(envelope, sort_keys=True, separators=(",", ":")) + "\n").encode()


_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')


def _decode_b64(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise LogFormatError(f"DSSE envelope: {what} must be a string")
    try:
        # DSSE readers accept standard and URL-safe base64
        return base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise LogFormatError(f"DSSE envelope: {what} is not base64") from exc


def _parse_envelope(data: bytes) -> dict[str, Any]:
    if len(data) > MAX_ENVELOPE_BYTES:
        raise LogFormatError(f"DSSE envelope: larger than {MAX_ENVELOPE_BYTES} bytes")
    bare = _STRING.sub(b"", data)
    if bare.count(b"[") + bare.count(b"{") > 64:
        raise LogFormatError("DSSE envelope: more than 64 arrays and objects")
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise LogFormatError(f"DSSE envelope: not valid JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise LogFormatError("DSSE envelope: not a JSON object")
    return obj


def verify_signed_log(log_bytes: bytes, envelope_bytes: bytes, public_key: PublicKey) -> str:
    """Check that ``envelope_bytes`` is a DSSE envelope over exactly ``log_bytes`` signed by
    ``public_key``.

    Args:
        log_bytes: the log file's bytes.
        envelope_bytes: the envelope (``log sign``'s output).
        public_key: the signer's public key (:func:`load_public_key`).

    Returns:
        The key ID of the key that verified.

    Raises:
        LogFormatError: the envelope is not a DSSE envelope (exit 2).
        CheckFailed: another payload type, a payload other than ``log_bytes``, or no
            signature by ``public_key`` over it (exit 1).
    """
    envelope = _parse_envelope(envelope_bytes)
    kind = envelope.get("payloadType")
    if kind != PAYLOAD_TYPE:
        raise CheckFailed(f"DSSE envelope: payloadType {kind!r}, not {PAYLOAD_TYPE!r}")
    payload = _decode_b64(envelope.get("payload"), "payload")
    signatures = envelope.get("signatures")
    if not isinstance(signatures, list) or not signatures:
        raise LogFormatError("DSSE envelope: no signatures")
    message = pae(PAYLOAD_TYPE, payload)
    verified = False
    for item in signatures:
        if not isinstance(item, dict):
            raise LogFormatError("DSSE envelope: a signature must be an object")
        if _verifies(public_key, _decode_b64(item.get("sig"), "sig"), message):
            verified = True
            break
    if not verified:
        raise CheckFailed("the log's signature does not verify with the given key")
    if payload != log_bytes:
        raise CheckFailed("the signed payload is not this log: the log was changed after signing")
    return key_id(public_key)
