"""The SEV-SNP launch digest as a fold: one chained SHA-384 over PAGE_INFO per 4 KiB page.

Rule 1: this is the only place that knows the PAGE_INFO structure. The digest of a launch plan
(:func:`fold_plan`), the log producer (:func:`log_plan`), the log replayer
(:func:`replay_snp`) and :func:`extend` all go through one loop, :func:`_chain`, so they
cannot disagree; :func:`page_info` spells the same bytes out for one page (the tests check
the loop against it).

Rule 2: pure computation; buffers in, digests out. Pages and PAGE_INFOs are hashed by
:mod:`cvmlaunch.digests` (the optional native batch hasher, else hashlib; the digests are the
same). Nothing about PAGE_INFO is in that module.

Spec: AMD SEV-SNP Firmware ABI, SNP_LAUNCH_UPDATE, "PAGE_INFO" (Table: 112 bytes). Running
value GCTX.LD starts as 48 zero bytes; for every page LD = SHA-384(PAGE_INFO) where PAGE_INFO
is DIGEST_CUR (LD) | CONTENTS (SHA-384 of the page for NORMAL and VMSA pages, else 48 zero
bytes) | LENGTH u16 = 0x70 | PAGE_TYPE u8 | IMI_PAGE u8 | VMPL3/2/1_PERMS u8 x3 | reserved u8 |
GPA u64, little endian. KVM measures the pages of a LAUNCH_UPDATE range in ascending GPA order
and the VMSAs at LAUNCH_FINISH, each at GPA 0xFFFFFFFFF000.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import struct
from collections.abc import Iterable, Iterator, Sequence

from cvmlaunch import digests as _digests
from cvmlaunch.errors import ConfigError, LogFormatError
from cvmlaunch.layout import (
    PAGE_SIZE,
    VMSA_GPA,
    Buffer,
    PageType,
    Plan,
    Region,
)

TYPE_CHECKING = False
if TYPE_CHECKING:  # the log model is imported only when a log is made (start-up time)
    from cvmlaunch.log_entry import LogEntry
    from cvmlaunch.measure.log import ContentProvider, LogHeader, MeasurementLog

__all__ = [
    "DIGEST_SIZE",
    "REPLAYERS",
    "SNP_ALGORITHM",
    "ZERO_DIGEST",
    "FoldState",
    "default_workers",
    "extend",
    "fold_from",
    "fold_plan",
    "fold_region",
    "fold_vmsas",
    "log_plan",
    "page_hashes",
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
#: PAGE_INFO's GPA field is a u64 (VMSAs sit at 0xFFFFFFFFF000, inside it).
_GPA_LIMIT = 1 << 64


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
    return _chain(digest, (contents,), page_type, gpa)


#: Regions of at least this many pages (2 MiB) hash their page contents on worker threads.
#: With the native hasher a 4 MiB firmware image folds in about 60% of its serial time,
#: thread start and the ``threading`` import included; smaller regions stay serial.
PARALLEL_MIN_PAGES = 512
#: Pages per content-hashing batch (1 MiB). The native hasher hashes a batch with the GIL
#: released once, so a thread hands the GIL over once per batch rather than per page; from
#: 64 to 1024 pages the 256 MiB bench moves by 1-3% (larger a little faster), and a 4 MiB
#: firmware image still makes 4 batches to spread over the threads.
BATCH_PAGES = 256
#: Batches hashed but not yet chained, per worker: bounds the memory held by waiting hashes.
_AHEAD_PER_WORKER = 4


def default_workers() -> int:
    """Content-hashing threads for a large region: the CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def page_hashes(region: Region, first: int, count: int) -> list[bytes]:
    """SHA-384 of pages ``first`` .. ``first + count - 1`` of ``region``'s contents (see
    :func:`cvmlaunch.digests.page_hashes`)."""
    return _digests.page_hashes(region.data, first, count)


#: PAGE_INFO's GPA field, bytes 0x68..0x6F (the rest of the tail is the same for every page).
_GPA_FIELD = struct.Struct("<Q")


def _chain(digest: bytes, contents: Iterable[bytes], page_type: PageType, gpa: int) -> bytes:
    """The PAGE_INFO steps of consecutive pages of one type from ``gpa`` on, one per item of
    ``contents`` (each page's CONTENTS field): the bytes of :func:`page_info`, with the part
    of the tail that is the same for every page packed once (the chain runs under the GIL
    while the page hashes run beside it: every Python operation per page counts)."""
    sha384 = _digests.sha384()
    pack_gpa = _GPA_FIELD.pack
    fixed = _PAGE_INFO_TAIL.pack(_PAGE_INFO_SIZE, page_type, 0, 0, 0, 0, 0, 0)[:-8]
    for page_sha384 in contents:
        digest = sha384(digest + page_sha384 + fixed + pack_gpa(gpa))
        gpa += PAGE_SIZE
    return digest


def _fold_parallel(digest: bytes, region: Region, workers: int) -> bytes:
    """:func:`fold_region` with the page-content hashes on ``workers`` threads.

    The calling thread and ``workers - 1`` helpers take batches of :data:`BATCH_PAGES` pages
    in order and hash them; whoever finishes a batch chains every finished batch that is next
    in line (under a lock), so the chain follows the hashing without a third thread competing
    for the GIL. Hashing a batch (:func:`page_hashes`) holds the GIL only around one native
    call, or around each page with the hashlib fallback; the chain holds it throughout (one
    SHA-384 of 112 bytes per page, too short for hashlib to release it), so with N free cores
    the fold takes about (hashing + chain) / N. A thread takes a new batch only while fewer than
    ``workers * _AHEAD_PER_WORKER`` batches wait to be chained (bounded memory). Plain
    ``threading``: the measurement path must not pay for importing ``concurrent.futures``.
    """
    import threading

    npages = region.npages
    nbatches = -(-npages // BATCH_PAGES)
    batches = iter(range(nbatches))
    hashed: list[list[bytes] | None] = [None] * nbatches
    room = threading.Semaphore(workers * _AHEAD_PER_WORKER)
    chain_lock = threading.Lock()
    state = {"next": 0}
    result = [digest]
    errors: list[BaseException] = []
    stop = threading.Event()

    def chain_ready() -> None:
        with chain_lock:
            k = state["next"]
            while k < nbatches and (hashes := hashed[k]) is not None:
                gpa = region.gpa + k * BATCH_PAGES * PAGE_SIZE
                result[0] = _chain(result[0], hashes, region.page_type, gpa)
                hashed[k] = None
                k += 1
                room.release()
            state["next"] = k

    def work() -> None:
        try:
            while room.acquire() and not stop.is_set():
                k = next(batches, None)  # one C-level call under the GIL: each batch once
                if k is None:
                    return
                start = k * BATCH_PAGES
                hashed[k] = page_hashes(region, start, min(BATCH_PAGES, npages - start))
                chain_ready()
        except BaseException as exc:  # re-raised in the calling thread
            errors.append(exc)
            stop.set()
            for _ in range(workers):
                room.release()  # wake every thread waiting for room: the failed batch
                # will never be chained, so room would never be made otherwise

    helpers = [
        threading.Thread(target=work, name=f"cvmlaunch-snp-{i}", daemon=True)
        for i in range(1, workers)
    ]
    for t in helpers:
        t.start()
    try:
        work()
    finally:
        stop.set()
        for _ in helpers:
            room.release()  # wake helpers waiting for room
        for t in helpers:
            t.join()
    if errors:
        raise errors[0]
    if state["next"] != nbatches:  # pragma: no cover - every batch is chained once hashed
        raise RuntimeError("SNP fold: not every batch was chained")
    return result[0]


def fold_region(digest: bytes, region: Region, *, workers: int | None = None) -> bytes:
    """Fold every page of ``region`` into ``digest`` in ascending GPA order.

    The page-content hashes of a NORMAL or VMSA region of at least
    :data:`PARALLEL_MIN_PAGES` pages are computed on ``workers`` threads (default
    :func:`default_workers`) while this thread chains them in order; the digest is the same
    as with ``workers=1`` (serial).
    """
    page_type = region.page_type
    npages = region.npages
    if not page_type.hashes_contents:
        return _chain(digest, itertools.repeat(ZERO_DIGEST, npages), page_type, region.gpa)
    workers = default_workers() if workers is None else workers
    if workers > 1 and npages >= PARALLEL_MIN_PAGES:
        return _fold_parallel(digest, region, workers)
    for start in range(0, npages, BATCH_PAGES):
        hashes = page_hashes(region, start, min(BATCH_PAGES, npages - start))
        digest = _chain(digest, hashes, page_type, region.gpa + start * PAGE_SIZE)
    return digest


def fold_plan(plan: Plan, initial: bytes = ZERO_DIGEST, *, workers: int | None = None) -> bytes:
    """The SNP launch digest of a launch plan: every region, in plan order.

    Args:
        plan: the plan (memory regions, then one VMSA region per vCPU).
        initial: the starting value (48 zero bytes, or a precomputed digest to continue from).
        workers: content-hashing threads for large regions (see :func:`fold_region`); 1 is
            serial. The digest does not depend on it.

    Returns:
        The 48-byte launch digest (the attestation report's MEASUREMENT).
    """
    digest = initial
    for region in plan.regions:
        digest = fold_region(digest, region, workers=workers)
    return digest


@dataclasses.dataclass(frozen=True, slots=True)
class FoldState:
    """A launch-digest fold paused after the first ``regions`` regions of a plan.

    The PAGE_INFO chain carries nothing from one page to the next but DIGEST_CUR, so the
    state is the running GCTX.LD (48 bytes) and how far into the plan it stands. Plans that
    share their first ``regions`` regions (the firmware pages, the metadata sections and the
    kernel-hashes page of one firmware and VMM) resume from one saved state; only what
    follows (the VMSAs of each vCPU type and count) is folded per plan.

    Args:
        digest: GCTX.LD after those regions (48 bytes).
        regions: how many regions of the plan it covers.

    Raises:
        ConfigError: a digest that is not 48 bytes or a negative region count.
    """

    digest: bytes = ZERO_DIGEST
    regions: int = 0

    def __post_init__(self) -> None:
        if len(self.digest) != DIGEST_SIZE:
            raise ConfigError(f"a fold state's digest is 48 bytes, not {len(self.digest)}")
        if self.regions < 0:
            raise ConfigError(f"a fold state's region count {self.regions} is negative")

    def to_dict(self) -> dict[str, object]:
        """The state as JSON-ready values (``digest`` hex, ``regions``), to save and resume."""
        return {"digest": self.digest.hex(), "regions": self.regions}

    @classmethod
    def from_dict(cls, value: dict[str, object]) -> FoldState:
        """Read :meth:`to_dict`'s form back.

        Raises:
            ConfigError: missing or malformed fields.
        """
        digest, regions = value.get("digest"), value.get("regions")
        if not isinstance(digest, str) or not isinstance(regions, int) or isinstance(regions, bool):
            raise ConfigError("a fold state needs a hex 'digest' and an integer 'regions'")
        try:
            raw = bytes.fromhex(digest)
        except ValueError as exc:
            raise ConfigError("a fold state's digest is not hex") from exc
        return cls(raw, regions)


def fold_from(
    plan: Plan,
    state: FoldState = FoldState(),
    *,
    stop: int | None = None,
    workers: int | None = None,
) -> FoldState:
    """Resume the fold of ``plan`` at ``state`` and fold its regions up to ``stop``.

    ``fold_from(plan).digest == fold_plan(plan)``; ``fold_from(plan, fold_from(plan,
    stop=k))`` gives the same digest, and so does resuming from the state of *another* plan
    whose first ``k`` regions are the same (the caller vouches for that: the state does not
    record which regions it folded).

    Args:
        plan: the plan.
        state: where to resume (default: the start, 48 zero bytes).
        stop: fold regions ``state.regions .. stop - 1`` (default: to the end).
        workers: content-hashing threads (see :func:`fold_region`).

    Raises:
        ConfigError: a ``state`` or ``stop`` outside the plan.
    """
    end = len(plan.regions) if stop is None else stop
    if not state.regions <= end <= len(plan.regions):
        raise ConfigError(
            f"cannot fold regions {state.regions}..{end} of a plan of {len(plan.regions)}"
        )
    digest = state.digest
    for region in plan.regions[state.regions : end]:
        digest = fold_region(digest, region, workers=workers)
    return FoldState(digest, end)


def fold_vmsas(digest: bytes, bsp: Buffer, ap: Buffer, counts: Iterable[int]) -> dict[int, bytes]:
    """The launch digest for each vCPU count in ``counts``, from the state before the VMSAs.

    KVM measures the BSP's VMSA, then one AP VMSA per further vCPU, all at
    :data:`~cvmlaunch.layout.VMSA_GPA`: the digest for ``n`` vCPUs is the chain after ``n``
    such steps, so every count up to the largest comes out of one pass (one PAGE_INFO hash
    per vCPU, two page hashes in all).

    Args:
        digest: GCTX.LD after every region but the VMSAs (e.g. a :class:`FoldState`'s).
        bsp: the BSP's VMSA page (4 KiB).
        ap: the APs' VMSA page (4 KiB; unused when every count is 1).
        counts: vCPU counts, each at least 1.

    Returns:
        ``{count: digest}`` for every distinct count.

    Raises:
        ConfigError: a count below 1.
    """
    wanted = sorted(set(counts))
    if wanted and wanted[0] < 1:
        raise ConfigError(f"vCPU count {wanted[0]} is out of range (at least 1)")
    out: dict[int, bytes] = {}
    if not wanted:
        return out
    sha384 = _digests.sha384()
    digest = _chain(digest, (sha384(bsp),), PageType.VMSA, VMSA_GPA)
    done = 1
    ap_sha384 = sha384(ap) if wanted[-1] > 1 else ZERO_DIGEST
    for count in wanted:
        while done < count:
            digest = _chain(digest, (ap_sha384,), PageType.VMSA, VMSA_GPA)
            done += 1
        out[count] = digest
    return out


def _entry_contents(entry: LogEntry) -> Iterable[bytes]:
    """The CONTENTS field of each page of a log record."""
    if not entry.page_type.hashes_contents:
        return itertools.repeat(ZERO_DIGEST, entry.size // PAGE_SIZE)
    if len(entry.page_sha384) * PAGE_SIZE != entry.size:
        raise LogFormatError(
            f"record {entry.seq}: a {entry.page_type.name} range needs one SHA-384 per page "
            f"({entry.size // PAGE_SIZE}), the log has {len(entry.page_sha384)}"
        )
    return entry.page_sha384


def _fold_entry(digest: bytes, entry: LogEntry) -> bytes:
    if entry.size % PAGE_SIZE or entry.gpa % PAGE_SIZE:
        raise LogFormatError(f"record {entry.seq}: range is not made of whole 4 KiB pages")
    if entry.gpa < 0 or entry.size < 0 or entry.gpa + entry.size > _GPA_LIMIT:
        raise LogFormatError(
            f"record {entry.seq}: range {entry.gpa:#x}+{entry.size:#x} does not fit the 64-bit "
            "PAGE_INFO GPA field"
        )
    return _chain(digest, _entry_contents(entry), entry.page_type, entry.gpa)


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


def log_plan(plan: Plan, header: LogHeader) -> MeasurementLog:
    """Fold ``plan`` and record one log entry per region (with per-page hashes).

    The digest is computed from the recorded page hashes by the same step the replayer uses,
    so a log always replays to the digest it reports.

    Args:
        plan: the plan.
        header: the header to write; its ``initial_digest`` is the starting value.

    Returns:
        The log; its footer holds the launch digest (equal to :func:`fold_plan`).

    Raises:
        ConfigError: the header is not an SNP header with a 48-byte initial digest.
    """
    from cvmlaunch.digests import entry_for_range
    from cvmlaunch.log_entry import LogOp
    from cvmlaunch.measure.log import LogFooter, MeasurementLog, Technology

    if header.technology is not Technology.SEV_SNP or header.algorithm != SNP_ALGORITHM:
        raise ConfigError("log_plan needs an SNP page-info-chain header")
    if header.initial_digest is None or len(header.initial_digest) != DIGEST_SIZE:
        raise ConfigError("an SNP log header needs a 48-byte initial_digest")
    digest = header.initial_digest
    entries: list[LogEntry] = []
    for seq, region in enumerate(plan.regions):
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
