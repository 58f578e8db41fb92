"""Intel TDX in the KVM ABI (asm/kvm.h): the ``KVM_MEMORY_ENCRYPT_OP`` sub-commands of TDX
VMs and vCPUs and the structs they carry.
"""

from __future__ import annotations

import ctypes
import enum
from ctypes import c_uint32, c_uint64

from cvmlaunch._uapi.vcpu import KvmCpuid2

# ---------------------------------------------------------------- TDX (asm/kvm.h)


class TdxCmd(enum.IntEnum):
    """``enum kvm_tdx_cmd_id``: ``kvm_tdx_cmd.id`` for ``KVM_MEMORY_ENCRYPT_OP`` on TDX VMs."""

    CAPABILITIES = 0
    INIT_VM = 1
    INIT_VCPU = 2
    INIT_MEM_REGION = 3
    FINALIZE_VM = 4
    GET_CPUID = 5


#: ``kvm_tdx_cmd.flags`` for INIT_MEM_REGION: also TDH.MR.EXTEND the pages.
KVM_TDX_MEASURE_MEMORY_REGION = 1


# ---------------------------------------------------------------- TDX structs (asm/kvm.h)


class KvmTdxCmd(ctypes.Structure):
    """``struct kvm_tdx_cmd`` (24 bytes)."""

    id: int
    flags: int
    data: int
    hw_error: int
    _fields_ = (
        ("id", c_uint32),
        ("flags", c_uint32),
        ("data", c_uint64),
        ("hw_error", c_uint64),
    )


class KvmTdxCapabilities(ctypes.Structure):
    """``struct kvm_tdx_capabilities`` (2056 bytes); ``cpuid.nent`` entries follow it."""

    supported_attrs: int
    supported_xfam: int
    kernel_tdvmcallinfo_1_r11: int
    user_tdvmcallinfo_1_r11: int
    kernel_tdvmcallinfo_1_r12: int
    user_tdvmcallinfo_1_r12: int
    cpuid: KvmCpuid2
    _fields_ = (
        ("supported_attrs", c_uint64),
        ("supported_xfam", c_uint64),
        ("kernel_tdvmcallinfo_1_r11", c_uint64),
        ("user_tdvmcallinfo_1_r11", c_uint64),
        ("kernel_tdvmcallinfo_1_r12", c_uint64),
        ("user_tdvmcallinfo_1_r12", c_uint64),
        ("reserved", c_uint64 * 250),
        ("cpuid", KvmCpuid2),
    )


class KvmTdxInitVm(ctypes.Structure):
    """``struct kvm_tdx_init_vm`` (264 bytes); ``cpuid.nent`` entries follow it."""

    attributes: int
    xfam: int
    mrconfigid: ctypes.Array[c_uint64]
    mrowner: ctypes.Array[c_uint64]
    mrownerconfig: ctypes.Array[c_uint64]
    cpuid: KvmCpuid2
    _fields_ = (
        ("attributes", c_uint64),
        ("xfam", c_uint64),
        ("mrconfigid", c_uint64 * 6),
        ("mrowner", c_uint64 * 6),
        ("mrownerconfig", c_uint64 * 6),
        ("reserved", c_uint64 * 12),
        ("cpuid", KvmCpuid2),
    )


class KvmTdxInitMemRegion(ctypes.Structure):
    """``struct kvm_tdx_init_mem_region`` (24 bytes; every field is in/out)."""

    source_addr: int
    gpa: int
    nr_pages: int
    _fields_ = (("source_addr", c_uint64), ("gpa", c_uint64), ("nr_pages", c_uint64))
