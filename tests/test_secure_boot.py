"""Secure Boot's decision for one image (DxeImageVerificationLib's, as cvmlaunch models it):
images signed here by certificates made here, databases packed by hand from UEFI 2.10 32.4.1.

What each case expects follows edk2 SecurityPkg/Library/DxeImageVerificationLib: dbx first
(image hash, or a certificate the image carries, by DER or by the SHA-256 of its TBS), then
each db X509 entry as a trust anchor of the signature (the signer itself or its direct
issuer), then the image's hash in db.
"""

from __future__ import annotations

import datetime
import hashlib
import struct
import uuid

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from cvmlaunch.errors import ImageError
from cvmlaunch.image.pe import authenticode_digest, parse_pe
from cvmlaunch.image.secure_boot import image_authority, image_certificates, signature_entries
from tests.test_pe import tiny_pe

X509 = "a5c059a1-94e4-4aa7-87b5-ab155c2bf072"
X509_SHA256 = "3bd2a492-96c0-4079-b420-fcf98ef103ed"
SHA256 = "c1c41626-504c-4092-aca9-41f936934328"
OWNER = "11111111-2222-3333-4444-555555555555"


Issuer = tuple[str, ec.EllipticCurvePrivateKey]


def cert(
    name: str, key: ec.EllipticCurvePrivateKey, issuer: Issuer | None = None
) -> x509.Certificate:
    issuer_name, issuer_key = issuer or (name, key)
    start = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=3650))
        .sign(issuer_key, hashes.SHA256())
    )


CA_KEY, LEAF_KEY, OTHER_KEY = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
CA = cert("Test CA", CA_KEY)
LEAF = cert("Test Signer", LEAF_KEY, ("Test CA", CA_KEY))
OTHER = cert("Other CA", OTHER_KEY)
IMPOSTOR = cert("Test CA", OTHER_KEY)  # the CA's name, another key


def signed(certs: list[x509.Certificate]) -> bytes:
    """tiny_pe with a WIN_CERTIFICATE (PKCS_SIGNED_DATA) holding ``certs``, the security
    directory pointing at it (PE/COFF spec "The Attribute Certificate Table")."""
    image = bytearray(tiny_pe())
    blob = pkcs7.serialize_certificates(certs, Encoding.DER)
    entry = struct.pack("<IHH", 8 + len(blob), 0x0200, 0x0002) + blob
    entry += bytes(-len(entry) % 8)
    security = 0x40 + 4 + 20 + 112 + 4 * 8
    struct.pack_into("<II", image, security, len(image), len(entry))
    return bytes(image) + entry


def esl(kind: str, entries: list[bytes]) -> bytes:
    size = 16 + len(entries[0])
    body = b"".join(uuid.UUID(OWNER).bytes_le + e for e in entries)
    return uuid.UUID(kind).bytes_le + struct.pack("<III", 28 + len(body), 0, size) + body


def der(c: x509.Certificate) -> bytes:
    return c.public_bytes(Encoding.DER)


IMAGE = parse_pe(signed([LEAF]))
SHA = authenticode_digest(IMAGE, "sha256")


def test_the_certificates_are_read_back() -> None:
    assert image_certificates(IMAGE) == ((LEAF,),)
    assert image_certificates(parse_pe(tiny_pe())) == ()


def test_a_db_ca_that_issued_the_signer_authorizes_it() -> None:
    db = esl(X509, [der(OTHER)]) + esl(X509, [der(CA)])
    decision = image_authority(IMAGE, db)
    assert decision.entry is not None
    assert decision.entry.signature_data == uuid.UUID(OWNER).bytes_le + der(CA)
    assert "Test CA" in decision.reason


def test_the_signer_itself_in_db_authorizes_it() -> None:
    decision = image_authority(IMAGE, esl(X509, [der(LEAF)]))
    assert decision.entry is not None
    assert decision.entry.data == der(LEAF)


def test_a_ca_with_the_issuers_name_and_another_key_does_not() -> None:
    decision = image_authority(IMAGE, esl(X509, [der(IMPOSTOR)]))
    assert decision.entry is None
    assert "CN=Test Signer (issuer CN=Test CA)" in decision.reason


def test_the_hash_in_db_authorizes_an_unsigned_image() -> None:
    unsigned = parse_pe(tiny_pe())
    sha = authenticode_digest(unsigned, "sha256")
    assert image_authority(unsigned, esl(SHA256, [sha])).entry is not None
    refused = image_authority(unsigned, esl(X509, [der(CA)]))
    assert refused.entry is None
    assert "not signed" in refused.reason


@pytest.mark.parametrize(
    "dbx",
    [
        esl(SHA256, [SHA]),
        esl(X509, [der(LEAF)]),
        esl(X509_SHA256, [hashlib.sha256(LEAF.tbs_certificate_bytes).digest() + bytes(16)]),
    ],
    ids=["image hash", "certificate", "certificate TBS hash"],
)
def test_dbx_wins_over_db(dbx: bytes) -> None:
    decision = image_authority(IMAGE, esl(X509, [der(CA)]), dbx)
    assert decision.entry is None
    assert "dbx" in decision.reason


def test_a_bad_signature_list_is_an_image_error() -> None:
    good = esl(X509, [der(CA)])
    with pytest.raises(ImageError, match="size"):
        signature_entries(good[:-1])
    with pytest.raises(ImageError, match="truncated"):
        signature_entries(good + bytes(10))
    bad = bytearray(good)
    struct.pack_into("<I", bad, 24, 7)  # SignatureSize <= the owner GUID
    with pytest.raises(ImageError, match="SignatureSize"):
        signature_entries(bytes(bad))


@given(st.binary(max_size=200))
def test_random_bytes_are_a_list_or_an_image_error(data: bytes) -> None:
    try:
        entries = signature_entries(data)
    except ImageError:
        return
    assert sum(16 + len(e.data) for e in entries) <= len(data)
