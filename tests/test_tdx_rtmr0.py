"""RTMR0 of edk2 >= 202505 TDVF: the fw_cfg item events, against a real TD and the edk2 source.

Expected values come from outside cvmlaunch: the digest a real edk2-stable202505 TD logged
(tests/vectors/tdx/README.md, "edk2 202505"), and the layouts of edk2's
OvmfPkg/Library/QemuFwCfgLib/QemuFwCfgCacheInit.c written out here by hand (``FW_CFG_EVENT``,
``mCacheFwCfgList``), with hashlib for the digests.
"""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from cvmlaunch.measure.rtmr import EventType
from cvmlaunch.measure.tdx_rtmr0 import fw_cfg_event_data, fw_cfg_events
from tests.vectors import td_202505

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
