"""SmbiosMeasurementDxe's SMBIOS measurement: a QEMU q35 table built here from QEMU's
hw/smbios/smbios.c and DSP0134, filtered by an independent filter written here from the edk2
filter table; hand-made expected bytes for each quirk; the filter records compiled into the
real Debian ovmf-inteltdx driver; properties of random tables."""

from __future__ import annotations

import hashlib
import struct
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cvmlaunch.errors import ImageError
from cvmlaunch.image import smbios
from cvmlaunch.image.smbios import (
    EV_EFI_HANDOFF_TABLES,
    SMBIOS_PCR,
    SmbiosEntryPoint,
    measured_smbios_table,
    parse_smbios_entry_point,
    smbios_digest,
    smbios_event_data,
    smbios_structures,
    smbios_table_length,
)
from cvmlaunch.image.tdvf_features import _lzma_volumes


def structure(kind: int, handle: int, body: bytes, strings: list[bytes] | None = None) -> bytes:
    """DSP0134 6.1.2/6.1.3: header (type, length, handle), formatted area, string-set (each
    string NUL-terminated, then one more NUL; two NULs when there are none)."""
    head = bytes([kind, 4 + len(body)]) + struct.pack("<H", handle) + body
    if not strings:
        return head + b"\0\0"
    return head + b"".join(s + b"\0" for s in strings) + b"\0"


END = structure(127, 0x7F00, b"")


# ---------------------------------------------------------------- the independent filter
# Written from SmbiosMeasurementDxe.c's mSmbiosFilter*BlackList, with DSP0134's offsets of the
# named fields (7.2 System, 7.3 Baseboard, 7.4 Chassis, 7.5 Processor, 7.18 Memory Device,
# 7.23 Portable Battery, 7.24 System Reset, 7.28 Cooling Device, 7.40 Power Supply).
FIELDS: dict[int, list[tuple[str, int, int]]] = {
    1: [("Serial Number", 0x07, 1), ("UUID", 0x08, 16), ("Wake-up Type", 0x18, 1)],
    2: [("Serial Number", 0x07, 1), ("Location in Chassis", 0x0A, 1)],
    3: [("Serial Number", 0x07, 1), ("Asset Tag Number", 0x08, 1)],
    4: [
        ("Serial Number", 0x20, 1),
        ("Asset Tag", 0x21, 1),
        ("Part Number", 0x22, 1),
        ("Core Count", 0x23, 1),
        ("Core Enabled", 0x24, 1),
        ("Thread Count", 0x25, 1),
        ("Core Count 2", 0x2A, 2),
        ("Core Enabled 2", 0x2C, 2),
        ("Thread Count 2", 0x2E, 2),
        ("Voltage", 0x11, 1),
        ("Current Speed", 0x16, 2),
    ],
    17: [("Serial Number", 0x18, 1), ("Asset Tag", 0x19, 1), ("Part Number", 0x1A, 1)],
    22: [("Serial Number", 0x07, 1), ("SBDS Serial Number", 0x10, 2), ("SBDS Date", 0x12, 2)],
    23: [("Reset Count", 0x05, 2)],
    27: [("Nominal Speed", 0x0C, 2)],
    39: [("Serial Number", 0x08, 1), ("Asset Tag Number", 0x09, 1), ("Part Number", 0x0A, 1)],
}
STRING_FIELDS = {
    "Serial Number",
    "Location in Chassis",
    "Asset Tag Number",
    "Asset Tag",
    "Part Number",
}
WHOLE = {11, 15, 18, 31, 33}  # listed with a NULL filter


def reference_filter(table: bytes) -> bytes:
    """Structures up to type 127, filtered: the C rules restated, for well-formed tables."""
    out = bytearray()
    at = 0
    while at < len(table):
        kind, length = table[at], table[at + 1]
        end = table.index(b"\0\0", at + length) + 2
        one = bytearray(table[at:end])
        area = bytes(one[length : end - at - 2])  # the strings, NUL separated
        spans = []
        pos = length + (1 if area[:1] == b"\0" else 0)
        for text in area.lstrip(b"\0").split(b"\0") if area.strip(b"\0") else []:
            spans.append((pos, pos + len(text)))
            pos += len(text) + 1
        if kind >= 128 or kind in WHOLE:
            one[4:] = bytes(len(one) - 4)
        for name, offset, size in FIELDS.get(kind, []):
            if offset + size > length:
                continue  # the field is not in this structure
            if name in STRING_FIELDS and one[offset] and spans:
                first, last = spans[min(one[offset], len(spans)) - 1]
                one[first:last] = b" " * (last - first)
            one[offset : offset + size] = bytes(size)
        out += one
        at = end
        if kind == 127:
            break
    return bytes(out)


# ---------------------------------------------------------------- a QEMU q35 table
# hw/smbios/smbios.c smbios_build_type_*_table with q35 defaults (manufacturer "QEMU", product
# "Standard PC (Q35 + ICH9, 2009)", version the machine type), the structure sizes dmidecode
# reports for QEMU 9 (type 1: 27, 3: 22, 4: 48 behind a 3.0 entry point, 42 (SMBIOS_TYPE_4_LEN_V28,
# no Core Count 2 etc.) behind a 2.8 one, 16: 23, 17: 40, 19: 31, 32: 11 bytes), plus
# -smbios type=1,serial=...,uuid=..., type=3,serial/asset, type=4,serial/asset/part,
# type=17,serial/asset/part and type=11,value=... to give the filter something to do.
# Type 0 is OVMF's default (OvmfPkg/SmbiosPlatformDxe), which it adds when QEMU has none.
PRODUCT, VERSION = b"Standard PC (Q35 + ICH9, 2009)", b"pc-q35-9.2"
GUEST_UUID = uuid.UUID("2c0ef5e1-5f4a-4b8e-9a6b-2d5f0e1c7a10")


def qemu_q35_table(ram: int = 2 << 30, *, ep_bits: int = 64) -> bytes:
    t0 = structure(
        0,
        0x0000,
        bytes([1, 2]) + struct.pack("<H", 0xE800) + bytes([3, 0]) + struct.pack("<Q", 0x08)
        + bytes([0, 0x1C, 0, 0, 0xFF, 0xFF]) + struct.pack("<H", 0),
        [b"EFI Development Kit II / OVMF", b"0.0.0", b"02/06/2015"],
    )  # fmt: skip
    t1 = structure(
        1,
        0x0100,
        bytes([1, 2, 3, 4]) + GUEST_UUID.bytes_le + bytes([0x06, 0, 0]),
        [b"QEMU", PRODUCT, VERSION, b"SYS-SERIAL-0042"],
    )
    t3 = structure(
        3,
        0x0300,
        bytes([1, 0x01, 2, 3, 4, 3, 3, 3, 2]) + bytes(4) + bytes([0, 0, 0, 0, 0]),
        [b"QEMU", VERSION, b"CHASSIS-7", b"ASSET-3"],
    )
    cpuid_version, cpuid_features = 0x000806F8, 0x0F8BFBFF
    t4_body = (
        bytes([1, 0x03, 0x01, 2]) + struct.pack("<II", cpuid_version, cpuid_features)
        + bytes([3, 0]) + struct.pack("<HHH", 0, 2000, 2000) + bytes([0x41, 0x01])
        + struct.pack("<HHH", 0xFFFF, 0xFFFF, 0xFFFF) + bytes([4, 5, 6, 2, 2, 1])
        + struct.pack("<HH", 0x02, 0x01) + struct.pack("<HHH", 2, 2, 1)
    )  # fmt: skip
    t4 = structure(
        4,
        0x0400,
        t4_body if ep_bits == 64 else t4_body[: 42 - 4],
        [b"CPU 0", b"QEMU", VERSION, b"CPU-SERIAL", b"CPU-ASSET", b"CPU-PART"],
    )
    t11 = structure(11, 0x0B00, bytes([1]), [b"oem-string-with-a-secret"])
    size_kb, size_mb = ram // 1024, ram >> 20
    t16 = structure(
        16,
        0x1000,
        bytes([0x01, 0x03, 0x06]) + struct.pack("<IHHQ", size_kb, 0xFFFE, 1, 0),
    )
    t17 = structure(
        17,
        0x1100,
        struct.pack("<HHHHH", 0x1000, 0xFFFE, 0xFFFF, 0xFFFF, size_mb) + bytes([0x09, 0, 1, 0])
        + bytes([0x07]) + struct.pack("<HH", 0x02, 0) + bytes([2, 3, 4, 5, 0])
        + struct.pack("<IHHHH", 0, 0, 0, 0, 0),
        [b"DIMM 0", b"QEMU", b"DIMM-SERIAL", b"DIMM-ASSET", b"DIMM-PART"],
    )  # fmt: skip
    t19 = structure(19, 0x1300, struct.pack("<IIHBQQ", 0, (ram - 1) // 1024, 0x1000, 1, 0, 0))
    t32 = structure(32, 0x2000, bytes(6) + bytes([0]))
    return t0 + t1 + t3 + t4 + t11 + t16 + t17 + t19 + t32 + END


@pytest.mark.parametrize(("ep_bits", "type4"), [(64, 48), (32, 42)])
def test_qemu_table_structure_sizes_are_qemus(ep_bits: int, type4: int) -> None:
    table = qemu_q35_table(ep_bits=ep_bits)
    sizes = {s.type: s.length for s in smbios_structures(table)}
    assert sizes == {0: 26, 1: 27, 3: 22, 4: type4, 11: 5, 16: 23, 17: 40, 19: 31, 32: 11, 127: 4}


@pytest.mark.parametrize("ram", [1 << 30, 2 << 30, 3 << 30, 16 << 30])
@pytest.mark.parametrize(("ep_bits", "version"), [(64, (3, 0)), (32, (2, 8))])
def test_qemu_table_matches_the_independent_filter(
    ram: int, ep_bits: int, version: tuple[int, int]
) -> None:
    table = qemu_q35_table(ram, ep_bits=ep_bits)
    expected = reference_filter(table)
    assert measured_smbios_table(table, version=version) == expected
    assert smbios_digest(table, version=version) == hashlib.sha384(expected).digest()
    assert smbios_table_length(table, version=version) == len(table)


def test_qemu_type4_behind_a_2_8_entry_point_keeps_bytes_past_42() -> None:
    """The 42-byte type 4 (2.8) has no Core Count 2 fields: the filter stops at its Length,
    and the string-set right behind it keeps its first byte."""
    table = qemu_q35_table(ep_bits=32)
    t4 = next(s for s in smbios_structures(table, version=(2, 8)) if s.type == 4)
    out = measured_smbios_table(table, version=(2, 8))
    assert (t4.length, table[t4.offset + 42 : t4.offset + 47]) == (42, b"CPU 0")
    assert out[t4.offset + 42 : t4.offset + 60] == b"CPU 0\0QEMU\0pc-q35-9.2"[:18]
    assert out[t4.offset + 0x20 : t4.offset + 0x26] == bytes(6)


def test_qemu_table_filtered_bytes_by_hand() -> None:
    """What must and must not survive, read off the filtered bytes."""
    table = qemu_q35_table()
    out = measured_smbios_table(table)
    for secret in (
        b"SYS-SERIAL-0042",
        b"CHASSIS-7",
        b"ASSET-3",
        b"CPU-SERIAL",
        b"CPU-ASSET",
        b"CPU-PART",
        b"DIMM-SERIAL",
        b"DIMM-ASSET",
        b"DIMM-PART",
        b"oem-string",
    ):
        assert secret not in out
    for kept in (
        b"QEMU\0" + PRODUCT + b"\0" + VERSION,
        b"EFI Development Kit II / OVMF",
        b"CPU 0\0QEMU\0" + VERSION,
        b"DIMM 0\0QEMU",
    ):
        assert kept in out
    assert b" " * len(b"SYS-SERIAL-0042") + b"\0\0" in out
    assert GUEST_UUID.bytes_le not in out
    # type 1: serial index, UUID and wake-up type zeroed; SKU and family untouched
    at = len(
        structure(0, 0, bytes(22), [b"EFI Development Kit II / OVMF", b"0.0.0", b"02/06/2015"])
    )
    assert out[at : at + 27] == bytes([1, 27, 0, 1, 1, 2, 3, 0]) + bytes(16) + bytes(3)
    # the memory size survives: the digest depends on -m
    assert smbios_digest(qemu_q35_table(1 << 30)) != smbios_digest(qemu_q35_table(2 << 30))


# ---------------------------------------------------------------- quirks, by hand


def test_short_type4_fields_past_length_are_left_alone() -> None:
    """SMBIOS 2.0 type 4 (26 bytes): only Voltage (11h) and Current Speed (16h) are in it; the
    C code checks Length >= offset + size, so it writes nothing past the formatted area."""
    body = bytes(range(0x10, 0x10 + 22))  # offsets 4..0x19
    t4 = structure(4, 0x400, body, [b"A", b"B"])
    table = t4 + END
    expected = bytearray(table)
    expected[0x11] = 0
    expected[0x16:0x18] = b"\0\0"
    assert measured_smbios_table(table) == bytes(expected)


def test_type4_length_0x2b_cuts_core_count_2() -> None:
    """Length 0x2B: the string fields and 23h..25h are in, Core Count 2 (2Ah, 2 bytes) is not."""
    body = bytearray(0x2B - 4)
    body[0x20 - 4 : 0x23 - 4] = bytes([1, 2, 3])
    body[0x23 - 4 : 0x26 - 4] = bytes([8, 8, 16])
    body[0x2A - 4] = 0x77
    table = structure(4, 0x400, bytes(body), [b"s1", b"a22", b"p333"]) + END
    out = measured_smbios_table(table)
    assert out[0x20:0x26] == bytes(6)
    assert out[0x2A] == 0x77
    assert out[0x2B : 0x2B + 13] == b"  \0   \0    \0\0"


def test_string_index_past_the_count_blanks_the_last_string() -> None:
    body = bytearray(0x1B - 4)
    body[0x07 - 4] = 9  # serial number: string 9 of 2
    table = structure(1, 0x100, bytes(body), [b"first", b"second"]) + END
    out = measured_smbios_table(table)
    assert out[0x1B : 0x1B + 14] == b"first\0      \0\0"
    assert out[0x07] == 0


def test_string_index_zero_changes_no_string() -> None:
    body = bytearray(0x16 - 4)
    body[0x07 - 4] = 0
    body[0x08 - 4] = 0
    table = structure(3, 0x300, bytes(body), [b"QEMU", b"keep"]) + END
    assert measured_smbios_table(table) == table


def test_string_index_without_strings_zeroes_the_index_only() -> None:
    """GetSmbiosStringById returns NULL; the RELEASE build writes the spaces to address 0."""
    body = bytearray(0x16 - 4)
    body[0x07 - 4] = 1
    body[0x08 - 4] = 2
    body[0x0C - 4] = 0x55
    table = structure(3, 0x300, bytes(body)) + END
    expected = bytearray(table)
    expected[0x07] = expected[0x08] = 0
    assert measured_smbios_table(table) == bytes(expected)


def test_shared_string_index_blanks_it_once() -> None:
    body = bytearray(0x16 - 4)
    body[0x07 - 4] = body[0x08 - 4] = 2
    table = structure(3, 0x300, bytes(body), [b"QEMU", b"same"]) + END
    out = measured_smbios_table(table)
    assert out[0x16:] == b"QEMU\0    \0\0" + END


def test_whole_types_and_oem_types_are_zeroed_with_their_strings() -> None:
    for kind in (11, 15, 18, 31, 33, 128, 200, 255):
        s = structure(kind, 0x1234, b"\x01\x02\x03", [b"text", b"more"])
        out = measured_smbios_table(s + END)
        assert out == bytes([kind, 7, 0x34, 0x12]) + bytes(len(s) - 4) + END


def test_end_of_table_then_trailing_garbage_is_ignored() -> None:
    table = structure(0, 0, bytes(20), [b"v"]) + END
    assert measured_smbios_table(table + b"\xff\x01garbage") == table
    assert smbios_table_length(table + b"\x99") == len(table)


def test_missing_end_of_table_is_bounded_by_the_buffer() -> None:
    table = structure(0, 0, bytes(20), [b"v"]) + structure(32, 0x2000, bytes(7))
    assert smbios_table_length(table) == len(table)
    assert measured_smbios_table(table) == table


def test_smbios2_entry_point_hashes_the_whole_table_length() -> None:
    """Below 3.0 the 32-bit entry point's TableLength is taken as is, and FilterSmbiosTable
    walks on past a type 127."""
    body = bytearray(0x1B - 4)
    body[0x07 - 4] = 1
    after = structure(1, 0x100, bytes(body), [b"x"])
    table = END + after
    out = measured_smbios_table(table, version=(2, 8))
    assert len(out) == len(table)
    assert out[: len(END)] == END
    assert out[len(END) :] != after  # filtered: type 1 after the end-of-table
    assert measured_smbios_table(table, version=(3, 0)) == END


def test_smbios_below_2_7_stops_at_a_64_byte_string() -> None:
    """mMaxLen = 64 below 2.7: a 64-byte string makes the walk give up, and the rest of the
    table is hashed unfiltered; with 2.7+ it is filtered."""
    long_one = structure(0, 0, bytes(20), [b"v" * 64])
    serial = structure(3, 0x300, bytes([0, 0, 0, 1]) + bytes(14), [b"SERIAL"])
    table = structure(32, 0x2000, bytes(7)) + long_one + serial
    assert measured_smbios_table(table, version=(2, 6)) == table
    assert b"SERIAL" not in measured_smbios_table(table, version=(2, 7))
    assert smbios_table_length(table + END, version=(3, 0)) == len(table + END)


def test_event_data_and_constants() -> None:
    """EFI_HANDOFF_TABLE_POINTERS: UINTN NumberOfTables, then EFI_CONFIGURATION_TABLE
    {EFI_GUID VendorGuid, VOID *VendorTable}; GUIDs from MdePkg.dec."""
    smbios3 = uuid.UUID("f2fd1544-9794-4a2c-992e-e5bbcf20e394").bytes_le
    smbios2 = uuid.UUID("eb9d2d31-2d88-11d3-9a16-0090273fc14d").bytes_le
    assert smbios_event_data() == struct.pack("<Q", 1) + smbios3 + bytes(8)
    assert smbios_event_data(0x7F6A4000) == struct.pack("<Q16sQ", 1, smbios3, 0x7F6A4000)
    assert smbios_event_data(0xE0000, version=(2, 8)) == struct.pack("<Q16sQ", 1, smbios2, 0xE0000)
    assert (EV_EFI_HANDOFF_TABLES, SMBIOS_PCR) == (0x80000009, 1)
    assert smbios.SMBIOS_DESCRIPTION == "RTMR0 SMBIOS tables"
    with pytest.raises(ValueError, match="not a u64"):
        smbios_event_data(1 << 64)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (b"\x01", "header runs past the end"),
        (bytes([1, 3, 0, 0, 0, 0]), "Length 3 is below 4"),
        (bytes([1, 8, 0, 0]), "no double NUL"),
        (structure(1, 0, bytes(23))[:-1], "no double NUL"),
        (bytes([0, 4, 0, 0]) + b"abc", "string runs past the end"),
        (END[:3], "header runs past the end"),
    ],
)
def test_malformed_tables_are_image_errors(table: bytes, message: str) -> None:
    with pytest.raises(ImageError, match=message) as info:
        measured_smbios_table(table)
    assert "type" in str(info.value) or "header" in str(info.value)
    assert info.value.offset is not None


def test_a_string_running_off_the_end_below_2_7_is_an_image_error() -> None:
    with pytest.raises(ImageError, match="string runs past the end"):
        measured_smbios_table(bytes([0, 4, 0, 0]) + b"x" * 10, version=(2, 0))


# ---------------------------------------------------------------- entry points (DSP0134 5.2)


def _checksummed(data: bytearray, at: int, start: int = 0, end: int | None = None) -> bytes:
    data[at] = (-sum(data[start:end]) + data[at]) & 0xFF
    return bytes(data)


def ep32(length: int = 0x1234, address: int = 0xF0000, count: int = 9) -> bytes:
    """The 31 bytes SmbiosDxe writes for version 2.8 (QEMU's "auto" anchor)."""
    ep = bytearray(b"_SM_" + bytes([0, 0x1F, 2, 8]) + struct.pack("<H", 0x80) + bytes(6))
    ep += b"_DMI_" + bytes([0]) + struct.pack("<HIH", length, address, count) + bytes([0x28])
    _checksummed(ep, 0x15, 0x10, 0x1F)
    return _checksummed(ep, 0x04, 0, 0x1F)


def ep64(size: int = 0x1234, address: int = 0x7F6A4000) -> bytes:
    ep = bytearray(b"_SM3_" + bytes([0, 0x18, 3, 0, 0, 1, 0]) + struct.pack("<IQ", size, address))
    return _checksummed(ep, 0x05)


def test_entry_points() -> None:
    assert parse_smbios_entry_point(ep64()) == SmbiosEntryPoint(64, (3, 0), 0x1234, 0x7F6A4000)
    assert parse_smbios_entry_point(ep32()) == SmbiosEntryPoint(32, (2, 8), 0x1234, 0xF0000)
    assert sum(ep32()) & 0xFF == 0
    assert sum(ep32()[0x10:]) & 0xFF == 0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"_SM2_" + bytes(26), "no _SM_ or _SM3_ anchor"),
        (ep64()[:0x17], "23 bytes with Length 24"),
        (ep64()[:6] + bytes([0x17]) + ep64()[7:], "Length 23"),
        (ep64()[:0x10] + bytes([1]) + ep64()[0x11:], "checksum"),
        (ep32()[:0x10] + b"_DMX_" + ep32()[0x15:], "checksum"),
        (
            _checksummed(bytearray(ep32()[:0x10] + b"_DMX_" + ep32()[0x15:]), 0x04),
            "bad _DMI_ part",
        ),
    ],
)
def test_bad_entry_points(data: bytes, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        parse_smbios_entry_point(data)


def test_entry_point_version_drives_the_path() -> None:
    """A 2.8 entry point (QEMU 9.0+ "auto"): the whole TableLength is hashed, an OEM structure
    behind type 127 included (zeroed past its header), and the event names gEfiSmbiosTableGuid;
    a 3.0 one stops at type 127 and names the SMBIOS3 GUID."""
    oem = structure(200, 0xC800, b"\x01\x02", [b"oem"])
    table = qemu_q35_table() + oem
    filtered_oem = oem[:4] + bytes(len(oem) - 4)
    for ep, tail, guid in (
        (ep32(len(table)), filtered_oem, "eb9d2d31-2d88-11d3-9a16-0090273fc14d"),
        (ep64(len(table)), b"", "f2fd1544-9794-4a2c-992e-e5bbcf20e394"),
    ):
        version = parse_smbios_entry_point(ep).version
        out = measured_smbios_table(table, version=version)
        assert out == reference_filter(qemu_q35_table()) + tail
        assert smbios_event_data(5, version=version)[8:24] == uuid.UUID(guid).bytes_le


# ---------------------------------------------------------------- the real driver's records


def test_filter_records_of_the_real_driver(firmware: Callable[[str], Path]) -> None:
    """The Debian ovmf-inteltdx 2026.08 SmbiosMeasurementDxe (FILE_GUID d27fed59-...): its
    mSmbiosFilterStandardTableBlackList (X64: Type u8 + 7 pad, Filter pointer, FilterCount;
    24 bytes) and each SMBIOS_FILTER_TABLE (Type u8 + 7 pad, Offset, Size, Flags u32 + 4 pad;
    32 bytes), read from its .data section by their link-time addresses."""
    data = firmware("OVMF.inteltdx.ms.fd").read_bytes()
    name = uuid.UUID("d27fed59-abb4-4fed-bead-2a878c7e4a7e").bytes_le
    pe = b""
    for volume in _lzma_volumes(data):
        at = volume.find(name)
        if at >= 0:
            size = int.from_bytes(volume[at + 20 : at + 23], "little")
            ffs, pos = volume[at + 24 : at + size], 0
            while pos + 4 <= len(ffs):
                length = int.from_bytes(ffs[pos : pos + 3], "little")
                if ffs[pos + 3] == 0x10:  # EFI_SECTION_PE32
                    pe = ffs[pos + 4 : pos + length]
                pos += (length + 3) & ~3
    assert pe[:2] == b"MZ"
    coff = struct.unpack_from("<I", pe, 0x3C)[0]
    count, optional = (
        struct.unpack_from("<H", pe, coff + 6)[0],
        struct.unpack_from("<H", pe, coff + 20)[0],
    )
    sections = [
        struct.unpack_from("<8xIIII", pe, coff + 24 + optional + 40 * i) for i in range(count)
    ]

    def file_offset(rva: int) -> int:
        for _vsize, va, rsize, raw in sections:
            if va <= rva < va + rsize:
                return int(rva - va + raw)
        raise AssertionError(f"{rva:#x} in no section")

    type1 = struct.pack("<B7xQQI4x", 1, 7, 1, 1)  # the first record of the type 1 list
    first = pe.index(type1)
    rva1 = next(va + first - raw for _v, va, rsize, raw in sections if raw <= first < raw + rsize)
    top = pe.index(struct.pack("<B7xQQ", 1, rva1, 3))
    whole, fields = set(), {}
    for i in range(14):
        kind, pointer, n = struct.unpack_from("<B7xQQ", pe, top + 24 * i)
        if pointer == 0:
            whole.add(kind)
            continue
        rows = [
            struct.unpack_from("<B7xQQI4x", pe, file_offset(pointer) + 32 * j) for j in range(n)
        ]
        assert all(row[0] == kind for row in rows)
        fields[kind] = tuple((off, size, bool(flags & 1)) for _k, off, size, flags in rows)
    assert whole == set(smbios.ZEROED_TYPES) == WHOLE
    assert fields == smbios.FILTERS
    ours = {k: [(o, s) for _n, o, s in v] for k, v in FIELDS.items()}
    assert {k: [(o, s) for o, s, _f in v] for k, v in fields.items()} == ours


# ---------------------------------------------------------------- properties

_KINDS = [0, 1, 2, 3, 4, 7, 9, 11, 15, 16, 17, 18, 19, 22, 23, 27, 31, 32, 33, 39, 126, 128, 200]
_string = st.binary(min_size=1, max_size=12).map(lambda b: bytes(x or 0x41 for x in b))


@st.composite
def structures(draw: st.DrawFn, *, strings_in_whole: bool = True) -> bytes:
    kind = draw(st.sampled_from(_KINDS))
    body = draw(st.binary(min_size=0, max_size=0x34))
    texts = draw(st.lists(_string, max_size=4))
    if not strings_in_whole and (kind in WHOLE or kind >= 128):
        texts = []
    return structure(kind, draw(st.integers(0, 0xFFFF)), body, texts)


@st.composite
def tables(draw: st.DrawFn, *, strings_in_whole: bool = True) -> bytes:
    parts = draw(st.lists(structures(strings_in_whole=strings_in_whole), max_size=10))
    return b"".join(parts) + END


@settings(max_examples=200, deadline=None)
@given(tables())
def test_random_tables_match_the_independent_filter(table: bytes) -> None:
    out = measured_smbios_table(table)
    assert out == reference_filter(table)
    assert len(out) == len(table) == smbios_table_length(table)


@settings(max_examples=200, deadline=None)
@given(tables())
def test_random_tables_keep_unlisted_types(table: bytes) -> None:
    out = measured_smbios_table(table)
    for s in smbios_structures(table):
        if s.type in (0, 127) or (s.type < 128 and s.type not in WHOLE and s.type not in FIELDS):
            assert out[s.offset : s.end] == table[s.offset : s.end]
        assert out[s.offset : s.offset + 4] == table[s.offset : s.offset + 4]


@settings(max_examples=200, deadline=None)
@given(tables(strings_in_whole=False))
def test_filter_is_idempotent_without_strings_in_zeroed_types(table: bytes) -> None:
    once = measured_smbios_table(table)
    assert measured_smbios_table(once) == once


def test_filter_is_not_idempotent_with_strings_in_zeroed_types() -> None:
    """Zeroing a type 11's strings leaves zeros a re-walk reads as more structures."""
    table = structure(11, 0xB00, b"\x01", [b"oem-string"]) + END
    once = measured_smbios_table(table)
    with pytest.raises(ImageError):
        measured_smbios_table(once)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.sampled_from([(2, 0), (2, 8), (3, 0)]))
def test_random_bytes_give_a_table_or_an_image_error(data: bytes, version: tuple[int, int]) -> None:
    try:
        out = measured_smbios_table(data, version=version)
    except ImageError:
        return
    assert len(out) == smbios_table_length(data, version=version) <= len(data)


@settings(max_examples=200, deadline=None)
@given(tables(), st.data())
def test_truncated_tables_give_a_table_or_an_image_error(table: bytes, data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(table)))
    try:
        out = measured_smbios_table(table[:cut])
    except ImageError:
        return
    assert out == reference_filter(table[:cut])
