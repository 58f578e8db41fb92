"""Benchmark 1: ``cvmlaunch measure snp`` against sev-snp-measure, whole process.

Both tools run as child processes on the same inputs, interleaved, several times; the table
gives the median wall-time ratio (ours / peer: lower is better) and each side's peak RSS
(``wait4``). Both must print the same digest, else the row says so and fails.

Inputs: OVMF.amdsev.fd with 4 vCPUs of type EPYC-v4, alone, and with a generated 64 MiB
kernel and 256 MiB initrd (measured direct boot through the kernel-hashes table).

The kernel + initrd case also has a floor, measured in the same rounds: the initrd's SHA-256
must be computed as one stream (it cannot be split over cores), so no tool can finish before
a Python process that starts and hashes it: ``python -c pass`` plus one-core
``hashlib.file_digest`` of the initrd (the child times its hash itself; the floor is the
median start-up plus the median hash).
"""

from __future__ import annotations

import statistics
from pathlib import Path

from bench.common import Context
from bench.harness import MIB, ProcessRun, Row, interleaved_processes, mib
from bench.inputs import write_input
from bench.venvs import Command, find_peer_run

__all__ = ["rows"]

FIRMWARE = "OVMF.amdsev.fd"
RSS_LIMIT = 64 * MIB
_IN_PROCESS_RUNS = 20
#: How close to its floor the kernel + initrd case must be (ours / floor).
FLOOR_GOAL = 1.2

#: The floor's hash: one-core SHA-256 of the file in argv[1], timed by the child itself.
_FLOOR_HASH = """
import hashlib, sys, time
with open(sys.argv[1], "rb") as f:
    t0 = time.perf_counter()
    hashlib.file_digest(f, "sha256")
    print(time.perf_counter() - t0)
"""

#: In-process digest time (median CPU seconds over repeated runs, imports excluded), printed by
#: a child in each tool's own environment: argv[1] is the firmware, argv[2] the run count.
_OURS_IN_PROCESS = """
import statistics, sys, time
from cvmlaunch.files import map_file
from cvmlaunch.image.ovmf import parse_ovmf
from cvmlaunch.measure import SnpSettings, snp_digest, vcpu_type_signature
def once():
    with map_file(sys.argv[1]) as data:
        image = parse_ovmf(data, name="OVMF")
        return snp_digest(image, SnpSettings(vcpus=4, vcpu_sig=vcpu_type_signature("EPYC-v4")))
once()
times = []
for _ in range(int(sys.argv[2])):
    t0 = time.process_time(); digest = once(); times.append(time.process_time() - t0)
print(statistics.median(times), digest.hex())
"""
_PEER_IN_PROCESS = """
import statistics, sys, time
from sevsnpmeasure import guest, vcpu_types, vmm_types
from sevsnpmeasure.sev_mode import SevMode
def once():
    return guest.calc_launch_digest(SevMode.SEV_SNP, 4, vcpu_types.CPU_SIGS["EPYC-v4"],
        sys.argv[1], None, None, None, 0x1, None, vmm_types.VMMType.QEMU)
once()
times = []
for _ in range(int(sys.argv[2])):
    t0 = time.process_time(); digest = once(); times.append(time.process_time() - t0)
print(statistics.median(times), digest.hex())
"""


def _case_rows(name: str, goal: float, runs: dict[str, ProcessRun], rss_goal: bool) -> list[Row]:
    ours, peer = runs["ours"], runs["peer"]
    same = ours.stdout.split() == peer.stdout.split() and len(ours.stdout.split()) == 1
    ratio = ours.seconds / peer.seconds
    rows = [
        Row(
            name=f"measure snp vs sev-snp-measure, {name}: whole-process time",
            ours=f"{ours.seconds:.3f} s (CPU {ours.cpu_seconds:.3f} s)",
            reference=f"{peer.seconds:.3f} s (CPU {peer.cpu_seconds:.3f} s)",
            ratio=ratio,
            goal=f"<= {goal:.2f} (time)",
            met=ratio <= goal and same,
            note="" if same else "DIGESTS DIFFER",
        )
    ]
    rows.append(
        Row(
            name=f"measure snp vs sev-snp-measure, {name}: peak RSS",
            ours=mib(ours.max_rss_bytes),
            reference=mib(peer.max_rss_bytes),
            ratio=ours.max_rss_bytes / peer.max_rss_bytes,
            goal="< 64 MiB (ours)" if rss_goal else "-",
            met=ours.max_rss_bytes < RSS_LIMIT if rss_goal else None,
        )
    )
    return rows


def _floor_row(ours: ProcessRun, start: ProcessRun, hashes: list[float], label: str) -> Row:
    """Ours against the floor: ``python -c pass`` plus one-core SHA-256 of the initrd."""
    floor = start.seconds + statistics.median(hashes)
    ratio = ours.seconds / floor
    return Row(
        name=f"measure snp, {label}, vs its floor",
        ours=f"{ours.seconds:.3f} s",
        reference=f"{floor:.3f} s (python -c pass {start.seconds:.3f} s + one-core hashlib "
        f"SHA-256 of the initrd {statistics.median(hashes):.3f} s)",
        ratio=ratio,
        goal=f"<= {FLOOR_GOAL:.2f} (time)",
        met=ratio <= FLOOR_GOAL,
    )


def _in_process_row(
    ours: Command, peer: Command, firmware: str, env: dict[str, str], ctx: Context
) -> Row:
    """The digest work alone (no interpreter start-up, no imports), each tool's library."""
    runs = 3 if ctx.quick else _IN_PROCESS_RUNS
    ours_python = ours.argv[0]
    peer_python = str(Path(peer.argv[0]).parent / "python")
    out = interleaved_processes(
        {
            "ours": [ours_python, "-c", _OURS_IN_PROCESS, firmware, str(runs)],
            "peer": [peer_python, "-c", _PEER_IN_PROCESS, firmware, str(runs)],
        },
        1,
        env,
    )
    (t_ours, d_ours), (t_peer, d_peer) = (out[k].stdout.split() for k in ("ours", "peer"))
    ratio = float(t_ours) / float(t_peer)
    return Row(
        name="SNP digest in-process, firmware only, 4 vCPUs (library call, no start-up)",
        ours=f"{float(t_ours) * 1e3:.1f} ms CPU",
        reference=f"{float(t_peer) * 1e3:.1f} ms CPU (sevsnpmeasure.guest.calc_launch_digest)",
        ratio=ratio,
        goal="-",
        met=None,
        note="" if d_ours == d_peer else "DIGESTS DIFFER",
    )


def rows(ctx: Context) -> list[Row]:
    """The rows of benchmark 1 (empty, with a note, when the peer or firmware is missing)."""
    run = find_peer_run(ctx, "snp-cli", FIRMWARE)
    if run is None:
        return []
    firmware, ours, peer, env = run.firmware, run.ours, run.peer, run.env
    common = ["--mode", "snp", "--vcpus", "4", "--vcpu-type", "EPYC-v4", "--ovmf", str(firmware)]
    ours_argv = [*ours.argv, "measure", "snp", *common, "--output-format", "hex"]
    peer_argv = [*peer.argv, *common, "--output-format", "hex"]
    result = _case_rows(
        "firmware only, 4 vCPUs",
        1.3,
        interleaved_processes({"ours": ours_argv, "peer": peer_argv}, ctx.repeat, env),
        rss_goal=False,
    )
    result.append(_in_process_row(ours, peer, str(firmware), env, ctx))
    kernel_size = ctx.size(64 * MIB, 4 * MIB)
    initrd_size = ctx.size(256 * MIB, 16 * MIB)
    kernel = write_input(ctx.scratch / "kernel.bin", kernel_size, seed=1)
    initrd = write_input(ctx.scratch / "initrd.bin", initrd_size, seed=2)
    boot = ["--kernel", str(kernel), "--initrd", str(initrd), "--append", "console=ttyS0"]
    label = f"{kernel_size // MIB} MiB kernel + {initrd_size // MIB} MiB initrd"
    python = ours.argv[0]  # the interpreter ours runs on
    hashes: list[float] = []
    runs = interleaved_processes(
        {
            "ours": [*ours_argv, *boot],
            "peer": [*peer_argv, *boot],
            "start": [python, "-c", "pass"],
            "hash": [python, "-c", _FLOOR_HASH, str(initrd)],
        },
        ctx.repeat,
        env,
        on_run=lambda name, run: hashes.append(float(run.stdout)) if name == "hash" else None,
    )
    result += _case_rows(label, 0.6, runs, rss_goal=True)
    result.append(_floor_row(runs["ours"], runs["start"], hashes, label))
    kernel.unlink()
    initrd.unlink()
    return result
