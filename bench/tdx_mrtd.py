"""Benchmark 3: TDX MRTD over a large measured region against the physical limit.

Ours: :class:`cvmlaunch.measure.MrtdFold` over one 256 MiB measured range (random bytes), in
both page orders. Reference: hashlib SHA-384 over a buffer as long as the MRTD's hash stream
(per 4 KiB page one 128-byte PAGE.ADD buffer and 16 x (128-byte MR.EXTEND buffer + 256 bytes
of data): 6272 bytes, 1.53x the data), fed in 1 MiB updates, on one core. Goal: at least
0.8x the reference's speed.
"""

from __future__ import annotations

import hashlib
import os

from bench.common import Context
from bench.harness import MIB, Row, gib_per_s, interleaved_times
from cvmlaunch.layout import FOUR_GIB, PAGE_SIZE
from cvmlaunch.measure import MrtdFold, PageOrder

__all__ = ["STREAM_PER_PAGE", "rows"]

GOAL = 0.8
#: Bytes of MRTD hash stream per measured 4 KiB page: PAGE.ADD + 16 x (MR.EXTEND + 256 data).
STREAM_PER_PAGE = 128 + 16 * (128 + 256)


def rows(ctx: Context) -> list[Row]:
    """The rows of benchmark 3 (one per page order)."""
    size = ctx.size(256 * MIB, 16 * MIB)
    data = os.urandom(size)
    stream = memoryview(os.urandom(size // PAGE_SIZE * STREAM_PER_PAGE))

    def raw() -> None:
        h = hashlib.sha384()
        for i in range(0, len(stream), MIB):
            h.update(stream[i : i + MIB])
        h.digest()

    def fold(order: PageOrder) -> None:
        f = MrtdFold(order)
        f.add_range(FOUR_GIB, size, data, measure=True)
        f.digest()

    fns = {"raw": raw} | {order.value: (lambda order=order: fold(order)) for order in PageOrder}
    t = interleaved_times(fns, ctx.repeat)
    ref = f"{gib_per_s(len(stream), t['raw'])} of stream (hashlib SHA-384, one core)"
    return [
        Row(
            name=f"TDX MRTD, {size // MIB} MiB measured, {order.value} order",
            ours=f"{gib_per_s(len(stream), t[order.value])} of stream",
            reference=ref,
            ratio=t["raw"] / t[order.value],
            goal=f">= {GOAL:.2f} (speed)",
            met=t["raw"] / t[order.value] >= GOAL,
        )
        for order in PageOrder
    ]
