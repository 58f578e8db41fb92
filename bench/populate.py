"""Benchmark 4: the plain populate engine on real KVM against a plain buffer copy.

The goal (issue 7, item 4) is for the populate: the engine's copy of a plan region into the
memslot (``_copy_region``, what :func:`cvmlaunch.kvm_map.populate_plain` does for each
region), on the memory backend this host offers (``auto``: guest_memfd where the host offers
it with the mmap flag, else anonymous memory; the rows name it). Also timed: the whole
:func:`~cvmlaunch.kvm_map.populate_plain` of a plan with one 256 MiB region (random bytes),
which adds the launch log's SHA-384 of the range (hashed on a second thread while the copy
runs); one SHA-384 stream cannot be split, so its floor is the slower of the copy and
one-core SHA-384, which the last row compares against.

Reference: one memoryview slice assignment of the same bytes into a fresh anonymous mmap.
Both write into memory that has never been touched, so both pay the same page faults. VM
creation and memslot set-up are not timed.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import time

from bench.common import Context
from bench.harness import MIB, Row, gib_per_s, interleaved_self_timed
from cvmlaunch.kvm_map import Vm, populate_plain
from cvmlaunch.kvm_map._engine import _copy_region
from cvmlaunch.layout import PageType, Plan, Provenance, Region, SourceKind
from cvmlaunch.memory_map import MemoryMap

__all__ = ["rows"]

GOAL = 0.7
_GPA = 1 << 20


def rows(ctx: Context) -> list[Row]:
    """The rows of benchmark 4 (none, with a note, without a usable /dev/kvm)."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        ctx.notes.append("populate: skipped: /dev/kvm is not usable here")
        return []
    size = ctx.size(256 * MIB, 16 * MIB)
    data = os.urandom(size)
    memory = MemoryMap.for_size(size + 2 * _GPA)
    region = Region(
        _GPA, size, PageType.NORMAL, True, Provenance(SourceKind.GENERATED, "bench"), data
    )
    plan = Plan.of([region], memory)
    notes: list[str] = []
    with Vm.open() as probe:
        backend = probe.memory_backend
    if backend.fallback:
        ctx.notes.append(f"populate: {backend.reason}")

    def engine() -> float:
        with Vm.open() as vm:
            vm.map_memory(memory)
            t0 = time.perf_counter()
            log = populate_plain(vm, plan)
            seconds = time.perf_counter() - t0
        notes[:] = list(log.notes)
        return seconds

    def copy_path() -> float:
        with Vm.open() as vm:
            vm.map_memory(memory)
            mem = vm.memory_at(region.gpa, region.size)
            t0 = time.perf_counter()
            _copy_region(mem, region)
            return time.perf_counter() - t0

    def plain_copy() -> float:
        with mmap.mmap(-1, size + 2 * _GPA) as target:
            t0 = time.perf_counter()
            target[_GPA : _GPA + size] = data
            return time.perf_counter() - t0

    def sha384() -> float:
        t0 = time.perf_counter()
        hashlib.sha384(data).digest()
        return time.perf_counter() - t0

    t = interleaved_self_timed(
        {"engine": engine, "copy_path": copy_path, "copy": plain_copy, "sha": sha384},
        ctx.repeat,
    )
    ctx.notes += [f"populate: {n}" for n in notes]
    label = f"{size // MIB} MiB"
    memory_name = f"{backend.backend.value} memory"
    ref = f"{gib_per_s(size, t['copy'])} (plain copy into fresh anonymous mmap)"
    limit = max(t["copy"], t["sha"])
    return [
        Row(
            name=f"populate on KVM (plain path), {label}: the engine's copy into {memory_name}",
            ours=gib_per_s(size, t["copy_path"]),
            reference=ref,
            ratio=t["copy"] / t["copy_path"],
            goal=f">= {GOAL:.2f} (speed)",
            met=t["copy"] / t["copy_path"] >= GOAL,
        ),
        Row(
            name=f"populate_plain on KVM, {label}, {memory_name}, with the launch log's "
            "content SHA-384",
            ours=gib_per_s(size, t["engine"]),
            reference=ref,
            ratio=t["copy"] / t["engine"],
            goal="-",
            met=None,
        ),
        Row(
            name=f"populate_plain with the launch log, {label}, {memory_name}, vs its floor",
            ours=gib_per_s(size, t["engine"]),
            reference=(
                f"{gib_per_s(size, limit)} (slower of plain copy and one-core SHA-384 "
                f"{gib_per_s(size, t['sha'])})"
            ),
            ratio=limit / t["engine"],
            goal="-",
            met=None,
        ),
    ]
