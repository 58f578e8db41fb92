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

Layout (Intel TDX DCAP Quoting Library API, "Quote Format"; little endian): the header
:data:`HEADER_FIELDS`, the TD report body :data:`TDX10_BODY_FIELDS` or
:data:`TDX15_BODY_FIELDS`, each field at its offset.

Pure: bytes in, a frozen dataclass out.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from cvmlaunch._struct import StructTable
from cvmlaunch.attest.errors import ReportFormatError, UnknownReportVersion

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cvmlaunch.layout import Buffer

__all__ = [
    "BODY_TDX10",
    "BODY_TDX15",
    "HEADER_FIELDS",
    "HEADER_SIZE",
    "TDX10_BODY_FIELDS",
    "TDX15_BODY_FIELDS",
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
_ATTESTATION_KEY_TYPES = (2, 3)
#: DCAP "Quote Format", the quote header (versions 4 and 5).
HEADER_FIELDS = StructTable(
    "TDX quote header",
    (
        ("version", 0, "H"),
        ("attestation_key_type", 2, "H"),  # 2 = ECDSA P-256, 3 = ECDSA P-384
        ("tee_type", 4, "I"),  # 0x81 = TDX
        ("qe_svn", 8, "H"),
        ("pce_svn", 10, "H"),
        ("qe_vendor_id", 12, "16s"),
        ("user_data", 28, "20s"),
    ),
    end=HEADER_SIZE,
)
#: DCAP "Quote Format", version 5: the body descriptor after the header.
_V5_DESCRIPTOR = StructTable(
    "TDX quote v5 body descriptor", (("type", 0, "H"), ("size", 2, "I")), end=6
)
_TDX10_BODY_ROWS = (
    ("tee_tcb_svn", 0, "16s"),
    ("mr_seam", 16, "48s"),
    ("mr_signer_seam", 64, "48s"),
    ("seam_attributes", 112, "8s"),
    ("td_attributes", 120, "8s"),
    ("xfam", 128, "8s"),
    ("mr_td", 136, "48s"),
    ("mr_config_id", 184, "48s"),
    ("mr_owner", 232, "48s"),
    ("mr_owner_config", 280, "48s"),
    ("rtmr0", 328, "48s"),
    ("rtmr1", 376, "48s"),
    ("rtmr2", 424, "48s"),
    ("rtmr3", 472, "48s"),
    ("report_data", 520, "64s"),
)
#: DCAP "Quote Format": the TD report body of TDX 1.0 (v4, and v5 body type 2) ...
TDX10_BODY_FIELDS = StructTable("TD report body (TDX 1.0)", _TDX10_BODY_ROWS, end=584)
#: ... and of TDX 1.5 (v5 body type 3): the 1.0 fields, then two more.
TDX15_BODY_FIELDS = StructTable(
    "TD report body (TDX 1.5)",
    (*_TDX10_BODY_ROWS, ("tee_tcb_svn_2", 584, "16s"), ("mr_service_td", 600, "48s")),
    end=648,
)
_BODIES = {BODY_TDX10: TDX10_BODY_FIELDS, BODY_TDX15: TDX15_BODY_FIELDS}
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
    header = HEADER_FIELDS.unpack(raw)
    version, key_type, tee_type = (
        header["version"],
        header["attestation_key_type"],
        header["tee_type"],
    )
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
        descriptor = _V5_DESCRIPTOR.unpack(raw, at)
        body_type, size = descriptor["type"], descriptor["size"]
        if body_type == BODY_SGX:
            raise ReportFormatError(
                "body type 1 is an SGX enclave report: not a TD quote", source=name, offset=at
            )
        if body_type not in _BODIES:
            raise UnknownReportVersion(
                f"TDX quote v5 body type {body_type} is not 2 (TDX 1.0) or 3 (TDX 1.5)",
                source=name,
                offset=at,
            )
        if size != _BODIES[body_type].size:
            raise ReportFormatError(
                f"body type {body_type} is {_BODIES[body_type].size} bytes, the descriptor "
                f"says {size}",
                source=name,
                offset=at + 2,
            )
        at += _V5_DESCRIPTOR.size
    body_fields = _BODIES[body_type]
    _need(raw, at + body_fields.size + _U32.size, "the TD report body and signature length", name)
    # a TDX 1.0 body has no TEE_TCB_SVN_2 and MRSERVICETD
    body = {"tee_tcb_svn_2": None, "mr_service_td": None} | body_fields.unpack(raw, at)
    at += body_fields.size
    (sig_size,) = _U32.unpack_from(raw, at)
    at += _U32.size
    end = at + sig_size
    _need(raw, end, f"the {sig_size}-byte signature data", name)
    return TdxQuote(
        version=version,
        attestation_key_type=key_type,
        qe_svn=header["qe_svn"],
        pce_svn=header["pce_svn"],
        qe_vendor_id=header["qe_vendor_id"],
        user_data=header["user_data"],
        body_type=body_type,
        **body,
        signature_data=raw[at:end],
        extra_bytes=raw[end:],
    )


def _need(raw: bytes, size: int, what: str, name: str) -> None:
    if len(raw) < size:
        raise ReportFormatError(
            f"truncated TDX quote: {len(raw)} bytes, {what} needs {size}", source=name
        )
