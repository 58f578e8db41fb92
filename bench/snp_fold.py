"""Benchmark 2: the SNP launch digest of a large measured payload against one-core SHA-384.

Ours: :func:`cvmlaunch.measure.snp_chain.fold_plan` of a plan with one 256 MiB region of
NORMAL pages (random bytes): one SHA-384 per 4 KiB page (independent: hashed on worker
threads in batches by the native page hasher, which releases the GIL once per batch, or page by
page with hashlib where it was not built) and one chained SHA-384 of the 112-byte PAGE_INFO per
page (sequential). Reference, the physical limit of one core: hashlib SHA-384 over the same bytes
in one call. Also timed, for context: the same fold with one worker (serial), and the raw hash
split into one piece per core on as many threads (what the machine's cores offer at that
moment: other load on a shared machine shows here). Goal: the parallel fold at least 1.5x as
fast as the one-core limit on 2 cores.
"""

from __future__ import annotations

import hashlib
import os
import threading

from bench.common import Context
from bench.harness import MIB, Row, gib_per_s, interleaved_times
from cvmlaunch.layout import PageType, Plan, Provenance, Region, SourceKind
from cvmlaunch.measure.snp_chain import fold_plan

__all__ = ["rows"]

GOAL = 1.5


def rows(ctx: Context) -> list[Row]:
    """The rows of benchmark 2."""
    size = ctx.size(256 * MIB, 16 * MIB)
    data = os.urandom(size)
    region = Region(
        1 << 20, size, PageType.NORMAL, True, Provenance(SourceKind.GENERATED, "bench"), data
    )
    plan = Plan.of([region])
    workers = len(os.sched_getaffinity(0))
    digests: dict[str, bytes] = {}

    def parallel() -> None:
        digests["parallel"] = fold_plan(plan)

    def serial() -> None:
        digests["serial"] = fold_plan(plan, workers=1)

    def raw() -> None:
        hashlib.sha384(data).digest()

    view = memoryview(data)
    parts = [view[i * size // workers : (i + 1) * size // workers] for i in range(workers)]

    def raw_threads() -> None:
        threads = [threading.Thread(target=hashlib.sha384, args=(part,)) for part in parts]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    t = interleaved_times(
        {"parallel": parallel, "serial": serial, "raw": raw, "raw_threads": raw_threads},
        ctx.repeat,
    )
    same = digests["parallel"] == digests["serial"]
    label = f"{size // MIB} MiB of NORMAL pages"
    ref = f"{gib_per_s(size, t['raw'])} (hashlib SHA-384, one core, one call)"
    return [
        Row(
            name=f"SNP digest, {label}, {workers} cores",
            ours=gib_per_s(size, t["parallel"]),
            reference=ref,
            ratio=t["raw"] / t["parallel"],
            goal=f">= {GOAL:.2f} (speed)",
            met=t["raw"] / t["parallel"] >= GOAL and same,
            note="" if same else "PARALLEL AND SERIAL DIGESTS DIFFER",
        ),
        Row(
            name=f"SNP digest, {label}, serial fold (1 worker)",
            ours=gib_per_s(size, t["serial"]),
            reference=ref,
            ratio=t["raw"] / t["serial"],
            goal="-",
            met=None,
        ),
        Row(
            name=f"hashlib SHA-384 of the same bytes in {workers} pieces on {workers} threads",
            ours=gib_per_s(size, t["raw_threads"]),
            reference=ref,
            ratio=t["raw"] / t["raw_threads"],
            goal="-",
            met=None,
            note="the parallel capacity the machine offered during the run; ideal = cores",
        ),
    ]
