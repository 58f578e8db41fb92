"""Firmware volumes: volumes built here from the UEFI PI spec, and the real Debian TDVF image.

The builder below packs EFI_FIRMWARE_VOLUME_HEADER (+ ext header), EFI_FFS_FILE_HEADER and
EFI_COMMON_SECTION_HEADER by hand (PI spec vol. 3, section 3.2); it shares no code with
cvmlaunch.image.fv. The real image's expectations are edk2's own declarations: the FILE_GUIDs
of the INF files and the volume each is placed in by OvmfPkg/IntelTdx/IntelTdxX64.fdf (edk2
commit f272dd7ea3, 2026-06-23, which the Debian 2026.08 build contains).
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cvmlaunch.errors import ImageError
from cvmlaunch.image.fv import find_volumes
from cvmlaunch.image.tdvf_features import decompressed_volumes

ERASE_POLARITY = 0x800
UI, RAW_SECTION, FV_IMAGE = 0x15, 0x19, 0x17


def section(kind: int, body: bytes) -> bytes:
    raw = struct.pack("<I", len(body) + 4)[:3] + bytes([kind]) + body
    return raw + bytes(-len(raw) % 4)


def ffs(guid: str, kind: int, sections: bytes) -> bytes:
    size = 24 + len(sections)
    header = uuid.UUID(guid).bytes_le + struct.pack("<HBB", 0, kind, 0)
    header += struct.pack("<I", size)[:3] + b"\xf8"
    return header + sections


def volume(files: list[bytes], name: str | None) -> bytes:
    ext = b""
    if name is not None:
        ext = uuid.UUID(name).bytes_le + struct.pack("<I", 20)
    header_len = 0x38 + 16  # one block-map entry + the (0, 0) terminator
    body = ext + bytes(-(header_len + len(ext)) % 8)
    for f in files:
        body += f + bytes(-len(f) % 8)
    length = header_len + len(body) + 64
    header = bytes(16) + uuid.UUID(int=0).bytes_le + struct.pack("<Q", length) + b"_FVH"
    header += struct.pack("<IHHHBB", ERASE_POLARITY, header_len, 0, header_len if ext else 0, 0, 2)
    header += struct.pack("<IIII", 1, length, 0, 0)
    return header + body + b"\xff" * 64


def app(guid: str, ui_name: str) -> bytes:
    return ffs(
        guid,
        0x09,
        section(0x10, b"MZ" + bytes(30)) + section(UI, ui_name.encode("utf-16-le") + bytes(2)),
    )


A, B, C = (str(uuid.uuid4()) for _ in range(3))
OUTER, INNER = "7cb8bdc9-f8eb-4f34-aaea-3ee4af6516a1", "ae047c6d-bce9-426c-ae03-a68e3b8a0488"


def test_files_names_and_a_nested_volume() -> None:
    inner = volume([app(C, "UiApp")], INNER)
    outer = volume(
        [
            app(A, "BdsDxe"),
            ffs(B, 0x01, b"raw data, no sections"),
            ffs(str(uuid.uuid4()), 0x0B, section(FV_IMAGE, inner)),
        ],
        OUTER,
    )
    got = find_volumes(b"\x00" * 16 + outer)
    assert [v.name for v in got] == [OUTER, INNER]
    assert [(f.guid, f.type, f.ui_name) for f in got[0].files[:2]] == [
        (A, 0x09, "BdsDxe"),
        (B, 0x01, None),
    ]
    assert got[1].has_file(C.upper())
    assert not got[0].has_file(C)
    assert got[0].offset == 16


def test_volumes_one_after_another_and_without_a_name() -> None:
    first, second = volume([app(A, "A")], None), volume([app(B, "B")], OUTER)
    got = find_volumes(first + bytes(16) + second)
    assert [(v.name, v.files[0].ui_name) for v in got] == [(None, "A"), (OUTER, "B")]


@pytest.mark.parametrize(
    ("at", "value", "message"),
    [
        (0x20, struct.pack("<Q", 1 << 40), "runs past the end"),  # FvLength
        (0x30, struct.pack("<H", 8), "malformed"),  # HeaderLength
    ],
)
def test_a_bad_volume_header_is_refused(at: int, value: bytes, message: str) -> None:
    fv = bytearray(volume([app(A, "A")], OUTER))
    fv[at : at + len(value)] = value
    with pytest.raises(ImageError, match=message):
        find_volumes(bytes(fv))


@given(st.data())
@settings(max_examples=60)
def test_corruption_is_an_image_error_or_a_listing(data: st.DataObject) -> None:
    fv = bytearray(volume([app(A, "BdsDxe"), app(B, "UiApp")], OUTER))
    for _ in range(data.draw(st.integers(1, 4))):
        fv[data.draw(st.integers(0x38, len(fv) - 1))] = data.draw(st.integers(0, 255))
    try:
        got = find_volumes(bytes(fv))
    except ImageError:
        return
    assert all(v.offset >= 0 for v in got)


# FILE_GUIDs from the INF files (MdeModulePkg/Universal/BdsDxe/BdsDxe.inf, …).
BDS_DXE = "6d33944a-ec75-4855-a54d-809c75241f6c"
TD_TCG2_DXE = "f062221e-c607-44c2-b0b4-c3886331d351"
SMBIOS_MEASUREMENT_DXE = "d27fed59-abb4-4fed-bead-2a878c7e4a7e"
BOOT_MANAGER_MENU_APP = "eec25bdc-67f2-4d95-b1d5-f81b2039d11d"
UI_APP = "462caa21-7614-4503-836e-8ab6f4662331"


def test_the_debian_intel_tdx_build_places_the_apps_as_its_fdf_does(
    firmware: Callable[[str], Path],
) -> None:
    path = firmware("OVMF.inteltdx.ms.fd")
    volumes = [v for raw in decompressed_volumes(path.read_bytes()) for v in find_volumes(raw)]
    by_name = {v.name: v for v in volumes}
    dxefv, nccfv = by_name[OUTER], by_name[INNER]
    # [FV.DXEFV]: … BdsDxe … TdTcg2Dxe, SmbiosMeasurementDxe, BootManagerMenuApp (f272dd7ea3)
    order = [f.guid for f in dxefv.files]
    wanted = [BDS_DXE, TD_TCG2_DXE, SMBIOS_MEASUREMENT_DXE, BOOT_MANAGER_MENU_APP]
    assert [g for g in order if g in wanted] == wanted
    # [FV.NCCFV]: UiApp (03a07cb0f5), which a TD never installs
    assert nccfv.has_file(UI_APP)
    assert not dxefv.has_file(UI_APP)
    ui = {f.guid: f.ui_name for f in dxefv.files}
    assert ui[BOOT_MANAGER_MENU_APP] == "BootManagerMenuApp"
