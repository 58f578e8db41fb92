"""Tell the image formats apart by their magic numbers (for ``cvmlaunch inspect``).

Rule: detection only looks; it never raises. The parser of the detected format then does the
real checks (and raises :class:`~cvmlaunch.errors.ImageError` on a damaged image).

Order matters: an ELF starts with ``\\x7fELF``; a bzImage has ``HdrS`` at 0x202 (an EFI-stub
bzImage also starts with ``MZ``); an OVMF/TDVF flat image ends with the GUID table footer
0x20 bytes before its end (edk2 ``ResetVectorVtf0.asm``), in full and code-only builds alike.
"""

from __future__ import annotations

import enum

from cvmlaunch.image.bzimage import is_bzimage
from cvmlaunch.image.elf import is_elf
from cvmlaunch.image.ovmf import FOOTER_GUID, guid_bytes_le
from cvmlaunch.layout import Buffer

__all__ = ["ImageFormat", "detect_format"]

_FOOTER_GUID_END = 0x20  # the footer GUID ends this far before the end of the image
_FOOTER = guid_bytes_le(FOOTER_GUID)


class ImageFormat(enum.Enum):
    """The formats cvmlaunch can load."""

    OVMF = "ovmf"  # OVMF/TDVF flat firmware (GUID footer table)
    ELF = "elf"
    BZIMAGE = "bzimage"
    UNKNOWN = "unknown"

    @property
    def description(self) -> str:
        """A human name for the format."""
        return _DESCRIPTIONS[self]


_DESCRIPTIONS = {
    ImageFormat.OVMF: "OVMF/TDVF flat firmware",
    ImageFormat.ELF: "ELF executable",
    ImageFormat.BZIMAGE: "Linux bzImage",
    ImageFormat.UNKNOWN: "unknown",
}


def detect_format(data: Buffer) -> ImageFormat:
    """The format of ``data`` by its magic numbers; :attr:`ImageFormat.UNKNOWN` if none."""
    if is_elf(data):
        return ImageFormat.ELF
    if is_bzimage(data):
        return ImageFormat.BZIMAGE
    size = len(data)
    start = size - _FOOTER_GUID_END - len(_FOOTER)
    if start >= 0 and bytes(data[start : size - _FOOTER_GUID_END]) == _FOOTER:
        return ImageFormat.OVMF
    return ImageFormat.UNKNOWN
