"""Regenerate tests/vectors/snp/peer.json with sev-snp-measure 0.0.13 (never a dependency).

Usage (from the repository root, with this project's virtualenv active)::

    python3 -m venv /tmp/peer-snp && /tmp/peer-snp/bin/pip install sev-snp-measure==0.0.13
    python -m tests.vectors.snp.make_vectors /tmp/peer-snp

Each case records the exact peer command (run in a directory holding the inputs of
tests/snp_inputs.py, under the file names shown), the peer's output or error, and the
arguments for ``cvmlaunch measure snp`` that must reproduce it. ``@name`` in ``args`` stands
for the input file ``name``.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.snp_inputs import CMDLINE_UTF8, materialize

HERE = Path(__file__).resolve().parent

A, G, T, OLD, C = (
    "OVMF.amdsev.fd",
    "OVMF.generic.fd",
    "OVMF.inteltdx.ms.fd",
    "OVMF.2022.fd",
    "OVMF.code-only.fd",
)
K = ["--kernel", "@kernel.bin"]
KI = [*K, "--initrd", "@initrd.bin"]
KIA = [*KI, "--append", "console=ttyS0 root=/dev/vda1 ro"]


def snp(fw: str, vcpus: int, *extra: str) -> list[str]:
    return ["--mode", "snp", "--vcpus", str(vcpus), "--ovmf", f"@{fw}", *extra]


def cpu(name: str) -> list[str]:
    return ["--vcpu-type", name]


# (id, peer arguments, extra arguments for cvmlaunch only, note)
CASES: list[tuple[str, list[str], list[str], str]] = [
    ("amdsev-1-epyc-v4", snp(A, 1, *cpu("EPYC-v4")), [], "worked trace, snp-measure.md 1.9"),
    ("amdsev-2-epyc", snp(A, 2, *cpu("EPYC")), [], ""),
    ("amdsev-4-milan", snp(A, 4, *cpu("EPYC-Milan")), [], ""),
    ("amdsev-64-genoa", snp(A, 64, *cpu("EPYC-Genoa")), [], ""),
    ("amdsev-4-rome-v2", snp(A, 4, *cpu("EPYC-Rome-v2")), [], ""),
    ("amdsev-4-turin", snp(A, 4, *cpu("EPYC-Turin")), [], ""),
    ("amdsev-4-ibpb", snp(A, 4, *cpu("EPYC-IBPB")), [], ""),
    ("amdsev-4-milan-v2", snp(A, 4, *cpu("EPYC-Milan-v2")), [], "same as amdsev-4-milan"),
    ("amdsev-4-sig", snp(A, 4, "--vcpu-sig", "0xa00f11"), [], "same as amdsev-4-milan"),
    (
        "amdsev-4-fms",
        snp(A, 4, "--vcpu-family", "25", "--vcpu-model", "17", "--vcpu-stepping", "0"),
        [],
        "same as amdsev-64-genoa's signature",
    ),
    ("amdsev-4-milan-gf21", snp(A, 4, *cpu("EPYC-Milan"), "--guest-features", "0x21"), [], ""),
    ("amdsev-4-ec2", snp(A, 4, *cpu("EPYC-v4"), "--vmm-type", "ec2"), [], ""),
    ("amdsev-4-gce", snp(A, 4, "--vmm-type", "gce"), [], ""),
    ("amdsev-1-ec2", snp(A, 1, "--vmm-type", "ec2"), [], ""),
    ("amdsev-64-gce-gf21", snp(A, 64, "--vmm-type", "gce", "--guest-features", "0x21"), [], ""),
    ("amdsev-4-milan-k", snp(A, 4, *cpu("EPYC-Milan"), *K), [], ""),
    ("amdsev-4-milan-ki", snp(A, 4, *cpu("EPYC-Milan"), *KI), [], ""),
    ("amdsev-4-milan-kia", snp(A, 4, *cpu("EPYC-Milan"), *KIA), [], ""),
    ("amdsev-4-milan-ka", snp(A, 4, *cpu("EPYC-Milan"), *K, "--append", "quiet"), [], ""),
    (
        "amdsev-4-milan-k-empty-utf8",
        snp(A, 4, *cpu("EPYC-Milan"), *K, "--initrd", "@empty.bin", "--append", CMDLINE_UTF8),
        [],
        "empty initrd, non-ASCII command line (UTF-8)",
    ),
    ("amdsev-2-ec2-kia", snp(A, 2, "--vmm-type", "ec2", *KIA), [], ""),
    (
        "amdsev-2-gce-kia-gf21",
        snp(A, 2, "--vmm-type", "gce", *KIA, "--guest-features", "0x21"),
        [],
        "",
    ),
    (
        "amdsev-4-milan-kia-gf21",
        snp(A, 4, *cpu("EPYC-Milan"), *KIA, "--guest-features", "0x21"),
        [],
        "",
    ),
    ("generic-1-epyc-v4", snp(G, 1, *cpu("EPYC-v4")), [], ""),
    ("generic-4-genoa-kia", snp(G, 4, *cpu("EPYC-Genoa-v1"), *KIA), [], ""),
    ("generic-64-ec2", snp(G, 64, "--vmm-type", "ec2"), [], ""),
    ("inteltdx-1-epyc-v4", snp(T, 1, *cpu("EPYC-v4")), [], "zero-length metadata sections"),
    ("inteltdx-4-milan-gf21", snp(T, 4, *cpu("EPYC-Milan-v1"), "--guest-features", "0x21"), [], ""),
    ("inteltdx-2-gce", snp(T, 2, "--vmm-type", "gce"), [], ""),
    ("ovmf2022-1-epyc-v4", snp(OLD, 1, *cpu("EPYC-v4")), [], "2 MiB image, no kernel-hashes page"),
    ("ovmf2022-4-rome", snp(OLD, 4, *cpu("EPYC-Rome")), [], ""),
    ("ovmf2022-64-ec2", snp(OLD, 64, "--vmm-type", "ec2"), [], ""),
    ("codeonly-1-epyc-v4", snp(C, 1, *cpu("EPYC-v4")), [], "code-only image at 0xFFC84000"),
    ("codeonly-4-milan-kia", snp(C, 4, *cpu("EPYC-Milan"), *KIA), [], ""),
    ("codeonly-4-gce", snp(C, 4, "--vmm-type", "gce"), [], ""),
    ("codeonly-2-epyc-v1-gf21", snp(C, 2, *cpu("EPYC-v1"), "--guest-features", "0x21"), [], ""),
    ("ovmfhash-amdsev", ["--mode", "snp:ovmf-hash", "--ovmf", f"@{A}"], [], ""),
    ("ovmfhash-generic", ["--mode", "snp:ovmf-hash", "--ovmf", f"@{G}"], [], ""),
    ("ovmfhash-inteltdx", ["--mode", "snp:ovmf-hash", "--ovmf", f"@{T}"], [], ""),
    ("ovmfhash-2022", ["--mode", "snp:ovmf-hash", "--ovmf", f"@{OLD}"], [], ""),
    ("ovmfhash-codeonly", ["--mode", "snp:ovmf-hash", "--ovmf", f"@{C}"], [], ""),
    ("sev-amdsev", ["--mode", "sev", "--ovmf", f"@{A}"], [], "sha256sum of the firmware"),
    ("sev-amdsev-kia", ["--mode", "sev", "--ovmf", f"@{A}", *KIA], [], ""),
    ("sev-2022", ["--mode", "sev", "--ovmf", f"@{OLD}"], [], ""),
    ("sev-codeonly-k", ["--mode", "sev", "--ovmf", f"@{C}", *K], [], ""),
    (
        "seves-amdsev-1-epyc-v4",
        ["--mode", "seves", "--vcpus", "1", *cpu("EPYC-v4"), "--ovmf", f"@{A}"],
        ["--fpu-init", "init2"],
        "peer assumes KVM_SEV_INIT2 (legacy-vm-type=off)",
    ),
    (
        "seves-amdsev-4-milan-kia",
        ["--mode", "seves", "--vcpus", "4", *cpu("EPYC-Milan"), "--ovmf", f"@{A}", *KIA],
        ["--fpu-init", "init2"],
        "",
    ),
    (
        "seves-amdsev-4-ec2",
        ["--mode", "seves", "--vcpus", "4", "--vmm-type", "ec2", "--ovmf", f"@{A}"],
        [],
        "EC2 VMSAs have MXCSR/FCW 0 whatever the init path",
    ),
    (
        "seves-amdsev-2-gce",
        ["--mode", "seves", "--vcpus", "2", "--vmm-type", "gce", "--ovmf", f"@{A}"],
        [],
        "",
    ),
    (
        "seves-inteltdx-64-genoa",
        ["--mode", "seves", "--vcpus", "64", *cpu("EPYC-Genoa"), "--ovmf", f"@{T}"],
        ["--fpu-init", "init2"],
        "",
    ),
    (
        "seves-2022-2-epyc",
        ["--mode", "seves", "--vcpus", "2", *cpu("EPYC"), "--ovmf", f"@{OLD}"],
        ["--fpu-init", "init2"],
        "",
    ),
    ("err-2022-kernel-snp", snp(OLD, 1, *cpu("EPYC-v4"), *K), [], "no SNP_KERNEL_HASHES section"),
    ("err-2022-kernel-sev", ["--mode", "sev", "--ovmf", f"@{OLD}", *K], [], "no hash table"),
    ("err-inteltdx-kernel-snp", snp(T, 2, *cpu("EPYC-v4"), *K), [], "no SNP_KERNEL_HASHES"),
]

#: Cases where the peer is wrong (snp-measure.md 2.2) and cvmlaunch follows the hardware: the
#: peer's output is recorded and the tests show how and why cvmlaunch differs.
DIVERGENT: list[tuple[str, list[str], list[str], str]] = [
    (
        "div-seves-legacy-fpu",
        ["--mode", "seves", "--vcpus", "2", *cpu("EPYC-v4"), "--ovmf", f"@{A}"],
        [],
        "peer writes INIT2 FPU values; QEMU 9.1+'s default SEV-ES launch is legacy (0/0)",
    ),
    (
        "div-svsm-fcw",
        [
            "--mode",
            "snp:svsm",
            "--vcpus",
            "2",
            *cpu("EPYC-v4"),
            "--ovmf",
            f"@{A}",
            "--svsm",
            "@synthetic-svsm.bin",
            "--vars-size",
            str(0x84000),
        ],
        [],
        "peer sets MXCSR 0x1F80 but leaves FCW 0 (misspelled field): a state no KVM produces",
    ),
    (
        "div-2page-secrets-cpuid",
        snp("synthetic-2page.fd", 1, *cpu("EPYC-v4")),
        [],
        "peer measures one SECRETS and one CPUID page whatever the section size",
    ),
    (
        "div-no-asev",
        snp("synthetic-no-asev.fd", 1, *cpu("EPYC-v4")),
        [],
        "peer measures a firmware without SEV metadata; QEMU refuses to launch it",
    ),
]

#: The peer's CLI rejects --vcpu-sig 0 (fixed upstream after 0.0.13); its library takes it.
LIBRARY_CASES: list[tuple[str, str, list[str], str]] = [
    (
        "amdsev-4-sig0",
        "from sevsnpmeasure import guest, sev_mode, vmm_types;"
        "print(guest.calc_launch_digest(sev_mode.SevMode.SEV_SNP, 4, 0, 'OVMF.amdsev.fd',"
        " None, None, None, 0x1).hex())",
        snp(A, 4, "--vcpu-sig", "0"),
        "peer CLI rejects 0 (falsy test); its library and the hardware accept it",
    ),
]


def _peer_args(args: list[str]) -> list[str]:
    return [a[1:] if a.startswith("@") else a for a in args]


def run(peer_venv: Path) -> None:
    peer = peer_venv / "bin" / "sev-snp-measure"
    version = subprocess.run(
        [str(peer), "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        paths = materialize(Path(tmp))
        inputs = {
            name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in paths.items()
        }
        cases: list[dict[str, Any]] = []
        for group, table in (("agree", CASES), ("divergent", DIVERGENT)):
            for case_id, args, ours, note in table:
                cmd = ["sev-snp-measure", *_peer_args(args)]
                proc = subprocess.run(
                    [str(peer), *cmd[1:]], capture_output=True, text=True, cwd=tmp, check=False
                )
                entry: dict[str, Any] = {
                    "id": case_id,
                    "group": group,
                    "peer_command": shlex.join(cmd),
                    "args": args + ours,
                    "note": note,
                }
                if proc.returncode == 0:
                    entry["expected"] = proc.stdout.strip()
                else:
                    entry["peer_error"] = (proc.stderr.strip().splitlines() or [""])[-1]
                cases.append(entry)
        for case_id, code, args, note in LIBRARY_CASES:
            proc = subprocess.run(
                [str(peer_venv / "bin" / "python"), "-c", code],
                capture_output=True,
                text=True,
                cwd=tmp,
                check=True,
            )
            cases.append(
                {
                    "id": case_id,
                    "group": "agree",
                    "peer_command": shlex.join(["python", "-c", code]),
                    "args": args,
                    "note": note,
                    "expected": proc.stdout.strip(),
                }
            )
    out = {
        "peer": version,
        "generated_by": "python -m tests.vectors.snp.make_vectors /tmp/peer-snp",
        "inputs_sha256": inputs,
        "cases": cases,
    }
    (HERE / "peer.json").write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    print(f"{len(cases)} cases written to {HERE / 'peer.json'}")


if __name__ == "__main__":
    run(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/peer-snp"))
