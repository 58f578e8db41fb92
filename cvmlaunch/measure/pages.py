"""SHA-384 of 4 KiB pages, of ranges and of short messages, as every measurement needs them.

Rule: one place hashes pages and ranges. The SNP fold (:mod:`cvmlaunch.measure.snp_chain`)
and the launch log (:func:`cvmlaunch.measure.log.entry_for_range`) take their per-page
SHA-384s from :func:`page_hashes`, so a log's page hashes and the digest it replays to come
from the same code; the log's content hash of a range and TDX's come from
:func:`range_sha384`.

Whole pages are hashed in batches by the optional native module :mod:`cvmlaunch._pagehash`
(a generic "SHA-384 of each 4 KiB page" primitive, OpenSSL's SHA-384 as hashlib has it, with
the GIL released for the whole batch) when the install built it, else page by page with
hashlib; the digests are the same. Pure computation: buffers in, digests out.
"""

from __future__ import annotations

import hashlib

from cvmlaunch.layout import PAGE_SIZE, Buffer

TYPE_CHECKING = False  # typing is not imported at run time (start-up time)
if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["DIGEST_SIZE", "ZERO_PAGE_SHA384", "page_hashes", "range_sha384", "sha384"]

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
    populated), streamed: the zero fill is never built whole. ``data`` must fit the range."""
    h = hashlib.sha384(data)
    left = size - memoryview(data).nbytes
    zeros = memoryview(_ZERO_FILL)
    while left > 0:
        n = min(left, len(zeros))
        h.update(zeros[:n])
        left -= n
    return h.digest()
