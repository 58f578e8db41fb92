"""Benchmark: checking an SNP launch log whose records cover unmeasured (ZERO) pages, against
the floor of its replay.

An SNP ZERO page enters the launch digest as one PAGE_INFO step (SHA-384 of 112 bytes: two
SHA-512 compression blocks) even though its contents are not hashed, and each step needs the
previous digest: there is no exact shortcut, so a log's replay costs a step per declared page
(docs/log-format.md, "Limits"). Ours: :func:`cvmlaunch.measure.log_check.check_log` (no
inputs) of a parsed log with one ZERO record of 2^18 pages (1 GiB; 4 MiB in a quick run) and
two VMSAs. Reference, the physical limit of one core: hashlib SHA-384 over the same number of
bytes those compression blocks take (256 per page) in one call. No goal: the row records how
far the Python-level chain is from the compression floor.

Second row: ``log verify --firmware`` (``check_log`` with the firmware) of a TDX log whose
firmware has a 128 KiB measured BFV and a TEMP_MEM section of 1 GiB (16 MiB in a quick run)
that the firmware gives no bytes. Its record carries the zero marker (format version 3), so
the check costs the measured bytes plus one PAGE.ADD step a page; the reference is the floor
of exactly that (hashlib SHA-384 over the bytes MRTD hashes: 128 per PAGE.ADD, 1.5 per
MR.EXTENDed byte). The note gives what version 2 also spent: the SHA-384 of the TEMP_MEM's
zeros, once to write and once to check.
"""

from __future__ import annotations

import hashlib

from bench.common import Context
from bench.harness import Row, interleaved_times
from cvmlaunch.layout import PAGE_SIZE, VMSA_GPA, PageType, Plan, Provenance, Region, SourceKind
from cvmlaunch.measure.log import LogHeader, LogInput, Technology
from cvmlaunch.measure.log_check import check_log
from cvmlaunch.measure.log_json import dumps_log, parse_log
from cvmlaunch.measure.snp_chain import SNP_ALGORITHM, log_plan

__all__ = ["rows"]


def rows(ctx: Context) -> list[Row]:
    """The rows of this benchmark."""
    return [_snp_zero_row(ctx), _tdx_temp_mem_row(ctx)]


def _tdx_temp_mem_row(ctx: Context) -> Row:
    from cvmlaunch.image.ovmf import parse_ovmf
    from cvmlaunch.measure.tdx import measure_tdx, tdx_log
    from cvmlaunch.plan.tdvf import tdvf_plan
    from tests.ovmf_builder import build_ovmf

    temp = ctx.size(1 << 30, 16 << 20)
    bfv = (0x20000, 0x20000, 0xFFFE0000, 0x20000, 0, 1)
    hob = (0, 0, 0x809000, 0x2000, 2, 0)
    firmware = build_ovmf(0x40000, tdx=[bfv, hob, (0, 0, 0x1000_0000, temp, 3, 0)])
    plan = tdvf_plan(parse_ovmf(firmware, name="fw.fd"))
    source = LogInput("firmware", "fw.fd", len(firmware), hashlib.sha256(firmware).digest(),
                      hashlib.sha384(firmware).digest())  # fmt: skip
    owner = {k: "00" * 48 for k in ("mrconfigid", "mrowner", "mrownerconfig")}
    log = parse_log(dumps_log(tdx_log(measure_tdx(plan), inputs=(source,), tool_version="b",
                                      settings={"profile": "qemu", **owner})))  # fmt: skip
    pages = sum(r.size for r in plan.regions) // PAGE_SIZE
    floor = bytes(128 * pages + bfv[1] * 3 // 2)
    zeros = bytes(1 << 24)
    digests: list[bytes | None] = []
    found: list[int] = []

    def ours() -> None:
        result = check_log(log, {"firmware": firmware})
        found.append(len(result.findings))
        digests.append(result.digest)

    def raw() -> None:
        hashlib.sha384(floor).digest()

    def version_2() -> None:  # the SHA-384 of the TEMP_MEM's zeros, as version 2 wrote it
        h = hashlib.sha384()
        for _ in range(temp // len(zeros)):
            h.update(zeros)
        h.digest()

    t = interleaved_times({"ours": ours, "raw": raw, "v2": version_2}, ctx.repeat)
    same = all(d == log.digest for d in digests) and not any(found)
    return Row(
        name=f"log verify --firmware, TDX log with a {temp >> 20} MiB TEMP_MEM (zero marker)",
        ours=f"{t['ours'] * 1e3:.1f} ms",
        reference=f"{t['raw'] * 1e3:.1f} ms (hashlib SHA-384 over the bytes MRTD hashes)",
        ratio=t["ours"] / t["raw"],
        goal="- (the floor)",
        met=None,
        note=(
            f"version 2 also hashed the zeros: {t['v2'] * 1e3:.0f} ms to write, as much to check"
            if same
            else "THE CHECK FAILED"
        ),
    )


def _snp_zero_row(ctx: Context) -> Row:
    pages = ctx.size(1 << 18, 1 << 10)
    zero = Region(1 << 32, pages * PAGE_SIZE, PageType.ZERO, False,
                  Provenance(SourceKind.ZERO, "zero"))  # fmt: skip
    vmsa = Region(VMSA_GPA, PAGE_SIZE, PageType.VMSA, True,
                  Provenance(SourceKind.VMSA, index=0, detail="BSP"), b"\x01")  # fmt: skip
    header = LogHeader(Technology.SEV_SNP, SNP_ALGORITHM, {}, (), "bench", bytes(48))
    log = parse_log(dumps_log(log_plan(Plan.of([zero, vmsa]), header)))
    floor = bytes(256 * pages)
    digests: list[bytes | None] = []

    def ours() -> None:
        digests.append(check_log(log).digest)

    def raw() -> None:
        hashlib.sha384(floor).digest()

    t = interleaved_times({"ours": ours, "raw": raw}, ctx.repeat)
    same = all(d == log.digest for d in digests)
    per_page = t["ours"] / pages * 1e9
    return Row(
        name=f"log verify, SNP ZERO record of {pages} pages (no inputs)",
        ours=f"{per_page:.0f} ns/page",
        reference=f"{t['raw'] / pages * 1e9:.0f} ns/page (hashlib SHA-384, 256 bytes/page)",
        ratio=t["ours"] / t["raw"],
        goal="- (the floor)",
        met=None,
        note="" if same else "THE REPLAY DID NOT REACH THE LOG'S DIGEST",
    )
