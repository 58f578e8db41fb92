"""Synthesize OVMF/TDVF flat images (GUID footer table, SEV and TDX metadata) for tests."""

from __future__ import annotations

import struct

from cvmlaunch.image.ovmf import (
    FOOTER_GUID,
    HASH_TABLE_GUID,
    SEV_ES_RESET_BLOCK_GUID,
    SEV_METADATA_GUID,
    TDX_METADATA_GUID,
    TDX_METADATA_OFFSET_GUID,
    guid_bytes_le,
)


def entry(guid: str, data: bytes) -> bytes:
    """One GUID table entry: data, u16 length (data + 18), GUID."""
    return data + struct.pack("<H", len(data) + 18) + guid_bytes_le(guid)


def build_ovmf(
    size: int = 0x10000,
    *,
    sev: list[tuple[int, int, int]] | None = None,
    tdx: list[tuple[int, int, int, int, int, int]] | None = None,
    reset_eip: int | None = 0x80B004,
    hash_table: tuple[int, int] | None = None,
    extra: list[tuple[str, bytes]] | None = None,
    sev_version: int = 1,
    tdvf_version: int = 1,
) -> bytes:
    """An image of ``size`` bytes with the given metadata near its start.

    ``sev`` is a list of (gpa, size, type); ``tdx`` of (data_offset, raw_size, gpa,
    memory_size, type, attributes). The ASEV list sits at 0x100 and the TDVF descriptor at
    0x400 (after its GUID at 0x3F0); the GUID table sits before the last 0x20 bytes.
    """
    image = bytearray(size)
    entries: list[bytes] = []
    if reset_eip is not None:
        entries.append(entry(SEV_ES_RESET_BLOCK_GUID, struct.pack("<I", reset_eip)))
    if hash_table is not None:
        entries.append(entry(HASH_TABLE_GUID, struct.pack("<II", *hash_table)))
    if sev is not None:
        blob = struct.pack("<4sIII", b"ASEV", 16 + 12 * len(sev), sev_version, len(sev))
        blob += b"".join(struct.pack("<III", *d) for d in sev)
        image[0x100 : 0x100 + len(blob)] = blob
        entries.append(entry(SEV_METADATA_GUID, struct.pack("<I", size - 0x100)))
    if tdx is not None:
        blob = struct.pack("<4sIII", b"TDVF", 16 + 32 * len(tdx), tdvf_version, len(tdx))
        blob += b"".join(struct.pack("<IIQQII", *s) for s in tdx)
        image[0x3F0:0x400] = guid_bytes_le(TDX_METADATA_GUID)
        image[0x400 : 0x400 + len(blob)] = blob
        entries.append(entry(TDX_METADATA_OFFSET_GUID, struct.pack("<I", size - 0x400)))
    for guid, data in extra or []:
        entries.append(entry(guid, data))
    # Entries are walked backwards from the footer, so the first listed sits nearest to it.
    table = b"".join(reversed(entries))
    footer = struct.pack("<H", len(table) + 18) + guid_bytes_le(FOOTER_GUID)
    blob = table + footer
    end = size - 0x20
    image[end - len(blob) : end] = blob
    return bytes(image)
