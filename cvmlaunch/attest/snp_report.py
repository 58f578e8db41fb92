"""The SEV-SNP ATTESTATION_REPORT: parse 1184 bytes into a typed report.

Rule 1: every report version the SNP Firmware ABI defines is read, and no other: 2 (the
first), 3 and 4 (one layout: CPUID_FAM_ID / CPUID_MOD_ID / CPUID_STEP at 0x188..0x18A), 5
(adds LAUNCH_MIT_VECTOR at 0x1F8 and CURRENT_MIT_VECTOR at 0x200). A later version is refused
(:class:`~cvmlaunch.attest.errors.UnknownReportVersion`), never guessed at.

Rule 2: the input is the report exactly as the firmware returns it and as ``snpguest report``
writes it (binary, 0x4A0 bytes). Shorter or longer input is refused with its size: a report
followed by a certificate table, or a MSG_REPORT_RSP with its 0x20-byte header, is not a
report.

Layout (SEV-SNP Firmware ABI, "ATTESTATION_REPORT Structure"; little endian): VERSION u32
0x000, GUEST_SVN u32 0x004, POLICY u64 0x008, FAMILY_ID 16 0x010, IMAGE_ID 16 0x020, VMPL u32
0x030, SIGNATURE_ALGO u32 0x034, CURRENT_TCB u64 0x038, PLATFORM_INFO u64 0x040, key info u32
0x048 (AUTHOR_KEY_EN bit 0, MASK_CHIP_KEY bit 1, SIGNING_KEY bits 4:2), REPORT_DATA 64 0x050,
MEASUREMENT 48 0x090, HOST_DATA 32 0x0C0, ID_KEY_DIGEST 48 0x0E0, AUTHOR_KEY_DIGEST 48 0x110,
REPORT_ID 32 0x140, REPORT_ID_MA 32 0x160, REPORTED_TCB u64 0x180, CHIP_ID 64 0x1A0,
COMMITTED_TCB u64 0x1E0, CURRENT build/minor/major u8 0x1E8..0x1EA, COMMITTED build/minor/major
u8 0x1EC..0x1EE, LAUNCH_TCB u64 0x1F0, SIGNATURE 512 0x2A0 (R 72 bytes then S 72 bytes, each a
little-endian integer). The signature covers bytes 0x000..0x29F.

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
    "REPORT_SIZE",
    "SIGNATURE_ALGO_ECDSA_P384_SHA384",
    "SIGNED_SIZE",
    "VERSIONS",
    "SnpReport",
    "parse_snp_report",
]

#: Size of an ATTESTATION_REPORT.
REPORT_SIZE = 0x4A0
#: The signature covers the report up to the SIGNATURE field.
SIGNED_SIZE = 0x2A0
#: The report versions the SNP Firmware ABI defines (3 and 4 share a layout).
VERSIONS = (2, 3, 4, 5)
#: SIGNATURE_ALGO of ECDSA P-384 with SHA-384 (the only one the ABI defines).
SIGNATURE_ALGO_ECDSA_P384_SHA384 = 1
#: Size of each of R and S in the SIGNATURE field (little endian, zero padded).
_SIG_COMPONENT = 72

_HEAD = struct.Struct("<IIQ16s16sIIQQI")  # 0x000 .. 0x04B
_U64 = struct.Struct("<Q")


@dataclass(frozen=True, slots=True)
class SnpReport:
    """An SEV-SNP attestation report, field by field (names as in the ABI, lower case).

    TCB values are kept as the raw 64-bit TCB_VERSION (its byte layout differs between
    processor generations). Fields a version does not have are None.
    """

    version: int
    guest_svn: int
    policy: int
    family_id: bytes
    image_id: bytes
    vmpl: int
    signature_algo: int
    current_tcb: int
    platform_info: int
    author_key_en: bool
    mask_chip_key: bool
    signing_key: int
    report_data: bytes
    measurement: bytes
    host_data: bytes
    id_key_digest: bytes
    author_key_digest: bytes
    report_id: bytes
    report_id_ma: bytes
    reported_tcb: int
    cpuid_fam_id: int | None
    cpuid_mod_id: int | None
    cpuid_step: int | None
    chip_id: bytes
    committed_tcb: int
    current_version: tuple[int, int, int]
    committed_version: tuple[int, int, int]
    launch_tcb: int
    launch_mit_vector: int | None
    current_mit_vector: int | None
    signature_r: int
    signature_s: int
    raw: bytes

    @property
    def signed_bytes(self) -> bytes:
        """The bytes the signature covers (0x000..0x29F)."""
        return self.raw[:SIGNED_SIZE]

    def as_dict(self) -> dict[str, object]:
        """The fields as JSON-ready values (bytes as hex; versions as ``major.minor.build``)."""
        out: dict[str, object] = {}
        for name in self.__dataclass_fields__:
            if name in ("raw", "signature_r", "signature_s"):
                continue
            value = getattr(self, name)
            if isinstance(value, bytes):
                value = value.hex()
            elif isinstance(value, tuple):
                value = "{2}.{1}.{0}".format(*value)
            out[name] = value
        return out


def parse_snp_report(data: Buffer, *, name: str = "report") -> SnpReport:
    """Parse an ATTESTATION_REPORT.

    Args:
        data: exactly :data:`REPORT_SIZE` bytes.
        name: the input's name for messages.

    Raises:
        ReportFormatError: a size other than 0x4A0.
        UnknownReportVersion: a VERSION the ABI does not define (not in :data:`VERSIONS`).
    """
    raw = bytes(data)
    if len(raw) != REPORT_SIZE:
        what = "truncated" if len(raw) < REPORT_SIZE else "oversized"
        raise ReportFormatError(
            f"{what} SEV-SNP attestation report: {len(raw)} bytes, an ATTESTATION_REPORT is "
            f"{REPORT_SIZE} (0x{REPORT_SIZE:X})",
            source=name,
        )
    (
        version,
        guest_svn,
        policy,
        family_id,
        image_id,
        vmpl,
        signature_algo,
        current_tcb,
        platform_info,
        key_info,
    ) = _HEAD.unpack_from(raw, 0)
    if version not in VERSIONS:
        raise UnknownReportVersion(
            f"SEV-SNP attestation report version {version} is not one the SNP firmware ABI "
            f"defines ({', '.join(map(str, VERSIONS))})",
            source=name,
            offset=0,
        )

    def u64(offset: int) -> int:
        value: int = _U64.unpack_from(raw, offset)[0]
        return value

    has_cpuid = version >= 3
    has_mit = version >= 5
    signature = raw[SIGNED_SIZE:]
    return SnpReport(
        version=version,
        guest_svn=guest_svn,
        policy=policy,
        family_id=family_id,
        image_id=image_id,
        vmpl=vmpl,
        signature_algo=signature_algo,
        current_tcb=current_tcb,
        platform_info=platform_info,
        author_key_en=bool(key_info & 1),
        mask_chip_key=bool(key_info >> 1 & 1),
        signing_key=key_info >> 2 & 7,
        report_data=raw[0x050:0x090],
        measurement=raw[0x090:0x0C0],
        host_data=raw[0x0C0:0x0E0],
        id_key_digest=raw[0x0E0:0x110],
        author_key_digest=raw[0x110:0x140],
        report_id=raw[0x140:0x160],
        report_id_ma=raw[0x160:0x180],
        reported_tcb=u64(0x180),
        cpuid_fam_id=raw[0x188] if has_cpuid else None,
        cpuid_mod_id=raw[0x189] if has_cpuid else None,
        cpuid_step=raw[0x18A] if has_cpuid else None,
        chip_id=raw[0x1A0:0x1E0],
        committed_tcb=u64(0x1E0),
        current_version=(raw[0x1E8], raw[0x1E9], raw[0x1EA]),
        committed_version=(raw[0x1EC], raw[0x1ED], raw[0x1EE]),
        launch_tcb=u64(0x1F0),
        launch_mit_vector=u64(0x1F8) if has_mit else None,
        current_mit_vector=u64(0x200) if has_mit else None,
        signature_r=int.from_bytes(signature[:_SIG_COMPONENT], "little"),
        signature_s=int.from_bytes(signature[_SIG_COMPONENT : 2 * _SIG_COMPONENT], "little"),
        raw=raw,
    )
