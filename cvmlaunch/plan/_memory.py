"""A firmware guest's plan placed in its RAM: the memory map a confidential launch runs in.

Rule: pure, and shared by the SNP and TDX launches (:func:`cvmlaunch.plan.snp.snp_launch`,
:func:`cvmlaunch.plan.tdvf.tdx_launch`): the firmware ends at 4 GiB, every memory region of
the plan must lie in a memslot of the map.
"""

from __future__ import annotations

from cvmlaunch.errors import ConfigError
from cvmlaunch.image.ovmf import OvmfImage
from cvmlaunch.layout import Plan
from cvmlaunch.memory_map import MemoryMap

__all__ = ["in_memory"]


def in_memory(plan: Plan, image: OvmfImage, memory: int) -> Plan:
    """``plan`` in ``memory`` bytes of RAM with the firmware ending at 4 GiB.

    Raises:
        ConfigError: a region outside guest memory (too little RAM for the firmware's
            metadata sections).
    """
    memmap = MemoryMap.for_size(memory, image.size)
    for r in plan.memory_regions:
        if memmap.slot_for(r.gpa, r.size) is None:
            raise ConfigError(
                f"{r.provenance.describe()} [{r.gpa:#x}-{r.end:#x}) is outside the guest's "
                f"RAM ({memory >> 20} MiB): give more memory",
                setting="memory",
            )
    return Plan.of(plan.regions, memmap)
