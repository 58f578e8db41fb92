"""Core types: regions, memory map and layout validation."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cvmlaunch.errors import CvmLaunchError, LayoutError
from cvmlaunch.layout import (
    FOUR_GIB,
    PAGE_SIZE,
    VMSA_GPA,
    PageType,
    Plan,
    Provenance,
    Region,
    SourceKind,
)
from cvmlaunch.memory_map import MemoryMap, MemslotKind

PROV = Provenance(SourceKind.GENERATED, "test")


def region(gpa: int, size: int, **kw: object) -> Region:
    args: dict[str, object] = {"page_type": PageType.NORMAL, "measured": True, "provenance": PROV}
    args.update(kw)
    return Region(gpa, size, **args)  # type: ignore[arg-type]


def test_base_error_is_abstract() -> None:
    with pytest.raises(TypeError):
        CvmLaunchError("x")


def test_region_pages_pad_and_zero_fill() -> None:
    data = bytes(range(256)) * 20  # 5120 bytes: one full page, then 1024 bytes
    r = region(0x1000, 3 * PAGE_SIZE, data=data)
    pages = list(r.pages())
    assert [gpa for gpa, _ in pages] == [0x1000, 0x2000, 0x3000]
    assert bytes(pages[0][1]) == data[:PAGE_SIZE]
    assert bytes(pages[1][1]) == data[PAGE_SIZE:] + bytes(PAGE_SIZE - 1024)
    assert bytes(pages[2][1]) == bytes(PAGE_SIZE)
    assert b"".join(bytes(p) for _, p in pages) == r.contents()


@pytest.mark.parametrize(
    ("gpa", "size", "data", "message"),
    [
        (0x1001, PAGE_SIZE, b"", "not 4 KiB aligned"),
        (0x1000, 0, b"", "positive multiple"),
        (0x1000, 100, b"", "positive multiple"),
        (0x1000, PAGE_SIZE, bytes(PAGE_SIZE + 1), "do not fit"),
        (1 << 52, PAGE_SIZE, b"", "52-bit"),
    ],
)
def test_region_rejects(gpa: int, size: int, data: bytes, message: str) -> None:
    with pytest.raises(LayoutError, match=message):
        region(gpa, size, data=data)


def test_region_type_rules() -> None:
    with pytest.raises(LayoutError, match="cannot be measured"):
        region(0, PAGE_SIZE, page_type=PageType.ZERO, measured=True)
    with pytest.raises(LayoutError, match="carry no data"):
        region(0, PAGE_SIZE, page_type=PageType.ZERO, measured=False, data=b"x")
    cpuid = region(0, PAGE_SIZE, page_type=PageType.CPUID, measured=False, data=b"x")
    assert cpuid.npages == 1


def test_memory_map_small_and_split() -> None:
    small = MemoryMap.for_size(512 << 20, firmware_size=4 << 20)
    assert [(s.gpa, s.size, s.kind) for s in small.memslots] == [
        (0, 512 << 20, MemslotKind.RAM_LOW),
        (FOUR_GIB - (4 << 20), 4 << 20, MemslotKind.FIRMWARE),
    ]
    big = MemoryMap.for_size(4 << 30)
    assert [(s.gpa, s.size) for s in big.memslots] == [(0, 2 << 30), (FOUR_GIB, 2 << 30)]
    assert big.ram_size == 4 << 30
    # Just under the PCI hole: all below 4 GiB.
    assert len(MemoryMap.for_size(0xB000_0000 - PAGE_SIZE).memslots) == 1
    with pytest.raises(LayoutError):
        MemoryMap.for_size(12345)


def test_layout_keeps_order_and_checks_bounds() -> None:
    mem = MemoryMap.for_size(16 << 20)
    a = region(0x800000, PAGE_SIZE)
    b = region(0x1000, PAGE_SIZE)
    assert Plan.of([a, b], mem).regions == (a, b)
    with pytest.raises(LayoutError, match="not inside one memslot"):
        Plan.of([region(16 << 20, PAGE_SIZE)], mem)


def test_layout_vmsa_rules() -> None:
    v = region(
        VMSA_GPA,
        PAGE_SIZE,
        page_type=PageType.VMSA,
        provenance=Provenance(SourceKind.VMSA, index=0),
    )
    plan = Plan.of([region(0, PAGE_SIZE), v, v])
    assert plan.vmsa_regions == (v, v)
    assert len(plan.memory_regions) == 1
    with pytest.raises(LayoutError, match="after all memory"):
        Plan.of([v, region(0, PAGE_SIZE)])


@given(
    st.lists(
        st.tuples(st.integers(0, 64), st.integers(1, 8)),
        min_size=2,
        max_size=6,
    )
)
def test_layout_rejects_every_overlap(spans: list[tuple[int, int]]) -> None:
    regions = [region(p * PAGE_SIZE, n * PAGE_SIZE) for p, n in spans]
    pages = [set(range(p, p + n)) for p, n in spans]
    overlap = any(pages[i] & pages[j] for i in range(len(pages)) for j in range(i + 1, len(pages)))
    if overlap:
        with pytest.raises(LayoutError, match="overlaps"):
            Plan.of(regions)
    else:
        assert len(Plan.of(regions).regions) == len(regions)


@given(st.binary(max_size=3 * PAGE_SIZE), st.integers(3, 5))
def test_pages_concatenate_to_contents(data: bytes, npages: int) -> None:
    r = region(0, npages * PAGE_SIZE, data=data)
    joined = b"".join(bytes(p) for _, p in r.pages())
    assert hashlib.sha384(joined).digest() == hashlib.sha384(r.contents()).digest()
    assert joined[: len(data)] == data


@pytest.mark.parametrize(
    ("name", "home"),
    [
        ("MemoryMap", "cvmlaunch.memory_map"),
        ("Memslot", "cvmlaunch.memory_map"),
        ("MemslotKind", "cvmlaunch.memory_map"),
        ("LogEntry", "cvmlaunch.log_entry"),
        ("LogOp", "cvmlaunch.log_entry"),
        ("SnpLaunchIdentity", "cvmlaunch.launch_identity"),
        ("TdxLaunchIdentity", "cvmlaunch.launch_identity"),
    ],
)
def test_layout_reexports_the_split_core_types(name: str, home: str) -> None:
    """The core types kept in their own modules (start-up time) are still layout's names."""
    import importlib

    from cvmlaunch import layout

    value = getattr(layout, name)
    assert value is getattr(importlib.import_module(home), name)
    assert value.__module__ == home
    assert name in dir(layout)
    # the memory map is below layout; log records and identities build on it (no cycle), so
    # they are run-time names of layout only, not in its __all__ (type checkers can't see them)
    assert (name in layout.__all__) == (home == "cvmlaunch.memory_map")


def test_layout_star_import_and_unknown_names() -> None:
    from cvmlaunch import layout

    namespace: dict[str, object] = {}
    exec("from cvmlaunch.layout import *", namespace)
    assert set(layout.__all__) <= set(namespace)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = layout.Nope  # type: ignore[attr-defined]
