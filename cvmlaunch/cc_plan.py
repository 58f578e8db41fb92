"""Launch plans of confidential firmware guests: the plan ``measure snp|tdx`` folds, with memory.

Rule 1: one plan, two consumers. :func:`snp_plan` takes the very layout
:func:`cvmlaunch.measure.snp.snp_layout` builds (the one ``measure snp`` folds) and
:func:`tdx_plan` the one :func:`cvmlaunch.image.tdvf.tdvf_layout` builds (the one
``measure tdx`` folds); they only attach the guest's memory map and what the KVM layer needs
besides (the vCPU states whose VMSAs the plan predicts; the TD HOB's GPA). The digest of a
launch of the plan is therefore the digest of the plan.

Rule 2: pure. No I/O, no KVM: :mod:`cvmlaunch.kvm_map` executes the plan.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from cvmlaunch.errors import ConfigError, ImageError
from cvmlaunch.image.ovmf import OvmfImage
from cvmlaunch.image.td_hob import TdRamEntry
from cvmlaunch.layout import Layout
from cvmlaunch.measure.snp import SnpSettings, snp_layout
from cvmlaunch.measure.vmsa import VmmType
from cvmlaunch.memory_map import MemoryMap
from cvmlaunch.vcpu_state import BSP_RESET_EIP, VcpuState, snp_reset_state

__all__ = ["SnpPlan", "TdxPlan", "snp_plan", "tdx_plan"]


@dataclass(frozen=True, slots=True)
class SnpPlan:
    """An SNP launch of an OVMF image.

    Args:
        layout: :func:`~cvmlaunch.measure.snp.snp_layout`'s plan with the memory map.
        states: each vCPU's register state, BSP first (KVM turns each into the VMSA the plan's
            VMSA region holds).
        settings: the measurement settings the plan was built with.
    """

    layout: Layout
    states: tuple[VcpuState, ...]
    settings: SnpSettings


@dataclass(frozen=True, slots=True)
class TdxPlan:
    """A TDX launch of a TDVF image.

    Args:
        layout: :func:`~cvmlaunch.image.tdvf.tdvf_layout`'s plan with the memory map, the TD
            HOB in its TD_HOB section.
        hob_gpa: the TD_HOB section's GPA (each vCPU's initial RCX).
        vcpus: the number of vCPUs.
        hob: the TD HOB's bytes.
        ram: the RAM entries the HOB describes (accepted by the VMM, or not).
    """

    layout: Layout
    hob_gpa: int
    vcpus: int
    hob: bytes
    ram: tuple[TdRamEntry, ...]


def _memory(layout: Layout, image: OvmfImage, memory: int) -> Layout:
    """``layout`` in ``memory`` bytes of RAM with the firmware ending at 4 GiB.

    Raises:
        ConfigError: a region outside guest memory (too little RAM for the firmware's
            metadata sections).
    """
    memmap = MemoryMap.for_size(memory, image.size)
    for r in layout.memory_regions:
        if memmap.slot_for(r.gpa, r.size) is None:
            raise ConfigError(
                f"{r.provenance.describe()} [{r.gpa:#x}-{r.end:#x}) is outside the guest's "
                f"RAM ({memory >> 20} MiB): give more memory",
                setting="memory",
            )
    return Layout.of(layout.regions, memmap)


def snp_plan(image: OvmfImage, settings: SnpSettings, memory: int) -> SnpPlan:
    """The SNP launch of ``image`` under ``settings``, in ``memory`` bytes of RAM.

    Raises:
        ConfigError: settings a launch cannot honour (a firmware digest seed, a VMM other
            than QEMU, whose vCPU state this launcher reproduces), too little memory.
        ImageError: see :func:`~cvmlaunch.measure.snp.snp_layout`.
    """
    if settings.ovmf_hash is not None:
        raise ConfigError("a launch populates the firmware: it takes no firmware digest seed")
    if settings.vmm is not VmmType.QEMU:
        raise ConfigError(
            f"cvmlaunch launches vCPUs in QEMU's reset state, not {settings.vmm.value}'s"
        )
    layout = _memory(snp_layout(image, settings), image, memory)
    states = [snp_reset_state(eip=BSP_RESET_EIP, vcpu_sig=settings.vcpu_sig, bsp=True)]
    if settings.vcpus > 1:
        ap_eip = image.sev_es_reset_eip
        if not ap_eip:  # pragma: no cover - snp_layout refuses this first
            raise ImageError("no SEV-ES AP reset address", source=image.name)
        ap = snp_reset_state(eip=ap_eip, vcpu_sig=settings.vcpu_sig, bsp=False)
        states += [ap] * (settings.vcpus - 1)
    return SnpPlan(layout, tuple(states), settings)


def tdx_plan(image: OvmfImage, memory: int, vcpus: int) -> TdxPlan:
    """The TDX launch of ``image`` with ``vcpus`` vCPUs in ``memory`` bytes of RAM, the TD HOB
    (:func:`cvmlaunch.image.td_hob.build_td_hob`, QEMU's) written into the TD_HOB section.

    The HOB is PAGE.ADDed without MR.EXTEND, so it does not change MRTD: the plan folds to
    the MRTD of :func:`~cvmlaunch.image.tdvf.tdvf_layout` (TDVF hashes it into RTMR0).

    Raises:
        ConfigError: too little memory, a vCPU count out of range.
        ImageError: see :func:`~cvmlaunch.image.tdvf.tdvf_layout`.
        LayoutError: RAM that cannot hold the TDVF sections, a HOB larger than its section.
    """
    from cvmlaunch.image.td_hob import build_td_hob, td_hob_section, td_ram_entries
    from cvmlaunch.image.tdvf import tdvf_layout

    if not 1 <= vcpus <= 4096:
        raise ConfigError(f"vcpus: vCPU count {vcpus} is out of range (1..4096)", setting="vcpus")
    sections = image.tdx_sections or ()
    layout = _memory(tdvf_layout(image), image, memory)
    section = td_hob_section(sections)
    hob = build_td_hob(sections, memory)
    regions = [
        replace(r, data=hob) if r.provenance.index == section.index and r.gpa == section.gpa else r
        for r in layout.regions
    ]
    return TdxPlan(
        Layout.of(regions, layout.memory),
        section.gpa,
        vcpus,
        hob,
        td_ram_entries(sections, memory),
    )
