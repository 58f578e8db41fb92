"""Intel TDX quotes, versions 4 and 5: the header and the TD report body.

Rule 1: read what a verifier compares, check the structure around it, verify nothing. The
quote's signature chain (QE report, PCK certificate, Intel's TCB info and CRLs) needs Intel's
collateral, which this offline tool does not have: TDX quote signatures are **not** verified
here (go-tdx-guest's ``check`` or Intel's QVL do that).

Rule 2: versions 4 and 5 only. Version 4: the 48-byte header, then a TD report body of 584
bytes (TDX 1.0). Version 5: the header, then a body descriptor (type u16, size u32) and the
body: type 2 is the TDX 1.0 body (584 bytes), type 3 the TDX 1.5 body (648 bytes: the 1.0
fields, then TEE_TCB_SVN_2 16 and MRSERVICETD 48); type 1 (an SGX enclave report) is not a TD
quote. Either way the body is followed by the signature data's length (u32) and that many
bytes. Bytes after that (quote buffers handed out padded) are kept as ``extra_bytes`` and
take no part in any check, as go-tdx-guest keeps them.

Layout (Intel TDX DCAP Quoting Library API, "Quote Format"; little endian). Header: version
u16 0, attestation key type u16 2 (2 = ECDSA P-256, 3 = ECDSA P-384), TEE type u32 4 (0x81 =
TDX), QE SVN u16 8, PCE SVN u16 10, QE vendor ID 16 12, user data 20 28. TD report body:
TEE_TCB_SVN 16 0, MRSEAM 48 16, MRSIGNERSEAM 48 64, SEAMATTRIBUTES 8 112, TDATTRIBUTES 8 120,
XFAM 8 128, MRTD 48 136, MRCONFIGID 48 184, MROWNER 48 232, MROWNERCONFIG 48 280, RTMR0..3 48
each from 328, REPORTDATA 64 520.

Pure: bytes in, a frozen dataclass out.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from cvmlaunch.attest.errors import ReportFormatError, UnknownReportVersion

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cvmlaunch.layout import Buffer

__all__ = [
    "BODY_TDX10",
    "BODY_TDX15",
    "HEADER_SIZE",
    "TEE_TYPE_TDX",
    "TdxQuote",
    "looks_like_tdx_quote",
    "parse_tdx_quote",
]

HEADER_SIZE = 48
TEE_TYPE_TDX = 0x81
#: v5 body descriptor types: 1 SGX enclave report, 2 TD report (TDX 1.0), 3 TD report (TDX 1.5).
BODY_SGX = 1
BODY_TDX10 = 2
BODY_TDX15 = 3
_BODY_SIZES = {BODY_TDX10: 584, BODY_TDX15: 648}
_ATTESTATION_KEY_TYPES = (2, 3)
_HEADER = struct.Struct("<HHIHH16s20s")
_V5_DESCRIPTOR = struct.Struct("<HI")
_U32 = struct.Struct("<I")


@dataclass(frozen=True, slots=True)
class TdxQuote:
    """A TDX quote's header and TD report body (names as in the DCAP spec, lower case).

    ``body_type`` is 2 (TDX 1.0) or 3 (TDX 1.5); a version-4 quote's is 2. The TDX 1.5
    fields are None for a 1.0 body.
    """

    version: int
    attestation_key_type: int
    qe_svn: int
    pce_svn: int
    qe_vendor_id: bytes
    user_data: bytes
    body_type: int
    tee_tcb_svn: bytes
    mr_seam: bytes
    mr_signer_seam: bytes
    seam_attributes: bytes
    td_attributes: bytes
    xfam: bytes
    mr_td: bytes
    mr_config_id: bytes
    mr_owner: bytes
    mr_owner_config: bytes
    rtmr0: bytes
    rtmr1: bytes
    rtmr2: bytes
    rtmr3: bytes
    report_data: bytes
    tee_tcb_svn_2: bytes | None
    mr_service_td: bytes | None
    signature_data: bytes
    extra_bytes: bytes = b""

    def as_dict(self) -> dict[str, object]:
        """The fields as JSON-ready values (bytes as hex; signature data by length only)."""
        out: dict[str, object] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if name in ("signature_data", "extra_bytes"):
                out[f"{name}_size"] = len(value)
                continue
            out[name] = value.hex() if isinstance(value, bytes) else value
        return out


def looks_like_tdx_quote(data: Buffer) -> bool:
    """Whether ``data`` starts like a TDX quote header (version 4/5, an ECDSA attestation key
    type, TEE type 0x81). An SNP report cannot: its VERSION u32 puts zeros where a quote has
    the key type."""
    if len(data) < 8:
        return False
    version, key_type, tee_type = struct.unpack_from("<HHI", data, 0)
    return version in (4, 5) and key_type in _ATTESTATION_KEY_TYPES and tee_type == TEE_TYPE_TDX


def parse_tdx_quote(data: Buffer, *, name: str = "quote") -> TdxQuote:
    """Parse a TDX quote (version 4 or 5) without verifying its signature.

    Raises:
        ReportFormatError: truncated, a non-TDX TEE type, an SGX body, a body size that does
            not match its type.
        UnknownReportVersion: a version other than 4 or 5, or an unknown v5 body type.
    """
    raw = bytes(data)
    if len(raw) < HEADER_SIZE:
        raise ReportFormatError(
            f"truncated TDX quote: {len(raw)} bytes, the header alone is {HEADER_SIZE}",
            source=name,
        )
    version, key_type, tee_type, qe_svn, pce_svn, vendor, user_data = _HEADER.unpack_from(raw)
    if version not in (4, 5):
        raise UnknownReportVersion(
            f"TDX quote version {version} is not 4 or 5", source=name, offset=0
        )
    if tee_type != TEE_TYPE_TDX:
        raise ReportFormatError(
            f"TEE type {tee_type:#x} is not TDX (0x81): not a TD quote", source=name, offset=4
        )
    if key_type not in _ATTESTATION_KEY_TYPES:
        raise ReportFormatError(
            f"attestation key type {key_type} is not ECDSA P-256 (2) or P-384 (3)",
            source=name,
            offset=2,
        )
    at = HEADER_SIZE
    body_type = BODY_TDX10
    if version == 5:
        _need(raw, at + _V5_DESCRIPTOR.size, "the v5 body descriptor", name)
        body_type, size = _V5_DESCRIPTOR.unpack_from(raw, at)
        if body_type == BODY_SGX:
            raise ReportFormatError(
                "body type 1 is an SGX enclave report: not a TD quote", source=name, offset=at
            )
        if body_type not in _BODY_SIZES:
            raise UnknownReportVersion(
                f"TDX quote v5 body type {body_type} is not 2 (TDX 1.0) or 3 (TDX 1.5)",
                source=name,
                offset=at,
            )
        if size != _BODY_SIZES[body_type]:
            raise ReportFormatError(
                f"body type {body_type} is {_BODY_SIZES[body_type]} bytes, the descriptor "
                f"says {size}",
                source=name,
                offset=at + 2,
            )
        at += _V5_DESCRIPTOR.size
    body_size = _BODY_SIZES[body_type]
    _need(raw, at + body_size + _U32.size, "the TD report body and signature length", name)
    body = raw[at : at + body_size]
    at += body_size
    (sig_size,) = _U32.unpack_from(raw, at)
    at += _U32.size
    end = at + sig_size
    _need(raw, end, f"the {sig_size}-byte signature data", name)
    tdx15 = body_type == BODY_TDX15

    def field(offset: int, size: int) -> bytes:
        return body[offset : offset + size]

    return TdxQuote(
        version=version,
        attestation_key_type=key_type,
        qe_svn=qe_svn,
        pce_svn=pce_svn,
        qe_vendor_id=vendor,
        user_data=user_data,
        body_type=body_type,
        tee_tcb_svn=field(0, 16),
        mr_seam=field(16, 48),
        mr_signer_seam=field(64, 48),
        seam_attributes=field(112, 8),
        td_attributes=field(120, 8),
        xfam=field(128, 8),
        mr_td=field(136, 48),
        mr_config_id=field(184, 48),
        mr_owner=field(232, 48),
        mr_owner_config=field(280, 48),
        rtmr0=field(328, 48),
        rtmr1=field(376, 48),
        rtmr2=field(424, 48),
        rtmr3=field(472, 48),
        report_data=field(520, 64),
        tee_tcb_svn_2=field(584, 16) if tdx15 else None,
        mr_service_td=field(600, 48) if tdx15 else None,
        signature_data=raw[at:end],
        extra_bytes=raw[end:],
    )


def _need(raw: bytes, size: int, what: str, name: str) -> None:
    if len(raw) < size:
        raise ReportFormatError(
            f"truncated TDX quote: {len(raw)} bytes, {what} needs {size}", source=name
        )
