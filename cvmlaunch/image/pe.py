"""PE/COFF images (an EFI-stub bzImage, a UEFI application): the headers and the Authenticode
digest that UEFI firmware measures when it loads one.

Rule 1: take a buffer, never a path; hand-parsed with :mod:`struct`, every offset checked
against the buffer before it is read; bad input raises :class:`~cvmlaunch.errors.ImageError`
naming the image and the offset.

Format (Microsoft PE/COFF specification, "MS-DOS Stub", "COFF File Header", "Optional Header",
"Section Table"; all little-endian): ``e_lfanew`` (u32 at 0x3C) points to ``"PE\\0\\0"``; the
20-byte COFF header follows (``NumberOfSections`` u16 at +2, ``SizeOfOptionalHeader`` u16 at
+16); then the optional header (magic 0x10B PE32 / 0x20B PE32+; ``SizeOfHeaders`` at +60,
``CheckSum`` at +64, ``NumberOfRvaAndSizes`` at +92 / +108, the data directories at +96 /
+112, 8 bytes each, entry 4 = the certificate table, whose address is a *file offset*); then
``NumberOfSections`` 40-byte section headers (``SizeOfRawData`` at +16, ``PointerToRawData``
at +20).

Authenticode digest ("Windows Authenticode Portable Executable Signature Format", "Calculating
the PE Image Hash"; what edk2's ``MeasurePeImageAndExtend`` hashes for EV_EFI_BOOT_SERVICES_
APPLICATION): the headers up to ``SizeOfHeaders`` without the CheckSum field and the
certificate-table directory entry; each section's raw data in ``PointerToRawData`` order
(sections without raw data skipped); the bytes after the last section, less the certificate
table's size. Then, as OVMF measures a kernel it loads from QEMU's fw_cfg (what dstack-mr and
virtee/tdx-measure found on hardware): a section whose raw data runs past the end of the file
is hashed up to the end of the file, and the digest covers the file zero-padded to a multiple of
8 bytes.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from cvmlaunch._struct import StructTable
from cvmlaunch.errors import ImageError
from cvmlaunch.layout import Buffer

__all__ = [
    "PE32_MAGIC",
    "PE32_PLUS_MAGIC",
    "PeImage",
    "PeSection",
    "authenticode_digest",
    "is_pe",
    "parse_pe",
]

PE32_MAGIC = 0x10B
PE32_PLUS_MAGIC = 0x20B
_MZ = b"MZ"
_PE_SIGNATURE = b"PE\x00\x00"
_LFANEW_OFFSET = 0x3C
#: PE/COFF specification, "COFF File Header (Object and Image)" (after the "PE\0\0" signature).
_COFF = StructTable(
    "COFF File Header",
    (
        ("machine", 0, "H"),
        ("number_of_sections", 2, "H"),
        ("time_date_stamp", 4, "I"),
        ("pointer_to_symbol_table", 8, "I"),
        ("number_of_symbols", 12, "I"),
        ("size_of_optional_header", 16, "H"),
        ("characteristics", 18, "H"),
    ),
    end=20,
)
#: PE/COFF specification, "Section Table (Section Headers)": one entry.
_SECTION = StructTable(
    "Section Header",
    (
        ("name", 0, "8s"),
        ("virtual_size", 8, "I"),
        ("virtual_address", 12, "I"),
        ("size_of_raw_data", 16, "I"),
        ("pointer_to_raw_data", 20, "I"),
        ("pointer_to_relocations", 24, "I"),
        ("pointer_to_linenumbers", 28, "I"),
        ("number_of_relocations", 32, "H"),
        ("number_of_linenumbers", 34, "H"),
        ("characteristics", 36, "I"),
    ),
    end=40,
)
_CERT_DIRECTORY = 4  # IMAGE_DIRECTORY_ENTRY_SECURITY
#: Bounds no real image comes near; they stop a corrupt header from making us loop absurdly.
MAX_SECTIONS = 96
#: OVMF measures the image zero-padded to this multiple.
_PAD = 8


@dataclass(frozen=True, slots=True)
class PeSection:
    """One section header."""

    name: str
    virtual_size: int
    virtual_address: int
    raw_size: int
    raw_offset: int


@dataclass(frozen=True, slots=True, eq=False)
class PeImage:
    """A parsed PE/COFF image: where the fields Authenticode skips are, and the sections."""

    name: str
    data: Buffer
    pe_offset: int
    machine: int
    magic: int
    size_of_headers: int
    checksum_offset: int
    cert_directory_offset: int | None  # None: the image has no certificate-table entry
    cert_table: tuple[int, int]  # (file offset, size); (0, 0) when unsigned
    sections: tuple[PeSection, ...]

    @property
    def signed(self) -> bool:
        """Whether the image carries a certificate table (an Authenticode signature)."""
        return self.cert_table[1] != 0


def is_pe(data: Buffer) -> bool:
    """Whether ``data`` starts with ``MZ`` and ``e_lfanew`` points at ``PE\\0\\0``."""
    if len(data) < _LFANEW_OFFSET + 4 or bytes(data[:2]) != _MZ:
        return False
    (lfanew,) = struct.unpack_from("<I", data, _LFANEW_OFFSET)
    return bytes(data[lfanew : lfanew + 4]) == _PE_SIGNATURE


def parse_pe(data: Buffer, *, name: str = "image") -> PeImage:
    """Parse the PE/COFF headers of ``data``.

    Raises:
        ImageError: no MZ/PE signature, an unknown optional-header magic, or a header, section
            or certificate table outside the buffer.
    """
    size = len(data)

    def fail(message: str, offset: int | None = None) -> ImageError:
        return ImageError(message, source=name, offset=offset)

    def need(offset: int, length: int, what: str) -> None:
        if offset < 0 or offset + length > size:
            raise fail(f"{what} ({length} bytes) lies outside the {size}-byte image", offset)

    need(0, _LFANEW_OFFSET + 4, "the MS-DOS header")
    if bytes(data[:2]) != _MZ:
        raise fail("no 'MZ' signature: not a PE/COFF image", 0)
    (pe_offset,) = struct.unpack_from("<I", data, _LFANEW_OFFSET)
    need(pe_offset, 4 + _COFF.size, "the PE signature and COFF header")
    if bytes(data[pe_offset : pe_offset + 4]) != _PE_SIGNATURE:
        raise fail("e_lfanew does not point at 'PE\\0\\0'", pe_offset)
    coff = _COFF.unpack(data, pe_offset + 4)
    machine, nsections = coff["machine"], coff["number_of_sections"]
    opt_size = coff["size_of_optional_header"]
    if nsections > MAX_SECTIONS:
        raise fail(f"{nsections} sections (more than {MAX_SECTIONS})", pe_offset + 6)
    opt = pe_offset + 4 + _COFF.size
    need(opt, 2, "the optional header magic")
    (magic,) = struct.unpack_from("<H", data, opt)
    if magic == PE32_MAGIC:
        count_at, directories = 92, 96
    elif magic == PE32_PLUS_MAGIC:
        count_at, directories = 108, 112
    else:
        raise fail(f"optional header magic {magic:#x} is neither PE32 nor PE32+", opt)
    if opt_size < count_at + 4:
        raise fail(f"SizeOfOptionalHeader {opt_size} is too small for the {magic:#x} magic", opt)
    need(opt, opt_size, "the optional header")
    (size_of_headers,) = struct.unpack_from("<I", data, opt + 60)
    (directory_count,) = struct.unpack_from("<I", data, opt + count_at)
    cert_directory_offset: int | None = None
    cert_table = (0, 0)
    if directory_count > _CERT_DIRECTORY:
        cert_directory_offset = opt + directories + 8 * _CERT_DIRECTORY
        if cert_directory_offset + 8 > opt + opt_size:
            raise fail("the certificate-table entry lies outside the optional header", opt)
        cert_table = struct.unpack_from("<II", data, cert_directory_offset)
        if cert_table[1]:
            need(cert_table[0], cert_table[1], "the certificate table")
    section_table = opt + opt_size
    need(section_table, nsections * _SECTION.size, "the section table")
    if size_of_headers < section_table + nsections * _SECTION.size or size_of_headers > size:
        raise fail(
            f"SizeOfHeaders {size_of_headers:#x} does not cover the headers or exceeds the image",
            opt + 60,
        )
    sections = []
    for i in range(nsections):
        at = section_table + i * _SECTION.size
        header = _SECTION.unpack(data, at)
        raw_size, raw_offset = header["size_of_raw_data"], header["pointer_to_raw_data"]
        if raw_size and raw_offset >= size:
            raise fail(
                f"section {i} raw data at {raw_offset:#x} starts past the end of the image", at
            )
        sections.append(
            PeSection(
                header["name"].rstrip(b"\x00").decode("ascii", errors="replace"),
                header["virtual_size"],
                header["virtual_address"],
                raw_size,
                raw_offset,
            )
        )
    return PeImage(
        name=name,
        data=data,
        pe_offset=pe_offset,
        machine=machine,
        magic=magic,
        size_of_headers=size_of_headers,
        checksum_offset=opt + 64,
        cert_directory_offset=cert_directory_offset,
        cert_table=cert_table,
        sections=tuple(sections),
    )


def authenticode_digest(image: PeImage, algorithm: str = "sha384") -> bytes:
    """The Authenticode digest of ``image`` as OVMF measures it (see the module doc).

    Args:
        image: from :func:`parse_pe`.
        algorithm: a :mod:`hashlib` name; TDX RTMRs use ``sha384``.

    Raises:
        ImageError: sections that overlap the headers (the digest would not be defined).
    """
    data = memoryview(image.data)
    size = len(data)
    h = hashlib.new(algorithm)
    h.update(data[: image.checksum_offset])
    if image.cert_directory_offset is None:
        h.update(data[image.checksum_offset + 4 : image.size_of_headers])
    else:
        h.update(data[image.checksum_offset + 4 : image.cert_directory_offset])
        h.update(data[image.cert_directory_offset + 8 : image.size_of_headers])
    hashed = image.size_of_headers
    for s in sorted((s for s in image.sections if s.raw_size), key=lambda s: s.raw_offset):
        if s.raw_offset < image.size_of_headers:
            raise ImageError(
                f"section {s.name!r} raw data at {s.raw_offset:#x} overlaps the headers",
                source=image.name,
            )
        h.update(data[s.raw_offset : min(s.raw_offset + s.raw_size, size)])
        hashed += s.raw_size
    trailing = size - image.cert_table[1] - hashed
    if trailing > 0:
        h.update(data[hashed : hashed + trailing])
    if size % _PAD:
        h.update(bytes(_PAD - size % _PAD))
    return h.digest()
