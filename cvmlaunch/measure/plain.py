"""The plain-launch transcript digest: cvmlaunch's own record of a launch no hardware measures.

A plain KVM guest (``--tech none``, VM type 0) has no launch measurement: nothing in the
platform hashes what the launcher puts in guest memory, and no attestation report carries a
digest of it. The launch log of such a launch still needs a final value to verify, compare and
predict, so cvmlaunch defines one: the *transcript digest*, a SHA-384 chain over the log's
records. It is informational. It proves nothing to a remote party (the host computes it and
could compute any value); it lets a user check that a launch did what ``--dry-run`` predicted,
and that a log file was not changed after it was written.

Rule 1: one definition. :func:`extend` is the only place that knows the step; the prediction
from a plan (:func:`plain_log`) and the replayer (:func:`replay_plain`) both go through it.

Rule 2: pure computation with hashlib; records in, digests out.

The rule (docs/log-format.md, ``plain`` / ``cvmlaunch-transcript-sha384``): start with 48 zero
bytes; for every ``plain.copy`` record, in order,

    digest = SHA-384(digest || STEP)
    STEP   = op[32] || gpa u64 || size u64 || page_type u8 || measured u8 || content_sha384[48]

(little endian; ``op`` is the record's op name in ASCII, NUL-padded to 32 bytes; ``page_type``
the SNP PAGE_INFO number :class:`~cvmlaunch.layout.PageType` uses; ``measured`` 0 or 1;
``content_sha384`` is 48 zero bytes for a record with the zero marker, a range the plan gives
no bytes: no SHA-384 output is all zero in practice, and the step stays O(1) however large
the range).
``plain.pre_fault`` records leave the digest as it is: they say how this host faulted memory
in (whether it offers ``KVM_PRE_FAULT_MEMORY``, and how the kernel split the calls), not what
the guest was given, so the digest is the same on every host and predictable from the plan.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence

from cvmlaunch._struct import StructTable
from cvmlaunch.errors import LogFormatError
from cvmlaunch.layout import Plan
from cvmlaunch.log_entry import LogEntry, LogOp

TYPE_CHECKING = False
if TYPE_CHECKING:  # the log model is imported only when a log is made (start-up time)
    from cvmlaunch.measure.log import (
        ContentProvider,
        LogHeader,
        LogInput,
        MeasurementLog,
        SettingValue,
    )

__all__ = [
    "PLAIN_ALGORITHM",
    "REPLAYERS",
    "ZERO_DIGEST",
    "extend",
    "plain_header",
    "plain_log",
    "replay_plain",
    "transcript_step",
]

#: SHA-384.
DIGEST_SIZE = 48
#: The initial transcript digest.
ZERO_DIGEST = bytes(DIGEST_SIZE)
#: The ``algorithm`` of plain launch logs.
PLAIN_ALGORITHM = "cvmlaunch-transcript-sha384"

#: The transcript step (cvmlaunch's own definition, docs/log-format.md), 98 bytes.
_STEP = StructTable(
    "plain transcript step",
    (
        ("op", 0, "32s"),  # the op name, ASCII, NUL-padded
        ("gpa", 32, "Q"),
        ("size", 40, "Q"),
        ("page_type", 48, "B"),
        ("measured", 49, "B"),
        ("content_sha384", 50, "48s"),  # 48 zero bytes for the zero marker
    ),
    end=98,
)
#: What a record with the zero marker (``content_sha384`` None) puts in the step.
ZERO_MARKER_STEP = bytes(DIGEST_SIZE)


def transcript_step(entry: LogEntry) -> bytes:
    """The 98 bytes a ``plain.copy`` record adds to the transcript (:data:`_STEP`)."""
    return _STEP.pack(
        op=entry.op.value.encode("ascii"),
        gpa=entry.gpa,
        size=entry.size,
        page_type=int(entry.page_type),
        measured=int(entry.measured),
        content_sha384=(ZERO_MARKER_STEP if entry.content_sha384 is None else entry.content_sha384),
    )


def extend(digest: bytes, entry: LogEntry) -> bytes:
    """The running transcript digest after ``entry``.

    Raises:
        LogFormatError: a record of another technology's op.
    """
    if entry.op is LogOp.PRE_FAULT:
        return digest
    if entry.op is not LogOp.PLAIN_COPY:
        raise LogFormatError(
            f"record {entry.seq}: op {entry.op.value!r} is not part of a plain launch "
            "(plain.copy or plain.pre_fault)"
        )
    return hashlib.sha384(digest + transcript_step(entry)).digest()


def replay_plain(
    header: LogHeader,
    entries: Sequence[LogEntry],
    contents: ContentProvider | None = None,
) -> Iterator[bytes]:
    """Replay a plain log; yield the transcript digest after each record.

    ``contents`` is not used: the step needs only each record's fields and content SHA-384.

    Raises:
        LogFormatError: a header without a 48-byte initial digest, or a record whose op is not
            ``plain.copy`` or ``plain.pre_fault``.
    """
    digest = header.initial_digest
    if digest is None or len(digest) != DIGEST_SIZE:
        raise LogFormatError("a plain log header needs a 48-byte initial_digest")
    for entry in entries:
        digest = extend(digest, entry)
        yield digest


#: Read by :func:`cvmlaunch.measure.log.get_replayer` (keys: technology value, algorithm).
REPLAYERS = {("plain", PLAIN_ALGORITHM): replay_plain}


def plain_header(
    settings: Mapping[str, SettingValue],
    *,
    inputs: tuple[LogInput, ...] = (),
    tool_version: str,
) -> LogHeader:
    """The header of a plain launch log (technology ``plain``, 48 zero bytes to start).

    Args:
        settings: the launch's settings (informational: none of them enters the transcript).
        inputs: the input files with their sizes and digests.
        tool_version: the writer's version.
    """
    from cvmlaunch.measure.log import LogHeader, Technology

    return LogHeader(
        technology=Technology.PLAIN,
        algorithm=PLAIN_ALGORITHM,
        settings=settings,
        inputs=inputs,
        tool_version=tool_version,
        initial_digest=ZERO_DIGEST,
    )


def plain_log(plan: Plan, header: LogHeader) -> MeasurementLog:
    """The log a plain launch of ``plan`` must produce, predicted from the plan alone.

    One ``plain.copy`` record per memory region, in populate order, as
    :func:`cvmlaunch.kvm_map.populate_plain` records them (no per-page hashes). A host that
    pre-faults adds ``plain.pre_fault`` records, which do not change the digest.

    Args:
        plan: the plan (memory regions only; a plain launch has no VMSAs).
        header: a plain header (:func:`plain_header`).

    Returns:
        The log; its footer digest is the transcript digest the real launch's log ends with.

    Raises:
        LogFormatError: the plan has VMSA regions (a plain VM has none).
    """
    from cvmlaunch.digests import entry_for_range
    from cvmlaunch.measure.log import complete_log

    if plan.vmsa_regions:
        raise LogFormatError("a plain launch has no VMSA regions")
    entries = [
        entry_for_range(
            seq=i,
            op=LogOp.PLAIN_COPY,
            gpa=region.gpa,
            size=region.size,
            page_type=region.page_type,
            measured=region.measured,
            provenance=region.provenance,
            data=region.data,
            with_pages=False,
            digest_after=None,
        )
        for i, region in enumerate(plan.memory_regions)
    ]
    return complete_log(header, entries)
