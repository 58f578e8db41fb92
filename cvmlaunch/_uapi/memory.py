"""Guest memory in the KVM ABI (linux/kvm.h): memslots, guest_memfd, memory attributes and
``KVM_PRE_FAULT_MEMORY``.
"""

from __future__ import annotations

import ctypes
import enum
from ctypes import c_uint32, c_uint64

from cvmlaunch._uapi._ioc import _iow, _iowr

# ---------------------------------------------------------------- flags (linux/kvm.h)


class MemFlag(enum.IntFlag):
    """Memslot flags (``KVM_MEM_*``)."""

    LOG_DIRTY_PAGES = 1
    READONLY = 2
    GUEST_MEMFD = 4


class GuestMemfdFlag(enum.IntFlag):
    """``KVM_CREATE_GUEST_MEMFD`` flags (``GUEST_MEMFD_FLAG_*``)."""

    MMAP = 1
    INIT_SHARED = 2


class MemoryAttribute(enum.IntFlag):
    """``KVM_SET_MEMORY_ATTRIBUTES`` attributes."""

    PRIVATE = 1 << 3


# ---------------------------------------------------------------- structs (linux/kvm.h)


class KvmUserspaceMemoryRegion(ctypes.Structure):
    """``struct kvm_userspace_memory_region`` (32 bytes)."""

    slot: int
    flags: int
    guest_phys_addr: int
    memory_size: int
    userspace_addr: int
    _fields_ = (
        ("slot", c_uint32),
        ("flags", c_uint32),
        ("guest_phys_addr", c_uint64),
        ("memory_size", c_uint64),
        ("userspace_addr", c_uint64),
    )


class KvmUserspaceMemoryRegion2(ctypes.Structure):
    """``struct kvm_userspace_memory_region2`` (160 bytes)."""

    slot: int
    flags: int
    guest_phys_addr: int
    memory_size: int
    userspace_addr: int
    guest_memfd_offset: int
    guest_memfd: int
    _fields_ = (
        ("slot", c_uint32),
        ("flags", c_uint32),
        ("guest_phys_addr", c_uint64),
        ("memory_size", c_uint64),
        ("userspace_addr", c_uint64),
        ("guest_memfd_offset", c_uint64),
        ("guest_memfd", c_uint32),
        ("pad1", c_uint32),
        ("pad2", c_uint64 * 14),
    )


class KvmCreateGuestMemfd(ctypes.Structure):
    """``struct kvm_create_guest_memfd`` (64 bytes)."""

    size: int
    flags: int
    _fields_ = (("size", c_uint64), ("flags", c_uint64), ("reserved", c_uint64 * 6))


class KvmMemoryAttributes(ctypes.Structure):
    """``struct kvm_memory_attributes`` (32 bytes)."""

    address: int
    size: int
    attributes: int
    flags: int
    _fields_ = (
        ("address", c_uint64),
        ("size", c_uint64),
        ("attributes", c_uint64),
        ("flags", c_uint64),
    )


class KvmPreFaultMemory(ctypes.Structure):
    """``struct kvm_pre_fault_memory`` (64 bytes; gpa and size are in/out)."""

    gpa: int
    size: int
    flags: int
    _fields_ = (
        ("gpa", c_uint64),
        ("size", c_uint64),
        ("flags", c_uint64),
        ("padding", c_uint64 * 5),
    )


# ---------------------------------------------------------------- ioctl numbers

# VM fd
KVM_SET_USER_MEMORY_REGION = _iow(0x46, KvmUserspaceMemoryRegion)
KVM_SET_USER_MEMORY_REGION2 = _iow(0x49, KvmUserspaceMemoryRegion2)  # KVM_CAP_USER_MEMORY2
KVM_SET_MEMORY_ATTRIBUTES = _iow(0xD2, KvmMemoryAttributes)  # KVM_CAP_MEMORY_ATTRIBUTES
KVM_CREATE_GUEST_MEMFD = _iowr(0xD4, KvmCreateGuestMemfd)  # KVM_CAP_GUEST_MEMFD
# vCPU fd
KVM_PRE_FAULT_MEMORY = _iowr(0xD5, KvmPreFaultMemory)  # KVM_CAP_PRE_FAULT_MEMORY
