"""Benchmark: a 256-digest SEV-SNP reference set in one process, against 256 processes.

A verifier accepting 4 CPU models x 1-64 vCPUs needs 256 launch digests. With sev-snp-measure
that is 256 processes; ``cvmlaunch reference-values snp`` folds the shared prefix (firmware
pages, metadata sections) once and only the VMSAs per configuration. Measured in the same run:
the set (one process), ONE ``cvmlaunch measure snp`` process (the goal's yardstick: the set in
at most 2x its time), 256 ``measure snp`` processes and 256 sev-snp-measure processes (one per
configuration, run back to back; the time is their sum; those two rows give the speed-up, the
sweep's time over the set's). Every digest of the set must equal both sweeps' outputs, else
the rows say so and fail.
"""

from __future__ import annotations

import json
import statistics

from bench.common import Context
from bench.harness import ProcessRun, Row, run_process
from bench.venvs import find_peer_run

__all__ = ["rows"]

FIRMWARE = "OVMF.amdsev.fd"
TYPES = ("EPYC-Milan", "EPYC-Genoa", "EPYC-Turin", "EPYC-v4")
GOAL = 2.0
#: Sweeps of 256 processes take ~15 s each: at most this many repetitions of them.
_SWEEP_REPEAT = 3


def _sweep(argvs: list[list[str]], env: dict[str, str]) -> tuple[float, float, list[str]]:
    """Run every argv once, back to back: total wall and CPU seconds, and each one's output."""
    runs = [run_process(argv, env) for argv in argvs]
    outputs = [r.stdout.decode().strip() for r in runs]
    return sum(r.seconds for r in runs), sum(r.cpu_seconds for r in runs), outputs


def rows(ctx: Context) -> list[Row]:
    """The rows of this benchmark (empty, with a note, when the peer or firmware is missing)."""
    run = find_peer_run(ctx, "snp-set", FIRMWARE)
    if run is None:
        return []
    firmware, ours, peer, env = run.firmware, run.ours, run.peer, run.env
    top = 4 if ctx.quick else 64
    types = TYPES[:1] if ctx.quick else TYPES
    n = top * len(types)
    set_argv = [*ours.argv, "reference-values", "snp", "--ovmf", str(firmware)]
    set_argv += ["--vcpus", f"1-{top}", "--vcpu-type", ",".join(types)]
    one = [*ours.argv, "measure", "snp", "--ovmf", str(firmware), "--vcpus", "4"]
    one += ["--vcpu-type", "EPYC-v4"]
    configs = [(t, v) for t in types for v in range(1, top + 1)]
    base = ["--mode", "snp", "--ovmf", str(firmware), "--output-format", "hex"]
    ours_sweep = [
        [*ours.argv, "measure", "snp", *base, "--vcpus", str(v), "--vcpu-type", t]
        for t, v in configs
    ]
    peer_sweep = [[*peer.argv, *base, "--vcpus", str(v), "--vcpu-type", t] for t, v in configs]

    run_process(set_argv, env)  # warm-up (page cache, byte code)
    run_process(one, env)
    set_runs: list[ProcessRun] = []
    one_runs: list[ProcessRun] = []
    sweeps: dict[str, list[tuple[float, float]]] = {"ours": [], "peer": []}
    outputs: dict[str, list[str]] = {}
    for rnd in range(max(1, ctx.repeat)):
        pair = [("set", set_argv), ("one", one)]
        for name, argv in pair[rnd % 2 :] + pair[: rnd % 2]:
            (set_runs if name == "set" else one_runs).append(run_process(argv, env))
        if rnd < (1 if ctx.quick else _SWEEP_REPEAT):
            for name, argvs in (("ours", ours_sweep), ("peer", peer_sweep))[:: 1 - 2 * (rnd % 2)]:
                w, c, outputs[name] = _sweep(argvs, env)
                sweeps[name].append((w, c))
    t_set = statistics.median(r.seconds for r in set_runs)
    c_set = statistics.median(r.cpu_seconds for r in set_runs)
    t_one = statistics.median(r.seconds for r in one_runs)
    c_one = statistics.median(r.cpu_seconds for r in one_runs)
    wall = {k: statistics.median(w for w, _ in v) for k, v in sweeps.items()}
    cpu = {k: statistics.median(c for _, c in v) for k, v in sweeps.items()}
    doc = json.loads(set_runs[-1].stdout)
    got = [c["measurement"] for c in doc["configurations"]]
    same = got == outputs["ours"] == outputs["peer"] and len(got) == n
    note = "" if same else "DIGESTS DIFFER"
    label = f"{n} SNP digests ({len(types)} vCPU types x 1-{top} vCPUs)"
    ours_text = f"{t_set:.3f} s (CPU {c_set:.3f} s)"
    ratio = t_set / t_one
    return [
        Row(
            name=f"reference-values snp, {label}, one process vs ONE measure snp process",
            ours=ours_text,
            reference=f"{t_one:.3f} s (CPU {c_one:.3f} s), one digest",
            ratio=ratio,
            goal=f"<= {GOAL:.2f} (time)",
            met=ratio <= GOAL and same,
            note=note,
        ),
        Row(
            name=f"reference-values snp, {label}, vs {n} sev-snp-measure processes (speed-up)",
            ours=ours_text,
            reference=f"{wall['peer']:.2f} s (CPU {cpu['peer']:.2f} s)",
            ratio=wall["peer"] / t_set,
            goal="-",
            met=None,
            note=note,
        ),
        Row(
            name=f"reference-values snp, {label}, vs {n} cvmlaunch measure snp processes "
            "(speed-up)",
            ours=ours_text,
            reference=f"{wall['ours']:.2f} s (CPU {cpu['ours']:.2f} s)",
            ratio=wall["ours"] / t_set,
            goal="-",
            met=None,
            note=note,
        ),
    ]
