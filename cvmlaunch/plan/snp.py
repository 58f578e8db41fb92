"""The SEV-SNP launch plan of an OVMF guest, and its launch with memory and vCPU states.

Rule 1: one source of truth. :func:`snp_plan` builds the ordered launch plan (the
LAUNCH_UPDATE ranges, then one VMSA per vCPU) that the KVM layer executes; the digest and
the log (:mod:`cvmlaunch.measure.snp`) are folds over that same plan, and :func:`snp_launch`
only attaches the guest's memory map and the vCPU states whose VMSAs the plan predicts. The
digest of a launch of the plan is therefore the digest of the plan.

Rule 2: every host-dependent knob is an explicit, validated field of :class:`SnpSettings`
(vCPU count and signature, VMM flavour, SEV_FEATURES, FPU initialisation, kernel hashes, a
precomputed firmware digest) and is written into the log header.

Rule 3: pure. No I/O, no KVM, no measurement: :mod:`cvmlaunch.kvm_map` executes the plan and
:mod:`cvmlaunch.measure` folds it; this module imports neither.

What QEMU + KVM submit, in order (QEMU target/i386/sev.c ``snp_launch_update_data``,
``snp_populate_metadata_pages``, ``sev_snp_launch_finish``; KVM ``snp_launch_update``,
``snp_launch_update_vmsa``):

1. the firmware image as NORMAL pages at 4 GiB - size;
2. the OVMF SEV metadata sections in file order: SNP_SEC_MEM as ZERO (QEMU, EC2) or
   UNMEASURED (GCE) pages, SNP_SECRETS as SECRETS, CPUID as CPUID (EC2 moves it after all
   other sections), SVSM_CAA as ZERO, SNP_KERNEL_HASHES as NORMAL pages holding the hashes
   table when kernel hashes are on, else ZERO; zero-length sections contribute nothing;
3. one VMSA page per vCPU (BSP, then the APs), each at GPA 0xFFFFFFFFF000.
"""

from __future__ import annotations

from dataclasses import dataclass

from cvmlaunch.errors import ConfigError, ImageError
from cvmlaunch.image.ovmf import OvmfImage, SevSection
from cvmlaunch.layout import (
    FOUR_GIB,
    PAGE_SIZE,
    VMSA_GPA,
    PageType,
    Plan,
    Provenance,
    Region,
    SevSectionType,
    SourceKind,
)
from cvmlaunch.plan.vmsa import (
    BSP_RESET_EIP,
    MAX_VCPUS,
    FpuInit,
    VmmType,
    check_vmsa_settings,
    svsm_vmsa_page,
    vmsa_page,
)

TYPE_CHECKING = False
if TYPE_CHECKING:  # the log model and the kernel hashes are imported only when used
    from cvmlaunch.measure.log import SettingValue
    from cvmlaunch.plan.sev_hashes import KernelHashes
    from cvmlaunch.vcpu_state import VcpuState

__all__ = [
    "MAX_VCPUS",
    "SnpLaunch",
    "SnpSettings",
    "firmware_plan",
    "snp_launch",
    "snp_prefix_plan",
    "snp_vmsa_pages",
    "svsm_plan",
]

_SNP_ACTIVE = 0x1


@dataclass(frozen=True, slots=True)
class SnpSettings:
    """Everything besides the images that decides an SNP launch digest.

    Args:
        vcpus: number of vCPUs (1..:data:`MAX_VCPUS`): one VMSA each.
        vcpu_sig: CPUID Fn0000_0001 EAX in RDX of the VMSAs (QEMU; EC2/GCE use 0x600). Zero
            is a legal value.
        vmm: the VMM flavour.
        guest_features: SEV_FEATURES; KVM always sets SNPActive (bit 0) for SNP guests.
        kernel_hashes: the hashes table for measured direct boot (QEMU ``kernel-hashes=on``
            with ``-kernel``), or None (the kernel-hashes page is then a ZERO page).
        ovmf_hash: a precomputed digest of the firmware pages (``snp:ovmf-hash``) to start
            from instead of measuring the firmware, or None.
        fpu: the FPU fields of the VMSAs; SNP hosts since Linux 6.10 always give INIT2.

    Raises:
        ConfigError: a value out of range.
    """

    vcpus: int
    vcpu_sig: int
    vmm: VmmType = VmmType.QEMU
    guest_features: int = _SNP_ACTIVE
    kernel_hashes: KernelHashes | None = None
    ovmf_hash: bytes | None = None
    fpu: FpuInit = FpuInit.INIT2

    def __post_init__(self) -> None:
        check_vmsa_settings(self.vcpus, self.vcpu_sig, self.guest_features)
        if not self.guest_features & _SNP_ACTIVE:
            raise ConfigError(
                f"guest_features {self.guest_features:#x} lack SNPActive (bit 0), which KVM "
                "always sets for SNP guests",
                setting="guest_features",
            )
        if self.ovmf_hash is not None and len(self.ovmf_hash) != 48:
            raise ConfigError(
                f"ovmf_hash: the firmware digest must be 48 bytes (96 hex digits), not "
                f"{len(self.ovmf_hash)}",
                setting="ovmf_hash",
            )

    def log_settings(self) -> dict[str, SettingValue]:
        """The settings as written into a log header."""
        out: dict[str, SettingValue] = {
            "vcpus": self.vcpus,
            "vcpu_sig": self.vcpu_sig,
            "vmm_type": self.vmm.value,
            "guest_features": self.guest_features,
            "fpu": self.fpu.value,
            "kernel_hashes": self.kernel_hashes is not None,
            "ovmf_hash_seed": self.ovmf_hash is not None,
        }
        if self.kernel_hashes is not None:
            out["kernel_sha256"] = self.kernel_hashes.kernel.hex()
            out["initrd_sha256"] = self.kernel_hashes.initrd.hex()
            out["cmdline_sha256"] = self.kernel_hashes.cmdline.hex()
        return out


def _require_sections(image: OvmfImage) -> tuple[SevSection, ...]:
    if image.sev_sections is None:
        raise ImageError(
            "no SEV metadata (GUID dc886566-984a-4798-a75e-5585a7bf67cc): not an SEV-SNP "
            "capable OVMF build",
            source=image.name,
        )
    return image.sev_sections


def _firmware_region(image: OvmfImage, gpa: int | None = None) -> Region:
    return Region(
        gpa=image.gpa if gpa is None else gpa,
        size=image.size,
        page_type=PageType.NORMAL,
        measured=True,
        provenance=Provenance(SourceKind.FILE, image.name, offset=0),
        data=image.data,
    )


def _metadata_regions(image: OvmfImage, vmm: VmmType, hashes: KernelHashes | None) -> list[Region]:
    """The metadata sections of ``image`` as populate ranges, in QEMU's order."""
    sections = _require_sections(image)
    regions: list[Region] = []
    cpuid_last: list[Region] = []
    has_hashes_section = False
    for s in sections:
        if s.type is SevSectionType.SNP_KERNEL_HASHES:
            has_hashes_section = True
        if s.size == 0:
            continue
        where = Provenance(
            SourceKind.FIRMWARE_SECTION, image.name, index=s.index, detail=s.type.name
        )
        data = b""
        if s.type is SevSectionType.SNP_SEC_MEM:
            page_type = PageType.UNMEASURED if vmm is VmmType.GCE else PageType.ZERO
        elif s.type is SevSectionType.SNP_SECRETS:
            page_type = PageType.SECRETS
        elif s.type is SevSectionType.CPUID:
            page_type = PageType.CPUID
        elif s.type is SevSectionType.SVSM_CAA:
            page_type = PageType.ZERO
        elif s.type is SevSectionType.SNP_KERNEL_HASHES:
            if hashes is None:
                page_type = PageType.ZERO
            else:
                offset = _hash_table_offset(image)
                page_type = PageType.NORMAL
                data = hashes.page_data(offset, s.size, source=image.name)
                where = Provenance(
                    SourceKind.GENERATED,
                    "sev-kernel-hashes",
                    index=s.index,
                    detail=f"SNP_KERNEL_HASHES, table at +{offset:#x}",
                )
        else:  # pragma: no cover - SevSectionType is closed; the parser rejects others
            raise ImageError(f"SEV metadata section {s.index}: unhandled type", source=image.name)
        region = Region(s.gpa, s.size, page_type, page_type.hashes_contents, where, data)
        if s.type is SevSectionType.CPUID and vmm is VmmType.EC2:
            cpuid_last.append(region)
        else:
            regions.append(region)
    if hashes is not None and not has_hashes_section:
        raise ImageError(
            "kernel hashes requested, but the firmware's SEV metadata has no "
            "SNP_KERNEL_HASHES section (use an AmdSev/generic OVMF build with kernel-hashes "
            "support)",
            source=image.name,
        )
    return regions + cpuid_last


def _hash_table_offset(image: OvmfImage) -> int:
    if not image.has_kernel_hashes or image.sev_hash_table is None:
        raise ImageError(
            "kernel hashes requested, but the firmware has no SEV hash table GUID entry "
            "(7255371f-3a3b-4b04-927b-1da6efa8d454) with a non-zero base",
            source=image.name,
        )
    from cvmlaunch.plan.sev_hashes import HASH_TABLE_SIZE  # loaded: hashes were given

    base, size = image.sev_hash_table
    if size < HASH_TABLE_SIZE:  # QEMU: "guest firmware hashes table area is invalid"
        raise ImageError(
            f"the SEV hash table area at {base:#x} is {size} bytes; QEMU requires at least "
            f"{HASH_TABLE_SIZE} (the padded table)",
            source=image.name,
        )
    return base & (PAGE_SIZE - 1)


def _vmsa_regions(bsp: bytes, ap: bytes, vcpus: int) -> list[Region]:
    regions: list[Region] = []
    for i in range(vcpus):
        page = bsp if i == 0 else ap
        regions.append(
            Region(
                VMSA_GPA,
                PAGE_SIZE,
                PageType.VMSA,
                True,
                Provenance(SourceKind.VMSA, index=i, detail="BSP" if i == 0 else "AP"),
                page,
            )
        )
    return regions


def _ap_eip(image: OvmfImage, vcpus: int) -> int | None:
    if vcpus == 1:
        return image.sev_es_reset_eip
    eip = image.sev_es_reset_eip
    if not eip:
        raise ImageError(
            "no SEV-ES reset block (GUID 00f771de-1a7e-4fcb-890e-68c77e2fb44e) or a zero AP "
            f"reset address: cannot start {vcpus - 1} AP(s)",
            source=image.name,
        )
    return eip


def _prefix_regions(image: OvmfImage, settings: SnpSettings) -> list[Region]:
    regions: list[Region] = []
    if settings.ovmf_hash is None:
        regions.append(_firmware_region(image))
    regions += _metadata_regions(image, settings.vmm, settings.kernel_hashes)
    return regions


def snp_vmsa_pages(image: OvmfImage, settings: SnpSettings) -> tuple[bytes, bytes]:
    """The BSP's and the APs' VMSA pages for ``settings`` (the AP page is the BSP's when
    ``settings.vcpus`` is 1).

    Raises:
        ImageError: APs without an SEV-ES reset block.
    """
    ap_eip = _ap_eip(image, settings.vcpus)

    def page(eip: int) -> bytes:
        return vmsa_page(
            eip=eip,
            vcpu_sig=settings.vcpu_sig,
            sev_features=settings.guest_features,
            vmm=settings.vmm,
            fpu=settings.fpu,
        )

    bsp = page(BSP_RESET_EIP)
    ap = page(ap_eip) if settings.vcpus > 1 and ap_eip is not None else bsp
    return bsp, ap


def snp_plan(image: OvmfImage, settings: SnpSettings) -> Plan:
    """The SNP launch plan of an OVMF guest under QEMU/EC2/GCE + KVM.

    With ``settings.ovmf_hash`` the firmware region is left out (its digest is the seed).

    Args:
        image: the parsed firmware.
        settings: the launch settings.

    Returns:
        The plan: firmware, metadata sections (:func:`snp_prefix_plan`), VMSAs.

    Raises:
        ImageError: no SEV metadata; kernel hashes with a firmware that cannot take them; APs
            without an SEV-ES reset block.
        LayoutError: overlapping metadata sections.
    """
    regions = _prefix_regions(image, settings)
    bsp, ap = snp_vmsa_pages(image, settings)
    regions += _vmsa_regions(bsp, ap, settings.vcpus)
    return Plan.of(regions)


def snp_prefix_plan(image: OvmfImage, settings: SnpSettings) -> Plan:
    """The part of :func:`snp_plan` that does not depend on the vCPUs: the firmware pages
    (unless ``settings.ovmf_hash`` seeds the fold), then the metadata sections with the
    kernel-hashes page. Its regions are the first regions of every :func:`snp_plan` with
    the same image, ``vmm``, ``kernel_hashes`` and ``ovmf_hash``, whatever the vCPU count,
    signature, guest features or FPU setting.

    Raises:
        ImageError, LayoutError: see :func:`snp_plan`.
    """
    return Plan.of(_prefix_regions(image, settings))


def svsm_plan(ovmf: OvmfImage, svsm: OvmfImage, settings: SnpSettings, *, vars_size: int) -> Plan:
    """The SNP launch plan of QEMU with a Coconut SVSM image below OVMF.

    OVMF pages at 4 GiB - size; the SVSM image pages ending at ``ovmf.gpa - vars_size``; the
    **SVSM image's** metadata sections (QEMU page types; OVMF's are not used and there are no
    kernel hashes); then one identical VMSA per vCPU entering the SVSM in 32-bit protected mode
    at its GPA + the SVSM-info entry offset, SEV_FEATURES 0x1.

    Args:
        ovmf: the firmware.
        svsm: the SVSM image (OVMF-style: GUID footer table, SEV metadata, SVSM info entry).
        settings: vcpus, vcpu_sig and fpu are used; ``vmm`` must be QEMU and
            ``guest_features`` 0x1; kernel hashes and a seed are not supported.
        vars_size: size of the firmware vars (the OVMF_VARS file) between SVSM and OVMF.

    Raises:
        ConfigError: settings this mode cannot honour, or a bad ``vars_size``.
        ImageError: an SVSM image without SVSM-info entry or SEV metadata.
    """
    if settings.vmm is not VmmType.QEMU:
        raise ConfigError("snp:svsm is only defined for QEMU")
    if settings.guest_features != _SNP_ACTIVE:
        raise ConfigError("snp:svsm launches use guest features 0x1 (SNPActive only)")
    if settings.kernel_hashes is not None or settings.ovmf_hash is not None:
        raise ConfigError("snp:svsm takes neither kernel hashes nor a firmware digest seed")
    if vars_size < 0 or vars_size % PAGE_SIZE:
        raise ConfigError(f"vars size {vars_size:#x} is not a non-negative multiple of 4 KiB")
    if svsm.svsm_entry_offset is None:
        raise ImageError(
            "no SVSM info entry (GUID a789a612-0597-4c4b-a49f-cbb1fe9d1ddd): not an SVSM image",
            source=svsm.name,
        )
    svsm_gpa = ovmf.gpa - vars_size - svsm.size
    if svsm_gpa < 0 or svsm_gpa + svsm.size > FOUR_GIB:
        raise ConfigError(f"the SVSM image does not fit below the firmware (vars {vars_size:#x})")
    regions = [_firmware_region(ovmf), _firmware_region(svsm, svsm_gpa)]
    regions += _metadata_regions(svsm, VmmType.QEMU, None)
    page = svsm_vmsa_page(
        eip=svsm_gpa + svsm.svsm_entry_offset, vcpu_sig=settings.vcpu_sig, fpu=settings.fpu
    )
    regions += _vmsa_regions(page, page, settings.vcpus)
    return Plan.of(regions)


def firmware_plan(image: OvmfImage) -> Plan:
    """The plan of ``snp:ovmf-hash``: the firmware pages alone."""
    return Plan.of([_firmware_region(image)])


@dataclass(frozen=True, slots=True)
class SnpLaunch:
    """An SNP launch of an OVMF image.

    Args:
        plan: :func:`snp_plan`'s plan with the memory map.
        states: each vCPU's register state, BSP first (KVM turns each into the VMSA the plan's
            VMSA region holds).
        settings: the measurement settings the plan was built with.
    """

    plan: Plan
    states: tuple[VcpuState, ...]
    settings: SnpSettings


def snp_launch(image: OvmfImage, settings: SnpSettings, memory: int) -> SnpLaunch:
    """The SNP launch of ``image`` under ``settings``, in ``memory`` bytes of RAM.

    Raises:
        ConfigError: settings a launch cannot honour (a firmware digest seed, a VMM other
            than QEMU, whose vCPU state this launcher reproduces), too little memory.
        ImageError: see :func:`snp_plan`.
    """
    from cvmlaunch.plan._memory import in_memory
    from cvmlaunch.vcpu_state import snp_reset_state

    if settings.ovmf_hash is not None:
        raise ConfigError("a launch populates the firmware: it takes no firmware digest seed")
    if settings.vmm is not VmmType.QEMU:
        raise ConfigError(
            f"cvmlaunch launches vCPUs in QEMU's reset state, not {settings.vmm.value}'s"
        )
    plan = in_memory(snp_plan(image, settings), image, memory)
    states = [snp_reset_state(eip=BSP_RESET_EIP, vcpu_sig=settings.vcpu_sig, bsp=True)]
    if settings.vcpus > 1:
        ap_eip = image.sev_es_reset_eip
        if not ap_eip:  # pragma: no cover - snp_plan refuses this first
            raise ImageError("no SEV-ES AP reset address", source=image.name)
        ap = snp_reset_state(eip=ap_eip, vcpu_sig=settings.vcpu_sig, bsp=False)
        states += [ap] * (settings.vcpus - 1)
    return SnpLaunch(plan, tuple(states), settings)
