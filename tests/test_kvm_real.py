"""The KVM layer against this machine's real /dev/kvm (marker ``kvm``: runs wherever it opens).

What the host offers is cross-checked against raw ``fcntl.ioctl`` calls, and on the project's
PVM host (``kvm_pvm``) against the values kvm-uapi.md §4 observed. The guest_memfd cases are
the kernel selftests' (``guest_memfd_test.c``, ``set_memory_region_test.c``; kvm-uapi.md §3)
that apply to a default VM.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import hashlib
import mmap
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from cvmlaunch import _uapi
from cvmlaunch.errors import KvmError, KvmUnsupported
from cvmlaunch.kvm_map import (
    GuestMemfdFlag,
    HltExit,
    IoDirection,
    IoExit,
    Kernel,
    Kvm,
    LinuxKernel,
    TimeoutExit,
    Vm,
    VmType,
    populate,
)
from cvmlaunch.layout import (
    FOUR_GIB,
    PageType,
    Plan,
    Provenance,
    Region,
    SourceKind,
)
from cvmlaunch.log_entry import LogOp
from cvmlaunch.memory_map import MemoryMap
from tests.fds import leaked_fds, open_fds

pytestmark = pytest.mark.kvm

MiB = 1 << 20


# ---------------------------------------------------------------- capability probe


def test_probe_matches_raw_ioctls() -> None:
    with Kvm.open() as kvm:
        caps = kvm.caps()
        raw = {cap: fcntl.ioctl(kvm.fd, 0xAE03, int(cap)) for cap in _uapi.Cap}
        mmap_size = fcntl.ioctl(kvm.fd, 0xAE04, 0)
    assert caps.api_version == 12
    assert caps.vm_types == (raw[_uapi.Cap.VM_TYPES] or 1)
    assert caps.guest_memfd_flags == raw[_uapi.Cap.GUEST_MEMFD_FLAGS]
    assert caps.pre_fault_memory == bool(raw[_uapi.Cap.PRE_FAULT_MEMORY])
    assert caps.memory_attributes == raw[_uapi.Cap.MEMORY_ATTRIBUTES]
    assert caps.max_vcpus == raw[_uapi.Cap.MAX_VCPUS]
    assert caps.nr_memslots == raw[_uapi.Cap.NR_MEMSLOTS]
    assert caps.vcpu_mmap_size == mmap_size
    assert caps.supports(VmType.DEFAULT)


class _Recording:
    """A LinuxKernel that records the ioctls it makes."""

    def __init__(self) -> None:
        self.inner = LinuxKernel()
        self.requests: list[int] = []

    def open(self, path: str, flags: int) -> int:
        return self.inner.open(path, flags)

    def close(self, fd: int) -> None:
        self.inner.close(fd)

    def ioctl(self, fd: int, request: int, arg: int | bytearray) -> int:
        self.requests.append(request)
        return self.inner.ioctl(fd, request, arg)

    def mmap(self, fd: int, length: int) -> mmap.mmap:
        return self.inner.mmap(fd, length)


@pytest.mark.parametrize(
    ("vm_type", "name"), [(VmType.TDX, "KVM_X86_TDX_VM"), (VmType.SNP, "KVM_X86_SNP_VM")]
)
def test_missing_technology_stops_before_anything_is_created(vm_type: VmType, name: str) -> None:
    with Kvm.open() as kvm:
        if kvm.caps().supports(vm_type):
            pytest.skip(f"VM type {name} is offered by this host: nothing to refuse")
    kernel = _Recording()
    before = open_fds()
    with pytest.raises(KvmUnsupported) as info:
        Vm.open(vm_type, kernel=kernel)
    assert leaked_fds(before) == set()
    assert _uapi.KVM_CREATE_VM not in kernel.requests
    assert set(kernel.requests) <= {
        _uapi.KVM_GET_API_VERSION,
        _uapi.KVM_CHECK_EXTENSION,
        _uapi.KVM_GET_VCPU_MMAP_SIZE,
    }
    assert info.value.cap == name
    assert str(info.value).startswith(f"this host's KVM does not offer {name}")


# ---------------------------------------------------------------- memslots and populate


def _code_region(gpa: int, code: bytes, name: str) -> Region:
    return Region(gpa, 0x1000, PageType.NORMAL, True, Provenance(SourceKind.GENERATED, name), code)


# real mode at 0100:0000: ds=0x1000; al=[0]; out 0x3f8, al; [0x10]=0x99; hlt
REAL_MODE_CODE = bytes.fromhex("b80010 8ed8 a00000 baf803 ee c606100099 f4".replace(" ", ""))
# 32-bit flat: al=[ebx]; out 0x3f8, al; [ebx+1]=0x77; hlt
PROTECTED_MODE_CODE = bytes.fromhex("8a03 66baf803 ee c6430177 f4".replace(" ", ""))
LOOP_CODE = bytes.fromhex("ebfe")  # jmp $
HLT_CODE = bytes.fromhex("f4")


def _plan() -> tuple[Plan, bytes, bytes]:
    memory = MemoryMap.for_size(0xC000_0000)  # 2 GiB below 4 GiB, 1 GiB above
    low_data = os.urandom(3 * 4096 + 100)
    high_data = os.urandom(2 * 4096)
    regions = [
        _code_region(0x1000, REAL_MODE_CODE, "real-mode code"),
        _code_region(0x2000, PROTECTED_MODE_CODE, "32-bit code"),
        _code_region(0x3000, LOOP_CODE, "jmp $"),
        _code_region(0x4000, HLT_CODE, "hlt"),
        Region(
            0x10000, 0x8000, PageType.NORMAL, True, Provenance(SourceKind.FILE, "low"), low_data
        ),
        Region(
            FOUR_GIB + 0x2000,
            0x3000,
            PageType.NORMAL,
            True,
            Provenance(SourceKind.FILE, "high", offset=0x40),
            high_data,
        ),
    ]
    return Plan.of(regions, memory), low_data, high_data


def test_plain_populate_runs_the_guest_it_placed(memory_backend: str) -> None:
    plan, low_data, high_data = _plan()
    assert plan.memory is not None
    with Vm.open(memory_backend=memory_backend) as vm:
        assert vm.memory_backend.backend == memory_backend
        vm.map_memory(plan.memory)
        assert [(m.slot, m.gpa, m.size) for m in vm.memory] == [
            (0, 0, 0x8000_0000),
            (1, FOUR_GIB, 0x4000_0000),
        ]
        if memory_backend == "guest-memfd":
            want = GuestMemfdFlag.MMAP | GuestMemfdFlag.INIT_SHARED
            assert all(m.flags == want and m.gmem_fd >= 0 for m in vm.memory)
        else:
            assert all(m.flags == 0 and m.gmem_fd == -1 for m in vm.memory)
        vcpu = vm.create_vcpu()
        log = populate(vm, plan)

        # the log: one plain.copy per region, in plan order, hashing what went in
        assert [e.op for e in log.entries] == [LogOp.PLAIN_COPY] * 6
        assert [(e.gpa, e.size) for e in log.entries] == [(r.gpa, r.size) for r in plan.regions]
        for entry, region in zip(log.entries, plan.regions, strict=True):
            assert entry.content_sha384 == hashlib.sha384(region.contents()).digest()
            assert entry.provenance == region.provenance
            assert entry.digest_after is None
        # without KVM_PRE_FAULT_MEMORY the engine says the pages fault in on first touch
        assert any("KVM_PRE_FAULT_MEMORY" in note for note in log.notes) == (
            not vm.check_extension(_uapi.Cap.PRE_FAULT_MEMORY)
        )

        # read back through the slot mapping, and through a second mmap of the guest_memfd
        assert vm.read(0x10000, 0x8000) == low_data + bytes(0x8000 - len(low_data))
        assert vm.read(FOUR_GIB + 0x2000, 0x3000) == high_data + bytes(0x1000)
        high = vm.memory_at(FOUR_GIB)
        if memory_backend == "guest-memfd":
            with mmap.mmap(high.gmem_fd, high.size) as second:
                assert second[0x2000 : 0x2000 + len(high_data)] == high_data

        # 16-bit real mode: the guest reads the engine's data, reports it on the serial port
        vcpu.setup_real_mode(0x100, 0)
        assert vcpu.run(timeout=10) == IoExit(0x3F8, IoDirection.OUT, 1, 1, low_data[:1])
        assert vcpu.run(timeout=10) == HltExit()
        assert vm.read(0x10010, 1) == b"\x99"  # the guest's write landed in the slot's memory

        # 32-bit flat protected mode, PVH style (EBX = a GPA to read)
        vcpu.setup_protected_mode(0x2000, rbx=0x10005)
        assert vcpu.run(timeout=10) == IoExit(0x3F8, IoDirection.OUT, 1, 1, low_data[5:6])
        assert vcpu.run(timeout=10) == HltExit()
        assert vm.read(0x10006, 1) == b"\x77"
        regs = vcpu.get_regs()
        assert regs.rbx == 0x10005
        assert regs.rip == 0x2000 + len(PROTECTED_MODE_CODE)
        sregs = vcpu.get_sregs()
        assert sregs.cr0 & 1
        assert sregs.cs.db == 1
        assert sregs.cs.base == 0


def test_anonymous_memory_through_the_original_memslot_ioctl() -> None:
    """Where KVM_CAP_USER_MEMORY2 is absent, anonymous memory is bound with
    KVM_SET_USER_MEMORY_REGION: the guest runs on it just the same."""
    plan, low_data, _ = _plan()
    assert plan.memory is not None
    kernel = _Recording()
    with Vm.open(kernel=kernel, memory_backend="anonymous") as vm:
        vm.user_memory2 = False  # as on a host without KVM_CAP_USER_MEMORY2
        vm.map_memory(plan.memory)
        assert _uapi.KVM_SET_USER_MEMORY_REGION in kernel.requests
        assert _uapi.KVM_SET_USER_MEMORY_REGION2 not in kernel.requests
        vcpu = vm.create_vcpu()
        populate(vm, plan)
        vcpu.setup_protected_mode(0x2000, rbx=0x10005)
        assert vcpu.run(timeout=10) == IoExit(0x3F8, IoDirection.OUT, 1, 1, low_data[5:6])
        assert vcpu.run(timeout=10) == HltExit()
        assert vm.read(0x10006, 1) == b"\x77"


def test_run_timeout_stops_a_guest_that_never_halts(memory_backend: str) -> None:
    plan, _, _ = _plan()
    assert plan.memory is not None
    with Vm.open(memory_backend=memory_backend) as vm:
        vm.map_memory(plan.memory)
        vcpu = vm.create_vcpu()
        populate(vm, plan)
        vcpu.setup_protected_mode(0x3000)
        assert vcpu.run(timeout=0.2) == TimeoutExit(0.2)
        assert vcpu.get_regs().rip == 0x3000  # still spinning on `jmp $`
        # the vCPU stays usable: immediate_exit was cleared, the timer is gone
        vcpu.setup_protected_mode(0x4000)
        assert vcpu.run(timeout=10) == HltExit()
        assert vcpu.run_map is not None
        assert vcpu.run_map[_uapi.offset_of(_uapi.KvmRun, "immediate_exit")] == 0


# ---------------------------------------------------------------- no leaks, bad fds


def test_a_thousand_failed_launches_leak_nothing(memory_backend: str) -> None:
    # the second memslot number is beyond KVM_CAP_NR_MEMSLOTS: binding it fails after its
    # guest_memfd has been created and mapped
    from cvmlaunch.memory_map import Memslot, MemslotKind

    bad = MemoryMap(
        (
            Memslot(0, 0, MiB, MemslotKind.RAM_LOW),
            Memslot(1 << 20, FOUR_GIB, MiB, MemslotKind.RAM_HIGH),
        )
    )
    maps_before = Path("/proc/self/maps").read_text().count("\n")
    before = open_fds()

    def failed_launch() -> None:
        with Vm.open(memory_backend=memory_backend) as vm:
            vm.create_vcpu()
            vm.map_memory(bad)

    for _ in range(1000):
        with pytest.raises(KvmError) as info:
            failed_launch()
        assert info.value.errno == errno.EINVAL
    assert leaked_fds(before) == set()
    assert Path("/proc/self/maps").read_text().count("\n") <= maps_before + 2
    assert "slot 1048576" in str(info.value)


def test_bad_fd_surfaces_ebadf_through_every_wrapper() -> None:
    kernel: Kernel = LinuxKernel()
    vm = Vm(kernel, -1)
    from cvmlaunch.kvm_map import SnpFinish, Vcpu

    vcpu = Vcpu(kernel, -1, 0, mmap.mmap(-1, 3 * 4096))
    kvm = Kvm(kernel, -1)
    calls: dict[str, Callable[[], object]] = {
        "KVM_GET_API_VERSION": kvm.api_version,
        "KVM_CHECK_EXTENSION(KVM_CAP_VM_TYPES)": lambda: kvm.check_extension(_uapi.Cap.VM_TYPES),
        "KVM_GET_VCPU_MMAP_SIZE": kvm.vcpu_mmap_size,
        "KVM_GET_API_VERSION ": kvm.create_vm,  # the capability probe comes first
        "KVM_CHECK_EXTENSION(KVM_CAP_GUEST_MEMFD_FLAGS)": lambda: vm.check_extension(
            _uapi.Cap.GUEST_MEMFD_FLAGS
        ),
        "KVM_CREATE_VCPU": vm.create_vcpu,
        "KVM_CREATE_GUEST_MEMFD": lambda: vm.create_guest_memfd(4096),
        "KVM_SET_USER_MEMORY_REGION2": lambda: vm.set_user_memory_region2(0, 0, 4096, 0),
        "KVM_SET_USER_MEMORY_REGION": lambda: vm.set_user_memory_region(0, 0, 4096, 0),
        "KVM_SET_MEMORY_ATTRIBUTES": lambda: vm.set_memory_attributes(0, 4096, 8),
        "KVM_TDX_CAPABILITIES": vm.tdx_capabilities,
        "KVM_TDX_INIT_VM": lambda: vm.tdx_init_vm(attributes=0, xfam=0, cpuid=()),
        "KVM_TDX_FINALIZE_VM": vm.tdx_finalize_vm,
        "KVM_SEV_INIT2": vm.sev_init2,
        "KVM_SEV_SNP_LAUNCH_START": lambda: vm.snp_launch_start(1 << 17),
        "KVM_SEV_SNP_LAUNCH_UPDATE": lambda: vm.snp_launch_update(bytearray(64)),
        "KVM_SEV_SNP_LAUNCH_FINISH": lambda: vm.snp_launch_finish(SnpFinish()),
        "KVM_RUN": vcpu.run,
        "KVM_GET_REGS": vcpu.get_regs,
        "KVM_SET_REGS": lambda: vcpu.set_regs(vcpu_regs()),
        "KVM_GET_SREGS": vcpu.get_sregs,
        "KVM_SET_SREGS": lambda: vcpu.set_sregs(_uapi.KvmSregs()),
        "KVM_PRE_FAULT_MEMORY": lambda: vcpu.pre_fault_memory(bytearray(64)),
        "KVM_TDX_INIT_VCPU": lambda: vcpu.tdx_init_vcpu(0),
        "KVM_TDX_INIT_MEM_REGION": lambda: vcpu.tdx_init_mem_region(bytearray(24), True),
        "KVM_TDX_GET_CPUID": vcpu.tdx_get_cpuid,
    }
    for op, call in calls.items():
        with pytest.raises(KvmError) as info:
            call()
        assert (info.value.op, info.value.errno) == (op.strip(), errno.EBADF), op
        assert "errno 9 (Bad file descriptor)" in str(info.value)
    vcpu.close()
    vm.close()
    kvm.close()


def vcpu_regs() -> _uapi.KvmRegs:
    return _uapi.KvmRegs()


# ---------------------------------------------------------------- kernel selftest cases


def _gmem_errno(vm: Vm, size: int, flags: int = 0) -> int:
    try:
        vm.create_guest_memfd(size, flags)
    except KvmError as exc:
        return exc.errno or -1
    return 0


@pytest.mark.guest_memfd
def test_guest_memfd_flag_sweep_and_sizes() -> None:
    """guest_memfd_test.c: each flag bit works iff advertised; sizes 1..4095 fail EINVAL."""
    with Vm.open() as vm:
        offered = vm.check_extension(_uapi.Cap.GUEST_MEMFD_FLAGS)
        for bit in range(64):
            want = 0 if offered & (1 << bit) else errno.EINVAL
            assert _gmem_errno(vm, 4096, 1 << bit) == want, bit
        assert {_gmem_errno(vm, size) for size in range(1, 4096)} == {errno.EINVAL}
        a, b = vm.create_guest_memfd(4096), vm.create_guest_memfd(8192)
        sa, sb = os.fstat(a), os.fstat(b)
        assert (sa.st_size, sb.st_size, sa.st_blksize) == (4096, 8192, 4096)
        assert sa.st_ino != sb.st_ino


@pytest.mark.guest_memfd(mmap=True)
def test_guest_memfd_has_no_file_io() -> None:
    with Vm.open() as vm:
        fd = vm.create_guest_memfd(4096, GuestMemfdFlag.MMAP | GuestMemfdFlag.INIT_SHARED)
        for call in (
            lambda: os.read(fd, 1),
            lambda: os.write(fd, b"x"),
            lambda: os.pread(fd, 1, 0),
            lambda: os.pwrite(fd, b"x", 0),
        ):
            with pytest.raises(OSError, match=r"Errno"):
                call()


_LIBC = ctypes.CDLL(None, use_errno=True)
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 1, 2


def _fallocate(fd: int, mode: int, offset: int, length: int) -> int:
    rc = _LIBC.fallocate(fd, mode, ctypes.c_long(offset), ctypes.c_long(length))
    return 0 if rc == 0 else ctypes.get_errno()


@pytest.mark.guest_memfd(mmap=True)
def test_guest_memfd_mmap_punch_hole_and_fallocate() -> None:
    """guest_memfd_test.c: shared mmap, PUNCH_HOLE zeroes a page, the fallocate table."""
    size = 4 * 4096
    with Vm.open(memory_backend="guest-memfd") as vm:
        mem = vm.add_memslot(0, 0x100000, size)
        fd = mem.gmem_fd
        mem.write(0x100000, b"\xaa" * size)
        assert mem.read(0x100000, size) == b"\xaa" * size
        punch = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
        assert _fallocate(fd, punch, 0, 4096) == 0
        assert mem.read(0x100000, 4096) == bytes(4096)
        assert mem.read(0x101000, 3 * 4096) == b"\xaa" * 3 * 4096
        mem.write(0x100000, b"\x55" * 4096)
        assert mem.read(0x100000, 4096) == b"\x55" * 4096
        assert _fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, size) == 0
        assert _fallocate(fd, FALLOC_FL_KEEP_SIZE, size, 4096) == errno.EINVAL  # at EOF
        assert _fallocate(fd, punch, size, 4096) == 0  # punching at EOF is fine
        for offset, length in ((0, 1), (1, 4096), (4096, 4097), (4095, 4096), (0, 4095)):
            assert _fallocate(fd, punch, offset, length) == errno.EINVAL, (offset, length)
        # MAP_PRIVATE is refused; a guest_memfd without MMAP cannot be mapped
        with pytest.raises(OSError, match="Invalid argument"):
            mmap.mmap(fd, size, mmap.MAP_PRIVATE)
        plain = vm.create_guest_memfd(4096, 0)
        with pytest.raises(OSError, match="No such device"):
            mmap.mmap(plain, 4096)


_SIGBUS_SCRIPT = textwrap.dedent(
    """
    import ctypes, mmap, sys
    from cvmlaunch.kvm_map import Vm
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    with Vm.open() as vm:
        flags, offset = int(sys.argv[1]), int(sys.argv[2])
        fd = vm.create_guest_memfd(4 * 4096, flags)
        addr = libc.mmap(None, 16 * 4096, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd, 0)
        print("mapped", flush=True)
        ctypes.string_at(addr + offset, 1)
        print("read", flush=True)
    """
)


@pytest.mark.parametrize(
    ("flags", "offset", "faults"),
    [
        (3, 0, False),  # MMAP|INIT_SHARED, inside the file
        (3, 4 * 4096, True),  # MMAP|INIT_SHARED, beyond EOF
        (1, 0, True),  # MMAP only: the memory is private
    ],
)
@pytest.mark.guest_memfd(mmap=True)
def test_guest_memfd_access_sigbus(flags: int, offset: int, faults: bool) -> None:
    """guest_memfd_test.c: SIGBUS beyond EOF and on private (MMAP-only) memory."""
    proc = subprocess.run(
        [sys.executable, "-c", _SIGBUS_SCRIPT, str(flags), str(offset)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert "mapped" in proc.stdout, proc.stderr
    if faults:
        assert proc.returncode == -signal.SIGBUS
        assert "read" not in proc.stdout
    else:
        assert proc.returncode == 0
        assert "read" in proc.stdout


@pytest.mark.guest_memfd(mmap=True)
def test_memslot_binding_rules() -> None:
    """set_memory_region_test.c cases that apply to a default VM (kvm-uapi.md §3.3, §4)."""
    with Vm.open() as vm, Vm.open() as other:
        size = 16 * 4096
        gmem = vm.create_guest_memfd(2 * size, GuestMemfdFlag.MMAP | GuestMemfdFlag.INIT_SHARED)
        foreign = other.create_guest_memfd(size, 0)
        memfd = os.memfd_create("not-gmem")
        try:
            os.ftruncate(memfd, size)

            def bind(slot: int, gpa: int, fd: int, offset: int = 0) -> int:
                try:
                    vm.set_user_memory_region2(
                        slot, gpa, size, 0, guest_memfd=fd, guest_memfd_offset=offset
                    )
                except KvmError as exc:
                    return exc.errno or -1
                return 0

            # bad guest_memfd fds: an ordinary memfd, another VM's guest_memfd, the VM fd
            for bad in (memfd, foreign, vm.fd):
                assert bind(0, 0, bad) == errno.EINVAL
            assert bind(0, 0, 100_000) == errno.EBADF
            # unaligned offsets
            for offset in (1, 2048, 4095):
                assert bind(0, 0, gmem, offset) == errno.EINVAL
            assert bind(0, 0, gmem, 0) == 0
            # the same file range again (newer kernels say EEXIST), a GPA overlap, an
            # adjacent range
            assert bind(1, 0x100000, gmem, 0) in (errno.EINVAL, errno.EEXIST)
            assert bind(1, 0x4000, gmem, size) == errno.EEXIST
            assert bind(1, 0x100000, gmem, size) == 0
            # a guest_memfd slot cannot be moved or re-flagged; deleting it works
            assert bind(1, 0x200000, gmem, size) == errno.EINVAL
            vm.set_user_memory_region2(1, 0x100000, 0, 0, flags=0)
        finally:
            os.close(memfd)


# real mode: for each byte of msg: wait for LSR.THRE (in 0x3fd), out 0x3f8; then hlt
SERIAL_CODE = bytes.fromhex(
    "be1700 bafd03 ec a820 74fb ac 84c0 7406 baf803 ee ebed f4".replace(" ", "")
)


def test_run_serial_relays_the_uart_and_stops_on_hlt() -> None:
    message = b"hello, serial\n"
    assert len(SERIAL_CODE) == 23
    memory = MemoryMap.for_size(1 << 20)
    plan = Plan.of([_code_region(0x1000, SERIAL_CODE + message + b"\0", "serial")], memory)
    with Vm.open() as vm:
        vm.map_memory(memory)
        vcpu = vm.create_vcpu()
        populate(vm, plan)
        vcpu.setup_real_mode(0x100, 0)
        seen: list[bytes] = []
        result = vcpu.run_serial(10, on_output=seen.append)
        assert result.output == message
        assert b"".join(seen) == message
        assert result.exit == HltExit()
        # a guest that never halts ends with a timeout, with what it printed so far
        # the same program with `jmp $` for the hlt (and the message one byte further)
        vm.write(0x2000, b"\xbe\x18\x00" + SERIAL_CODE[3:22] + LOOP_CODE + message + b"\0")
        vcpu.setup_real_mode(0x200, 0)
        result = vcpu.run_serial(0.2)
        assert result.output == message
        assert result.exit == TimeoutExit(0.2)


def test_run_with_timeout_from_a_worker_thread() -> None:
    """The example-guest helper may run a vCPU off the main thread: the kick still works."""
    import threading

    from cvmlaunch.kvm_map import install_kick_handler

    install_kick_handler()  # main thread
    memory = MemoryMap.for_size(1 << 20)
    plan = Plan.of([_code_region(0x3000, LOOP_CODE, "jmp $")], memory)
    results: list[object] = []
    with Vm.open() as vm:
        vm.map_memory(memory)
        vcpu = vm.create_vcpu()
        populate(vm, plan)
        vcpu.setup_protected_mode(0x3000)
        worker = threading.Thread(target=lambda: results.append(vcpu.run(timeout=0.2)))
        worker.start()
        worker.join(timeout=30)
        assert not worker.is_alive()
    assert results == [TimeoutExit(0.2)]


def test_timeout_off_the_main_thread_without_a_handler_is_a_clear_error() -> None:
    import threading

    from cvmlaunch.kvm_map import KICK_SIGNAL

    previous = signal.signal(KICK_SIGNAL, signal.SIG_DFL)
    errors: list[BaseException] = []
    try:
        with Vm.open() as vm:
            vcpu = vm.create_vcpu()

            def run() -> None:
                try:
                    vcpu.run(timeout=0.1)
                except RuntimeError as exc:
                    errors.append(exc)

            worker = threading.Thread(target=run)
            worker.start()
            worker.join(timeout=30)
    finally:
        signal.signal(KICK_SIGNAL, previous)
    assert [str(e) for e in errors] == [
        "a vCPU run with a timeout needs a handler for SIGUSR1: call "
        "cvmlaunch.kvm_map.install_kick_handler() from the main thread first"
    ]
