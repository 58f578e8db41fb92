"""The numbers every core module shares: page size, the guest-physical landmarks, field sizes.

Rule: the bottom of the package. This module imports nothing, so that the core value modules
(:mod:`cvmlaunch.layout`, :mod:`cvmlaunch.memory_map`, :mod:`cvmlaunch.log_entry`,
:mod:`cvmlaunch.launch_identity`) can all use these without importing each other in a circle;
:mod:`cvmlaunch.layout` re-exports every name, which is where most code imports them from.
"""

from __future__ import annotations

__all__ = [
    "FOUR_GIB",
    "LOW_RAM_SPLIT",
    "MAX_GPA",
    "PAGE_SIZE",
    "PCI_HOLE_START",
    "SNP_HOST_DATA_SIZE",
    "SNP_ID_AUTH_SIZE",
    "SNP_ID_BLOCK_SIZE",
    "TDX_MR_SIZE",
    "VMSA_GPA",
]

PAGE_SIZE = 4096
FOUR_GIB = 1 << 32
#: q35: with this much RAM or more, low RAM stops at 2 GiB and the rest moves above 4 GiB.
PCI_HOLE_START = 0xB000_0000
#: q35 low-RAM limit once the RAM no longer fits below the PCI hole.
LOW_RAM_SPLIT = 0x8000_0000
#: KVM measures every SNP VMSA at this GPA ((u64)-1, page aligned, bits 63:52 clear).
VMSA_GPA = 0xFFFF_FFFF_F000
#: Largest guest-physical address we accept (52-bit physical address space).
MAX_GPA = 1 << 52
#: SEV-SNP HOST_DATA: 32 bytes given to SNP_LAUNCH_FINISH and reported verbatim.
SNP_HOST_DATA_SIZE = 32
#: SEV-SNP ID block and ID auth sizes (SNP firmware ABI, SNP_LAUNCH_FINISH).
SNP_ID_BLOCK_SIZE = 96
SNP_ID_AUTH_SIZE = 4096
#: TDX MRCONFIGID, MROWNER, MROWNERCONFIG: 48 bytes each (TD_PARAMS, KVM_TDX_INIT_VM).
TDX_MR_SIZE = 48
