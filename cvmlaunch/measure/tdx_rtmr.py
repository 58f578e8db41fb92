"""RTMR0-2 of a TD that QEMU boots with TDVF (OVMF) and a direct kernel (``-kernel``).

Rule 1: pure. Every input is bytes or a value (the firmware image, the kernel, the initrd, the
command line, the ACPI blobs as QEMU serves them over fw_cfg, the Secure Boot variables, the
memory size); the result is the list of :class:`~cvmlaunch.measure.rtmr.RtmrEvent` the
firmware and the Linux EFI stub log, and the RTMRs they replay to (:func:`~cvmlaunch.measure.
rtmr.replay` is the only fold).

Rule 2: each event's content is its own function with its own test (UEFI_VARIABLE_DATA, the
TD HOB and CFV event data, the LoadOptions string, the ACPI loader order, the kernel's
Authenticode digest with QEMU's header patches).

Rule 3: what differs between firmware builds is a named :class:`~cvmlaunch.image.
tdvf_features.Edk2Release`, told from the image where it can be, else asked for; what cannot be
predicted is omitted with a note, never guessed: RTMR0 without the host inputs it measures
(:func:`cvmlaunch.measure.tdx_rtmr0.rtmr0_missing`).

The event order (research launch.md section 4, tdx-measure.md section 6; validated on hardware
by dstack-mr and virtee/tdx-measure for edk2 202411..202502):

* RTMR0: :mod:`cvmlaunch.measure.tdx_rtmr0` (its names are re-exported here).
* RTMR1: the kernel (EV_EFI_BOOT_SERVICES_APPLICATION, Authenticode SHA-384 of the image OVMF
  loads), EV_EFI_ACTION "Calling EFI Application from Boot Option", the ReadyToBoot separator
  (edk2 >= 202411), "Exit Boot Services Invocation", "Exit Boot Services Returned with Success".
* RTMR2 (the Linux EFI stub, EV_EVENT_TAG): LoadOptions (UTF-16LE, NUL-terminated), then the
  initrd.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from cvmlaunch.errors import ConfigError, ImageError
from cvmlaunch.image.bzimage import (
    QEMU_ACPI_DATA_SIZE,
    apply_patches,
    is_bzimage,
    parse_bzimage,
    qemu_setup_header_patches,
)
from cvmlaunch.image.ovmf import OvmfImage, guid_bytes_le
from cvmlaunch.image.pe import authenticode_digest, parse_pe
from cvmlaunch.image.tdvf_features import (
    Edk2Release,
    detect_tdvf_features,
    releases_matching,
)
from cvmlaunch.layout import Buffer
from cvmlaunch.measure.rtmr import EventType, RtmrEvent, replay, sha384
from cvmlaunch.measure.tdx_rtmr0 import (
    ACPI_BLOB_NAMES,
    BOOT0000_UIAPP,
    BOOT_ORDER_DIRECT,
    EFI_GLOBAL_VARIABLE_GUID,
    EFI_IMAGE_SECURITY_DATABASE_GUID,
    SECURE_BOOT_VARIABLES,
    SEPARATOR,
    TABLE_LOADER,
    AcpiBlobs,
    Rtmr0Host,
    acpi_events,
    cfv_event,
    kernel_authority,
    rtmr0_events,
    rtmr0_missing,
    secure_boot_from_varstore,
    table_loader_allocations,
    td_hob_event,
    uefi_variable_data,
)
from cvmlaunch.memory_map import MemoryMap

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "ACPI_BLOB_NAMES",
    "BOOT0000_UIAPP",
    "BOOT_ORDER_DIRECT",
    "EFI_GLOBAL_VARIABLE_GUID",
    "EFI_IMAGE_SECURITY_DATABASE_GUID",
    "SECURE_BOOT_VARIABLES",
    "SEPARATOR",
    "TABLE_LOADER",
    "AcpiBlobs",
    "KernelLoading",
    "TdxRtmrPrediction",
    "acpi_events",
    "cfv_event",
    "kernel_image",
    "load_options",
    "predict_tdx_rtmrs",
    "rtmr1_events",
    "rtmr2_events",
    "secure_boot_from_varstore",
    "stub_uses_cc_measurement",
    "table_loader_allocations",
    "td_hob_event",
    "uefi_variable_data",
]


CALLING_EFI_APPLICATION = b"Calling EFI Application from Boot Option"
EXIT_BOOT_SERVICES = b"Exit Boot Services Invocation"
EXIT_BOOT_SERVICES_SUCCESS = b"Exit Boot Services Returned with Success"
#: Linux EFI stub tagged events (drivers/firmware/efi/libstub/efi-stub-helper.c).
LOAD_OPTIONS_TAG = (0x8F3B22ED, b"LOADED_IMAGE::LoadOptions\x00")
INITRD_TAG = (0x8F3B22EC, b"Linux initrd\x00")


class KernelLoading(enum.Enum):
    """Which bytes OVMF measures as the kernel."""

    PATCHED = "patched"  # QEMU < 10.2 setup+kernel items, header patched (OVMF < 202502)
    RAW = "raw"  # the file as given (etc/boot/kernel, or QEMU >= 10.2 for a CVM)

    @classmethod
    def parse(cls, text: str) -> KernelLoading:
        """``patched`` or ``raw``.

        Raises:
            ConfigError: anything else.
        """
        try:
            return cls(text.lower())
        except ValueError:
            raise ConfigError(
                f"kernel_loading {text!r}: expected patched or raw", setting="kernel_loading"
            ) from None


def kernel_image(
    kernel: Buffer,
    loading: KernelLoading,
    *,
    memory_size: int,
    initrd_size: int | None,
    cmdline: str,
    acpi_data_size: int = QEMU_ACPI_DATA_SIZE,
) -> bytes | Buffer:
    """The bytes OVMF loads as the kernel: the file itself (raw) or with QEMU's setup-header
    patches (patched), which depend on the RAM below 4 GiB, the initrd size and the command
    line.

    Raises:
        ImageError: not a bzImage (patched), or an initrd QEMU would refuse.
        LayoutError: a bad memory size.
    """
    if loading is KernelLoading.RAW:
        return kernel
    below_4g = sum(s.size for s in MemoryMap.for_size(memory_size).memslots if s.gpa < (1 << 32))
    patches = qemu_setup_header_patches(
        kernel,
        below_4g_mem_size=below_4g,
        initrd_size=initrd_size,
        cmdline=cmdline,
        acpi_data_size=acpi_data_size,
    )
    return bytes(apply_patches(kernel, patches))


def rtmr1_events(kernel_digest: bytes, release: Edk2Release) -> tuple[RtmrEvent, ...]:
    """RTMR1: the kernel's Authenticode digest, then the boot manager's and the stub's actions.

    The kernel event's logged data (EFI_IMAGE_LOAD_EVENT: load address, device path) depends on
    where the firmware allocated the image and is left empty.
    """
    events = [
        RtmrEvent(
            1,
            EventType.EV_EFI_BOOT_SERVICES_APPLICATION,
            kernel_digest,
            b"",
            "RTMR1 kernel (Authenticode)",
        ),
        RtmrEvent.hashed(
            1,
            EventType.EV_EFI_ACTION,
            CALLING_EFI_APPLICATION,
            "RTMR1 Calling EFI Application from Boot Option",
        ),
    ]
    if release.separator_in_rtmr1:
        events.append(
            RtmrEvent.hashed(1, EventType.EV_SEPARATOR, SEPARATOR, "RTMR1 ReadyToBoot separator")
        )
    events.append(
        RtmrEvent.hashed(
            1, EventType.EV_EFI_ACTION, EXIT_BOOT_SERVICES, "RTMR1 Exit Boot Services Invocation"
        )
    )
    events.append(
        RtmrEvent.hashed(
            1,
            EventType.EV_EFI_ACTION,
            EXIT_BOOT_SERVICES_SUCCESS,
            "RTMR1 Exit Boot Services Returned with Success",
        )
    )
    return tuple(events)


def load_options(cmdline: str, *, initrd: bool, prefix: bool) -> bytes:
    """The LoadOptions OVMF hands the kernel (X86QemuLoadImageLib ``QemuLoadKernelImage``):
    the command line, with ``" initrd=initrd"`` appended (edk2 < 202508) or ``"initrd=initrd "``
    prepended (202508+) when there is an initrd, UTF-16LE and NUL-terminated; empty (no event)
    when there is neither a command line nor an initrd."""
    if not cmdline and not initrd:
        return b""
    if initrd:
        text = "initrd=initrd " + cmdline if prefix else cmdline + " initrd=initrd"
    else:
        text = cmdline
    return (text + "\x00").encode("utf-16-le")


def _tag_event(tag: tuple[int, bytes], measured: Buffer, description: str) -> RtmrEvent:
    tag_id, text = tag
    data = struct.pack("<II", tag_id, len(text)) + text
    return RtmrEvent(2, EventType.EV_EVENT_TAG, sha384(measured), data, description)


def rtmr2_events(
    cmdline: str, initrd: Buffer | None, release: Edk2Release
) -> tuple[RtmrEvent, ...]:
    """RTMR2 as the Linux EFI stub measures it: LoadOptions (if any), then the initrd (if any)."""
    events = []
    options = load_options(cmdline, initrd=initrd is not None, prefix=release.initrd_prefix)
    if options:
        events.append(_tag_event(LOAD_OPTIONS_TAG, options, "RTMR2 command line"))
    if initrd is not None:
        events.append(_tag_event(INITRD_TAG, initrd, "RTMR2 initrd"))
    return tuple(events)


#: EFI_CC_MEASUREMENT_PROTOCOL_GUID (UEFI 2.10 section 38.4).
CC_MEASUREMENT_PROTOCOL_GUID = "96751a3d-72f4-41a6-a794-ed5d0e67ae6b"


def stub_uses_cc_measurement(kernel: Buffer) -> bool:
    """Whether the kernel's EFI stub can find EFI_CC_MEASUREMENT_PROTOCOL, i.e. measures the
    LoadOptions and initrd into RTMR2 on a TD (Linux added the CC fallback in 2024; older stubs
    measure through EFI_TCG2_PROTOCOL only, which a TD without a vTPM lacks, so RTMR2 stays
    zero). Told from the stub's code, which is stored uncompressed: the protocol GUID, as 16
    bytes or as its first dword (an immediate when the compiler builds the GUID on the stack),
    searched outside a bzImage's compressed payload (where 4 bytes could match by chance)."""
    data = memoryview(kernel)
    parts = [data]
    if is_bzimage(data):
        try:
            bz = parse_bzimage(data)
        except ImageError:
            bz = None
        if bz is not None and bz.payload_offset is not None and bz.payload_length is not None:
            start = bz.kernel_offset + bz.payload_offset
            parts = [data[:start], data[start + bz.payload_length :]]
    guid = guid_bytes_le(CC_MEASUREMENT_PROTOCOL_GUID)
    return any(guid[:4] in bytes(part) for part in parts)


@dataclass(frozen=True, slots=True)
class TdxRtmrPrediction:
    """The predicted events and RTMR0-2 (RTMR0 None when not predicted; ``notes`` says why)."""

    events: tuple[RtmrEvent, ...]
    rtmrs: tuple[bytes | None, bytes, bytes]
    release: Edk2Release
    kernel_loading: KernelLoading
    notes: tuple[str, ...]

    def json_fields(self) -> dict[str, Any]:
        """The members of a JSON output: ``rtmr0`` (hex or null), ``rtmr1``, ``rtmr2``, and
        ``rtmr_model`` (edk2 release, kernel loading, event count, notes)."""
        r0, r1, r2 = self.rtmrs
        return {
            "rtmr0": None if r0 is None else r0.hex(),
            "rtmr1": r1.hex(),
            "rtmr2": r2.hex(),
            "rtmr_model": {
                "edk2": self.release.value,
                "kernel_loading": self.kernel_loading.value,
                "events": len(self.events),
                "notes": list(self.notes),
            },
        }


def _release(image: OvmfImage, release: Edk2Release | None) -> tuple[Edk2Release, str | None]:
    features = detect_tdvf_features(image.data, name=image.name)
    candidates = releases_matching(features)
    if release is not None:
        if candidates and release not in candidates:
            return release, (
                f"--edk2 {release.value} overrides what the image shows "
                f"({', '.join(r.value for r in candidates)})"
            )
        return release, None
    if len(candidates) == 1:
        return candidates[0], None
    shown = ", ".join(r.value for r in candidates) or "none of the known ones"
    raise ConfigError(
        f"edk2: {image.name} matches edk2 releases {shown}; say which "
        "(the RTMR event set differs between them)",
        setting="edk2",
    )


#: How a note names each missing RTMR0 input (the settings of :func:`rtmr0_missing`).
_MISSING_INPUT = {
    "acpi": "the ACPI tables (--acpi DIR or --fw-cfg DIR)",
    "fw_cfg": "the fw_cfg files QEMU serves (--fw-cfg DIR, a copy of the TD's "
    "/sys/firmware/qemu_fw_cfg/by_name)",
    "smbios": "the SMBIOS table (--smbios DIR, a copy of the TD's /sys/firmware/dmi/tables)",
}


def _rtmr0_note(release: Edk2Release, missing: tuple[str, ...]) -> str:
    what = "; ".join(_MISSING_INPUT[m] for m in missing)
    newer = (
        f" (edk2 {release.value} firmware measures fw_cfg items and the SMBIOS table too)"
        if release.measures_fw_cfg_and_smbios
        else ""
    )
    return f"RTMR0 not predicted: it measures what the host serves{newer}; give {what}"


def predict_tdx_rtmrs(
    image: OvmfImage,
    *,
    memory_size: int,
    kernel: Buffer,
    initrd: Buffer | None,
    cmdline: str,
    acpi: AcpiBlobs | None,
    secure_boot: Mapping[str, bytes] | None = None,
    fw_cfg: Mapping[str, bytes] | None = None,
    boot_menu: bool = False,
    smbios: bytes | None = None,
    smbios_entry_point: bytes | None = None,
    kernel_loading: KernelLoading | None = None,
    release: Edk2Release | None = None,
    acpi_data_size: int = QEMU_ACPI_DATA_SIZE,
    kernel_name: str = "kernel",
    stub_measures: bool | None = None,
) -> TdxRtmrPrediction:
    """RTMR0-2 of a direct-boot TD (module doc).

    Args:
        image: the TDVF firmware (:func:`cvmlaunch.image.ovmf.parse_ovmf`).
        memory_size: guest RAM in bytes (QEMU ``-m``).
        kernel: the EFI-stub bzImage as given to ``-kernel``.
        initrd: the initrd, or None.
        cmdline: the command line (``-append``).
        acpi: the ACPI fw_cfg blobs; None: taken from ``fw_cfg``, else RTMR0 is not predicted.
        fw_cfg, boot_menu, smbios, smbios_entry_point: what edk2 >= 202505 firmware also
            measures into RTMR0
            (:class:`~cvmlaunch.measure.tdx_rtmr0.Rtmr0Host`); None: RTMR0 is not predicted for
            such firmware.
        secure_boot: Secure Boot variable data by name; None: what the image's own varstore
            holds (:func:`secure_boot_from_varstore`; none enrolled for Debian's and Ubuntu's
            plain OVMF).
        kernel_loading: None: raw when the firmware loads ``etc/boot/kernel`` (edk2 202502+),
            else an error asking for it.
        release: None: told from the image, else an error asking for it.
        stub_measures: whether the kernel's EFI stub measures into RTMR2; None: told from the
            kernel (:func:`stub_uses_cc_measurement`).

    Raises:
        ConfigError: the release or the kernel loading cannot be told and was not given;
            missing ACPI blobs.
        ImageError: a kernel that is not a PE/COFF (EFI stub) image, bad firmware.
        LayoutError: a memory size the TD HOB cannot be built for.
    """
    if image.tdx_sections is None:
        raise ImageError("no TDX metadata: not a TDVF image", source=image.name)
    chosen, note = _release(image, release)
    notes = [note] if note else []
    if kernel_loading is None:
        if not chosen.named_blobs:
            raise ConfigError(
                f"kernel_loading: {image.name} (edk2 {chosen.value}) measures the kernel as QEMU "
                "serves it, patched by QEMU < 10.2 and raw by QEMU >= 10.2; say which "
                "(patched or raw)",
                setting="kernel_loading",
            )
        kernel_loading = KernelLoading.RAW
    loaded = kernel_image(
        kernel,
        kernel_loading,
        memory_size=memory_size,
        initrd_size=None if initrd is None else len(initrd),
        cmdline=cmdline,
        acpi_data_size=acpi_data_size,
    )
    pe = parse_pe(loaded, name=kernel_name)
    digest = authenticode_digest(pe)
    if secure_boot is None:
        secure_boot = secure_boot_from_varstore(image)
    authority = kernel_authority(pe, secure_boot, chosen, firmware=image.name)
    events: list[RtmrEvent] = []
    host = Rtmr0Host(acpi, fw_cfg, boot_menu, smbios, smbios_entry_point)
    missing = rtmr0_missing(chosen, host)
    if missing:
        notes.append(_rtmr0_note(chosen, missing))
    else:
        events += rtmr0_events(image, memory_size, host, secure_boot, chosen, authority)
    events += rtmr1_events(digest, chosen)
    if stub_measures is None:
        stub_measures = stub_uses_cc_measurement(kernel)
        if not stub_measures:
            notes.append(
                "RTMR2 stays zero: the kernel's EFI stub does not use EFI_CC_MEASUREMENT_PROTOCOL "
                "(Linux before its 2024 CC fallback); say otherwise with --stub-measures yes"
            )
    if stub_measures:
        events += rtmr2_events(cmdline, initrd, chosen)
    r0, r1, r2, _ = replay(events)
    return TdxRtmrPrediction(
        events=tuple(events),
        rtmrs=(None if missing else r0, r1, r2),
        release=chosen,
        kernel_loading=kernel_loading,
        notes=tuple(notes),
    )
