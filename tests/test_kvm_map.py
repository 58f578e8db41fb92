"""The populate engine and the fd discipline of cvmlaunch.kvm_map, against tests/fakekvm.py.

The packing, the resume loop and the log are the real code; only the four system calls are
fake. The central property: every fault schedule that eventually succeeds leaves the same
guest memory, the same kernel-side journal and the same log as a fault-free run; one that
cannot succeed ends in a clear KvmError, never a hang.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from cvmlaunch import _uapi
from cvmlaunch.errors import CvmLaunchError, KvmError, KvmUnsupported
from cvmlaunch.kvm_map import (
    MAX_STALLS,
    HltExit,
    LaunchLog,
    SnpFinish,
    Vm,
    VmType,
    populate,
)
from cvmlaunch.kvm_map._engine import _drive
from cvmlaunch.layout import (
    FOUR_GIB,
    VMSA_GPA,
    PageType,
    Plan,
    Provenance,
    Region,
    SourceKind,
)
from cvmlaunch.log_entry import LogEntry, LogOp
from cvmlaunch.memory_map import MemoryMap, Memslot, MemslotKind
from tests.fakekvm import FakeKernel, Fault
from tests.fds import leaked_fds, open_fds

PAGE = 4096
MEMORY = MemoryMap(
    (
        Memslot(0, 0, 64 * PAGE, MemslotKind.RAM_LOW),
        Memslot(1, FOUR_GIB, 16 * PAGE, MemslotKind.RAM_HIGH),
    )
)


def _data(seed: int, size: int) -> bytes:
    out = b""
    counter = 0
    while len(out) < size:
        out += hashlib.sha384(f"{seed}/{counter}".encode()).digest()
        counter += 1
    return out[:size]


def _region(gpa: int, pages: int, ptype: PageType, measured: bool, n: int, data: int) -> Region:
    return Region(
        gpa,
        pages * PAGE,
        ptype,
        measured,
        Provenance(SourceKind.FILE, "image", offset=n * 0x1000),
        _data(n, data),
    )


PLANS: dict[str, Plan] = {
    "plain": Plan.of(
        [
            _region(0x2000, 3, PageType.NORMAL, True, 1, 2 * PAGE + 5),
            _region(0x10000, 5, PageType.NORMAL, True, 2, 5 * PAGE),
            _region(FOUR_GIB + PAGE, 4, PageType.NORMAL, True, 3, 100),
        ],
        MEMORY,
    ),
    "tdx": Plan.of(
        [
            _region(0x20000, 4, PageType.NORMAL, True, 4, 4 * PAGE),
            _region(0x8000, 3, PageType.NORMAL, False, 5, PAGE + 7),
            _region(FOUR_GIB, 5, PageType.NORMAL, True, 6, 3 * PAGE),
        ],
        MEMORY,
    ),
    "snp": Plan.of(
        [
            _region(0x4000, 3, PageType.NORMAL, True, 7, 3 * PAGE - 9),
            _region(0x8000, 4, PageType.ZERO, False, 8, 0),
            _region(0xC000, 1, PageType.SECRETS, False, 9, 0),
            _region(0xD000, 1, PageType.CPUID, False, 10, 300),
            _region(FOUR_GIB, 3, PageType.UNMEASURED, False, 11, 2 * PAGE),
            Region(
                VMSA_GPA,
                PAGE,
                PageType.VMSA,
                True,
                Provenance(SourceKind.VMSA, index=0),
                _data(12, PAGE),
            ),
            Region(
                VMSA_GPA,
                PAGE,
                PageType.VMSA,
                True,
                Provenance(SourceKind.VMSA, index=1),
                _data(13, PAGE),
            ),
        ],
        MEMORY,
    ),
}
#: The plain plan again, on a host without guest_memfd: anonymous memory (issue 12).
PLANS["plain-anon"] = PLANS["plain"]
VM_TYPES = {
    "plain": VmType.DEFAULT,
    "plain-anon": VmType.DEFAULT,
    "tdx": VmType.TDX,
    "snp": VmType.SNP,
}


def _kernel(path: str, **kwargs: object) -> FakeKernel:
    """The fake host for ``path``: ``plain-anon`` has no guest_memfd."""
    if path == "plain-anon":
        kwargs.setdefault("guest_memfd", False)
    return FakeKernel(**kwargs)  # type: ignore[arg-type]


@dataclass
class Outcome:
    log: LaunchLog
    memory: dict[tuple[int, int], bytes]
    journal: list[tuple[object, ...]]


def launch(
    kernel: FakeKernel, path: str, on_record: Callable[[LogEntry], None] | None = None
) -> Outcome:
    """A whole launch the way the launcher drives it (VM, init, memslots, vCPUs, populate)."""
    plan = PLANS[path]
    assert plan.memory is not None
    with Vm.open(VM_TYPES[path], kernel=kernel) as vm:
        if path == "tdx":
            vm.tdx_init_vm(attributes=0, xfam=0x3, cpuid=())
        if path == "snp":
            vm.sev_init2()
        vm.map_memory(plan.memory)
        vcpus = [vm.create_vcpu() for _ in range(2)]
        if path == "tdx":
            for v in vcpus:
                v.tdx_init_vcpu(0x80_0000)
        if path == "snp":
            vm.snp_launch_start(1 << 17 | 1 << 16)
        log = populate(vm, plan, snp_finish=SnpFinish(host_data=b"h" * 32), on_record=on_record)
        memory = kernel.guest_memory()
        # the VM fd numbers differ between runs: key the memory by GPA only
        memory = {(0, gpa): data for (_, gpa), data in memory.items()}
    return Outcome(log, memory, [j for j in kernel.journal if j[0] != "CREATE_VM"])


BASELINES = {path: launch(_kernel(path), path) for path in PLANS}


def _plan_region(plan: Plan, entry: LogEntry) -> Region:
    for r in plan.regions:
        if r.provenance == entry.provenance and r.gpa <= entry.gpa < r.end:
            return r
    raise AssertionError(f"no region for {entry}")


def _plan_bytes(plan: Plan, entry: LogEntry) -> bytes:
    r = _plan_region(plan, entry)
    off = entry.gpa - r.gpa
    return r.contents()[off : off + entry.size]


def _check_entries(plan: Plan, log: LaunchLog) -> None:
    """Each record hashes exactly the plan's bytes for its range (and per page for SNP)."""
    assert [e.seq for e in log.entries] == list(range(len(log.entries)))
    for e in log.entries:
        data = _plan_bytes(plan, e)
        assert len(data) == e.size
        # the plan's bytes' hash, or the zero marker for a range the plan gives none
        want = hashlib.sha384(data).digest() if len(_plan_region(plan, e).data) else None
        assert e.content_sha384 == want
        assert e.digest_after is None
        if e.op in (LogOp.SNP_LAUNCH_UPDATE, LogOp.SNP_VMSA) and e.page_type.hashes_contents:
            # per-page hashes where SNP hashes the contents (NORMAL, VMSA), as the prediction
            pages = [data[i : i + PAGE] for i in range(0, len(data), PAGE)]
            assert e.page_sha384 == tuple(hashlib.sha384(p).digest() for p in pages)
        else:
            assert e.page_sha384 == ()


def _coalesce(log: LaunchLog) -> list[tuple[object, ...]]:
    """Adjacent records of one region and op merged: what was done, independent of splits."""
    keys: list[tuple[object, ...]] = []
    spans: list[tuple[int, int]] = []
    for e in log.entries:
        key = (e.op, e.page_type, e.measured, e.provenance)
        if keys and keys[-1] == key and sum(spans[-1]) == e.gpa:
            spans[-1] = (spans[-1][0], spans[-1][1] + e.size)
        else:
            keys.append(key)
            spans.append((e.gpa, e.size))
    return [(*k, *span) for k, span in zip(keys, spans, strict=True)]


# ---------------------------------------------------------------- fault-free runs


def test_plain_fault_free_log_and_journal() -> None:
    out = BASELINES["plain"]
    plan = PLANS["plain"]
    _check_entries(plan, out.log)
    assert [(e.op, e.gpa, e.size) for e in out.log.entries] == [
        *((LogOp.PLAIN_COPY, r.gpa, r.size) for r in plan.regions),
        *((LogOp.PRE_FAULT, r.gpa, r.size) for r in plan.regions),
    ]
    assert all(not e.measured for e in out.log.entries if e.op is LogOp.PRE_FAULT)
    assert out.log.notes == ()
    assert out.journal == [("PRE_FAULT", g) for r in plan.regions for g, _ in r.pages()]
    for r in plan.regions:
        slot = MEMORY.slot_for(r.gpa, r.size)
        assert slot is not None
        off = r.gpa - slot.gpa
        assert out.memory[(0, slot.gpa)][off : off + r.size] == r.contents()


def test_both_backends_give_the_same_log_memory_and_journal() -> None:
    """Resume included: the plain path on anonymous memory (no guest_memfd) gives the same
    records, guest memory and pre-fault journal as on guest_memfd."""
    gmem, anon = BASELINES["plain"], BASELINES["plain-anon"]
    assert anon.log == gmem.log
    assert anon.memory == gmem.memory
    assert anon.journal == gmem.journal


@pytest.mark.parametrize("path", ["plain", "plain-anon"])
def test_plain_without_pre_fault_notes_it(path: str) -> None:
    kernel = _kernel(path, pre_fault=False)
    out = launch(kernel, path)
    assert [e.op for e in out.log.entries] == [LogOp.PLAIN_COPY] * 3
    assert out.log.notes == (
        "KVM_PRE_FAULT_MEMORY: not offered by this host (KVM_CAP_PRE_FAULT_MEMORY is 0); "
        "the guest faults its memory in on first access",
    )
    assert not any(j[0] == "PRE_FAULT" for j in out.journal)
    assert out.memory == BASELINES["plain"].memory


def test_tdx_fault_free_log_and_journal() -> None:
    out = BASELINES["tdx"]
    plan = PLANS["tdx"]
    _check_entries(plan, out.log)
    assert [(e.op, e.gpa, e.size, e.measured) for e in out.log.entries] == [
        (LogOp.TDX_PAGE_ADD_EXTEND, 0x20000, 4 * PAGE, True),
        (LogOp.TDX_PAGE_ADD, 0x8000, 3 * PAGE, False),
        (LogOp.TDX_PAGE_ADD_EXTEND, FOUR_GIB, 5 * PAGE, True),
    ]
    adds = [j for j in out.journal if j[0] == "TDX_PAGE_ADD"]
    assert [(j[1], j[2]) for j in adds] == [
        (gpa, r.measured) for r in plan.regions for gpa, _ in r.pages()
    ]
    assert [j[3] for j in adds] == [
        hashlib.sha384(bytes(p)).digest() for r in plan.regions for _, p in r.pages()
    ]
    assert out.journal[0] == ("TDX_INIT_VM",)
    assert out.journal[-1] == ("TDX_FINALIZE_VM",)


def test_snp_fault_free_log_and_journal() -> None:
    out = BASELINES["snp"]
    plan = PLANS["snp"]
    _check_entries(plan, out.log)
    assert [(e.op, e.gpa, e.page_type) for e in out.log.entries] == [
        (LogOp.SNP_LAUNCH_UPDATE, r.gpa, r.page_type) for r in plan.memory_regions
    ] + [(LogOp.SNP_VMSA, VMSA_GPA, PageType.VMSA)] * 2
    updates = [j for j in out.journal if j[0] == "SNP_LAUNCH_UPDATE"]
    assert [(j[1], j[2]) for j in updates] == [
        (gpa, r.page_type) for r in plan.memory_regions for gpa, _ in r.pages()
    ]
    assert out.journal[-3:] == [
        ("SNP_VMSA", 0),
        ("SNP_VMSA", 1),
        ("SNP_LAUNCH_FINISH", b"h" * 32, 0),
    ]
    low = out.memory[(0, 0)]
    assert low[0x4000:0x7000] == plan.regions[0].contents()
    assert low[0x8000:0xC000] == bytes(4 * PAGE)  # ZERO
    assert low[0xC000:0xC010] == b"fake SNP secrets"  # the firmware's secrets page


# ---------------------------------------------------------------- fault schedules

PATHS = list(PLANS)
partial = st.integers(1, 4).map(lambda k: Fault(pages=k))
retry = st.sampled_from([errno.EAGAIN, errno.EINTR]).map(lambda e: Fault(pages=0, errno=e))
fatal = st.one_of(
    st.integers(0, 0x30).map(lambda fw: Fault(pages=0, errno=errno.EIO, fw_error=fw)),
    st.sampled_from([errno.ENOTTY, errno.EOPNOTSUPP, errno.EINVAL]).map(
        lambda e: Fault(pages=0, errno=e)
    ),
)


def _is_fatal(path: str, f: Fault) -> bool:
    if f.pages or not f.errno:
        return False
    return f.errno not in (errno.EAGAIN, errno.EINTR) or (path == "snp" and f.errno == errno.EINTR)


def _stalls_out(path: str, faults: list[Fault]) -> bool:
    """Whether ``faults`` has MAX_STALLS no-progress retries in a row."""
    run = 0
    for f in faults:
        run = run + 1 if (f.pages == 0 and not _is_fatal(path, f)) else 0
        if run >= MAX_STALLS:
            return True
    return False


def _check_failure(path: str, kernel: FakeKernel, exc: KvmError) -> None:
    """A failed launch: explained by its last fault or a stall, clear, and leak-free."""
    consumed = kernel.consumed
    assert consumed, "failed without a fault"
    assert _is_fatal(path, consumed[-1]) or _stalls_out(path, consumed[-MAX_STALLS:])
    assert exc.op in (
        "KVM_PRE_FAULT_MEMORY",
        "KVM_TDX_INIT_MEM_REGION",
        "KVM_SEV_SNP_LAUNCH_UPDATE",
    )
    assert exc.remaining is not None
    gpa, left = exc.remaining
    assert left > 0
    assert f"{left:#x} bytes left at GPA {gpa:#x}" in str(exc)
    assert "image+0x" in str(exc)  # the range's provenance
    if path == "snp" and _is_fatal(path, consumed[-1]):
        assert exc.errno == errno.EIO
        assert exc.fw_error == (consumed[-1].fw_error or None)
    assert kernel.open_fds() == []
    assert kernel.open_mappings() == 0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    path=st.sampled_from(PATHS),
    schedule=st.lists(
        st.one_of(partial, partial, retry, retry, fatal.filter(lambda _: True)), max_size=24
    ),
    allow_fatal=st.booleans(),
)
def test_any_fault_schedule_converges_or_fails_clearly(
    path: str, schedule: list[Fault], allow_fatal: bool
) -> None:
    if not allow_fatal:
        schedule = [f for f in schedule if not _is_fatal(path, f)]
    kernel = _kernel(path, faults=list(schedule))
    error: KvmError | None = None
    try:
        out = launch(kernel, path)
    except KvmError as exc:
        error = exc
    if error is not None:
        _check_failure(path, kernel, error)
        event(f"{path}: failed")
        return
    event(f"{path}: succeeded after {len(kernel.consumed)} scripted calls")
    assert not any(_is_fatal(path, f) for f in kernel.consumed)
    base = BASELINES[path]
    assert out.memory == base.memory
    assert out.journal == base.journal
    _check_entries(PLANS[path], out.log)
    assert _coalesce(out.log) == _coalesce(base.log)
    assert kernel.open_fds() == []
    assert kernel.open_mappings() == 0


@pytest.mark.parametrize("path", PATHS)
def test_schedules_without_fatal_faults_or_stalls_succeed(path: str) -> None:
    schedule = [Fault(pages=1), Fault(pages=0, errno=errno.EAGAIN)] * 6
    if path != "snp":
        schedule += [Fault(pages=1)]
        schedule += [Fault(pages=0, errno=errno.EINTR)] * (MAX_STALLS - 1) + [Fault(pages=2)]
    out = launch(_kernel(path, faults=schedule), path)
    if path in ("snp", "tdx"):  # one record per plan region, however the calls were split
        assert out.log.entries == BASELINES[path].log.entries  # (the prediction's records)
    else:
        assert len(out.log.entries) > len(BASELINES[path].log.entries)  # the splits are logged
    assert _coalesce(out.log) == _coalesce(BASELINES[path].log)
    assert out.memory == BASELINES[path].memory


@pytest.mark.parametrize("path", PATHS)
def test_endless_retries_give_up(path: str) -> None:
    kernel = _kernel(path, faults=[Fault(pages=0, errno=errno.EAGAIN)] * 1000)
    with pytest.raises(KvmError, match=f"no progress in {MAX_STALLS} calls in a row") as info:
        launch(kernel, path)
    assert len(kernel.consumed) == MAX_STALLS
    assert info.value.errno == errno.EAGAIN


def test_partial_progress_then_fatal_keeps_what_was_done() -> None:
    kernel = FakeKernel(faults=[Fault(pages=2), Fault(pages=0, errno=errno.EIO, fw_error=0x7)])
    with pytest.raises(KvmError) as info:
        launch(kernel, "snp")
    first = PLANS["snp"].regions[0]
    assert info.value.remaining == (first.gpa + 2 * PAGE, first.size - 2 * PAGE)
    assert info.value.fw_error == 0x7
    assert str(info.value) == (
        "KVM_SEV_SNP_LAUNCH_UPDATE: image+0x7000 [0x4000-0x7000), errno 5 (Input/output "
        "error), firmware error 0x7, 0x1000 bytes left at GPA 0x6000"
    )
    assert [j[1] for j in kernel.journal if j[0] == "SNP_LAUNCH_UPDATE"] == [0x4000, 0x5000]


def test_rejected_cpuid_page_says_so() -> None:
    plan = PLANS["snp"]
    cpuid_call = [r.page_type for r in plan.memory_regions].index(PageType.CPUID)
    faults = [Fault()] * cpuid_call + [
        Fault(pages=0, errno=errno.EIO, fw_error=_uapi.SEV_RET_INVALID_PARAM)
    ]
    with pytest.raises(
        KvmError, match="firmware rejected the CPUID page; what it accepts: "
    ) as info:
        launch(FakeKernel(faults=faults), "snp")
    assert info.value.fw_error == 0x16


def test_inconsistent_rewrite_is_refused() -> None:
    class Backwards:
        op = "KVM_PRE_FAULT_MEMORY"
        advances_source = False
        state = (0x10000, 0x4000, 0)

        def issue(self) -> None:
            self.state = (0x8000, 0x2000, 0)

        def position(self) -> tuple[int, int, int]:
            return self.state

    with pytest.raises(KvmError, match="rewrote the request inconsistently"):
        _drive(Backwards(), lambda gpa, size: None, "test range")


# ---------------------------------------------------------------- capabilities, leaks


@pytest.mark.parametrize(
    ("vm_type", "kernel", "cap"),
    [
        (VmType.TDX, lambda: FakeKernel(vm_types=1), "KVM_X86_TDX_VM"),
        (VmType.SNP, lambda: FakeKernel(vm_types=1 | 1 << 5), "KVM_X86_SNP_VM"),
        (VmType.TDX, lambda: FakeKernel(memory_attributes=0), "KVM_MEMORY_ATTRIBUTE_PRIVATE"),
        (VmType.SNP, lambda: FakeKernel(sev_device=False), "/dev/sev"),
    ],
)
def test_unsupported_stops_before_creating(
    vm_type: VmType, kernel: Callable[[], FakeKernel], cap: str
) -> None:
    k = kernel()
    with pytest.raises(KvmUnsupported) as info:
        Vm.open(vm_type, kernel=k)
    assert info.value.cap == cap
    assert k.journal == []  # no CREATE_VM
    assert k.open_fds() == []


@pytest.mark.parametrize("path", PATHS)
def test_a_failure_at_any_system_call_leaks_nothing(path: str) -> None:
    total = _kernel(path)
    launch(total, path)
    fds_before = open_fds()
    for n in range(total.calls):
        kernel = _kernel(path, fail_at=n)
        with pytest.raises(CvmLaunchError):
            launch(kernel, path)
        assert kernel.open_fds() == [], n
        assert kernel.open_mappings() == 0, n
    assert leaked_fds(fds_before) == set()


def test_close_is_idempotent_and_run_decodes_exits() -> None:
    kernel = FakeKernel()
    vm = Vm.open(kernel=kernel)
    vcpu = vm.create_vcpu()
    assert vcpu.run() == HltExit()
    vm.close()
    vm.close()
    vcpu.close()
    assert kernel.open_fds() == []


def test_coalesce_helper_merges_only_adjacent_records() -> None:
    e = BASELINES["tdx"].log.entries
    assert len(_coalesce(BASELINES["tdx"].log)) == len(e)
    assert list(itertools.chain.from_iterable(_coalesce(BASELINES["tdx"].log)))[4:6] == [
        0x20000,
        4 * PAGE,
    ]


@pytest.mark.parametrize("path", PATHS)
def test_on_record_sees_every_record_as_it_is_made(path: str) -> None:
    seen: list[LogEntry] = []
    log = launch(_kernel(path, faults=[Fault(pages=1), Fault(pages=2)]), path, seen.append).log
    assert tuple(seen) == log.entries
    if path in ("snp", "tdx"):  # one record per plan region
        assert len(seen) == len(BASELINES[path].log.entries)
    else:
        assert len(seen) > len(BASELINES[path].log.entries)


def test_tdx_issues_one_request_per_region() -> None:
    """A region larger than the staging size still goes in as one INIT_MEM_REGION request,
    as QEMU issues one per TDVF section: kernels that measure per request (all adds, then
    all extends) must see the same grouping the two-pass MRTD prediction assumes."""
    pages = 600  # more than one 2 MiB staging chunk
    memory = MemoryMap((Memslot(0, 0, 1024 * PAGE, MemslotKind.RAM_LOW),))
    plan = Plan.of([_region(0, pages, PageType.NORMAL, True, 0, 3 * PAGE)], memory)
    kernel = FakeKernel()
    requests: list[int] = []
    real_ioctl = kernel.ioctl

    def counting_ioctl(fd: int, request: int, arg: int | bytearray) -> int:
        if request == _uapi.KVM_MEMORY_ENCRYPT_OP and isinstance(arg, bytearray):
            cmd = _uapi.KvmTdxCmd.from_buffer(arg)
            if cmd.id == _uapi.TdxCmd.INIT_MEM_REGION:
                requests.append(_uapi.KvmTdxInitMemRegion.from_address(cmd.data).nr_pages)
        return real_ioctl(fd, request, arg)

    kernel.ioctl = counting_ioctl  # type: ignore[method-assign]
    with Vm.open(VmType.TDX, kernel=kernel) as vm:
        vm.tdx_init_vm(attributes=0, xfam=0x3, cpuid=())
        vm.map_memory(memory)
        vcpu = vm.create_vcpu()
        vcpu.tdx_init_vcpu(0)
        log = populate(vm, plan)
    assert requests == [pages]
    assert [(e.gpa, e.size) for e in log.entries] == [(0, pages * PAGE)]
