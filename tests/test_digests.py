"""One function builds a range's log record (:func:`cvmlaunch.digests.entry_for_range`).

The KVM engine's recorder (what ``launch --log`` writes) and the prediction (what ``measure``
writes and ``log check`` expects) build the record of the same range with it, so they agree
for any range: these tests draw ranges (any page type, data length, op, per-page or not, a
whole region or a piece of one) and compare the two, and both with hashlib computed here.
The engine hashes pages with the native batch hasher where the install built it (checked by
the function it calls, not by timing).
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from collections.abc import Callable
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cvmlaunch import digests
from cvmlaunch.kvm_map import SnpFinish, Vm, VmType, _engine, populate_snp
from cvmlaunch.kvm_map._engine import _Recorder
from cvmlaunch.layout import PAGE_SIZE, Buffer, PageType, Plan, Provenance, Region, SourceKind
from cvmlaunch.log_entry import LogEntry, LogOp
from cvmlaunch.measure.log import LogHeader, Technology
from cvmlaunch.measure.plain import plain_header, plain_log
from cvmlaunch.measure.snp_chain import SNP_ALGORITHM, log_plan
from cvmlaunch.measure.tdx import measure_tdx
from cvmlaunch.memory_map import MemoryMap, Memslot, MemslotKind
from tests.conftest import load_native_pagehash
from tests.fakekvm import FakeKernel

#: Page types a populated memory range may have, and whether one may carry data.
_TYPES = {
    PageType.NORMAL: True,
    PageType.UNMEASURED: True,
    PageType.CPUID: True,
    PageType.ZERO: False,
    PageType.SECRETS: False,
}


@st.composite
def regions(draw: st.DrawFn, gpa: int | None = None) -> Region:
    """A region of 1..6 pages: any populate page type, data of any length it may carry
    (none, part of a page, whole pages), measured where the type allows."""
    pages = draw(st.integers(1, 6))
    page_type = draw(st.sampled_from(list(_TYPES)))
    length = draw(st.integers(0, pages * PAGE_SIZE)) if _TYPES[page_type] else 0
    data = random.Random(draw(st.integers(0, 1 << 32))).randbytes(length)
    measured = page_type.hashes_contents and draw(st.booleans())
    where = draw(st.integers(0, 1 << 20)) * PAGE_SIZE if gpa is None else gpa
    provenance = Provenance(SourceKind.FILE, "image", offset=draw(st.integers(0, 1 << 20)))
    return Region(where, pages * PAGE_SIZE, page_type, measured, provenance, data)


def _expected(region: Region, gpa: int, size: int, with_pages: bool) -> tuple[object, ...]:
    """Content and page hashes of ``[gpa, gpa+size)`` of ``region``, by hashlib here: the
    zero marker where the plan gives the region no bytes."""
    off = gpa - region.gpa
    whole = bytes(region.data) + bytes(region.size - len(region.data))  # data, then zeros
    contents = whole[off : off + size]
    content = hashlib.sha384(contents).digest() if region.data else None
    pages = tuple(
        hashlib.sha384(contents[i : i + PAGE_SIZE]).digest() for i in range(0, size, PAGE_SIZE)
    )
    return content, pages if with_pages else ()


def _recorded(
    region: Region, op: LogOp, with_pages: bool, gpa: int | None = None, size: int | None = None
) -> LogEntry:
    rec = _Recorder()
    rec.add(
        op,
        region,
        region.gpa if gpa is None else gpa,
        region.size if size is None else size,
        per_page=with_pages,
    )
    (entry,) = rec.entries
    return entry


def test_the_engine_builds_records_with_the_predictions_function() -> None:
    assert vars(_engine)["entry_for_range"] is digests.entry_for_range


@settings(max_examples=150, deadline=None)
@given(regions(), st.sampled_from(list(LogOp)), st.booleans())
def test_engine_record_equals_the_predictions_for_any_range(
    region: Region, op: LogOp, with_pages: bool
) -> None:
    engine = _recorded(region, op, with_pages)
    predicted = digests.entry_for_range(
        seq=0,
        op=op,
        gpa=region.gpa,
        size=region.size,
        page_type=region.page_type,
        measured=region.measured,
        provenance=region.provenance,
        data=region.data,
        with_pages=with_pages,
        digest_after=None,
    )
    assert engine == predicted
    assert (engine.content_sha384, engine.page_sha384) == _expected(
        region, region.gpa, region.size, with_pages
    )
    # a hash the engine computed beforehand (the plain copy's, on a second thread) gives
    # the same record
    rec = _Recorder()
    known = digests.range_sha384(region.data, region.size)
    rec.add(op, region, region.gpa, region.size, per_page=with_pages, content_sha384=known)
    assert rec.entries == [predicted]


@settings(max_examples=100, deadline=None)
@given(regions(), st.data())
def test_engine_record_of_a_piece_of_a_region(region: Region, data: st.DataObject) -> None:
    """A piece of a region (a pre-fault call the kernel split) hashes the piece's bytes,
    zero fill included; only a region the plan gives no bytes carries the marker."""
    npages = region.size // PAGE_SIZE
    first = data.draw(st.integers(0, npages - 1))
    count = data.draw(st.integers(1, npages - first))
    gpa, size = region.gpa + first * PAGE_SIZE, count * PAGE_SIZE
    entry = _recorded(region, LogOp.PRE_FAULT, False, gpa, size)
    assert (entry.gpa, entry.size) == (gpa, size)
    assert (entry.content_sha384, entry.page_sha384) == _expected(region, gpa, size, False)


@settings(max_examples=60, deadline=None)
@given(st.lists(regions(gpa=0), min_size=1, max_size=4))
def test_engine_records_equal_the_predicted_logs(drawn: list[Region]) -> None:
    """Whole plans: the records ``measure snp``, ``measure tdx`` and the plain prediction
    write equal the engine's record of each region, but for the running digest (which the
    engine leaves to the replay)."""
    placed, gpa = [], 0
    for region in drawn:
        placed.append(dataclasses.replace(region, gpa=gpa))
        gpa += region.size
    plan = Plan.of(placed)

    def engine(
        op_of: Callable[[Region], LogOp], per_page: Callable[[Region], bool]
    ) -> list[LogEntry]:
        rec = _Recorder()
        for r in placed:
            rec.add(op_of(r), r, r.gpa, r.size, per_page=per_page(r))
        return rec.entries

    def bare(entries: tuple[LogEntry, ...]) -> list[LogEntry]:
        return [dataclasses.replace(e, digest_after=None) for e in entries]

    header = LogHeader(Technology.SEV_SNP, SNP_ALGORITHM, {}, (), "t", bytes(48))
    assert bare(log_plan(plan, header).entries) == engine(
        lambda r: LogOp.SNP_LAUNCH_UPDATE, lambda r: r.page_type.hashes_contents
    )
    assert bare(plain_log(plan, plain_header({}, tool_version="t")).entries) == engine(
        lambda r: LogOp.PLAIN_COPY, lambda r: False
    )
    if all(r.page_type is PageType.NORMAL for r in placed):
        assert bare(measure_tdx(plan).log) == engine(
            lambda r: LogOp.TDX_PAGE_ADD_EXTEND if r.measured else LogOp.TDX_PAGE_ADD,
            lambda r: False,
        )


def test_the_snp_engine_hashes_pages_with_the_native_hasher(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An SNP populate (fake kernel) takes its page hashes from the native batch hasher:
    the one function object the install built, called once for the region's whole pages."""
    native = load_native_pagehash()
    assert isinstance(native, ModuleType)
    real = digests._sha384_pages
    assert real is not None
    assert real is native.sha384_pages
    calls: list[tuple[int, int]] = []

    def spy(buffer: Buffer, first: int, count: int) -> bytes:
        calls.append((first, count))
        digest: bytes = real(buffer, first, count)
        return digest

    monkeypatch.setattr(digests, "_sha384_pages", spy)
    data = random.Random(7).randbytes(3 * PAGE_SIZE)
    region = Region(0x4000, 3 * PAGE_SIZE, PageType.NORMAL, True,
                    Provenance(SourceKind.FILE, "image", offset=0), data)  # fmt: skip
    memory = MemoryMap((Memslot(0, 0, 64 * PAGE_SIZE, MemslotKind.RAM_LOW),))
    with Vm.open(VmType.SNP, kernel=FakeKernel()) as vm:
        vm.sev_init2()
        vm.map_memory(memory)
        vm.snp_launch_start(1 << 17 | 1 << 16)
        log = populate_snp(vm, Plan.of([region], memory), SnpFinish())
    assert calls == [(0, 3)]
    (entry,) = log.entries
    assert entry.page_sha384 == tuple(
        hashlib.sha384(data[i : i + PAGE_SIZE]).digest() for i in range(0, len(data), PAGE_SIZE)
    )
