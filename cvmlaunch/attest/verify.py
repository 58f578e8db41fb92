"""Signatures of SEV-SNP reports and their certificate chain, with ``cryptography``; offline.

Rule 1: no network access, ever. The VCEK (or VLEK) and the AMD chain (ARK, ASK) are files the
caller got from AMD's KDS or the host beforehand; nothing is fetched, and no root of trust is
built in: the ARK given is the one trusted, so compare its fingerprint with AMD's published
one out of band.

Rule 2: what is checked. The report: SIGNATURE_ALGO is 1 (ECDSA P-384 with SHA-384) and
(R, S), each a 72-byte little-endian integer in the SIGNATURE field, verify over bytes
0x000..0x29F with the VCEK's P-384 public key. The chain: the ARK is self-signed, the ASK is
issued and signed by the ARK, the VCEK by the ASK (names and signatures; AMD signs with
RSASSA-PSS, SHA-384, which each certificate states and this follows). Not checked: validity
periods, revocation (CRL), and the VCEK's TCB extensions against the report's REPORTED_TCB.

Errors: an unreadable certificate or a key of the wrong kind is bad input
(:class:`~cvmlaunch.attest.errors.CertificateError`, exit 2); a signature that does not verify
is a failed check (:class:`~cvmlaunch.attest.errors.SignatureInvalid`, exit 1).
"""

from __future__ import annotations

import warnings

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.utils import CryptographyDeprecationWarning

from cvmlaunch.attest.errors import CertificateError, SignatureInvalid
from cvmlaunch.attest.snp_report import SIGNATURE_ALGO_ECDSA_P384_SHA384, SnpReport

__all__ = [
    "load_certificate",
    "load_certificates",
    "verify_snp_signature",
    "verify_vcek_chain",
]

_PEM = b"-----BEGIN"


def load_certificates(data: bytes, *, name: str) -> list[x509.Certificate]:
    """Every certificate of a PEM file (one or more), or the one of a DER file.

    Raises:
        CertificateError: neither PEM certificates nor one DER certificate.
    """
    try:
        with warnings.catch_warnings():
            # AMD's KDS issues VCEKs with serial number 0, which RFC 5280 disallows and
            # cryptography warns about on every load; the certificate is still AMD's.
            warnings.filterwarnings(
                "ignore", "Parsed a serial number", CryptographyDeprecationWarning
            )
            if data.lstrip().startswith(_PEM):
                certs = x509.load_pem_x509_certificates(data)
            else:
                certs = [x509.load_der_x509_certificate(data)]
    except ValueError as exc:
        raise CertificateError(f"not a PEM or DER X.509 certificate ({exc})", source=name) from None
    return certs


def load_certificate(data: bytes, *, name: str) -> x509.Certificate:
    """The one certificate of a PEM or DER file.

    Raises:
        CertificateError: unreadable, or more than one certificate.
    """
    certs = load_certificates(data, name=name)
    if len(certs) != 1:
        raise CertificateError(f"holds {len(certs)} certificates, expected one", source=name)
    return certs[0]


def verify_snp_signature(report: SnpReport, vcek: x509.Certificate, *, name: str = "VCEK") -> None:
    """Check the report's signature with the VCEK's (or VLEK's) public key.

    Raises:
        CertificateError: the certificate's key is not an ECDSA P-384 key.
        SignatureInvalid: SIGNATURE_ALGO is not ECDSA P-384/SHA-384, or the signature does not
            verify (the report was changed, or another key signed it).
    """
    key = vcek.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP384R1):
        raise CertificateError("the key is not an ECDSA P-384 key (a VCEK's is)", source=name)
    if report.signature_algo != SIGNATURE_ALGO_ECDSA_P384_SHA384:
        raise SignatureInvalid(
            f"report signature: SIGNATURE_ALGO {report.signature_algo} is not ECDSA P-384 with "
            "SHA-384 (1)"
        )
    der = utils.encode_dss_signature(report.signature_r, report.signature_s)
    try:
        key.verify(der, report.signed_bytes, ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        raise SignatureInvalid(
            f"report signature: does not verify with the key of {name} "
            f"({vcek.subject.rfc4514_string()}): the report was altered or another key "
            "signed it"
        ) from None


def _verify_issued(cert: x509.Certificate, issuer: x509.Certificate, what: str) -> None:
    """Check that ``issuer`` issued ``cert``: names, then the signature as ``cert`` states it."""
    if cert.issuer != issuer.subject:
        raise SignatureInvalid(
            f"certificate chain: {what}: issuer {cert.issuer.rfc4514_string()} is not "
            f"{issuer.subject.rfc4514_string()}"
        )
    key = issuer.public_key()
    algorithm = cert.signature_hash_algorithm
    if algorithm is None:
        raise SignatureInvalid(f"certificate chain: {what}: no hash algorithm")
    try:
        if isinstance(key, rsa.RSAPublicKey):
            pad = cert.signature_algorithm_parameters
            if not isinstance(pad, padding.PSS | padding.PKCS1v15):
                raise SignatureInvalid(f"certificate chain: {what}: unknown RSA padding")
            key.verify(cert.signature, cert.tbs_certificate_bytes, pad, algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(algorithm))
        else:
            raise SignatureInvalid(f"certificate chain: {what}: unsupported issuer key type")
    except InvalidSignature:
        raise SignatureInvalid(
            f"certificate chain: {what}: the signature does not verify"
        ) from None
    except (UnsupportedAlgorithm, ValueError, TypeError) as exc:
        raise SignatureInvalid(f"certificate chain: {what}: cannot verify ({exc})") from None


def verify_vcek_chain(
    vcek: x509.Certificate, chain: list[x509.Certificate], *, name: str = "cert chain"
) -> tuple[x509.Certificate, x509.Certificate]:
    """Check VCEK <- ASK <- ARK (self-signed) with the two CA certificates given.

    Args:
        vcek: the VCEK (or VLEK) certificate.
        chain: the ASK (or ASVK) and the ARK, in either order (AMD's ``cert_chain`` PEM lists
            the ASK first).
        name: the chain file's name for messages.

    Returns:
        (ARK, ASK).

    Raises:
        CertificateError: not exactly two certificates, or no self-issued one among them.
        SignatureInvalid: a name or signature along the chain does not hold.
    """
    if len(chain) != 2:
        raise CertificateError(
            f"holds {len(chain)} certificates; expected the ASK and the ARK", source=name
        )
    roots = [c for c in chain if c.issuer == c.subject]
    if len(roots) != 1:
        raise CertificateError(
            "expected exactly one self-issued certificate (the ARK) and the ASK", source=name
        )
    ark = roots[0]
    ask = chain[1] if chain[0] is ark else chain[0]
    _verify_issued(ark, ark, "ARK (self-signed)")
    _verify_issued(ask, ark, "ASK signed by the ARK")
    _verify_issued(vcek, ask, "VCEK signed by the ASK")
    return ark, ask
