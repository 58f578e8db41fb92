"""AMD SEV and SEV-SNP in the KVM ABI (asm/kvm.h): the ``KVM_MEMORY_ENCRYPT_OP`` sub-commands
of SEV VMs, SNP page types, and the structs they carry.
"""

from __future__ import annotations

import ctypes
import enum
from ctypes import c_uint8, c_uint16, c_uint32, c_uint64

# ---------------------------------------------------------------- SEV / SNP (asm/kvm.h)


class SevCmd(enum.IntEnum):
    """``enum sev_cmd_id``: ``kvm_sev_cmd.id`` for ``KVM_MEMORY_ENCRYPT_OP`` on SEV VMs."""

    INIT = 0
    ES_INIT = 1
    LAUNCH_START = 2
    LAUNCH_UPDATE_DATA = 3
    LAUNCH_UPDATE_VMSA = 4
    LAUNCH_MEASURE = 6
    LAUNCH_FINISH = 7
    INIT2 = 22
    SNP_LAUNCH_START = 100
    SNP_LAUNCH_UPDATE = 101
    SNP_LAUNCH_FINISH = 102


class SnpPageType(enum.IntEnum):
    """``KVM_SEV_SNP_PAGE_TYPE_*`` (VMSA=2 is firmware-only; KVM uses it at LAUNCH_FINISH)."""

    NORMAL = 1
    VMSA = 2
    ZERO = 3
    UNMEASURED = 4
    SECRETS = 5
    CPUID = 6


KVM_SEV_SNP_ID_BLOCK_SIZE = 96
KVM_SEV_SNP_ID_AUTH_SIZE = 4096
KVM_SEV_SNP_FINISH_DATA_SIZE = 32
#: SEV firmware status: invalid parameter (e.g. a CPUID page the firmware corrected).
SEV_RET_INVALID_PARAM = 0x16


# ---------------------------------------------------------------- SEV / SNP structs (asm/kvm.h)


class KvmSevCmd(ctypes.Structure):
    """``struct kvm_sev_cmd`` (24 bytes; ``error`` is the firmware status, out)."""

    id: int
    data: int
    error: int
    sev_fd: int
    _fields_ = (
        ("id", c_uint32),
        ("pad0", c_uint32),
        ("data", c_uint64),
        ("error", c_uint32),
        ("sev_fd", c_uint32),
    )


class KvmSevInit(ctypes.Structure):
    """``struct kvm_sev_init`` (48 bytes), the argument of ``KVM_SEV_INIT2``."""

    vmsa_features: int
    flags: int
    ghcb_version: int
    _fields_ = (
        ("vmsa_features", c_uint64),
        ("flags", c_uint32),
        ("ghcb_version", c_uint16),
        ("pad1", c_uint16),
        ("pad2", c_uint32 * 8),
    )


class KvmSevSnpLaunchStart(ctypes.Structure):
    """``struct kvm_sev_snp_launch_start`` (64 bytes)."""

    policy: int
    gosvw: ctypes.Array[c_uint8]
    flags: int
    _fields_ = (
        ("policy", c_uint64),
        ("gosvw", c_uint8 * 16),
        ("flags", c_uint16),
        ("pad0", c_uint8 * 6),
        ("pad1", c_uint64 * 4),
    )


class KvmSevSnpLaunchUpdate(ctypes.Structure):
    """``struct kvm_sev_snp_launch_update`` (64 bytes; gfn_start, uaddr, len are in/out)."""

    gfn_start: int
    uaddr: int
    len: int
    type: int
    flags: int
    _fields_ = (
        ("gfn_start", c_uint64),
        ("uaddr", c_uint64),
        ("len", c_uint64),
        ("type", c_uint8),
        ("pad0", c_uint8),
        ("flags", c_uint16),
        ("pad1", c_uint32),
        ("pad2", c_uint64 * 4),
    )


class KvmSevSnpLaunchFinish(ctypes.Structure):
    """``struct kvm_sev_snp_launch_finish`` (88 bytes; ``host_data`` is at the odd offset 19)."""

    id_block_uaddr: int
    id_auth_uaddr: int
    id_block_en: int
    auth_key_en: int
    vcek_disabled: int
    host_data: ctypes.Array[c_uint8]
    flags: int
    _fields_ = (
        ("id_block_uaddr", c_uint64),
        ("id_auth_uaddr", c_uint64),
        ("id_block_en", c_uint8),
        ("auth_key_en", c_uint8),
        ("vcek_disabled", c_uint8),
        ("host_data", c_uint8 * KVM_SEV_SNP_FINISH_DATA_SIZE),
        ("pad0", c_uint8 * 3),
        ("flags", c_uint16),
        ("pad1", c_uint64 * 4),
    )
