"""The UEFI variable store inside an OVMF image's CFV (the varstore TDVF boots with).

Rule: pure, bounds-checked, :class:`~cvmlaunch.errors.ImageError` on malformed input.

Format (edk2 MdePkg/Include/Pi/PiFirmwareVolume.h, MdeModulePkg/Include/Guid/VariableFormat.h):
the CFV is a firmware volume (``_FVH`` signature at 40, u16 header length at 48); the variable
store header follows it (16-byte format GUID — the authenticated format
``aaf32c78-947b-439a-a180-2e144ec37792`` —, u32 size, u8 format 0x5A, u8 state 0xFE, 6 reserved
bytes); then variables, each 4-byte aligned: ``AUTHENTICATED_VARIABLE_HEADER`` (u16 StartId
0x55AA, u8 State, u8 reserved, u32 Attributes, u64 MonotonicCount, EFI_TIME (16 bytes), u32
PubKeyIndex, u32 NameSize, u32 DataSize, vendor GUID) = 60 bytes, the UTF-16 name with its NUL,
the data. Only variables in state VAR_ADDED (0x3F, or 0x3E while a delete is in transition) are
live.
"""

from __future__ import annotations

import struct

from cvmlaunch._struct import StructTable
from cvmlaunch.errors import ImageError
from cvmlaunch.image.ovmf import guid_from_bytes_le
from cvmlaunch.layout import Buffer

__all__ = ["AUTHENTICATED_VARIABLE_GUID", "parse_varstore"]

AUTHENTICATED_VARIABLE_GUID = "aaf32c78-947b-439a-a180-2e144ec37792"
_FV_SIGNATURE = b"_FVH"
#: VariableFormat.h ``VARIABLE_STORE_HEADER``.
_STORE_HEADER = StructTable(
    "VARIABLE_STORE_HEADER",
    (
        ("signature", 0, "16s"),  # the format GUID
        ("size", 16, "I"),
        ("format", 20, "B"),
        ("state", 21, "B"),
        ("reserved", 22, "2x"),
        ("reserved1", 24, "4x"),
    ),
    end=28,
)
#: VariableFormat.h ``AUTHENTICATED_VARIABLE_HEADER``.
_VAR_HEADER = StructTable(
    "AUTHENTICATED_VARIABLE_HEADER",
    (
        ("start_id", 0, "H"),
        ("state", 2, "B"),
        ("reserved", 3, "B"),
        ("attributes", 4, "I"),
        ("monotonic_count", 8, "Q"),
        ("time_stamp", 16, "16s"),  # EFI_TIME
        ("pub_key_index", 32, "I"),
        ("name_size", 36, "I"),
        ("data_size", 40, "I"),
        ("vendor_guid", 44, "16s"),
    ),
    end=60,
)
_START_ID = 0x55AA
_LIVE_STATES = (0x3F, 0x3E)
MAX_VARIABLES = 4096


def parse_varstore(cfv: Buffer, *, name: str = "CFV") -> dict[tuple[str, str], bytes]:
    """The live variables of an authenticated-format variable store, ``{(name, vendor GUID):
    data}``.

    Raises:
        ImageError: no firmware volume, another store format, or a variable outside the store.
    """
    data = bytes(cfv)

    def fail(message: str, offset: int | None = None) -> ImageError:
        return ImageError(message, source=name, offset=offset)

    if len(data) < 50 or data[40:44] != _FV_SIGNATURE:
        raise fail("no firmware volume header ('_FVH') at offset 40", 40)
    (header_length,) = struct.unpack_from("<H", data, 48)
    if header_length + _STORE_HEADER.size > len(data):
        raise fail("the variable store header lies outside the volume", header_length)
    store = _STORE_HEADER.unpack(data, header_length)
    guid, size = store["signature"], store["size"]
    if guid_from_bytes_le(guid) != AUTHENTICATED_VARIABLE_GUID:
        raise fail(
            f"variable store format {guid_from_bytes_le(guid)} is not the authenticated one",
            header_length,
        )
    end = min(header_length + size, len(data))
    at = header_length + _STORE_HEADER.size
    out: dict[tuple[str, str], bytes] = {}
    for _ in range(MAX_VARIABLES):
        if at + _VAR_HEADER.size > end:
            break
        var = _VAR_HEADER.unpack(data, at)
        state, name_size, data_size = var["state"], var["name_size"], var["data_size"]
        if var["start_id"] != _START_ID:
            break
        body = at + _VAR_HEADER.size
        if name_size % 2 or body + name_size + data_size > end:
            raise fail("a variable runs past the end of the store", at)
        if state in _LIVE_STATES:
            raw_name = data[body : body + name_size].decode("utf-16-le", errors="replace")
            key = (raw_name.split("\x00", 1)[0], guid_from_bytes_le(var["vendor_guid"]))
            out[key] = data[body + name_size : body + name_size + data_size]
        at = (body + name_size + data_size + 3) & ~3
    return out
