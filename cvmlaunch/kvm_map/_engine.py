"""What every populate engine shares: the resume loop (:func:`_drive`), the log recorder,
staging buffers, and private memory for confidential VMs.

Part of :mod:`cvmlaunch.kvm_map` (see its rules). The recorder builds every record with
:func:`cvmlaunch.digests.entry_for_range`, the function that builds the prediction's records
(and hashes with the native batch page hasher where the install has it): it hashes nothing
itself.
"""

from __future__ import annotations

import contextlib
import errno as errno_codes
import mmap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from cvmlaunch import _uapi
from cvmlaunch._uapi import Cap, MemoryAttribute
from cvmlaunch.digests import entry_for_range
from cvmlaunch.errors import KvmError
from cvmlaunch.kvm_map._kernel import _struct_buf
from cvmlaunch.kvm_map.vcpu import Vcpu
from cvmlaunch.kvm_map.vm import GuestMemory, Vm
from cvmlaunch.layout import PAGE_SIZE, Region
from cvmlaunch.log_entry import LogEntry, LogOp, zero_by_construction
from cvmlaunch.memory_map import MemoryMap

#: Consecutive populate calls without progress before :func:`_drive` gives up.
MAX_STALLS = 8
#: Pages staged (copied to a page-aligned buffer) per TDX/SNP populate request: 2 MiB.
STAGING_PAGES = 512


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
    """Builds the log: one :class:`LogEntry` per record the engine adds (per plan region)."""

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
        *,
        per_page: bool,
        content_sha384: bytes | None = None,
    ) -> None:
        """Append the record of ``[gpa, gpa+size)`` of ``region`` (its data, then zero fill),
        built by :func:`~cvmlaunch.digests.entry_for_range` as the prediction builds it, with
        the SHA-384 of every page when ``per_page``. ``content_sha384``, when given, is the
        already known SHA-384 of the range's bytes (not computed again). A region the plan
        gives no bytes gets the zero marker (:func:`zero_by_construction`, as the
        prediction's records do), also for a piece of it; a piece of a region with bytes
        gets the hash of its bytes even where they are all zero fill."""
        off = gpa - region.gpa
        entry = entry_for_range(
            seq=len(self.entries),
            op=op,
            gpa=gpa,
            size=size,
            page_type=region.page_type,
            measured=region.measured,
            provenance=region.provenance,
            data=memoryview(region.data)[off : off + size],
            with_pages=per_page,
            zero=zero_by_construction(memoryview(region.data).nbytes),
            known_sha384=content_sha384,
        )
        self.entries.append(entry)
        if self.on_record is not None:
            self.on_record(entry)

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


def _copy_region(mem: GuestMemory, region: Region) -> None:
    """Copy ``region`` (data, then zero fill) through ``mem``'s mapping: one slice
    assignment for the data, one per :data:`STAGING_PAGES` of zero fill."""
    gpa = region.gpa
    for piece in _region_bytes(region, region.gpa, region.size):
        mem.write(gpa, piece)
        gpa += len(piece)


#: Regions at least this large are hashed for the log on a second thread during the copy.
HASH_OFFLOAD_MIN = 1 << 20


def _map_private(vm: Vm, memory: MemoryMap) -> None:
    """Every memslot, each set PRIVATE whole as soon as it exists (QEMU's default for
    confidential guests), so that nothing is populated into shared memory."""
    for s in memory.memslots:
        vm.add_memslot(s.slot, s.gpa, s.size)
        vm.set_memory_attributes(s.gpa, s.size, MemoryAttribute.PRIVATE)


def _hypercall_exits(vm: Vm) -> None:
    """Page-state changes (``KVM_HC_MAP_GPA_RANGE``) exit to userspace, where offered."""
    bit = 1 << _uapi.KVM_HC_MAP_GPA_RANGE
    if vm.check_extension(Cap.EXIT_HYPERCALL) & bit:
        vm.enable_cap(Cap.EXIT_HYPERCALL, bit)
