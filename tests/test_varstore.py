"""The CFV variable store: Debian's OVMF.inteltdx.ms.fd has Debian's PK/KEK and Microsoft's db
enrolled (checked with the cryptography package's X.509 parser), the plain builds have none;
a hand-built store exercises deleted variables and bad input."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509

from cvmlaunch.errors import ImageError
from cvmlaunch.image.ovmf import guid_bytes_le, parse_ovmf
from cvmlaunch.image.varstore import AUTHENTICATED_VARIABLE_GUID, parse_varstore
from cvmlaunch.measure.tdx_rtmr import secure_boot_from_varstore

X509_SIGNATURE = "a5c059a1-94e4-4aa7-87b5-ab155c2bf072"


def test_enrolled_keys_of_the_ms_build(firmware: Callable[[str], Path]) -> None:
    image = parse_ovmf(firmware("OVMF.inteltdx.ms.fd").read_bytes(), name="ms")
    sb = secure_boot_from_varstore(image)
    assert sorted(sb) == ["KEK", "PK", "SecureBoot", "db", "dbx"]
    assert sb["SecureBoot"] == b"\x01"
    # EFI_SIGNATURE_LIST: type GUID, u32 list size, u32 header size, u32 signature size, then
    # EFI_SIGNATURE_DATA (owner GUID + DER certificate).
    pk = sb["PK"]
    assert pk[:16] == guid_bytes_le(X509_SIGNATURE)
    list_size, header_size, sig_size = struct.unpack_from("<III", pk, 16)
    assert (list_size, header_size) == (len(pk), 0)
    cert = x509.load_der_x509_certificate(pk[28 + 16 : 28 + sig_size])
    assert "Debian UEFI Secure Boot (PK/KEK key)" in cert.subject.rfc4514_string()


@pytest.mark.parametrize("name", ["OVMF.generic.fd", "OVMF.2022.fd"])
def test_plain_builds_have_no_keys(firmware: Callable[[str], Path], name: str) -> None:
    assert secure_boot_from_varstore(parse_ovmf(firmware(name).read_bytes(), name=name)) == {}


def _variable(name: str, guid: str, data: bytes, state: int = 0x3F) -> bytes:
    name16 = (name + "\0").encode("utf-16-le")
    head = struct.pack(
        "<HBBIQ16sIII16s",
        0x55AA,
        state,
        0,
        7,
        0,
        bytes(16),
        0,
        len(name16),
        len(data),
        guid_bytes_le(guid),
    )
    raw = head + name16 + data
    return raw + bytes(-len(raw) % 4)


def _store(*variables: bytes) -> bytes:
    fv = bytearray(72)
    fv[40:44] = b"_FVH"
    struct.pack_into("<H", fv, 48, 72)
    body = b"".join(variables)
    header = guid_bytes_le(AUTHENTICATED_VARIABLE_GUID) + struct.pack(
        "<IBB6x", 28 + len(body) + 64, 0x5A, 0xFE
    )
    return bytes(fv) + header + body + b"\xff" * 64


def test_hand_built_store() -> None:
    g = "8be4df61-93ca-11d2-aa0d-00e098032b8c"
    store = _store(
        _variable("PK", g, b"old", state=0x3C), _variable("PK", g, b"new!"), _variable("X", g, b"1")
    )
    assert parse_varstore(store) == {("PK", g): b"new!", ("X", g): b"1"}
    with pytest.raises(ImageError, match="_FVH"):
        parse_varstore(bytes(100))
    bad = bytearray(store)
    bad[72:88] = bytes(16)
    with pytest.raises(ImageError, match="format"):
        parse_varstore(bytes(bad))
    truncated = _store(_variable("PK", g, b"x" * 40))[: 72 + 28 + 70]
    with pytest.raises(ImageError, match="past the end"):
        parse_varstore(truncated + b"")
