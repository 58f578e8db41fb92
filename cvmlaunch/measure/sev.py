"""SEV and SEV-ES launch digests (GCTX.LD, SHA-256) of an OVMF guest, and their log.

Rule: one plan, folded. :func:`cvmlaunch.plan.sev.sev_updates` lists the LAUNCH_UPDATE_DATA /
LAUNCH_UPDATE_VMSA calls in order; the digest is SHA-256 over their bytes, in order, with no
addresses or types (AMD SEV API, LAUNCH_UPDATE_DATA: "the PSP updates the launch digest with
the plaintext"; LAUNCH_UPDATE_VMSA likewise for each VMSA page).

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

from cvmlaunch.errors import ConfigError, LogFormatError
from cvmlaunch.image.ovmf import OvmfImage
from cvmlaunch.layout import Buffer, PageType
from cvmlaunch.log_entry import LogEntry, LogOp
from cvmlaunch.plan.sev import SevSettings, sev_updates
from cvmlaunch.plan.sev_hashes import KernelHashes
from cvmlaunch.plan.vmsa import FpuInit, VmmType

TYPE_CHECKING = False
if TYPE_CHECKING:  # the log model is imported only when a log is made or read
    from cvmlaunch.measure.log import (
        ContentProvider,
        LogHeader,
        LogInput,
        MeasurementLog,
    )

__all__ = [
    "REPLAYERS",
    "SEV_ALGORITHM",
    "replay_sev",
    "sev_contents",
    "sev_digest",
    "sev_log",
    "sev_settings_from_header",
]

#: The ``algorithm`` of SEV and SEV-ES launch logs.
SEV_ALGORITHM = "sev-launch-sha256"


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
