"""The register state a VMM gives a vCPU before an SEV-SNP launch (QEMU's x86 reset state).

Rule 1: pure values. :func:`snp_reset_state` says what QEMU puts in ``KVM_SET_SREGS``,
``KVM_SET_REGS``, ``KVM_SET_FPU`` and ``KVM_SET_XCRS`` for a vCPU at reset (target/i386/cpu.c
``x86_cpu_reset_hold``; for the APs of an SEV-ES/SNP guest, ``sev_es_set_reset_vector`` moves
CS:IP to the firmware's AP reset address). :mod:`cvmlaunch.kvm_map` applies it; KVM folds it
into each vCPU's VMSA at ``SNP_LAUNCH_FINISH`` (``sev_es_sync_vmsa``), which the launch digest
covers. The expected VMSA page of the same state is :func:`cvmlaunch.plan.vmsa.vmsa_page`.

Rule 2: TD vCPUs take no register state from the VMM (the TDX module resets them; only RCX is
passed, by ``KVM_TDX_INIT_VCPU``), so there is nothing here for TDX.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["BSP_RESET_EIP", "Segment", "VcpuState", "snp_reset_state"]

#: The architectural reset vector: CS base 0xFFFF0000, IP 0xFFF0.
BSP_RESET_EIP = 0xFFFF_FFF0
_CR0_RESET = 0x6000_0010  # CD | NW | ET
_APIC_BASE = 0xFEE0_0000
_APIC_ENABLE = 1 << 11
_APIC_BSP = 1 << 8
_FCW_RESET = 0x037F
_MXCSR_RESET = 0x1F80


@dataclass(frozen=True, slots=True)
class Segment:
    """One ``struct kvm_segment``."""

    selector: int
    base: int
    limit: int
    type: int
    present: int = 1
    dpl: int = 0
    db: int = 0
    s: int = 1
    l: int = 0  # noqa: E741 - the kernel's field name
    g: int = 0
    avl: int = 0
    unusable: int = 0


@dataclass(frozen=True, slots=True)
class VcpuState:
    """What the VMM sets on a vCPU before launch.

    Args:
        segments: cs, ds, es, fs, gs, ss, tr, ldt.
        gdt: (base, limit) of the GDTR.
        idt: (base, limit) of the IDTR.
        cr0, cr3, cr4, efer, apic_base: control registers (``KVM_SET_SREGS``).
        regs: general registers by ``struct kvm_regs`` name (others zero), rflags included.
        fcw, mxcsr: the x87 control word and MXCSR (``KVM_SET_FPU``; everything else zero).
        xcr0: XCR0 (``KVM_SET_XCRS``).
    """

    segments: dict[str, Segment]
    gdt: tuple[int, int]
    idt: tuple[int, int]
    cr0: int
    cr3: int
    cr4: int
    efer: int
    apic_base: int
    regs: dict[str, int] = field(default_factory=dict)
    fcw: int = _FCW_RESET
    mxcsr: int = _MXCSR_RESET
    xcr0: int = 1


def snp_reset_state(*, eip: int, vcpu_sig: int, bsp: bool) -> VcpuState:
    """QEMU's reset state of a vCPU starting at ``eip`` (real mode).

    Args:
        eip: :data:`BSP_RESET_EIP` for the BSP; for an AP of an SEV-ES/SNP guest the
            firmware's AP reset address (CS base = ``eip & 0xFFFF0000``, IP = ``eip & 0xFFFF``).
        vcpu_sig: CPUID Fn0000_0001 EAX, which the reset state leaves in EDX.
        bsp: the bootstrap processor (APIC base BSP flag).
    """
    data = Segment(0, 0, 0xFFFF, 0x3)
    segments = {
        "cs": Segment(0xF000, eip & 0xFFFF_0000, 0xFFFF, 0xB),
        "ds": data,
        "es": data,
        "fs": data,
        "gs": data,
        "ss": data,
        "ldt": Segment(0, 0, 0xFFFF, 0x2, s=0),
        "tr": Segment(0, 0, 0xFFFF, 0xB, s=0),
    }
    return VcpuState(
        segments=segments,
        gdt=(0, 0xFFFF),
        idt=(0, 0xFFFF),
        cr0=_CR0_RESET,
        cr3=0,
        cr4=0,
        efer=0,
        apic_base=_APIC_BASE | _APIC_ENABLE | (_APIC_BSP if bsp else 0),
        regs={"rip": eip & 0xFFFF, "rflags": 0x2, "rdx": vcpu_sig},
    )
