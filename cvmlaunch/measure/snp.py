"""The SEV-SNP launch plan of an OVMF guest, and its launch digest and log.

Rule 1: one source of truth. :func:`snp_layout` builds the ordered launch plan (the
LAUNCH_UPDATE ranges, then one VMSA per vCPU) that the KVM layer executes; the digest
(:func:`snp_digest`) and the log (:func:`snp_log`) are folds over that same plan
(:mod:`cvmlaunch.measure.snp_chain`).

Rule 2: every host-dependent knob is an explicit, validated field of :class:`SnpSettings`
(vCPU count and signature, VMM flavour, SEV_FEATURES, FPU initialisation, kernel hashes, a
precomputed firmware digest) and is written into the log header.

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

import enum
from dataclasses import dataclass, replace

from cvmlaunch.errors import ConfigError, ImageError
from cvmlaunch.image.ovmf import OvmfImage, SevSection
from cvmlaunch.layout import (
    FOUR_GIB,
    PAGE_SIZE,
    VMSA_GPA,
    Layout,
    PageType,
    Provenance,
    Region,
    SevSectionType,
    SourceKind,
)
from cvmlaunch.measure.snp_chain import (
    SNP_ALGORITHM,
    ZERO_DIGEST,
    FoldState,
    fold_from,
    fold_layout,
    fold_vmsas,
    log_layout,
)
from cvmlaunch.measure.vmsa import BSP_RESET_EIP, FpuInit, VmmType, svsm_vmsa_page, vmsa_page

TYPE_CHECKING = False
if TYPE_CHECKING:  # the log model and the kernel hashes are imported only when used
    from collections.abc import Sequence

    from cvmlaunch.measure.log import LogInput, MeasurementLog, SettingValue
    from cvmlaunch.measure.sev_hashes import KernelHashes

__all__ = [
    "MAX_VCPUS",
    "SevMode",
    "SnpSettings",
    "firmware_layout",
    "snp_digest",
    "snp_digest_set",
    "snp_layout",
    "snp_log",
    "snp_ovmf_hash",
    "snp_prefix_layout",
    "snp_vmsa_pages",
    "svsm_layout",
]

#: The largest vCPU count accepted: x86 KVM's highest KVM_MAX_VCPUS (CONFIG_KVM_MAX_NR_VCPUS).
MAX_VCPUS = 4096
_SNP_ACTIVE = 0x1


class SevMode(enum.Enum):
    """What to measure (the value is sev-snp-measure's ``--mode`` name)."""

    SNP = "snp"
    SNP_OVMF_HASH = "snp:ovmf-hash"  # only the firmware pages; reusable as a seed
    SNP_SVSM = "snp:svsm"  # OVMF + Coconut SVSM image
    SEV_ES = "seves"
    SEV = "sev"


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
        if isinstance(self.vcpus, bool) or not 1 <= self.vcpus <= MAX_VCPUS:
            raise ConfigError(
                f"vcpus: vCPU count {self.vcpus} is out of range (1..{MAX_VCPUS})", setting="vcpus"
            )
        if not 0 <= self.vcpu_sig <= 0xFFFF_FFFF:
            raise ConfigError(
                f"vcpu_sig {self.vcpu_sig:#x} is not a 32-bit value", setting="vcpu_sig"
            )
        if not 0 <= self.guest_features < 1 << 64:
            raise ConfigError(
                f"guest_features {self.guest_features:#x} is not a 64-bit value",
                setting="guest_features",
            )
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
    from cvmlaunch.measure.sev_hashes import HASH_TABLE_SIZE  # loaded: hashes were given

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


def snp_layout(image: OvmfImage, settings: SnpSettings) -> Layout:
    """The SNP launch plan of an OVMF guest under QEMU/EC2/GCE + KVM.

    With ``settings.ovmf_hash`` the firmware region is left out (its digest is the seed).

    Args:
        image: the parsed firmware.
        settings: the launch settings.

    Returns:
        The plan: firmware, metadata sections (:func:`snp_prefix_layout`), VMSAs.

    Raises:
        ImageError: no SEV metadata; kernel hashes with a firmware that cannot take them; APs
            without an SEV-ES reset block.
        LayoutError: overlapping metadata sections.
    """
    regions = _prefix_regions(image, settings)
    bsp, ap = snp_vmsa_pages(image, settings)
    regions += _vmsa_regions(bsp, ap, settings.vcpus)
    return Layout.of(regions)


def snp_prefix_layout(image: OvmfImage, settings: SnpSettings) -> Layout:
    """The part of :func:`snp_layout` that does not depend on the vCPUs: the firmware pages
    (unless ``settings.ovmf_hash`` seeds the fold), then the metadata sections with the
    kernel-hashes page. Its regions are the first regions of every :func:`snp_layout` with
    the same image, ``vmm``, ``kernel_hashes`` and ``ovmf_hash``, whatever the vCPU count,
    signature, guest features or FPU setting.

    Raises:
        ImageError, LayoutError: see :func:`snp_layout`.
    """
    return Layout.of(_prefix_regions(image, settings))


def snp_digest_set(
    image: OvmfImage,
    settings: SnpSettings,
    vcpu_sigs: Sequence[int],
    vcpu_counts: Sequence[int],
    *,
    prefix: FoldState | None = None,
    workers: int | None = None,
) -> dict[tuple[int, int], bytes]:
    """The launch digest of every (vCPU signature, vCPU count) combination.

    The shared prefix (:func:`snp_prefix_layout`) is folded once (or taken from ``prefix``, a
    state saved from an earlier fold of it); then, per signature, the VMSAs of every count
    come out of one pass (:func:`cvmlaunch.measure.snp_chain.fold_vmsas`). Each digest equals
    ``snp_digest(image, replace(settings, vcpu_sig=sig, vcpus=count))``.

    Args:
        image: the parsed firmware.
        settings: every setting but ``vcpus`` and ``vcpu_sig``, which are ignored.
        vcpu_sigs: the signatures (duplicates are computed once).
        vcpu_counts: the counts (1..:data:`MAX_VCPUS`).
        prefix: the fold state after the prefix, if already known (its ``regions`` must be
            the prefix's region count).
        workers: content-hashing threads for the firmware (see
            :func:`cvmlaunch.measure.snp_chain.fold_region`).

    Returns:
        ``{(vcpu_sig, vcpus): digest}``.

    Raises:
        ConfigError: a count or signature out of range, or a ``prefix`` of another length.
        ImageError, LayoutError: see :func:`snp_layout`.
    """
    counts = sorted(set(vcpu_counts))
    if not counts:
        return {}
    for count in counts:  # the settings' own checks, with the messages users know
        replace(settings, vcpus=count)
    top = replace(settings, vcpus=counts[-1])
    plan = snp_prefix_layout(image, top)
    if prefix is None:
        prefix = fold_from(plan, FoldState(settings.ovmf_hash or ZERO_DIGEST), workers=workers)
    elif prefix.regions != len(plan.regions):
        raise ConfigError(
            f"the saved fold state covers {prefix.regions} regions, the prefix has "
            f"{len(plan.regions)}"
        )
    out: dict[tuple[int, int], bytes] = {}
    for sig in dict.fromkeys(vcpu_sigs):
        bsp, ap = snp_vmsa_pages(image, replace(top, vcpu_sig=sig))
        for count, digest in fold_vmsas(prefix.digest, bsp, ap, counts).items():
            out[(sig, count)] = digest
    return out


def svsm_layout(
    ovmf: OvmfImage, svsm: OvmfImage, settings: SnpSettings, *, vars_size: int
) -> Layout:
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
    return Layout.of(regions)


def firmware_layout(image: OvmfImage) -> Layout:
    """The plan of ``snp:ovmf-hash``: the firmware pages alone."""
    return Layout.of([_firmware_region(image)])


def snp_ovmf_hash(image: OvmfImage) -> bytes:
    """The running digest after the firmware pages (sev-snp-measure's ``snp:ovmf-hash``).

    Feed it back as :attr:`SnpSettings.ovmf_hash` to skip hashing the firmware; the image
    given then only supplies the metadata, hash-table offset and AP reset address.
    """
    return fold_layout(firmware_layout(image))


def snp_digest(image: OvmfImage, settings: SnpSettings) -> bytes:
    """The SNP launch digest (attestation report MEASUREMENT) of an OVMF guest.

    Raises:
        ImageError, LayoutError: see :func:`snp_layout`.
    """
    return fold_layout(snp_layout(image, settings), settings.ovmf_hash or ZERO_DIGEST)


def snp_log(
    layout: Layout,
    settings: SnpSettings,
    *,
    mode: SevMode,
    inputs: tuple[LogInput, ...],
    tool_version: str,
    extra_settings: dict[str, SettingValue] | None = None,
) -> MeasurementLog:
    """Fold a plan into a launch log (one record per range, with per-page hashes).

    Args:
        layout: the plan from :func:`snp_layout` or :func:`svsm_layout` (or any SNP plan).
        settings: the settings the plan was built with (written into the header).
        mode: the mode (written into the header).
        inputs: the inputs with their sizes and digests.
        tool_version: the writer's version.
        extra_settings: more header settings (e.g. ``vars_size``, ``ap_reset_address``, and
            the launch identity from :func:`cvmlaunch.measure.reference.identity_settings`,
            which is recorded but never enters the digest).

    Returns:
        The log; its footer digest equals :func:`cvmlaunch.measure.snp_chain.fold_layout`.
    """
    from cvmlaunch.measure.log import LogHeader, Technology

    # snp:ovmf-hash measures the firmware pages only: no other setting affects it
    values = {} if mode is SevMode.SNP_OVMF_HASH else settings.log_settings()
    values["mode"] = mode.value
    values.update(extra_settings or {})
    header = LogHeader(
        technology=Technology.SEV_SNP,
        algorithm=SNP_ALGORITHM,
        settings=values,
        inputs=inputs,
        tool_version=tool_version,
        initial_digest=settings.ovmf_hash or ZERO_DIGEST,
    )
    return log_layout(layout, header)
