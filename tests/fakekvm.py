"""A fake KVM for tests (never shipped): the kernel side of cvmlaunch.kvm_map's seam.

:class:`FakeKernel` implements :class:`cvmlaunch.kvm_map.Kernel` on the same ``_uapi`` structs
the real kernel reads, with the semantics kvm-uapi.md §2 documents for the three populate
paths:

* ``KVM_PRE_FAULT_MEMORY`` (vCPU fd): returns 0 after any progress with ``gpa``/``size``
  rewritten to the rest; EINVAL/ENOENT/EOPNOTSUPP with the struct untouched.
* TDX ``KVM_TDX_INIT_MEM_REGION`` (vCPU fd): one page at a time, PRIVATE and a page-aligned
  source required, the struct always rewritten, the errno returned even after progress.
* SNP ``KVM_SEV_SNP_LAUNCH_UPDATE`` (VM fd): PRIVATE required; 0 after any progress with
  ``gfn_start``/``uaddr``/``len`` rewritten (``uaddr`` not for ZERO); with no progress every
  failure is EIO with the firmware code in ``kvm_sev_cmd.error`` (a signal too) and the
  struct is not copied back. A rejected CPUID page gets the "firmware's" correction written
  into the caller's source page.

Sources are read through the user address in the struct (``ctypes.string_at``). Every fd is
a real memfd, so guest memory is real shared memory the code under test maps, and leaks show
in ``/proc/self/fd``. Memslots without ``KVM_MEM_GUEST_MEMFD`` (``KVM_SET_USER_MEMORY_REGION2``
with flags 0, or ``KVM_SET_USER_MEMORY_REGION``) are the caller's memory at
``userspace_addr``, read back through that address. The capabilities a host can lack
(guest_memfd, its flags, USER_MEMORY2, memory attributes, PRE_FAULT_MEMORY) are constructor
arguments; the calls they gate fail with ENOTTY / EINVAL as the kernel's do.
A scripted :class:`Fault` list is consumed one item per populate call;
``fail_at`` makes the n-th system call of any kind fail (to test cleanup on every path).
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import mmap
import os
from dataclasses import dataclass, field

from cvmlaunch import _uapi
from cvmlaunch._uapi import Cap, GuestMemfdFlag, MemFlag, SevCmd, SnpPageType, TdxCmd, VmType

PAGE = 4096


@dataclass(frozen=True)
class Fault:
    """What one populate call does: ``pages`` pages of progress (None: all), then ``errno``.

    ``errno`` 0 means success; ``fw_error`` is the firmware status reported with EIO.
    """

    pages: int | None = None
    errno: int = 0
    fw_error: int = 0

    @property
    def fatal(self) -> bool:
        return self.errno not in (0, errno.EAGAIN, errno.EINTR)


OK = Fault()


def _oserror(code: int) -> OSError:
    return OSError(code, os.strerror(code))


@dataclass
class _Slot:
    slot: int
    gpa: int
    size: int
    gmem: _Gmem | None  # None: the caller's memory at userspace_addr
    offset: int
    userspace_addr: int

    def contents(self, start: int = 0, size: int | None = None) -> bytes:
        """``size`` bytes (default: to the end) from ``start`` bytes into the slot."""
        size = self.size - start if size is None else size
        if self.gmem is None:
            return ctypes.string_at(self.userspace_addr + start, size)
        return os.pread(self.gmem.fd, size, self.offset + start)


@dataclass
class _Gmem:
    fd: int
    vm: _Vm
    size: int
    flags: int


@dataclass
class _Vcpu:
    fd: int
    vm: _Vm
    vcpu_id: int
    tdx_initialized: bool = False
    regs: bytes = bytes(ctypes.sizeof(_uapi.KvmRegs))
    sregs: bytes = bytes(ctypes.sizeof(_uapi.KvmSregs))


@dataclass
class _Vm:
    fd: int
    vm_type: VmType
    slots: dict[int, _Slot] = field(default_factory=dict)
    private: set[int] = field(default_factory=set)  # private GFNs
    populated: set[int] = field(default_factory=set)  # GFNs populated by TDX/SNP
    vcpus: list[_Vcpu] = field(default_factory=list)
    tdx_init: bool = False
    finalized: bool = False
    sev_init: bool = False
    snp_started: bool = False

    def slot_for(self, gpa: int) -> _Slot | None:
        for s in self.slots.values():
            if s.gpa <= gpa < s.gpa + s.size:
                return s
        return None


class FakeKernel:
    """A scripted in-process KVM (see the module docstring).

    Args:
        vm_types: the ``KVM_CAP_VM_TYPES`` mask.
        memory_attributes: ``KVM_CAP_MEMORY_ATTRIBUTES`` (0: SET_MEMORY_ATTRIBUTES is ENOTTY).
        pre_fault: ``KVM_CAP_PRE_FAULT_MEMORY``.
        guest_memfd: ``KVM_CAP_GUEST_MEMFD`` (False: CREATE_GUEST_MEMFD is ENOTTY).
        guest_memfd_flags: ``KVM_CAP_GUEST_MEMFD_FLAGS`` (MMAP = 1, INIT_SHARED = 2).
        user_memory2: ``KVM_CAP_USER_MEMORY2`` (False: SET_USER_MEMORY_REGION2 is ENOTTY).
        faults: one :class:`Fault` per populate call, in order; then every call succeeds.
        fail_at: make the n-th system call (0-based, any kind) fail with ENOMEM.
        sev_device: whether ``/dev/sev`` opens.
    """

    def __init__(
        self,
        *,
        vm_types: int = 1 | 1 << VmType.SNP | 1 << VmType.TDX,
        memory_attributes: int = 8,
        pre_fault: bool = True,
        faults: list[Fault] | None = None,
        fail_at: int | None = None,
        sev_device: bool = True,
        guest_memfd: bool = True,
        guest_memfd_flags: int = 3,
        user_memory2: bool = True,
    ) -> None:
        self.caps = {
            Cap.USER_MEMORY: 1,
            Cap.USER_MEMORY2: int(user_memory2),
            Cap.GUEST_MEMFD: int(guest_memfd),
            Cap.GUEST_MEMFD_FLAGS: guest_memfd_flags if guest_memfd else 0,
            Cap.VM_TYPES: vm_types,
            Cap.MEMORY_ATTRIBUTES: memory_attributes,
            Cap.PRE_FAULT_MEMORY: int(pre_fault),
            Cap.MAX_VCPUS: 8,
            Cap.NR_MEMSLOTS: 32,
            Cap.MEMORY_FAULT_INFO: 1,
        }
        self.faults = list(faults or [])
        self.consumed: list[Fault] = []
        self.fail_at = fail_at
        self.sev_device = sev_device
        self.calls = 0
        self.objects: dict[int, object] = {}
        self.journal: list[tuple[object, ...]] = []
        #: What the launch-identity calls received, as the kernel would read it: SNP
        #: ``policy`` (LAUNCH_START); ``host_data``, ``id_block``, ``id_auth`` (None unless
        #: enabled), ``auth_key_en`` (LAUNCH_FINISH); TDX ``attributes``, ``xfam``,
        #: ``mrconfigid``, ``mrowner``, ``mrownerconfig`` (INIT_VM).
        self.launch_params: dict[str, object] = {}
        self.mappings: list[mmap.mmap] = []
        #: Every memslot call that succeeded: (ioctl name, slot, flags, guest_memfd or None).
        self.memslot_calls: list[tuple[str, int, int, int | None]] = []

    # the Kernel protocol -------------------------------------------------------
    def _count(self) -> None:
        if self._scheduled_failure():
            raise _oserror(errno.ENOMEM)

    def _scheduled_failure(self) -> bool:
        n, self.calls = self.calls, self.calls + 1
        return n == self.fail_at

    def _new_fd(self, size: int = 0) -> int:
        fd = os.memfd_create("fakekvm", os.MFD_CLOEXEC)
        if size:
            os.ftruncate(fd, size)
        return fd

    def open(self, path: str, flags: int) -> int:
        self._count()
        if path == "/dev/sev" and not self.sev_device:
            raise _oserror(errno.ENOENT)
        fd = self._new_fd()
        self.objects[fd] = "system" if path != "/dev/sev" else "sev"
        return fd

    def close(self, fd: int) -> None:
        fail = self._scheduled_failure()
        if fd not in self.objects:
            raise _oserror(errno.EBADF)
        del self.objects[fd]
        os.close(fd)
        if fail:  # like close(2): the fd is released even when an error is reported
            raise _oserror(errno.EIO)

    def mmap(self, fd: int, length: int) -> mmap.mmap:
        self._count()
        if fd == -1:
            m = mmap.mmap(-1, length)
        else:
            obj = self.objects.get(fd)
            if isinstance(obj, _Gmem) and not obj.flags & GuestMemfdFlag.MMAP:
                raise _oserror(errno.ENODEV)
            if not isinstance(obj, _Gmem | _Vcpu):
                raise _oserror(errno.ENODEV)
            m = mmap.mmap(fd, length)
        self.mappings.append(m)
        return m

    def ioctl(self, fd: int, request: int, arg: int | bytearray) -> int:
        self._count()
        obj = self.objects.get(fd)
        if obj is None:
            raise _oserror(errno.EBADF)
        if request == _uapi.KVM_CHECK_EXTENSION and isinstance(arg, int):
            return self.caps.get(Cap(arg), 0) if arg in Cap._value2member_map_ else 0
        if obj == "system":
            return self._system(request, arg)
        if isinstance(obj, _Vm):
            return self._vm(obj, request, arg)
        if isinstance(obj, _Vcpu):
            return self._vcpu(obj, request, arg)
        raise _oserror(errno.ENOTTY)

    # inspection -------------------------------------------------------------
    def open_fds(self) -> list[int]:
        """Fds this kernel handed out that are still open."""
        return sorted(self.objects)

    def open_mappings(self) -> int:
        """Mappings this kernel handed out that are still mapped."""
        return sum(not m.closed for m in self.mappings)

    def guest_memory(self) -> dict[tuple[int, int], bytes]:
        """(VM fd, GPA) -> contents of every memslot of every VM still open."""
        out: dict[tuple[int, int], bytes] = {}
        for obj in self.objects.values():
            if isinstance(obj, _Vm):
                for s in obj.slots.values():
                    out[(obj.fd, s.gpa)] = s.contents()
        return out

    def read_guest(self, gpa: int, size: int) -> bytes:
        """``[gpa, gpa+size)`` of the (one) VM still open, as the kernel sees its memslot."""
        (vm,) = [o for o in self.objects.values() if isinstance(o, _Vm)]
        slot = vm.slot_for(gpa)
        assert slot is not None
        assert gpa + size <= slot.gpa + slot.size
        return slot.contents(gpa - slot.gpa, size)

    # populate faults ----------------------------------------------------------
    def _next_fault(self) -> Fault:
        fault = self.faults.pop(0) if self.faults else OK
        self.consumed.append(fault)
        return fault

    # system fd ----------------------------------------------------------------
    def _system(self, request: int, arg: int | bytearray) -> int:
        if request == _uapi.KVM_GET_API_VERSION:
            return 12
        if request == _uapi.KVM_GET_VCPU_MMAP_SIZE:
            return 3 * PAGE
        if request == _uapi.KVM_CREATE_VM and isinstance(arg, int):
            if not 0 <= arg < 64 or not self.caps[Cap.VM_TYPES] & (1 << arg):
                raise _oserror(errno.EINVAL)
            fd = self._new_fd()
            self.objects[fd] = _Vm(fd, VmType(arg))
            self.journal.append(("CREATE_VM", arg))
            return fd
        raise _oserror(errno.EINVAL)

    # VM fd ------------------------------------------------------------------------
    def _vm(self, vm: _Vm, request: int, arg: int | bytearray) -> int:
        if request == _uapi.KVM_CREATE_VCPU and isinstance(arg, int):
            if any(v.vcpu_id == arg for v in vm.vcpus):
                raise _oserror(errno.EEXIST)
            fd = self._new_fd(3 * PAGE)
            vcpu = _Vcpu(fd, vm, arg)
            vm.vcpus.append(vcpu)
            self.objects[fd] = vcpu
            return fd
        if not isinstance(arg, bytearray):
            raise _oserror(errno.EINVAL)
        if request == _uapi.KVM_CREATE_GUEST_MEMFD:
            if not self.caps[Cap.GUEST_MEMFD]:
                raise _oserror(errno.ENOTTY)
            req = _uapi.KvmCreateGuestMemfd.from_buffer(arg)
            if req.size <= 0 or req.size % PAGE or req.flags & ~self.caps[Cap.GUEST_MEMFD_FLAGS]:
                raise _oserror(errno.EINVAL)
            if vm.vm_type is not VmType.DEFAULT and req.flags & GuestMemfdFlag.INIT_SHARED:
                raise _oserror(errno.EINVAL)
            fd = self._new_fd(req.size)
            self.objects[fd] = _Gmem(fd, vm, req.size, req.flags)
            return fd
        if request == _uapi.KVM_SET_USER_MEMORY_REGION2:
            if not self.caps[Cap.USER_MEMORY2]:
                raise _oserror(errno.ENOTTY)
            r2 = _uapi.KvmUserspaceMemoryRegion2.from_buffer(arg)
            return self._set_region(vm, r2, "KVM_SET_USER_MEMORY_REGION2", r2.guest_memfd)
        if request == _uapi.KVM_SET_USER_MEMORY_REGION:
            r1 = _uapi.KvmUserspaceMemoryRegion.from_buffer(arg)
            return self._set_region(vm, r1, "KVM_SET_USER_MEMORY_REGION", None)
        if request == _uapi.KVM_SET_MEMORY_ATTRIBUTES:
            if not self.caps[Cap.MEMORY_ATTRIBUTES]:
                raise _oserror(errno.ENOTTY)
            a = _uapi.KvmMemoryAttributes.from_buffer(arg)
            if a.address % PAGE or a.size % PAGE or not a.size or a.flags or a.attributes & ~8:
                raise _oserror(errno.EINVAL)
            gfns = range(a.address // PAGE, (a.address + a.size) // PAGE)
            if a.attributes:
                vm.private.update(gfns)
            else:
                vm.private.difference_update(gfns)
            return 0
        if request == _uapi.KVM_MEMORY_ENCRYPT_OP:
            if vm.vm_type is VmType.TDX:
                return self._tdx_vm(vm, _uapi.KvmTdxCmd.from_buffer(arg))
            if vm.vm_type is VmType.SNP:
                return self._sev(vm, _uapi.KvmSevCmd.from_buffer(arg))
            raise _oserror(errno.ENOTTY)
        raise _oserror(errno.ENOTTY)

    def _set_region(
        self,
        vm: _Vm,
        r: _uapi.KvmUserspaceMemoryRegion | _uapi.KvmUserspaceMemoryRegion2,
        op: str,
        gmem_fd: int | None,
    ) -> int:
        if r.memory_size == 0:
            if r.slot not in vm.slots:
                raise _oserror(errno.EINVAL)
            del vm.slots[r.slot]
            return 0
        private = vm.vm_type is not VmType.DEFAULT
        with_gmem = gmem_fd is not None and r.flags == MemFlag.GUEST_MEMFD
        if r.flags not in (0, MemFlag.GUEST_MEMFD) or (r.flags and gmem_fd is None):
            raise _oserror(errno.EINVAL)
        if private and not with_gmem:  # private memory lives only in guest_memfd
            raise _oserror(errno.EINVAL)
        if r.guest_phys_addr % PAGE or r.memory_size % PAGE:
            raise _oserror(errno.EINVAL)
        if not with_gmem and (not r.userspace_addr or r.userspace_addr % PAGE):
            raise _oserror(errno.EINVAL)
        if r.slot >= self.caps[Cap.NR_MEMSLOTS] or r.slot in vm.slots:
            raise _oserror(errno.EINVAL)
        gmem: _Gmem | None = None
        offset = 0
        if with_gmem:
            assert isinstance(r, _uapi.KvmUserspaceMemoryRegion2)
            obj = self.objects.get(r.guest_memfd)
            if obj is None:
                raise _oserror(errno.EBADF)
            if not isinstance(obj, _Gmem) or obj.vm is not vm:
                raise _oserror(errno.EINVAL)
            if r.guest_memfd_offset % PAGE or r.guest_memfd_offset + r.memory_size > obj.size:
                raise _oserror(errno.EINVAL)
            gmem, offset = obj, r.guest_memfd_offset
        end = r.guest_phys_addr + r.memory_size
        if any(s.gpa < end and r.guest_phys_addr < s.gpa + s.size for s in vm.slots.values()):
            raise _oserror(errno.EEXIST)
        vm.slots[r.slot] = _Slot(
            r.slot, r.guest_phys_addr, r.memory_size, gmem, offset, r.userspace_addr
        )
        self.memslot_calls.append((op, r.slot, r.flags, None if gmem is None else gmem.fd))
        return 0

    def _write_page(self, vm: _Vm, gpa: int, page: bytes) -> None:
        slot = vm.slot_for(gpa)
        assert slot is not None
        assert slot.gmem is not None
        os.pwrite(slot.gmem.fd, page, slot.offset + gpa - slot.gpa)

    # TDX --------------------------------------------------------------------------
    def _tdx_vm(self, vm: _Vm, cmd: _uapi.KvmTdxCmd) -> int:
        if cmd.hw_error:
            raise _oserror(errno.EINVAL)
        if cmd.id == TdxCmd.CAPABILITIES:
            caps = _uapi.KvmTdxCapabilities.from_address(cmd.data)
            caps.supported_attrs, caps.supported_xfam = 0x1000_0000, 0x6DB
            caps.cpuid.nent = 0
            return 0
        if cmd.id == TdxCmd.INIT_VM:
            if vm.tdx_init or vm.vcpus:
                raise _oserror(errno.EINVAL)
            vm.tdx_init = True
            init = _uapi.KvmTdxInitVm.from_address(cmd.data)
            self.launch_params.update(
                attributes=int(init.attributes),
                xfam=int(init.xfam),
                mrconfigid=bytes(init.mrconfigid),
                mrowner=bytes(init.mrowner),
                mrownerconfig=bytes(init.mrownerconfig),
            )
            self.journal.append(("TDX_INIT_VM",))
            return 0
        if cmd.id == TdxCmd.FINALIZE_VM:
            if not vm.tdx_init or vm.finalized:
                raise _oserror(errno.EINVAL)
            vm.finalized = True
            self.journal.append(("TDX_FINALIZE_VM",))
            return 0
        raise _oserror(errno.EINVAL)

    def _tdx_vcpu(self, vcpu: _Vcpu, cmd: _uapi.KvmTdxCmd) -> int:
        vm = vcpu.vm
        if cmd.id == TdxCmd.INIT_VCPU:
            if not vm.tdx_init or vcpu.tdx_initialized:
                raise _oserror(errno.EINVAL)
            vcpu.tdx_initialized = True
            self.journal.append(("TDX_INIT_VCPU", vcpu.vcpu_id, cmd.data))
            return 0
        if cmd.id == TdxCmd.GET_CPUID:
            _uapi.KvmCpuid2.from_address(cmd.data).nent = 0
            return 0
        if cmd.id != TdxCmd.INIT_MEM_REGION:
            raise _oserror(errno.EINVAL)
        r = _uapi.KvmTdxInitMemRegion.from_address(cmd.data)
        if (
            not vcpu.tdx_initialized
            or vm.finalized
            or cmd.flags & ~_uapi.KVM_TDX_MEASURE_MEMORY_REGION
            or cmd.hw_error
            or not r.source_addr
            or r.source_addr % PAGE
            or r.gpa % PAGE
            or not r.nr_pages
        ):
            raise _oserror(errno.EINVAL)
        fault = self._next_fault()
        budget = r.nr_pages if fault.pages is None else min(fault.pages, r.nr_pages)
        measure = bool(cmd.flags & _uapi.KVM_TDX_MEASURE_MEMORY_REGION)
        done = 0
        while done < budget:
            gfn = r.gpa // PAGE
            slot = vm.slot_for(r.gpa)
            if slot is None or gfn not in vm.private or gfn in vm.populated:
                raise _oserror(errno.EINVAL if gfn not in vm.populated else errno.EIO)
            self._write_page(vm, r.gpa, ctypes.string_at(r.source_addr, PAGE))
            vm.populated.add(gfn)
            self.journal.append(
                ("TDX_PAGE_ADD", r.gpa, measure, hashlib.sha384(self._page(vm, r.gpa)).digest())
            )
            r.source_addr += PAGE
            r.gpa += PAGE
            r.nr_pages -= 1
            done += 1
        if r.nr_pages == 0:
            return 0
        # the struct shows the progress; the errno is returned anyway (a signal: EINTR)
        raise _oserror(fault.errno or errno.EINTR)

    def _page(self, vm: _Vm, gpa: int) -> bytes:
        slot = vm.slot_for(gpa)
        assert slot is not None
        assert slot.gmem is not None
        return os.pread(slot.gmem.fd, PAGE, slot.offset + gpa - slot.gpa)

    # SEV / SNP ----------------------------------------------------------------
    def _sev(self, vm: _Vm, cmd: _uapi.KvmSevCmd) -> int:
        cmd.error = 0
        if not any(o == "sev" for fd, o in self.objects.items() if fd == cmd.sev_fd):
            raise _oserror(errno.EBADF)
        if cmd.id == SevCmd.INIT2:
            if vm.sev_init or vm.vcpus:
                raise _oserror(errno.EINVAL)
            vm.sev_init = True
            self.journal.append(("SEV_INIT2",))
            return 0
        if cmd.id == SevCmd.SNP_LAUNCH_START:
            start = _uapi.KvmSevSnpLaunchStart.from_address(cmd.data)
            if not vm.sev_init or vm.snp_started or not start.policy & (1 << 17) or start.flags:
                raise _oserror(errno.EINVAL)
            vm.snp_started = True
            self.launch_params["policy"] = int(start.policy)
            self.journal.append(("SNP_LAUNCH_START", start.policy))
            return 0
        if cmd.id == SevCmd.SNP_LAUNCH_UPDATE:
            return self._snp_update(vm, cmd)
        if cmd.id == SevCmd.SNP_LAUNCH_FINISH:
            fin = _uapi.KvmSevSnpLaunchFinish.from_address(cmd.data)
            if not vm.snp_started or fin.flags:
                raise _oserror(errno.EINVAL)
            enabled = bool(fin.id_block_en)
            self.launch_params.update(
                host_data=bytes(fin.host_data),
                id_block=ctypes.string_at(fin.id_block_uaddr, 96) if enabled else None,
                id_auth=ctypes.string_at(fin.id_auth_uaddr, 4096) if enabled else None,
                auth_key_en=bool(fin.auth_key_en),
            )
            for v in vm.vcpus:
                self.journal.append(("SNP_VMSA", v.vcpu_id))
            self.journal.append(("SNP_LAUNCH_FINISH", bytes(fin.host_data), fin.id_block_en))
            vm.finalized = True
            return 0
        raise _oserror(errno.EINVAL)

    def _snp_update(self, vm: _Vm, cmd: _uapi.KvmSevCmd) -> int:
        u = _uapi.KvmSevSnpLaunchUpdate.from_address(cmd.data)
        gfn, uaddr, length, ptype = u.gfn_start, u.uaddr, u.len, u.type
        valid_types = {t.value for t in SnpPageType} - {SnpPageType.VMSA}
        if (
            not vm.snp_started
            or vm.finalized
            or not length
            or length % PAGE
            or u.flags
            or ptype not in valid_types
            or (ptype != SnpPageType.ZERO and (not uaddr or uaddr % PAGE))
        ):
            raise _oserror(errno.EINVAL)
        fault = self._next_fault()
        npages = length // PAGE
        budget = npages if fault.pages is None else min(fault.pages, npages)
        done = 0
        failure = fault.errno
        while done < budget:
            gpa = (gfn + done) * PAGE
            if vm.slot_for(gpa) is None or gpa // PAGE not in vm.private:
                failure = failure or errno.EIO
                break
            if gpa // PAGE in vm.populated:
                failure = failure or errno.EIO
                break
            src = uaddr + (done * PAGE if ptype != SnpPageType.ZERO else 0)
            if ptype == SnpPageType.ZERO:
                page = bytes(PAGE)
            elif ptype == SnpPageType.SECRETS:
                page = b"fake SNP secrets".ljust(PAGE, b"\0")
            else:
                page = ctypes.string_at(src, PAGE)
            self._write_page(vm, gpa, page)
            vm.populated.add(gpa // PAGE)
            digest = hashlib.sha384(page).digest()
            self.journal.append(("SNP_LAUNCH_UPDATE", gpa, ptype, digest))
            done += 1
        if done:
            u.gfn_start = gfn + done
            u.len = length - done * PAGE
            if ptype != SnpPageType.ZERO:
                u.uaddr = uaddr + done * PAGE
            return 0
        if failure in (0, errno.EAGAIN):
            if failure == errno.EAGAIN:
                raise _oserror(errno.EAGAIN)
            return 0
        if ptype == SnpPageType.CPUID and fault.fw_error == _uapi.SEV_RET_INVALID_PARAM:
            ctypes.memmove(uaddr, b"\xff" * 16, 16)  # the firmware's corrected entries
        cmd.error = fault.fw_error  # a signal, not PRIVATE, a double populate: EIO, error 0
        raise _oserror(errno.EIO)

    # vCPU fd ------------------------------------------------------------------------
    def _vcpu(self, vcpu: _Vcpu, request: int, arg: int | bytearray) -> int:
        if request == _uapi.KVM_RUN:
            run = bytearray(ctypes.sizeof(_uapi.KvmRun))
            _uapi.KvmRun.from_buffer(run).exit_reason = _uapi.ExitReason.HLT
            os.pwrite(vcpu.fd, bytes(run), 0)
            return 0
        if not isinstance(arg, bytearray):
            raise _oserror(errno.EINVAL)
        if request == _uapi.KVM_GET_REGS:
            arg[:] = vcpu.regs
            return 0
        if request == _uapi.KVM_SET_REGS:
            vcpu.regs = bytes(arg)
            return 0
        if request == _uapi.KVM_GET_SREGS:
            arg[:] = vcpu.sregs
            return 0
        if request == _uapi.KVM_SET_SREGS:
            vcpu.sregs = bytes(arg)
            return 0
        if request == _uapi.KVM_PRE_FAULT_MEMORY:
            return self._pre_fault(vcpu, _uapi.KvmPreFaultMemory.from_buffer(arg))
        if request == _uapi.KVM_MEMORY_ENCRYPT_OP and vcpu.vm.vm_type is VmType.TDX:
            return self._tdx_vcpu(vcpu, _uapi.KvmTdxCmd.from_buffer(arg))
        raise _oserror(errno.ENOTTY)

    def _pre_fault(self, vcpu: _Vcpu, p: _uapi.KvmPreFaultMemory) -> int:
        if p.flags or p.gpa % PAGE or p.size % PAGE or not p.size:
            raise _oserror(errno.EINVAL)
        if not self.caps[Cap.PRE_FAULT_MEMORY]:
            raise _oserror(errno.EOPNOTSUPP)
        fault = self._next_fault()
        npages = p.size // PAGE
        budget = npages if fault.pages is None else min(fault.pages, npages)
        done = 0
        failure = fault.errno
        while done < budget:
            gpa = p.gpa + done * PAGE
            if vcpu.vm.slot_for(gpa) is None:
                failure = failure or errno.ENOENT
                break
            self.journal.append(("PRE_FAULT", gpa))
            done += 1
        if done:
            p.gpa += done * PAGE
            p.size -= done * PAGE
            return 0
        if failure:
            raise _oserror(failure)
        return 0
