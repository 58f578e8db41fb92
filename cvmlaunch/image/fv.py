"""UEFI PI firmware volumes: which files a volume holds, by GUID, type and UI name.

TDVF's DXE drivers and applications live in firmware volumes inside an LZMA-compressed section
of the image (:func:`cvmlaunch.image.tdvf_features.decompressed_volumes`). What RTMR0 measures
depends on some of them: the boot options OVMF registers name an application by its file GUID
in the volume BdsDxe runs from, and an application in a volume a TD never installs (the
"NCCFV") cannot be booted there. This module lists the volumes and their files.

Rule 1: pure: a buffer in, values out; nothing is decompressed here (the caller hands in the
decompressed bytes).
Rule 2: layouts are the UEFI PI specification's (vol. 3, "Firmware Storage Code Definitions"):
``EFI_FIRMWARE_VOLUME_HEADER`` (+ ``EFI_FIRMWARE_VOLUME_EXT_HEADER``, whose first field is
the volume's name), ``EFI_FFS_FILE_HEADER`` (``FFS_ATTRIB_LARGE_FILE``: an 8-byte size
follows), ``EFI_COMMON_SECTION_HEADER`` (size 0xFFFFFF: a 4-byte size follows). Files are
8-byte aligned from the volume's start, sections 4-byte aligned from their file's; a file of
all-erased bytes ends the list.
Rule 3: a malformed volume raises :class:`~cvmlaunch.errors.ImageError` naming the offset,
never IndexError; nested volumes (``EFI_SECTION_FIRMWARE_VOLUME_IMAGE``) are listed too.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from cvmlaunch._struct import StructTable
from cvmlaunch.errors import ImageError
from cvmlaunch.layout import Buffer

__all__ = ["FirmwareVolume", "FvFile", "find_volumes"]

_FV_HEADER = StructTable(
    "EFI_FIRMWARE_VOLUME_HEADER",
    (
        ("zero_vector", 0x00, "16s"),
        ("file_system_guid", 0x10, "16s"),
        ("fv_length", 0x20, "Q"),
        ("signature", 0x28, "4s"),
        ("attributes", 0x2C, "I"),
        ("header_length", 0x30, "H"),
        ("checksum", 0x32, "H"),
        ("ext_header_offset", 0x34, "H"),
        ("reserved", 0x36, "B"),
        ("revision", 0x37, "B"),
    ),
    end=0x38,
)
_FV_EXT_HEADER = StructTable(
    "EFI_FIRMWARE_VOLUME_EXT_HEADER",
    (("fv_name", 0x00, "16s"), ("ext_header_size", 0x10, "I")),
    end=0x14,
)
_FFS_HEADER = StructTable(
    "EFI_FFS_FILE_HEADER",
    (
        ("name", 0x00, "16s"),
        ("integrity_check", 0x10, "H"),
        ("type", 0x12, "B"),
        ("attributes", 0x13, "B"),
        ("size", 0x14, "3s"),
        ("state", 0x17, "B"),
    ),
    end=0x18,
)
_SECTION_HEADER = StructTable(
    "EFI_COMMON_SECTION_HEADER",
    (("size", 0x00, "3s"), ("type", 0x03, "B")),
    end=0x04,
)
_FV_SIGNATURE = b"_FVH"
_FFS_ATTRIB_LARGE_FILE = 0x01
_LARGE = 0xFFFFFF
#: File types made of sections (EFI_FV_FILETYPE_FREEFORM .. MM_CORE_STANDALONE); RAW (0x01),
#: PAD (0xF0) and OEM/debug types hold plain data.
_FIRST_SECTIONED, _LAST_SECTIONED = 0x02, 0x0F
_SECTION_USER_INTERFACE = 0x15
_SECTION_FIRMWARE_VOLUME_IMAGE = 0x17
#: The volume header ends with a block map of (count, length) pairs closed by (0, 0).
_MIN_HEADER = _FV_HEADER.end + 8
_MAX_DEPTH = 4


@dataclass(frozen=True, slots=True)
class FvFile:
    """One FFS file: its name GUID (canonical text), EFI_FV_FILETYPE and UI section name."""

    guid: str
    type: int
    ui_name: str | None


@dataclass(frozen=True, slots=True)
class FirmwareVolume:
    """A firmware volume: its name (the extended header's FvName; None without one), where it
    starts in the buffer it was found in, and its files in volume order."""

    name: str | None
    offset: int
    files: tuple[FvFile, ...]

    def has_file(self, guid: str) -> bool:
        """Whether the volume holds a file named ``guid`` (canonical text, any case)."""
        want = guid.lower()
        return any(f.guid == want for f in self.files)


def _guid(raw: bytes) -> str:
    return str(uuid.UUID(bytes_le=bytes(raw)))


def _need(data: memoryview, at: int, size: int, what: str) -> None:
    if at < 0 or at + size > len(data):
        raise ImageError(f"{what} runs past the end ({at:#x} + {size:#x})", offset=at)


def _sections(
    data: memoryview, start: int, end: int, depth: int, out: list[FirmwareVolume]
) -> str | None:
    ui = None
    at = start
    while at + _SECTION_HEADER.end <= end:
        h = _SECTION_HEADER.unpack(data, at)
        size, head = int.from_bytes(h["size"], "little"), _SECTION_HEADER.end
        if size == _LARGE:
            _need(data, at, 8, "section header")
            size, head = int.from_bytes(data[at + 4 : at + 8], "little"), 8
        if size < head or at + size > end:
            raise ImageError(f"section of {size:#x} bytes does not fit its file", offset=at)
        body = data[at + head : at + size]
        if h["type"] == _SECTION_USER_INTERFACE:
            ui = bytes(body).decode("utf-16-le", errors="replace").split("\x00", 1)[0]
        elif h["type"] == _SECTION_FIRMWARE_VOLUME_IMAGE and depth < _MAX_DEPTH:
            out.append(_volume(data, at + head, depth + 1, out))
        at = start + ((at + size - start + 3) & ~3)
    return ui


def _volume(data: memoryview, base: int, depth: int, out: list[FirmwareVolume]) -> FirmwareVolume:
    _need(data, base, _MIN_HEADER, "firmware volume header")
    h = _FV_HEADER.unpack(data, base)
    if h["signature"] != _FV_SIGNATURE:
        raise ImageError("not a firmware volume (no _FVH signature)", offset=base)
    length, header = h["fv_length"], h["header_length"]
    if header < _MIN_HEADER or length < header:
        raise ImageError(f"firmware volume header of {header:#x} bytes is malformed", offset=base)
    _need(data, base, length, "firmware volume")
    erased = 0xFF if h["attributes"] & 0x800 else 0x00  # EFI_FVB2_ERASE_POLARITY
    name = None
    at = base + header
    if h["ext_header_offset"]:
        ext = base + h["ext_header_offset"]
        _need(data, ext, _FV_EXT_HEADER.end, "firmware volume extended header")
        e = _FV_EXT_HEADER.unpack(data, ext)
        name = _guid(e["fv_name"])
        at = ext + e["ext_header_size"]
    end = base + length
    files = []
    at = base + ((at - base + 7) & ~7)
    while at + _FFS_HEADER.end <= end:
        if all(b == erased for b in data[at : at + _FFS_HEADER.end]):
            break
        f = _FFS_HEADER.unpack(data, at)
        size, head = int.from_bytes(f["size"], "little"), _FFS_HEADER.end
        if f["attributes"] & _FFS_ATTRIB_LARGE_FILE:
            _need(data, at, 32, "FFS file header")
            size, head = int.from_bytes(data[at + 24 : at + 32], "little"), 32
        if size < head or at + size > end:
            raise ImageError(f"FFS file of {size:#x} bytes does not fit its volume", offset=at)
        sectioned = _FIRST_SECTIONED <= f["type"] <= _LAST_SECTIONED
        ui = _sections(data, at + head, at + size, depth, out) if sectioned else None
        files.append(FvFile(_guid(f["name"]), f["type"], ui))
        at = base + ((at + size - base + 7) & ~7)
    return FirmwareVolume(name, base, tuple(files))


def find_volumes(data: Buffer) -> tuple[FirmwareVolume, ...]:
    """Every firmware volume in ``data``: each ``_FVH`` signature past the end of the volume
    before it starts one, and volumes nested in files are listed too, in the order they start.

    Raises:
        ImageError: a volume, file or section that does not fit where its header says.
    """
    view = memoryview(data).cast("B")
    raw = bytes(view)
    out: list[FirmwareVolume] = []
    sig = raw.find(_FV_SIGNATURE)
    while sig >= 0:
        base = sig - _FV_HEADER.offsets["signature"]
        if base < 0:
            sig = raw.find(_FV_SIGNATURE, sig + 1)
            continue
        out.append(_volume(view, base, 0, out))
        sig = raw.find(_FV_SIGNATURE, base + _FV_HEADER.unpack(view, base)["fv_length"])
    return tuple(sorted(out, key=lambda v: v.offset))
