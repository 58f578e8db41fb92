"""RTMR0 of a TD that QEMU boots with TDVF (OVMF): the firmware's configuration.

Rule 1: pure. Every input is bytes or a value (the firmware image, the memory size, the fw_cfg
files QEMU serves, the Secure Boot variables, the SMBIOS table the firmware publishes); the
result is the list of :class:`~cvmlaunch.measure.rtmr.RtmrEvent` TDVF logs into RTMR0 (CC MR
index 1), in log order.

Rule 2: each event's content is its own function with its own test (UEFI_VARIABLE_DATA, the TD
HOB and CFV event data, the ACPI loader order, the fw_cfg item events, the SMBIOS event, the
boot options).

Rule 3: what differs between firmware builds is a named :class:`~cvmlaunch.image.
tdvf_features.Edk2Release`; an input the host decides and the caller did not give is never
guessed: :func:`rtmr0_events` refuses, and :func:`rtmr0_missing` names what is missing.

The event order (research launch.md section 4, docs/tdx-rtmr.md; validated on hardware by
dstack-mr and virtee/tdx-measure for edk2 202411..202502, by a real TD's CCEL in
confidential-containers/trustee for an older build, and for 202505 by the 17-event shape of
dstack PR 678's TD, ``tests.vectors.td_202505``; for later builds the boot options and the
place of the SMBIOS event rest on the edk2 source, docs/tdx-rtmr.md "Evidence and its limits"):

* TD HOB (EV_EFI_HANDOFF_TABLES2) and CFV (EV_EFI_PLATFORM_FIRMWARE_BLOB2), measured in SEC.
* edk2 >= 202505: the fw_cfg items PeilessStartup caches and measures
  (EV_PLATFORM_CONFIG_FLAGS ``"QEMU FW CFG"``, :func:`fw_cfg_events`).
* The variables SecureBoot, PK, KEK, db, dbx (EV_EFI_VARIABLE_DRIVER_CONFIG, digest of
  UEFI_VARIABLE_DATA), then a separator.
* The ACPI ``etc/table-loader`` then each blob it ALLOCATEs in command order
  (EV_PLATFORM_CONFIG_FLAGS ``"ACPI DATA"``, digest of the blob as served).
* With Secure Boot on, the db entry that authorized the kernel (EV_EFI_VARIABLE_AUTHORITY,
  :func:`authority_event`) when OVMF loads it.
* edk2 >= 202505: the SMBIOS table (EV_EFI_HANDOFF_TABLES), at
  ReadyToBoot, before TdTcg2Dxe's ReadyToBoot handler.
* BootOrder and each Boot#### it lists (EV_EFI_VARIABLE_BOOT, digest of the variable data),
  and before edk2 202411 the ReadyToBoot separator.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cvmlaunch.errors import ConfigError, ImageError
from cvmlaunch.image.fv import FirmwareVolume, find_volumes
from cvmlaunch.image.ovmf import OvmfImage, TdvfSection, guid_bytes_le
from cvmlaunch.image.pe import PeImage
from cvmlaunch.image.secure_boot import SignatureEntry, image_authority
from cvmlaunch.image.td_hob import build_td_hob, td_hob_event_sha384, td_hob_section
from cvmlaunch.image.tdvf_features import Edk2Release, decompressed_volumes
from cvmlaunch.image.varstore import parse_varstore
from cvmlaunch.layout import TdvfSectionType
from cvmlaunch.measure.rtmr import EventType, RtmrEvent, sha384

__all__ = [
    "ACPI_BLOB_NAMES",
    "BOOT0000_UIAPP",
    "BOOT_MANAGER_MENU_APP_GUID",
    "BOOT_ORDER_DIRECT",
    "DXEFV_NAME",
    "EFI_GLOBAL_VARIABLE_GUID",
    "EFI_IMAGE_SECURITY_DATABASE_GUID",
    "FW_CFG_BOOT_MENU",
    "FW_CFG_MEASURED",
    "LOAD_OPTION_ACTIVE",
    "LOAD_OPTION_CATEGORY_APP",
    "LOAD_OPTION_HIDDEN",
    "SECURE_BOOT_VARIABLES",
    "SEPARATOR",
    "TABLE_LOADER",
    "UI_APP_GUID",
    "AcpiBlobs",
    "Rtmr0Host",
    "acpi_events",
    "authority_event",
    "boot_variables",
    "cfv_event",
    "efi_load_option",
    "fw_cfg_event_data",
    "fw_cfg_events",
    "image_volumes",
    "kernel_authority",
    "rtmr0_events",
    "rtmr0_missing",
    "secure_boot_from_varstore",
    "smbios_event",
    "table_loader_allocations",
    "td_hob_event",
    "uefi_variable_data",
]

EFI_GLOBAL_VARIABLE_GUID = "8be4df61-93ca-11d2-aa0d-00e098032b8c"
EFI_IMAGE_SECURITY_DATABASE_GUID = "d719b2cb-3d3a-4596-a3bc-dad00e67656f"
#: The table GUID TDVF logs with the TD HOB (as in real TD logs' EV_EFI_HANDOFF_TABLES2 data).
TDX_HOB_TABLE_GUID = "93bb96af-b9f2-4eb8-9462-e0ba74564236"
#: (name, vendor GUID) of the Secure Boot variables TDVF measures, in order.
SECURE_BOOT_VARIABLES: tuple[tuple[str, str], ...] = (
    ("SecureBoot", EFI_GLOBAL_VARIABLE_GUID),
    ("PK", EFI_GLOBAL_VARIABLE_GUID),
    ("KEK", EFI_GLOBAL_VARIABLE_GUID),
    ("db", EFI_IMAGE_SECURITY_DATABASE_GUID),
    ("dbx", EFI_IMAGE_SECURITY_DATABASE_GUID),
)
SEPARATOR = bytes(4)
#: BootOrder for a direct kernel boot: Boot0000 only.
BOOT_ORDER_DIRECT = b"\x00\x00"
#: Boot0000 OVMF creates for a direct boot: EFI_LOAD_OPTION, attributes 0x109, "UiApp",
#: FvFile 462caa21-7614-4503-836e-8ab6f4662331 in FV 7cb8bdc9-f8eb-4f34-aaea-3ee4af6516a1.
BOOT0000_UIAPP = bytes.fromhex(
    "090100002c0055006900410070007000000004071400c9bdb87cebf8344faaea3ee4af6516a1"
    "0406140021aa2c4614760345836e8ab6f46623317fff0400"
)
TABLE_LOADER = "etc/table-loader"
#: The fw_cfg files of QEMU's ACPI (``--acpi DIR``).
ACPI_BLOB_NAMES = (TABLE_LOADER, "etc/acpi/rsdp", "etc/acpi/tables")
_ACPI_DATA = b"ACPI DATA"
_CFV_DESCRIPTION = b"Fv(XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX)\x00"
_LOADER_COMMAND = 128
_LOADER_ALLOCATE = 1
_LOADER_FILE = 56


@dataclass(frozen=True, slots=True)
class AcpiBlobs:
    """QEMU's ACPI fw_cfg files by name (``etc/table-loader``, ``etc/acpi/rsdp``,
    ``etc/acpi/tables``), as the VMM serves them (QEMU pads them to 4 KiB multiples)."""

    files: Mapping[str, bytes]


def uefi_variable_data(vendor_guid: str, name: str, data: bytes) -> bytes:
    """``UEFI_VARIABLE_DATA`` (TCG PC Client PFP): VariableName GUID (EFI byte order), u64
    UnicodeNameLength (characters, no NUL), u64 VariableDataLength, the UTF-16LE name without
    NUL, the data."""
    name16 = name.encode("utf-16-le")
    return (
        guid_bytes_le(vendor_guid) + struct.pack("<QQ", len(name16) // 2, len(data)) + name16 + data
    )


def td_hob_event(sections: tuple[TdvfSection, ...], memory_size: int) -> RtmrEvent:
    """RTMR0's first event: SHA-384 of the TD HOB QEMU builds, END header excluded; the data is
    the EFI_HANDOFF_TABLE_POINTERS2 TDVF logs (``"TdxTable"``, one table at the HOB's GPA).

    Raises:
        LayoutError: the HOB cannot be built (see :func:`cvmlaunch.image.td_hob.build_td_hob`).
    """
    hob = build_td_hob(sections, memory_size)
    data = (
        b"\x09TdxTable\x00"
        + struct.pack("<Q", 1)
        + guid_bytes_le(TDX_HOB_TABLE_GUID)
        + struct.pack("<Q", td_hob_section(sections).gpa)
    )
    return RtmrEvent(
        0,
        EventType.EV_EFI_HANDOFF_TABLES2,
        td_hob_event_sha384(hob),
        data,
        f"RTMR0 TD HOB ({memory_size >> 20} MiB RAM)",
    )


#: edk2 SecureBootConfigDxe's "SecureBootEnable" (gEfiSecureBootEnableDisableGuid).
SECURE_BOOT_ENABLE_GUID = "f0a30bc7-af08-4556-99c4-001009c93a44"


def _cfv(image: OvmfImage) -> TdvfSection:
    for s in image.tdx_sections or ():
        if s.type is TdvfSectionType.CFV:
            return s
    raise ImageError("TDVF metadata has no CFV section", source=image.name)


def secure_boot_from_varstore(image: OvmfImage) -> dict[str, bytes]:
    """The Secure Boot variables TDVF measures, from the varstore in the image's CFV.

    PK, KEK, db, dbx are the stored data. SecureBoot is not stored; edk2's AuthVariableLib sets
    it to 1 when a PK is enrolled (user mode) and SecureBootEnable is not 0. Without a PK the
    result is empty: the variables are then measured without data, as a real TD with a firmware
    without enrolled keys logs them (a Secure-Boot-capable build without keys would log
    SecureBoot = 0 instead; give ``secure_boot`` explicitly for that).

    Raises:
        ImageError: no CFV, or a varstore that cannot be read.
    """
    variables = parse_varstore(image.tdvf_section_data(_cfv(image)), name=f"{image.name} CFV")
    out = {
        n: variables[(n, g)]
        for n, g in SECURE_BOOT_VARIABLES
        if n != "SecureBoot" and (n, g) in variables
    }
    if "PK" in out:
        enable = variables.get(("SecureBootEnable", SECURE_BOOT_ENABLE_GUID), b"\x01")
        out["SecureBoot"] = b"\x00" if enable == b"\x00" else b"\x01"
    return out


def cfv_event(image: OvmfImage) -> RtmrEvent:
    """RTMR0's second event: SHA-384 of the CFV section's bytes (the varstore in the image),
    logged as EV_EFI_PLATFORM_FIRMWARE_BLOB2 with TDVF's placeholder description.

    Raises:
        ImageError: no CFV section.
    """
    s = _cfv(image)
    data = bytes([len(_CFV_DESCRIPTION)]) + _CFV_DESCRIPTION + struct.pack("<QQ", s.gpa, s.raw_size)
    return RtmrEvent(
        0,
        EventType.EV_EFI_PLATFORM_FIRMWARE_BLOB2,
        sha384(image.tdvf_section_data(s)),
        data,
        "RTMR0 CFV (UEFI variable store)",
    )


def table_loader_allocations(loader: bytes) -> tuple[str, ...]:
    """The files QEMU's ``etc/table-loader`` ALLOCATEs, in command order (128-byte commands,
    u32 command type first; ALLOCATE = 1 names its file in the next 56 bytes; zero commands
    are padding).

    Raises:
        ImageError: a length that is not a multiple of 128, or an unterminated file name.
    """
    if len(loader) % _LOADER_COMMAND:
        raise ImageError(
            f"{len(loader)} bytes is not a whole number of 128-byte loader commands",
            source=TABLE_LOADER,
        )
    names = []
    for at in range(0, len(loader), _LOADER_COMMAND):
        (command,) = struct.unpack_from("<I", loader, at)
        if command != _LOADER_ALLOCATE:
            continue
        raw = loader[at + 4 : at + 4 + _LOADER_FILE]
        if b"\x00" not in raw:
            raise ImageError(
                "ALLOCATE file name is not NUL-terminated", source=TABLE_LOADER, offset=at + 4
            )
        names.append(raw.split(b"\x00", 1)[0].decode("ascii", errors="replace"))
    return tuple(names)


def acpi_events(acpi: AcpiBlobs) -> tuple[RtmrEvent, ...]:
    """OVMF's ACPI measurements: the loader, then each blob it ALLOCATEs, each as served.

    Raises:
        ConfigError: a blob the loader names (or the loader itself) is missing.
    """
    files = acpi.files
    if TABLE_LOADER not in files:
        raise ConfigError(f"the ACPI blobs have no {TABLE_LOADER}")
    events = [
        RtmrEvent(
            0,
            EventType.EV_PLATFORM_CONFIG_FLAGS,
            sha384(files[TABLE_LOADER]),
            _ACPI_DATA,
            f"RTMR0 ACPI {TABLE_LOADER}",
        )
    ]
    for name in table_loader_allocations(files[TABLE_LOADER]):
        if name not in files:
            raise ConfigError(f"{TABLE_LOADER} allocates {name!r}, which the ACPI blobs lack")
        events.append(
            RtmrEvent(
                0,
                EventType.EV_PLATFORM_CONFIG_FLAGS,
                sha384(files[name]),
                _ACPI_DATA,
                f"RTMR0 ACPI {name}",
            )
        )
    return tuple(events)


#: The fw_cfg items TDVF (edk2 >= 202505) caches and measures in its PEI-less start-up, in this
#: order (OvmfPkg/Library/QemuFwCfgLib/QemuFwCfgCacheInit.c ``mCacheFwCfgList``, commit
#: 2eac71a1ee, unchanged up to 2026-08): (name, the size it must have, or None for any).
#: ``BootMenu`` is the numbered item 0x000E (QEMU ``-boot menu=``, a u16), always read; the
#: others are files, measured when QEMU serves them with a non-zero size (of the fixed size where
#: one is given). ``etc/e820`` and ``etc/system-states`` are cached, not measured.
FW_CFG_MEASURED: tuple[tuple[str, int | None], ...] = (
    ("etc/extra-pci-roots", 8),
    ("BootMenu", 2),
    ("etc/boot-menu-wait", 2),
    ("etc/reserved-memory-end", 8),
    ("opt/ovmf/X-PciMmio64Mb", None),
    ("bootorder", None),
)
#: The numbered item among :data:`FW_CFG_MEASURED` (not a file: a guest's sysfs does not show it).
FW_CFG_BOOT_MENU = "BootMenu"
#: ``FW_CFG_EVENT.FwCfg``: ``EV_POSTCODE_INFO_QEMU_FW_CFG_DATA`` with its NUL.
_FW_CFG_EVENT_TAG = b"QEMU FW CFG\x00"
#: ``QEMU_FW_CFG_FNAME_SIZE`` (OvmfPkg/Include/IndustryStandard/QemuFwCfg.h).
_FW_CFG_NAME_SIZE = 56


def fw_cfg_event_data(name: str) -> bytes:
    """The logged ``FW_CFG_EVENT`` of a measured fw_cfg item: ``"QEMU FW CFG\\0"`` (12 bytes),
    then the name NUL-padded to 56 bytes (68 bytes)."""
    raw = name.encode("ascii")
    if len(raw) >= _FW_CFG_NAME_SIZE:
        raise ValueError(f"fw_cfg name {name!r} does not fit {_FW_CFG_NAME_SIZE} bytes")
    return _FW_CFG_EVENT_TAG + raw.ljust(_FW_CFG_NAME_SIZE, b"\x00")


def fw_cfg_events(files: Mapping[str, bytes], *, boot_menu: bool) -> tuple[RtmrEvent, ...]:
    """The ``"QEMU FW CFG"`` events (EV_PLATFORM_CONFIG_FLAGS, RTMR0) of edk2 >= 202505, each the
    SHA-384 of the item's bytes, in :data:`FW_CFG_MEASURED` order.

    Args:
        files: every fw_cfg *file* the VMM serves, by name (a copy of a guest's
            ``/sys/firmware/qemu_fw_cfg/by_name/``): a name absent here was not served.
        boot_menu: QEMU's ``-boot menu=on`` (the BootMenu item reads ``01 00``, else ``00 00``).
    """
    events = []
    for name, size in FW_CFG_MEASURED:
        if name == FW_CFG_BOOT_MENU:
            data = struct.pack("<H", int(boot_menu))
        else:
            served = files.get(name)
            if not served or (size is not None and len(served) != size):
                continue
            data = served
        events.append(
            RtmrEvent(
                0,
                EventType.EV_PLATFORM_CONFIG_FLAGS,
                sha384(data),
                fw_cfg_event_data(name),
                f"RTMR0 fw_cfg {name}",
            )
        )
    return tuple(events)


#: The volume OVMF's DXE drivers (BdsDxe among them) run from: the DXEFV's FvName.
DXEFV_NAME = "7cb8bdc9-f8eb-4f34-aaea-3ee4af6516a1"
#: MdeModulePkg/Application/UiApp/UiApp.inf FILE_GUID (the setup front page).
UI_APP_GUID = "462caa21-7614-4503-836e-8ab6f4662331"
#: MdeModulePkg/Application/BootManagerMenuApp/BootManagerMenuApp.inf FILE_GUID.
BOOT_MANAGER_MENU_APP_GUID = "eec25bdc-67f2-4d95-b1d5-f81b2039d11d"
#: EFI_LOAD_OPTION attributes (UEFI 2.10 section 3.1.3).
LOAD_OPTION_ACTIVE = 0x1
LOAD_OPTION_HIDDEN = 0x8
LOAD_OPTION_CATEGORY_APP = 0x100
_MEDIA_DEVICE_PATH = 0x04
_MEDIA_PIWG_FW_FILE_DP = 0x06
_MEDIA_PIWG_FW_VOL_DP = 0x07
_END_ENTIRE_DEVICE_PATH = b"\x7f\xff\x04\x00"


def efi_load_option(
    attributes: int, description: str, fv_name: str, file_guid: str, optional: bytes = b""
) -> bytes:
    """An ``EFI_LOAD_OPTION`` (UEFI 2.10 section 3.1.3) for an application in a firmware volume:
    u32 attributes, u16 FilePathListLength, the NUL-terminated UTF-16LE description, the device
    path ``FvVol(fv_name)/FvFile(file_guid)/End`` (PI vol. 3 section 3.7, media nodes 7 and 6,
    each 4 header bytes + the GUID), then ``optional`` data."""
    path = (
        struct.pack("<BBH", _MEDIA_DEVICE_PATH, _MEDIA_PIWG_FW_VOL_DP, 20)
        + guid_bytes_le(fv_name)
        + struct.pack("<BBH", _MEDIA_DEVICE_PATH, _MEDIA_PIWG_FW_FILE_DP, 20)
        + guid_bytes_le(file_guid)
        + _END_ENTIRE_DEVICE_PATH
    )
    text = (description + "\x00").encode("utf-16-le")
    return struct.pack("<IH", attributes, len(path)) + text + path + optional


@dataclass(frozen=True, slots=True)
class Rtmr0Host:
    """What the host decides that RTMR0 measures, besides the firmware and the memory size.

    Args:
        acpi: QEMU's ACPI fw_cfg blobs; None: not known.
        fw_cfg: every fw_cfg *file* QEMU serves, by name (a copy of a guest's
            ``/sys/firmware/qemu_fw_cfg/by_name/``; a name absent was not served), which
            edk2 >= 202505 measures a few of (:data:`FW_CFG_MEASURED`); None: not known.
        boot_menu: QEMU's ``-boot menu=on`` (the BootMenu fw_cfg item; default off).
        smbios: the SMBIOS structure table the firmware publishes (a guest's
            ``/sys/firmware/dmi/tables/DMI``), edk2 >= 202505; None: not known.
        smbios_entry_point: its entry point (``.../smbios_entry_point``), which tells SMBIOS
            2.x from 3.x hashing (:mod:`cvmlaunch.image.smbios`); None: 3.x is assumed, which
            hashes the same bytes for a table that ends with its type-127 structure.
    """

    acpi: AcpiBlobs | None = None
    fw_cfg: Mapping[str, bytes] | None = None
    boot_menu: bool = False
    smbios: bytes | None = None
    smbios_entry_point: bytes | None = None

    def with_acpi_from_fw_cfg(self) -> Rtmr0Host:
        """The ACPI blobs taken from :attr:`fw_cfg` where they were not given apart."""
        if self.acpi is not None or self.fw_cfg is None:
            return self
        if not all(n in self.fw_cfg for n in ACPI_BLOB_NAMES):
            return self
        blobs = AcpiBlobs({n: self.fw_cfg[n] for n in ACPI_BLOB_NAMES})
        return dataclasses.replace(self, acpi=blobs)


def rtmr0_missing(release: Edk2Release, host: Rtmr0Host) -> tuple[str, ...]:
    """What RTMR0 of ``release`` firmware measures that ``host`` does not give, by setting
    name (``acpi``, ``fw_cfg``, ``smbios``); empty: RTMR0 can be predicted."""
    host = host.with_acpi_from_fw_cfg()
    missing = [] if host.acpi is not None else ["acpi"]
    if release.measures_fw_cfg_and_smbios:
        if host.fw_cfg is None:
            missing.append("fw_cfg")
        if host.smbios is None:
            missing.append("smbios")
    return tuple(missing)


def _variable_event(rtmr: int, kind: EventType, name: str, guid: str, data: bytes) -> RtmrEvent:
    logged = uefi_variable_data(guid, name, data)
    measured = logged if kind is EventType.EV_EFI_VARIABLE_DRIVER_CONFIG else data
    return RtmrEvent(rtmr, kind, sha384(measured), logged, f"RTMR{rtmr} variable {name}")


def boot_variables(
    release: Edk2Release, volumes: Sequence[FirmwareVolume] | None
) -> tuple[tuple[str, bytes], ...]:
    """BootOrder and each Boot#### it lists, as OVMF has them when it signals ReadyToBoot for a
    direct kernel boot (no disks): ``(name, variable data)`` in measurement order.

    The boot manager menu (``PcdBootManagerMenuFile``) is registered first as Boot0000
    (MdeModulePkg BmRegisterBootManagerMenu: ACTIVE | HIDDEN | CATEGORY_APP, the file's UI
    name as description): UiApp before edk2 202505, BootManagerMenuApp since (9d9e3a2ba8).
    Since 202505 OVMF also registers UiApp as "EFI Firmware Setup" (ACTIVE | CATEGORY_APP,
    d433b4c8e4), which exists only where UiApp is in the volume BdsDxe runs from (IntelTdx
    builds since 03a07cb0f5 keep it in the NCCFV, which a TD never installs). Each option's
    device path is ``FvVol(that volume)/FvFile(the app)``.

    Args:
        volumes: the image's firmware volumes (:func:`cvmlaunch.image.fv.find_volumes`); None:
            not readable, the release's standard OVMF layout is assumed.

    Raises:
        ImageError: a 202505+ build without BootManagerMenuApp in the BdsDxe volume (edk2
            202605's IntelTdx build, which cannot boot a TD: fixed by f272dd7ea3).
    """
    bds = None
    for v in volumes or ():
        if any(f.ui_name == "BdsDxe" for f in v.files):
            bds = v
            break
    fv = bds.name if bds is not None and bds.name else DXEFV_NAME
    ui = {f.guid: f.ui_name for f in bds.files} if bds is not None else {}
    hidden_app = LOAD_OPTION_ACTIVE | LOAD_OPTION_HIDDEN | LOAD_OPTION_CATEGORY_APP
    if not release.measures_fw_cfg_and_smbios:
        options = [efi_load_option(hidden_app, ui.get(UI_APP_GUID) or "UiApp", fv, UI_APP_GUID)]
    else:
        if bds is not None and BOOT_MANAGER_MENU_APP_GUID not in ui:
            raise ImageError(
                "BootManagerMenuApp is not in the volume BdsDxe runs from: this build cannot boot "
                "a TD (the edk2 202605 IntelTdx layout, fixed by edk2 commit f272dd7ea3)"
            )
        menu = ui.get(BOOT_MANAGER_MENU_APP_GUID) or "BootManagerMenuApp"
        options = [efi_load_option(hidden_app, menu, fv, BOOT_MANAGER_MENU_APP_GUID)]
        if bds is None or UI_APP_GUID in ui:
            setup = LOAD_OPTION_ACTIVE | LOAD_OPTION_CATEGORY_APP
            options.append(efi_load_option(setup, "EFI Firmware Setup", fv, UI_APP_GUID))
    order = b"".join(struct.pack("<H", n) for n in range(len(options)))
    return (("BootOrder", order), *((f"Boot{n:04X}", o) for n, o in enumerate(options)))


def kernel_authority(
    kernel: PeImage,
    secure_boot: Mapping[str, bytes],
    release: Edk2Release,
    *,
    firmware: str = "firmware",
) -> SignatureEntry | None:
    """The db entry that authorizes the kernel OVMF loads, when Secure Boot is on (SecureBoot
    = 1); None when it is off (:mod:`cvmlaunch.image.secure_boot`).

    Raises:
        ConfigError (setting ``secure_boot_vars``): Secure Boot is on and refuses the kernel:
            the TD does not boot it as modelled (edk2 >= 202511 refuses it in a TD; before,
            OVMF's legacy Linux loader boots it, whose measurements are not modelled).
        ImageError: db, dbx or the kernel's signatures cannot be read.
    """
    if secure_boot.get("SecureBoot", b"") != b"\x01":
        return None
    decision = image_authority(kernel, secure_boot.get("db", b""), secure_boot.get("dbx", b""))
    if decision.entry is not None:
        return decision.entry
    then = (
        "edk2 >= 2025.11 does not boot it in a TD (no legacy-loader fallback)"
        if release.no_legacy_loader_in_cvm
        else "OVMF then boots it with its legacy Linux loader, whose measurements cvmlaunch "
        "does not model"
    )
    raise ConfigError(
        f"{firmware} has Secure Boot on (a PK is enrolled) and refuses {kernel.name}: "
        f"{decision.reason}; {then}. Use firmware without enrolled keys or a kernel that db "
        "authorizes, or give the TD's variables with secure_boot_vars",
        setting="secure_boot_vars",
    )


def authority_event(entry: SignatureEntry) -> RtmrEvent:
    """The EV_EFI_VARIABLE_AUTHORITY event of the db entry that authorized the kernel
    (DxeImageVerificationLib Measurement.c ``MeasureVariable``, PCR 7 -> RTMR0): data and
    digest input are UEFI_VARIABLE_DATA of ``db`` holding that EFI_SIGNATURE_DATA."""
    data = uefi_variable_data(EFI_IMAGE_SECURITY_DATABASE_GUID, "db", entry.signature_data)
    return RtmrEvent(
        0, EventType.EV_EFI_VARIABLE_AUTHORITY, sha384(data), data, "RTMR0 db authority (kernel)"
    )


def rtmr0_events(
    image: OvmfImage,
    memory_size: int,
    host: Rtmr0Host,
    secure_boot: Mapping[str, bytes],
    release: Edk2Release,
    authority: SignatureEntry | None = None,
) -> tuple[RtmrEvent, ...]:
    """RTMR0's events (module doc).

    Args:
        host: what the host serves (:func:`rtmr0_missing` must be empty for it).
        secure_boot: variable data by name (SecureBoot, PK, KEK, db, dbx); absent names are
            measured with no data, as OVMF without enrolled keys does.
        authority: the db entry that authorized the kernel under Secure Boot
            (:func:`kernel_authority`); None: Secure Boot off.

    Raises:
        ConfigError: a host input the release measures is missing; a variable TDVF does not
            measure.
        ImageError: a firmware image whose boot options cannot be told (:func:`boot_variables`).
    """
    missing = rtmr0_missing(release, host)
    if missing:
        raise ConfigError(f"RTMR0 also measures {', '.join(missing)}, which were not given")
    host = host.with_acpi_from_fw_cfg()
    assert host.acpi is not None
    unknown = set(secure_boot) - {n for n, _ in SECURE_BOOT_VARIABLES}
    if unknown:
        raise ConfigError(f"not a Secure Boot variable TDVF measures: {', '.join(sorted(unknown))}")
    assert image.tdx_sections is not None
    events = [td_hob_event(image.tdx_sections, memory_size), cfv_event(image)]
    volumes, smbios = None, None
    if release.measures_fw_cfg_and_smbios:
        assert host.fw_cfg is not None
        assert host.smbios is not None
        events += fw_cfg_events(host.fw_cfg, boot_menu=host.boot_menu)
        volumes = image_volumes(image)
        smbios = smbios_event(host.smbios, host.smbios_entry_point)
    events += [
        _variable_event(0, EventType.EV_EFI_VARIABLE_DRIVER_CONFIG, n, g, secure_boot.get(n, b""))
        for n, g in SECURE_BOOT_VARIABLES
    ]
    events.append(RtmrEvent.hashed(0, EventType.EV_SEPARATOR, SEPARATOR, "RTMR0 separator"))
    events += acpi_events(host.acpi)
    if authority is not None:  # LoadImage of the kernel, between BDS's console and ReadyToBoot
        events.append(authority_event(authority))
    if smbios is not None:
        events.append(smbios)
    for name, data in boot_variables(release, volumes):
        events.append(
            _variable_event(0, EventType.EV_EFI_VARIABLE_BOOT, name, EFI_GLOBAL_VARIABLE_GUID, data)
        )
    if not release.separator_in_rtmr1:
        events.append(
            RtmrEvent.hashed(0, EventType.EV_SEPARATOR, SEPARATOR, "RTMR0 ReadyToBoot separator")
        )
    return tuple(events)


def image_volumes(image: OvmfImage) -> tuple[FirmwareVolume, ...]:
    """The firmware volumes in the image's compressed DXE sections.

    Raises:
        ImageError: a malformed or oversized volume.
    """
    return tuple(
        v for raw in decompressed_volumes(image.data, name=image.name) for v in find_volumes(raw)
    )


def smbios_event(table: bytes, entry_point: bytes | None = None) -> RtmrEvent:
    """SmbiosMeasurementDxe's event (edk2 >= 202505, at ReadyToBoot): EV_EFI_HANDOFF_TABLES,
    the SHA-384 of the published SMBIOS structure table after the driver's filter
    (:func:`cvmlaunch.image.smbios.measured_smbios_table`), hashed as the entry point's
    SMBIOS version says (None: 3.x). The logged EFI_HANDOFF_TABLE_POINTERS holds the entry
    point's run-time address and is left empty.

    Raises:
        ImageError: a malformed SMBIOS table or entry point.
    """
    from cvmlaunch.image.smbios import SMBIOS_DESCRIPTION, parse_smbios_entry_point, smbios_digest

    version = (3, 0) if entry_point is None else parse_smbios_entry_point(entry_point).version
    return RtmrEvent(
        0,
        EventType.EV_EFI_HANDOFF_TABLES,
        smbios_digest(table, version=version),
        b"",
        SMBIOS_DESCRIPTION,
    )
