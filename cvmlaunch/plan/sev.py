"""The plan of an SEV or SEV-ES launch: the LAUNCH_UPDATE_DATA / LAUNCH_UPDATE_VMSA calls QEMU
makes, in order (:func:`sev_updates`), and the settings that decide them (:class:`SevSettings`).

Rule 1: pure, like every plan builder (:mod:`cvmlaunch.plan`): an image and settings in, the
updates out. :mod:`cvmlaunch.measure.sev` folds them into the launch digest (GCTX.LD) and log.

Rule 2: what QEMU submits (target/i386/sev.c): the firmware image; then, with ``-kernel`` and a
firmware that reserves a hash table, the 176-byte kernel-hashes table at the table's GPA; then
(SEV-ES) one VMSA per vCPU, BSP first. An SEV update is bytes at a GPA of any length, not a
page-granular :class:`~cvmlaunch.layout.Plan`: SEV's digest has no addresses or page types.
"""

from __future__ import annotations

from dataclasses import dataclass

from cvmlaunch.errors import ConfigError, ImageError
from cvmlaunch.image.ovmf import OvmfImage
from cvmlaunch.layout import VMSA_GPA, Buffer, Provenance, SourceKind
from cvmlaunch.log_entry import LogOp
from cvmlaunch.plan.sev_hashes import KernelHashes
from cvmlaunch.plan.vmsa import (
    BSP_RESET_EIP,
    FpuInit,
    VmmType,
    check_vmsa_settings,
    vmsa_page,
)

TYPE_CHECKING = False
if TYPE_CHECKING:  # an annotation only: the plan does not import the measurement
    from cvmlaunch.measure.log import SettingValue

__all__ = ["SevSettings", "SevUpdate", "sev_updates"]


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
