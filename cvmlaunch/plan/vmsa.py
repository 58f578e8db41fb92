"""Initial VMSA pages: the register state of each vCPU, as KVM measures it at launch.

Rule: one function builds every VMSA variant from explicit settings (VMM flavour, vCPU
signature, SEV_FEATURES, FPU initialisation); nothing is implied by a mode name.

Spec: AMD APM vol. 2, appendix B, table B-4 "VMSA Layout, State Save Area for SEV-ES" (Linux
``struct sev_es_save_area``, arch/x86/include/asm/svm.h): one 4 KiB page, little endian.
Segment registers are ``{u16 selector, u16 attrib, u32 limit, u64 base}`` with the 12-bit
packed attribute form. The values are those KVM (``sev_es_sync_vmsa`` and the vCPU reset
state) and QEMU (x86 reset state, ``sev_es_set_reset_vector``) produce, and, for EC2 and GCE,
what those VMMs are documented to produce (sev-snp-measure ``vmsa.py``).
"""

from __future__ import annotations

import enum
import struct

from cvmlaunch.errors import ConfigError
from cvmlaunch.layout import PAGE_SIZE

__all__ = [
    "BSP_RESET_EIP",
    "MAX_VCPUS",
    "FpuInit",
    "VmmType",
    "check_vmsa_settings",
    "svsm_vmsa_page",
    "vmsa_page",
]

#: The architectural reset vector: CS base 0xFFFF0000, IP 0xFFF0.
BSP_RESET_EIP = 0xFFFF_FFF0


class VmmType(enum.Enum):
    """The VMM whose initial vCPU state (and SNP page types) the measurement follows."""

    QEMU = "QEMU"
    EC2 = "ec2"
    GCE = "gce"


class FpuInit(enum.Enum):
    """How KVM initialised the VM, which decides the FPU fields of the VMSA.

    Since Linux 6.10 KVM copies the reset FPU state (MXCSR 0x1F80, x87 FCW 0x037F) into the
    VMSA, but only for VMs created with KVM_SEV_INIT2 (every SNP VM; SEV-ES with QEMU
    ``legacy-vm-type=off``). VMs created through the legacy KVM_SEV_ES_INIT (QEMU 9.1+'s default
    for SEV-ES, ``legacy-vm-type=auto``), and every VM on kernels before 6.10, keep both 0.
    """

    INIT2 = "init2"
    LEGACY = "legacy"


# APM vol. 2 table B-4 offsets.
#: The largest vCPU count accepted: x86 KVM's highest KVM_MAX_VCPUS (CONFIG_KVM_MAX_NR_VCPUS).
MAX_VCPUS = 4096


def check_vmsa_settings(vcpus: int, vcpu_sig: int, guest_features: int) -> None:
    """Check what every SEV-ES/SNP VMSA takes from the settings: the vCPU count (one VMSA
    each, 1..:data:`MAX_VCPUS`), the signature in RDX (32 bits) and SEV_FEATURES (64 bits).

    Raises:
        ConfigError: a value out of range, naming its setting.
    """
    if isinstance(vcpus, bool) or not 1 <= vcpus <= MAX_VCPUS:
        raise ConfigError(
            f"vcpus: vCPU count {vcpus} is out of range (1..{MAX_VCPUS})", setting="vcpus"
        )
    if not 0 <= vcpu_sig <= 0xFFFF_FFFF:
        raise ConfigError(f"vcpu_sig {vcpu_sig:#x} is not a 32-bit value", setting="vcpu_sig")
    if not 0 <= guest_features < 1 << 64:
        raise ConfigError(
            f"guest_features {guest_features:#x} is not a 64-bit value",
            setting="guest_features",
        )


_SEG = struct.Struct("<HHIQ")  # selector, attrib, limit, base
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")
_U16 = struct.Struct("<H")
_ES, _CS, _SS, _DS, _FS, _GS = 0x000, 0x010, 0x020, 0x030, 0x040, 0x050
_GDTR, _LDTR, _IDTR, _TR = 0x060, 0x070, 0x080, 0x090
_EFER = 0x0D0
_CR4 = 0x148
_CR0 = 0x158
_DR7 = 0x160
_DR6 = 0x168
_RFLAGS = 0x170
_RIP = 0x178
_G_PAT = 0x268
_RDX = 0x310
_SEV_FEATURES = 0x3B0
_XCR0 = 0x3E8
_MXCSR = 0x408
_X87_FCW = 0x410

_EFER_SVME = 0x1000  # KVM sets EFER.SVME in SEV-ES VMSAs
_CR4_MCE = 0x40
_CR0_ET = 0x10
_CR0_PE = 0x01
_DR7_RESET = 0x400
_DR6_RESET = 0xFFFF_0FF0
_RFLAGS_RESET = 0x2
_PAT_RESET = 0x0007_0406_0007_0406  # APM vol. 2 A.3, power-on PAT
_PAT_GCE = 0x0000_0000_0007_0106
_XCR0_RESET = 0x1
_MXCSR_RESET = 0x1F80
_FCW_RESET = 0x037F
#: RDX that KVM leaves when the VMM configures no CPUID leaf 1 (EC2, GCE).
_RDX_NO_CPUID = 0x600


def _fpu(fpu: FpuInit) -> tuple[int, int]:
    return (_MXCSR_RESET, _FCW_RESET) if fpu is FpuInit.INIT2 else (0, 0)


def vmsa_page(
    *,
    eip: int,
    vcpu_sig: int,
    sev_features: int,
    vmm: VmmType = VmmType.QEMU,
    fpu: FpuInit = FpuInit.INIT2,
) -> bytes:
    """The VMSA page of a vCPU at reset (real mode), as QEMU/EC2/GCE + KVM build it.

    Args:
        eip: the start address: :data:`BSP_RESET_EIP` for the BSP, the SEV-ES reset block's
            AP reset address for APs. CS base = ``eip & 0xFFFF0000``, RIP = ``eip & 0xFFFF``.
        vcpu_sig: CPUID Fn0000_0001 EAX, written to RDX (QEMU only; EC2/GCE use 0x600).
        sev_features: SEV_FEATURES (offset 0x3B0).
        vmm: the VMM flavour: EC2 uses CS attrib 0x9A for the BSP, SS 0x92, TR 0x83; GCE uses
            PAT 0x70106. EC2 and GCE leave the FPU fields 0.
        fpu: INIT2 (MXCSR 0x1F80, FCW 0x37F) or LEGACY (both 0); ignored for EC2/GCE.

    Returns:
        4096 bytes.
    """
    cs_attr, ss_attr, tr_attr = 0x9B, 0x93, 0x8B
    rdx = vcpu_sig
    pat = _PAT_RESET
    mxcsr, fcw = _fpu(fpu)
    if vmm is VmmType.EC2:
        cs_attr = 0x9A if eip == BSP_RESET_EIP else 0x9B
        ss_attr, tr_attr = 0x92, 0x83
        rdx = _RDX_NO_CPUID
        mxcsr, fcw = 0, 0
    elif vmm is VmmType.GCE:
        pat = _PAT_GCE
        rdx = _RDX_NO_CPUID
        mxcsr, fcw = 0, 0
    page = bytearray(PAGE_SIZE)
    _SEG.pack_into(page, _ES, 0, 0x93, 0xFFFF, 0)
    _SEG.pack_into(page, _CS, 0xF000, cs_attr, 0xFFFF, eip & 0xFFFF_0000)
    _SEG.pack_into(page, _SS, 0, ss_attr, 0xFFFF, 0)
    _SEG.pack_into(page, _DS, 0, 0x93, 0xFFFF, 0)
    _SEG.pack_into(page, _FS, 0, 0x93, 0xFFFF, 0)
    _SEG.pack_into(page, _GS, 0, 0x93, 0xFFFF, 0)
    _SEG.pack_into(page, _GDTR, 0, 0, 0xFFFF, 0)
    _SEG.pack_into(page, _LDTR, 0, 0x82, 0xFFFF, 0)
    _SEG.pack_into(page, _IDTR, 0, 0, 0xFFFF, 0)
    _SEG.pack_into(page, _TR, 0, tr_attr, 0xFFFF, 0)
    _fill_common(page, cr0=_CR0_ET, rip=eip & 0xFFFF, pat=pat, rdx=rdx, features=sev_features)
    _U32.pack_into(page, _MXCSR, mxcsr)
    _U16.pack_into(page, _X87_FCW, fcw)
    return bytes(page)


def svsm_vmsa_page(*, eip: int, vcpu_sig: int, fpu: FpuInit = FpuInit.INIT2) -> bytes:
    """The VMSA page of a vCPU entering a Coconut SVSM image (QEMU; 32-bit protected mode).

    QEMU with an SVSM starts every vCPU flat in protected mode at the SVSM entry point:
    CR0 0x11 (PE|ET), CS selector 8 attrib 0xC9B, ES/SS/DS/FS selector 0x10 attrib 0xC93,
    limits 0xFFFFFFFF, GS left in its reset state; SEV_FEATURES 0x1 (SNPActive).

    Args:
        eip: the entry point (SVSM image GPA + the SVSM-info entry offset); the RIP.
        vcpu_sig: CPUID Fn0000_0001 EAX, written to RDX.
        fpu: INIT2 (MXCSR 0x1F80, FCW 0x37F, every current SNP host) or LEGACY (both 0, SNP
            host kernels before Linux 6.10).

    Returns:
        4096 bytes.
    """
    mxcsr, fcw = _fpu(fpu)
    page = bytearray(PAGE_SIZE)
    for offset in (_ES, _SS, _DS, _FS):
        _SEG.pack_into(page, offset, 0x10, 0xC93, 0xFFFF_FFFF, 0)
    _SEG.pack_into(page, _CS, 0x8, 0xC9B, 0xFFFF_FFFF, 0)
    _SEG.pack_into(page, _GS, 0, 0x93, 0xFFFF, 0)
    _SEG.pack_into(page, _GDTR, 0, 0, 0xFFFF, 0)
    _SEG.pack_into(page, _LDTR, 0, 0x82, 0xFFFF, 0)
    _SEG.pack_into(page, _IDTR, 0, 0, 0xFFFF, 0)
    _SEG.pack_into(page, _TR, 0, 0x8B, 0xFFFF, 0)
    _fill_common(page, cr0=_CR0_ET | _CR0_PE, rip=eip, pat=_PAT_RESET, rdx=vcpu_sig, features=1)
    _U32.pack_into(page, _MXCSR, mxcsr)
    _U16.pack_into(page, _X87_FCW, fcw)
    return bytes(page)


def _fill_common(page: bytearray, *, cr0: int, rip: int, pat: int, rdx: int, features: int) -> None:
    _U64.pack_into(page, _EFER, _EFER_SVME)
    _U64.pack_into(page, _CR4, _CR4_MCE)
    _U64.pack_into(page, _CR0, cr0)
    _U64.pack_into(page, _DR7, _DR7_RESET)
    _U64.pack_into(page, _DR6, _DR6_RESET)
    _U64.pack_into(page, _RFLAGS, _RFLAGS_RESET)
    _U64.pack_into(page, _RIP, rip)
    _U64.pack_into(page, _G_PAT, pat)
    _U64.pack_into(page, _RDX, rdx)
    _U64.pack_into(page, _SEV_FEATURES, features)
    _U64.pack_into(page, _XCR0, _XCR0_RESET)
