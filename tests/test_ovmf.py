"""OVMF/TDVF firmware parser: real Debian builds (values from the research notes) and bad input."""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cvmlaunch.errors import ImageError, UnsupportedSection
from cvmlaunch.image import ovmf
from cvmlaunch.image.ovmf import (
    FOOTER_GUID,
    SEV_METADATA_GUID,
    guid_bytes_le,
    guid_from_bytes_le,
    parse_ovmf,
)
from cvmlaunch.layout import SevSectionType, TdvfAttribute, TdvfSectionType
from tests.ovmf_builder import build_ovmf

FirmwareFn = Callable[[str], Path]

# snp-measure.md §1.5: descriptors (gpa, size, type) in file order.
SEV_2026 = [
    (0x800000, 0x9000, 1),
    (0x80A000, 0x3000, 1),
    (0x80D000, 0x1000, 2),
    (0x80E000, 0x1000, 3),
    (0x80F000, 0x1000, 4),
    (0x811000, 0x1F000, 1),
    (0x810000, 0x1000, 0x10),
]
SEV_INTELTDX = [*SEV_2026[:4], (0, 0, 4), (0, 0, 1)]
SEV_2022 = [*SEV_2026[:4], (0x80F000, 0x11000, 1)]

# tdx-measure.md §2.3: (data_offset, raw_size, gpa, memory_size, type, attributes).
BFV_4M = (0x84000, 0x37C000, 0xFFC84000, 0x37C000, 0, 1)
CFV_4M = (0x0, 0x84000, 0xFFC00000, 0x84000, 1, 0)
TDX_INTELTDX = [
    BFV_4M,
    CFV_4M,
    (0, 0, 0x810000, 0x10000, 3, 0),
    (0, 0, 0x80B000, 0x2000, 3, 0),
    (0, 0, 0x809000, 0x2000, 2, 0),
    (0, 0, 0x800000, 0x6000, 3, 0),
]
TDX_GENERIC = [
    BFV_4M,
    CFV_4M,
    (0, 0, 0x814000, 0xC000, 3, 0),
    (0, 0, 0x80B000, 0x2000, 3, 0),
    (0, 0, 0x809000, 0x2000, 2, 0),
    (0, 0, 0x800000, 0x6000, 3, 0),
    (0, 0, 0x820000, 0x10000, 3, 0),
]
TDX_2022 = [
    (0x20000, 0x1E0000, 0xFFE20000, 0x1E0000, 0, 1),
    (0x0, 0x20000, 0xFFE00000, 0x20000, 1, 0),
    *TDX_INTELTDX[2:],
]

CASES = {
    # name: (size, gpa, SEV sections, TDX sections, hash table)
    "OVMF.amdsev.fd": (0x400000, 0xFFC00000, SEV_2026, TDX_GENERIC, (0x810C00, 0x400)),
    "OVMF.generic.fd": (0x400000, 0xFFC00000, SEV_2026, TDX_GENERIC, (0x810C00, 0x400)),
    "OVMF.inteltdx.ms.fd": (0x400000, 0xFFC00000, SEV_INTELTDX, TDX_INTELTDX, (0, 0)),
    "OVMF.2022.fd": (0x200000, 0xFFE00000, SEV_2022, TDX_2022, (0, 0)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_real_firmware(firmware: FirmwareFn, name: str) -> None:
    size, gpa, sev, tdx, hash_table = CASES[name]
    img = parse_ovmf(firmware(name).read_bytes(), name=name)
    assert (img.size, img.gpa) == (size, gpa)
    assert img.sev_sections is not None
    assert [(s.gpa, s.size, int(s.type)) for s in img.sev_sections] == sev
    assert img.tdx_sections is not None
    got = [
        (s.data_offset, s.raw_size, s.gpa, s.memory_size, int(s.type), int(s.attributes))
        for s in img.tdx_sections
    ]
    assert got == tdx
    assert img.sev_es_reset_eip == 0x80B004
    assert img.sev_hash_table == hash_table
    assert img.has_kernel_hashes == (hash_table[0] != 0)
    # snp-measure.md §1.4: the SEV secret area is (0x810000, 0xC00) in the 2026 builds.
    if name in ("OVMF.amdsev.fd", "OVMF.generic.fd"):
        assert img.sev_secret == (0x810000, 0xC00)
    # The footer GUID sits in [size-0x30, size-0x20); the table holds the entries by GUID string.
    assert bytes(img.data[-0x30:-0x20]) == uuid.UUID(FOOTER_GUID).bytes_le
    names = {e.guid: e.name for e in img.guid_table}
    assert (
        names.items()
        >= {
            "00f771de-1a7e-4fcb-890e-68c77e2fb44e": "SEV-ES reset block",
            "4c2eb361-7d9b-4cc3-8081-127c90d3d294": "SEV secret area",
            "7255371f-3a3b-4b04-927b-1da6efa8d454": "SEV hash table",
            "dc886566-984a-4798-a75e-5585a7bf67cc": "SEV metadata",
            "e47a6535-984a-4798-865e-4685a7bf8ec2": "TDX metadata",
        }.items()
    )
    bfv = img.tdx_sections[0]
    assert bfv.type is TdvfSectionType.BFV
    assert TdvfAttribute.MR_EXTEND in bfv.attributes
    assert len(img.tdvf_section_data(bfv)) == bfv.raw_size


def test_code_only_image(firmware: FirmwareFn) -> None:
    """OVMF_CODE_4M.fd is the last 0x37C000 bytes of the 4 MiB flat image (its BFV)."""
    data = firmware("OVMF.generic.fd").read_bytes()[-0x37C000:]
    img = parse_ovmf(data, name="OVMF_CODE_4M.fd")
    assert img.gpa == 0xFFC84000  # snp-measure.md §1.3
    assert img.sev_sections is not None
    assert [(s.gpa, s.size, int(s.type)) for s in img.sev_sections] == SEV_2026
    assert img.tdx_sections is not None
    with pytest.raises(ImageError, match="code-only"):
        img.tdvf_section_data(img.tdx_sections[0])


def test_synthetic_roundtrip() -> None:
    data = build_ovmf(
        sev=[(0x800000, 0x2000, 1), (0x802000, 0x1000, 2)],
        tdx=[(0x1000, 0x1000, 0xFFFF1000, 0x2000, 0, 1), (0, 0, 0x900000, 0x1000, 2, 0)],
        hash_table=(0x810C00, 0x400),
    )
    img = parse_ovmf(data, name="synthetic")
    assert img.sev_sections is not None
    assert [s.type for s in img.sev_sections] == [
        SevSectionType.SNP_SEC_MEM,
        SevSectionType.SNP_SECRETS,
    ]
    assert img.tdx_sections is not None
    assert img.tdx_sections[1].type is TdvfSectionType.TD_HOB
    assert img.entry(SEV_METADATA_GUID) is not None
    assert img.entry(SEV_METADATA_GUID.upper()) is img.entry(SEV_METADATA_GUID)


def test_missing_metadata_is_none() -> None:
    img = parse_ovmf(build_ovmf(reset_eip=None), name="bare")
    assert img.sev_sections is None
    assert img.tdx_sections is None
    assert img.sev_es_reset_eip is None
    assert not img.has_kernel_hashes


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "too small"),
        (bytes(0x1001), "multiple of 4 KiB"),
        (bytes(0x10000), "no OVMF GUID table footer"),
        (build_ovmf(sev=[(0x800000, 0x1000, 7)]), "unknown type 0x7"),
        (build_ovmf(sev=[(0x800001, 0x1000, 1)]), "not 4 KiB aligned"),
        (build_ovmf(sev=[(0x800000, 0x2000, 1), (0x801000, 0x1000, 2)]), "overlaps"),
        (build_ovmf(sev=[(0x800000, 0x1000, 1)], sev_version=2), "version 2"),
        (build_ovmf(tdx=[(0, 0, 0x1000, 0x1000, 9, 0)]), "unknown type 0x9"),
        (build_ovmf(tdx=[(0, 0, 0x1000, 0x1000, 2, 0)], tdvf_version=0), "version 0"),
        (build_ovmf(tdx=[(0, 0x2000, 0x1000, 0x1000, 0, 1)]), "exceeds memory size"),
        (build_ovmf(tdx=[(0, 0, 0x1800, 0x1000, 3, 0)]), "not 4 KiB aligned"),
        (build_ovmf(tdx=[(0, 0, 0x1000, 0, 3, 0)]), "memory size of zero"),
        (
            build_ovmf(tdx=[(0, 0, 0x1000, 0x2000, 3, 0), (0, 0, 0x2000, 0x1000, 2, 0)]),
            "overlaps",
        ),
    ],
)
def test_bad_images(data: bytes, message: str) -> None:
    with pytest.raises(ImageError, match=message) as info:
        parse_ovmf(data, name="bad.fd")
    assert str(info.value).startswith("bad.fd: ")


def test_unknown_section_carries_raw_value() -> None:
    with pytest.raises(UnsupportedSection) as info:
        parse_ovmf(build_ovmf(sev=[(0x800000, 0x1000, 0x11)]), name="x")
    assert info.value.raw == 0x11


def test_table_length_outside_image() -> None:
    data = bytearray(build_ovmf())
    footer = len(data) - 0x20 - 18
    data[footer : footer + 2] = struct.pack("<H", 0xFFFF)
    with pytest.raises(ImageError, match="points outside the image"):
        parse_ovmf(bytes(data[-0x1000:]), name="x")


def test_bad_tdvf_length_and_count() -> None:
    data = bytearray(build_ovmf(tdx=[(0, 0, 0x1000, 0x1000, 2, 0)]))
    data[0x404:0x408] = struct.pack("<I", 0x50)
    with pytest.raises(ImageError, match="length 0x50 does not match 1 sections"):
        parse_ovmf(bytes(data), name="x")
    data[0x404:0x408] = struct.pack("<I", 16 + 32 * 100)
    data[0x40C:0x410] = struct.pack("<I", 100)
    with pytest.raises(ImageError, match="claims 100 sections"):
        parse_ovmf(bytes(data), name="x")


@given(st.binary(min_size=16, max_size=16))
def test_guid_forms_agree_with_uuid(raw: bytes) -> None:
    """The GUID helpers give what the standard library's uuid gives (EFI mixed-endian)."""
    text = guid_from_bytes_le(raw)
    assert text == str(uuid.UUID(bytes_le=raw))
    assert guid_bytes_le(text) == raw
    assert guid_bytes_le(text.upper()) == raw
    assert guid_from_bytes_le(memoryview(raw)) == text


def test_guid_constants_are_canonical() -> None:
    names = [n for n in ovmf.__all__ if n.endswith("_GUID")]
    assert len(names) == 9
    for name in names:
        value = getattr(ovmf, name)
        assert value == str(uuid.UUID(value)), name
        assert guid_bytes_le(value) == uuid.UUID(value).bytes_le, name
    # edk2 ResetVectorVtf0.asm spells the footer GUID out as bytes.
    assert guid_bytes_le(FOOTER_GUID) == bytes.fromhex("de82b596b21ff745baeaa366c55a082d")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "96b582de1fb245f7baeaa366c55a082d",
        "{96b582de-1fb2-45f7-baea-a366c55a082d}",
        "96b582de-1fb2-45f7-baea-a366c55a082",
        "96b582de-1fb2-45f7-baea-a366c55a082g",
        "96b582de-1fb2-45f7-baeaa-366c55a082d",
        "96b582de-1fb2-45f7-ba a-a366c55a082d",
    ],
)
def test_guid_bytes_le_rejects_malformed(text: str) -> None:
    with pytest.raises(ValueError, match="not a GUID"):
        guid_bytes_le(text)


def test_guid_from_bytes_le_needs_16_bytes() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        guid_from_bytes_le(bytes(15))
