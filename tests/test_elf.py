"""The ELF loader: real ELFs linked with gcc/ld (checked against readelf and nm), synthetic
ones from tests/builders.py, and a property: the regions rebuild exactly the memory image."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cvmlaunch.errors import ImageError
from cvmlaunch.image.elf import (
    ElfClass,
    ElfMachine,
    SegmentFlag,
    elf_regions,
    parse_elf,
)
from cvmlaunch.layout import PAGE_SIZE, PageType, Plan, SourceKind
from cvmlaunch.memory_map import MemoryMap
from tests.builders import (
    EM_386,
    EM_AARCH64,
    ET_REL,
    PT_NOTE,
    ElfSpec,
    Seg,
    build_elf,
    note,
    pvh_note,
)
from tests.real_images import RealElf, readelf_load_segments

MIB = 1 << 20


def memory_image(regions: tuple[object, ...]) -> dict[int, bytes]:
    """GPA page -> contents, asserting that no page is populated twice."""
    pages: dict[int, bytes] = {}
    for region in regions:
        for gpa, page in region.pages():  # type: ignore[attr-defined]
            assert gpa not in pages, f"page {gpa:#x} populated twice"
            pages[gpa] = bytes(page)
    return pages


# ---------------------------------------------------------------- real ELFs (gcc + ld)


def test_real_elf_headers_match_readelf_and_nm(real_elf: RealElf) -> None:
    data = real_elf.path.read_bytes()
    img = parse_elf(data, name=real_elf.path.name)
    assert img.elf_class is (ElfClass.ELF64 if real_elf.bits == 64 else ElfClass.ELF32)
    assert img.machine is (ElfMachine.X86_64 if real_elf.bits == 64 else ElfMachine.I386)
    assert img.entry == real_elf.symbols["_start"]
    # The note holds the physical address of pvh_start (virtual minus the kernel map).
    assert img.pvh_entry == real_elf.symbols["pvh_start"] - real_elf.kernel_map
    assert img.pvh_entry == 0x100003
    expected = readelf_load_segments(real_elf.path)
    got = [(s.offset, s.vaddr, s.paddr, s.filesz, s.memsz, _flags(s.flags)) for s in img.segments]
    assert got == expected
    assert len(img.segments) == 2
    data_seg = img.segments[1]
    assert data_seg.memsz - data_seg.filesz == 0x3000  # .space 0x3000 in .bss


def _flags(flags: SegmentFlag) -> str:
    return (
        ("R" if flags & SegmentFlag.R else "")
        + ("W" if flags & SegmentFlag.W else "")
        + ("E" if flags & SegmentFlag.X else "")
    )


def test_real_elf_regions(real_elf: RealElf) -> None:
    data = real_elf.path.read_bytes()
    img = parse_elf(data, name="pvh.elf")
    text, data_seg = img.segments
    regions = elf_regions(img, measured=True, memory=MemoryMap.for_size(64 * MIB))
    plan = Plan.of(regions, MemoryMap.for_size(64 * MIB))
    assert [(r.gpa, r.size, r.provenance.kind) for r in plan.regions] == [
        (0x100000, PAGE_SIZE, SourceKind.ELF_SEGMENT),  # text + note + data + start of .bss
        (0x101000, 0x2000, SourceKind.BSS),
        (0x103000, PAGE_SIZE, SourceKind.BSS),  # the last 0x34 bytes of .bss
    ]
    first = plan.regions[0]
    assert first.provenance.index == text.index
    assert first.provenance.offset == text.offset
    assert first.provenance.detail == f"page shared by segments {text.index}, {data_seg.index}"
    assert all(r.measured and r.page_type is PageType.NORMAL for r in regions)
    page = first.contents()
    assert page[:1] == b"\xf4"  # hlt at _start
    assert page[3:5] == b"\xfa\xf4"  # cli; hlt at pvh_start
    assert page[: text.filesz] == data[text.offset : text.offset + text.filesz]
    word = real_elf.symbols["data_word"] - real_elf.kernel_map - 0x100000
    assert page[word : word + 4] == (0x11223344).to_bytes(4, "little")
    assert page[word + 4 :] == bytes(PAGE_SIZE - word - 4)  # start of BSS: zero
    assert regions[1].contents() == bytes(0x2000)
    assert regions[2].contents() == bytes(PAGE_SIZE)


# ---------------------------------------------------------------- synthetic


def test_zero_copy_whole_pages_and_bss_tail() -> None:
    body = bytes(range(256)) * 48  # 3 pages
    elf = build_elf(ElfSpec([Seg(0x200000, body, memsz=len(body) + 0x1800)]))
    view = memoryview(elf)
    img = parse_elf(view, name="k")
    regions = elf_regions(img, measured=False)
    assert [(r.gpa, r.size, r.provenance.kind) for r in regions] == [
        (0x200000, 0x3000, SourceKind.ELF_SEGMENT),
        (0x203000, 0x1000, SourceKind.BSS),
        (0x204000, 0x1000, SourceKind.BSS),
    ]
    assert isinstance(regions[0].data, memoryview)
    assert regions[0].data.obj is elf  # a slice of the caller's buffer, not a copy
    assert bytes(regions[0].data) == body
    assert regions[0].provenance.offset == 0x1000
    assert regions[0].provenance.describe() == "k segment 0+0x1000"
    assert regions[1].provenance.describe() == "k bss of segment 0"
    assert regions[2].provenance.detail == "partial page"
    assert not any(r.measured for r in regions)


def test_elf32_i386_and_pvh_note_4_byte_descriptor() -> None:
    spec = ElfSpec(
        [Seg(0x100000, b"\xf4" * 16), Seg(0x100100, pvh_note(0x100004), type=PT_NOTE)],
        elf_class=32,
        machine=EM_386,
        entry=0x100000,
    )
    img = parse_elf(build_elf(spec))
    assert (img.elf_class, img.machine, img.entry, img.pvh_entry) == (
        ElfClass.ELF32,
        ElfMachine.I386,
        0x100000,
        0x100004,
    )
    assert len(img.segments) == 1  # notes are not loaded


def test_pvh_note_among_other_notes_and_8_byte_descriptor() -> None:
    notes = (
        note(b"GNU\x00", 3, b"\x01" * 20)
        + note(b"Xen\x00", 6, b"linux\x00")
        + pvh_note(0x1000080, size=8)
    )
    spec = ElfSpec([Seg(0x1000000, b"\x90" * 64), Seg(0, notes, type=PT_NOTE)])
    assert parse_elf(build_elf(spec)).pvh_entry == 0x1000080


def test_no_pvh_note() -> None:
    assert parse_elf(build_elf(ElfSpec([Seg(0x100000, b"\x90")]))).pvh_entry is None


def test_segments_in_separate_pages_with_gap() -> None:
    spec = ElfSpec([Seg(0x100010, b"A" * 0x20), Seg(0x102FF0, b"B" * 0x20, memsz=0x30)])
    regions = elf_regions(parse_elf(build_elf(spec)))
    pages = memory_image(regions)
    assert sorted(pages) == [0x100000, 0x102000, 0x103000]
    assert pages[0x100000] == bytes(0x10) + b"A" * 0x20 + bytes(PAGE_SIZE - 0x30)
    assert pages[0x102000][-0x10:] == b"B" * 0x10
    assert pages[0x103000][:0x20] == b"B" * 0x10 + bytes(0x10)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (ElfSpec([Seg(0x100000, b"x")], machine=EM_AARCH64), "machine EM_AARCH64 is not x86"),
        (ElfSpec([Seg(0x100000, b"x")], big_endian=True), "big-endian ELF is not x86"),
        (ElfSpec([Seg(0x100000, b"x")], e_type=ET_REL), "ELF type ET_REL is not an executable"),
        (
            ElfSpec([Seg(0x100000, b"x" * 0x100), Seg(0x1000F0, b"y")]),
            "segment 0 [0x100000-0x100100) overlaps segment 1 [0x1000f0-0x1000f1)",
        ),
        (
            ElfSpec([Seg(0x100000, b"x" * 0x10, memsz=0x8)]),
            "segment 0 has p_filesz 0x10 > p_memsz 0x8",
        ),
        (
            ElfSpec([Seg(0x100000, b"", filesz=0x10, offset=0x10_0000)]),
            "segment 0 file range 0x100000+0x10 lies outside the 0x1000-byte file",
        ),
        (ElfSpec([Seg(0x100000, b"x")], phnum=5000), "5000 program headers"),
        (
            ElfSpec([Seg(0x100000, b"x")], phoff=0xFF0),
            "program header table 0xff0+0x38 lies outside",
        ),
        (ElfSpec([Seg(0x100000, b"x", type=PT_NOTE)]), "no loadable (PT_LOAD) segment"),
        (ElfSpec([Seg(1 << 52, b"x")]), "beyond the 52-bit physical address space"),
        (
            ElfSpec([Seg(0x100000, b"x"), Seg(0, pvh_note(0x1000, size=2), type=PT_NOTE)]),
            "PVH entry note has a 2-byte descriptor (needs 4)",
        ),
        (
            ElfSpec([Seg(0x100000, b"x"), Seg(0, pvh_note(0x100000)[:-4], type=PT_NOTE)]),
            "overruns its PT_NOTE segment",
        ),
        (
            ElfSpec([Seg(0x100000 + i * 0x1000, b"x") for i in range(300)]),
            "more than 256 PT_LOAD segments",
        ),
    ],
)
def test_rejects(spec: ElfSpec, message: str) -> None:
    with pytest.raises(ImageError, match="^bad.elf: .*" + _re(message)):
        parse_elf(build_elf(spec), name="bad.elf")


def _re(text: str) -> str:
    import re

    return re.escape(text)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not an ELF file"),
        (b"MZ\x90\x00" + bytes(60), "not an ELF file"),
        (b"\x7fELF", "not a valid ELF file"),
        (b"\x7fELF\x03\x01\x01" + bytes(57), "not a valid ELF file"),
        (build_elf(ElfSpec([Seg(0x100000, b"x")]))[:40], "ELF"),
    ],
)
def test_rejects_garbage(data: bytes, message: str) -> None:
    with pytest.raises(ImageError, match=message) as info:
        parse_elf(data, name="junk")
    assert str(info.value).startswith("junk: ")


def test_segment_outside_guest_memory() -> None:
    img = parse_elf(build_elf(ElfSpec([Seg(0x2000000, b"x" * 10, memsz=0x2000)])), name="fw")
    elf_regions(img, memory=MemoryMap.for_size(64 * MIB))  # fits
    with pytest.raises(ImageError, match=r"^fw: segment 0 \[0x2000000-0x2002000\) lies outside"):
        elf_regions(img, memory=MemoryMap.for_size(16 * MIB))


def test_elf_error_is_chained() -> None:
    with pytest.raises(ImageError) as info:
        parse_elf(b"\x7fELF\x09" + bytes(59))
    assert info.value.__cause__ is not None


# ---------------------------------------------------------------- property: exact memory image


@st.composite
def segment_sets(draw: st.DrawFn) -> list[Seg]:
    """Up to 5 non-overlapping segments at arbitrary (unaligned) addresses and sizes."""
    count = draw(st.integers(1, 5))
    segs = []
    addr = draw(st.integers(0, 0x3000))
    for i in range(count):
        filesz = draw(st.integers(0, 0x2100))
        memsz = filesz + draw(st.sampled_from([0, 0, 1, 0x7FF, 0x1000, 0x2345]))
        if memsz == 0:
            memsz = 1
        data = bytes([(i * 37 + j) % 251 + 1 for j in range(filesz)])
        segs.append(Seg(addr, data, memsz=memsz))
        addr += memsz + draw(st.sampled_from([0, 0, 1, 0x10, 0xFFF, 0x1000, 0x3001]))
    return draw(st.permutations(segs))


@settings(max_examples=150, deadline=None)
@given(segment_sets())
def test_regions_rebuild_the_memory_image(segs: list[Seg]) -> None:
    img = parse_elf(build_elf(ElfSpec(segs)))
    regions = elf_regions(img)
    Plan.of(regions)  # aligned, no overlaps
    assert [r.gpa for r in regions] == sorted(r.gpa for r in regions)
    pages = memory_image(regions)
    expected: dict[int, bytearray] = {}
    for s in segs:
        assert s.memsz is not None
        for page in range(s.paddr & ~0xFFF, s.paddr + s.memsz, PAGE_SIZE):
            expected.setdefault(page, bytearray(PAGE_SIZE))
        for i, b in enumerate(s.data):
            gpa = s.paddr + i
            expected[gpa & ~0xFFF][gpa & 0xFFF] = b
    assert pages == {k: bytes(v) for k, v in expected.items()}
