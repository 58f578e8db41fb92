"""The core of the KVM ABI (linux/kvm.h): the API version, VM types, capabilities, the
``kvm_run`` page and its exits, ``KVM_ENABLE_CAP``, and the system, VM and vCPU ioctls that
carry no memory, register or CPUID state.
"""

from __future__ import annotations

import ctypes
import enum
from ctypes import c_char, c_uint8, c_uint16, c_uint32, c_uint64

from cvmlaunch._uapi._ioc import _io, _iow, _iowr

# ---------------------------------------------------------------- constants (linux/kvm.h)

KVM_API_VERSION = 12
PAGE_SIZE = 4096


class VmType(enum.IntEnum):
    """``KVM_CREATE_VM`` machine types (asm/kvm.h ``KVM_X86_*_VM``)."""

    DEFAULT = 0
    SW_PROTECTED = 1
    SEV = 2
    SEV_ES = 3
    SNP = 4
    TDX = 5


class Cap(enum.IntEnum):
    """``KVM_CAP_*`` numbers used by cvmlaunch (linux/kvm.h)."""

    USER_MEMORY = 3
    NR_VCPUS = 9
    NR_MEMSLOTS = 10
    MAX_VCPUS = 66
    READONLY_MEM = 81
    SPLIT_IRQCHIP = 121
    X2APIC_API = 129
    EXIT_HYPERCALL = 201
    USER_MEMORY2 = 231
    MEMORY_FAULT_INFO = 232
    MEMORY_ATTRIBUTES = 233
    GUEST_MEMFD = 234
    VM_TYPES = 235
    PRE_FAULT_MEMORY = 236
    GUEST_MEMFD_FLAGS = 244
    X86_APIC_BUS_CYCLES_NS = 237


class ExitReason(enum.IntEnum):
    """``kvm_run.exit_reason`` values (``KVM_EXIT_*``) that cvmlaunch decodes."""

    UNKNOWN = 0
    EXCEPTION = 1
    IO = 2
    HYPERCALL = 3
    DEBUG = 4
    HLT = 5
    MMIO = 6
    IRQ_WINDOW_OPEN = 7
    SHUTDOWN = 8
    FAIL_ENTRY = 9
    INTR = 10
    INTERNAL_ERROR = 17
    SYSTEM_EVENT = 24
    MEMORY_FAULT = 39
    TDX = 40


KVM_EXIT_IO_IN = 0
KVM_EXIT_IO_OUT = 1
KVM_INTERNAL_ERROR_EMULATION = 1
KVM_SYSTEM_EVENT_SEV_TERM = 6
KVM_MEMORY_EXIT_FLAG_PRIVATE = 1 << 3
#: ``KVM_HC_MAP_GPA_RANGE`` (linux/kvm_para.h): the page-state hypercall SNP and TDX guests make.
KVM_HC_MAP_GPA_RANGE = 12
#: ``KVM_HC_MAP_GPA_RANGE`` args[2]: the range becomes private (else shared).
KVM_MAP_GPA_RANGE_ENCRYPTED = 1 << 4


# ---------------------------------------------------------------- kvm_run (linux/kvm.h)


class KvmRunIo(ctypes.Structure):
    """``kvm_run.io`` (``KVM_EXIT_IO``); the data sits at ``data_offset`` from kvm_run."""

    direction: int
    size: int
    port: int
    count: int
    data_offset: int
    _fields_ = (
        ("direction", c_uint8),
        ("size", c_uint8),
        ("port", c_uint16),
        ("count", c_uint32),
        ("data_offset", c_uint64),
    )


class KvmRunMmio(ctypes.Structure):
    """``kvm_run.mmio`` (``KVM_EXIT_MMIO``)."""

    phys_addr: int
    data: ctypes.Array[c_uint8]
    len: int
    is_write: int
    _fields_ = (
        ("phys_addr", c_uint64),
        ("data", c_uint8 * 8),
        ("len", c_uint32),
        ("is_write", c_uint8),
    )


class KvmRunFailEntry(ctypes.Structure):
    """``kvm_run.fail_entry`` (``KVM_EXIT_FAIL_ENTRY``)."""

    hardware_entry_failure_reason: int
    cpu: int
    _fields_ = (("hardware_entry_failure_reason", c_uint64), ("cpu", c_uint32))


class KvmRunInternal(ctypes.Structure):
    """``kvm_run.internal`` (``KVM_EXIT_INTERNAL_ERROR``)."""

    suberror: int
    ndata: int
    data: ctypes.Array[c_uint64]
    _fields_ = (("suberror", c_uint32), ("ndata", c_uint32), ("data", c_uint64 * 16))


class KvmRunSystemEvent(ctypes.Structure):
    """``kvm_run.system_event`` (``KVM_EXIT_SYSTEM_EVENT``; ``data`` shares room with flags)."""

    type: int
    ndata: int
    data: ctypes.Array[c_uint64]
    _fields_ = (("type", c_uint32), ("ndata", c_uint32), ("data", c_uint64 * 16))


class KvmRunMemoryFault(ctypes.Structure):
    """``kvm_run.memory_fault`` (``KVM_EXIT_MEMORY_FAULT``)."""

    flags: int
    gpa: int
    size: int
    _fields_ = (("flags", c_uint64), ("gpa", c_uint64), ("size", c_uint64))


class KvmRunHypercall(ctypes.Structure):
    """``kvm_run.hypercall`` (``KVM_EXIT_HYPERCALL``; ``ret`` is written back by userspace)."""

    nr: int
    ret: int
    flags: int
    _fields_ = (
        ("nr", c_uint64),
        ("args", c_uint64 * 6),
        ("ret", c_uint64),
        ("flags", c_uint64),
    )


class KvmRunExit(ctypes.Union):
    """The 256-byte exit union of ``struct kvm_run``."""

    io: KvmRunIo
    mmio: KvmRunMmio
    fail_entry: KvmRunFailEntry
    internal: KvmRunInternal
    system_event: KvmRunSystemEvent
    memory_fault: KvmRunMemoryFault
    _fields_ = (
        ("io", KvmRunIo),
        ("mmio", KvmRunMmio),
        ("fail_entry", KvmRunFailEntry),
        ("internal", KvmRunInternal),
        ("system_event", KvmRunSystemEvent),
        ("memory_fault", KvmRunMemoryFault),
        ("hypercall", KvmRunHypercall),
        ("padding", c_char * 256),
    )


class KvmRun(ctypes.Structure):
    """``struct kvm_run``: the start of the page(s) mmapped on a vCPU fd (2352 bytes)."""

    request_interrupt_window: int
    immediate_exit: int
    exit_reason: int
    ready_for_interrupt_injection: int
    if_flag: int
    flags: int
    cr8: int
    apic_base: int
    exit: KvmRunExit
    _fields_ = (
        ("request_interrupt_window", c_uint8),
        ("immediate_exit", c_uint8),
        ("padding1", c_uint8 * 6),
        ("exit_reason", c_uint32),
        ("ready_for_interrupt_injection", c_uint8),
        ("if_flag", c_uint8),
        ("flags", c_uint16),
        ("cr8", c_uint64),
        ("apic_base", c_uint64),
        ("exit", KvmRunExit),
        ("kvm_valid_regs", c_uint64),
        ("kvm_dirty_regs", c_uint64),
        ("s", c_char * 2048),
    )


# ---------------------------------------------------------------- KVM_ENABLE_CAP (linux/kvm.h)


class KvmEnableCap(ctypes.Structure):
    """``struct kvm_enable_cap`` (104 bytes)."""

    cap: int
    flags: int
    _fields_ = (
        ("cap", c_uint32),
        ("flags", c_uint32),
        ("args", c_uint64 * 4),
        ("pad", c_uint8 * 64),
    )


# ---------------------------------------------------------------- ioctl numbers

# system fd
KVM_GET_API_VERSION = _io(0x00)
KVM_CREATE_VM = _io(0x01)
KVM_CHECK_EXTENSION = _io(0x03)  # also on a VM fd (VM-specific answer)
KVM_GET_VCPU_MMAP_SIZE = _io(0x04)
# VM fd
KVM_CREATE_VCPU = _io(0x41)
KVM_MEMORY_ENCRYPT_OP = _iowr(0xBA, c_uint64)  # declared with `unsigned long`; really a pointer
KVM_ENABLE_CAP = _iow(0xA3, KvmEnableCap)
# vCPU fd
KVM_RUN = _io(0x80)
