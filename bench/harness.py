"""Timing and memory helpers for the benchmarks.

Every result is a ratio of two things measured side by side in the same run (several
repetitions, medians), so the numbers mean the same on a faster or slower machine.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    """One line of the results table."""

    name: str
    ours: str
    reference: str
    ratio: float | None
    goal: str
    met: bool | None
    note: str = ""


def median_time(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``fn()`` over ``repeat`` runs (after one warm-up run)."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@dataclass(frozen=True)
class ProcessRun:
    """Wall time and peak RSS of one child process."""

    seconds: float
    max_rss_bytes: int
    stdout: bytes


def run_process(argv: Sequence[str], env: dict[str, str] | None = None) -> ProcessRun:
    """Run ``argv`` to completion; its own peak RSS comes from ``wait4`` (not a running max).

    Raises:
        RuntimeError: the process exited non-zero.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(list(argv), stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode:
            tail = err.read().decode(errors="replace")[-500:]
            raise RuntimeError(f"{argv[0]} failed ({proc.returncode}): {tail}")
        return ProcessRun(seconds, usage.ru_maxrss * 1024, out.read())


def median_process(argv: Sequence[str], repeat: int) -> ProcessRun:
    """Median wall time and max peak RSS over ``repeat`` runs after one warm-up run."""
    run_process(argv)
    runs = [run_process(argv) for _ in range(repeat)]
    return ProcessRun(
        statistics.median(r.seconds for r in runs),
        max(r.max_rss_bytes for r in runs),
        runs[-1].stdout,
    )


def format_table(rows: Sequence[Row]) -> str:
    """A Markdown table of the rows."""
    lines = [
        "| benchmark | cvmlaunch | reference | ratio | goal | met |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = "n/a" if r.ratio is None else f"{r.ratio:.2f}"
        met = "n/a" if r.met is None else ("yes" if r.met else "**no**")
        note = f" ({r.note})" if r.note else ""
        lines.append(f"| {r.name}{note} | {r.ours} | {r.reference} | {ratio} | {r.goal} | {met} |")
    return "\n".join(lines)
