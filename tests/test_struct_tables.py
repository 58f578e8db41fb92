"""Every struct layout declared as a :class:`~cvmlaunch._struct.StructTable`: contiguous from
the spec's first offset to the spec's end, with unique names, and read into its record by name.

The spec bounds below are written down here from the spec tables each layout cites, apart
from the tables themselves, so that a row slipped in or dropped shows up as a wrong end.
"""

from __future__ import annotations

import dataclasses
import importlib
import struct
from pathlib import Path

import pytest

import cvmlaunch
from cvmlaunch import cpuid
from cvmlaunch._struct import StructTable
from cvmlaunch.image import bzimage
from cvmlaunch.measure import identity

#: ``(module, table name)``: (first offset, end) as the spec gives them, the spec.
_SPEC_BOUNDS: dict[tuple[str, str], tuple[int, int, str]] = {
    ("cvmlaunch.image.bzimage", "SETUP_HEADER_FIELDS"): (
        0x1F1,
        0x26C,
        "asm/bootparam.h struct setup_header; boot.rst 'The Real-Mode Kernel Header'",
    ),
    ("cvmlaunch.attest.snp_report", "REPORT_FIELDS"): (
        0,
        0x4A0,
        "SEV-SNP Firmware ABI, 'ATTESTATION_REPORT Structure'",
    ),
    ("cvmlaunch.attest.tdx_quote", "HEADER_FIELDS"): (0, 48, "DCAP 'Quote Format': header"),
    ("cvmlaunch.attest.tdx_quote", "_V5_DESCRIPTOR"): (
        0,
        6,
        "DCAP 'Quote Format' v5: body type u16, body size u32",
    ),
    ("cvmlaunch.attest.tdx_quote", "TDX10_BODY_FIELDS"): (
        0,
        584,
        "DCAP 'Quote Format': TD report body, TDX 1.0",
    ),
    ("cvmlaunch.attest.tdx_quote", "TDX15_BODY_FIELDS"): (
        0,
        648,
        "DCAP 'Quote Format': TD report body, TDX 1.5",
    ),
    ("cvmlaunch.measure.identity", "ID_BLOCK_FIELDS"): (
        0,
        0x60,
        "SNP ABI, SNP_LAUNCH_FINISH, 'ID Block Structure'",
    ),
    ("cvmlaunch.measure.identity", "ID_AUTH_FIELDS"): (
        0,
        0x1000,
        "SNP ABI, SNP_LAUNCH_FINISH, 'ID Authentication Information Structure'",
    ),
    ("cvmlaunch.measure.identity", "ECDSA_SIG_FIELDS"): (
        0,
        0x200,
        "SNP ABI, 'ECDSA Signature Format'",
    ),
    ("cvmlaunch.measure.identity", "ECDSA_PUBKEY_FIELDS"): (
        0,
        0x404,
        "SNP ABI, 'ECDSA Public Key Format'",
    ),
    ("cvmlaunch.image.td_hob", "_END"): (0, 8, "UEFI PI vol. 3 EFI_HOB_GENERIC_HEADER"),
    ("cvmlaunch.image.td_hob", "_PHIT"): (0, 56, "UEFI PI vol. 3 EFI_HOB_HANDOFF_INFO_TABLE"),
    ("cvmlaunch.image.td_hob", "_RESOURCE"): (0, 48, "UEFI PI vol. 3 EFI_HOB_RESOURCE_DESCRIPTOR"),
    ("cvmlaunch.image.pe", "_COFF"): (0, 20, "PE/COFF spec 'COFF File Header'"),
    ("cvmlaunch.image.pe", "_SECTION"): (0, 40, "PE/COFF spec 'Section Table'"),
    ("cvmlaunch.image.varstore", "_STORE_HEADER"): (
        0,
        28,
        "edk2 VariableFormat.h VARIABLE_STORE_HEADER",
    ),
    ("cvmlaunch.image.varstore", "_VAR_HEADER"): (
        0,
        60,
        "edk2 VariableFormat.h AUTHENTICATED_VARIABLE_HEADER",
    ),
    ("cvmlaunch.cpuid", "_HEADER"): (0, 16, "SNP firmware ABI, CPUID page header"),
    ("cvmlaunch.cpuid", "_FUNCTION"): (0, 48, "SNP firmware ABI, SNP_CPUID_FUNCTION"),
    ("cvmlaunch.image.ovmf", "_METADATA_HEADER"): (
        0,
        16,
        "OvmfSevMetadata.asm OVMF_SEV_METADATA; TDVF design guide TDVF_DESCRIPTOR",
    ),
    ("cvmlaunch.image.ovmf", "_SEV_DESC"): (0, 12, "OvmfSevMetadata.asm section descriptor"),
    ("cvmlaunch.image.ovmf", "_TDVF_SECTION"): (0, 32, "TDVF design guide TDVF_SECTION"),
    ("cvmlaunch.image.fv", "_FV_HEADER"): (
        0,
        0x38,
        "UEFI PI vol. 3 EFI_FIRMWARE_VOLUME_HEADER (up to BlockMap)",
    ),
    ("cvmlaunch.image.fv", "_FV_EXT_HEADER"): (
        0,
        20,
        "UEFI PI vol. 3 EFI_FIRMWARE_VOLUME_EXT_HEADER",
    ),
    ("cvmlaunch.image.fv", "_FFS_HEADER"): (0, 24, "UEFI PI vol. 3 EFI_FFS_FILE_HEADER"),
    ("cvmlaunch.image.fv", "_SECTION_HEADER"): (0, 4, "UEFI PI vol. 3 EFI_COMMON_SECTION_HEADER"),
    ("cvmlaunch.measure.plain", "_STEP"): (0, 98, "docs/log-format.md, the plain transcript step"),
    ("cvmlaunch.image.smbios", "_HEADER"): (
        0,
        4,
        "DMTF DSP0134 6.1.2 'Structure header format': type, length, handle",
    ),
    ("cvmlaunch.image.smbios", "_EP32"): (
        0,
        0x1F,
        "DMTF DSP0134 5.2.1 'SMBIOS 2.1 (32-bit) Entry Point structure'",
    ),
    ("cvmlaunch.image.smbios", "_EP64"): (
        0,
        0x18,
        "DMTF DSP0134 5.2.2 'SMBIOS 3.0 (64-bit) Entry Point structure'",
    ),
    ("cvmlaunch.image.smbios", "_HANDOFF"): (
        0,
        32,
        "TCG PC Client PFP EFI_HANDOFF_TABLE_POINTERS (UefiTcgPlatform.h), one table, X64",
    ),
}

#: A table and the record type it is read into field for field, by name.
_RECORDS: list[tuple[StructTable, type]] = [
    (bzimage.SETUP_HEADER_FIELDS, bzimage.SetupHeader),
    (identity.ID_BLOCK_FIELDS, identity.IdBlock),
    (cpuid._FUNCTION, cpuid.SnpCpuidFunction),
]


def _declared_tables() -> dict[tuple[str, str], StructTable]:
    """Every module-level StructTable in the package, found from the sources."""
    root = Path(cvmlaunch.__file__).parent
    found: dict[tuple[str, str], StructTable] = {}
    for path in sorted(root.rglob("*.py")):
        if path.name == "_struct.py" or "StructTable(" not in path.read_text():
            continue
        parts = path.relative_to(root.parent).with_suffix("").parts
        module_name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        module = importlib.import_module(module_name)
        for name, value in vars(module).items():
            if isinstance(value, StructTable):
                found.setdefault((module_name, name), value)
    return found


_TABLES = _declared_tables()


def test_every_table_has_its_spec_bounds_here() -> None:
    assert sorted(_TABLES) == sorted(_SPEC_BOUNDS)


@pytest.mark.parametrize("key", sorted(_SPEC_BOUNDS), ids=lambda key: key[1])
def test_table_is_contiguous_from_the_spec_start_to_the_spec_end(key: tuple[str, str]) -> None:
    table = _TABLES[key]
    start, end, _spec = _SPEC_BOUNDS[key]
    assert table.rows[0][1] == start
    at = start
    for name, offset, fmt in table.rows:
        assert offset == at, f"{name} at {offset:#x}, previous field ends at {at:#x}"
        at += struct.calcsize("<" + fmt)
    assert at == end
    assert (table.start, table.end, table.size) == (start, end, end - start)
    assert table.struct.size == end - start
    assert table.struct.format == "<" + "".join(fmt for _, _, fmt in table.rows)


@pytest.mark.parametrize("key", sorted(_SPEC_BOUNDS), ids=lambda key: key[1])
def test_table_field_names_are_unique(key: tuple[str, str]) -> None:
    names = [name for name, _, _ in _TABLES[key].rows]
    assert len(names) == len(set(names))
    assert all(name.isidentifier() for name in names)


@pytest.mark.parametrize(("table", "record"), _RECORDS, ids=lambda x: getattr(x, "name", ""))
def test_record_has_the_table_fields(table: StructTable, record: type) -> None:
    if dataclasses.is_dataclass(record):
        fields = tuple(f.name for f in dataclasses.fields(record))
    else:
        fields = record._fields  # type: ignore[attr-defined]
    assert sorted(fields) == sorted(table.names)


@pytest.mark.parametrize("key", sorted(_SPEC_BOUNDS), ids=lambda key: key[1])
def test_unpack_reads_each_field_at_its_offset(key: tuple[str, str]) -> None:
    """A buffer whose every byte is its own offset (mod 251): each field's value starts with
    the byte of its declared offset."""
    table = _TABLES[key]
    data = bytes(i % 251 for i in range(table.end + 16))
    values = table.unpack(data)
    for name, offset, fmt in table.rows:
        if fmt.endswith("x"):
            assert name not in values
            continue
        value = values[name]
        raw = value if isinstance(value, bytes) else struct.pack("<" + fmt, value)
        assert raw == data[offset : offset + len(raw)]
    expected = bytearray(data[table.start : table.end])
    for _, offset, fmt in table.rows:
        if fmt.endswith("x"):  # struct packs padding as zeros
            size = struct.calcsize(fmt)
            expected[offset - table.start : offset - table.start + size] = bytes(size)
    assert table.pack(**values) == expected


def test_unpack_at_a_base() -> None:
    table = StructTable("t", (("a", 2, "H"), ("pad", 4, "2x"), ("b", 6, "4s")), end=10)
    data = b"\xff" * 3 + bytes(range(10))
    assert table.unpack(data, base=3) == {"a": 0x0302, "b": b"\x06\x07\x08\x09"}
    assert table.names == ("a", "b")
    assert table.offsets == {"a": 2, "pad": 4, "b": 6}
    assert table.pack(a=0x0302, b=b"\x06\x07\x08\x09") == bytes([2, 3, 0, 0, 6, 7, 8, 9])


@pytest.mark.parametrize(
    ("rows", "end", "message"),
    [
        ((("a", 0, "B"), ("b", 2, "B")), 3, "field 'b' at 0x2, but the previous field ends at 0x1"),
        ((("a", 0, "H"), ("b", 1, "B")), 2, "field 'b' at 0x1, but the previous field ends at 0x2"),
        ((("a", 0, "B"), ("a", 1, "B")), 2, "field 'a' declared twice"),
        ((("a", 0, "2I"),), 8, "field 'a' format '2I' is not one item"),
        ((("a", 0, "<I"),), 4, "field 'a' format '<I' is not one item"),
        ((("a", 0, "s"),), 1, "field 'a' format 's' is not one item"),
        ((("a", 0, "0s"), ("b", 0, "B")), 1, "field 'a' format '0s' is not one item"),
        ((("a", 0, "I"),), 8, "the fields end at 0x4, the record at 0x8"),
        ((), 0, "no rows"),
    ],
)
def test_a_bad_table_is_refused(
    rows: tuple[tuple[str, int, str], ...], end: int, message: str
) -> None:
    with pytest.raises(ValueError, match="^t: " + message.replace("(", r"\(").replace(")", r"\)")):
        StructTable("t", rows, end=end)


def test_pack_wants_every_field_by_name() -> None:
    table = StructTable("t", (("a", 0, "B"), ("b", 1, "B")), end=2)
    with pytest.raises(TypeError, match=r"missing fields \['b'\], unknown fields \['c'\]"):
        table.pack(a=1, c=2)
