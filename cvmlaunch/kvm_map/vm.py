"""The system handle (:class:`Kvm`), VMs (:class:`Vm`) and their memory (:class:`GuestMemory`).

Part of :mod:`cvmlaunch.kvm_map` (see its rules).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno as errno_codes
import mmap
import os
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from cvmlaunch import _uapi
from cvmlaunch._uapi import Cap, GuestMemfdFlag, MemFlag, MemoryAttribute, SevCmd, TdxCmd, VmType
from cvmlaunch.cpuid import CpuidEntry
from cvmlaunch.errors import CvmLaunchError, KvmError, KvmUnsupported, LayoutError
from cvmlaunch.kvm_map._kernel import (
    _MAX_CPUID_ENTRIES,
    Kernel,
    LinuxKernel,
    _address,
    _cap_op,
    _Closer,
    _cpuid_array,
    _cpuid_call,
    _cpuid_from_c,
    _ioctl,
    _struct_buf,
    _tdx_op,
)
from cvmlaunch.kvm_map.caps import (
    PLAIN_GUEST_MEMFD_FLAGS,
    KvmCaps,
    MemoryBackend,
    MemoryBackendChoice,
)
from cvmlaunch.kvm_map.vcpu import HypercallExit, MemoryFaultExit, Vcpu, VcpuExit
from cvmlaunch.launch_identity import SnpLaunchIdentity, TdxLaunchIdentity
from cvmlaunch.layout import PAGE_SIZE
from cvmlaunch.memory_map import MemoryMap

KVM_PATH = "/dev/kvm"
SEV_PATH = "/dev/sev"
#: Attempts at KVM_TDX_INIT_VM while it says EAGAIN (no entropy for TDH.MNG.CREATE): QEMU's.
TDX_INIT_VM_RETRIES = 10000


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

    def hand_over(self, vm: Vm) -> Vm:
        """Close ``/dev/kvm`` now, leaving ``vm`` (made by this handle) the only open handle;
        if that close fails, ``vm`` is closed too, so that it does not leak. Returns ``vm``.

        Raises:
            KvmError: closing ``/dev/kvm`` failed (``vm`` is closed).
        """
        try:
            self.close()
        except BaseException:
            with contextlib.suppress(CvmLaunchError):
                vm.close()
            raise
        return vm

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

    def supported_cpuid(self) -> tuple[CpuidEntry, ...]:
        """``KVM_GET_SUPPORTED_CPUID``: what KVM can give a guest on this host."""
        return _cpuid_call(
            self.kernel, self.fd, _uapi.KVM_GET_SUPPORTED_CPUID, "KVM_GET_SUPPORTED_CPUID"
        )

    def create_vm(
        self, vm_type: VmType = VmType.DEFAULT, memory_backend: str | MemoryBackend = "auto"
    ) -> Vm:
        """``KVM_CREATE_VM`` after checking the host offers ``vm_type`` and choosing its
        memory backend (:func:`~cvmlaunch.kvm_map.caps.choose_memory_backend`; the VM's
        ``memory_backend``).

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
            raise ValueError(
                f"[{gpa:#x}-{gpa + size:#x}) is outside memslot {self.slot} "
                f"[{self.gpa:#x}-{self.end:#x})"
            )
        return gpa - self.gpa


@dataclass(frozen=True, slots=True)
class TdxCapabilities:
    """``KVM_TDX_CAPABILITIES``: supported TD attributes, XFAM and configurable CPUID bits."""

    supported_attrs: int
    supported_xfam: int
    cpuid: tuple[CpuidEntry, ...]


@dataclass(frozen=True, slots=True)
class SnpFinish:
    """The arguments of ``KVM_SEV_SNP_LAUNCH_FINISH``: a launch identity and the VCEK switch.

    The identity's values are checked by :class:`~cvmlaunch.launch_identity.SnpLaunchIdentity`
    (one rule, one message); :meth:`of` builds this from one.

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
        SnpLaunchIdentity(self.host_data, self.id_block, self.id_auth)  # ConfigError
        if self.auth_key_en and self.id_block is None:  # no identity makes this: a bug
            raise ValueError("SnpFinish: auth_key_en without an ID block")

    @classmethod
    def of(cls, identity: SnpLaunchIdentity, *, vcek_disabled: bool = False) -> SnpFinish:
        """The LAUNCH_FINISH arguments of ``identity``."""
        return cls(
            identity.id_block,
            identity.id_auth,
            identity.auth_key_en,
            vcek_disabled,
            identity.host_data,
        )


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
        #: The memory backend of this VM's memslots, and why
        #: (:func:`~cvmlaunch.kvm_map.caps.choose_memory_backend`).
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
        :func:`~cvmlaunch.kvm_map.caps.choose_memory_backend`.

        Raises:
            KvmUnsupported: the host lacks ``vm_type`` or the backend (no VM was created).
            ConfigError: a backend the VM type cannot use.
            KvmError: a call failed.
        """
        with Kvm.open(kernel, path) as kvm:
            return kvm.hand_over(kvm.create_vm(vm_type, memory_backend))

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

    def enable_cap(self, cap: Cap, *args: int) -> None:
        """``KVM_ENABLE_CAP`` on the VM fd with up to four arguments."""
        buf, c = _struct_buf(_uapi.KvmEnableCap)
        c.cap = cap
        for i, value in enumerate(args):
            c.args[i] = value
        self._ioctl(_uapi.KVM_ENABLE_CAP, buf, f"KVM_ENABLE_CAP(KVM_CAP_{cap.name})")

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
                raise ValueError("guest_memfd flags given for a VM with anonymous memory")
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
            LayoutError: no single memslot holds it (the plan was laid out for other memory).
        """
        for mem in self.memory:
            if mem.gpa <= gpa and gpa + size <= mem.end:
                return mem
        raise LayoutError(f"[{gpa:#x}-{gpa + size:#x}) is not inside one memslot of this VM")

    def write(self, gpa: int, data: bytes | memoryview) -> None:
        """Copy ``data`` into guest memory through the memslot mapping."""
        self.memory_at(gpa, len(data)).write(gpa, data)

    def read(self, gpa: int, size: int) -> bytes:
        """Read guest memory through the memslot mapping (shared memory only)."""
        return self.memory_at(gpa, size).read(gpa, size)

    # TDX ----------------------------------------------------------------------
    def tdx_capabilities(self, nent: int = 6) -> TdxCapabilities:
        """``KVM_TDX_CAPABILITIES``: starts with room for ``nent`` CPUID entries and doubles it
        while the kernel says E2BIG (as QEMU does)."""
        head = ctypes.sizeof(_uapi.KvmTdxCapabilities)
        while True:
            buf = bytearray(head + nent * ctypes.sizeof(_uapi.KvmCpuidEntry2))
            caps = _uapi.KvmTdxCapabilities.from_buffer(buf)
            caps.cpuid.nent = nent
            try:
                _tdx_op(self.kernel, self.fd, TdxCmd.CAPABILITIES, 0, _address(buf))
                break
            except KvmError as exc:
                if exc.errno != errno_codes.E2BIG or nent >= _MAX_CPUID_ENTRIES:
                    raise
                nent *= 2
        entries = (_uapi.KvmCpuidEntry2 * nent).from_buffer(buf, head)
        return TdxCapabilities(
            supported_attrs=int(caps.supported_attrs),
            supported_xfam=int(caps.supported_xfam),
            cpuid=tuple(_cpuid_from_c(e) for e in entries[: min(int(caps.cpuid.nent), nent)]),
        )

    def tdx_init_vm(
        self,
        *,
        attributes: int,
        xfam: int,
        cpuid: Sequence[CpuidEntry],
        identity: TdxLaunchIdentity | None = None,
    ) -> None:
        """``KVM_TDX_INIT_VM`` (before any vCPU exists), with the TD's owner values
        (``identity``, whose sizes its type has checked; None: zero)."""
        identity = identity or TdxLaunchIdentity()
        head = ctypes.sizeof(_uapi.KvmTdxInitVm)
        entries = _cpuid_array(cpuid)
        buf = bytearray(head) + bytearray(entries)
        init = _uapi.KvmTdxInitVm.from_buffer(buf)
        init.attributes, init.xfam, init.cpuid.nent = attributes, xfam, len(cpuid)
        ctypes.memmove(init.mrconfigid, identity.mrconfigid, 48)
        ctypes.memmove(init.mrowner, identity.mrowner, 48)
        ctypes.memmove(init.mrownerconfig, identity.mrownerconfig, 48)
        for attempt in range(TDX_INIT_VM_RETRIES):
            try:
                _tdx_op(self.kernel, self.fd, TdxCmd.INIT_VM, 0, _address(buf))
                return
            except KvmError as exc:  # EAGAIN: TDH.MNG.CREATE found no entropy; QEMU retries
                if exc.errno != errno_codes.EAGAIN or attempt == TDX_INIT_VM_RETRIES - 1:
                    raise

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
            raise ValueError(f"SNP GOSVW is {len(gosvw)} bytes, not 16")
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


def serve_private_memory(vm: Vm, exit_: VcpuExit) -> bool:
    """Answer a confidential guest's page-state change, if ``exit_`` is one.

    ``KVM_HC_MAP_GPA_RANGE`` (args: GPA, pages, attributes; ENCRYPTED = private) and
    ``KVM_EXIT_MEMORY_FAULT`` (the guest touched a page with the other attribute) both become
    ``KVM_SET_MEMORY_ATTRIBUTES`` on the range, as QEMU converts them; the hypercall returns 0.

    Returns:
        Whether the exit was handled (the caller runs the vCPU again).

    Raises:
        KvmError: the conversion failed.
    """
    if isinstance(exit_, HypercallExit) and exit_.nr == _uapi.KVM_HC_MAP_GPA_RANGE:
        gpa, pages, attrs = exit_.args[:3]
        private = bool(attrs & _uapi.KVM_MAP_GPA_RANGE_ENCRYPTED)
        vm.set_memory_attributes(gpa, pages * PAGE_SIZE, MemoryAttribute.PRIVATE if private else 0)
        return True
    if isinstance(exit_, MemoryFaultExit):
        attrs = MemoryAttribute.PRIVATE if exit_.private else 0
        vm.set_memory_attributes(exit_.gpa, exit_.size, attrs)
        return True
    return False
