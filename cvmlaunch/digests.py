"""SHA-384 of 4 KiB pages, of ranges and of short messages, and the launch-log record of a
populated range built from them.

Rule 1: one place hashes pages and ranges. The SNP fold (:mod:`cvmlaunch.measure.snp_chain`)
and every launch-log record take their per-page SHA-384s from :func:`page_hashes`, so a log's
page hashes and the digest it replays to come from the same code; every content hash of a
range (a record's, a log check's, the guest report's prediction) comes from
:func:`range_sha384`.

Rule 2: one function builds the record of a populated range, :func:`entry_for_range`. The
prediction (:mod:`cvmlaunch.measure`: SNP, SEV, TDX and plain logs) and the KVM engine
(:mod:`cvmlaunch.kvm_map`, what ``launch --log`` writes) both call it, so the record the
engine writes for a range and the one the prediction expects are made by the same code, with
the same zero rule (:func:`~cvmlaunch.log_entry.zero_by_construction`) and the same hashers.

Rule 3: a core module below both layers: it imports only :mod:`cvmlaunch.layout`,
:mod:`cvmlaunch.log_entry` and :mod:`cvmlaunch.errors` (the record types only when a record
is built, so that computing a digest does not create them). Pure computation: buffers in,
digests out.

Whole pages are hashed in batches by the optional native module :mod:`cvmlaunch._pagehash`
(a generic "SHA-384 of each 4 KiB page" primitive, OpenSSL's SHA-384 as hashlib has it, with
the GIL released for the whole batch) when the install built it, else page by page with
hashlib; the digests are the same.
"""

from __future__ import annotations

import hashlib

from cvmlaunch.errors import ConfigError
from cvmlaunch.layout import PAGE_SIZE, Buffer

TYPE_CHECKING = False  # typing is not imported at run time (start-up time)
if TYPE_CHECKING:
    from collections.abc import Callable

    from cvmlaunch.layout import PageType, Provenance
    from cvmlaunch.log_entry import LogEntry, LogOp

__all__ = [
    "DIGEST_SIZE",
    "ZERO_PAGE_SHA384",
    "content_sha384",
    "entry_for_range",
    "page_hashes",
    "range_sha384",
    "sha384",
]

#: SHA-384.
DIGEST_SIZE = 48
#: SHA-384 of an all-zero 4 KiB page (the zero fill beyond a range's data).
ZERO_PAGE_SHA384 = hashlib.sha384(bytes(PAGE_SIZE)).digest()
#: Zero fill fed to a range's hash in pieces of this size (64 KiB: few update calls, little
#: memory).
_ZERO_FILL = bytes(16 * PAGE_SIZE)


def _native_hashers() -> tuple[
    Callable[[Buffer, int, int], bytes] | None, Callable[[Buffer], bytes] | None
]:
    """``sha384_pages`` and ``sha384`` of :mod:`cvmlaunch._pagehash` if the install built it
    and it found a working libcrypto (a small extension that imports nothing beyond
    ``_hashlib``), else None and None."""
    try:
        from cvmlaunch._pagehash import sha384, sha384_pages
    except ImportError:
        return None, None
    return sha384_pages, sha384


#: ``_sha384_pages(buffer, first_page, count)``: the 48-byte SHA-384 of each whole page,
#: concatenated; ``_sha384(message)``: one SHA-384 digest (for short messages such as the SNP
#: chain's 112-byte PAGE_INFOs, half the cost of a hashlib object). Both None without the
#: native module (hashlib then; tests set them to None to check that path).
_sha384_pages, _sha384 = _native_hashers()


def _hashlib_sha384(message: Buffer) -> bytes:
    return hashlib.sha384(message).digest()


def sha384() -> Callable[[Buffer], bytes]:
    """The fastest one-shot ``SHA-384(message) -> digest`` function this install has (the
    native one, else hashlib's). Look it up once per loop: it is chosen when called."""
    return _sha384 or _hashlib_sha384


def page_hashes(data: Buffer, first: int, count: int) -> list[bytes]:
    """SHA-384 of pages ``first`` .. ``first + count - 1`` of a range that holds ``data``
    followed by zeros.

    Pages inside ``data`` are hashed in place (no copies): by the native batch hasher in one
    call that releases the GIL for all of them, else one hashlib call per page (hashlib
    releases the GIL for each 4 KiB hash). Either way calls on several threads run in
    parallel. The page holding the end of ``data`` is zero-padded; pages past it are all-zero
    and share one known hash.
    """
    view = memoryview(data)
    full, tail = divmod(len(view), PAGE_SIZE)
    stop = first + count
    whole = min(stop, full)
    out: list[bytes]
    if _sha384_pages is not None and whole > first:
        block = _sha384_pages(view, first, whole - first)
        out = [block[i : i + DIGEST_SIZE] for i in range(0, len(block), DIGEST_SIZE)]
    else:
        one = hashlib.sha384
        out = [one(view[i * PAGE_SIZE : (i + 1) * PAGE_SIZE]).digest() for i in range(first, whole)]
    for i in range(max(first, full), stop):
        if i == full and tail:
            last = bytes(view[full * PAGE_SIZE :]) + bytes(PAGE_SIZE - tail)
            out.append(hashlib.sha384(last).digest())
        else:
            out.append(ZERO_PAGE_SHA384)
    return out


def range_sha384(data: Buffer, size: int) -> bytes:
    """SHA-384 of a ``size``-byte range that holds ``data`` followed by zeros (the range as
    populated), streamed: the zero fill is never built whole.

    Raises:
        ConfigError: more data than the range holds.
    """
    h = hashlib.sha384(data)
    left = size - memoryview(data).nbytes
    if left < 0:
        raise ConfigError(f"contents of {size - left:#x} bytes for a range of {size:#x}")
    zeros = memoryview(_ZERO_FILL)
    while left > 0:
        n = min(left, len(zeros))
        h.update(zeros[:n])
        left -= n
    return h.digest()


def content_sha384(data: Buffer, size: int) -> bytes | None:
    """The ``content_sha384`` of the record of a ``size``-byte range for which the plan gives
    ``data`` (the rest zero fill): None, the zero marker, for a range given no bytes at all
    (:func:`~cvmlaunch.log_entry.zero_by_construction`: O(1) however large), else
    :func:`range_sha384` of the range.

    Raises:
        ConfigError: more data than the range holds.
    """
    from cvmlaunch.log_entry import zero_by_construction

    if zero_by_construction(memoryview(data).nbytes):
        return None
    return range_sha384(data, size)


def entry_for_range(
    *,
    seq: int,
    op: LogOp,
    gpa: int,
    size: int,
    page_type: PageType,
    measured: bool,
    provenance: Provenance,
    data: Buffer,
    with_pages: bool,
    digest_after: bytes | None = None,
    zero: bool | None = None,
    known_sha384: bytes | None = None,
) -> LogEntry:
    """Build the record of a populated range, hashing its contents (Rule 2: the one builder).

    A range with no ``data`` is zero by construction: its record carries the zero marker
    (``content_sha384`` None, :func:`~cvmlaunch.log_entry.zero_by_construction`) and costs
    O(1), or O(pages) with ``with_pages`` (every page hash is the known zero page's).

    Args:
        seq, op, gpa, size, page_type, measured, provenance, digest_after: as in
            :class:`~cvmlaunch.log_entry.LogEntry`.
        data: the first bytes of the range; the rest (up to ``size``) is zero.
        with_pages: also record the SHA-384 of every 4 KiB page (SNP needs them to replay).
        zero: whether the record carries the zero marker; None (the default) applies the
            rule to ``data``. The KVM engine passes the rule's answer for the whole plan
            region when the range is a piece of it (a pre-fault call the kernel split).
        known_sha384: the SHA-384 of the range's bytes, when the caller has already computed
            it (by :func:`range_sha384`, e.g. on a second thread during a copy): it is not
            computed again.

    Returns:
        The record.

    Raises:
        ConfigError: more data than the range holds.
    """
    from cvmlaunch.log_entry import LogEntry, zero_by_construction

    view = memoryview(data)
    if zero is None:
        zero = zero_by_construction(view.nbytes)
    content: bytes | None = None
    if not zero:
        content = known_sha384 if known_sha384 is not None else range_sha384(view, size)
    pages: tuple[bytes, ...] = ()
    if with_pages:
        pages = tuple(page_hashes(view, 0, size // PAGE_SIZE))
    return LogEntry(
        seq=seq,
        op=op,
        gpa=gpa,
        size=size,
        page_type=page_type,
        measured=measured,
        provenance=provenance,
        content_sha384=content,
        page_sha384=pages,
        digest_after=digest_after,
    )
