"""The SEV-SNP launch digest as a fold: one chained SHA-384 over PAGE_INFO per 4 KiB page.

Rule 1: this is the only place that knows the PAGE_INFO structure. The digest of a launch plan
(:func:`fold_layout`), the log producer (:func:`log_layout`) and the log replayer
(:func:`replay_snp`) all go through :func:`extend`, so they cannot disagree.

Rule 2: pure computation with hashlib; buffers in, digests out.

Spec: AMD SEV-SNP Firmware ABI, SNP_LAUNCH_UPDATE, "PAGE_INFO" (Table: 112 bytes). Running
value GCTX.LD starts as 48 zero bytes; for every page LD = SHA-384(PAGE_INFO) where PAGE_INFO
is DIGEST_CUR (LD) | CONTENTS (SHA-384 of the page for NORMAL and VMSA pages, else 48 zero
bytes) | LENGTH u16 = 0x70 | PAGE_TYPE u8 | IMI_PAGE u8 | VMPL3/2/1_PERMS u8 x3 | reserved u8 |
GPA u64, little endian. KVM measures the pages of a LAUNCH_UPDATE range in ascending GPA order
and the VMSAs at LAUNCH_FINISH, each at GPA 0xFFFFFFFFF000.
"""

from __future__ import annotations

import dataclasses
import hashlib
import struct
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from cvmlaunch.errors import ConfigError, LogFormatError
from cvmlaunch.layout import (
    PAGE_SIZE,
    Buffer,
    Layout,
    LogEntry,
    LogOp,
    PageType,
    Region,
)

if TYPE_CHECKING:  # the log model is imported only when a log is made (start-up time)
    from cvmlaunch.measure.log import ContentProvider, LogHeader, MeasurementLog

__all__ = [
    "DIGEST_SIZE",
    "REPLAYERS",
    "SNP_ALGORITHM",
    "ZERO_DIGEST",
    "extend",
    "fold_layout",
    "fold_region",
    "log_layout",
    "page_info",
    "replay_snp",
]

#: SHA-384.
DIGEST_SIZE = 48
#: The initial GCTX.LD, and the CONTENTS field of pages whose contents are not hashed.
ZERO_DIGEST = bytes(DIGEST_SIZE)
#: The ``algorithm`` of SNP launch logs.
SNP_ALGORITHM = "snp-page-info-chain"

#: PAGE_INFO bytes 0x60..0x6F: LENGTH u16, PAGE_TYPE u8, IMI_PAGE u8, VMPL3_PERMS u8,
#: VMPL2_PERMS u8, VMPL1_PERMS u8, reserved u8, GPA u64 (SNP Firmware ABI, PAGE_INFO).
_PAGE_INFO_TAIL = struct.Struct("<HBBBBBBQ")
_PAGE_INFO_SIZE = 0x70


def page_info(digest: bytes, contents: bytes, page_type: PageType, gpa: int) -> bytes:
    """The 112-byte PAGE_INFO for one page (IMI and VMPL permissions 0, as KVM issues them).

    Args:
        digest: DIGEST_CUR, the running value before this page (48 bytes).
        contents: CONTENTS: SHA-384 of the page for NORMAL/VMSA, else 48 zero bytes.
        page_type: PAGE_TYPE.
        gpa: the page's guest-physical address.
    """
    return digest + contents + _PAGE_INFO_TAIL.pack(_PAGE_INFO_SIZE, page_type, 0, 0, 0, 0, 0, gpa)


def extend(digest: bytes, contents: bytes, page_type: PageType, gpa: int) -> bytes:
    """One PAGE_INFO step: ``SHA-384(PAGE_INFO(digest, contents, page_type, gpa))``."""
    return hashlib.sha384(page_info(digest, contents, page_type, gpa)).digest()


def fold_region(digest: bytes, region: Region) -> bytes:
    """Fold every page of ``region`` into ``digest`` in ascending GPA order."""
    page_type = region.page_type
    if page_type.hashes_contents:
        for gpa, page in region.pages():
            digest = extend(digest, hashlib.sha384(page).digest(), page_type, gpa)
    else:
        for i in range(region.npages):
            digest = extend(digest, ZERO_DIGEST, page_type, region.gpa + i * PAGE_SIZE)
    return digest


def fold_layout(layout: Layout, initial: bytes = ZERO_DIGEST) -> bytes:
    """The SNP launch digest of a launch plan: every region, in plan order.

    Args:
        layout: the plan (memory regions, then one VMSA region per vCPU).
        initial: the starting value (48 zero bytes, or a precomputed digest to continue from).

    Returns:
        The 48-byte launch digest (the attestation report's MEASUREMENT).
    """
    digest = initial
    for region in layout.regions:
        digest = fold_region(digest, region)
    return digest


def _entry_pages(entry: LogEntry) -> Iterator[tuple[int, bytes]]:
    if entry.page_type.hashes_contents:
        if len(entry.page_sha384) * PAGE_SIZE != entry.size:
            raise LogFormatError(
                f"record {entry.seq}: a {entry.page_type.name} range needs one SHA-384 per page "
                f"({entry.size // PAGE_SIZE}), the log has {len(entry.page_sha384)}"
            )
        for i, h in enumerate(entry.page_sha384):
            yield entry.gpa + i * PAGE_SIZE, h
    else:
        for i in range(entry.size // PAGE_SIZE):
            yield entry.gpa + i * PAGE_SIZE, ZERO_DIGEST


def _fold_entry(digest: bytes, entry: LogEntry) -> bytes:
    if entry.size % PAGE_SIZE or entry.gpa % PAGE_SIZE:
        raise LogFormatError(f"record {entry.seq}: range is not made of whole 4 KiB pages")
    for gpa, contents in _entry_pages(entry):
        digest = extend(digest, contents, entry.page_type, gpa)
    return digest


def replay_snp(
    header: LogHeader,
    entries: Sequence[LogEntry],
    contents: ContentProvider | None = None,
) -> Iterator[bytes]:
    """Replay an SNP log from its per-page hashes; yield the digest after each record.

    ``contents`` is not needed (and not used): the chain needs only each page's SHA-384, which
    the log carries for NORMAL and VMSA ranges.

    Raises:
        LogFormatError: a record without the page hashes its type needs, or a header without
            a 48-byte initial digest.
    """
    initial = header.initial_digest
    if initial is None or len(initial) != DIGEST_SIZE:
        raise LogFormatError("an SNP log header needs a 48-byte initial_digest")
    digest = initial
    for entry in entries:
        digest = _fold_entry(digest, entry)
        yield digest


#: Read by :func:`cvmlaunch.measure.log.get_replayer` (keys: technology value, algorithm).
REPLAYERS = {("sev-snp", SNP_ALGORITHM): replay_snp}


def log_layout(layout: Layout, header: LogHeader) -> MeasurementLog:
    """Fold ``layout`` and record one log entry per region (with per-page hashes).

    The digest is computed from the recorded page hashes by the same step the replayer uses,
    so a log always replays to the digest it reports.

    Args:
        layout: the plan.
        header: the header to write; its ``initial_digest`` is the starting value.

    Returns:
        The log; its footer holds the launch digest (equal to :func:`fold_layout`).

    Raises:
        ConfigError: the header is not an SNP header with a 48-byte initial digest.
    """
    from cvmlaunch.measure.log import LogFooter, MeasurementLog, Technology, entry_for_range

    if header.technology is not Technology.SEV_SNP or header.algorithm != SNP_ALGORITHM:
        raise ConfigError("log_layout needs an SNP page-info-chain header")
    if header.initial_digest is None or len(header.initial_digest) != DIGEST_SIZE:
        raise ConfigError("an SNP log header needs a 48-byte initial_digest")
    digest = header.initial_digest
    entries: list[LogEntry] = []
    for seq, region in enumerate(layout.regions):
        hashed = region.page_type.hashes_contents
        data: Buffer = region.data
        entry = entry_for_range(
            seq=seq,
            op=LogOp.SNP_VMSA if region.page_type is PageType.VMSA else LogOp.SNP_LAUNCH_UPDATE,
            gpa=region.gpa,
            size=region.size,
            page_type=region.page_type,
            measured=region.measured,
            provenance=region.provenance,
            data=data,
            with_pages=hashed,
            digest_after=None,
        )
        digest = _fold_entry(digest, entry)
        entries.append(dataclasses.replace(entry, digest_after=digest))
    return MeasurementLog(header, tuple(entries), LogFooter(digest=digest, records=len(entries)))
