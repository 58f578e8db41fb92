"""Attestation evidence made in the tests: SEV-SNP reports signed with a test VCEK under a
self-made ARK/ASK chain, and TDX quotes. Written from the specs, not from cvmlaunch.attest.

SNP: SEV-SNP Firmware ABI, "ATTESTATION_REPORT Structure" (offsets below); the signature is
ECDSA P-384/SHA-384 over bytes 0..0x29F, R and S as 72-byte little-endian integers at 0x2A0
and 0x2E8. AMD's chain: ARK (self-signed) -> ASK -> VCEK, RSASSA-PSS with SHA-384 and a
48-byte salt (AMD KDS certificates).

TDX: Intel TDX DCAP Quoting Library API, quote format v4/v5 (header 48 bytes; TD report body
584 bytes for TDX 1.0, 648 for TDX 1.5; v5 body descriptor type u16 + size u32).
"""

from __future__ import annotations

import datetime
import functools
import struct

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.x509.oid import NameOID

#: (name, offset, size) of the ATTESTATION_REPORT fields the tests set; integers are LE.
SNP_FIELDS: dict[str, tuple[int, int]] = {
    "version": (0x000, 4),
    "guest_svn": (0x004, 4),
    "policy": (0x008, 8),
    "family_id": (0x010, 16),
    "image_id": (0x020, 16),
    "vmpl": (0x030, 4),
    "signature_algo": (0x034, 4),
    "current_tcb": (0x038, 8),
    "platform_info": (0x040, 8),
    "key_info": (0x048, 4),
    "report_data": (0x050, 64),
    "measurement": (0x090, 48),
    "host_data": (0x0C0, 32),
    "id_key_digest": (0x0E0, 48),
    "author_key_digest": (0x110, 48),
    "report_id": (0x140, 32),
    "report_id_ma": (0x160, 32),
    "reported_tcb": (0x180, 8),
    "cpuid_fam_id": (0x188, 1),
    "cpuid_mod_id": (0x189, 1),
    "cpuid_step": (0x18A, 1),
    "chip_id": (0x1A0, 64),
    "committed_tcb": (0x1E0, 8),
    "current_build": (0x1E8, 1),
    "current_minor": (0x1E9, 1),
    "current_major": (0x1EA, 1),
    "committed_build": (0x1EC, 1),
    "committed_minor": (0x1ED, 1),
    "committed_major": (0x1EE, 1),
    "launch_tcb": (0x1F0, 8),
    "launch_mit_vector": (0x1F8, 8),
    "current_mit_vector": (0x200, 8),
}
REPORT_SIZE = 0x4A0
SIGNED = 0x2A0


def snp_report_bytes(**fields: int | bytes) -> bytearray:
    """An unsigned report: every field given, others zero (SIGNATURE_ALGO 1 by default)."""
    raw = bytearray(REPORT_SIZE)
    values: dict[str, int | bytes] = {"version": 3, "signature_algo": 1, **fields}
    for name, value in values.items():
        offset, size = SNP_FIELDS[name]
        if isinstance(value, int):
            raw[offset : offset + size] = value.to_bytes(size, "little")
        else:
            assert len(value) == size, name
            raw[offset : offset + size] = value
    return raw


def sign_snp(raw: bytearray, key: ec.EllipticCurvePrivateKey) -> bytes:
    """``raw`` with its SIGNATURE field filled (R, S little endian, 72 bytes each)."""
    der = key.sign(bytes(raw[:SIGNED]), ec.ECDSA(hashes.SHA384()))
    r, s = utils.decode_dss_signature(der)
    raw[SIGNED : SIGNED + 72] = r.to_bytes(72, "little")
    raw[SIGNED + 72 : SIGNED + 144] = s.to_bytes(72, "little")
    return bytes(raw)


_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
_START = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Advanced Micro Devices (test)"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _cert(
    subject: str,
    public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
    issuer: str,
    issuer_key: rsa.RSAPrivateKey,
    serial: int,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(_START)
        .not_valid_after(_START + datetime.timedelta(days=9000))
    )
    return builder.sign(issuer_key, hashes.SHA384(), rsa_padding=_PSS)


class Chain:
    """A VCEK-like P-384 key and certificate under a self-made ARK/ASK (RSA-PSS, SHA-384)."""

    def __init__(self, tag: str = "Milan", serial: int = 1):
        self.ark_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ask_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.vcek_key = ec.generate_private_key(ec.SECP384R1())
        self.ark = _cert(
            f"ARK-{tag}", self.ark_key.public_key(), f"ARK-{tag}", self.ark_key, serial
        )
        self.ask = _cert(
            f"SEV-{tag}", self.ask_key.public_key(), f"ARK-{tag}", self.ark_key, serial + 1
        )
        self.vcek = _cert("SEV-VCEK", self.vcek_key.public_key(), f"SEV-{tag}", self.ask_key, 3)

    def vcek_pem(self) -> bytes:
        return self.vcek.public_bytes(serialization.Encoding.PEM)

    def vcek_der(self) -> bytes:
        return self.vcek.public_bytes(serialization.Encoding.DER)

    def chain_pem(self) -> bytes:
        """ASK then ARK, as AMD KDS's cert_chain."""
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (self.ask, self.ark))


@functools.cache
def chain(tag: str = "Milan") -> Chain:
    """One chain per tag for the whole session (RSA key generation is slow)."""
    return Chain(tag, serial=10 if tag == "Milan" else 20)


# ---------------------------------------------------------------- TDX

TD_FIELDS: dict[str, tuple[int, int]] = {
    "tee_tcb_svn": (0, 16),
    "mr_seam": (16, 48),
    "mr_signer_seam": (64, 48),
    "seam_attributes": (112, 8),
    "td_attributes": (120, 8),
    "xfam": (128, 8),
    "mr_td": (136, 48),
    "mr_config_id": (184, 48),
    "mr_owner": (232, 48),
    "mr_owner_config": (280, 48),
    "rtmr0": (328, 48),
    "rtmr1": (376, 48),
    "rtmr2": (424, 48),
    "rtmr3": (472, 48),
    "report_data": (520, 64),
    "tee_tcb_svn_2": (584, 16),
    "mr_service_td": (600, 48),
}


def td_body(size: int = 584, /, **fields: bytes) -> bytes:
    body = bytearray(size)
    for name, value in fields.items():
        offset, length = TD_FIELDS[name]
        assert len(value) == length
        body[offset : offset + length] = value
    return bytes(body)


def tdx_quote(
    body: bytes,
    *,
    version: int = 4,
    body_type: int | None = None,
    tee_type: int = 0x81,
    key_type: int = 2,
    signature_data: bytes = b"\x5a" * 64,
) -> bytes:
    header = struct.pack(
        "<HHIHH16s20s", version, key_type, tee_type, 7, 13, b"\x93" * 16, bytes(20)
    )
    descriptor = b""
    if version == 5:
        kind = body_type if body_type is not None else (3 if len(body) == 648 else 2)
        descriptor = struct.pack("<HI", kind, len(body))
    return header + descriptor + body + struct.pack("<I", len(signature_data)) + signature_data
