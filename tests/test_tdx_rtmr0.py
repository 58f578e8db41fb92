"""RTMR0 of edk2 >= 202505 TDVF: the fw_cfg item events, against a real TD and the edk2 source.

Expected values come from outside cvmlaunch: the digest a real edk2-stable202505 TD logged
(tests/vectors/tdx/README.md, "edk2 202505"), and the layouts of edk2's
OvmfPkg/Library/QemuFwCfgLib/QemuFwCfgCacheInit.c written out here by hand (``FW_CFG_EVENT``,
``mCacheFwCfgList``), with hashlib for the digests.
"""

from __future__ import annotations

import hashlib
import struct
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given
from hypothesis import strategies as st

from cvmlaunch.errors import ConfigError, ImageError
from cvmlaunch.image.fv import FirmwareVolume, FvFile
from cvmlaunch.image.ovmf import OvmfImage, parse_ovmf
from cvmlaunch.image.pe import parse_pe
from cvmlaunch.image.secure_boot import image_certificates
from cvmlaunch.image.tdvf_features import Edk2Release
from cvmlaunch.measure.rtmr import EventType, replay
from cvmlaunch.measure.tdx_rtmr import predict_tdx_rtmrs
from cvmlaunch.measure.tdx_rtmr0 import (
    boot_variables,
    efi_load_option,
    fw_cfg_event_data,
    fw_cfg_events,
)
from tests.acpi_blobs import qemu_like_acpi
from tests.errors_util import raises_cvm
from tests.test_smbios import qemu_q35_table, reference_filter
from tests.vectors import ccel_event, td_202505

ACPI_NAMES = ("etc/table-loader", "etc/acpi/rsdp", "etc/acpi/tables")

# mCacheFwCfgList at edk2 2eac71a1ee: (name, NeedMeasure, fixed size or 0 for any). The first
# two are cached only. BootMenu is the numbered item QemuFwCfgItemBootMenu (0x000E).
EDK2_LIST = (
    ("etc/e820", False, 0),
    ("etc/system-states", False, 0),
    ("etc/extra-pci-roots", True, 8),
    ("BootMenu", True, 2),
    ("etc/boot-menu-wait", True, 2),
    ("etc/reserved-memory-end", True, 8),
    ("opt/ovmf/X-PciMmio64Mb", True, 0),
    ("bootorder", True, 0),
)
FILES = [n for n, _, _ in EDK2_LIST if n != "BootMenu"]


def _event_data(name: str) -> bytes:
    # typedef struct { UINT8 FwCfg[sizeof "QEMU FW CFG"]; UINT8 FwCfgFileName[56]; } FW_CFG_EVENT
    fw_cfg = b"QEMU FW CFG" + b"\x00"
    file_name = name.encode() + bytes(56 - len(name))
    return fw_cfg + file_name


def test_the_bootorder_event_is_the_one_a_real_202505_td_logged() -> None:
    td = td_202505()
    events = fw_cfg_events({"bootorder": td.fw_cfg_bootorder_data}, boot_menu=False)
    assert [e.description for e in events] == ["RTMR0 fw_cfg BootMenu", "RTMR0 fw_cfg bootorder"]
    assert events[1].digest.hex() == td.fw_cfg_bootorder_digest
    # the real TD's RTMR0 has exactly these two fw_cfg events, after CFV and before SecureBoot
    assert td.rtmr0_order[2:4] == ("fw_cfg BootMenu", "fw_cfg bootorder")


def test_event_data_and_type_follow_fw_cfg_event() -> None:
    for name in ("BootMenu", "bootorder", "opt/ovmf/X-PciMmio64Mb"):
        assert fw_cfg_event_data(name) == _event_data(name)
        assert len(fw_cfg_event_data(name)) == 68
    (menu,) = fw_cfg_events({}, boot_menu=True)
    assert menu.rtmr == 0
    assert menu.event_type == EventType.EV_PLATFORM_CONFIG_FLAGS
    assert menu.event_data == _event_data("BootMenu")
    assert menu.digest == hashlib.sha384(b"\x01\x00").digest()
    (off,) = fw_cfg_events({}, boot_menu=False)
    assert off.digest == hashlib.sha384(b"\x00\x00").digest()


@given(
    st.dictionaries(
        st.sampled_from([*FILES, "etc/table-loader", "etc/acpi/rsdp"]),
        st.one_of(st.binary(max_size=12), st.sampled_from([bytes(2), bytes(8)])),
    ),
    st.booleans(),
)
def test_measured_items_are_those_edk2_caches_with_measurement(
    files: dict[str, bytes], boot_menu: bool
) -> None:
    expected = []
    for name, measure, size in EDK2_LIST:
        if name == "BootMenu":
            data = bytes([int(boot_menu), 0])
        elif name not in files or not files[name] or (size and len(files[name]) != size):
            continue
        else:
            data = files[name]
        if measure:
            expected.append((_event_data(name), hashlib.sha384(data).digest()))
    got = [(e.event_data, e.digest) for e in fw_cfg_events(files, boot_menu=boot_menu)]
    assert got == expected


# -- boot options ------------------------------------------------------------------------------

GIB = 1 << 30
DXEFV = "7cb8bdc9-f8eb-4f34-aaea-3ee4af6516a1"
NCCFV = "ae047c6d-bce9-426c-ae03-a68e3b8a0488"
UI_APP = "462caa21-7614-4503-836e-8ab6f4662331"
MENU_APP = "eec25bdc-67f2-4d95-b1d5-f81b2039d11d"
BDS_DXE = "6d33944a-ec75-4855-a54d-809c75241f6c"


def load_option(attributes: int, description: str, fv: str, app: str) -> bytes:
    """EFI_LOAD_OPTION (UEFI 2.10 3.1.3) with FvVol/FvFile/End (PI vol. 3 3.7), by hand."""
    path = b"\x04\x07\x14\x00" + uuid.UUID(fv).bytes_le
    path += b"\x04\x06\x14\x00" + uuid.UUID(app).bytes_le + b"\x7f\xff\x04\x00"
    return (
        struct.pack("<IH", attributes, len(path)) + (description + "\0").encode("utf-16-le") + path
    )


def test_the_load_option_builder_gives_the_real_tds_boot0000() -> None:
    uiapp = efi_load_option(0x109, "UiApp", DXEFV, UI_APP)
    assert hashlib.sha384(uiapp).hexdigest() == ccel_event("Boot0000").digest
    assert uiapp == load_option(0x109, "UiApp", DXEFV, UI_APP)


def volumes(bds_files: list[tuple[str, str]], other: list[tuple[str, str]]) -> list[FirmwareVolume]:
    bds = FirmwareVolume(DXEFV, 0, tuple(FvFile(g, 7, n) for g, n in bds_files))
    return [bds, FirmwareVolume(NCCFV, 1 << 20, tuple(FvFile(g, 9, n) for g, n in other))]


def test_boot_variables_per_layout() -> None:
    bds = (BDS_DXE, "BdsDxe")
    menu, ui = (MENU_APP, "BootManagerMenuApp"), (UI_APP, "UiApp")
    # before 202505: the boot manager menu is UiApp (the real TD above)
    old = boot_variables(Edk2Release.R2025_02, volumes([bds, ui], []))
    assert old == (("BootOrder", b"\0\0"), ("Boot0000", load_option(0x109, "UiApp", DXEFV, UI_APP)))
    # 202505..202602: both apps in DXEFV, as dstack's real 202505 TD had them (17 RTMR0 events)
    both = boot_variables(Edk2Release.R2025_05, volumes([bds, menu, ui], []))
    assert both == (
        ("BootOrder", b"\0\0\1\0"),
        ("Boot0000", load_option(0x109, "BootManagerMenuApp", DXEFV, MENU_APP)),
        ("Boot0001", load_option(0x101, "EFI Firmware Setup", DXEFV, UI_APP)),
    )
    assert td_202505().rtmr0_order[-3:] == ("BootOrder", "Boot0000", "Boot0001")
    # since 03a07cb0f5 + f272dd7ea3 UiApp is in the NCCFV, which a TD never installs
    new = boot_variables(Edk2Release.R2025_11, volumes([bds, menu], [ui]))
    assert new == (("BootOrder", b"\0\0"), both[1])
    # edk2 202605 put both apps in the NCCFV: no boot manager menu, the TD cannot boot
    with pytest.raises(ImageError, match="f272dd7ea3"):
        boot_variables(Edk2Release.R2025_11, volumes([bds], [menu, ui]))


# -- the whole RTMR0 -----------------------------------------------------------------------------


def _debian_image(firmware: Callable[[str], Path]) -> tuple[OvmfImage, bytes]:
    raw = firmware("OVMF.inteltdx.ms.fd").read_bytes()
    return parse_ovmf(raw, name="OVMF.inteltdx.ms.fd"), raw


def _real(what: str) -> bytes:
    return bytes.fromhex(ccel_event(what).digest)


def fold(digests: list[bytes]) -> bytes:
    reg = bytes(48)
    for d in digests:
        reg = hashlib.sha384(reg + d).digest()
    return reg


def _host() -> tuple[dict[str, bytes], bytes]:
    acpi = qemu_like_acpi(cpus=2)
    served = {**acpi, "bootorder": td_202505().fw_cfg_bootorder_data}
    served |= {"etc/e820": bytes(20), "etc/system-states": bytes(6), "genroms/x.bin": b"rom"}
    return served, qemu_q35_table(2 * GIB)


def test_rtmr0_of_the_debian_build_against_an_independent_fold(
    firmware: Callable[[str], Path], debian_kernel: tuple[Path, dict[str, str]]
) -> None:
    image, raw = _debian_image(firmware)
    served, smbios = _host()
    p = predict_tdx_rtmrs(
        image,
        memory_size=2 * GIB,  # the real TD's TD HOB (same inteltdx section layout)
        kernel=debian_kernel[0].read_bytes(),
        initrd=None,
        cmdline="",
        acpi=None,
        fw_cfg=served,
        smbios=smbios,
        secure_boot={},  # no enrolled keys: the variables of Debian's OVMF.inteltdx.fd
        stub_measures=False,
    )
    cfv = next(s for s in image.tdx_sections or () if s.type.name == "CFV")
    expected = [
        _real("TD HOB, 2 GiB, inteltdx section layout"),
        hashlib.sha384(raw[cfv.data_offset : cfv.data_offset + cfv.raw_size]).digest(),
        hashlib.sha384(b"\0\0").digest(),  # fw_cfg BootMenu, -boot menu=off
        bytes.fromhex(td_202505().fw_cfg_bootorder_digest),
        *(_real(n) for n in ("SecureBoot", "PK", "KEK", "db", "dbx")),  # none enrolled
        _real("separator"),
        *(hashlib.sha384(served[n]).digest() for n in ACPI_NAMES),
        hashlib.sha384(reference_filter(smbios)).digest(),
        hashlib.sha384(b"\0\0").digest(),  # BootOrder: Boot0000 only
        hashlib.sha384(load_option(0x109, "BootManagerMenuApp", DXEFV, MENU_APP)).digest(),
    ]
    assert p.rtmrs[0] == fold(expected)
    names = [e.description for e in p.events if e.rtmr == 0]
    assert len(names) == len(expected) == 16  # dstack's 17 less Boot0001 (UiApp in the NCCFV)
    assert names[2:4] == ["RTMR0 fw_cfg BootMenu", "RTMR0 fw_cfg bootorder"]
    assert names[-3:] == [
        "RTMR0 SMBIOS tables",
        "RTMR0 variable BootOrder",
        "RTMR0 variable Boot0000",
    ]
    assert replay(p.events)[0] == p.rtmrs[0]


def _esl(kind: str, owner: str, entries: list[bytes]) -> bytes:
    """EFI_SIGNATURE_LIST (UEFI 2.10 32.4.1), by hand."""
    size = 16 + len(entries[0])
    body = b"".join(uuid.UUID(owner).bytes_le + e for e in entries)
    return uuid.UUID(kind).bytes_le + struct.pack("<III", 28 + len(body), 0, size) + body


X509 = "a5c059a1-94e4-4aa7-87b5-ab155c2bf072"
OWNER = "77fa9abd-0359-4d32-bd60-28f4e78f784b"  # Microsoft's owner GUID, any would do
DB = "d719b2cb-3d3a-4596-a3bc-dad00e67656f"


def test_secure_boot_refuses_the_debian_kernel_with_the_firmwares_own_keys(
    firmware: Callable[[str], Path], debian_kernel: tuple[Path, dict[str, str]]
) -> None:
    image, _ = _debian_image(firmware)
    with raises_cvm(ConfigError, setting="secure_boot_vars", match="Debian Secure Boot CA"):
        predict_tdx_rtmrs(
            image,
            memory_size=2 * GIB,
            kernel=debian_kernel[0].read_bytes(),
            initrd=None,
            cmdline="",
            acpi=None,
        )


def test_a_db_that_holds_the_kernels_signer_adds_its_authority_event(
    firmware: Callable[[str], Path], debian_kernel: tuple[Path, dict[str, str]]
) -> None:
    image, _ = _debian_image(firmware)
    served, smbios = _host()
    kernel = debian_kernel[0].read_bytes()
    (signer,) = [c for certs in image_certificates(parse_pe(kernel)) for c in certs]
    der = signer.public_bytes(Encoding.DER)
    db = _esl(X509, OWNER, [der])
    variables = {"SecureBoot": b"\1", "PK": b"a PK", "KEK": b"a KEK", "db": db, "dbx": b""}
    p = predict_tdx_rtmrs(
        image, memory_size=2 * GIB, kernel=kernel, initrd=None, cmdline="", acpi=None,
        fw_cfg=served, smbios=smbios, secure_boot=variables, stub_measures=False,
    )  # fmt: skip
    rtmr0 = [e for e in p.events if e.rtmr == 0]
    (authority,) = [e for e in rtmr0 if e.event_type == EventType.EV_EFI_VARIABLE_AUTHORITY]
    name = "db".encode("utf-16-le")
    data = uuid.UUID(DB).bytes_le + struct.pack("<QQ", 2, 16 + len(der)) + name
    data += uuid.UUID(OWNER).bytes_le + der
    assert authority.event_data == data
    assert authority.digest == hashlib.sha384(data).digest()
    # measured when OVMF loads the kernel: after the ACPI tables, before ReadyToBoot's SMBIOS
    at = rtmr0.index(authority)
    assert rtmr0[at - 1].description == "RTMR0 ACPI etc/acpi/tables"
    assert rtmr0[at + 1].description == "RTMR0 SMBIOS tables"


# -- the SMBIOS input: the table alone, or with its entry point ------------------------------


def _empty(tmp_path: Path) -> Path:
    (tmp_path / "empty").mkdir()
    return tmp_path / "empty"


def test_smbios_input_and_its_entry_point(tmp_path: Path) -> None:
    from cvmlaunch.fw_cfg_files import read_smbios
    from cvmlaunch.measure.tdx_rtmr0 import smbios_event
    from tests.test_smbios import END, ep32, ep64

    table = qemu_q35_table(2 * GIB)
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "DMI").write_bytes(table)
    (tmp_path / "tables" / "smbios_entry_point").write_bytes(ep32(len(table)))
    (tmp_path / "DMI").write_bytes(table)
    assert read_smbios(tmp_path / "tables") == (table, ep32(len(table)))
    assert read_smbios(tmp_path / "DMI") == (table, None)
    with raises_cvm(ConfigError, setting=None, match="no DMI"):
        read_smbios(_empty(tmp_path))
    # a table that ends with its type-127 structure hashes alike either way
    assert smbios_event(table).digest == smbios_event(table, ep32(len(table))).digest
    assert smbios_event(table).digest == hashlib.sha384(reference_filter(table)).digest()
    # a 2.x table is hashed over its whole length, bytes after type 127 included (3.x stops)
    longer = table + END
    two = hashlib.sha384(reference_filter(table) + END).digest()
    assert smbios_event(longer, ep32(len(longer))).digest == two
    assert smbios_event(longer, ep64(len(longer))).digest == smbios_event(table).digest
