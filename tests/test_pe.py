"""PE/COFF parsing and the Authenticode digest: a real signed Debian kernel against osslsigncode
(tests/vectors/tdx/README.md says how the values were obtained), the 8-byte padding, and bad
input that must raise ImageError only."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cvmlaunch.errors import ImageError
from cvmlaunch.image.pe import authenticode_digest, is_pe, parse_pe
from tests.vectors import debian_kernel

VECTORS = debian_kernel()


def _debian(debian_kernel: tuple[Path, dict[str, str]]) -> bytes:
    path, record = debian_kernel
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != VECTORS.vmlinuz_sha256:
        pytest.skip(
            f"apt served another kernel ({record.get('version')}); vectors are for 6.1.176-1"
        )
    return data


def test_signed_debian_kernel_matches_osslsigncode(
    debian_kernel: tuple[Path, dict[str, str]],
) -> None:
    data = _debian(debian_kernel)
    image = parse_pe(data, name="vmlinuz")
    assert image.signed
    assert image.magic == 0x20B
    assert authenticode_digest(image).hex() == VECTORS.sha384
    # SHA-256 is also the digest Debian's signer put in the kernel's own signature.
    assert authenticode_digest(image, "sha256").hex() == VECTORS.sha256


def test_padding_to_8_bytes_matches_osslsigncode(
    debian_kernel: tuple[Path, dict[str, str]],
) -> None:
    data = _debian(debian_kernel)
    image = parse_pe(data)
    offset, _size = image.cert_table
    assert image.cert_directory_offset is not None
    # What `osslsigncode remove-signature` leaves (the directory entry is not hashed), plus
    # three bytes so that the file is not a multiple of 8.
    unsigned = bytearray(data[:offset])
    unsigned[image.cert_directory_offset : image.cert_directory_offset + 8] = bytes(8)
    odd = bytes(unsigned) + b"abc"
    assert authenticode_digest(parse_pe(odd)).hex() == VECTORS.unsigned_plus_abc_sha384
    # Unsigned, 8-aligned: the same digest as the signed file (the certificate is excluded).
    assert authenticode_digest(parse_pe(bytes(unsigned))).hex() == VECTORS.sha384


def tiny_pe(*, pe32_plus: bool = True, trailing: bytes = b"") -> bytes:
    """A minimal PE: MZ header, PE header, one section of 0x200 bytes at 0x200."""
    opt_size = 240 if pe32_plus else 224
    pe_off = 0x40
    coff = struct.pack("<HHIIIHH", 0x8664, 1, 0, 0, 0, opt_size, 0x22)
    opt = bytearray(opt_size)
    struct.pack_into("<H", opt, 0, 0x20B if pe32_plus else 0x10B)
    struct.pack_into("<I", opt, 60, 0x200)  # SizeOfHeaders
    struct.pack_into("<I", opt, 64, 0xDEADBEEF)  # CheckSum (not hashed)
    struct.pack_into("<I", opt, 108 if pe32_plus else 92, 16)  # NumberOfRvaAndSizes
    section = struct.pack("<8sIIIIIIHHI", b".text", 0x200, 0x1000, 0x200, 0x200, 0, 0, 0, 0, 0)
    head = bytearray(0x200)
    head[:2] = b"MZ"
    struct.pack_into("<I", head, 0x3C, pe_off)
    body = b"PE\x00\x00" + coff + bytes(opt) + section
    head[pe_off : pe_off + len(body)] = body
    return bytes(head) + bytes(range(256)) * 2 + trailing


def independent_authenticode(data: bytes, pe32_plus: bool) -> bytes:
    """The spec's recipe written out for the tiny image (one section, no certificate)."""
    opt = 0x40 + 4 + 20
    checksum = opt + 64
    cert_dir = opt + (112 if pe32_plus else 96) + 4 * 8
    h = hashlib.sha384()
    h.update(data[:checksum])
    h.update(data[checksum + 4 : cert_dir])
    h.update(data[cert_dir + 8 : 0x200])
    h.update(data[0x200:0x400])
    h.update(data[0x400:])
    h.update(bytes(-len(data) % 8))
    return h.digest()


@pytest.mark.parametrize("pe32_plus", [True, False])
@pytest.mark.parametrize("trailing", [b"", b"x", b"12345678", b"trailing data"])
def test_tiny_pe_against_the_spec_recipe(pe32_plus: bool, trailing: bytes) -> None:
    data = tiny_pe(pe32_plus=pe32_plus, trailing=trailing)
    assert is_pe(data)
    image = parse_pe(data)
    assert not image.signed
    assert [s.name for s in image.sections] == [".text"]
    assert authenticode_digest(image) == independent_authenticode(data, pe32_plus)
    # CheckSum is not hashed.
    other = bytearray(data)
    other[0x40 + 24 + 64] ^= 0xFF
    assert authenticode_digest(parse_pe(bytes(other))) == authenticode_digest(image)


def test_sections_are_hashed_in_file_order_not_table_order() -> None:
    """Authenticode hashes the sections sorted by PointerToRawData and skips those without
    raw data: a table listing .data (file offset 0x400) before .text (0x200), with an
    empty .bss between them, hashes .text first."""
    opt_size = 240
    coff = struct.pack("<HHIIIHH", 0x8664, 3, 0, 0, 0, opt_size, 0x22)
    opt = bytearray(opt_size)
    struct.pack_into("<H", opt, 0, 0x20B)
    struct.pack_into("<I", opt, 60, 0x200)  # SizeOfHeaders
    struct.pack_into("<I", opt, 108, 16)  # NumberOfRvaAndSizes
    sect = struct.Struct("<8sIIIIIIHHI")
    table = (
        sect.pack(b".data", 0x200, 0x2000, 0x200, 0x400, 0, 0, 0, 0, 0)
        + sect.pack(b".bss", 0x1000, 0x3000, 0, 0, 0, 0, 0, 0, 0)
        + sect.pack(b".text", 0x200, 0x1000, 0x200, 0x200, 0, 0, 0, 0, 0)
    )
    head = bytearray(0x200)
    head[:2] = b"MZ"
    struct.pack_into("<I", head, 0x3C, 0x40)
    body = b"PE\x00\x00" + coff + bytes(opt) + table
    head[0x40 : 0x40 + len(body)] = body
    text, data_ = b"T" * 0x200, bytes(range(256)) * 2
    image = bytes(head) + text + data_ + b"tail!"
    parsed = parse_pe(image)
    assert [s.name for s in parsed.sections] == [".data", ".bss", ".text"]
    checksum = 0x40 + 24 + 64
    cert_dir = 0x40 + 24 + 112 + 4 * 8
    want = hashlib.sha384()
    for part in (image[:checksum], image[checksum + 4 : cert_dir], image[cert_dir + 8 : 0x200],
                 text, data_, b"tail!", bytes(-len(image) % 8)):  # fmt: skip
        want.update(part)
    assert authenticode_digest(parsed) == want.digest()
    # in table order the digest would differ: the test tells the two apart
    wrong = hashlib.sha384(image[:checksum] + image[checksum + 4 : cert_dir]
                           + image[cert_dir + 8 : 0x200] + data_ + text + b"tail!"
                           + bytes(-len(image) % 8))  # fmt: skip
    assert wrong.digest() != want.digest()


def test_bad_input() -> None:
    good = tiny_pe()
    with pytest.raises(ImageError, match="MZ"):
        parse_pe(b"ZM" + good[2:])
    with pytest.raises(ImageError, match="outside"):
        parse_pe(good[:0x50])
    bad = bytearray(good)
    struct.pack_into("<I", bad, 0x3C, 0x1000000)
    with pytest.raises(ImageError, match="outside"):
        parse_pe(bytes(bad))
    bad = bytearray(good)
    struct.pack_into("<H", bad, 0x40 + 24, 0x107)
    with pytest.raises(ImageError, match="magic"):
        parse_pe(bytes(bad))
    bad = bytearray(good)
    struct.pack_into("<I", bad, 0x40 + 24 + 60, 0x100000)  # SizeOfHeaders past the end
    with pytest.raises(ImageError, match="SizeOfHeaders"):
        parse_pe(bytes(bad))
    assert not is_pe(b"MZ" + bytes(100))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_headers_raise_image_error_only(data: st.DataObject) -> None:
    image = bytearray(tiny_pe(trailing=b"tail"))
    for _ in range(data.draw(st.integers(1, 6))):
        at = data.draw(st.integers(0, 0x1FF))
        image[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(image)))
    try:
        parsed = parse_pe(bytes(image[:cut]), name="fuzz")
        authenticode_digest(parsed)
    except ImageError:
        pass
