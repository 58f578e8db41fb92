"""The SNP fold hashes large regions' page contents on worker threads: it must give exactly
the page-by-page digest (the spec's definition), whatever the worker count and batch cut."""

from __future__ import annotations

import hashlib
import random
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cvmlaunch.layout import PAGE_SIZE, PageType, Plan, Provenance, Region, SourceKind
from cvmlaunch.measure import snp_chain
from cvmlaunch.measure.snp_chain import (
    BATCH_PAGES,
    ZERO_DIGEST,
    extend,
    fold_plan,
    fold_region,
    page_hashes,
    page_info,
)


def _page_by_page(digest: bytes, region: Region) -> bytes:
    """The definition: SHA-384 of each page's PAGE_INFO, contents hashed from Region.pages()."""
    for gpa, page in region.pages():
        contents = (
            hashlib.sha384(page).digest() if region.page_type.hashes_contents else ZERO_DIGEST
        )
        digest = hashlib.sha384(page_info(digest, contents, region.page_type, gpa)).digest()
    return digest


@given(
    digest=st.binary(min_size=48, max_size=48),
    contents=st.lists(st.binary(min_size=48, max_size=48), max_size=4),
    page_type=st.sampled_from(list(PageType)),
    page=st.integers(0, (1 << 52) - 1 - 4),
)
def test_the_chain_is_sha384_of_page_info(
    digest: bytes, contents: list[bytes], page_type: PageType, page: int
) -> None:
    # the loop every fold and replay goes through builds page_info's bytes, up to the last GPA
    gpa = page * PAGE_SIZE
    expected = digest
    for i, h in enumerate(contents):
        expected = hashlib.sha384(page_info(expected, h, page_type, gpa + i * PAGE_SIZE)).digest()
    assert snp_chain._chain(digest, contents, page_type, gpa) == expected
    if contents:
        assert (
            extend(digest, contents[0], page_type, gpa)
            == hashlib.sha384(page_info(digest, contents[0], page_type, gpa)).digest()
        )


def _region(npages: int, data_len: int, seed: int, page_type: PageType = PageType.NORMAL) -> Region:
    data = random.Random(seed).randbytes(data_len)
    return Region(
        0x10_0000, npages * PAGE_SIZE, page_type, True, Provenance(SourceKind.GENERATED, "t"), data
    )


#: The parallel path is taken from this many pages on in these tests (monkeypatched).
SMALL_MIN = 2 * BATCH_PAGES


@pytest.fixture(autouse=True)
def _parallel_from_small_regions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(snp_chain, "PARALLEL_MIN_PAGES", SMALL_MIN)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    npages=st.integers(SMALL_MIN, SMALL_MIN + 3 * BATCH_PAGES + 1),
    fill=st.floats(0.0, 1.0),
    workers=st.integers(1, 4),
    seed=st.integers(0, 2**32 - 1),
)
def test_parallel_fold_equals_page_by_page(
    npages: int, fill: float, workers: int, seed: int
) -> None:
    data_len = int(npages * PAGE_SIZE * fill)
    region = _region(npages, data_len, seed)
    start = random.Random(seed).randbytes(48)
    expected = _page_by_page(start, region)
    assert fold_region(start, region, workers=workers) == expected
    assert fold_region(start, region, workers=1) == expected


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    npages=st.integers(1, 2 * BATCH_PAGES + 3),
    first=st.integers(0, 2 * BATCH_PAGES + 3),
    count=st.integers(0, BATCH_PAGES + 2),
    data_len=st.integers(0, (2 * BATCH_PAGES + 3) * PAGE_SIZE),
)
def test_page_hashes_of_any_slice(npages: int, first: int, count: int, data_len: int) -> None:
    data_len = min(data_len, npages * PAGE_SIZE)
    first = min(first, npages)
    count = min(count, npages - first)
    region = _region(npages, data_len, seed=npages)
    pages = [hashlib.sha384(page).digest() for _, page in region.pages()]
    assert page_hashes(region, first, count) == pages[first : first + count]


def test_large_layout_known_answer_and_worker_counts_agree() -> None:
    # 3 MiB of data in a 4 MiB NORMAL region, then a ZERO region: parallel, serial and the
    # page-by-page definition agree; the value is pinned to catch any change in the chain.
    regions = [
        _region(1024, 3 << 20, seed=1),
        Region(0x80_0000, 16 * PAGE_SIZE, PageType.ZERO, False, Provenance(SourceKind.ZERO)),
    ]
    plan = Plan.of(regions)
    expected = ZERO_DIGEST
    for region in regions:
        expected = _page_by_page(expected, region)
    assert fold_plan(plan) == expected
    assert fold_plan(plan, workers=1) == expected
    assert fold_plan(plan, workers=3) == expected
    assert snp_chain.default_workers() >= 1


@pytest.mark.timeout(60)
@pytest.mark.parametrize("failing", [0, 3, 17])
def test_a_failing_batch_raises_in_the_caller_without_hanging(
    monkeypatch: pytest.MonkeyPatch, failing: int
) -> None:
    # Whichever thread hashes the failing batch, the others must stop (not wait for room that
    # the never-chained batch will not free) and the error must reach the caller.
    def broken(region: Region, first: int, count: int) -> list[bytes]:
        if first == failing * BATCH_PAGES:
            time.sleep(0.2)  # the other threads run out of room meanwhile
            raise MemoryError("no room for hashes")
        return page_hashes(region, first, count)

    monkeypatch.setattr(snp_chain, "page_hashes", broken)
    region = _region(40 * BATCH_PAGES, 0, seed=2)
    for _ in range(2):
        with pytest.raises(MemoryError, match="no room"):
            fold_region(ZERO_DIGEST, region, workers=3)
