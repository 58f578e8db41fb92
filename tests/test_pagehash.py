"""The native page hasher cvmlaunch._pagehash: present in this install, the SHA-384 of every
page exactly as hashlib computes it, from any buffer, with clear errors for pages outside it;
and the SNP fold gives the same digests with it and without it (hashlib page by page).

The module is optional for users (an install without a C compiler falls back to hashlib), but
not here: a development install builds it, so its absence fails these tests unless
``CVMLAUNCH_NO_NATIVE=1`` says that this environment is meant to run without it
(tests/conftest.py, ``load_native_pagehash``).
"""

from __future__ import annotations

import hashlib
import mmap
import random
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cvmlaunch import digests
from cvmlaunch.layout import PAGE_SIZE, PageType, Plan, Provenance, Region, SourceKind
from cvmlaunch.measure import snp_chain
from tests.conftest import load_native_pagehash
from tests.vectors import sha384_vector

#: FIPS 180-2, appendix D.1.
ABC_SHA384 = sha384_vector("abc").digest
#: SHA-384 of one all-zero 4 KiB page (as published for empty SEV-SNP pages, e.g. the
#: CONTENTS of a zero-filled NORMAL page).
ZERO_PAGE_SHA384 = hashlib.sha384(bytes(PAGE_SIZE)).hexdigest()


@pytest.fixture(scope="module")
def native() -> ModuleType:
    module = load_native_pagehash()
    assert isinstance(module, ModuleType)
    return module


def _expected(data: bytes, first: int, count: int) -> bytes:
    return b"".join(
        hashlib.sha384(data[i * PAGE_SIZE : (i + 1) * PAGE_SIZE]).digest()
        for i in range(first, first + count)
    )


def test_present_and_used_by_the_fold(native: ModuleType) -> None:
    assert native.PAGE_SIZE == PAGE_SIZE
    assert native.DIGEST_SIZE == snp_chain.DIGEST_SIZE
    assert native.BACKEND in ("SHA384_Init/Update/Final", "SHA384")
    assert digests._sha384_pages is native.sha384_pages
    assert digests._sha384 is native.sha384


def test_known_answers(native: ModuleType) -> None:
    page = b"abc" + bytes(PAGE_SIZE - 3)
    assert native.sha384_pages(bytes(PAGE_SIZE), 0, 1).hex() == ZERO_PAGE_SHA384
    # a whole page is hashed, never a prefix: "abc" + zeros is not SHA-384("abc")
    assert native.sha384_pages(page, 0, 1) == hashlib.sha384(page).digest()
    assert native.sha384_pages(page, 0, 1).hex() != ABC_SHA384
    assert native.sha384_pages(b"", 0, 0) == b""
    assert native.sha384_pages(bytes(3 * PAGE_SIZE), 3, 0) == b""


def test_one_shot_known_answers(native: ModuleType) -> None:
    """FIPS 180-2 D.1 and D.2 (one and two blocks), the empty message, a PAGE_INFO-sized one."""
    assert native.sha384(b"abc").hex() == ABC_SHA384
    two_blocks = (
        b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
        b"ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu"
    )
    assert native.sha384(two_blocks).hex() == sha384_vector("two-blocks").digest
    assert native.sha384(b"").hex() == sha384_vector("empty").digest
    with pytest.raises(TypeError):
        native.sha384("text")


@settings(max_examples=60, deadline=None)
@given(message=st.binary(max_size=600), kind=st.sampled_from(["bytes", "bytearray", "memoryview"]))
def test_one_shot_equals_hashlib(native: ModuleType, message: bytes, kind: str) -> None:
    buf = {"bytes": message, "bytearray": bytearray(message), "memoryview": memoryview(message)}[
        kind
    ]
    assert native.sha384(buf) == hashlib.sha384(message).digest()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    npages=st.integers(0, 40),
    extra=st.integers(0, PAGE_SIZE - 1),
    first=st.integers(0, 40),
    count=st.integers(0, 40),
    seed=st.integers(0, 2**32 - 1),
    kind=st.sampled_from(["bytes", "bytearray", "memoryview", "offset-memoryview", "mmap"]),
)
def test_equals_hashlib_for_any_buffer(
    native: ModuleType, npages: int, extra: int, first: int, count: int, seed: int, kind: str
) -> None:
    data = random.Random(seed).randbytes(npages * PAGE_SIZE + extra)
    first = min(first, npages)
    count = min(count, npages - first)
    expected = _expected(data, first, count)
    if kind == "bytes":
        assert native.sha384_pages(data, first, count) == expected
    elif kind == "bytearray":
        assert native.sha384_pages(bytearray(data), first, count) == expected
    elif kind == "memoryview":
        assert native.sha384_pages(memoryview(data), first, count) == expected
    elif kind == "offset-memoryview":
        # pages counted from the view's start, wherever it lies in the underlying object
        shifted = b"\x5a" * (seed % 97 + 1) + data
        view = memoryview(shifted)[seed % 97 + 1 :]
        assert native.sha384_pages(view, first, count) == expected
    else:
        with mmap.mmap(-1, max(len(data), 1)) as m:
            m[: len(data)] = data
            assert native.sha384_pages(m, first, count) == expected


def test_file_mapping(native: ModuleType, tmp_path: Path) -> None:
    data = random.Random(7).randbytes(5 * PAGE_SIZE)
    path = tmp_path / "pages.bin"
    path.write_bytes(data)
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as m:
        assert native.sha384_pages(m, 1, 4) == _expected(data, 1, 4)


@pytest.mark.parametrize(
    ("size", "first", "count", "match"),
    [
        (
            4 * PAGE_SIZE,
            0,
            5,
            r"first_page 0 \+ count 5 is more than the 4 whole pages in the buffer \(16384 bytes\)",
        ),
        (4 * PAGE_SIZE, 4, 1, r"first_page 4 \+ count 1 is more than the 4 whole pages"),
        (4 * PAGE_SIZE, 5, 0, r"first_page 5 \+ count 0 is more than the 4 whole pages"),
        (4 * PAGE_SIZE - 1, 0, 4, r"the 3 whole pages in the buffer \(16383 bytes\)"),
        (100, 0, 1, r"the 0 whole pages in the buffer \(100 bytes\)"),
        (4 * PAGE_SIZE, -1, 1, r"first_page \(-1\) and count \(1\) must not be negative"),
        (4 * PAGE_SIZE, 0, -1, r"first_page \(0\) and count \(-1\) must not be negative"),
        (4 * PAGE_SIZE, 2**62, 2**62, "is more than the 4 whole pages"),  # no overflow
    ],
)
def test_pages_outside_the_buffer_are_refused(
    native: ModuleType, size: int, first: int, count: int, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        native.sha384_pages(bytes(size), first, count)


def test_bad_arguments(native: ModuleType) -> None:
    with pytest.raises(TypeError, match="takes 3 arguments"):
        native.sha384_pages(bytes(PAGE_SIZE), 0)
    with pytest.raises(TypeError):
        native.sha384_pages("text", 0, 0)  # str has no buffer protocol
    with pytest.raises(TypeError):
        native.sha384_pages(bytes(PAGE_SIZE), 0.0, 1)
    with pytest.raises(OverflowError):
        native.sha384_pages(bytes(PAGE_SIZE), 2**64, 1)
    strided = memoryview(bytes(2 * PAGE_SIZE))[::2]
    with pytest.raises(BufferError):  # not contiguous: pages would not be what they seem
        native.sha384_pages(strided, 0, 1)


# ------------------------------------------------------------------ the fold, both ways


def _region(npages: int, data_len: int, seed: int, gpa: int = 0x10_0000) -> Region:
    data = random.Random(seed).randbytes(data_len)
    return Region(
        gpa, npages * PAGE_SIZE, PageType.NORMAL, True, Provenance(SourceKind.GENERATED, "t"), data
    )


def _by_definition(digest: bytes, region: Region) -> bytes:
    for gpa, page in region.pages():
        info = snp_chain.page_info(digest, hashlib.sha384(page).digest(), region.page_type, gpa)
        digest = hashlib.sha384(info).digest()
    return digest


@pytest.mark.usefixtures("snp_fold_path")
def test_fold_with_and_without_the_native_hasher(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(snp_chain, "BATCH_PAGES", 7)  # batches that do not divide the regions
    # a partial last data page, zero pages after it, and a region made of data pages only
    regions = [_region(50, 30 * PAGE_SIZE + 123, seed=3), _region(33, 33 * PAGE_SIZE, 4, 1 << 30)]
    expected = snp_chain.ZERO_DIGEST
    for region in regions:
        expected = _by_definition(expected, region)
    assert snp_chain.fold_plan(Plan.of(regions)) == expected
    assert snp_chain.fold_plan(Plan.of(regions), workers=1) == expected
    assert snp_chain.fold_plan(Plan.of(regions), workers=2) == expected


@pytest.mark.usefixtures("snp_fold_path")
def test_page_hashes_both_ways() -> None:
    region = _region(9, 5 * PAGE_SIZE + 1, seed=5)
    pages = [hashlib.sha384(page).digest() for _, page in region.pages()]
    for first in range(10):
        for count in range(10 - first):
            assert snp_chain.page_hashes(region, first, count) == pages[first : first + count]


@settings(max_examples=40, deadline=None)
@given(data=st.binary(max_size=3 * PAGE_SIZE), fill=st.integers(0, 40 * PAGE_SIZE))
def test_range_sha384_is_the_hash_of_the_zero_filled_range(data: bytes, fill: int) -> None:
    size = len(data) + fill
    assert digests.range_sha384(data, size) == hashlib.sha384(data + bytes(fill)).digest()
    assert digests.range_sha384(memoryview(data), size) == digests.range_sha384(data, size)
