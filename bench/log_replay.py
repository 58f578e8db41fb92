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
"""

from __future__ import annotations

import hashlib

from bench.common import Context
from bench.harness import Row, interleaved_times
from cvmlaunch.layout import PAGE_SIZE, VMSA_GPA, Layout, PageType, Provenance, Region, SourceKind
from cvmlaunch.measure.log import LogHeader, Technology
from cvmlaunch.measure.log_check import check_log
from cvmlaunch.measure.log_json import dumps_log, parse_log
from cvmlaunch.measure.snp_chain import SNP_ALGORITHM, log_layout

__all__ = ["rows"]


def rows(ctx: Context) -> list[Row]:
    """The row of this benchmark."""
    pages = ctx.size(1 << 18, 1 << 10)
    zero = Region(1 << 32, pages * PAGE_SIZE, PageType.ZERO, False,
                  Provenance(SourceKind.ZERO, "zero"))  # fmt: skip
    vmsa = Region(VMSA_GPA, PAGE_SIZE, PageType.VMSA, True,
                  Provenance(SourceKind.VMSA, index=0, detail="BSP"), b"\x01")  # fmt: skip
    header = LogHeader(Technology.SEV_SNP, SNP_ALGORITHM, {}, (), "bench", bytes(48))
    log = parse_log(dumps_log(log_layout(Layout.of([zero, vmsa]), header)))
    floor = bytes(256 * pages)
    digests: list[bytes | None] = []

    def ours() -> None:
        digests.append(check_log(log).digest)

    def raw() -> None:
        hashlib.sha384(floor).digest()

    t = interleaved_times({"ours": ours, "raw": raw}, ctx.repeat)
    same = all(d == log.digest for d in digests)
    per_page = t["ours"] / pages * 1e9
    return [
        Row(
            name=f"log verify, SNP ZERO record of {pages} pages (no inputs)",
            ours=f"{per_page:.0f} ns/page",
            reference=f"{t['raw'] / pages * 1e9:.0f} ns/page (hashlib SHA-384, 256 bytes/page)",
            ratio=t["ours"] / t["raw"],
            goal="- (the floor)",
            met=None,
            note="" if same else "THE REPLAY DID NOT REACH THE LOG'S DIGEST",
        )
    ]
