"""The KVM edge: VMs, vCPUs, memslots (guest_memfd or anonymous memory), and the populate engine.

Rule 1: this is the only module that makes KVM system calls, and it makes them only through a
:class:`Kernel` (``open``, ``close``, ``ioctl``, ``mmap``). :class:`LinuxKernel` is the real one;
tests inject a fake through :meth:`Kvm.open` / :meth:`Vm.open`. Nothing here asks which kernel
it runs against.

Rule 2: every file descriptor and mapping belongs to an object with a context manager
(:class:`Kvm`, :class:`Vm`, which owns its :class:`Vcpu` and :class:`GuestMemory` objects);
``close()`` is idempotent, and every resource is registered with its owner the moment it
exists, so no error path leaks.

Rule 3: one typed wrapper per ioctl. A failure raises :class:`~cvmlaunch.errors.KvmError`
(op, errno, firmware error) ``from`` the ``OSError``; wrappers never retry.

Rule 4: every populate call (PRE_FAULT_MEMORY, TDX INIT_MEM_REGION, SNP LAUNCH_UPDATE) goes
through the one resume loop :func:`_drive`: the kernel rewrites the request to the range still
to do, and the loop resumes from exactly there (kvm-uapi.md §2). Each call that made progress,
whole or partial, appends a :class:`~cvmlaunch.log_entry.LogEntry`: the log is what was done, not
what was planned. This module never imports :mod:`cvmlaunch.measure`; the CLI replays the log.

Rule 5: asking for a VM type the host lacks raises :class:`~cvmlaunch.errors.KvmUnsupported`
before any VM is created.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import enum
import errno as errno_codes
import hashlib
import mmap
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self, TypeVar

from cvmlaunch import _uapi
from cvmlaunch._uapi import (
    Cap,
    ExitReason,
    GuestMemfdFlag,
    MemFlag,
    MemoryAttribute,
    SevCmd,
    TdxCmd,
    VmType,
)
from cvmlaunch.errors import ConfigError, CvmLaunchError, KvmError, KvmUnsupported
from cvmlaunch.layout import (
    PAGE_SIZE,
    Layout,
    PageType,
    Region,
)
from cvmlaunch.log_entry import LogEntry, LogOp, zero_by_construction
from cvmlaunch.memory_map import MemoryMap

__all__ = [
    "Cap",
    "CpuidEntry",
    "ExitReason",
    "FailEntryExit",
    "GuestMemfdFlag",
    "GuestMemory",
    "HltExit",
    "InternalErrorExit",
    "IoDirection",
    "IoExit",
    "Kernel",
    "Kvm",
    "KvmCaps",
    "LaunchLog",
    "LinuxKernel",
    "MemoryAttribute",
    "MemoryBackend",
    "MemoryBackendChoice",
    "MemoryFaultExit",
    "MmioExit",
    "OtherExit",
    "Regs",
    "SerialRun",
    "ShutdownExit",
    "SnpFinish",
    "Sregs",
    "SystemEventExit",
    "TdxCapabilities",
    "TimeoutExit",
    "Vcpu",
    "VcpuExit",
    "Vm",
    "VmType",
    "choose_memory_backend",
    "install_kick_handler",
    "populate",
    "populate_plain",
    "populate_snp",
    "populate_tdx",
]

KVM_PATH = "/dev/kvm"
SEV_PATH = "/dev/sev"
#: Consecutive populate calls without progress before :func:`_drive` gives up.
MAX_STALLS = 8
#: Pages staged (copied to a page-aligned buffer) per TDX/SNP populate request: 2 MiB.
STAGING_PAGES = 512
#: The signal that kicks a vCPU thread out of KVM_RUN when a run times out.
KICK_SIGNAL = signal.SIGUSR1

Regs = _uapi.KvmRegs
Sregs = _uapi.KvmSregs


# ---------------------------------------------------------------- the system-call seam


class Kernel(Protocol):
    """The system calls cvmlaunch makes on KVM. Failures raise ``OSError`` with an errno."""

    def open(self, path: str, flags: int) -> int:
        """``open(2)``; returns a file descriptor."""
        ...

    def close(self, fd: int) -> None:
        """``close(2)``."""
        ...

    def ioctl(self, fd: int, request: int, arg: int | bytearray) -> int:
        """``ioctl(2)`` with an integer argument or a pointer to ``arg`` (read and written)."""
        ...

    def mmap(self, fd: int, length: int) -> mmap.mmap:
        """A shared read/write mapping of ``fd`` from offset 0; ``fd`` -1 maps private
        anonymous memory (zero-filled, what a VMM gives a guest as RAM)."""
        ...


class LinuxKernel:
    """The real :class:`Kernel`: thin wrappers over :mod:`os`, :mod:`fcntl` and :mod:`mmap`."""

    def open(self, path: str, flags: int) -> int:
        """``os.open``."""
        return os.open(path, flags | os.O_CLOEXEC)

    def close(self, fd: int) -> None:
        """``os.close``."""
        os.close(fd)

    def ioctl(self, fd: int, request: int, arg: int | bytearray) -> int:
        """``fcntl.ioctl`` (a buffer argument is updated in place).

        A negative fd fails with EBADF, as the system call would (Python's fcntl refuses it
        with a ValueError before making the call).
        """
        import fcntl

        if fd < 0:
            raise OSError(errno_codes.EBADF, os.strerror(errno_codes.EBADF))
        if isinstance(arg, int):
            return int(fcntl.ioctl(fd, request, arg))
        return int(fcntl.ioctl(fd, request, arg, True))

    def mmap(self, fd: int, length: int) -> mmap.mmap:
        """``mmap.mmap(fd, length, MAP_SHARED, PROT_READ | PROT_WRITE)``; for ``fd`` -1
        ``MAP_PRIVATE | MAP_ANONYMOUS``."""
        share = mmap.MAP_PRIVATE if fd == -1 else mmap.MAP_SHARED
        return mmap.mmap(fd, length, share, mmap.PROT_READ | mmap.PROT_WRITE)


def _address(buf: bytearray | mmap.mmap) -> int:
    """The user address of a buffer (the temporary ctypes view is released at once)."""
    return ctypes.addressof(ctypes.c_char.from_buffer(buf))


_S = TypeVar("_S", bound=ctypes.Structure)


def _struct_buf(cls: type[_S]) -> tuple[bytearray, _S]:
    """A zeroed buffer for ``cls`` and a ctypes view over it."""
    buf = bytearray(ctypes.sizeof(cls))
    return buf, cls.from_buffer(buf)


class _Closer:
    """A stack of close actions run once, last first, even if some of them fail."""

    def __init__(self) -> None:
        self._actions: list[Callable[[], None]] = []

    def push(self, action: Callable[[], None]) -> None:
        self._actions.append(action)

    def close(self) -> None:
        error: BaseException | None = None
        while self._actions:
            action = self._actions.pop()
            try:
                action()
            except OSError as exc:  # re-raised after the rest are closed
                error = error or KvmError("close", errno=exc.errno)
                error.__cause__ = exc
            except BaseException as exc:
                error = error or exc
        if error is not None:
            raise error


def _ioctl(kernel: Kernel, fd: int, request: int, arg: int | bytearray, op: str) -> int:
    """One ioctl; an ``OSError`` becomes :class:`KvmError` naming ``op``."""
    try:
        return kernel.ioctl(fd, request, arg)
    except OSError as exc:
        raise KvmError(op, errno=exc.errno) from exc


# ---------------------------------------------------------------- capabilities


@dataclass(frozen=True, slots=True)
class KvmCaps:
    """What this host's KVM offers (``KVM_CHECK_EXTENSION`` on the system fd).

    Args:
        api_version: ``KVM_GET_API_VERSION`` (12).
        vm_types: ``KVM_CAP_VM_TYPES``, a mask of ``1 << VmType``.
        guest_memfd: ``KVM_CAP_GUEST_MEMFD``.
        guest_memfd_flags: ``KVM_CAP_GUEST_MEMFD_FLAGS`` (for the default VM type).
        user_memory2: ``KVM_CAP_USER_MEMORY2``.
        memory_attributes: ``KVM_CAP_MEMORY_ATTRIBUTES``, the mask of settable attributes.
        pre_fault_memory: ``KVM_CAP_PRE_FAULT_MEMORY``.
        memory_fault_info: ``KVM_CAP_MEMORY_FAULT_INFO``.
        max_vcpus: ``KVM_CAP_MAX_VCPUS``.
        nr_memslots: ``KVM_CAP_NR_MEMSLOTS``.
        vcpu_mmap_size: ``KVM_GET_VCPU_MMAP_SIZE``.
        user_memory: ``KVM_CAP_USER_MEMORY`` (``KVM_SET_USER_MEMORY_REGION``; every KVM).
    """

    api_version: int
    vm_types: int
    guest_memfd: bool
    guest_memfd_flags: int
    user_memory2: bool
    memory_attributes: int
    pre_fault_memory: bool
    memory_fault_info: bool
    max_vcpus: int
    nr_memslots: int
    vcpu_mmap_size: int
    user_memory: bool = True

    def supports(self, vm_type: VmType) -> bool:
        """Whether ``KVM_CREATE_VM(vm_type)`` is offered."""
        return bool(self.vm_types & (1 << vm_type))

    @property
    def tdx(self) -> bool:
        """TDX guests (``KVM_X86_TDX_VM``)."""
        return self.supports(VmType.TDX)

    @property
    def snp(self) -> bool:
        """SEV-SNP guests (``KVM_X86_SNP_VM``)."""
        return self.supports(VmType.SNP)

    def require(
        self, vm_type: VmType, memory_backend: str | MemoryBackend = "auto"
    ) -> MemoryBackendChoice:
        """Check that a VM of ``vm_type`` can be built here, and choose its memory backend
        (:func:`choose_memory_backend`).

        Raises:
            KvmUnsupported: naming the first missing capability.
            ConfigError: a backend the VM type cannot use, or an unknown backend name.
        """
        if vm_type is not VmType.DEFAULT and not self.supports(vm_type):
            raise KvmUnsupported(
                f"KVM_X86_{vm_type.name}_VM",
                detail=f"KVM_CAP_VM_TYPES is {self.vm_types:#x}, bit {int(vm_type)} is clear",
            )
        return choose_memory_backend(self, vm_type, memory_backend)

    def missing(self) -> tuple[str, ...]:
        """The memory capabilities this host lacks, of guest_memfd, its mmap flag, pre-fault
        and memory attributes (names as the kernel headers spell them)."""
        out = []
        if not self.guest_memfd:
            out.append("KVM_CAP_GUEST_MEMFD")
        if not self.guest_memfd_flags & GuestMemfdFlag.MMAP:
            out.append("GUEST_MEMFD_FLAG_MMAP")
        if not self.guest_memfd_flags & GuestMemfdFlag.INIT_SHARED:
            out.append("GUEST_MEMFD_FLAG_INIT_SHARED")
        if not self.pre_fault_memory:
            out.append("KVM_CAP_PRE_FAULT_MEMORY")
        if not self.memory_attributes:
            out.append("KVM_CAP_MEMORY_ATTRIBUTES")
        if not self.user_memory2:
            out.append("KVM_CAP_USER_MEMORY2")
        return tuple(out)

    def as_dict(self) -> dict[str, int | bool | str | list[str]]:
        """A JSON-ready view, with the VM type names spelled out, the capabilities this host
        lacks (:meth:`missing`), and the memory backend a plain launch would use and why."""
        out: dict[str, int | bool | str | list[str]] = {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self)
        }
        out["vm_type_names"] = [t.name for t in VmType if self.supports(t)]
        out["tdx"] = self.tdx
        out["snp"] = self.snp
        out["missing"] = list(self.missing())
        try:
            choice = choose_memory_backend(self, VmType.DEFAULT)
        except KvmUnsupported as exc:
            out["plain_memory_backend"] = "none"
            out["plain_memory_backend_reason"] = str(exc)
        else:
            out["plain_memory_backend"] = choice.backend.value
            out["plain_memory_backend_reason"] = choice.reason
        return out


# ---------------------------------------------------------------- memory backends


class MemoryBackend(enum.StrEnum):
    """Where a VM's memslots get their memory (``launch --memory-backend``).

    ``GUEST_MEMFD``: a guest_memfd per memslot (``KVM_MEM_GUEST_MEMFD``); a plain VM maps it
    with ``GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED`` and ``userspace_addr`` points
    at that mapping. ``ANONYMOUS``: private anonymous memory bound with
    ``KVM_SET_USER_MEMORY_REGION2`` (flags 0), or ``KVM_SET_USER_MEMORY_REGION`` where
    ``KVM_CAP_USER_MEMORY2`` is absent. Only plain VMs can use it: SNP, TDX and SW_PROTECTED
    guests keep private memory, which only guest_memfd holds.
    """

    GUEST_MEMFD = "guest-memfd"
    ANONYMOUS = "anonymous"


#: The guest_memfd flags a plain VM's guest_memfd memslot needs: populate copies through the
#: guest_memfd's own mapping, and the guest reads the same (shared) pages.
PLAIN_GUEST_MEMFD_FLAGS = GuestMemfdFlag.MMAP | GuestMemfdFlag.INIT_SHARED


@dataclass(frozen=True, slots=True)
class MemoryBackendChoice:
    """The memory backend a VM uses, and why.

    Args:
        backend: the backend.
        requested: what was asked: ``auto``, ``guest-memfd`` or ``anonymous``.
        missing: what guest_memfd would need for this VM type that the host lacks (empty:
            guest_memfd is offered).
    """

    backend: MemoryBackend
    requested: str
    missing: tuple[str, ...] = ()

    @property
    def fallback(self) -> bool:
        """``auto`` took anonymous memory because guest_memfd is not offered."""
        return self.requested == "auto" and self.backend is MemoryBackend.ANONYMOUS

    @property
    def reason(self) -> str:
        """One line: the backend and why it was chosen."""
        if self.backend is MemoryBackend.GUEST_MEMFD:
            why = "asked for" if self.requested != "auto" else "offered by this host's KVM"
            return f"memory backend: guest-memfd ({why})"
        if self.missing and self.requested == "auto":
            return (
                "memory backend: anonymous memory, as this host's KVM does not offer "
                f"{' or '.join(self.missing)} (guest_memfd for a plain VM needs it)"
            )
        return "memory backend: anonymous memory (asked for)"


def _guest_memfd_missing(caps: KvmCaps, vm_type: VmType) -> tuple[str, ...]:
    """What guest_memfd memslots for ``vm_type`` need that ``caps`` lacks."""
    out = []
    if not caps.guest_memfd:
        out.append("KVM_CAP_GUEST_MEMFD")
    if not caps.user_memory2:
        out.append("KVM_CAP_USER_MEMORY2")
    if vm_type is VmType.DEFAULT:
        for flag in PLAIN_GUEST_MEMFD_FLAGS:  # MMAP, then INIT_SHARED
            if caps.guest_memfd and not caps.guest_memfd_flags & flag:
                out.append(f"GUEST_MEMFD_FLAG_{flag.name}")
    elif not caps.memory_attributes & MemoryAttribute.PRIVATE:
        out.append("KVM_MEMORY_ATTRIBUTE_PRIVATE")
    return tuple(out)


def choose_memory_backend(
    caps: KvmCaps, vm_type: VmType, requested: str | MemoryBackend = "auto"
) -> MemoryBackendChoice:
    """The memory backend for a VM of ``vm_type`` on a host with ``caps`` (pure: no kernel).

    ``auto``: guest_memfd where the host offers it for the VM type (for a plain VM: with
    ``GUEST_MEMFD_FLAG_MMAP`` and ``GUEST_MEMFD_FLAG_INIT_SHARED``), else anonymous memory
    (plain VMs only). ``guest-memfd`` / ``anonymous``: that backend, or an error.

    Raises:
        KvmUnsupported: the backend asked for (or, for SNP/TDX/SW_PROTECTED, guest_memfd)
            needs a capability the host lacks; the first missing one is named.
        ConfigError: ``anonymous`` for a VM type with private memory, or an unknown name.
    """
    text = str(requested.value if isinstance(requested, MemoryBackend) else requested)
    if text not in ("auto", *(b.value for b in MemoryBackend)):
        raise ConfigError(f"--memory-backend {text!r}: expected auto, guest-memfd or anonymous")
    private = vm_type is not VmType.DEFAULT
    missing = _guest_memfd_missing(caps, vm_type)
    if text == MemoryBackend.ANONYMOUS:
        if private:
            raise ConfigError(
                f"--memory-backend anonymous: {vm_type.name} guests need guest_memfd "
                "(their private memory lives only there)"
            )
        if not (caps.user_memory2 or caps.user_memory):
            raise KvmUnsupported("KVM_CAP_USER_MEMORY")
        return MemoryBackendChoice(MemoryBackend.ANONYMOUS, text, missing)
    if not missing:
        return MemoryBackendChoice(MemoryBackend.GUEST_MEMFD, text)
    if text == MemoryBackend.GUEST_MEMFD or private:
        detail = ""
        if missing[0].startswith("GUEST_MEMFD_FLAG_"):
            detail = f"KVM_CAP_GUEST_MEMFD_FLAGS is {caps.guest_memfd_flags:#x}"
        elif missing[0] == "KVM_MEMORY_ATTRIBUTE_PRIVATE":
            detail = f"KVM_CAP_MEMORY_ATTRIBUTES is {caps.memory_attributes:#x}"
        raise KvmUnsupported(missing[0], detail=detail)
    if not (caps.user_memory2 or caps.user_memory):
        raise KvmUnsupported("KVM_CAP_USER_MEMORY")
    return MemoryBackendChoice(MemoryBackend.ANONYMOUS, text, missing)


# ---------------------------------------------------------------- the system handle


class Kvm:
    """The KVM system handle (``/dev/kvm``). Use :meth:`open`; it owns its fd."""

    def __init__(self, kernel: Kernel, fd: int) -> None:
        self.kernel = kernel
        self.fd = fd
        self._caps: KvmCaps | None = None

    @classmethod
    def open(cls, kernel: Kernel | None = None, path: str = KVM_PATH) -> Kvm:
        """Open ``/dev/kvm`` (the only place besides :meth:`Vm.open` a kernel is injected).

        Raises:
            KvmUnsupported: the device cannot be opened.
            KvmError: the API version is not 12.
        """
        kernel = kernel or LinuxKernel()
        try:
            fd = kernel.open(path, os.O_RDWR)
        except OSError as exc:
            raise KvmUnsupported(path, detail=f"cannot open it: {exc.strerror}") from exc
        kvm = cls(kernel, fd)
        try:
            version = kvm.api_version()
            if version != _uapi.KVM_API_VERSION:
                raise KvmError("KVM_GET_API_VERSION", detail=f"API version {version}, expected 12")
        except BaseException:
            kvm.close()
            raise
        return kvm

    def close(self) -> None:
        """Close the fd (idempotent)."""
        fd, self.fd = self.fd, -1
        if fd >= 0:
            try:
                self.kernel.close(fd)
            except OSError as exc:
                raise KvmError("close", errno=exc.errno) from exc

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def api_version(self) -> int:
        """``KVM_GET_API_VERSION``."""
        return _ioctl(self.kernel, self.fd, _uapi.KVM_GET_API_VERSION, 0, "KVM_GET_API_VERSION")

    def check_extension(self, cap: Cap | int) -> int:
        """``KVM_CHECK_EXTENSION`` on the system fd (0: not offered)."""
        return _ioctl(self.kernel, self.fd, _uapi.KVM_CHECK_EXTENSION, int(cap), _cap_op(cap))

    def vcpu_mmap_size(self) -> int:
        """``KVM_GET_VCPU_MMAP_SIZE``: bytes to map on a vCPU fd."""
        return _ioctl(
            self.kernel, self.fd, _uapi.KVM_GET_VCPU_MMAP_SIZE, 0, "KVM_GET_VCPU_MMAP_SIZE"
        )

    def caps(self) -> KvmCaps:
        """Probe the host once (only ``CHECK_EXTENSION`` and friends; nothing is created)."""
        if self._caps is None:
            c = self.check_extension
            self._caps = KvmCaps(
                api_version=self.api_version(),
                vm_types=c(Cap.VM_TYPES) or 1,  # 0: the cap predates VM types; only type 0
                guest_memfd=bool(c(Cap.GUEST_MEMFD)),
                guest_memfd_flags=c(Cap.GUEST_MEMFD_FLAGS),
                user_memory2=bool(c(Cap.USER_MEMORY2)),
                memory_attributes=c(Cap.MEMORY_ATTRIBUTES),
                pre_fault_memory=bool(c(Cap.PRE_FAULT_MEMORY)),
                memory_fault_info=bool(c(Cap.MEMORY_FAULT_INFO)),
                max_vcpus=c(Cap.MAX_VCPUS),
                nr_memslots=c(Cap.NR_MEMSLOTS),
                vcpu_mmap_size=self.vcpu_mmap_size(),
                user_memory=bool(c(Cap.USER_MEMORY)),
            )
        return self._caps

    def create_vm(
        self, vm_type: VmType = VmType.DEFAULT, memory_backend: str | MemoryBackend = "auto"
    ) -> Vm:
        """``KVM_CREATE_VM`` after checking the host offers ``vm_type`` and choosing its
        memory backend (:func:`choose_memory_backend`; the VM's ``memory_backend``).

        For SNP, ``/dev/sev`` is opened first (its fd goes into every SEV command).

        Raises:
            KvmUnsupported: the host lacks the type or the backend (nothing has been created).
            ConfigError: a backend the type cannot use.
            KvmError: the call failed.
        """
        caps = self.caps()
        choice = caps.require(vm_type, memory_backend)
        sev_fd = -1
        if vm_type in (VmType.SEV, VmType.SEV_ES, VmType.SNP):
            try:
                sev_fd = self.kernel.open(SEV_PATH, os.O_RDWR)
            except OSError as exc:
                raise KvmUnsupported(SEV_PATH, detail=f"cannot open it: {exc.strerror}") from exc
        try:
            fd = _ioctl(self.kernel, self.fd, _uapi.KVM_CREATE_VM, int(vm_type), "KVM_CREATE_VM")
        except BaseException:
            if sev_fd >= 0:
                with contextlib.suppress(OSError):  # the CREATE_VM error is the one to report
                    self.kernel.close(sev_fd)
            raise
        return Vm(
            self.kernel,
            fd,
            vm_type,
            vcpu_mmap_size=caps.vcpu_mmap_size,
            sev_fd=sev_fd,
            memory_backend=choice,
            user_memory2=caps.user_memory2,
        )


def _cap_op(cap: Cap | int) -> str:
    name = cap.name if isinstance(cap, Cap) else str(int(cap))
    return f"KVM_CHECK_EXTENSION(KVM_CAP_{name})"


# ---------------------------------------------------------------- guest memory


class GuestMemory:
    """One memslot: its memory, the host mapping its ``userspace_addr`` points at.

    guest_memfd backend: with ``GUEST_MEMFD_FLAG_MMAP`` the mapping is the guest_memfd's own
    mmap (on this project's PVM host emulated accesses go through ``userspace_addr``, so it
    must be that mmap; see kvm-uapi.md §4); without it, the mapping is anonymous memory for
    the guest's shared pages. Anonymous backend: ``gmem_fd`` is -1 and the mapping (private
    anonymous memory) is the guest's memory. Owned and closed by its :class:`Vm`.
    """

    def __init__(
        self, slot: int, gpa: int, size: int, gmem_fd: int, flags: int, mapping: mmap.mmap
    ) -> None:
        self.slot = slot
        self.gpa = gpa
        self.size = size
        self.gmem_fd = gmem_fd
        self.flags = GuestMemfdFlag(flags)
        self.mapping = mapping
        self.userspace_addr = _address(mapping)

    @property
    def end(self) -> int:
        """First GPA after the slot."""
        return self.gpa + self.size

    def write(self, gpa: int, data: bytes | memoryview) -> None:
        """Copy ``data`` to guest-physical ``gpa`` through the mapping."""
        off = self._offset(gpa, len(data))
        self.mapping[off : off + len(data)] = data

    def read(self, gpa: int, size: int) -> bytes:
        """Read ``size`` bytes at ``gpa`` through the mapping."""
        off = self._offset(gpa, size)
        return self.mapping[off : off + size]

    def _offset(self, gpa: int, size: int) -> int:
        if not (self.gpa <= gpa and gpa + size <= self.end):
            raise ConfigError(
                f"[{gpa:#x}-{gpa + size:#x}) is outside memslot {self.slot} "
                f"[{self.gpa:#x}-{self.end:#x})"
            )
        return gpa - self.gpa


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
    if reason == ExitReason.MEMORY_FAULT:
        mf = ex.memory_fault
        return MemoryFaultExit(int(mf.flags), int(mf.gpa), int(mf.size)), 0
    return OtherExit(reason), 0


def install_kick_handler() -> None:
    """Install a no-op handler for :data:`KICK_SIGNAL` (must run in the main thread).

    :meth:`Vcpu.run` with a timeout interrupts ``KVM_RUN`` with this signal; a default or
    ignored disposition would kill the process or not interrupt the call.

    Raises:
        ConfigError: called outside the main thread while no handler is installed.
    """
    current = signal.getsignal(KICK_SIGNAL)
    if current in (signal.SIG_DFL, signal.SIG_IGN, None):
        try:
            signal.signal(KICK_SIGNAL, lambda signum, frame: None)
        except ValueError as exc:
            raise ConfigError(
                f"a vCPU run with a timeout needs a handler for {KICK_SIGNAL.name}: call "
                "cvmlaunch.kvm_map.install_kick_handler() from the main thread first"
            ) from exc


# ---------------------------------------------------------------- TDX / CPUID values


_CPUID_FIELDS = ("function", "index", "flags", "eax", "ebx", "ecx", "edx")


@dataclass(frozen=True, slots=True)
class CpuidEntry:
    """One ``struct kvm_cpuid_entry2``."""

    function: int
    index: int
    flags: int
    eax: int
    ebx: int
    ecx: int
    edx: int

    @classmethod
    def from_c(cls, e: _uapi.KvmCpuidEntry2) -> CpuidEntry:
        """Copy out of the C struct."""
        return cls(*(int(getattr(e, f)) for f in _CPUID_FIELDS))


@dataclass(frozen=True, slots=True)
class TdxCapabilities:
    """``KVM_TDX_CAPABILITIES``: supported TD attributes, XFAM and configurable CPUID bits."""

    supported_attrs: int
    supported_xfam: int
    cpuid: tuple[CpuidEntry, ...]


def _cpuid_array(entries: Sequence[CpuidEntry]) -> ctypes.Array[_uapi.KvmCpuidEntry2]:
    arr = (_uapi.KvmCpuidEntry2 * len(entries))()
    for i, e in enumerate(entries):
        for f in _CPUID_FIELDS:
            setattr(arr[i], f, getattr(e, f))
    return arr


@dataclass(frozen=True, slots=True)
class SnpFinish:
    """The arguments of ``KVM_SEV_SNP_LAUNCH_FINISH``.

    Args:
        id_block: the 96-byte ID block, or None (not enabled).
        id_auth: the 4096-byte ID authentication structure (with ``id_block``).
        auth_key_en: the ID auth carries an author key.
        vcek_disabled: forbid VCEK-signed reports.
        host_data: 32 bytes reported verbatim in the attestation report.
    """

    id_block: bytes | None = None
    id_auth: bytes | None = None
    auth_key_en: bool = False
    vcek_disabled: bool = False
    host_data: bytes = bytes(32)

    def __post_init__(self) -> None:
        if len(self.host_data) != _uapi.KVM_SEV_SNP_FINISH_DATA_SIZE:
            raise ConfigError(f"SNP host data is {len(self.host_data)} bytes, not 32")
        if self.id_block is not None:
            if len(self.id_block) != _uapi.KVM_SEV_SNP_ID_BLOCK_SIZE:
                raise ConfigError(f"SNP ID block is {len(self.id_block)} bytes, not 96")
            if self.id_auth is None or len(self.id_auth) != _uapi.KVM_SEV_SNP_ID_AUTH_SIZE:
                raise ConfigError("an SNP ID block needs a 4096-byte ID auth structure")
        elif self.id_auth is not None or self.auth_key_en:
            raise ConfigError("an SNP ID auth structure or author key needs an ID block")


# ---------------------------------------------------------------- vCPU


class Vcpu:
    """A vCPU fd and its mapped ``struct kvm_run``. Created and owned by :meth:`Vm.create_vcpu`."""

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
                raise ConfigError(f"no general register called {name!r}")
            setattr(regs, name, value)
        self.set_regs(regs)

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
            ConfigError: a timeout was asked off the main thread with no kick handler.
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
    ) -> SerialRun:
        """Run until the guest stops, collecting what it writes to a 16550 UART at ``port``.

        OUTs to ``port`` are collected (and passed to ``on_output`` as they come). Reads of
        the UART's line status register (``port + 5``) answer "transmitter empty" (0x60), any
        other IN reads zeros, other OUTs are ignored. Everything else ends the run: HLT,
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
        return tuple(CpuidEntry.from_c(e) for e in entries[: min(int(header.nent), nent)])


def _tdx_op(kernel: Kernel, fd: int, cmd: TdxCmd, flags: int, data: int) -> None:
    """``KVM_MEMORY_ENCRYPT_OP`` with a ``kvm_tdx_cmd``; ``hw_error`` is the firmware error."""
    buf, c = _struct_buf(_uapi.KvmTdxCmd)
    c.id, c.flags, c.data = cmd, flags, data
    try:
        kernel.ioctl(fd, _uapi.KVM_MEMORY_ENCRYPT_OP, buf)
    except OSError as exc:
        raise KvmError(
            f"KVM_TDX_{cmd.name}", errno=exc.errno, fw_error=int(c.hw_error) or None
        ) from exc


# ---------------------------------------------------------------- VM


class Vm:
    """A VM fd and everything created from it: vCPUs, guest_memfds, their mappings.

    Build it with :meth:`open` or :meth:`Kvm.create_vm`; ``with`` it, or call :meth:`close`.
    """

    def __init__(
        self,
        kernel: Kernel,
        fd: int,
        vm_type: VmType = VmType.DEFAULT,
        *,
        vcpu_mmap_size: int = 3 * PAGE_SIZE,
        sev_fd: int = -1,
        memory_backend: MemoryBackendChoice | None = None,
        user_memory2: bool = True,
    ) -> None:
        self.kernel = kernel
        self.fd = fd
        self.vm_type = vm_type
        #: The memory backend of this VM's memslots, and why (:func:`choose_memory_backend`).
        self.memory_backend = memory_backend or MemoryBackendChoice(
            MemoryBackend.GUEST_MEMFD, "guest-memfd"
        )
        self.user_memory2 = user_memory2
        self.vcpu_mmap_size = vcpu_mmap_size
        self.sev_fd = sev_fd
        self.vcpus: list[Vcpu] = []
        self.memory: list[GuestMemory] = []
        self._closer = _Closer()
        fd_, sev = fd, sev_fd
        if sev >= 0:
            self._closer.push(lambda: kernel.close(sev))
        if fd_ >= 0:
            self._closer.push(lambda: kernel.close(fd_))

    @classmethod
    def open(
        cls,
        vm_type: VmType = VmType.DEFAULT,
        *,
        kernel: Kernel | None = None,
        path: str = KVM_PATH,
        memory_backend: str | MemoryBackend = "auto",
    ) -> Vm:
        """Open ``/dev/kvm``, check the host, create a VM of ``vm_type``, close ``/dev/kvm``.

        ``memory_backend`` (``auto``, ``guest-memfd``, ``anonymous``): see
        :func:`choose_memory_backend`.

        Raises:
            KvmUnsupported: the host lacks ``vm_type`` or the backend (no VM was created).
            ConfigError: a backend the VM type cannot use.
            KvmError: a call failed.
        """
        with Kvm.open(kernel, path) as kvm:
            vm = kvm.create_vm(vm_type, memory_backend)
            try:
                kvm.close()
            except BaseException:
                with contextlib.suppress(CvmLaunchError):
                    vm.close()
                raise
        return vm

    def close(self) -> None:
        """Close vCPUs, memslot mappings, guest_memfds and the VM fd (idempotent)."""
        self.fd = -1
        self.sev_fd = -1
        self.vcpus = []
        self.memory = []
        self._closer.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _ioctl(self, request: int, arg: int | bytearray, op: str) -> int:
        return _ioctl(self.kernel, self.fd, request, arg, op)

    @property
    def is_private(self) -> bool:
        """Whether the VM has private memory (SW_PROTECTED, SNP, TDX)."""
        return self.vm_type in (VmType.SW_PROTECTED, VmType.SNP, VmType.TDX)

    def check_extension(self, cap: Cap | int) -> int:
        """``KVM_CHECK_EXTENSION`` on the VM fd (the answer for this VM type)."""
        return self._ioctl(_uapi.KVM_CHECK_EXTENSION, int(cap), _cap_op(cap))

    # vCPUs --------------------------------------------------------------------
    def create_vcpu(self, vcpu_id: int | None = None) -> Vcpu:
        """``KVM_CREATE_VCPU`` and map its ``kvm_run`` (ids default to 0, 1, 2 ...)."""
        vid = len(self.vcpus) if vcpu_id is None else vcpu_id
        fd = self._ioctl(_uapi.KVM_CREATE_VCPU, vid, "KVM_CREATE_VCPU")
        vcpu = Vcpu(self.kernel, fd, vid)
        self._closer.push(vcpu.close)
        try:
            vcpu.run_map = self.kernel.mmap(fd, self.vcpu_mmap_size)
        except OSError as exc:
            raise KvmError(f"mmap of vCPU {vid}", errno=exc.errno) from exc
        self.vcpus.append(vcpu)
        return vcpu

    # memory -------------------------------------------------------------------
    def create_guest_memfd(self, size: int, flags: int = 0) -> int:
        """``KVM_CREATE_GUEST_MEMFD``; the new fd is owned (closed) by this VM."""
        buf, req = _struct_buf(_uapi.KvmCreateGuestMemfd)
        req.size, req.flags = size, flags
        fd = self._ioctl(_uapi.KVM_CREATE_GUEST_MEMFD, buf, "KVM_CREATE_GUEST_MEMFD")
        self._closer.push(lambda: self.kernel.close(fd))
        return fd

    def set_user_memory_region2(
        self,
        slot: int,
        gpa: int,
        size: int,
        userspace_addr: int,
        *,
        flags: int = MemFlag.GUEST_MEMFD,
        guest_memfd: int = 0,
        guest_memfd_offset: int = 0,
    ) -> None:
        """``KVM_SET_USER_MEMORY_REGION2`` (size 0 deletes the slot)."""
        buf, r = _struct_buf(_uapi.KvmUserspaceMemoryRegion2)
        r.slot, r.flags, r.guest_phys_addr, r.memory_size = slot, flags, gpa, size
        r.userspace_addr, r.guest_memfd_offset, r.guest_memfd = (
            userspace_addr,
            guest_memfd_offset,
            guest_memfd,
        )
        self._ioctl(_uapi.KVM_SET_USER_MEMORY_REGION2, buf, "KVM_SET_USER_MEMORY_REGION2")

    def set_user_memory_region(
        self, slot: int, gpa: int, size: int, userspace_addr: int, *, flags: int = 0
    ) -> None:
        """``KVM_SET_USER_MEMORY_REGION`` (no guest_memfd; size 0 deletes the slot)."""
        buf, r = _struct_buf(_uapi.KvmUserspaceMemoryRegion)
        r.slot, r.flags, r.guest_phys_addr, r.memory_size = slot, flags, gpa, size
        r.userspace_addr = userspace_addr
        self._ioctl(_uapi.KVM_SET_USER_MEMORY_REGION, buf, "KVM_SET_USER_MEMORY_REGION")

    def set_memory_attributes(self, gpa: int, size: int, attributes: int) -> None:
        """``KVM_SET_MEMORY_ATTRIBUTES`` (e.g. :attr:`MemoryAttribute.PRIVATE`, or 0: shared)."""
        buf, a = _struct_buf(_uapi.KvmMemoryAttributes)
        a.address, a.size, a.attributes = gpa, size, attributes
        try:
            self._ioctl(_uapi.KVM_SET_MEMORY_ATTRIBUTES, buf, "KVM_SET_MEMORY_ATTRIBUTES")
        except KvmError as exc:
            raise KvmError(
                exc.op, errno=exc.errno, detail=f"[{gpa:#x}-{gpa + size:#x})"
            ) from exc.__cause__

    def default_guest_memfd_flags(self) -> GuestMemfdFlag:
        """MMAP|INIT_SHARED where this VM offers both (shared memory), else 0.

        With 0 the memslot's shared pages live in anonymous memory (:meth:`add_memslot`).
        """
        want = PLAIN_GUEST_MEMFD_FLAGS
        if self.vm_type in (VmType.SNP, VmType.TDX):
            return GuestMemfdFlag(0)  # their memory is private; INIT_SHARED is refused
        offered = self.check_extension(Cap.GUEST_MEMFD_FLAGS)
        return want if offered & want == want else GuestMemfdFlag(0)

    def add_memslot(
        self, slot: int, gpa: int, size: int, gmem_flags: int | None = None
    ) -> GuestMemory:
        """Give the guest ``[gpa, gpa+size)`` as ``slot``, from the VM's memory backend.

        guest_memfd: create a guest_memfd of ``size``, map it and bind it;
        ``userspace_addr`` is the guest_memfd's own mmap when ``GUEST_MEMFD_FLAG_MMAP`` is set,
        else anonymous memory for the guest's shared pages. Anonymous: map private anonymous
        memory and bind it (:meth:`add_anonymous_memslot`; ``gmem_flags`` must be None).

        Raises:
            KvmError: a call failed (everything created so far is still owned by the VM).
        """
        if self.memory_backend.backend is MemoryBackend.ANONYMOUS:
            if gmem_flags is not None:
                raise ConfigError("guest_memfd flags given for a VM with anonymous memory")
            return self.add_anonymous_memslot(slot, gpa, size)
        flags = self.default_guest_memfd_flags() if gmem_flags is None else gmem_flags
        gmem = self.create_guest_memfd(size, flags)
        try:
            mapping = self.kernel.mmap(gmem if flags & GuestMemfdFlag.MMAP else -1, size)
        except OSError as exc:
            raise KvmError(f"mmap of guest_memfd for slot {slot}", errno=exc.errno) from exc
        self._closer.push(mapping.close)
        mem = GuestMemory(slot, gpa, size, gmem, flags, mapping)
        try:
            self.set_user_memory_region2(
                slot, gpa, size, mem.userspace_addr, guest_memfd=gmem, guest_memfd_offset=0
            )
        except KvmError as exc:
            raise KvmError(
                exc.op, errno=exc.errno, detail=f"slot {slot} [{gpa:#x}-{gpa + size:#x})"
            ) from exc.__cause__
        self.memory.append(mem)
        return mem

    def add_anonymous_memslot(self, slot: int, gpa: int, size: int) -> GuestMemory:
        """Map ``size`` bytes of private anonymous memory and bind them at ``gpa`` as ``slot``
        with ``KVM_SET_USER_MEMORY_REGION2`` (no ``KVM_MEM_GUEST_MEMFD``), or with
        ``KVM_SET_USER_MEMORY_REGION`` where the VM's host lacks ``KVM_CAP_USER_MEMORY2``.

        Raises:
            KvmError: a call failed (the mapping is still owned by the VM).
        """
        try:
            mapping = self.kernel.mmap(-1, size)
        except OSError as exc:
            raise KvmError(f"mmap of anonymous memory for slot {slot}", errno=exc.errno) from exc
        self._closer.push(mapping.close)
        mem = GuestMemory(slot, gpa, size, -1, 0, mapping)
        try:
            if self.user_memory2:
                self.set_user_memory_region2(slot, gpa, size, mem.userspace_addr, flags=0)
            else:
                self.set_user_memory_region(slot, gpa, size, mem.userspace_addr)
        except KvmError as exc:
            raise KvmError(
                exc.op, errno=exc.errno, detail=f"slot {slot} [{gpa:#x}-{gpa + size:#x})"
            ) from exc.__cause__
        self.memory.append(mem)
        return mem

    def map_memory(self, memory: MemoryMap, gmem_flags: int | None = None) -> None:
        """Add every memslot of ``memory`` (see :meth:`add_memslot`)."""
        for s in memory.memslots:
            self.add_memslot(s.slot, s.gpa, s.size, gmem_flags)

    def memory_at(self, gpa: int, size: int = 1) -> GuestMemory:
        """The memslot holding ``[gpa, gpa+size)``.

        Raises:
            ConfigError: no single memslot holds it.
        """
        for mem in self.memory:
            if mem.gpa <= gpa and gpa + size <= mem.end:
                return mem
        raise ConfigError(f"[{gpa:#x}-{gpa + size:#x}) is not inside one memslot of this VM")

    def write(self, gpa: int, data: bytes | memoryview) -> None:
        """Copy ``data`` into guest memory through the memslot mapping."""
        self.memory_at(gpa, len(data)).write(gpa, data)

    def read(self, gpa: int, size: int) -> bytes:
        """Read guest memory through the memslot mapping (shared memory only)."""
        return self.memory_at(gpa, size).read(gpa, size)

    # TDX ----------------------------------------------------------------------
    def tdx_capabilities(self, nent: int = 256) -> TdxCapabilities:
        """``KVM_TDX_CAPABILITIES`` (E2BIG if ``nent`` is too small)."""
        head = ctypes.sizeof(_uapi.KvmTdxCapabilities)
        buf = bytearray(head + nent * ctypes.sizeof(_uapi.KvmCpuidEntry2))
        caps = _uapi.KvmTdxCapabilities.from_buffer(buf)
        caps.cpuid.nent = nent
        _tdx_op(self.kernel, self.fd, TdxCmd.CAPABILITIES, 0, _address(buf))
        entries = (_uapi.KvmCpuidEntry2 * nent).from_buffer(buf, head)
        return TdxCapabilities(
            supported_attrs=int(caps.supported_attrs),
            supported_xfam=int(caps.supported_xfam),
            cpuid=tuple(CpuidEntry.from_c(e) for e in entries[: min(int(caps.cpuid.nent), nent)]),
        )

    def tdx_init_vm(
        self,
        *,
        attributes: int,
        xfam: int,
        cpuid: Sequence[CpuidEntry],
        mrconfigid: bytes = bytes(48),
        mrowner: bytes = bytes(48),
        mrownerconfig: bytes = bytes(48),
    ) -> None:
        """``KVM_TDX_INIT_VM`` (before any vCPU exists)."""
        for name, value in (
            ("MRCONFIGID", mrconfigid),
            ("MROWNER", mrowner),
            ("MROWNERCONFIG", mrownerconfig),
        ):
            if len(value) != 48:
                raise ConfigError(f"TDX {name} is {len(value)} bytes, not 48")
        head = ctypes.sizeof(_uapi.KvmTdxInitVm)
        entries = _cpuid_array(cpuid)
        buf = bytearray(head) + bytearray(entries)
        init = _uapi.KvmTdxInitVm.from_buffer(buf)
        init.attributes, init.xfam, init.cpuid.nent = attributes, xfam, len(cpuid)
        ctypes.memmove(init.mrconfigid, mrconfigid, 48)
        ctypes.memmove(init.mrowner, mrowner, 48)
        ctypes.memmove(init.mrownerconfig, mrownerconfig, 48)
        _tdx_op(self.kernel, self.fd, TdxCmd.INIT_VM, 0, _address(buf))

    def tdx_finalize_vm(self) -> None:
        """``KVM_TDX_FINALIZE_VM`` (TDH.MR.FINALIZE: closes MRTD)."""
        _tdx_op(self.kernel, self.fd, TdxCmd.FINALIZE_VM, 0, 0)

    # SEV / SNP ----------------------------------------------------------------
    def _sev_op(self, cmd: SevCmd, payload: bytearray | None) -> None:
        buf, c = _struct_buf(_uapi.KvmSevCmd)
        c.id, c.sev_fd = cmd, max(self.sev_fd, 0)
        c.data = _address(payload) if payload is not None else 0
        try:
            self.kernel.ioctl(self.fd, _uapi.KVM_MEMORY_ENCRYPT_OP, buf)
        except OSError as exc:
            raise KvmError(
                f"KVM_SEV_{cmd.name}", errno=exc.errno, fw_error=int(c.error) or None
            ) from exc

    def sev_init2(self, vmsa_features: int = 0, ghcb_version: int = 0) -> None:
        """``KVM_SEV_INIT2`` (before any vCPU exists)."""
        buf, init = _struct_buf(_uapi.KvmSevInit)
        init.vmsa_features, init.ghcb_version = vmsa_features, ghcb_version
        self._sev_op(SevCmd.INIT2, buf)

    def snp_launch_start(self, policy: int, gosvw: bytes = bytes(16)) -> None:
        """``KVM_SEV_SNP_LAUNCH_START`` (policy bit 17 must be set)."""
        if len(gosvw) != 16:
            raise ConfigError(f"SNP GOSVW is {len(gosvw)} bytes, not 16")
        buf, start = _struct_buf(_uapi.KvmSevSnpLaunchStart)
        start.policy = policy
        ctypes.memmove(start.gosvw, gosvw, 16)
        self._sev_op(SevCmd.SNP_LAUNCH_START, buf)

    def snp_launch_update(self, update: bytearray) -> None:
        """``KVM_SEV_SNP_LAUNCH_UPDATE`` with a ``kvm_sev_snp_launch_update`` buffer (in/out)."""
        self._sev_op(SevCmd.SNP_LAUNCH_UPDATE, update)

    def snp_launch_finish(self, finish: SnpFinish) -> None:
        """``KVM_SEV_SNP_LAUNCH_FINISH`` (KVM first measures one VMSA per vCPU)."""
        buf, f = _struct_buf(_uapi.KvmSevSnpLaunchFinish)
        id_block = bytearray(finish.id_block or b"")
        id_auth = bytearray(finish.id_auth or b"")
        if finish.id_block is not None:
            f.id_block_uaddr, f.id_auth_uaddr = _address(id_block), _address(id_auth)
            f.id_block_en, f.auth_key_en = 1, int(finish.auth_key_en)
        f.vcek_disabled = int(finish.vcek_disabled)
        ctypes.memmove(f.host_data, finish.host_data, 32)
        self._sev_op(SevCmd.SNP_LAUNCH_FINISH, buf)


# ---------------------------------------------------------------- the populate engine


@dataclass(frozen=True, slots=True)
class LaunchLog:
    """What the populate engine did.

    Args:
        entries: one record per call that made progress, in call order.
        notes: steps that were not possible on this host and were skipped, one line each
            (e.g. no ``KVM_PRE_FAULT_MEMORY``).
    """

    entries: tuple[LogEntry, ...]
    notes: tuple[str, ...] = ()


class _Request(Protocol):
    """One populate request as the kernel sees it (a struct it rewrites in place)."""

    op: str

    def issue(self) -> None:
        """Make the call once (raises :class:`KvmError`)."""
        ...

    def position(self) -> tuple[int, int, int]:
        """(GPA, bytes left, source address) as the struct says now."""
        ...

    @property
    def advances_source(self) -> bool:
        """Whether the kernel advances the source address with the GPA."""
        ...


class _PreFault:
    op = "KVM_PRE_FAULT_MEMORY"
    advances_source = False

    def __init__(self, vcpu: Vcpu, gpa: int, size: int) -> None:
        self.vcpu = vcpu
        self.buf, self.req = _struct_buf(_uapi.KvmPreFaultMemory)
        self.req.gpa, self.req.size = gpa, size

    def issue(self) -> None:
        self.vcpu.pre_fault_memory(self.buf)

    def position(self) -> tuple[int, int, int]:
        return int(self.req.gpa), int(self.req.size), 0


class _TdxInitMemRegion:
    op = "KVM_TDX_INIT_MEM_REGION"
    advances_source = True

    def __init__(self, vcpu: Vcpu, gpa: int, size: int, source: int, measure: bool) -> None:
        self.vcpu, self.measure = vcpu, measure
        self.buf, self.req = _struct_buf(_uapi.KvmTdxInitMemRegion)
        self.req.source_addr, self.req.gpa, self.req.nr_pages = source, gpa, size // PAGE_SIZE

    def issue(self) -> None:
        self.vcpu.tdx_init_mem_region(self.buf, self.measure)

    def position(self) -> tuple[int, int, int]:
        return int(self.req.gpa), int(self.req.nr_pages) * PAGE_SIZE, int(self.req.source_addr)


class _SnpLaunchUpdate:
    op = "KVM_SEV_SNP_LAUNCH_UPDATE"

    def __init__(self, vm: Vm, gpa: int, size: int, source: int, page_type: PageType) -> None:
        self.vm = vm
        self.advances_source = page_type is not PageType.ZERO
        self.buf, self.req = _struct_buf(_uapi.KvmSevSnpLaunchUpdate)
        self.req.gfn_start, self.req.uaddr, self.req.len = gpa // PAGE_SIZE, source, size
        self.req.type = page_type

    def issue(self) -> None:
        self.vm.snp_launch_update(self.buf)

    def position(self) -> tuple[int, int, int]:
        return int(self.req.gfn_start) * PAGE_SIZE, int(self.req.len), int(self.req.uaddr)


_RETRY = frozenset({errno_codes.EAGAIN, errno_codes.EINTR})


def _drive(request: _Request, on_progress: Callable[[int, int], None], what: str) -> None:
    """The one resume loop: issue ``request`` until the kernel reports nothing left.

    After each call the struct holds the range still to do (kvm-uapi.md §2): partial progress
    (a 0 return with a shorter range, or TDX's EINTR with one) resumes from exactly there;
    EAGAIN/EINTR without progress retries; any other error, or :data:`MAX_STALLS` calls in a
    row without progress, gives up. ``on_progress(gpa, size)`` is called for every call that
    did something, whole or partial, before any error is raised.

    Raises:
        KvmError: naming ``what`` (the range), the call, errno, firmware error and the range left.
    """
    start, total, _ = request.position()
    end = start + total
    stalls = 0
    while True:
        gpa, left, source = request.position()
        if left == 0:
            break
        failure: KvmError | None = None
        try:
            request.issue()
        except KvmError as exc:
            failure = exc
        new_gpa, new_left, new_source = request.position()
        done = left - new_left
        expected_source = source + done if request.advances_source else source
        if (
            done < 0
            or new_gpa != gpa + done
            or new_left % PAGE_SIZE
            or new_source != expected_source
        ):
            raise KvmError(
                request.op,
                detail=f"{what}: the kernel rewrote the request inconsistently "
                f"({gpa:#x}+{left:#x} became {new_gpa:#x}+{new_left:#x})",
                remaining=(new_gpa, new_left),
            ) from failure
        if done:
            on_progress(gpa, done)
            stalls = 0
        else:
            stalls += 1
        if failure is not None and failure.errno not in _RETRY:
            raise KvmError(
                request.op,
                errno=failure.errno,
                fw_error=failure.fw_error,
                remaining=(new_gpa, new_left),
                detail=what,
            ) from failure
        if stalls >= MAX_STALLS:
            raise KvmError(
                request.op,
                errno=failure.errno if failure is not None else None,
                remaining=(new_gpa, new_left),
                detail=f"{what}: no progress in {MAX_STALLS} calls in a row",
            ) from failure
    gpa, left, _ = request.position()
    if gpa != end:
        raise KvmError(
            request.op,
            detail=f"{what}: stopped at {gpa:#x}, not at the end {end:#x}",
            remaining=(gpa, end - gpa),
        )


class _Recorder:
    """Builds the log: one :class:`LogEntry` per call that made progress."""

    def __init__(self, on_record: Callable[[LogEntry], None] | None = None) -> None:
        self.entries: list[LogEntry] = []
        self.notes: list[str] = []
        self.on_record = on_record

    def add(
        self,
        op: LogOp,
        region: Region,
        gpa: int,
        size: int,
        content: Iterator[bytes | memoryview],
        per_page: bool,
        content_sha384: bytes | None = None,
    ) -> None:
        """Append one record; ``content_sha384``, when given, is the already known SHA-384
        of ``content`` (which is then not read unless ``per_page`` needs it). A region the
        plan gives no bytes gets the zero marker instead (:func:`zero_by_construction`, as
        the prediction's records do) and its content is read only for ``per_page``."""
        whole = hashlib.sha384()
        pages: list[bytes] = []
        zero = zero_by_construction(memoryview(region.data).nbytes)
        if (content_sha384 is None and not zero) or per_page:
            for chunk in content:
                whole.update(chunk)
                if per_page:
                    view = memoryview(chunk)
                    pages += [
                        hashlib.sha384(view[i : i + PAGE_SIZE]).digest()
                        for i in range(0, len(view), PAGE_SIZE)
                    ]
            content_sha384 = whole.digest()
        if zero:
            content_sha384 = None
        self.entries.append(
            LogEntry(
                seq=len(self.entries),
                op=op,
                gpa=gpa,
                size=size,
                page_type=region.page_type,
                measured=region.measured,
                provenance=region.provenance,
                content_sha384=content_sha384,
                page_sha384=tuple(pages),
            )
        )
        if self.on_record is not None:
            self.on_record(self.entries[-1])

    def log(self) -> LaunchLog:
        return LaunchLog(tuple(self.entries), tuple(self.notes))


def _region_bytes(region: Region, gpa: int, size: int) -> Iterator[bytes | memoryview]:
    """The bytes of ``[gpa, gpa+size)`` of ``region`` (data, then zero fill), in pieces."""
    data = memoryview(region.data)
    off, end = gpa - region.gpa, gpa - region.gpa + size
    if off < len(data):
        yield data[off : min(end, len(data))]
        off = min(end, len(data))
    while off < end:
        n = min(end - off, len(_ZEROS))
        yield _ZEROS[:n]
        off += n


_ZEROS = memoryview(bytes(STAGING_PAGES * PAGE_SIZE))


def _where(region: Region, gpa: int | None = None, size: int | None = None) -> str:
    lo = region.gpa if gpa is None else gpa
    hi = region.end if size is None else lo + size
    return f"{region.provenance.describe()} [{lo:#x}-{hi:#x})"


@contextlib.contextmanager
def _staging(size: int = STAGING_PAGES * PAGE_SIZE) -> Iterator[mmap.mmap]:
    """A page-aligned source buffer (anonymous memory) for TDX/SNP populate calls."""
    buf = mmap.mmap(-1, size)
    try:
        yield buf
    finally:
        buf.close()


def _chunks(region: Region) -> Iterator[tuple[int, int]]:
    step = STAGING_PAGES * PAGE_SIZE
    for gpa in range(region.gpa, region.end, step):
        yield gpa, min(step, region.end - gpa)


def _fill(staging: mmap.mmap, region: Region, gpa: int, size: int) -> None:
    pos = 0
    for piece in _region_bytes(region, gpa, size):
        staging[pos : pos + len(piece)] = piece
        pos += len(piece)


def _content_sha384(region: Region, gpa: int, size: int) -> bytes:
    """SHA-384 of ``[gpa, gpa+size)`` of ``region`` (data, then zero fill), streamed."""
    whole = hashlib.sha384()
    for piece in _region_bytes(region, gpa, size):
        whole.update(piece)
    return whole.digest()


def _copy_region(mem: GuestMemory, region: Region) -> None:
    """Copy ``region`` (data, then zero fill) through ``mem``'s mapping: one slice
    assignment for the data, one per :data:`STAGING_PAGES` of zero fill."""
    gpa = region.gpa
    for piece in _region_bytes(region, region.gpa, region.size):
        mem.write(gpa, piece)
        gpa += len(piece)


#: Regions at least this large are hashed for the log on a second thread during the copy.
HASH_OFFLOAD_MIN = 1 << 20


def populate_plain(
    vm: Vm,
    layout: Layout,
    vcpu: Vcpu | None = None,
    *,
    on_record: Callable[[LogEntry], None] | None = None,
) -> LaunchLog:
    """Populate a plain VM (type 0, or SW_PROTECTED with shared memory).

    Each memory region is copied through its memslot's mapping, whichever the VM's memory
    backend (the guest_memfd's mmap or anonymous memory; one ``plain.copy`` record per
    region, the same on both), then pre-faulted with ``KVM_PRE_FAULT_MEMORY`` on
    ``vcpu`` where the VM offers it (one ``plain.pre_fault`` record per call; pre-faulting
    never copies or measures). Where it is not offered, a note says so.

    Raises:
        ConfigError: the plan has VMSA regions, or a region lies outside the VM's memslots.
        KvmError: a pre-fault call failed.
    """
    if layout.vmsa_regions:
        raise ConfigError("a plain VM has no VMSA regions to populate")
    rec = _Recorder(on_record)
    digests: dict[int, bytes] = {}
    # The log's SHA-384 of a large region runs on a second thread while this one copies:
    # hashlib releases the GIL for large buffers, so the two overlap on two cores.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cvmlaunch-hash") as pool:
        for index, region in enumerate(layout.memory_regions):
            mem = vm.memory_at(region.gpa, region.size)
            if region.size >= HASH_OFFLOAD_MIN:
                pending = pool.submit(_content_sha384, region, region.gpa, region.size)
                _copy_region(mem, region)
                digest = pending.result()
            else:
                _copy_region(mem, region)
                digest = _content_sha384(region, region.gpa, region.size)
            digests[index] = digest
            rec.add(
                LogOp.PLAIN_COPY,
                region,
                region.gpa,
                region.size,
                iter(()),
                per_page=False,
                content_sha384=digest,
            )
    if not vm.check_extension(Cap.PRE_FAULT_MEMORY):
        rec.notes.append(
            "KVM_PRE_FAULT_MEMORY: not offered by this host (KVM_CAP_PRE_FAULT_MEMORY is 0); "
            "the guest faults its memory in on first access"
        )
    elif layout.memory_regions:
        if vcpu is None:
            vcpu = vm.vcpus[0] if vm.vcpus else vm.create_vcpu()
        for index, region in enumerate(layout.memory_regions):
            req = _PreFault(vcpu, region.gpa, region.size)

            def prefaulted(
                gpa: int, size: int, region: Region = region, whole: bytes = digests[index]
            ) -> None:
                # A call that covered the whole region reuses the copy record's hash.
                known = whole if (gpa, size) == (region.gpa, region.size) else None
                rec.add(
                    LogOp.PRE_FAULT,
                    dataclasses.replace(region, measured=False),
                    gpa,
                    size,
                    _region_bytes(region, gpa, size),
                    per_page=False,
                    content_sha384=known,
                )

            _drive(req, prefaulted, _where(region))
    return rec.log()


def populate_tdx(
    vm: Vm,
    layout: Layout,
    vcpu: Vcpu,
    *,
    on_record: Callable[[LogEntry], None] | None = None,
) -> LaunchLog:
    """Populate a TD: PRIVATE, then ``KVM_TDX_INIT_MEM_REGION`` per range, then FINALIZE_VM.

    ``vcpu`` must have had ``KVM_TDX_INIT_VCPU``. Each range is staged whole in a page-aligned
    buffer and issued as one request (what the MRTD prediction assumes); the measure
    flag is the region's ``measured`` (``tdx.page_add+extend`` records),
    else the pages are only added (``tdx.page_add``).

    Raises:
        ConfigError: the plan has VMSA regions (TDX has none).
        KvmError: a call failed; the error names the range, errno and what was left.
    """
    if layout.vmsa_regions:
        raise ConfigError("a TD has no VMSA regions to populate")
    rec = _Recorder(on_record)
    for region in layout.memory_regions:
        vm.set_memory_attributes(region.gpa, region.size, MemoryAttribute.PRIVATE)
        op = LogOp.TDX_PAGE_ADD_EXTEND if region.measured else LogOp.TDX_PAGE_ADD
        # One request per region, as QEMU issues one per TDVF section: kernels that measure
        # per request (all adds, then all extends: KVM TDX v19 / QEMU 8.x) would otherwise
        # give a different MRTD than the two-pass prediction.
        with _staging(region.size) as staging:
            _fill(staging, region, region.gpa, region.size)
            req = _TdxInitMemRegion(
                vcpu, region.gpa, region.size, _address(staging), region.measured
            )

            def added(
                done_gpa: int,
                done: int,
                region: Region = region,
                op: LogOp = op,
                staging: mmap.mmap = staging,
            ) -> None:
                off = done_gpa - region.gpa
                rec.add(op, region, done_gpa, done, iter((staging[off : off + done],)), False)

            _drive(req, added, _where(region))
    vm.tdx_finalize_vm()
    return rec.log()


def populate_snp(
    vm: Vm,
    layout: Layout,
    finish: SnpFinish | None = None,
    *,
    on_record: Callable[[LogEntry], None] | None = None,
) -> LaunchLog:
    """Populate an SNP guest: PRIVATE, ``SNP_LAUNCH_UPDATE`` per range, then LAUNCH_FINISH.

    Each range goes in with its page type; sources are page-aligned staging copies (ZERO
    pages pass no source; SECRETS pages pass a zero page). Records carry per-page SHA-384s.
    VMSA regions are not populated by userspace: KVM measures one VMSA per vCPU at
    LAUNCH_FINISH, in vCPU order, from the registers set on them; the plan's VMSA regions are
    logged (``snp.vmsa``) after a successful finish, and their count must equal the vCPUs'.

    Raises:
        ConfigError: the number of VMSA regions differs from the number of vCPUs.
        KvmError: a call failed; the error names the range, errno, the firmware error and
            what was left. A CPUID page the firmware rejected says so.
    """
    vmsas = layout.vmsa_regions
    if vmsas and len(vmsas) != len(vm.vcpus):
        raise ConfigError(
            f"the plan has {len(vmsas)} VMSA pages but the VM has {len(vm.vcpus)} vCPUs"
        )
    rec = _Recorder(on_record)
    with _staging() as staging:
        base_addr = _address(staging)
        for region in layout.memory_regions:
            vm.set_memory_attributes(region.gpa, region.size, MemoryAttribute.PRIVATE)
            for gpa, size in _chunks(region):
                _fill(staging, region, gpa, size)
                source = 0 if region.page_type is PageType.ZERO else base_addr
                req = _SnpLaunchUpdate(vm, gpa, size, source, region.page_type)

                def updated(
                    done_gpa: int, done: int, base: int = gpa, region: Region = region
                ) -> None:
                    off = done_gpa - base
                    rec.add(
                        LogOp.SNP_LAUNCH_UPDATE,
                        region,
                        done_gpa,
                        done,
                        iter((staging[off : off + done],)),
                        per_page=True,
                    )

                try:
                    _drive(req, updated, _where(region, gpa, size))
                except KvmError as exc:
                    if (
                        region.page_type is PageType.CPUID
                        and exc.fw_error == _uapi.SEV_RET_INVALID_PARAM
                        and exc.remaining is not None
                    ):
                        off = exc.remaining[0] - gpa
                        wanted = b"".join(bytes(p) for p in _region_bytes(region, gpa, size))
                        fixed = staging[off : off + PAGE_SIZE]
                        raise KvmError(
                            exc.op,
                            errno=exc.errno,
                            fw_error=exc.fw_error,
                            remaining=exc.remaining,
                            detail=f"{_where(region, gpa, size)}: the firmware rejected the "
                            f"CPUID page; its corrected table differs in "
                            f"{sum(a != b for a, b in zip(fixed, wanted[off:], strict=False))}"
                            " bytes",
                        ) from exc
                    raise
    vm.snp_launch_finish(finish or SnpFinish())
    for region in vmsas:
        rec.add(
            LogOp.SNP_VMSA,
            region,
            region.gpa,
            region.size,
            _region_bytes(region, region.gpa, region.size),
            per_page=True,
        )
    return rec.log()


def populate(
    vm: Vm,
    layout: Layout,
    *,
    vcpu: Vcpu | None = None,
    snp_finish: SnpFinish | None = None,
    on_record: Callable[[LogEntry], None] | None = None,
) -> LaunchLog:
    """Populate ``layout`` by the path the VM's type calls for (resolved once, here).

    Plain (DEFAULT, SW_PROTECTED): :func:`populate_plain`. TDX: :func:`populate_tdx` (needs
    ``vcpu``, default the first). SNP: :func:`populate_snp`. ``on_record`` is called with each
    log record as soon as it exists (e.g. to drive a progress bar).

    Raises:
        ConfigError: a type with no populate path (SEV, SEV-ES) or a missing vCPU.
        KvmError: a call failed.
    """
    if vm.vm_type in (VmType.DEFAULT, VmType.SW_PROTECTED):
        return populate_plain(vm, layout, vcpu, on_record=on_record)
    if vm.vm_type is VmType.TDX:
        chosen = vcpu or (vm.vcpus[0] if vm.vcpus else None)
        if chosen is None:
            raise ConfigError("TDX populate needs a vCPU that has had KVM_TDX_INIT_VCPU")
        return populate_tdx(vm, layout, chosen, on_record=on_record)
    if vm.vm_type is VmType.SNP:
        return populate_snp(vm, layout, snp_finish, on_record=on_record)
    raise ConfigError(f"no populate path for {vm.vm_type.name} VMs")
