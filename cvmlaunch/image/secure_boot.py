"""UEFI Secure Boot as OVMF decides it for one PE image: the db entry that authorizes it, or
the reason it is refused.

OVMF built with Secure Boot (an enrolled PK turns it on) verifies every image it loads, the
``-kernel`` image included (it comes from QemuKernelLoaderFs, a "fixed media" image: policy
DENY_EXECUTE_ON_SECURITY_VIOLATION). An image db authorizes adds an EV_EFI_VARIABLE_AUTHORITY
event to RTMR0 (the db entry that authorized it); an image it refuses is not started by
LoadImage, and since edk2 202511 (commit 5a6a9f7955) OVMF no longer falls back to its legacy
Linux loader in a confidential VM: such a TD does not boot that kernel.

Rule 1: pure: the image, the variables' data in, a decision out.
Rule 2: the decision is SecurityPkg/Library/DxeImageVerificationLib's (DxeImageVerificationHandler,
IsForbiddenByDbx, IsAllowedByDb, IsSignatureFoundInDatabase):

* the image's Authenticode SHA-256 listed in dbx (EFI_CERT_SHA256), or a certificate the image
  carries listed in dbx (EFI_CERT_X509 by its DER, EFI_CERT_X509_SHA256 by the SHA-256 of its
  TBSCertificate), refuses it;
* else, for each of the image's signatures (WIN_CERTIFICATE of type PKCS_SIGNED_DATA), the db
  X509 entries are tried in db order: the first that is one of the signature's certificates or
  directly issues one of them authorizes the image (Pkcs7Verify with that one certificate as
  trust anchor, partial chains allowed);
* else the image's Authenticode SHA-256 listed in db (EFI_CERT_SHA256) authorizes it.

What is not modelled, and assumed: that each PKCS#7 signature is valid over the image (its
signed attributes and the digest in SpcIndirectDataContent): the certificates are taken as the
image carries them. Certificate validity periods are not checked (OVMF does not check them).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7

from cvmlaunch.errors import ImageError
from cvmlaunch.image.ovmf import guid_bytes_le
from cvmlaunch.image.pe import PeImage, authenticode_digest

__all__ = [
    "EFI_CERT_SHA256_GUID",
    "EFI_CERT_X509_GUID",
    "EFI_CERT_X509_SHA256_GUID",
    "Authority",
    "SignatureEntry",
    "image_authority",
    "image_certificates",
    "signature_entries",
]

EFI_CERT_SHA256_GUID = "c1c41626-504c-4092-aca9-41f936934328"
EFI_CERT_X509_GUID = "a5c059a1-94e4-4aa7-87b5-ab155c2bf072"
EFI_CERT_X509_SHA256_GUID = "3bd2a492-96c0-4079-b420-fcf98ef103ed"
_WIN_CERT_TYPE_PKCS_SIGNED_DATA = 0x0002
_LIST_HEADER = 28  # SignatureType GUID, ListSize, HeaderSize, SignatureSize
_OWNER = 16


@dataclass(frozen=True, slots=True)
class SignatureEntry:
    """One EFI_SIGNATURE_DATA of an EFI_SIGNATURE_LIST: the list's type, the owner, the data."""

    type: bytes  # the list's SignatureType GUID, EFI byte order
    owner: bytes  # SignatureOwner GUID, EFI byte order
    data: bytes

    @property
    def signature_data(self) -> bytes:
        """The EFI_SIGNATURE_DATA as stored (owner, then data): what an authority event logs."""
        return self.owner + self.data


@dataclass(frozen=True, slots=True)
class Authority:
    """The decision: ``entry`` is the db entry that authorizes the image (None: refused);
    ``reason`` says why, naming the certificates."""

    entry: SignatureEntry | None
    reason: str


def signature_entries(data: bytes, *, name: str = "db") -> tuple[SignatureEntry, ...]:
    """The entries of a signature database variable (EFI_SIGNATURE_LIST after
    EFI_SIGNATURE_LIST, UEFI 2.10 section 32.4.1).

    Raises:
        ImageError: a list whose sizes do not fit the data.
    """
    out = []
    at = 0
    while at < len(data):
        if at + _LIST_HEADER > len(data):
            raise ImageError(f"{name}: a truncated EFI_SIGNATURE_LIST", offset=at)
        kind = data[at : at + 16]
        list_size, header_size, sig_size = struct.unpack_from("<III", data, at + 16)
        body = at + _LIST_HEADER + header_size
        if list_size < _LIST_HEADER + header_size or at + list_size > len(data):
            raise ImageError(f"{name}: EFI_SIGNATURE_LIST size {list_size} is wrong", offset=at)
        if sig_size <= _OWNER or (at + list_size - body) % sig_size:
            raise ImageError(
                f"{name}: SignatureSize {sig_size} does not divide its list", offset=at
            )
        for entry in range(body, at + list_size, sig_size):
            out.append(
                SignatureEntry(
                    kind, data[entry : entry + _OWNER], data[entry + _OWNER : entry + sig_size]
                )
            )
        at += list_size
    return tuple(out)


def image_certificates(image: PeImage) -> tuple[tuple[x509.Certificate, ...], ...]:
    """The certificates of each PKCS#7 signature in the image's certificate table
    (WIN_CERTIFICATE entries, 8-byte aligned); empty for an unsigned image.

    Raises:
        ImageError: a certificate table or signature that cannot be read.
    """
    start, size = image.cert_table
    data = memoryview(image.data)[start : start + size]
    out = []
    at = 0
    while at + 8 <= len(data):
        length, _revision, kind = struct.unpack_from("<IHH", data, at)
        if length < 8 or at + length > len(data):
            raise ImageError(
                f"WIN_CERTIFICATE of {length} bytes does not fit", source=image.name, offset=at
            )
        if kind == _WIN_CERT_TYPE_PKCS_SIGNED_DATA:
            try:
                certs = pkcs7.load_der_pkcs7_certificates(bytes(data[at + 8 : at + length]))
            except ValueError as exc:
                raise ImageError(
                    f"an Authenticode signature is not PKCS#7 ({exc})", source=image.name
                ) from None
            out.append(tuple(certs))
        at += (length + 7) & ~7
    return tuple(out)


def _issues(issuer: x509.Certificate, cert: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def _cert(entry: SignatureEntry) -> x509.Certificate | None:
    try:
        return x509.load_der_x509_certificate(entry.data)
    except ValueError:
        return None


def _subject(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or "(no subject)"


def image_authority(image: PeImage, db: bytes, dbx: bytes = b"") -> Authority:
    """Whether OVMF's Secure Boot lets ``image`` run with these db and dbx contents, and which
    db entry authorizes it (module doc).

    Raises:
        ImageError: db, dbx or the image's certificate table cannot be read.
    """
    sha256 = authenticode_digest(image, "sha256")
    signatures = image_certificates(image)
    carried = [c for certs in signatures for c in certs]
    x509_type = guid_bytes_le(EFI_CERT_X509_GUID)
    x509_sha256_type = guid_bytes_le(EFI_CERT_X509_SHA256_GUID)
    hash_type = guid_bytes_le(EFI_CERT_SHA256_GUID)
    for entry in signature_entries(dbx, name="dbx"):
        if entry.type == hash_type and entry.data == sha256:
            return Authority(None, "the image's Authenticode SHA-256 is in dbx")
        for c in carried:
            der = c.public_bytes(Encoding.DER)
            if (entry.type == x509_type and entry.data == der) or (
                entry.type == x509_sha256_type
                and entry.data[:32] == hashlib.sha256(c.tbs_certificate_bytes).digest()
            ):
                return Authority(None, f"its certificate {_subject(c)} is in dbx")
    allowed = signature_entries(db, name="db")
    for certs in signatures:
        for entry in allowed:
            anchor = _cert(entry) if entry.type == x509_type else None
            if anchor is None:
                continue
            for c in certs:
                if c == anchor or _issues(anchor, c):
                    return Authority(entry, f"db certificate {_subject(anchor)} signed it")
    for entry in allowed:
        if entry.type == hash_type and entry.data == sha256:
            return Authority(entry, "its Authenticode SHA-256 is in db")
    if not signatures:
        return Authority(None, "it is not signed and its hash is not in db")
    signers = "; ".join(f"{_subject(c)} (issuer {c.issuer.rfc4514_string()})" for c in carried)
    return Authority(None, f"no db certificate signed it (it carries {signers})")
