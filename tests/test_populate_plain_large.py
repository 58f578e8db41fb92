"""The plain populate engine on real KVM with regions large enough to be hashed for the log on
the second thread (``HASH_OFFLOAD_MIN``), mixed with small ones hashed inline."""

from __future__ import annotations

import hashlib
import random

import pytest

from cvmlaunch.kvm_map import HASH_OFFLOAD_MIN, STAGING_PAGES, Vm, populate_plain
from cvmlaunch.layout import (
    PAGE_SIZE,
    PageType,
    Plan,
    Provenance,
    Region,
    SourceKind,
)
from cvmlaunch.log_entry import LogOp
from cvmlaunch.memory_map import MemoryMap

pytestmark = pytest.mark.kvm


def test_large_and_small_regions_are_copied_and_logged_with_their_contents_hash(
    memory_backend: str,
) -> None:
    rng = random.Random(7)
    # data of 2.5 MiB + a tail, then more than one staging buffer of zero fill
    big_data = rng.randbytes(5 * (1 << 19) + 100)
    big_size = len(big_data) + 2 * STAGING_PAGES * PAGE_SIZE + 3 * PAGE_SIZE
    big_size -= big_size % PAGE_SIZE
    small_data = rng.randbytes(3 * PAGE_SIZE + 5)
    exact = memoryview(rng.randbytes(HASH_OFFLOAD_MIN))
    regions = [
        Region(
            0x1000,
            4 * PAGE_SIZE,
            PageType.NORMAL,
            True,
            Provenance(SourceKind.FILE, "s"),
            small_data,
        ),
        Region(
            0x10_0000, big_size, PageType.NORMAL, True, Provenance(SourceKind.FILE, "b"), big_data
        ),
        Region(0x100_0000, HASH_OFFLOAD_MIN, PageType.NORMAL, False, Provenance(SourceKind.ZERO)),
        Region(
            0x200_0000, len(exact), PageType.NORMAL, True, Provenance(SourceKind.FILE, "e"), exact
        ),
    ]
    assert big_size >= HASH_OFFLOAD_MIN
    plan = Plan.of(regions, MemoryMap.for_size(64 << 20))
    assert plan.memory is not None
    with Vm.open(memory_backend=memory_backend) as vm:
        vm.map_memory(plan.memory)
        vm.write(0x100_0000, b"\xff" * PAGE_SIZE)  # stale bytes that the zero fill must clear
        log = populate_plain(vm, plan)
        copies = [e for e in log.entries if e.op is LogOp.PLAIN_COPY]
        assert [(e.gpa, e.size) for e in copies] == [(r.gpa, r.size) for r in regions]
        for entry, region in zip(copies, regions, strict=True):
            # a region with no bytes carries the zero marker instead (its copy still clears)
            want = hashlib.sha384(region.contents()).digest() if len(region.data) else None
            assert entry.content_sha384 == want
            assert vm.read(region.gpa, region.size) == region.contents()
        # pre-fault records (where the host offers it) carry the same hashes
        for entry in log.entries:
            if entry.op is LogOp.PRE_FAULT:
                whole = next(r for r in regions if r.gpa <= entry.gpa < r.end)
                part = whole.contents()[entry.gpa - whole.gpa : entry.gpa - whole.gpa + entry.size]
                want = hashlib.sha384(part).digest() if len(whole.data) else None
                assert entry.content_sha384 == want
        # the engine's log is the prediction's, byte for byte, zero marker included
        from cvmlaunch.measure.log import complete_log, dumps_log
        from cvmlaunch.measure.plain import plain_header, plain_log

        head = plain_header({}, tool_version="t")
        assert copies[2].content_sha384 is None
        launched = complete_log(head, [e for e in log.entries if e.op is LogOp.PLAIN_COPY])
        assert dumps_log(launched) == dumps_log(plain_log(plan, head))
