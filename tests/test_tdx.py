"""TDX MRTD: published and cross-checked vectors, properties, the TDVF plan and bad input."""

from __future__ import annotations

import dataclasses
import hashlib
import struct
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cvmlaunch.errors import (
    CheckFailed,
    ConfigError,
    ImageError,
    LayoutError,
    LogFormatError,
    MeasurementMismatch,
    UnsupportedSection,
)
from cvmlaunch.files import map_file
from cvmlaunch.image.ovmf import parse_ovmf
from cvmlaunch.layout import (
    PAGE_SIZE,
    PageType,
    Plan,
    Provenance,
    Region,
    SourceKind,
    TdvfSectionType,
)
from cvmlaunch.log_entry import LogOp
from cvmlaunch.measure import MrtdFold, PageOrder, measure_tdvf, measure_tdx, mrtd, replay_tdx
from cvmlaunch.measure.log import LogInput, dumps_log, parse_log, verify_log
from cvmlaunch.measure.tdx import (
    check_log_input,
    mr_extend_buffer,
    page_add_buffer,
    replay_tdx_log,
    tdvf_contents,
    tdx_log,
)
from cvmlaunch.plan.tdvf import tdvf_plan
from tests.errors_util import raises_cvm
from tests.gce_fake_ovmf import CLEAN_TDX_EXAMPLE_MRTD, clean_example
from tests.ovmf_builder import build_ovmf
from tests.vectors import TdxVector, tdx_firmwares

FirmwareFn = Callable[[str], Path]

# -- an independent reference: the spec text, one hashlib.update per 128-byte buffer ---------


def reference_mrtd(ranges: Sequence[tuple[int, bytes, bool]], order: PageOrder) -> bytes:
    """SHA-384 over the buffers, written straight from the TDX module spec text."""
    h = hashlib.sha384()

    def add(gpa: int) -> None:
        buf = bytearray(128)
        buf[0:12] = b"MEM.PAGE.ADD"
        buf[16:24] = gpa.to_bytes(8, "little")
        h.update(buf)

    def extend_page(gpa: int, page: bytes) -> None:
        for c in range(16):
            buf = bytearray(128)
            buf[0:9] = b"MR.EXTEND"
            buf[16:24] = (gpa + c * 256).to_bytes(8, "little")
            h.update(buf)
            h.update(page[c * 256 : c * 256 + 128])
            h.update(page[c * 256 + 128 : c * 256 + 256])

    for gpa, content, measured in ranges:
        pages = [(gpa + i, content[i : i + PAGE_SIZE]) for i in range(0, len(content), PAGE_SIZE)]
        if order is PageOrder.PER_PAGE:
            for g, page in pages:
                add(g)
                if measured:
                    extend_page(g, page)
        else:
            for g, _ in pages:
                add(g)
            if measured:
                for g, page in pages:
                    extend_page(g, page)
    return h.digest()


def as_ranges(regions: Sequence[Region]) -> list[tuple[int, bytes, bool]]:
    return [(r.gpa, r.contents(), r.measured) for r in regions]


def region(gpa: int, size: int, data: bytes = b"", measured: bool = True) -> Region:
    return Region(
        gpa=gpa,
        size=size,
        page_type=PageType.NORMAL,
        measured=measured,
        provenance=Provenance(SourceKind.GENERATED, name=f"r{gpa:#x}"),
        data=data,
    )


# -- published vector: gce-tcb-verifier's synthetic firmware ----------------------------------


def test_gce_clean_example_published_mrtd() -> None:
    image = clean_example(2 * 1024 * 1024)
    plan = tdvf_plan(parse_ovmf(image, name="CleanExample"))
    assert [r.gpa for r in plan.regions] == [
        0xFFE20000,
        0xFFE00000,
        0x810000,
        0x80B000,
        0x809000,
        0x800000,
    ]
    assert [r.measured for r in plan.regions] == [True] + [False] * 5
    assert mrtd(plan).hex() == CLEAN_TDX_EXAMPLE_MRTD
    assert reference_mrtd(as_ranges(plan.regions), PageOrder.PER_PAGE).hex() == (
        CLEAN_TDX_EXAMPLE_MRTD
    )


def test_clean_example_two_pass_differs_and_matches_reference() -> None:
    plan = tdvf_plan(parse_ovmf(clean_example(), name="CleanExample"))
    two = mrtd(plan, order=PageOrder.TWO_PASS)
    assert two.hex() != CLEAN_TDX_EXAMPLE_MRTD
    assert two == reference_mrtd(as_ranges(plan.regions), PageOrder.TWO_PASS)


# -- real firmware, cross-checked with td-shim's script (tests/vectors/tdx/README.md) ----------


@pytest.mark.parametrize("vector", tdx_firmwares(), ids=lambda v: v.file)
def test_real_firmware_vectors(firmware: FirmwareFn, vector: TdxVector) -> None:
    path = firmware(vector.file)
    with map_file(path) as data:
        assert hashlib.sha256(data).hexdigest() == vector.sha256, "not the recorded build"
        per_page = measure_tdvf(data, name=vector.file)
        two_pass = measure_tdvf(data, name=vector.file, order=PageOrder.TWO_PASS)
    assert per_page.mrtd.hex() == vector.mrtd_per_page
    assert two_pass.mrtd.hex() == vector.mrtd_two_pass
    assert (per_page.page_adds, per_page.mr_extends) == (vector.page_add, vector.mr_extend)
    assert per_page.log[-1].digest_after == per_page.mrtd


def test_real_firmware_plan_and_log(firmware: FirmwareFn) -> None:
    path = firmware("OVMF.inteltdx.ms.fd")
    with map_file(path) as data:
        image = parse_ovmf(data, name="OVMF.inteltdx.ms.fd")
        plan = tdvf_plan(image)
        result = measure_tdx(plan)
        # The BFV is the only measured section; sections stay in metadata order.
        assert [(r.gpa, r.size, r.measured) for r in plan.regions] == [
            (0xFFC84000, 0x37C000, True),
            (0xFFC00000, 0x84000, False),
            (0x810000, 0x10000, False),
            (0x80B000, 0x2000, False),
            (0x809000, 0x2000, False),
            (0x800000, 0x6000, False),
        ]
        assert [e.op for e in result.log] == [LogOp.TDX_PAGE_ADD_EXTEND] + [LogOp.TDX_PAGE_ADD] * 5
        bfv = image.tdx_sections[0] if image.tdx_sections else None
        assert bfv is not None
        bfv_bytes = data[bfv.data_offset : bfv.data_offset + bfv.raw_size]
        assert result.log[0].content_sha384 == hashlib.sha384(bfv_bytes).digest()
        # TEMP_MEM: the plan gives it no bytes, so its record carries the zero marker
        assert result.log[2].content_sha384 is None
        assert plan.regions[2].data == b""
        assert replay_tdx(result.log, plan) == result.mrtd
        del plan, image, bfv_bytes


# -- properties ------------------------------------------------------------------------------


@st.composite
def layouts(draw: st.DrawFn, max_regions: int = 4) -> list[Region]:
    """Non-overlapping regions in a random order, with partial data and both flags."""
    count = draw(st.integers(1, max_regions))
    sizes = draw(st.lists(st.integers(1, 70), min_size=count, max_size=count))
    gaps = draw(st.lists(st.integers(0, 3), min_size=count, max_size=count))
    regions = []
    gpa = draw(st.integers(0, 0x1000)) * PAGE_SIZE
    for npages, gap in zip(sizes, gaps, strict=True):
        gpa += gap * PAGE_SIZE
        size = npages * PAGE_SIZE
        length = draw(st.integers(0, size))
        seed = draw(st.binary(min_size=1, max_size=8))
        data = (seed * (length // len(seed) + 1))[:length]
        regions.append(region(gpa, size, data, draw(st.booleans())))
        gpa += size
    return draw(st.permutations(regions))


@settings(max_examples=40, deadline=None)
@given(layouts(), st.sampled_from(PageOrder))
def test_fast_fold_matches_reference(regions: list[Region], order: PageOrder) -> None:
    assert mrtd(Plan.of(regions), order=order) == reference_mrtd(as_ranges(regions), order)


@settings(max_examples=40, deadline=None)
@given(layouts())
def test_page_by_page_equals_range_by_range(regions: list[Region]) -> None:
    """Per-page order: splitting every range into single pages does not change MRTD."""
    fold = MrtdFold()
    for r in regions:
        for gpa, page in r.pages():
            fold.page_add(gpa)
            if r.measured:
                for c in range(16):
                    fold.mr_extend(gpa + c * 256, page[c * 256 : (c + 1) * 256])
    single_pages = [
        region(gpa, PAGE_SIZE, bytes(page), r.measured) for r in regions for gpa, page in r.pages()
    ]
    whole = mrtd(regions)
    assert fold.digest() == whole
    assert mrtd(single_pages) == whole
    assert mrtd(single_pages, order=PageOrder.TWO_PASS) == whole


@settings(max_examples=40, deadline=None)
@given(layouts())
def test_orders_differ_iff_a_measured_range_has_two_pages(regions: list[Region]) -> None:
    per_page = mrtd(regions)
    two_pass = mrtd(regions, order=PageOrder.TWO_PASS)
    multi = any(r.measured and r.npages > 1 for r in regions)
    assert (per_page != two_pass) == multi


@settings(max_examples=25, deadline=None)
@given(layouts(), st.sampled_from(PageOrder))
def test_log_replays_to_mrtd(regions: list[Region], order: PageOrder) -> None:
    result = measure_tdx(regions, order=order)
    assert result.mrtd == mrtd(regions, order=order)
    assert replay_tdx(result.log, regions, order=order) == result.mrtd
    for entry, r in zip(result.log, regions, strict=True):
        # the SHA-384 of the bytes, or the zero marker where the plan gives no bytes
        want = hashlib.sha384(r.contents()).digest() if len(r.data) else None
        assert entry.content_sha384 == want
        assert entry.op is (LogOp.TDX_PAGE_ADD_EXTEND if r.measured else LogOp.TDX_PAGE_ADD)
    # Each record's MRTD-after is the MRTD of the plan cut after that record.
    for i, entry in enumerate(result.log):
        assert entry.digest_after == mrtd(regions[: i + 1], order=order)


def test_replay_rejects_a_tampered_log() -> None:
    regions = [region(0x1000, 0x3000, b"\x01" * 5000), region(0x8000, 0x1000, measured=False)]
    log = measure_tdx(regions).log
    bad_content = dataclasses.replace(log[0], content_sha384=bytes(48))
    with pytest.raises(LogFormatError, match="content SHA-384"):
        replay_tdx([bad_content, log[1]], regions)
    bad_digest = dataclasses.replace(log[1], digest_after=bytes(48))
    with pytest.raises(MeasurementMismatch, match="MRTD after the range"):
        replay_tdx([log[0], bad_digest], regions)
    moved = dataclasses.replace(log[1], gpa=0x9000)
    with pytest.raises(LogFormatError, match="the plan populates"):
        replay_tdx([log[0], moved], regions)
    with pytest.raises(LogFormatError, match="1 records"):
        replay_tdx(log[:1], regions)
    # Measured with the other order: every MRTD-after from the first record on differs.
    with pytest.raises(MeasurementMismatch):
        replay_tdx(log, regions, order=PageOrder.TWO_PASS)


def test_buffers_are_the_spec_layout() -> None:
    add = page_add_buffer(0x1122334455667000)
    assert len(add) == 128
    assert add[:16] == b"MEM.PAGE.ADD\0\0\0\0"
    assert add[16:24] == bytes.fromhex("0070665544332211")
    assert add[24:] == bytes(104)
    ext = mr_extend_buffer(0xFFC84100)
    assert ext[:16] == b"MR.EXTEND" + bytes(7)
    assert struct.unpack_from("<Q", ext, 16) == (0xFFC84100,)
    assert ext[24:] == bytes(104)


def test_one_page_known_answer() -> None:
    """One measured page of 0xAA at GPA 0x1000, written out buffer by buffer."""
    stream = page_add_buffer(0x1000)
    for c in range(16):
        stream += mr_extend_buffer(0x1000 + c * 256) + b"\xaa" * 256
    assert len(stream) == 6272
    want = hashlib.sha384(stream).digest()
    assert mrtd([region(0x1000, 0x1000, b"\xaa" * 4096)]) == want


def test_primitive_and_plan_errors() -> None:
    fold = MrtdFold()
    with pytest.raises(LayoutError, match="4 KiB"):
        fold.page_add(0x1800)
    with pytest.raises(LayoutError, match="256-byte"):
        fold.mr_extend(0x1080, bytes(256))
    with pytest.raises(LayoutError, match="not 256"):
        fold.mr_extend(0x1000, bytes(255))
    with pytest.raises(LayoutError, match="4 KiB"):
        fold.add_range(0x1000, 0x800, measure=True)
    secrets = Region(
        gpa=0x1000,
        size=0x1000,
        page_type=PageType.SECRETS,
        measured=False,
        provenance=Provenance(SourceKind.GENERATED, name="secrets"),
    )
    with pytest.raises(LayoutError, match="no TDX meaning"):
        mrtd([secrets])


# -- the TDVF plan: what upstream QEMU accepts and rejects -------------------------------------

SIZE = 0x40000
BFV = (0x20000, 0x20000, 0xFFFE0000, 0x20000, 0, 1)
CFV = (0x10000, 0x10000, 0xFFFD0000, 0x10000, 1, 0)
HOB = (0, 0, 0x809000, 0x2000, 2, 0)
TEMP = (0, 0, 0x800000, 0x6000, 3, 0)


def synthetic_plan(sections: list[tuple[int, int, int, int, int, int]], **kw: Any) -> Plan:
    return tdvf_plan(parse_ovmf(build_ovmf(SIZE, tdx=sections, **kw), name="fw.fd"))


def test_tdvf_plan_synthetic() -> None:
    plan = synthetic_plan([BFV, CFV, HOB, TEMP])
    assert [r.gpa for r in plan.regions] == [0xFFFE0000, 0xFFFD0000, 0x809000, 0x800000]
    image = build_ovmf(SIZE, tdx=[BFV, CFV, HOB, TEMP])
    assert bytes(plan.regions[0].data) == image[0x20000:0x40000]
    assert plan.regions[0].provenance.describe() == "fw.fd metadata #0 (BFV)"
    ranges = [
        (0xFFFE0000, image[0x20000:0x40000], True),
        (0xFFFD0000, image[0x10000:0x20000], False),
        (0x809000, bytes(0x2000), False),
        (0x800000, bytes(0x6000), False),
    ]
    for order in PageOrder:
        assert mrtd(plan, order=order) == reference_mrtd(ranges, order)


def test_page_aug_is_ignored_as_qemu_does() -> None:
    aug = (*TEMP[:5], 2)
    plan = synthetic_plan([BFV, CFV, HOB, aug])
    assert "PAGE.AUG ignored" in plan.regions[3].provenance.detail
    assert mrtd(plan) == mrtd(synthetic_plan([BFV, CFV, HOB, TEMP]))


@pytest.mark.parametrize(
    ("sections", "error", "message"),
    [
        ([BFV], ImageError, "has 1 section; QEMU requires at least 2"),
        ([BFV, CFV, (0, 0, 0x800000, 0x1000, 4, 0)], UnsupportedSection, "PERM_MEM.*only BFV"),
        ([BFV, CFV, (0, 0, 0x800000, 0x1000, 7, 0)], UnsupportedSection, "TD_INFO"),
        ([(0x20000, 0, 0xFFFE0000, 0x20000, 0, 1), HOB], ImageError, "BFV.*RawDataSize 0"),
        ([BFV, (0x1000, 0x1000, 0x800000, 0x1000, 3, 0)], ImageError, "TEMP_MEM.*requires 0"),
        ([BFV, (0x1000, 0x1000, 0x800000, 0x2000, 2, 0)], ImageError, "TD_HOB.*requires 0"),
        ([(0x20000, 0x10000, 0xFFFE0000, 0x20000, 0, 1), HOB], ImageError, "refusing to guess"),
        ([BFV, CFV, TEMP], ImageError, "no TD_HOB"),
        ([BFV, (*HOB[:5], 4)], ImageError, "reserved attribute bits 0x4"),
    ],
)
def test_tdvf_plan_rejects(
    sections: list[tuple[int, int, int, int, int, int]], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message) as info:
        synthetic_plan(sections)
    assert str(info.value).startswith("fw.fd: ")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tdx": None}, "no TDX metadata"),
        ({"tdx": [BFV, HOB], "tdvf_version": 2}, "version 2"),
        ({"tdx": [(0, 0, 0x800800, 0x1000, 3, 0), HOB]}, "not 4 KiB aligned"),
        ({"tdx": [(0, 0, 0x800000, 0x2000, 3, 0), (0, 0, 0x801000, 0x1000, 2, 0)]}, "overlaps"),
    ],
)
def test_bad_firmware_through_measure_tdvf(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ImageError, match=message):
        measure_tdvf(build_ovmf(SIZE, **kwargs), name="fw.fd")


def test_bad_descriptor_length_and_count() -> None:
    image = bytearray(build_ovmf(SIZE, tdx=[BFV, HOB]))
    image[0x404:0x408] = struct.pack("<I", 16 + 32 * 3)
    with pytest.raises(ImageError, match="length"):
        measure_tdvf(bytes(image), name="fw.fd")
    image[0x404:0x408] = struct.pack("<I", 16)
    image[0x40C:0x410] = struct.pack("<I", 0)
    with pytest.raises(ImageError, match="0 sections"):
        measure_tdvf(bytes(image), name="fw.fd")


def test_tdvf_section_types_match_qemu() -> None:
    from cvmlaunch.plan.tdvf import QEMU_SECTION_TYPES

    assert {int(t) for t in QEMU_SECTION_TYPES} == {0, 1, 2, 3}
    assert TdvfSectionType.TEMP_MEM in QEMU_SECTION_TYPES


# -- the launch log (docs/log-format.md, tdx) -------------------------------------------------


def _firmware_input(data: bytes, name: str = "clean.fd") -> LogInput:
    return LogInput(
        role="firmware",
        name=name,
        size=len(data),
        sha256=hashlib.sha256(data).digest(),
        sha384=hashlib.sha384(data).digest(),
    )


@pytest.mark.parametrize("order", list(PageOrder))
def test_log_round_trip_and_verify(order: PageOrder) -> None:
    data = clean_example()
    result = measure_tdvf(data, name="clean.fd", order=order)
    log = tdx_log(
        result, inputs=(_firmware_input(data),), tool_version="t", settings={"profile": "qemu"}
    )
    assert log.header.settings["order"] == order.value
    text = dumps_log(log)
    parsed = parse_log(text, name="clean.log")
    assert dumps_log(parsed) == text
    image = parse_ovmf(data, name="clean.fd")
    check_log_input(parsed.header, "firmware", data, name="clean.fd")
    assert verify_log(parsed, tdvf_contents(parsed.header, image)) == result.mrtd
    if order is PageOrder.PER_PAGE:
        assert result.mrtd.hex() == CLEAN_TDX_EXAMPLE_MRTD
    with raises_cvm(ConfigError, setting="firmware", match="needs the measured bytes"):
        verify_log(parsed)


def test_log_verify_names_the_first_bad_record() -> None:
    data = clean_example()
    result = measure_tdvf(data, name="clean.fd")
    entries = list(result.log)
    entries[2] = dataclasses.replace(entries[2], gpa=entries[2].gpa + PAGE_SIZE)
    forged = tdx_log(
        dataclasses.replace(result, log=tuple(entries)),
        inputs=(_firmware_input(data),),
        tool_version="t",
        settings={"profile": "qemu"},
    )
    image = parse_ovmf(data, name="clean.fd")
    no_profile = dataclasses.replace(forged.header, settings={"order": "per-page"})
    with pytest.raises(LogFormatError, match="profile is None"):
        tdvf_contents(no_profile, image)
    with pytest.raises(LogFormatError, match=r"record 2 .*populates 0x810000"):
        verify_log(forged, tdvf_contents(forged.header, image))
    # Without the firmware, the changed GPA shows as the running MRTD of record 2.
    contents_from_log = {
        e.seq: r.data for e, r in zip(result.log, tdvf_plan(image).regions, strict=True)
    }
    with pytest.raises(MeasurementMismatch, match="record 2"):
        verify_log(forged, lambda e: contents_from_log[e.seq])


def test_page_add_only_log_replays_without_bytes() -> None:
    regions = [region(0x1000, 0x3000, measured=False), region(0x8000, 0x2000, measured=False)]
    result = measure_tdx(regions)
    log = tdx_log(result, inputs=(_firmware_input(b"x"),), tool_version="t")
    assert verify_log(parse_log(dumps_log(log))) == mrtd(regions)


def test_replayer_rejects_foreign_ops_and_bad_order() -> None:
    data = clean_example()
    result = measure_tdvf(data, name="clean.fd")
    log = tdx_log(result, inputs=(_firmware_input(data),), tool_version="t")
    snp_like = dataclasses.replace(result.log[1], op=LogOp.SNP_LAUNCH_UPDATE)
    with pytest.raises(LogFormatError, match="not a TDX operation"):
        list(replay_tdx_log(log.header, [snp_like], None))
    bad_header = dataclasses.replace(log.header, settings={"order": "sideways"})
    with pytest.raises(LogFormatError, match="order is 'sideways'"):
        list(replay_tdx_log(bad_header, [], None))


def test_check_log_input() -> None:
    data = clean_example()
    log = tdx_log(measure_tdvf(data), inputs=(_firmware_input(data),), tool_version="t")
    with pytest.raises(CheckFailed, match="is 4096 bytes, the log lists 2097152"):
        check_log_input(log.header, "firmware", data[:4096], name="x.fd")
    other = bytearray(data)
    other[0x30000] ^= 1
    with pytest.raises(MeasurementMismatch, match="SHA256"):
        check_log_input(log.header, "firmware", bytes(other), name="x.fd")
    with pytest.raises(LogFormatError, match="no kernel input"):
        check_log_input(log.header, "kernel", data, name="x.fd")


# -- our own layouts: an ELF laid out by the ELF loader ---------------------------------------


def test_elf_layout_measured_and_added_only() -> None:
    from cvmlaunch.image.elf import elf_regions, parse_elf
    from tests.builders import ElfSpec, Seg, build_elf

    text = bytes(range(256)) * 40  # 10 KiB: two whole pages and a partial one
    spec = ElfSpec(
        segments=[Seg(0x100000, text), Seg(0x104800, b"\x5a" * 0x900, memsz=0x3000)],
    )
    elf = parse_elf(build_elf(spec), name="k.elf")
    measured = list(elf_regions(elf, measured=True))
    scratch = region(0x200000, 0x4000, measured=False)
    plan = [*measured, scratch]
    ranges = as_ranges(plan)
    assert sum(len(c) for _, c, m in ranges if m) == sum(r.size for r in measured)
    for order in PageOrder:
        assert mrtd(plan, order=order) == reference_mrtd(ranges, order)
    result = measure_tdx(plan)
    assert [e.op for e in result.log][-1] is LogOp.TDX_PAGE_ADD
    assert all(e.op is LogOp.TDX_PAGE_ADD_EXTEND for e in result.log[:-1])
    assert replay_tdx(result.log, plan) == result.mrtd
