"""vCPUs (:class:`Vcpu`): registers, CPUID, the run loop and its decoded exits.

Part of :mod:`cvmlaunch.kvm_map` (see its rules).
"""

from __future__ import annotations

import ctypes
import enum
import errno as errno_codes
import mmap
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cvmlaunch import _uapi
from cvmlaunch._uapi import ExitReason, TdxCmd
from cvmlaunch.cpuid import CpuidEntry
from cvmlaunch.errors import KvmError
from cvmlaunch.kvm_map._kernel import (
    Kernel,
    _address,
    _cpuid_array,
    _cpuid_call,
    _cpuid_from_c,
    _ioctl,
    _struct_buf,
    _tdx_op,
)
from cvmlaunch.vcpu_state import VcpuState

if TYPE_CHECKING:
    from cvmlaunch.kvm_map.ports import PortBus

#: The signal that kicks a vCPU thread out of KVM_RUN when a run times out.
KICK_SIGNAL = signal.SIGUSR1

Regs = _uapi.KvmRegs
Sregs = _uapi.KvmSregs


# ---------------------------------------------------------------- vCPU exits


class IoDirection(enum.IntEnum):
    """``kvm_run.io.direction``."""

    IN = _uapi.KVM_EXIT_IO_IN
    OUT = _uapi.KVM_EXIT_IO_OUT


@dataclass(frozen=True, slots=True)
class IoExit:
    """``KVM_EXIT_IO``: ``count`` accesses of ``size`` bytes to ``port``; ``data`` for OUT."""

    port: int
    direction: IoDirection
    size: int
    count: int
    data: bytes


@dataclass(frozen=True, slots=True)
class MmioExit:
    """``KVM_EXIT_MMIO``: an access to guest-physical ``gpa`` that no memslot backs."""

    gpa: int
    is_write: bool
    data: bytes


@dataclass(frozen=True, slots=True)
class HltExit:
    """``KVM_EXIT_HLT``: the vCPU executed HLT (no in-kernel APIC)."""


@dataclass(frozen=True, slots=True)
class ShutdownExit:
    """``KVM_EXIT_SHUTDOWN``: triple fault."""


@dataclass(frozen=True, slots=True)
class FailEntryExit:
    """``KVM_EXIT_FAIL_ENTRY``: the hardware refused the guest state."""

    hardware_entry_failure_reason: int
    cpu: int


@dataclass(frozen=True, slots=True)
class InternalErrorExit:
    """``KVM_EXIT_INTERNAL_ERROR`` (suberror 1: emulation failure)."""

    suberror: int
    data: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class SystemEventExit:
    """``KVM_EXIT_SYSTEM_EVENT`` (e.g. type 6, SEV_TERM)."""

    type: int
    data: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class MemoryFaultExit:
    """``KVM_EXIT_MEMORY_FAULT``: the guest touched ``[gpa, gpa+size)`` with the wrong attribute."""

    flags: int
    gpa: int
    size: int

    @property
    def private(self) -> bool:
        """The access was private (``KVM_MEMORY_EXIT_FLAG_PRIVATE``)."""
        return bool(self.flags & _uapi.KVM_MEMORY_EXIT_FLAG_PRIVATE)


@dataclass(frozen=True, slots=True)
class HypercallExit:
    """``KVM_EXIT_HYPERCALL``: a hypercall KVM hands to userspace (e.g. MAP_GPA_RANGE)."""

    nr: int
    args: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class OtherExit:
    """An exit reason this module does not decode."""

    reason: int


@dataclass(frozen=True, slots=True)
class TimeoutExit:
    """:meth:`Vcpu.run` stopped the guest because its timeout elapsed."""

    timeout: float


#: The first PC serial port (COM1), where guests print.
SERIAL_PORT = 0x3F8


@dataclass(frozen=True, slots=True)
class SerialRun:
    """The result of :meth:`Vcpu.run_serial`: the UART output and the exit that ended it."""

    output: bytes
    exit: VcpuExit


VcpuExit = (
    IoExit
    | MmioExit
    | HltExit
    | ShutdownExit
    | FailEntryExit
    | InternalErrorExit
    | SystemEventExit
    | MemoryFaultExit
    | HypercallExit
    | OtherExit
    | TimeoutExit
)


def _decode_exit(mapping: mmap.mmap) -> tuple[VcpuExit, int]:
    """Decode ``struct kvm_run`` (returns the exit and, for I/O, the data offset)."""
    run = _uapi.KvmRun.from_buffer_copy(mapping[: ctypes.sizeof(_uapi.KvmRun)])
    reason = int(run.exit_reason)
    ex = run.exit
    if reason == ExitReason.IO:
        io = ex.io
        off, n = int(io.data_offset), int(io.size) * int(io.count)
        return IoExit(
            port=int(io.port),
            direction=IoDirection(io.direction),
            size=int(io.size),
            count=int(io.count),
            data=bytes(mapping[off : off + n]),
        ), off
    if reason == ExitReason.MMIO:
        m = ex.mmio
        return MmioExit(int(m.phys_addr), bool(m.is_write), bytes(m.data)[: int(m.len)]), 0
    if reason == ExitReason.HLT:
        return HltExit(), 0
    if reason == ExitReason.SHUTDOWN:
        return ShutdownExit(), 0
    if reason == ExitReason.FAIL_ENTRY:
        f = ex.fail_entry
        return FailEntryExit(int(f.hardware_entry_failure_reason), int(f.cpu)), 0
    if reason == ExitReason.INTERNAL_ERROR:
        i = ex.internal
        return InternalErrorExit(int(i.suberror), tuple(i.data)[: min(int(i.ndata), 16)]), 0
    if reason == ExitReason.SYSTEM_EVENT:
        s = ex.system_event
        return SystemEventExit(int(s.type), tuple(s.data)[: min(int(s.ndata), 16)]), 0
    if reason == ExitReason.HYPERCALL:
        h = ex.hypercall
        return HypercallExit(int(h.nr), tuple(int(a) for a in h.args)), 0
    if reason == ExitReason.MEMORY_FAULT:
        mf = ex.memory_fault
        return MemoryFaultExit(int(mf.flags), int(mf.gpa), int(mf.size)), 0
    return OtherExit(reason), 0


def install_kick_handler() -> None:
    """Install a no-op handler for :data:`KICK_SIGNAL` (must run in the main thread).

    :meth:`Vcpu.run` with a timeout interrupts ``KVM_RUN`` with this signal; a default or
    ignored disposition would kill the process or not interrupt the call.

    Raises:
        RuntimeError: called outside the main thread while no handler is installed (a bug
            of the caller: install it first).
    """
    current = signal.getsignal(KICK_SIGNAL)
    if current in (signal.SIG_DFL, signal.SIG_IGN, None):
        try:
            signal.signal(KICK_SIGNAL, lambda signum, frame: None)
        except ValueError as exc:
            raise RuntimeError(
                f"a vCPU run with a timeout needs a handler for {KICK_SIGNAL.name}: call "
                "cvmlaunch.kvm_map.install_kick_handler() from the main thread first"
            ) from exc


# ---------------------------------------------------------------- vCPU


class Vcpu:
    """A vCPU fd and its mapped ``struct kvm_run``. Created and owned by
    :meth:`~cvmlaunch.kvm_map.vm.Vm.create_vcpu`."""

    def __init__(
        self, kernel: Kernel, fd: int, vcpu_id: int, run_map: mmap.mmap | None = None
    ) -> None:
        self.kernel = kernel
        self.fd = fd
        self.vcpu_id = vcpu_id
        self.run_map = run_map
        self._io_offset = 0

    def close(self) -> None:
        """Unmap ``kvm_run`` and close the fd (idempotent)."""
        run_map, self.run_map = self.run_map, None
        fd, self.fd = self.fd, -1
        try:
            if run_map is not None:
                run_map.close()
        finally:
            if fd >= 0:
                try:
                    self.kernel.close(fd)
                except OSError as exc:
                    raise KvmError("close", errno=exc.errno) from exc

    def _ioctl(self, request: int, arg: int | bytearray, op: str) -> int:
        return _ioctl(self.kernel, self.fd, request, arg, op)

    # registers --------------------------------------------------------------
    def get_regs(self) -> Regs:
        """``KVM_GET_REGS``."""
        buf, _ = _struct_buf(Regs)
        self._ioctl(_uapi.KVM_GET_REGS, buf, "KVM_GET_REGS")
        return Regs.from_buffer_copy(buf)

    def set_regs(self, regs: Regs) -> None:
        """``KVM_SET_REGS``."""
        self._ioctl(_uapi.KVM_SET_REGS, bytearray(regs), "KVM_SET_REGS")

    def get_sregs(self) -> Sregs:
        """``KVM_GET_SREGS``."""
        buf, _ = _struct_buf(Sregs)
        self._ioctl(_uapi.KVM_GET_SREGS, buf, "KVM_GET_SREGS")
        return Sregs.from_buffer_copy(buf)

    def set_sregs(self, sregs: Sregs) -> None:
        """``KVM_SET_SREGS``."""
        self._ioctl(_uapi.KVM_SET_SREGS, bytearray(sregs), "KVM_SET_SREGS")

    def setup_real_mode(self, segment: int, ip: int, **regs: int) -> None:
        """Enter 16-bit real mode at ``segment:ip`` (every data segment = ``segment``).

        Args:
            segment: the real-mode segment (base ``segment * 16``).
            ip: the instruction pointer within it.
            regs: other general registers to set, e.g. ``rsi=0x7000``.
        """
        sregs = self.get_sregs()
        for name in ("cs", "ds", "es", "fs", "gs", "ss"):
            seg: _uapi.KvmSegment = getattr(sregs, name)
            seg.selector, seg.base, seg.limit = segment, segment << 4, 0xFFFF
        sregs.cr0 &= ~1
        self.set_sregs(sregs)
        self._set_regs(rip=ip, **regs)

    def setup_protected_mode(self, entry: int, **regs: int) -> None:
        """Enter 32-bit flat protected mode at ``entry``, paging off (the PVH entry state).

        CS is a flat 32-bit code segment (selector 0x10), DS/ES/FS/GS/SS flat 32-bit data
        (selector 0x18), CR0.PE set, CR4 and EFER clear. For PVH pass ``rbx=start_info_gpa``.

        Args:
            entry: the 32-bit entry point (EIP).
            regs: other general registers, e.g. ``rbx=0x6000``.
        """
        sregs = self.get_sregs()
        for name, selector, seg_type in (
            ("cs", 0x10, 0xB),
            ("ds", 0x18, 0x3),
            ("es", 0x18, 0x3),
            ("fs", 0x18, 0x3),
            ("gs", 0x18, 0x3),
            ("ss", 0x18, 0x3),
        ):
            seg: _uapi.KvmSegment = getattr(sregs, name)
            seg.base, seg.limit, seg.selector, seg.type = 0, 0xFFFFFFFF, selector, seg_type
            seg.present, seg.dpl, seg.db, seg.s, seg.l, seg.g = 1, 0, 1, 1, 0, 1
            seg.avl, seg.unusable = 0, 0
        sregs.cr0 = (sregs.cr0 | 1) & ~(1 << 31)
        sregs.cr4 = 0
        sregs.efer = 0
        self.set_sregs(sregs)
        self._set_regs(rip=entry, **regs)

    def _set_regs(self, **values: int) -> None:
        regs = Regs()
        regs.rflags = 0x2
        for name, value in values.items():
            if name not in Regs.__annotations__:
                raise ValueError(f"no general register called {name!r}")
            setattr(regs, name, value)
        self.set_regs(regs)

    def set_fpu(self, *, fcw: int, mxcsr: int) -> None:
        """``KVM_SET_FPU``: reset x87/SSE state with the given control word and MXCSR."""
        buf, fpu = _struct_buf(_uapi.KvmFpu)
        fpu.fcw, fpu.mxcsr = fcw, mxcsr
        self._ioctl(_uapi.KVM_SET_FPU, buf, "KVM_SET_FPU")

    def set_xcr0(self, xcr0: int) -> None:
        """``KVM_SET_XCRS`` with XCR0 alone."""
        buf, xcrs = _struct_buf(_uapi.KvmXcrs)
        xcrs.nr_xcrs = 1
        xcrs.xcrs[0].xcr, xcrs.xcrs[0].value = 0, xcr0
        self._ioctl(_uapi.KVM_SET_XCRS, buf, "KVM_SET_XCRS")

    def set_cpuid2(self, entries: Sequence[CpuidEntry]) -> None:
        """``KVM_SET_CPUID2``."""
        head = ctypes.sizeof(_uapi.KvmCpuid2)
        buf = bytearray(head) + bytearray(_cpuid_array(entries))
        _uapi.KvmCpuid2.from_buffer(buf).nent = len(entries)
        self._ioctl(_uapi.KVM_SET_CPUID2, buf, "KVM_SET_CPUID2")

    def get_cpuid2(self) -> tuple[CpuidEntry, ...]:
        """``KVM_GET_CPUID2``: the CPUID this vCPU has (grown on E2BIG)."""
        return _cpuid_call(self.kernel, self.fd, _uapi.KVM_GET_CPUID2, "KVM_GET_CPUID2")

    def set_state(self, state: VcpuState) -> None:
        """Give the vCPU ``state``: ``KVM_SET_SREGS``, ``KVM_SET_REGS``, ``KVM_SET_FPU`` and
        ``KVM_SET_XCRS``, in QEMU's order (every field set, none read back)."""
        sregs = Sregs()
        for name, seg in state.segments.items():
            c: _uapi.KvmSegment = getattr(sregs, name)
            for f in ("base", "limit", "selector", "type", "present", "dpl", "db", "s", "l"):
                setattr(c, f, getattr(seg, f))
            c.g, c.avl, c.unusable = seg.g, seg.avl, seg.unusable
        sregs.gdt.base, sregs.gdt.limit = state.gdt
        sregs.idt.base, sregs.idt.limit = state.idt
        sregs.cr0, sregs.cr3, sregs.cr4 = state.cr0, state.cr3, state.cr4
        sregs.efer, sregs.apic_base = state.efer, state.apic_base
        self.set_sregs(sregs)
        regs = Regs()
        for name, value in state.regs.items():
            if name not in Regs.__annotations__:
                raise ValueError(f"no general register called {name!r}")
            setattr(regs, name, value)
        self.set_regs(regs)
        self.set_fpu(fcw=state.fcw, mxcsr=state.mxcsr)
        self.set_xcr0(state.xcr0)

    # running ----------------------------------------------------------------
    def run(self, timeout: float | None = None) -> VcpuExit:
        """``KVM_RUN`` until the next exit to userspace, or until ``timeout`` seconds pass.

        A timeout is enforced by a timer thread that sets ``kvm_run.immediate_exit`` (so a
        run about to start returns at once) and then sends :data:`KICK_SIGNAL` to this thread
        (so a run in progress returns EINTR); see :func:`install_kick_handler`. Other signals
        that interrupt the call re-enter the guest (a handler that raises, e.g. Ctrl-C,
        propagates).

        Returns:
            The decoded exit, or :class:`TimeoutExit`.

        Raises:
            KvmError: ``KVM_RUN`` failed.
            RuntimeError: a timeout was asked off the main thread with no kick handler.
        """
        if self.run_map is None:
            raise KvmError("KVM_RUN", detail=f"vCPU {self.vcpu_id} has no kvm_run mapping")
        run_map = self.run_map
        immediate = _uapi.offset_of(_uapi.KvmRun, "immediate_exit")
        fired = threading.Event()
        timer: threading.Timer | None = None
        if timeout is not None:
            install_kick_handler()
            tid = threading.get_ident()

            def kick() -> None:
                fired.set()
                run_map[immediate] = 1
                signal.pthread_kill(tid, KICK_SIGNAL)

            timer = threading.Timer(timeout, kick)
        run_map[immediate] = 0
        try:
            if timer is not None:
                timer.start()
            while True:
                try:
                    self.kernel.ioctl(self.fd, _uapi.KVM_RUN, 0)
                except OSError as exc:
                    if exc.errno == errno_codes.EINTR:
                        if fired.is_set():
                            return TimeoutExit(float(timeout or 0))
                        continue
                    raise KvmError("KVM_RUN", errno=exc.errno) from exc
                exit_, self._io_offset = _decode_exit(run_map)
                return exit_
        finally:
            if timer is not None:
                timer.cancel()
                timer.join()
            run_map[immediate] = 0

    def run_serial(
        self,
        timeout: float,
        *,
        port: int = SERIAL_PORT,
        on_output: Callable[[bytes], None] | None = None,
        ports: PortBus | None = None,
    ) -> SerialRun:
        """Run until the guest stops, collecting what it writes to a 16550 UART at ``port``.

        OUTs to ``port`` are collected (and passed to ``on_output`` as they come). Reads of
        the UART's line status register (``port + 5``) answer "transmitter empty" (0x60), any
        other IN reads zeros, other OUTs are ignored; port I/O to a device on ``ports`` is
        that device's (:class:`~cvmlaunch.kvm_map.PortBus`). Everything else ends the run: HLT,
        SHUTDOWN, a system event, an internal error, MMIO, ... or the ``timeout`` (seconds,
        for the whole run).

        Returns:
            The bytes written to the UART and the exit that ended the run.

        Raises:
            KvmError: ``KVM_RUN`` failed.
        """
        deadline = time.monotonic() + timeout
        output = bytearray()
        while True:
            left = deadline - time.monotonic()
            exit_ = TimeoutExit(timeout) if left <= 0 else self.run(left)
            if isinstance(exit_, TimeoutExit):
                return SerialRun(bytes(output), TimeoutExit(timeout))
            if ports is not None and ports.serve(self, exit_):
                continue
            if not isinstance(exit_, IoExit):
                return SerialRun(bytes(output), exit_)
            if exit_.direction is IoDirection.OUT:
                if exit_.port == port:
                    output += exit_.data
                    if on_output is not None:
                        on_output(exit_.data)
                continue
            n = exit_.size * exit_.count
            answer = b"\x60" * n if exit_.port == port + 5 else bytes(n)
            self.complete_io_in(answer)

    def complete_hypercall(self, ret: int) -> None:
        """Give the guest the hypercall's return value (between the exit and the next run)."""
        if self.run_map is None:
            raise KvmError("KVM_RUN", detail=f"vCPU {self.vcpu_id} has no kvm_run mapping")
        off = _uapi.offset_of(_uapi.KvmRun, "exit") + _uapi.offset_of(_uapi.KvmRunHypercall, "ret")
        self.run_map[off : off + 8] = ret.to_bytes(8, "little")

    def complete_io_in(self, data: bytes) -> None:
        """Give the data an IN instruction reads (call between an IN exit and the next run)."""
        if self.run_map is None:
            raise KvmError("KVM_RUN", detail=f"vCPU {self.vcpu_id} has no kvm_run mapping")
        self.run_map[self._io_offset : self._io_offset + len(data)] = data

    # populate / TDX ---------------------------------------------------------
    def pre_fault_memory(self, request: bytearray) -> None:
        """``KVM_PRE_FAULT_MEMORY`` with a ``kvm_pre_fault_memory`` buffer (in/out)."""
        self._ioctl(_uapi.KVM_PRE_FAULT_MEMORY, request, "KVM_PRE_FAULT_MEMORY")

    def _tdx_op(self, cmd: TdxCmd, flags: int = 0, data: int = 0) -> None:
        _tdx_op(self.kernel, self.fd, cmd, flags, data)

    def tdx_init_vcpu(self, rcx: int) -> None:
        """``KVM_TDX_INIT_VCPU``; ``rcx`` is the initial RCX (TDVF: the TD HOB GPA)."""
        self._tdx_op(TdxCmd.INIT_VCPU, data=rcx)

    def tdx_init_mem_region(self, region: bytearray, measure: bool) -> None:
        """``KVM_TDX_INIT_MEM_REGION`` with a ``kvm_tdx_init_mem_region`` buffer (in/out)."""
        flags = _uapi.KVM_TDX_MEASURE_MEMORY_REGION if measure else 0
        self._tdx_op(TdxCmd.INIT_MEM_REGION, flags, _address(region))

    def tdx_get_cpuid(self, nent: int = 256) -> tuple[CpuidEntry, ...]:
        """``KVM_TDX_GET_CPUID`` (E2BIG if ``nent`` is too small)."""
        size = ctypes.sizeof(_uapi.KvmCpuid2) + nent * ctypes.sizeof(_uapi.KvmCpuidEntry2)
        buf = bytearray(size)
        header = _uapi.KvmCpuid2.from_buffer(buf)
        header.nent = nent
        self._tdx_op(TdxCmd.GET_CPUID, data=_address(buf))
        entries = (_uapi.KvmCpuidEntry2 * nent).from_buffer(buf, ctypes.sizeof(_uapi.KvmCpuid2))
        return tuple(_cpuid_from_c(e) for e in entries[: min(int(header.nent), nent)])
