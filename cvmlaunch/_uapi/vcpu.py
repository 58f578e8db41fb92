"""vCPU state in the KVM ABI (asm/kvm.h, x86): general and special registers, CPUID, the FPU
and the XCRs.
"""

from __future__ import annotations

import ctypes
from ctypes import c_uint8, c_uint16, c_uint32, c_uint64

from cvmlaunch._uapi._ioc import _ior, _iow, _iowr

# ---------------------------------------------------------------- registers (asm/kvm.h)


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


# ---------------------------------------------------------------- CPUID (asm/kvm.h)


#: ``kvm_cpuid_entry2.flags``: the leaf has subleaves (``index`` matters).
KVM_CPUID_FLAG_SIGNIFCANT_INDEX = 1


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


# ---------------------------------------------------------------- ioctl numbers

# system fd
KVM_GET_SUPPORTED_CPUID = _iowr(0x05, KvmCpuid2)
# vCPU fd
KVM_GET_REGS = _ior(0x81, KvmRegs)
KVM_SET_REGS = _iow(0x82, KvmRegs)
KVM_GET_SREGS = _ior(0x83, KvmSregs)
KVM_SET_SREGS = _iow(0x84, KvmSregs)
KVM_GET_FPU = _ior(0x8C, KvmFpu)
KVM_SET_FPU = _iow(0x8D, KvmFpu)
KVM_SET_CPUID2 = _iow(0x90, KvmCpuid2)
KVM_GET_CPUID2 = _iowr(0x91, KvmCpuid2)
KVM_GET_XCRS = _ior(0xA6, KvmXcrs)
KVM_SET_XCRS = _iow(0xA7, KvmXcrs)
