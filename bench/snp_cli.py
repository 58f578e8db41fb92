"""Benchmark 1: ``cvmlaunch measure snp`` against sev-snp-measure, whole process.

Both tools run as child processes on the same inputs, interleaved, several times; the table
gives the median wall-time ratio (ours / peer: lower is better) and each side's peak RSS
(``wait4``). Both must print the same digest, else the row says so and fails.

Inputs: OVMF.amdsev.fd with 4 vCPUs of type EPYC-v4, alone, and with a generated 64 MiB
kernel and 256 MiB initrd (measured direct boot through the kernel-hashes table).
"""

from __future__ import annotations

from bench.common import Context, child_env, find_firmware
from bench.harness import MIB, ProcessRun, Row, interleaved_processes, mib
from bench.inputs import write_input
from bench.venvs import find_ours, find_peer

__all__ = ["rows"]

FIRMWARE = "OVMF.amdsev.fd"
RSS_LIMIT = 64 * MIB


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


def rows(ctx: Context) -> list[Row]:
    """The rows of benchmark 1 (empty, with a note, when the peer or firmware is missing)."""
    firmware = find_firmware(FIRMWARE)
    if firmware is None:
        ctx.notes.append(f"snp-cli: skipped: {FIRMWARE} not found (shared/firmware)")
        return []
    peer = find_peer(install=not ctx.quick)
    if not peer.argv:
        ctx.notes.append(f"snp-cli: skipped: {peer.note}")
        return []
    ours = find_ours(install=not ctx.quick)
    if ours.note:
        ctx.notes.append(f"snp-cli: {ours.note}")
    env = child_env(ours.env)  # PYTHONPATH for ours; the peer imports nothing from there
    common = ["--mode", "snp", "--vcpus", "4", "--vcpu-type", "EPYC-v4", "--ovmf", str(firmware)]
    ours_argv = [*ours.argv, "measure", "snp", *common, "--output-format", "hex"]
    peer_argv = [*peer.argv, *common, "--output-format", "hex"]
    result = _case_rows(
        "firmware only, 4 vCPUs",
        1.0,
        interleaved_processes({"ours": ours_argv, "peer": peer_argv}, ctx.repeat, env),
        rss_goal=False,
    )
    kernel_size = ctx.size(64 * MIB, 4 * MIB)
    initrd_size = ctx.size(256 * MIB, 16 * MIB)
    kernel = write_input(ctx.scratch / "kernel.bin", kernel_size, seed=1)
    initrd = write_input(ctx.scratch / "initrd.bin", initrd_size, seed=2)
    boot = ["--kernel", str(kernel), "--initrd", str(initrd), "--append", "console=ttyS0"]
    label = f"{kernel_size // MIB} MiB kernel + {initrd_size // MIB} MiB initrd"
    result += _case_rows(
        label,
        0.6,
        interleaved_processes(
            {"ours": [*ours_argv, *boot], "peer": [*peer_argv, *boot]}, ctx.repeat, env
        ),
        rss_goal=True,
    )
    kernel.unlink()
    initrd.unlink()
    return result
