"""Timing and memory helpers for the benchmarks.

Every result is a ratio of two things measured side by side in the same run (several
repetitions, medians), so the numbers mean the same on a faster or slower machine.
"""

from __future__ import annotations

import os
import platform
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

MIB = 1 << 20
GIB = 1 << 30


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
    """Wall time, peak RSS, output and CPU time (user + system) of one child process."""

    seconds: float
    max_rss_bytes: int
    stdout: bytes
    cpu_seconds: float = 0.0


#: The launcher (run as ``python -S -c``): spawns the measured command, waits for it and
#: writes "<seconds> <ru_maxrss KiB> <wait status> <CPU seconds>" to the descriptor in argv[1].
_LAUNCHER = """
import os, sys, time
report, argv = int(sys.argv[1]), sys.argv[2:]
t0 = time.perf_counter()
pid = os.posix_spawnp(argv[0], argv, os.environ)
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - t0
cpu = usage.ru_utime + usage.ru_stime
os.write(report, f"{seconds} {usage.ru_maxrss} {status} {cpu}".encode())
"""


def run_process(argv: Sequence[str], env: dict[str, str] | None = None) -> ProcessRun:
    """Run ``argv`` to completion: its wall time, its own peak RSS, its stdout.

    Linux carries a process's peak RSS across ``exec`` from the memory it was forked with, so
    a command spawned straight from this (large) process would report at least this
    process's own peak. It is therefore spawned by a small launcher (a fresh ``python -S``,
    about 10 MiB, below any measured Python command), which times it and reads its peak RSS
    from ``wait4``.

    Raises:
        RuntimeError: the process exited non-zero.
    """
    read_end, write_end = os.pipe()
    try:
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(
                [sys.executable, "-S", "-c", _LAUNCHER, str(write_end), *argv],
                stdout=out,
                stderr=err,
                env=env,
                pass_fds=(write_end,),
            )
            os.close(write_end)
            write_end = -1
            report = b""
            while chunk := os.read(read_end, 4096):
                report += chunk
            if proc.wait() or not report:
                raise RuntimeError(f"the launcher for {argv[0]} failed ({proc.returncode})")
            seconds, maxrss_kib, status, cpu = report.split()
            code = os.waitstatus_to_exitcode(int(status))
            out.seek(0)
            err.seek(0)
            if code:
                tail = err.read().decode(errors="replace")[-500:]
                raise RuntimeError(f"{argv[0]} failed ({code}): {tail}")
            return ProcessRun(float(seconds), int(maxrss_kib) * 1024, out.read(), float(cpu))
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)


def interleaved_times(fns: Mapping[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Median wall time of each function, measured side by side.

    Every round runs each function once (after one warm-up round), rotating which goes
    first, so drift on a shared machine (other load, frequency, page cache) hits all of them
    alike.
    """
    names = list(fns)
    for name in names:
        fns[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for rnd in range(max(1, repeat)):
        order = names[rnd % len(names) :] + names[: rnd % len(names)]
        for name in order:
            t0 = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def interleaved_self_timed(fns: Mapping[str, Callable[[], float]], repeat: int) -> dict[str, float]:
    """Like :func:`interleaved_times` for functions that time their own critical part
    (excluding set-up such as creating a VM) and return the seconds it took."""
    names = list(fns)
    for name in names:
        fns[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for rnd in range(max(1, repeat)):
        order = names[rnd % len(names) :] + names[: rnd % len(names)]
        for name in order:
            times[name].append(fns[name]())
    return {name: statistics.median(ts) for name, ts in times.items()}


def interleaved_processes(
    argvs: Mapping[str, Sequence[str]],
    repeat: int,
    env: dict[str, str] | None = None,
    on_run: Callable[[str, ProcessRun], object] | None = None,
) -> dict[str, ProcessRun]:
    """Like :func:`interleaved_times` for child processes: median wall time, max peak RSS,
    and the last run's stdout of each command. ``on_run`` sees every timed run (not the
    warm-up), e.g. to read what a child measured itself."""
    names = list(argvs)
    for name in names:
        run_process(argvs[name], env)
    runs: dict[str, list[ProcessRun]] = {name: [] for name in names}
    for rnd in range(max(1, repeat)):
        order = names[rnd % len(names) :] + names[: rnd % len(names)]
        for name in order:
            run = run_process(argvs[name], env)
            runs[name].append(run)
            if on_run is not None:
                on_run(name, run)
    return {
        name: ProcessRun(
            statistics.median(r.seconds for r in rs),
            max(r.max_rss_bytes for r in rs),
            rs[-1].stdout,
            statistics.median(r.cpu_seconds for r in rs),
        )
        for name, rs in runs.items()
    }


def median_process(
    argv: Sequence[str], repeat: int, env: dict[str, str] | None = None
) -> ProcessRun:
    """Median wall time and max peak RSS over ``repeat`` runs after one warm-up run."""
    run_process(argv, env)
    runs = [run_process(argv, env) for _ in range(repeat)]
    return ProcessRun(
        statistics.median(r.seconds for r in runs),
        max(r.max_rss_bytes for r in runs),
        runs[-1].stdout,
        statistics.median(r.cpu_seconds for r in runs),
    )


def mib(n: int | float) -> str:
    """``n`` bytes as MiB with one decimal."""
    return f"{n / MIB:.1f} MiB"


def gib_per_s(size: int, seconds: float) -> str:
    """A rate in GiB/s."""
    return f"{size / seconds / GIB:.2f} GiB/s"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_description() -> str:
    """CPU model, cores, kernel, Python, OpenSSL and the load average, as Markdown lines."""
    cores = len(os.sched_getaffinity(0))
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return "\n".join(
        [
            f"- CPU: {_cpu_model()}, {cores} cores usable (os.cpu_count() = {os.cpu_count()})",
            f"- Kernel: {platform.system()} {platform.release()}",
            f"- Python: {sys.version.split()[0]} ({platform.python_implementation()})",
            f"- OpenSSL (hashlib): {ssl.OPENSSL_VERSION}",
            f"- Load average when the run started: {load}",
        ]
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
