"""One record of the launch measurement log: what was done (:class:`LogOp`) to which range.

A core value module like :mod:`cvmlaunch.layout` (pure, frozen, validated), kept apart so that
computing a digest does not pay for creating these types: only the log producers and readers
(:mod:`cvmlaunch.measure.log`, :mod:`cvmlaunch.kvm_map`, and the record builder
:func:`cvmlaunch.digests.entry_for_range` when it builds one) import it. It builds on
:mod:`cvmlaunch.layout` (page types, provenance), which does not import it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from cvmlaunch.errors import LayoutError
from cvmlaunch.layout import PageType, Provenance

__all__ = ["LogEntry", "LogOp", "zero_by_construction"]


class LogOp(enum.Enum):
    """What a launch-log record did (the value is what the log file says)."""

    SNP_LAUNCH_UPDATE = "snp.launch_update"
    SNP_VMSA = "snp.vmsa"
    SEV_LAUNCH_UPDATE_DATA = "sev.launch_update_data"
    SEV_LAUNCH_UPDATE_VMSA = "sev.launch_update_vmsa"
    TDX_PAGE_ADD = "tdx.page_add"
    TDX_PAGE_ADD_EXTEND = "tdx.page_add+extend"
    PLAIN_COPY = "plain.copy"
    PRE_FAULT = "plain.pre_fault"


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One record of the launch measurement log: one populated range (not one page).

    Args:
        seq: sequence number, from 0.
        op: what was done.
        gpa: first GPA of the range.
        size: bytes in the range.
        page_type: the populate page type.
        measured: whether the contents entered the measurement.
        provenance: where the bytes came from.
        content_sha384: SHA-384 of the range's bytes as populated (zero fill included), or
            None, the *zero marker*: the plan gave the range no bytes, so its contents are zero
            by construction and their hash is not computed (:func:`zero_by_construction`;
            docs/log-format.md, "Zero ranges").
        page_sha384: SHA-384 of each 4 KiB page, where the technology needs it to replay (SNP).
        digest_after: the running measurement after this range, when known.
    """

    seq: int
    op: LogOp
    gpa: int
    size: int
    page_type: PageType
    measured: bool
    provenance: Provenance
    content_sha384: bytes | None
    page_sha384: tuple[bytes, ...] = ()
    digest_after: bytes | None = None

    def __post_init__(self) -> None:
        if self.content_sha384 is not None and len(self.content_sha384) != 48:
            raise LayoutError(f"log record {self.seq}: content_sha384 must be 48 bytes")
        if any(len(h) != 48 for h in self.page_sha384):
            raise LayoutError(f"log record {self.seq}: page hashes must be 48 bytes each")


def zero_by_construction(data_size: int) -> bool:
    """Whether a record of a range for which the plan gives ``data_size`` bytes (the rest
    zero fill) carries the zero marker (``content_sha384`` None) instead of a content hash.

    The one rule, shared by every record builder (the prediction's and the KVM layer's): a
    range the plan gives no bytes at all is zero by construction, whatever its size, page type
    or op, so its record costs O(1) to write and to check; a range with any bytes keeps the
    SHA-384 of all of them (zero fill included).
    """
    return data_size == 0
