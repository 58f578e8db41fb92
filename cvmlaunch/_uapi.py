"""The raw KVM ABI: ioctl numbers, constants and struct layouts. Data only, no system calls.

Rule 1: this module mirrors the Linux **7.2** uAPI headers (``include/linux/kvm.h`` and
``arch/x86/include/uapi/asm/kvm.h``, x86-64, ``KVM_API_VERSION`` 12). Every number here is
checked against the C headers by ``tests/test_uapi_abi.py``, which compiles a program that
prints each ioctl number, struct size and field offset.

Rule 2: ioctl numbers are computed with the ``_IOC`` macros of ``include/uapi/asm-generic/ioctl.h``
from the struct they carry, never typed in as hex. Structs are :mod:`ctypes` structures with the
natural (C) alignment of x86-64 and no ``_pack_``; the typed wrappers in :mod:`cvmlaunch.kvm_map`
lay them over ``bytearray`` buffers with ``from_buffer``.

Rule 3: the field annotations in each class body are for type checkers only; ``_fields_`` is
the layout.
"""

from __future__ import annotations

import ctypes
import enum
from ctypes import c_char, c_uint8, c_uint16, c_uint32, c_uint64

# ---------------------------------------------------------------- _IOC (asm-generic/ioctl.h)

_IOC_NRBITS = 8
_IOC_TYPEBITS = 8
_IOC_SIZEBITS = 14
_IOC_NRSHIFT = 0
_IOC_TYPESHIFT = _IOC_NRSHIFT + _IOC_NRBITS
_IOC_SIZESHIFT = _IOC_TYPESHIFT + _IOC_TYPEBITS
_IOC_DIRSHIFT = _IOC_SIZESHIFT + _IOC_SIZEBITS
_IOC_NONE = 0
_IOC_WRITE = 1
_IOC_READ = 2

KVMIO = 0xAE


def _ioc(direction: int, nr: int, size: int) -> int:
    """``_IOC(dir, KVMIO, nr, size)``."""
    return (
        (direction << _IOC_DIRSHIFT)
        | (KVMIO << _IOC_TYPESHIFT)
        | (nr << _IOC_NRSHIFT)
        | (size << _IOC_SIZESHIFT)
    )


def _io(nr: int) -> int:
    return _ioc(_IOC_NONE, nr, 0)


def _ior(nr: int, ctype: type[ctypes._CData]) -> int:
    return _ioc(_IOC_READ, nr, ctypes.sizeof(ctype))


def _iow(nr: int, ctype: type[ctypes._CData]) -> int:
    return _ioc(_IOC_WRITE, nr, ctypes.sizeof(ctype))


def _iowr(nr: int, ctype: type[ctypes._CData]) -> int:
    return _ioc(_IOC_READ | _IOC_WRITE, nr, ctypes.sizeof(ctype))


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
#: ``kvm_cpuid_entry2.flags``: the leaf has subleaves (``index`` matters).
KVM_CPUID_FLAG_SIGNIFCANT_INDEX = 1

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


class KvmRegs(ctypes.Structure):
    """``struct kvm_regs`` (x86, 144 bytes)."""

    rax: int
    rbx: int
    rcx: int
    rdx: int
    rsi: int
    rdi: int
    rsp: int
    rbp: int
    r8: int
    r9: int
    r10: int
    r11: int
    r12: int
    r13: int
    r14: int
    r15: int
    rip: int
    rflags: int
    _fields_ = tuple(
        (name, c_uint64)
        for name in (
            *("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp"),
            *("r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"),
            *("rip", "rflags"),
        )
    )


class KvmSegment(ctypes.Structure):
    """``struct kvm_segment`` (24 bytes)."""

    base: int
    limit: int
    selector: int
    type: int
    present: int
    dpl: int
    db: int
    s: int
    l: int  # noqa: E741 - the kernel's name
    g: int
    avl: int
    unusable: int
    _fields_ = (
        ("base", c_uint64),
        ("limit", c_uint32),
        ("selector", c_uint16),
        ("type", c_uint8),
        ("present", c_uint8),
        ("dpl", c_uint8),
        ("db", c_uint8),
        ("s", c_uint8),
        ("l", c_uint8),
        ("g", c_uint8),
        ("avl", c_uint8),
        ("unusable", c_uint8),
        ("padding", c_uint8),
    )


class KvmDtable(ctypes.Structure):
    """``struct kvm_dtable`` (16 bytes)."""

    base: int
    limit: int
    _fields_ = (("base", c_uint64), ("limit", c_uint16), ("padding", c_uint16 * 3))


class KvmSregs(ctypes.Structure):
    """``struct kvm_sregs`` (x86, 312 bytes)."""

    cs: KvmSegment
    ds: KvmSegment
    es: KvmSegment
    fs: KvmSegment
    gs: KvmSegment
    ss: KvmSegment
    tr: KvmSegment
    ldt: KvmSegment
    gdt: KvmDtable
    idt: KvmDtable
    cr0: int
    cr2: int
    cr3: int
    cr4: int
    cr8: int
    efer: int
    apic_base: int
    _fields_ = (
        ("cs", KvmSegment),
        ("ds", KvmSegment),
        ("es", KvmSegment),
        ("fs", KvmSegment),
        ("gs", KvmSegment),
        ("ss", KvmSegment),
        ("tr", KvmSegment),
        ("ldt", KvmSegment),
        ("gdt", KvmDtable),
        ("idt", KvmDtable),
        ("cr0", c_uint64),
        ("cr2", c_uint64),
        ("cr3", c_uint64),
        ("cr4", c_uint64),
        ("cr8", c_uint64),
        ("efer", c_uint64),
        ("apic_base", c_uint64),
        ("interrupt_bitmap", c_uint64 * 4),
    )


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


# ---------------------------------------------------------------- CPUID (asm/kvm.h)


class KvmCpuidEntry2(ctypes.Structure):
    """``struct kvm_cpuid_entry2`` (40 bytes)."""

    function: int
    index: int
    flags: int
    eax: int
    ebx: int
    ecx: int
    edx: int
    _fields_ = (
        ("function", c_uint32),
        ("index", c_uint32),
        ("flags", c_uint32),
        ("eax", c_uint32),
        ("ebx", c_uint32),
        ("ecx", c_uint32),
        ("edx", c_uint32),
        ("padding", c_uint32 * 3),
    )


class KvmCpuid2(ctypes.Structure):
    """``struct kvm_cpuid2`` header (8 bytes); ``nent`` entries follow it."""

    nent: int
    _fields_ = (("nent", c_uint32), ("padding", c_uint32))


class KvmFpu(ctypes.Structure):
    """``struct kvm_fpu`` (416 bytes): the legacy FXSAVE-like x87/SSE state."""

    fcw: int
    fsw: int
    ftwx: int
    last_opcode: int
    last_ip: int
    last_dp: int
    mxcsr: int
    _fields_ = (
        ("fpr", (c_uint8 * 16) * 8),
        ("fcw", c_uint16),
        ("fsw", c_uint16),
        ("ftwx", c_uint8),
        ("pad1", c_uint8),
        ("last_opcode", c_uint16),
        ("last_ip", c_uint64),
        ("last_dp", c_uint64),
        ("xmm", (c_uint8 * 16) * 16),
        ("mxcsr", c_uint32),
        ("pad2", c_uint32),
    )


class KvmXcr(ctypes.Structure):
    """``struct kvm_xcr`` (16 bytes)."""

    xcr: int
    value: int
    _fields_ = (("xcr", c_uint32), ("reserved", c_uint32), ("value", c_uint64))


class KvmXcrs(ctypes.Structure):
    """``struct kvm_xcrs`` (392 bytes)."""

    nr_xcrs: int
    flags: int
    _fields_ = (
        ("nr_xcrs", c_uint32),
        ("flags", c_uint32),
        ("xcrs", KvmXcr * 16),
        ("padding", c_uint64 * 16),
    )


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


def offset_of(cls: type[ctypes.Structure] | type[ctypes.Union], field: str) -> int:
    """``offsetof(cls, field)``."""
    return int(getattr(cls, field).offset)


# ---------------------------------------------------------------- ioctl numbers (linux/kvm.h)

# system fd
KVM_GET_API_VERSION = _io(0x00)
KVM_CREATE_VM = _io(0x01)
KVM_CHECK_EXTENSION = _io(0x03)  # also on a VM fd (VM-specific answer)
KVM_GET_VCPU_MMAP_SIZE = _io(0x04)
# VM fd
KVM_CREATE_VCPU = _io(0x41)
KVM_SET_USER_MEMORY_REGION = _iow(0x46, KvmUserspaceMemoryRegion)
KVM_SET_USER_MEMORY_REGION2 = _iow(0x49, KvmUserspaceMemoryRegion2)  # KVM_CAP_USER_MEMORY2
KVM_MEMORY_ENCRYPT_OP = _iowr(0xBA, c_uint64)  # declared with `unsigned long`; really a pointer
KVM_SET_MEMORY_ATTRIBUTES = _iow(0xD2, KvmMemoryAttributes)  # KVM_CAP_MEMORY_ATTRIBUTES
KVM_CREATE_GUEST_MEMFD = _iowr(0xD4, KvmCreateGuestMemfd)  # KVM_CAP_GUEST_MEMFD
# vCPU fd
KVM_RUN = _io(0x80)
KVM_GET_REGS = _ior(0x81, KvmRegs)
KVM_SET_REGS = _iow(0x82, KvmRegs)
KVM_GET_SREGS = _ior(0x83, KvmSregs)
KVM_SET_SREGS = _iow(0x84, KvmSregs)
KVM_PRE_FAULT_MEMORY = _iowr(0xD5, KvmPreFaultMemory)  # KVM_CAP_PRE_FAULT_MEMORY
KVM_GET_FPU = _ior(0x8C, KvmFpu)
KVM_SET_FPU = _iow(0x8D, KvmFpu)
KVM_SET_CPUID2 = _iow(0x90, KvmCpuid2)
KVM_GET_CPUID2 = _iowr(0x91, KvmCpuid2)
KVM_GET_XCRS = _ior(0xA6, KvmXcrs)
KVM_SET_XCRS = _iow(0xA7, KvmXcrs)
# system fd (cont.)
KVM_GET_SUPPORTED_CPUID = _iowr(0x05, KvmCpuid2)
# VM fd (cont.)
KVM_ENABLE_CAP = _iow(0xA3, KvmEnableCap)

#: Every ioctl number by its C name (the ABI test checks each one against the headers).
IOCTLS: dict[str, int] = {
    "KVM_GET_API_VERSION": KVM_GET_API_VERSION,
    "KVM_CREATE_VM": KVM_CREATE_VM,
    "KVM_CHECK_EXTENSION": KVM_CHECK_EXTENSION,
    "KVM_GET_VCPU_MMAP_SIZE": KVM_GET_VCPU_MMAP_SIZE,
    "KVM_CREATE_VCPU": KVM_CREATE_VCPU,
    "KVM_SET_USER_MEMORY_REGION": KVM_SET_USER_MEMORY_REGION,
    "KVM_SET_USER_MEMORY_REGION2": KVM_SET_USER_MEMORY_REGION2,
    "KVM_MEMORY_ENCRYPT_OP": KVM_MEMORY_ENCRYPT_OP,
    "KVM_SET_MEMORY_ATTRIBUTES": KVM_SET_MEMORY_ATTRIBUTES,
    "KVM_CREATE_GUEST_MEMFD": KVM_CREATE_GUEST_MEMFD,
    "KVM_RUN": KVM_RUN,
    "KVM_GET_REGS": KVM_GET_REGS,
    "KVM_SET_REGS": KVM_SET_REGS,
    "KVM_GET_SREGS": KVM_GET_SREGS,
    "KVM_SET_SREGS": KVM_SET_SREGS,
    "KVM_PRE_FAULT_MEMORY": KVM_PRE_FAULT_MEMORY,
    "KVM_GET_FPU": KVM_GET_FPU,
    "KVM_SET_FPU": KVM_SET_FPU,
    "KVM_SET_CPUID2": KVM_SET_CPUID2,
    "KVM_GET_CPUID2": KVM_GET_CPUID2,
    "KVM_GET_XCRS": KVM_GET_XCRS,
    "KVM_SET_XCRS": KVM_SET_XCRS,
    "KVM_GET_SUPPORTED_CPUID": KVM_GET_SUPPORTED_CPUID,
    "KVM_ENABLE_CAP": KVM_ENABLE_CAP,
}

#: Every struct by its C name (the ABI test checks sizes and field offsets).
STRUCTS: dict[str, type[ctypes.Structure] | type[ctypes.Union]] = {
    "kvm_userspace_memory_region": KvmUserspaceMemoryRegion,
    "kvm_userspace_memory_region2": KvmUserspaceMemoryRegion2,
    "kvm_create_guest_memfd": KvmCreateGuestMemfd,
    "kvm_memory_attributes": KvmMemoryAttributes,
    "kvm_pre_fault_memory": KvmPreFaultMemory,
    "kvm_regs": KvmRegs,
    "kvm_segment": KvmSegment,
    "kvm_dtable": KvmDtable,
    "kvm_sregs": KvmSregs,
    "kvm_run": KvmRun,
    "kvm_cpuid_entry2": KvmCpuidEntry2,
    "kvm_cpuid2": KvmCpuid2,
    "kvm_fpu": KvmFpu,
    "kvm_xcr": KvmXcr,
    "kvm_xcrs": KvmXcrs,
    "kvm_enable_cap": KvmEnableCap,
    "kvm_tdx_cmd": KvmTdxCmd,
    "kvm_tdx_capabilities": KvmTdxCapabilities,
    "kvm_tdx_init_vm": KvmTdxInitVm,
    "kvm_tdx_init_mem_region": KvmTdxInitMemRegion,
    "kvm_sev_cmd": KvmSevCmd,
    "kvm_sev_init": KvmSevInit,
    "kvm_sev_snp_launch_start": KvmSevSnpLaunchStart,
    "kvm_sev_snp_launch_update": KvmSevSnpLaunchUpdate,
    "kvm_sev_snp_launch_finish": KvmSevSnpLaunchFinish,
}

#: Nested members of ``struct kvm_run`` checked by the ABI test: (C path, Python offset).
KVM_RUN_MEMBERS: dict[str, int] = {
    "exit_reason": offset_of(KvmRun, "exit_reason"),
    "immediate_exit": offset_of(KvmRun, "immediate_exit"),
    "io.direction": offset_of(KvmRun, "exit") + offset_of(KvmRunIo, "direction"),
    "io.size": offset_of(KvmRun, "exit") + offset_of(KvmRunIo, "size"),
    "io.port": offset_of(KvmRun, "exit") + offset_of(KvmRunIo, "port"),
    "io.count": offset_of(KvmRun, "exit") + offset_of(KvmRunIo, "count"),
    "io.data_offset": offset_of(KvmRun, "exit") + offset_of(KvmRunIo, "data_offset"),
    "mmio.phys_addr": offset_of(KvmRun, "exit") + offset_of(KvmRunMmio, "phys_addr"),
    "mmio.data": offset_of(KvmRun, "exit") + offset_of(KvmRunMmio, "data"),
    "mmio.len": offset_of(KvmRun, "exit") + offset_of(KvmRunMmio, "len"),
    "mmio.is_write": offset_of(KvmRun, "exit") + offset_of(KvmRunMmio, "is_write"),
    "fail_entry.hardware_entry_failure_reason": offset_of(KvmRun, "exit")
    + offset_of(KvmRunFailEntry, "hardware_entry_failure_reason"),
    "fail_entry.cpu": offset_of(KvmRun, "exit") + offset_of(KvmRunFailEntry, "cpu"),
    "internal.suberror": offset_of(KvmRun, "exit") + offset_of(KvmRunInternal, "suberror"),
    "internal.ndata": offset_of(KvmRun, "exit") + offset_of(KvmRunInternal, "ndata"),
    "internal.data": offset_of(KvmRun, "exit") + offset_of(KvmRunInternal, "data"),
    "system_event.type": offset_of(KvmRun, "exit") + offset_of(KvmRunSystemEvent, "type"),
    "system_event.ndata": offset_of(KvmRun, "exit") + offset_of(KvmRunSystemEvent, "ndata"),
    "system_event.data": offset_of(KvmRun, "exit") + offset_of(KvmRunSystemEvent, "data"),
    "memory_fault.flags": offset_of(KvmRun, "exit") + offset_of(KvmRunMemoryFault, "flags"),
    "memory_fault.gpa": offset_of(KvmRun, "exit") + offset_of(KvmRunMemoryFault, "gpa"),
    "memory_fault.size": offset_of(KvmRun, "exit") + offset_of(KvmRunMemoryFault, "size"),
    "hypercall.nr": offset_of(KvmRun, "exit") + offset_of(KvmRunHypercall, "nr"),
    "hypercall.args": offset_of(KvmRun, "exit") + offset_of(KvmRunHypercall, "args"),
    "hypercall.ret": offset_of(KvmRun, "exit") + offset_of(KvmRunHypercall, "ret"),
    "hypercall.flags": offset_of(KvmRun, "exit") + offset_of(KvmRunHypercall, "flags"),
    "kvm_valid_regs": offset_of(KvmRun, "kvm_valid_regs"),
    "s": offset_of(KvmRun, "s"),
}

#: Constants checked by the ABI test (C name -> value).
CONSTANTS: dict[str, int] = {
    "KVM_API_VERSION": KVM_API_VERSION,
    **{f"KVM_X86_{t.name}_VM": t.value for t in VmType},
    **{f"KVM_CAP_{c.name}": c.value for c in Cap},
    **{f"KVM_MEM_{f.name}": f.value for f in MemFlag},
    **{f"GUEST_MEMFD_FLAG_{f.name}": f.value for f in GuestMemfdFlag},
    "KVM_MEMORY_ATTRIBUTE_PRIVATE": MemoryAttribute.PRIVATE.value,
    **{f"KVM_EXIT_{e.name}": e.value for e in ExitReason},
    "KVM_EXIT_IO_IN": KVM_EXIT_IO_IN,
    "KVM_EXIT_IO_OUT": KVM_EXIT_IO_OUT,
    "KVM_INTERNAL_ERROR_EMULATION": KVM_INTERNAL_ERROR_EMULATION,
    "KVM_SYSTEM_EVENT_SEV_TERM": KVM_SYSTEM_EVENT_SEV_TERM,
    "KVM_MEMORY_EXIT_FLAG_PRIVATE": KVM_MEMORY_EXIT_FLAG_PRIVATE,
    "KVM_CPUID_FLAG_SIGNIFCANT_INDEX": KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
    **{f"KVM_TDX_{c.name}": c.value for c in TdxCmd},
    "KVM_TDX_MEASURE_MEMORY_REGION": KVM_TDX_MEASURE_MEMORY_REGION,
    "KVM_SEV_INIT": SevCmd.INIT.value,
    "KVM_SEV_ES_INIT": SevCmd.ES_INIT.value,
    "KVM_SEV_LAUNCH_START": SevCmd.LAUNCH_START.value,
    "KVM_SEV_LAUNCH_UPDATE_DATA": SevCmd.LAUNCH_UPDATE_DATA.value,
    "KVM_SEV_LAUNCH_UPDATE_VMSA": SevCmd.LAUNCH_UPDATE_VMSA.value,
    "KVM_SEV_LAUNCH_MEASURE": SevCmd.LAUNCH_MEASURE.value,
    "KVM_SEV_LAUNCH_FINISH": SevCmd.LAUNCH_FINISH.value,
    "KVM_SEV_INIT2": SevCmd.INIT2.value,
    "KVM_SEV_SNP_LAUNCH_START": SevCmd.SNP_LAUNCH_START.value,
    "KVM_SEV_SNP_LAUNCH_UPDATE": SevCmd.SNP_LAUNCH_UPDATE.value,
    "KVM_SEV_SNP_LAUNCH_FINISH": SevCmd.SNP_LAUNCH_FINISH.value,
    **{
        f"KVM_SEV_SNP_PAGE_TYPE_{t.name}": t.value for t in SnpPageType if t is not SnpPageType.VMSA
    },
    "KVM_SEV_SNP_ID_BLOCK_SIZE": KVM_SEV_SNP_ID_BLOCK_SIZE,
    "KVM_SEV_SNP_ID_AUTH_SIZE": KVM_SEV_SNP_ID_AUTH_SIZE,
    "KVM_SEV_SNP_FINISH_DATA_SIZE": KVM_SEV_SNP_FINISH_DATA_SIZE,
}
