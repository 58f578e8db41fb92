"""SEV and SEV-ES launch digests (GCTX.LD, SHA-256) of an OVMF guest, and their log.

Rule: one plan, folded. :func:`sev_updates` lists the LAUNCH_UPDATE_DATA / LAUNCH_UPDATE_VMSA
calls in order; the digest is SHA-256 over their bytes, in order, with no addresses or types
(AMD SEV API, LAUNCH_UPDATE_DATA: "the PSP updates the launch digest with the plaintext";
LAUNCH_UPDATE_VMSA likewise for each VMSA page).

What QEMU submits (target/i386/sev.c): the firmware image; then, with ``-kernel`` and a
firmware that reserves a hash table, the 176-byte kernel-hashes table at the table's GPA; then
(SEV-ES) one VMSA per vCPU, BSP first. SEV-ES VMSAs carry MXCSR/FCW only for VMs created with
KVM_SEV_INIT2 (QEMU ``legacy-vm-type=off``); QEMU 9.1+'s default creates SEV-ES VMs through the
legacy KVM_SEV_ES_INIT, which leaves them 0 and SEV_FEATURES 0.

The value QEMU reports for SEV/SEV-ES (``query-sev-launch-measure``) is an HMAC over this
digest keyed with the TIK; a verifier does that step itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from cvmlaunch.errors import ConfigError, ImageError, LogFormatError
from cvmlaunch.image.ovmf import OvmfImage
from cvmlaunch.layout import (
    VMSA_GPA,
    Buffer,
    PageType,
    Provenance,
    SourceKind,
)
from cvmlaunch.log_entry import LogEntry, LogOp
from cvmlaunch.plan.sev_hashes import KernelHashes
from cvmlaunch.plan.vmsa import (
    BSP_RESET_EIP,
    FpuInit,
    VmmType,
    check_vmsa_settings,
    vmsa_page,
)

TYPE_CHECKING = False
if TYPE_CHECKING:  # the log model is imported only when a log is made or read
    from cvmlaunch.measure.log import (
        ContentProvider,
        LogHeader,
        LogInput,
        MeasurementLog,
        SettingValue,
    )

__all__ = [
    "REPLAYERS",
    "SEV_ALGORITHM",
    "SevSettings",
    "SevUpdate",
    "replay_sev",
    "sev_contents",
    "sev_digest",
    "sev_log",
    "sev_settings_from_header",
    "sev_updates",
]

#: The ``algorithm`` of SEV and SEV-ES launch logs.
SEV_ALGORITHM = "sev-launch-sha256"


@dataclass(frozen=True, slots=True)
class SevSettings:
    """Everything besides the firmware that decides an SEV or SEV-ES launch digest.

    Args:
        es: SEV-ES (VMSAs are measured) rather than plain SEV.
        vcpus: number of vCPUs (SEV-ES: one VMSA each; 1..4096).
        vcpu_sig: CPUID Fn0000_0001 EAX in RDX of the VMSAs (QEMU).
        vmm: the VMM flavour of the VMSAs.
        guest_features: SEV_FEATURES of the VMSAs (0 for legacy KVM_SEV_ES_INIT VMs).
        kernel_hashes: the hashes table for measured direct boot, or None.
        fpu: LEGACY (QEMU 9.1+ default SEV-ES launch: MXCSR = FCW = 0) or INIT2
            (``legacy-vm-type=off``: 0x1F80 / 0x37F, what sev-snp-measure assumes).

    Raises:
        ConfigError: a value out of range.
    """

    es: bool
    vcpus: int = 1
    vcpu_sig: int = 0
    vmm: VmmType = VmmType.QEMU
    guest_features: int = 0
    kernel_hashes: KernelHashes | None = None
    fpu: FpuInit = FpuInit.LEGACY

    def __post_init__(self) -> None:
        check_vmsa_settings(self.vcpus, self.vcpu_sig, self.guest_features)
        if self.fpu is FpuInit.LEGACY and self.guest_features:
            raise ConfigError(
                "legacy (KVM_SEV_ES_INIT) SEV-ES VMs have guest_features 0; use INIT2 for others",
                setting="guest_features",
            )

    def log_settings(self) -> dict[str, SettingValue]:
        """The settings as written into a log header."""
        out: dict[str, SettingValue] = {"kernel_hashes": self.kernel_hashes is not None}
        if self.es:
            out.update(
                vcpus=self.vcpus,
                vcpu_sig=self.vcpu_sig,
                vmm_type=self.vmm.value,
                guest_features=self.guest_features,
                fpu=self.fpu.value,
            )
        if self.kernel_hashes is not None:
            out["kernel_sha256"] = self.kernel_hashes.kernel.hex()
            out["initrd_sha256"] = self.kernel_hashes.initrd.hex()
            out["cmdline_sha256"] = self.kernel_hashes.cmdline.hex()
        return out


@dataclass(frozen=True, slots=True, eq=False)
class SevUpdate:
    """One LAUNCH_UPDATE_DATA or LAUNCH_UPDATE_VMSA call: bytes at a GPA (any length)."""

    op: LogOp
    gpa: int
    data: Buffer
    provenance: Provenance


def sev_updates(image: OvmfImage, settings: SevSettings) -> tuple[SevUpdate, ...]:
    """The SEV/SEV-ES launch updates, in order.

    Raises:
        ImageError: kernel hashes with a firmware without a hash table; APs without an SEV-ES
            reset block.
    """
    plan = [
        SevUpdate(
            LogOp.SEV_LAUNCH_UPDATE_DATA,
            image.gpa,
            image.data,
            Provenance(SourceKind.FILE, image.name, offset=0),
        )
    ]
    if settings.kernel_hashes is not None:
        if not image.has_kernel_hashes or image.sev_hash_table is None:
            raise ImageError(
                "kernel hashes requested, but the firmware has no SEV hash table GUID entry "
                "(7255371f-3a3b-4b04-927b-1da6efa8d454) with a non-zero base",
                source=image.name,
            )
        plan.append(
            SevUpdate(
                LogOp.SEV_LAUNCH_UPDATE_DATA,
                image.sev_hash_table[0],
                settings.kernel_hashes.table(),
                Provenance(SourceKind.GENERATED, "sev-kernel-hashes"),
            )
        )
    if settings.es:
        ap_eip = image.sev_es_reset_eip
        if settings.vcpus > 1 and not ap_eip:
            raise ImageError(
                "no SEV-ES reset block (GUID 00f771de-1a7e-4fcb-890e-68c77e2fb44e) or a zero AP "
                f"reset address: cannot start {settings.vcpus - 1} AP(s)",
                source=image.name,
            )
        pages: dict[int, bytes] = {}
        for i in range(settings.vcpus):
            eip = BSP_RESET_EIP if i == 0 else (ap_eip or 0)
            if eip not in pages:
                pages[eip] = vmsa_page(
                    eip=eip,
                    vcpu_sig=settings.vcpu_sig,
                    sev_features=settings.guest_features,
                    vmm=settings.vmm,
                    fpu=settings.fpu,
                )
            plan.append(
                SevUpdate(
                    LogOp.SEV_LAUNCH_UPDATE_VMSA,
                    VMSA_GPA,
                    pages[eip],
                    Provenance(SourceKind.VMSA, index=i, detail="BSP" if i == 0 else "AP"),
                )
            )
    return tuple(plan)


def sev_digest(image: OvmfImage, settings: SevSettings) -> bytes:
    """The SEV / SEV-ES launch digest (32 bytes): SHA-256 over the plan's bytes in order."""
    h = hashlib.sha256()
    for update in sev_updates(image, settings):
        h.update(update.data)
    return h.digest()


def replay_sev(
    header: LogHeader,
    entries: Sequence[LogEntry],
    contents: ContentProvider | None = None,
) -> Iterator[bytes]:
    """Replay an SEV/SEV-ES log: SHA-256 over each range's bytes (from ``contents``).

    Raises:
        ConfigError: no ``contents`` (the SHA-256 stream needs the measured bytes).
        LogFormatError: a range whose contents have a different length.
    """
    if contents is None:
        raise ConfigError(
            "replaying an SEV/SEV-ES log needs the measured bytes (give the inputs); the log "
            "alone carries only SHA-384s of each range"
        )
    h = hashlib.sha256()
    for entry in entries:
        data = contents(entry)
        if len(data) != entry.size:
            raise LogFormatError(f"record {entry.seq}: contents are {len(data)} bytes")
        h.update(data)
        yield h.copy().digest()


#: Read by :func:`cvmlaunch.measure.log.get_replayer` (keys: technology value, algorithm).
REPLAYERS = {("sev", SEV_ALGORITHM): replay_sev, ("sev-es", SEV_ALGORITHM): replay_sev}


def sev_log(
    image: OvmfImage,
    settings: SevSettings,
    *,
    inputs: tuple[LogInput, ...],
    tool_version: str,
) -> MeasurementLog:
    """The launch log of an SEV/SEV-ES launch: one record per update, running SHA-256."""
    from cvmlaunch.digests import entry_for_range
    from cvmlaunch.measure.log import LogFooter, LogHeader, MeasurementLog, Technology

    values = settings.log_settings()
    values["mode"] = "seves" if settings.es else "sev"
    header = LogHeader(
        technology=Technology.SEV_ES if settings.es else Technology.SEV,
        algorithm=SEV_ALGORITHM,
        settings=values,
        inputs=inputs,
        tool_version=tool_version,
        initial_digest=None,
    )
    h = hashlib.sha256()
    entries: list[LogEntry] = []
    for seq, update in enumerate(sev_updates(image, settings)):
        h.update(update.data)
        is_vmsa = update.op is LogOp.SEV_LAUNCH_UPDATE_VMSA
        entries.append(
            entry_for_range(
                seq=seq,
                op=update.op,
                gpa=update.gpa,
                size=len(update.data),
                page_type=PageType.VMSA if is_vmsa else PageType.NORMAL,
                measured=True,
                provenance=update.provenance,
                data=update.data,
                with_pages=False,
                digest_after=h.copy().digest(),
            )
        )
    digest = h.digest()
    return MeasurementLog(header, tuple(entries), LogFooter(digest=digest, records=len(entries)))


def _setting(header: LogHeader, key: str, kind: type, default: object) -> object:
    value = header.settings.get(key, default)
    if not isinstance(value, kind) or isinstance(value, bool) is not (kind is bool):
        raise LogFormatError(f"log header setting {key} must be {kind.__name__}")
    return value


def sev_settings_from_header(header: LogHeader) -> SevSettings:
    """Rebuild :class:`SevSettings` from an SEV/SEV-ES log header.

    Raises:
        LogFormatError: a missing or mistyped setting.
        ConfigError: settings out of range.
    """
    from cvmlaunch.measure.log import Technology

    es = header.technology is Technology.SEV_ES
    hashes = None
    if _setting(header, "kernel_hashes", bool, False):
        try:
            hashes = KernelHashes(
                kernel=bytes.fromhex(str(_setting(header, "kernel_sha256", str, ""))),
                initrd=bytes.fromhex(str(_setting(header, "initrd_sha256", str, ""))),
                cmdline=bytes.fromhex(str(_setting(header, "cmdline_sha256", str, ""))),
            )
        except ValueError as exc:
            raise LogFormatError(f"log header kernel hashes: {exc}") from exc
    if not es:
        return SevSettings(es=False, kernel_hashes=hashes)
    try:
        vmm = VmmType(_setting(header, "vmm_type", str, "QEMU"))
        fpu = FpuInit(_setting(header, "fpu", str, "legacy"))
    except ValueError as exc:
        raise LogFormatError(f"log header: {exc}") from exc
    return SevSettings(
        es=True,
        vcpus=int(str(_setting(header, "vcpus", int, 1))),
        vcpu_sig=int(str(_setting(header, "vcpu_sig", int, 0))),
        vmm=vmm,
        guest_features=int(str(_setting(header, "guest_features", int, 0))),
        kernel_hashes=hashes,
        fpu=fpu,
    )


def sev_contents(header: LogHeader, image: OvmfImage) -> ContentProvider:
    """The measured bytes of each record of an SEV/SEV-ES log, rebuilt from the firmware and
    the header's settings (for :func:`~cvmlaunch.measure.log.verify_log`).

    Raises:
        LogFormatError, ConfigError: see :func:`sev_settings_from_header`.
        ImageError: see :func:`sev_updates`.
    """
    plan = sev_updates(image, sev_settings_from_header(header))

    def contents(entry: LogEntry) -> Buffer:
        if entry.seq >= len(plan):
            raise LogFormatError(
                f"record {entry.seq}: the firmware and settings give only {len(plan)} updates"
            )
        return plan[entry.seq].data

    return contents
