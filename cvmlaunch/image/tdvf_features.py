"""What a TDVF/OVMF build measures into the RTMRs, told from the image itself.

The RTMR event set changed between edk2 releases (research launch.md section 4, tdx-measure.md
section 6; edk2 history):

* edk2-stable202411 (commit efaf8931bb): the ReadyToBoot separator goes to RTMR1; before it
  both separators went to RTMR0.
* edk2-stable202502 (20df7c42bd): QemuKernelLoaderFsDxe loads fw_cfg "named blobs"
  (``etc/boot/kernel``), the unpatched kernel QEMU >= 10.0 serves.
* edk2-stable202505 (be529ef3c9, cd76265f1a): SEC measures cached fw_cfg items
  (``"QEMU FW CFG"`` events) and SmbiosMeasurementDxe measures the SMBIOS tables into RTMR0.
* edk2-stable202508 (a2ac0fea49): LoadOptions are ``"initrd=initrd " + cmdline`` instead of
  ``cmdline + " initrd=initrd"``.
* edk2-stable202511 (5a6a9f7955): in a confidential VM OVMF no longer boots a kernel Secure
  Boot refuses through its legacy Linux loader (the message "not using insecure legacy linux
  kernel loader" is in the DXE volume).

Each change left a string in the image: the SEC code is stored plain, the DXE drivers in an
LZMA-compressed firmware volume, which :func:`detect_tdvf_features` decompresses (stdlib
:mod:`lzma`; edk2's LZMA sections are the "LZMA alone" format) and searches. The 202411
separator fix left none: an image older than 202502 is either.

Rule: pure (a buffer in, values out); a marker that cannot be looked for (no compressed volume
found) is None, never guessed.
"""

from __future__ import annotations

import enum
import lzma
import struct
from dataclasses import dataclass

from cvmlaunch.errors import ImageError
from cvmlaunch.image.ovmf import guid_bytes_le
from cvmlaunch.layout import Buffer

__all__ = [
    "Edk2Release",
    "TdvfFeatures",
    "decompressed_volumes",
    "detect_tdvf_features",
    "releases_matching",
]

#: An EFI_GUID_DEFINED_SECTION with this GUID holds "LZMA alone" data (edk2 LzmaCustomDecompress).
LZMA_SECTION_GUID = "ee4e5898-3914-4259-9d6e-dc7bd79403cf"
#: MdeModulePkg/Universal/SmbiosMeasurementDxe/SmbiosMeasurementDxe.inf FILE_GUID.
SMBIOS_MEASUREMENT_DXE_GUID = "d27fed59-abb4-4fed-bead-2a878c7e4a7e"
_SECTION_GUID_DEFINED = 0x02
#: Decompressed volumes are ~13 MiB; refuse to inflate a corrupt one past this.
MAX_DECOMPRESSED = 64 << 20

_FW_CFG_MARKER = b"QEMU FW CFG\x00"
_PREFIX_MARKER = b"\x00initrd=initrd \x00"
_SUFFIX_MARKER = b"\x00 initrd=initrd\x00"
_NAMED_BLOBS_MARKER = b"\x00etc/boot/\x00"
_NO_LEGACY_LOADER_MARKER = b"not using insecure legacy linux kernel loader"


class Edk2Release(enum.Enum):
    """edk2-stable releases where the RTMR event set changed; a build is named by the newest of
    these that is not newer than it."""

    R2024_08 = "2024.08"  # and older: both separators in RTMR0
    R2024_11 = "2024.11"
    R2025_02 = "2025.02"
    R2025_05 = "2025.05"
    R2025_08 = "2025.08"
    R2025_11 = "2025.11"

    @classmethod
    def parse(cls, text: str) -> Edk2Release:
        """``YYYY.MM`` (or ``YYYYMM``): the newest listed release not newer than it.

        Raises:
            ValueError: not a ``YYYY.MM`` date.
        """
        digits = text.replace(".", "").replace("-", "")
        if len(digits) != 6 or not digits.isdigit():
            raise ValueError(f"{text!r} is not an edk2 release (YYYY.MM)")
        best = cls.R2024_08
        for r in cls:
            if r.value.replace(".", "") <= digits:
                best = r
        return best

    @property
    def separator_in_rtmr1(self) -> bool:
        """Whether the ReadyToBoot separator goes to RTMR1 (202411+) rather than RTMR0."""
        return self is not Edk2Release.R2024_08

    @property
    def named_blobs(self) -> bool:
        """Whether OVMF loads ``etc/boot/kernel`` when the VMM serves it (202502+)."""
        return self in _FROM_2025_02

    @property
    def measures_fw_cfg_and_smbios(self) -> bool:
        """Whether RTMR0 also holds fw_cfg item and SMBIOS events (202505+)."""
        return self in _FROM_2025_02[1:]

    @property
    def initrd_prefix(self) -> bool:
        """Whether LoadOptions start with ``initrd=initrd `` (202508+) rather than end with
        `` initrd=initrd``."""
        return self in _FROM_2025_02[2:]

    @property
    def no_legacy_loader_in_cvm(self) -> bool:
        """Whether OVMF refuses, in a confidential VM, a kernel Secure Boot does not authorize
        (202511+), rather than booting it with its legacy Linux loader."""
        return self is Edk2Release.R2025_11


#: The releases from 202502 on, in order (each property above holds from one of them on).
_FROM_2025_02 = (
    Edk2Release.R2025_02,
    Edk2Release.R2025_05,
    Edk2Release.R2025_08,
    Edk2Release.R2025_11,
)


@dataclass(frozen=True, slots=True)
class TdvfFeatures:
    """Markers found in a firmware image; None: could not be looked for."""

    initrd_prefix: bool | None  # "initrd=initrd " (202508+) vs " initrd=initrd"
    named_blobs: bool | None  # "etc/boot/" (202502+)
    measures_fw_cfg: bool  # "QEMU FW CFG" (202505+), searched in the plain image too
    measures_smbios: bool | None  # SmbiosMeasurementDxe present (202505+)
    no_legacy_loader_in_cvm: bool | None  # the legacy-loader refusal message (202511+)
    decompressed_volumes: int


def _lzma_volumes(data: bytes) -> list[bytes]:
    guid = guid_bytes_le(LZMA_SECTION_GUID)
    out = []
    at = data.find(guid)
    while at >= 4:
        size = int.from_bytes(data[at - 4 : at - 1], "little")
        kind = data[at - 1]
        if kind == _SECTION_GUID_DEFINED and at + 20 <= len(data):
            (data_offset,) = struct.unpack_from("<H", data, at + 16)
            start, end = at - 4 + data_offset, at - 4 + size
            if at + 20 <= start < end <= len(data):
                d = lzma.LZMADecompressor(format=lzma.FORMAT_ALONE)
                try:
                    raw = d.decompress(data[start:end], max_length=MAX_DECOMPRESSED)
                except lzma.LZMAError:
                    raw = b""
                if raw:
                    out.append(raw)
        at = data.find(guid, at + 16)
    return out


def decompressed_volumes(data: Buffer, *, name: str = "firmware") -> tuple[bytes, ...]:
    """The image's LZMA-compressed firmware-volume sections, inflated (the DXE volumes of an
    OVMF build; :func:`cvmlaunch.image.fv.find_volumes` lists their files).

    Raises:
        ImageError: a volume that inflates past :data:`MAX_DECOMPRESSED` bytes.
    """
    volumes = _lzma_volumes(bytes(data))
    if any(len(v) >= MAX_DECOMPRESSED for v in volumes):
        raise ImageError(
            f"a compressed firmware volume inflates past {MAX_DECOMPRESSED} bytes", source=name
        )
    return tuple(volumes)


def detect_tdvf_features(data: Buffer, *, name: str = "firmware") -> TdvfFeatures:
    """Look for the markers of the module doc in ``data`` and its LZMA volumes.

    Raises:
        ImageError: an LZMA volume that inflates past :data:`MAX_DECOMPRESSED` bytes.
    """
    raw = bytes(data)
    volumes = decompressed_volumes(raw, name=name)
    fw_cfg = _FW_CFG_MARKER in raw or any(_FW_CFG_MARKER in v for v in volumes)
    if not volumes:
        return TdvfFeatures(None, None, fw_cfg, None, None, 0)
    smbios_guid = guid_bytes_le(SMBIOS_MEASUREMENT_DXE_GUID)
    prefix = any(_PREFIX_MARKER in v for v in volumes)
    suffix = any(_SUFFIX_MARKER in v for v in volumes)
    return TdvfFeatures(
        initrd_prefix=prefix if prefix != suffix else None,
        named_blobs=any(_NAMED_BLOBS_MARKER in v for v in volumes),
        measures_fw_cfg=fw_cfg,
        measures_smbios=any(smbios_guid in v for v in volumes),
        no_legacy_loader_in_cvm=any(_NO_LEGACY_LOADER_MARKER in v for v in volumes),
        decompressed_volumes=len(volumes),
    )


def releases_matching(features: TdvfFeatures) -> tuple[Edk2Release, ...]:
    """The releases (of :class:`Edk2Release`) consistent with ``features``; more than one when
    the image cannot tell them apart (202411 from older: no marker)."""
    out = []
    for r in Edk2Release:
        if features.initrd_prefix is not None and r.initrd_prefix != features.initrd_prefix:
            continue
        if features.named_blobs is not None and r.named_blobs != features.named_blobs:
            continue
        refuses = features.no_legacy_loader_in_cvm
        if refuses is not None and r.no_legacy_loader_in_cvm != refuses:
            continue
        if r.measures_fw_cfg_and_smbios != (
            features.measures_fw_cfg or bool(features.measures_smbios)
        ):
            continue
        out.append(r)
    return tuple(out)
