"""Benchmark 5: peak RSS when measuring 1 GiB of inputs, and that it does not grow with them.

Each case runs as a child process at two input sizes (half and all of 1 GiB); ``wait4`` gives
its peak RSS. Goal: under 64 MiB at 1 GiB, and no growth with the input (the difference
between the two sizes under 4 MiB, allocator noise).

* ``cvmlaunch measure snp`` (OVMF.amdsev.fd, 4 vCPUs) with a kernel and an initrd of 1/4 and
  3/4 of the total (256 MiB + 768 MiB at 1 GiB): the files are streamed through SHA-256.
* MRTD of one file-backed measured region (:mod:`bench.mrtd_child`), mapped a window at a
  time; and, for comparison without a goal, mapped whole (its RSS then counts every page of
  the file it touched: page cache, not allocations).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.common import Context, child_env, find_firmware
from bench.harness import GIB, MIB, Row, median_process, mib
from bench.inputs import write_input
from bench.venvs import find_ours

__all__ = ["rows"]

RSS_LIMIT = 64 * MIB
_MRTD_CHILD = Path(__file__).with_name("mrtd_child.py")
GROWTH_LIMIT = 4 * MIB


def _row(name: str, small: int, large: int, measure: Callable[[int], int], goal: bool) -> Row:
    rss_small, rss_large = measure(small), measure(large)
    growth = rss_large - rss_small
    return Row(
        name=f"{name}: peak RSS, {large // MIB} MiB of input vs {small // MIB} MiB",
        ours=mib(rss_large),
        reference=f"{mib(rss_small)} (growth {mib(growth)})",
        ratio=rss_large / rss_small,
        goal="< 64 MiB, growth < 4 MiB" if goal else "-",
        met=(rss_large < RSS_LIMIT and growth < GROWTH_LIMIT) if goal else None,
    )


def rows(ctx: Context) -> list[Row]:
    """The rows of benchmark 5."""
    total = ctx.size(GIB, 32 * MIB)
    sizes = (total // 2, total)
    repeat = max(1, min(ctx.repeat, 3))
    result: list[Row] = []
    ours = find_ours(install=not ctx.quick)
    env = child_env(ours.env)

    def peak(argv: Sequence[str]) -> int:
        return median_process(argv, repeat, env).max_rss_bytes

    firmware = find_firmware("OVMF.amdsev.fd")
    if firmware is None:
        ctx.notes.append("memory: measure snp skipped: OVMF.amdsev.fd not found")
    else:

        def snp(size: int) -> int:
            kernel = write_input(ctx.scratch / "mem-kernel.bin", size // 4, seed=3)
            initrd = write_input(ctx.scratch / "mem-initrd.bin", size - size // 4, seed=4)
            try:
                return peak(
                    [
                        *ours.argv,
                        "measure",
                        "snp",
                        "--ovmf",
                        str(firmware),
                        "--vcpus",
                        "4",
                        "--vcpu-type",
                        "EPYC-v4",
                        "--kernel",
                        str(kernel),
                        "--initrd",
                        str(initrd),
                        "--append",
                        "console=ttyS0",
                    ]
                )
            finally:
                kernel.unlink()
                initrd.unlink()

        result.append(_row("measure snp, kernel + initrd", *sizes, snp, goal=True))

    regions = {size: ctx.scratch / f"mem-region-{size}.bin" for size in sizes}
    for size, path in regions.items():
        write_input(path, size, seed=5)

    def mrtd(size: int, *extra: str) -> int:
        return peak([sys.executable, str(_MRTD_CHILD), str(regions[size]), *extra])

    try:
        result.append(_row("MRTD of a file-backed region, mmap windows", *sizes, mrtd, goal=True))
        result.append(
            _row(
                "MRTD of a file-backed region, one whole mmap",
                *sizes,
                lambda size: mrtd(size, "--whole"),
                goal=False,
            )
        )
    finally:
        for path in regions.values():
            path.unlink()
    return result
