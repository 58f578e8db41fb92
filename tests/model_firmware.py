"""Model firmware for the fake kernel: a model AMD PSP (SEV-SNP) and a model Intel TDX module.

:class:`ModelKernel` is :class:`tests.fakekvm.FakeKernel` with the SNP and TDX launch commands
answered the way the kernel and the firmware answer them, so that a launch engine driven
against it is checked on two counts:

* **What it measures.** The model computes the launch measurement from what the engine
  actually submitted, never from a plan: the SNP launch digest from each LAUNCH_UPDATE page
  (contents read through the source pointer, its GPA and page type) and, at LAUNCH_FINISH,
  from a VMSA per vCPU that it builds out of the registers the engine set (KVM
  ``sev_es_sync_vmsa``); the MRTD from each INIT_MEM_REGION page and its MEASURE flag.
  Both are written here from the specifications (SNP firmware ABI, "PAGE_INFO" and
  SNP_LAUNCH_UPDATE; TDX module ABI, TDH.MEM.PAGE.ADD and TDH.MR.EXTEND; AMD APM vol. 2
  table B-4 for the VMSA), not with ``cvmlaunch.measure``.
* **What it allows.** Each kernel or firmware rule (call order, INIT before vCPUs, PRIVATE
  before populate, alignment, policy bits, attribute/XFAM/CPUID subsets, FINALIZE conditions,
  no PRE_FAULT before the launch is sealed, no register writes to protected vCPUs) answers a
  violation with the kernel's errno and records it in :attr:`ModelKernel.violations`; tests
  assert that list is empty.

Interruptions (``faults``, one per populate call, as in :class:`~tests.fakekvm.FakeKernel`):
``Fault(pages=k)`` stops after k pages (SNP: 0 with the rest in the struct; TDX: EINTR with the
struct advanced), ``Fault(pages=0, errno=EAGAIN)`` makes no progress and asks for a retry, and
``Fault(pages=k, errno=EINTR, signal=True)`` also delivers a real signal to this process.
None of these may change the measurement.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import signal
import struct
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from cvmlaunch import _uapi
from cvmlaunch._uapi import Cap, SevCmd, TdxCmd, VmType
from tests.fakekvm import PAGE, FakeKernel, Fault, _oserror, _Vcpu, _Vm


@dataclass(frozen=True)
class ModelFault(Fault):
    """A :class:`~tests.fakekvm.Fault` that can also deliver a real signal (SIGUSR2)."""

    signal: bool = False


# ---------------------------------------------------------------- the host CPU

#: CPUID of the model host (an AMD EPYC-like CPU): (function, index, flags, eax, ebx, ecx, edx).
#: Leaf 1 EAX is the vCPU signature, filled in per CPU type.
_HOST_LEAVES = (
    (0x0, 0, 0, 0x10, 0x68747541, 0x444D4163, 0x69746E65),
    (0x1, 0, 0, -1, 0x00000800, 0xFEF83203 | 1 << 24, 0x178BFBFF),
    (0x7, 0, 1, 0, 0x219C97A9 | 1 << 1, 0x0040068C | 1 << 31, 0xFC00_0010),
    (0xD, 0, 1, 0x2E7, 0x980, 0x988, 0),
    (0xD, 1, 1, 0xF, 0x340, 0x1800, 0),
    (0x40000000, 0, 0, 0x40000001, 0x4B4D564B, 0x564B4D56, 0x4D),
    (0x40000001, 0, 0, 0x01007AFB, 0, 0, 0),
    (0x80000000, 0, 0, 0x80000021, 0x68747541, 0x444D4163, 0x69746E65),
    (0x80000001, 0, 0, 0x00A00F11, 0x40000000, 0x75C237FF, 0x2FD3FBFF),
    (0x80000008, 0, 0, 0x00003030, 0x791EF257 | 1 << 25, 0x0000707F, 0x00010000),
    (0x8000001F, 0, 0, 0x0101FD3F, 0x00004173, 0x000001FD, 0x00000001),
)

#: QEMU CPU models the matrix runs as host CPUs, and their CPUID 1 EAX signatures.
CPU_TYPES = {"EPYC-Milan": 0x00A00F11, "EPYC-Genoa": 0x00A10F10, "EPYC-Rome": 0x00830F10}


def host_cpuid(signature: int) -> list[tuple[int, ...]]:
    """The model host's CPUID with ``signature`` in leaf 1 EAX."""
    return [tuple(signature if v == -1 else v for v in leaf) for leaf in _HOST_LEAVES]


# ---------------------------------------------------------------- TDX module capabilities

TD_SEPT_VE_DISABLE = 1 << 28
TD_PKS = 1 << 30
#: supported_attrs of Linux 6.16 (KVM_SUPPORTED_TD_ATTRS is SEPT_VE_DISABLE only).
SUPPORTED_ATTRS = TD_SEPT_VE_DISABLE
#: x87, SSE, AVX, opmask/ZMM (AVX-512), PKRU (XCR0) and CET (XSS) for the model module.
SUPPORTED_XFAM = 0x0000_1AE7
#: The configurable CPUID leaves and bits (KVM_TDX_CAPABILITIES.cpuid): (function, index,
#: flags, eax, ebx, ecx, edx) masks. 0x80000008 EAX[23:16] = 0xff: GPAW is configurable.
TDX_CONFIG = (
    (0x1, 0, 0, 0, 0, 0x0020_0000 | 0x8000_0000, 0x0000_0000),
    (0x7, 0, 1, 0, 0xFFFF_FFFF, 0xFFFF_FFFF, 0xFFFF_FFFF),
    (0xD, 0, 1, 0xFFFF_FFFF, 0, 0, 0xFFFF_FFFF),
    (0xD, 1, 1, 0xFFFF_FFFF, 0, 0xFFFF_FFFF, 0xFFFF_FFFF),
    (0x8000_0008, 0, 0, 0x00FF_0000, 0, 0, 0),
)
_X2APIC = 1 << 21

# ---------------------------------------------------------------- SNP constants (SNP ABI)

_PAGE_INFO = struct.Struct("<48s48sHBB3sBQ")  # 0x70 bytes
_POLICY_VALID = 0xFFFF | 1 << 16 | 1 << 17 | 1 << 19 | 1 << 20
_POLICY_SMT = 1 << 16
_POLICY_MBO = 1 << 17
_VMSA_GPA = 0xFFFF_FFFF_F000
_SEV_RET_INVALID_PARAM = 0x16
_SUPPORTED_VMSA_FEATURES = 1 << 5  # DEBUG_SWAP
_SNP_ACTIVE = 1
_TYPE_NORMAL, _TYPE_VMSA, _TYPE_ZERO, _TYPE_UNMEASURED, _TYPE_SECRETS, _TYPE_CPUID = (
    1,
    2,
    3,
    4,
    5,
    6,
)


def page_info(digest: bytes, contents: bytes, page_type: int, gpa: int) -> bytes:
    """The 112-byte SNP PAGE_INFO (SNP ABI table "PAGE_INFO"): DIGEST_CUR, CONTENTS, LENGTH
    0x70, PAGE_TYPE, IMI_PAGE 0, VMPL3/2/1 permissions 0, reserved, GPA."""
    return _PAGE_INFO.pack(digest, contents, 0x70, page_type, 0, bytes(3), 0, gpa)


# ---------------------------------------------------------------- the VMSA KVM builds

_SEG = struct.Struct("<HHIQ")
_Q = struct.Struct("<Q")
_EFER_SVME = 1 << 12
_CR4_MCE = 1 << 6  # KVM's svm_set_cr4 keeps the host's CR4.MCE
_CR0_CD_NW = 3 << 29  # cleared by KVM (KVM_X86_QUIRK_CD_NW_CLEARED)
_DR6_RESET, _DR7_RESET = 0xFFFF_0FF0, 0x400
_PAT_RESET = 0x0007_0406_0007_0406
#: sev_es_save_area offsets (Linux arch/x86/include/asm/svm.h = APM vol. 2 table B-4).
_GPR = {
    "rax": 0x1F8,
    "rsp": 0x1D8,
    "rcx": 0x308,
    "rdx": 0x310,
    "rbx": 0x318,
    "rbp": 0x328,
    "rsi": 0x330,
    "rdi": 0x338,
    **{f"r{n}": 0x340 + 8 * (n - 8) for n in range(8, 16)},
    "rip": 0x178,
    "rflags": 0x170,
}


def _attrib(seg: _uapi.KvmSegment) -> int:
    """The VMCB's packed segment attribute (KVM ``svm_set_segment``)."""
    if seg.unusable:
        return 0
    return (
        seg.type
        | seg.s << 4
        | seg.dpl << 5
        | seg.present << 7
        | seg.avl << 8
        | seg.l << 9
        | seg.db << 10
        | seg.g << 11
    )


def sync_vmsa(
    regs: _uapi.KvmRegs,
    sregs: _uapi.KvmSregs,
    fpu: _uapi.KvmFpu,
    xcr0: int,
    sev_features: int,
) -> bytes:
    """The VMSA page KVM builds for a vCPU at SNP_LAUNCH_FINISH (``sev_es_sync_vmsa``)."""
    page = bytearray(PAGE)
    for off, name in enumerate(("es", "cs", "ss", "ds", "fs", "gs")):
        seg = getattr(sregs, name)
        _SEG.pack_into(page, off * 0x10, seg.selector, _attrib(seg), seg.limit, seg.base)
    _SEG.pack_into(page, 0x60, 0, 0, sregs.gdt.limit, sregs.gdt.base)
    _SEG.pack_into(page, 0x70, sregs.ldt.selector, _attrib(sregs.ldt), sregs.ldt.limit, 0)
    _SEG.pack_into(page, 0x80, 0, 0, sregs.idt.limit, sregs.idt.base)
    _SEG.pack_into(page, 0x90, sregs.tr.selector, _attrib(sregs.tr), sregs.tr.limit, sregs.tr.base)
    _Q.pack_into(page, 0xD0, sregs.efer | _EFER_SVME)
    _Q.pack_into(page, 0x148, sregs.cr4 | _CR4_MCE)
    _Q.pack_into(page, 0x150, sregs.cr3)
    _Q.pack_into(page, 0x158, sregs.cr0 & ~_CR0_CD_NW)
    _Q.pack_into(page, 0x160, _DR7_RESET)
    _Q.pack_into(page, 0x168, _DR6_RESET)
    _Q.pack_into(page, 0x240, sregs.cr2)
    _Q.pack_into(page, 0x268, _PAT_RESET)
    for name, off in _GPR.items():
        _Q.pack_into(page, off, getattr(regs, name))
    _Q.pack_into(page, 0x3B0, sev_features)
    _Q.pack_into(page, 0x3E8, xcr0)
    # x87/SSE (SNP VMs only): KVM_SET_FPU's state
    _Q.pack_into(page, 0x400, fpu.last_dp)
    struct.pack_into("<IHHHH", page, 0x408, fpu.mxcsr, fpu.ftwx, fpu.fsw, fpu.fcw, fpu.last_opcode)
    _Q.pack_into(page, 0x418, fpu.last_ip)
    for i in range(8):
        reg = bytes(fpu.fpr[i])
        page[0x420 + 8 * i : 0x420 + 8 * i + 8] = reg[:8]
        page[0x420 + 64 + 2 * i : 0x420 + 64 + 2 * i + 2] = reg[8:10]
    for i in range(16):
        page[0x470 + 16 * i : 0x470 + 16 * (i + 1)] = bytes(fpu.xmm[i])
    return bytes(page)


# ---------------------------------------------------------------- TDX measurement (TDX ABI)


def page_add_record(gpa: int) -> bytes:
    """TDH.MEM.PAGE.ADD's 128-byte MRTD extension: "MEM.PAGE.ADD", the GPA at byte 16."""
    return b"MEM.PAGE.ADD".ljust(16, b"\0") + gpa.to_bytes(8, "little") + bytes(104)


def mr_extend_records(gpa: int, chunk: bytes) -> bytes:
    """TDH.MR.EXTEND's extension: "MR.EXTEND", the chunk GPA at byte 16, then 256 bytes."""
    assert len(chunk) == 256
    return b"MR.EXTEND".ljust(16, b"\0") + gpa.to_bytes(8, "little") + bytes(104) + chunk


class TdxOrder(Enum):
    """How the model module's kernel orders PAGE.ADD and MR.EXTEND within one request."""

    PER_PAGE = "per-page"  # Linux >= 6.16: ADD then 16 EXTENDs, page by page
    TWO_PASS = "two-pass"  # KVM TDX v19 era: every ADD of the request, then every EXTEND


# ---------------------------------------------------------------- per-VM model state


@dataclass
class _Snp:
    init2: bool = False
    features: int = 0
    started: bool = False
    policy: int = 0
    finished: bool = False
    digest: bytes = bytes(48)
    vmsas: list[bytes] = field(default_factory=list)


@dataclass
class _Td:
    caps_read: bool = False
    init_vm: bool = False
    attributes: int = 0
    xfam: int = 0
    cpuid: list[tuple[int, ...]] = field(default_factory=list)
    finalized: bool = False
    mrtd: Any = field(default_factory=hashlib.sha384)
    pending: list[tuple[int, bytes]] = field(default_factory=list)
    in_request: bool = False
    hob_rcx: set[int] = field(default_factory=set)


@dataclass
class _VcpuExtra:
    fpu: bytes = field(default_factory=lambda: bytes(_default_fpu()))
    xcr0: int = 1
    cpuid: list[tuple[int, ...]] | None = None
    tdx_rcx: int | None = None


def _default_fpu() -> _uapi.KvmFpu:
    fpu = _uapi.KvmFpu()
    fpu.fcw, fpu.mxcsr = 0x37F, 0x1F80
    return fpu


class ModelKernel(FakeKernel):
    """:class:`FakeKernel` whose SNP side is a model PSP and whose TDX side a model TDX module.

    Args:
        signature: CPUID 1 EAX of the model host CPU (see :data:`CPU_TYPES`).
        tdx_order: how the model kernel orders TDX PAGE.ADD / MR.EXTEND.
        host_smt: the host has SMT on (the firmware then requires policy bit 16).
        signal_handler_hits: a list the test's SIGUSR2 handler appends to (for ``signal``).
        kwargs: passed to :class:`FakeKernel` (``faults`` etc.).
    """

    def __init__(
        self,
        *,
        signature: int = CPU_TYPES["EPYC-Milan"],
        tdx_order: TdxOrder = TdxOrder.PER_PAGE,
        host_smt: bool = True,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.caps[Cap.EXIT_HYPERCALL] = 1 << _uapi.KVM_HC_MAP_GPA_RANGE
        self.caps[Cap.SPLIT_IRQCHIP] = 1
        self.caps[Cap.X86_APIC_BUS_CYCLES_NS] = 1
        self.caps[Cap.MAX_VCPUS] = 1024
        self.host = host_cpuid(signature)
        self.tdx_order = tdx_order
        self.host_smt = host_smt
        self.violations: list[str] = []
        self.snp: dict[int, _Snp] = {}
        self.td: dict[int, _Td] = {}
        self.extra: dict[int, _VcpuExtra] = {}
        self.enabled_caps: dict[int, set[int]] = {}
        self.cpuid_rejections = 0
        #: The number of system calls made when the launch was sealed (FINISH/FINALIZE).
        self.sealed_at: int | None = None

    # -- helpers ------------------------------------------------------------------
    def violate(self, code: int, message: str) -> OSError:
        """Record a broken rule; the caller raises the errno the kernel returns for it."""
        self.violations.append(message)
        return _oserror(code)

    def snp_digest(self) -> bytes:
        """The launch digest of the (last) SNP VM, as the model PSP computed it."""
        return list(self.snp.values())[-1].digest

    def mrtd(self) -> bytes:
        """The MRTD of the (last) TD, as the model TDX module computed it."""
        return bytes(list(self.td.values())[-1].mrtd.copy().digest())

    def _extra(self, vcpu: _Vcpu) -> _VcpuExtra:
        return self.extra.setdefault(vcpu.fd, _VcpuExtra())

    def _sealed(self, vm: _Vm) -> bool:
        if vm.vm_type is VmType.SNP:
            return self.snp.setdefault(vm.fd, _Snp()).finished
        if vm.vm_type is VmType.TDX:
            return self.td.setdefault(vm.fd, _Td()).finalized
        return True

    def _signal(self, fault: Fault) -> None:
        if isinstance(fault, ModelFault) and fault.signal:
            signal.raise_signal(signal.SIGUSR2)

    # -- system fd --------------------------------------------------------------
    def _system(self, request: int, arg: int | bytearray) -> int:
        if request == _uapi.KVM_GET_SUPPORTED_CPUID and isinstance(arg, bytearray):
            return self._put_cpuid(arg, self.host)
        return super()._system(request, arg)

    def _put_cpuid(self, arg: bytearray, leaves: list[tuple[int, ...]]) -> int:
        header = _uapi.KvmCpuid2.from_buffer(arg)
        if header.nent < len(leaves):
            header.nent = len(leaves)
            raise _oserror(errno.E2BIG)
        header.nent = len(leaves)
        entries = (_uapi.KvmCpuidEntry2 * len(leaves)).from_buffer(
            arg, ctypes.sizeof(_uapi.KvmCpuid2)
        )
        names = ("function", "index", "flags", "eax", "ebx", "ecx", "edx")
        for e, leaf in zip(entries, leaves, strict=True):
            for name, value in zip(names, leaf, strict=True):
                setattr(e, name, value)
        return 0

    @staticmethod
    def _read_cpuid(address: int) -> list[tuple[int, ...]]:
        n = _uapi.KvmCpuid2.from_address(address).nent
        base = address + ctypes.sizeof(_uapi.KvmCpuid2)
        entries = (_uapi.KvmCpuidEntry2 * n).from_address(base)
        return [(e.function, e.index, e.flags, e.eax, e.ebx, e.ecx, e.edx) for e in entries]

    # -- VM fd ------------------------------------------------------------------
    def _vm(self, vm: _Vm, request: int, arg: int | bytearray) -> int:
        if request == _uapi.KVM_ENABLE_CAP and isinstance(arg, bytearray):
            cap = _uapi.KvmEnableCap.from_buffer(arg)
            if cap.cap == Cap.EXIT_HYPERCALL and cap.args[0] & ~self.caps[Cap.EXIT_HYPERCALL]:
                raise self.violate(errno.EINVAL, "EXIT_HYPERCALL with hypercalls not offered")
            if cap.cap == Cap.SPLIT_IRQCHIP and vm.vcpus:
                raise self.violate(errno.EINVAL, "KVM_CAP_SPLIT_IRQCHIP after vCPUs exist")
            self.enabled_caps.setdefault(vm.fd, set()).add(int(cap.cap))
            self.journal.append(("ENABLE_CAP", int(cap.cap), int(cap.args[0])))
            return 0
        if request == _uapi.KVM_CREATE_VCPU and isinstance(arg, int):
            self._check_create_vcpu(vm)
        if request == _uapi.KVM_SET_MEMORY_ATTRIBUTES and isinstance(arg, bytearray):
            a = _uapi.KvmMemoryAttributes.from_buffer(arg)
            gfns = range(a.address // PAGE, (a.address + a.size) // PAGE)
            if not a.attributes and any(g in vm.populated for g in gfns) and not self._sealed(vm):
                raise self.violate(errno.EINVAL, "a populated private page made shared")
            self.journal.append(("SET_MEMORY_ATTRIBUTES", int(a.address), int(a.size)))
        return super()._vm(vm, request, arg)

    def _check_create_vcpu(self, vm: _Vm) -> None:
        if vm.vm_type is VmType.SNP:
            ctx = self.snp.setdefault(vm.fd, _Snp())
            if ctx.finished:
                raise self.violate(errno.EINVAL, "vCPU created after SNP_LAUNCH_FINISH")
        if vm.vm_type is VmType.TDX:
            td = self.td.setdefault(vm.fd, _Td())
            if not td.init_vm:
                raise self.violate(errno.EIO, "TD vCPU created before KVM_TDX_INIT_VM")
            if Cap.SPLIT_IRQCHIP not in self.enabled_caps.get(vm.fd, set()):
                raise self.violate(errno.EINVAL, "TD vCPU without an in-kernel (split) LAPIC")

    # -- vCPU fd ----------------------------------------------------------------
    def _vcpu(self, vcpu: _Vcpu, request: int, arg: int | bytearray) -> int:
        vm = vcpu.vm
        protected = vm.vm_type in (VmType.SNP, VmType.TDX)
        if request == _uapi.KVM_RUN and protected and not self._sealed(vm):
            raise self.violate(errno.EINVAL, "KVM_RUN before the launch was finished")
        if request == _uapi.KVM_PRE_FAULT_MEMORY and protected and not self._sealed(vm):
            raise self.violate(
                errno.EOPNOTSUPP, "KVM_PRE_FAULT_MEMORY before the launch was sealed"
            )
        setters = (
            _uapi.KVM_SET_REGS,
            _uapi.KVM_SET_SREGS,
            _uapi.KVM_SET_FPU,
            _uapi.KVM_SET_XCRS,
        )
        if request in setters and protected:
            if vm.vm_type is VmType.TDX:
                raise self.violate(errno.EINVAL, "register state written to a TD vCPU")
            if self._sealed(vm):
                raise self.violate(errno.EINVAL, "register state written after LAUNCH_FINISH")
        if not isinstance(arg, bytearray):
            return super()._vcpu(vcpu, request, arg)
        extra = self._extra(vcpu)
        if request == _uapi.KVM_SET_FPU:
            extra.fpu = bytes(arg)
            return 0
        if request == _uapi.KVM_SET_XCRS:
            xcrs = _uapi.KvmXcrs.from_buffer(arg)
            for i in range(xcrs.nr_xcrs):
                if xcrs.xcrs[i].xcr == 0:
                    if not xcrs.xcrs[i].value & 1:
                        raise self.violate(errno.EINVAL, "XCR0 without x87")
                    extra.xcr0 = int(xcrs.xcrs[i].value)
            return 0
        if request == _uapi.KVM_SET_CPUID2:
            extra.cpuid = self._read_cpuid(ctypes.addressof(ctypes.c_char.from_buffer(arg)))
            return 0
        if request == _uapi.KVM_GET_CPUID2:
            return self._put_cpuid(arg, extra.cpuid or [])
        return super()._vcpu(vcpu, request, arg)

    # -- the model PSP ------------------------------------------------------------
    def _sev(self, vm: _Vm, cmd: _uapi.KvmSevCmd) -> int:
        cmd.error = 0
        if not any(o == "sev" for fd, o in self.objects.items() if fd == cmd.sev_fd):
            raise self.violate(errno.EBADF, "SEV command without the /dev/sev fd")
        ctx = self.snp.setdefault(vm.fd, _Snp())
        if ctx.init2 and cmd.id < SevCmd.SNP_LAUNCH_START:
            raise self.violate(errno.EPERM, f"legacy SEV command {cmd.id} on an SNP VM")
        if cmd.id == SevCmd.INIT2:
            init = _uapi.KvmSevInit.from_address(cmd.data)
            if ctx.init2:
                raise self.violate(errno.EINVAL, "KVM_SEV_INIT2 twice")
            if vm.vcpus:
                raise self.violate(errno.EINVAL, "KVM_SEV_INIT2 after vCPUs were created")
            if init.flags or init.ghcb_version > 2:
                raise self.violate(errno.EINVAL, "KVM_SEV_INIT2 flags or GHCB version")
            if init.vmsa_features & ~_SUPPORTED_VMSA_FEATURES:
                raise self.violate(
                    errno.EINVAL, f"VMSA features {init.vmsa_features:#x} not supported"
                )
            ctx.init2, ctx.features = True, int(init.vmsa_features) | _SNP_ACTIVE
            self.journal.append(("SEV_INIT2", int(init.vmsa_features), int(init.ghcb_version)))
            return 0
        if not ctx.init2:
            raise self.violate(errno.EINVAL, f"SEV command {cmd.id} before KVM_SEV_INIT2")
        if cmd.id == SevCmd.SNP_LAUNCH_START:
            start = _uapi.KvmSevSnpLaunchStart.from_address(cmd.data)
            policy = int(start.policy)
            if ctx.started:
                raise self.violate(errno.EINVAL, "SNP_LAUNCH_START twice")
            if start.flags or policy & ~_POLICY_VALID or not policy & _POLICY_MBO:
                raise self.violate(errno.EINVAL, f"SNP policy {policy:#x} (bits or flags)")
            if self.host_smt and not policy & _POLICY_SMT:
                cmd.error = 0x7  # SEV_RET_POLICY_FAILURE
                raise self.violate(errno.EIO, f"SNP policy {policy:#x} forbids SMT on an SMT host")
            ctx.started, ctx.policy = True, policy
            self.launch_params["policy"] = policy
            self.journal.append(("SNP_LAUNCH_START", policy))
            return 0
        if cmd.id == SevCmd.SNP_LAUNCH_UPDATE:
            return self._snp_update(vm, cmd)
        if cmd.id == SevCmd.SNP_LAUNCH_FINISH:
            return self._snp_finish(vm, ctx, cmd)
        raise self.violate(errno.EINVAL, f"SEV command {cmd.id}")

    def _snp_update(self, vm: _Vm, cmd: _uapi.KvmSevCmd) -> int:
        ctx = self.snp[vm.fd]
        u = _uapi.KvmSevSnpLaunchUpdate.from_address(cmd.data)
        gfn, uaddr, length, ptype = int(u.gfn_start), int(u.uaddr), int(u.len), int(u.type)
        if not ctx.started or ctx.finished:
            raise self.violate(errno.EINVAL, "SNP_LAUNCH_UPDATE outside START..FINISH")
        if not length or length % PAGE or u.flags:
            raise self.violate(errno.EINVAL, f"SNP_LAUNCH_UPDATE length {length:#x} or flags")
        if ptype not in (_TYPE_NORMAL, _TYPE_ZERO, _TYPE_UNMEASURED, _TYPE_SECRETS, _TYPE_CPUID):
            raise self.violate(errno.EINVAL, f"SNP_LAUNCH_UPDATE page type {ptype}")
        if ptype != _TYPE_ZERO and (not uaddr or uaddr % PAGE):
            raise self.violate(errno.EINVAL, f"SNP_LAUNCH_UPDATE source {uaddr:#x} not aligned")
        slot = vm.slot_for(gfn * PAGE)
        if slot is None:
            raise self.violate(errno.EINVAL, f"GFN {gfn:#x} has no guest_memfd memslot")
        fault = self._next_fault()
        npages = length // PAGE
        budget = npages if fault.pages is None else min(fault.pages, npages)
        # kvm_gmem_populate stops at the end of the memslot of the first GFN
        budget = min(budget, (slot.gpa + slot.size) // PAGE - gfn)
        done = 0
        for i in range(budget):
            gpa = (gfn + i) * PAGE
            src = uaddr + i * PAGE if ptype != _TYPE_ZERO else 0
            if gpa // PAGE not in vm.private:
                self.violate(errno.EIO, f"SNP_LAUNCH_UPDATE of shared GPA {gpa:#x}")
                break
            if gpa // PAGE in vm.populated:
                self.violate(errno.EIO, f"SNP_LAUNCH_UPDATE of GPA {gpa:#x} twice")
                break
            contents = bytes(48)
            if ptype == _TYPE_NORMAL:
                page = ctypes.string_at(src, PAGE)
                contents = hashlib.sha384(page).digest()
            elif ptype == _TYPE_CPUID:
                page = ctypes.string_at(src, PAGE)
                fixed = self._check_cpuid_page(page)
                if fixed is not None:
                    ctypes.memmove(src, fixed, PAGE)  # KVM copies the firmware's page back
                    self.cpuid_rejections += 1
                    if done == 0:
                        cmd.error = _SEV_RET_INVALID_PARAM
                        raise _oserror(errno.EIO)
                    break
            elif ptype == _TYPE_UNMEASURED:
                page = ctypes.string_at(src, PAGE)
            elif ptype == _TYPE_SECRETS:
                page = b"model SNP secrets".ljust(PAGE, b"\0")
            else:
                page = bytes(PAGE)
            self._write_page(vm, gpa, page)
            vm.populated.add(gpa // PAGE)
            ctx.digest = hashlib.sha384(page_info(ctx.digest, contents, ptype, gpa)).digest()
            done += 1
        if done:
            u.gfn_start = gfn + done
            u.len = length - done * PAGE
            if ptype != _TYPE_ZERO:
                u.uaddr = uaddr + done * PAGE
            self._signal(fault)
            return 0
        if fault.errno == errno.EAGAIN and budget == 0:
            raise _oserror(errno.EAGAIN)
        if budget == 0 and fault.errno == 0:
            return 0
        raise _oserror(errno.EIO)  # not private, populated twice, a signal: EIO, error 0

    def _check_cpuid_page(self, page: bytes) -> bytes | None:
        """The firmware's CPUID check: each leaf's bits must be ones the CPU has (leaf 1 EBX
        and the XSAVE sizes excepted). Returns the corrected page, or None if accepted."""
        count = struct.unpack_from("<I", page)[0]
        host = {(f, i if fl & 1 else 0): (a, b, c, d) for f, i, fl, a, b, c, d in self.host}
        if count > 64:
            return page[:0] + struct.pack("<I", 64) + page[4:]
        fixed = bytearray(page)
        changed = False
        for n in range(count):
            off = 16 + 48 * n
            f, i, _, _, a, b, c, d = struct.unpack_from("<IIQQIIII", page, off)
            have = host.get((f, i), (0, 0, 0, 0))
            want = [a & have[0], b & have[1], c & have[2], d & have[3]]
            if f == 1:
                want[0], want[1] = have[0], b  # the signature is the CPU's; EBX per vCPU
            if f == 0xD and i in (0, 1):
                want[1] = b
            if f >= 0x40000000 and f < 0x80000000:
                want = [a, b, c, d]  # hypervisor leaves are the VMM's own
            if want != [a, b, c, d]:
                struct.pack_into("<IIII", fixed, off + 24, *want)
                changed = True
        return bytes(fixed) if changed else None

    def _snp_finish(self, vm: _Vm, ctx: _Snp, cmd: _uapi.KvmSevCmd) -> int:
        fin = _uapi.KvmSevSnpLaunchFinish.from_address(cmd.data)
        if not ctx.started or ctx.finished or fin.flags:
            raise self.violate(errno.EINVAL, "SNP_LAUNCH_FINISH out of order or flags")
        if not vm.vcpus:
            raise self.violate(errno.EINVAL, "SNP_LAUNCH_FINISH with no vCPU")
        for v in vm.vcpus:  # kvm_for_each_vcpu: creation order
            extra = self._extra(v)
            vmsa = sync_vmsa(
                _uapi.KvmRegs.from_buffer_copy(v.regs),
                _uapi.KvmSregs.from_buffer_copy(v.sregs),
                _uapi.KvmFpu.from_buffer_copy(extra.fpu),
                extra.xcr0,
                ctx.features,
            )
            ctx.vmsas.append(vmsa)
            contents = hashlib.sha384(vmsa).digest()
            ctx.digest = hashlib.sha384(
                page_info(ctx.digest, contents, _TYPE_VMSA, _VMSA_GPA)
            ).digest()
        enabled = bool(fin.id_block_en)
        self.launch_params.update(
            host_data=bytes(fin.host_data),
            id_block=ctypes.string_at(fin.id_block_uaddr, 96) if enabled else None,
            id_auth=ctypes.string_at(fin.id_auth_uaddr, 4096) if enabled else None,
            auth_key_en=bool(fin.auth_key_en),
        )
        if enabled:  # the ID block must carry this launch's digest and policy (SNP ABI)
            block = ctypes.string_at(fin.id_block_uaddr, 96)
            if block[:48] != ctx.digest:
                cmd.error = 0x0B  # SEV_RET_BAD_MEASUREMENT
                raise _oserror(errno.EIO)
            if struct.unpack_from("<Q", block, 88)[0] != ctx.policy:
                cmd.error = 0x07  # SEV_RET_POLICY_FAILURE
                raise _oserror(errno.EIO)
        ctx.finished = True
        vm.finalized = True
        self.sealed_at = self.calls
        self.journal.append(("SNP_LAUNCH_FINISH", bytes(fin.host_data), fin.id_block_en))
        return 0

    # -- the model TDX module ---------------------------------------------------------
    def _tdx_vm(self, vm: _Vm, cmd: _uapi.KvmTdxCmd) -> int:
        td = self.td.setdefault(vm.fd, _Td())
        if cmd.hw_error:
            raise self.violate(errno.EINVAL, "kvm_tdx_cmd.hw_error not zero on input")
        if cmd.id == TdxCmd.CAPABILITIES:
            caps = _uapi.KvmTdxCapabilities.from_address(cmd.data)
            if cmd.flags:
                raise self.violate(errno.EINVAL, "KVM_TDX_CAPABILITIES flags")
            if caps.cpuid.nent < len(TDX_CONFIG):
                caps.cpuid.nent = len(TDX_CONFIG)
                raise _oserror(errno.E2BIG)
            caps.supported_attrs, caps.supported_xfam = SUPPORTED_ATTRS, SUPPORTED_XFAM
            base = cmd.data + ctypes.sizeof(_uapi.KvmTdxCapabilities)
            caps.cpuid.nent = len(TDX_CONFIG)
            entries = (_uapi.KvmCpuidEntry2 * len(TDX_CONFIG)).from_address(base)
            names = ("function", "index", "flags", "eax", "ebx", "ecx", "edx")
            for e, leaf in zip(entries, TDX_CONFIG, strict=True):
                for name, value in zip(names, leaf, strict=True):
                    setattr(e, name, value)
            td.caps_read = True
            return 0
        if cmd.id == TdxCmd.INIT_VM:
            return self._tdx_init_vm(vm, td, cmd)
        if cmd.id == TdxCmd.FINALIZE_VM:
            if cmd.flags or cmd.data:
                raise self.violate(errno.EINVAL, "KVM_TDX_FINALIZE_VM flags or data")
            if not td.init_vm or td.finalized:
                raise self.violate(errno.EINVAL, "KVM_TDX_FINALIZE_VM out of order")
            if td.in_request:
                raise self.violate(errno.EINVAL, "KVM_TDX_FINALIZE_VM with a request unfinished")
            td.finalized = True
            vm.finalized = True
            self.sealed_at = self.calls
            self.journal.append(("TDX_FINALIZE_VM",))
            return 0
        raise self.violate(errno.EINVAL, f"TDX VM command {cmd.id}")

    def _tdx_init_vm(self, vm: _Vm, td: _Td, cmd: _uapi.KvmTdxCmd) -> int:
        init = _uapi.KvmTdxInitVm.from_address(cmd.data)
        if cmd.flags:
            raise self.violate(errno.EINVAL, "KVM_TDX_INIT_VM flags")
        if td.init_vm:
            raise self.violate(errno.EINVAL, "KVM_TDX_INIT_VM twice")
        if vm.vcpus:
            raise self.violate(errno.EBUSY, "KVM_TDX_INIT_VM after vCPUs were created")
        if any(init.reserved) or init.cpuid.padding:
            raise self.violate(errno.EINVAL, "KVM_TDX_INIT_VM reserved fields not zero")
        if init.attributes & ~SUPPORTED_ATTRS:
            raise self.violate(errno.EINVAL, f"TD attributes {init.attributes:#x} not supported")
        if init.xfam & ~SUPPORTED_XFAM or init.xfam & 3 != 3:
            raise self.violate(errno.EINVAL, f"XFAM {init.xfam:#x} not supported")
        if init.cpuid.nent > 256:
            raise self.violate(errno.E2BIG, "KVM_TDX_INIT_VM: more than 256 CPUID entries")
        leaves = self._read_cpuid(cmd.data + ctypes.sizeof(_uapi.KvmTdxInitVm) - 8)
        config = {(f, i): (a, b, c, d) for f, i, _fl, a, b, c, d in TDX_CONFIG}
        seen = set()
        for f, i, _fl, a, b, c, d in leaves:
            mask = config.get((f, i))
            if mask is None:
                raise self.violate(errno.EINVAL, f"CPUID leaf {f:#x}.{i} is not configurable")
            if (f, i) == (0x8000_0008, 0):
                gpaw = (a >> 16) & 0xFF
                if gpaw not in (48, 52):
                    raise self.violate(errno.EINVAL, f"GPAW {gpaw} (CPUID 0x80000008 EAX[23:16])")
            if any(v & ~m for v, m in zip((a, b, c, d), mask, strict=True)):
                raise self.violate(errno.EINVAL, f"CPUID leaf {f:#x}.{i}: unconfigurable bits")
            seen.add((f, i))
        if (0x8000_0008, 0) not in seen:
            raise self.violate(errno.EINVAL, "KVM_TDX_INIT_VM without CPUID 0x80000008")
        fault = self._next_fault()
        if fault.errno == errno.EAGAIN:  # TDX_RND_NO_ENTROPY
            raise _oserror(errno.EAGAIN)
        td.init_vm = True
        td.attributes, td.xfam, td.cpuid = int(init.attributes), int(init.xfam), leaves
        vm.tdx_init = True
        self.launch_params.update(
            attributes=td.attributes,
            xfam=td.xfam,
            mrconfigid=bytes(init.mrconfigid),
            mrowner=bytes(init.mrowner),
            mrownerconfig=bytes(init.mrownerconfig),
        )
        self.journal.append(("TDX_INIT_VM",))
        return 0

    def _tdx_vcpu(self, vcpu: _Vcpu, cmd: _uapi.KvmTdxCmd) -> int:
        vm = vcpu.vm
        td = self.td.setdefault(vm.fd, _Td())
        extra = self._extra(vcpu)
        if td.finalized:
            raise self.violate(errno.EINVAL, f"TDX vCPU command {cmd.id} after FINALIZE_VM")
        if cmd.id == TdxCmd.INIT_VCPU:
            if cmd.flags or vcpu.tdx_initialized:
                raise self.violate(errno.EINVAL, "KVM_TDX_INIT_VCPU twice or with flags")
            cpuid = {(f, i): c for f, i, _fl, _a, _b, c, _d in extra.cpuid or []}
            if not cpuid.get((1, 0), 0) & _X2APIC:
                raise self.violate(errno.EINVAL, "KVM_TDX_INIT_VCPU before a CPUID with x2APIC")
            vcpu.tdx_initialized = True
            extra.tdx_rcx = int(cmd.data)
            td.hob_rcx.add(int(cmd.data))
            self.journal.append(("TDX_INIT_VCPU", vcpu.vcpu_id, int(cmd.data)))
            return 0
        if cmd.id != TdxCmd.INIT_MEM_REGION:
            raise self.violate(errno.EINVAL, f"TDX vCPU command {cmd.id}")
        r = _uapi.KvmTdxInitMemRegion.from_address(cmd.data)
        measure = bool(cmd.flags & _uapi.KVM_TDX_MEASURE_MEMORY_REGION)
        if not vcpu.tdx_initialized:
            raise self.violate(errno.EINVAL, "INIT_MEM_REGION on a vCPU without INIT_VCPU")
        if cmd.flags & ~_uapi.KVM_TDX_MEASURE_MEMORY_REGION:
            raise self.violate(errno.EINVAL, "INIT_MEM_REGION flags")
        if not r.source_addr or r.source_addr % PAGE or r.gpa % PAGE or not r.nr_pages:
            raise self.violate(errno.EINVAL, "INIT_MEM_REGION source/GPA/size")
        if r.gpa + r.nr_pages * PAGE > 1 << 47:
            raise self.violate(errno.EINVAL, "INIT_MEM_REGION above the shared bit (GPAW 48)")
        fault = self._next_fault()
        budget = r.nr_pages if fault.pages is None else min(fault.pages, r.nr_pages)
        td.in_request = True
        mrtd = td.mrtd
        for _ in range(budget):
            gpa = int(r.gpa)
            gfn = gpa // PAGE
            if vm.slot_for(gpa) is None:
                raise self.violate(errno.EINVAL, f"INIT_MEM_REGION GPA {gpa:#x} has no memslot")
            if gfn not in vm.private:
                raise self.violate(errno.EINVAL, f"INIT_MEM_REGION of shared GPA {gpa:#x}")
            if gfn in vm.populated:
                raise self.violate(errno.EIO, f"TDH.MEM.PAGE.ADD of GPA {gpa:#x} twice")
            page = ctypes.string_at(r.source_addr, PAGE)
            self._write_page(vm, gpa, page)
            vm.populated.add(gfn)
            mrtd.update(page_add_record(gpa))
            if measure:
                if self.tdx_order is TdxOrder.PER_PAGE:
                    for c in range(16):
                        chunk = page[c * 256 : (c + 1) * 256]
                        mrtd.update(mr_extend_records(gpa + c * 256, chunk))
                else:
                    td.pending.append((gpa, page))
            self.journal.append(("TDX_PAGE_ADD", gpa, measure, hashlib.sha384(page).digest()))
            r.source_addr += PAGE
            r.gpa += PAGE
            r.nr_pages -= 1
        if r.nr_pages == 0:
            for gpa, page in td.pending:
                for c in range(16):
                    chunk = page[c * 256 : (c + 1) * 256]
                    mrtd.update(mr_extend_records(gpa + c * 256, chunk))
            td.pending.clear()
            td.in_request = False
            return 0
        self._signal(fault)
        raise _oserror(fault.errno or errno.EINTR)  # the struct shows the progress
