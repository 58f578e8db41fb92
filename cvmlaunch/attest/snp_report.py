"""The SEV-SNP ATTESTATION_REPORT: parse 1184 bytes into a typed report.

Rule 1: every report version the SNP Firmware ABI defines is read, and no other: 2 (the
first), 3 and 4 (one layout: CPUID_FAM_ID / CPUID_MOD_ID / CPUID_STEP at 0x188..0x18A), 5
(adds LAUNCH_MIT_VECTOR at 0x1F8 and CURRENT_MIT_VECTOR at 0x200). A later version is refused
(:class:`~cvmlaunch.attest.errors.UnknownReportVersion`), never guessed at.

Rule 2: the input is the report exactly as the firmware returns it and as ``snpguest report``
writes it (binary, 0x4A0 bytes). Shorter or longer input is refused with its size: a report
followed by a certificate table, or a MSG_REPORT_RSP with its 0x20-byte header, is not a
report.

Layout: :data:`REPORT_FIELDS` (SEV-SNP Firmware ABI, "ATTESTATION_REPORT Structure"; little
endian), every field at its offset. The signature covers bytes 0x000..0x29F; its R and S are
72-byte little-endian integers.

Pure: bytes in, a frozen dataclass out.
"""

from __future__ import annotations

from dataclasses import dataclass

from cvmlaunch._struct import StructTable
from cvmlaunch.attest.errors import ReportFormatError, UnknownReportVersion

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cvmlaunch.layout import Buffer

__all__ = [
    "REPORT_FIELDS",
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
#: SEV-SNP Firmware ABI, Table "ATTESTATION_REPORT Structure" (little endian), 0x000..0x4A0.
#: Reserved ranges are padding; the fields of later versions are read whatever the version
#: (the parser keeps them only where the version defines them).
REPORT_FIELDS = StructTable(
    "ATTESTATION_REPORT",
    (
        ("version", 0x000, "I"),
        ("guest_svn", 0x004, "I"),
        ("policy", 0x008, "Q"),
        ("family_id", 0x010, "16s"),
        ("image_id", 0x020, "16s"),
        ("vmpl", 0x030, "I"),
        ("signature_algo", 0x034, "I"),
        ("current_tcb", 0x038, "Q"),
        ("platform_info", 0x040, "Q"),
        ("key_info", 0x048, "I"),  # AUTHOR_KEY_EN bit 0, MASK_CHIP_KEY bit 1, SIGNING_KEY 4:2
        ("reserved_04c", 0x04C, "4x"),
        ("report_data", 0x050, "64s"),
        ("measurement", 0x090, "48s"),
        ("host_data", 0x0C0, "32s"),
        ("id_key_digest", 0x0E0, "48s"),
        ("author_key_digest", 0x110, "48s"),
        ("report_id", 0x140, "32s"),
        ("report_id_ma", 0x160, "32s"),
        ("reported_tcb", 0x180, "Q"),
        ("cpuid_fam_id", 0x188, "B"),  # version 3+
        ("cpuid_mod_id", 0x189, "B"),  # version 3+
        ("cpuid_step", 0x18A, "B"),  # version 3+
        ("reserved_18b", 0x18B, "21x"),
        ("chip_id", 0x1A0, "64s"),
        ("committed_tcb", 0x1E0, "Q"),
        ("current_build", 0x1E8, "B"),
        ("current_minor", 0x1E9, "B"),
        ("current_major", 0x1EA, "B"),
        ("reserved_1eb", 0x1EB, "1x"),
        ("committed_build", 0x1EC, "B"),
        ("committed_minor", 0x1ED, "B"),
        ("committed_major", 0x1EE, "B"),
        ("reserved_1ef", 0x1EF, "1x"),
        ("launch_tcb", 0x1F0, "Q"),
        ("launch_mit_vector", 0x1F8, "Q"),  # version 5+
        ("current_mit_vector", 0x200, "Q"),  # version 5+
        ("reserved_208", 0x208, "152x"),
        ("signature_r", 0x2A0, "72s"),  # SIGNATURE: R, a little-endian integer
        ("signature_s", 0x2E8, "72s"),  # ... then S
        ("reserved_330", 0x330, "368x"),  # the rest of the 512-byte SIGNATURE
    ),
    end=REPORT_SIZE,
)


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
    f = REPORT_FIELDS.unpack(raw)
    version = f["version"]
    if version not in VERSIONS:
        raise UnknownReportVersion(
            f"SEV-SNP attestation report version {version} is not one the SNP firmware ABI "
            f"defines ({', '.join(map(str, VERSIONS))})",
            source=name,
            offset=0,
        )

    has_cpuid = version >= 3
    has_mit = version >= 5
    key_info = f["key_info"]
    return SnpReport(
        version=version,
        guest_svn=f["guest_svn"],
        policy=f["policy"],
        family_id=f["family_id"],
        image_id=f["image_id"],
        vmpl=f["vmpl"],
        signature_algo=f["signature_algo"],
        current_tcb=f["current_tcb"],
        platform_info=f["platform_info"],
        author_key_en=bool(key_info & 1),
        mask_chip_key=bool(key_info >> 1 & 1),
        signing_key=key_info >> 2 & 7,
        report_data=f["report_data"],
        measurement=f["measurement"],
        host_data=f["host_data"],
        id_key_digest=f["id_key_digest"],
        author_key_digest=f["author_key_digest"],
        report_id=f["report_id"],
        report_id_ma=f["report_id_ma"],
        reported_tcb=f["reported_tcb"],
        cpuid_fam_id=f["cpuid_fam_id"] if has_cpuid else None,
        cpuid_mod_id=f["cpuid_mod_id"] if has_cpuid else None,
        cpuid_step=f["cpuid_step"] if has_cpuid else None,
        chip_id=f["chip_id"],
        committed_tcb=f["committed_tcb"],
        current_version=(f["current_build"], f["current_minor"], f["current_major"]),
        committed_version=(f["committed_build"], f["committed_minor"], f["committed_major"]),
        launch_tcb=f["launch_tcb"],
        launch_mit_vector=f["launch_mit_vector"] if has_mit else None,
        current_mit_vector=f["current_mit_vector"] if has_mit else None,
        signature_r=int.from_bytes(f["signature_r"], "little"),
        signature_s=int.from_bytes(f["signature_s"], "little"),
        raw=raw,
    )
