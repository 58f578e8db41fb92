"""TDX RTMR0-2: every event against an independent value (a real TD's CCEL from
confidential-containers/trustee, osslsigncode's Authenticode of the Debian kernel, the spec's
byte layouts written out here), the release markers of the real firmware, properties, and the
round trip through the event log."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cvmlaunch.errors import ConfigError, ImageError, LogFormatError
from cvmlaunch.fw_cfg_files import read_fw_cfg_dir, read_uefi_variables
from cvmlaunch.image.ovmf import OvmfImage, parse_ovmf
from cvmlaunch.image.tdvf_features import Edk2Release, detect_tdvf_features, releases_matching
from cvmlaunch.measure.rtmr import (
    EventType,
    RtmrEvent,
    describe_event,
    event_from_record,
    event_record,
    events_from_cel,
    events_to_cel,
    extend,
    first_difference,
    inconsistent_events,
    replay,
)
from cvmlaunch.measure.tdx_rtmr import (
    ACPI_BLOB_NAMES,
    BOOT0000_UIAPP,
    BOOT_ORDER_DIRECT,
    EFI_GLOBAL_VARIABLE_GUID,
    SECURE_BOOT_VARIABLES,
    AcpiBlobs,
    KernelLoading,
    TdxRtmrPrediction,
    acpi_events,
    cfv_event,
    kernel_image,
    load_options,
    predict_tdx_rtmrs,
    rtmr1_events,
    rtmr2_events,
    stub_uses_cc_measurement,
    table_loader_allocations,
    td_hob_event,
    uefi_variable_data,
)
from tests.acpi_blobs import qemu_like_acpi, write_by_name
from tests.errors_util import raises_cvm
from tests.test_td_hob import INTELTDX_SECTIONS
from tests.vectors import ccel_event, ccel_events, debian_kernel

GIB = 1 << 30
KERNEL = debian_kernel()


def real(what: str) -> tuple[bytes, bytes]:
    """(digest, event data) of a real TD's CCEL event."""
    e = ccel_event(what)
    return bytes.fromhex(e.digest), e.event


def fold(digests: list[bytes]) -> bytes:
    """The RTMR extend written out from the spec (not cvmlaunch's fold)."""
    reg = bytes(48)
    for d in digests:
        reg = hashlib.sha384(reg + d).digest()
    return reg


# -- constants (research launch.md section 4.1/4.2; the real TD log) ----------------------------


def test_known_constants() -> None:
    assert hashlib.sha384(bytes(4)).hexdigest() == ccel_event("separator").digest
    assert real("separator")[0] == hashlib.sha384(bytes(4)).digest()
    assert hashlib.sha384(BOOT_ORDER_DIRECT).digest() == real("BootOrder")[0]
    assert hashlib.sha384(BOOT0000_UIAPP).digest() == real("Boot0000")[0]
    assert hashlib.sha384(BOOT0000_UIAPP).hexdigest().startswith("23ada07f")


@pytest.mark.parametrize(("name", "guid"), SECURE_BOOT_VARIABLES)
def test_empty_secure_boot_variables_match_a_real_td(name: str, guid: str) -> None:
    digest, event = real(name)
    data = uefi_variable_data(guid, name, b"")
    assert data == event
    assert hashlib.sha384(data).digest() == digest


def test_uefi_variable_data_layout() -> None:
    # Written out from the TCG PC Client PFP UEFI_VARIABLE_DATA definition.
    data = uefi_variable_data(EFI_GLOBAL_VARIABLE_GUID, "Boot0000", BOOT0000_UIAPP)
    assert data == real("Boot0000")[1]
    guid = bytes.fromhex("61dfe48bca93d211aa0d00e098032b8c")
    expected = guid + struct.pack("<QQ", 8, 62) + "Boot0000".encode("utf-16-le") + BOOT0000_UIAPP
    assert data == expected
    assert (
        uefi_variable_data(EFI_GLOBAL_VARIABLE_GUID, "BootOrder", BOOT_ORDER_DIRECT)
        == real("BootOrder")[1]
    )


def test_td_hob_and_cfv_event_data_match_a_real_td(firmware: Callable[[str], Path]) -> None:
    digest, event = real("TD HOB, 2 GiB, inteltdx section layout")
    e = td_hob_event(INTELTDX_SECTIONS, 2 * GIB)
    assert (e.digest, e.event_data, e.rtmr) == (digest, event, 0)
    image = parse_ovmf(firmware("OVMF.inteltdx.ms.fd").read_bytes(), name="inteltdx")
    cfv = cfv_event(image)
    # Same CFV placement (0xFFC00000, 0x84000) as the real TD's 4 MiB OVMF.
    assert cfv.event_data == real("CFV (4 MiB OVMF, empty varstore)")[1]
    assert cfv.event_type == EventType.EV_EFI_PLATFORM_FIRMWARE_BLOB2
    cfv_section = next(s for s in image.tdx_sections or () if s.type.name == "CFV")
    raw = firmware("OVMF.inteltdx.ms.fd").read_bytes()
    start = cfv_section.data_offset
    assert cfv.digest == hashlib.sha384(raw[start : start + cfv_section.raw_size]).digest()
    # Debian's generic 4 MiB OVMF ships the empty varstore the real TD's firmware had.
    generic = parse_ovmf(firmware("OVMF.generic.fd").read_bytes(), name="generic")
    assert cfv_event(generic).digest == real("CFV (4 MiB OVMF, empty varstore)")[0]


def test_actions_and_tags_match_a_real_td() -> None:
    events = rtmr1_events(bytes(48), Edk2Release.R2025_02)
    by_desc = {e.description: e for e in events}
    for text in (
        "Calling EFI Application from Boot Option",
        "Exit Boot Services Invocation",
        "Exit Boot Services Returned with Success",
    ):
        e = by_desc[f"RTMR1 {text}"]
        assert (e.digest, e.event_data) == real(text)
    tags = rtmr2_events("x", b"initrd", Edk2Release.R2025_02)
    assert [t.event_data for t in tags] == [real("LoadOptions tag")[1], real("initrd tag")[1]]


def test_load_options() -> None:
    assert load_options("console=ttyS0", initrd=True, prefix=False) == (
        "console=ttyS0 initrd=initrd\0".encode("utf-16-le")
    )
    assert load_options("console=ttyS0", initrd=True, prefix=True) == (
        "initrd=initrd console=ttyS0\0".encode("utf-16-le")
    )
    assert load_options("console=ttyS0", initrd=False, prefix=True) == "console=ttyS0\0".encode(
        "utf-16-le"
    )
    assert load_options("", initrd=False, prefix=False) == b""
    assert load_options("", initrd=True, prefix=False) == " initrd=initrd\0".encode("utf-16-le")


@settings(max_examples=50, deadline=None)
@given(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40),
    st.sampled_from(list(Edk2Release)),
)
def test_rtmr2_without_initrd_has_no_initrd_event_and_no_suffix(
    cmdline: str, release: Edk2Release
) -> None:
    events = rtmr2_events(cmdline, None, release)
    assert all(e.description != "RTMR2 initrd" for e in events)
    if cmdline:
        (e,) = events
        assert e.digest == hashlib.sha384((cmdline + "\0").encode("utf-16-le")).digest()
    else:
        assert events == ()


def test_table_loader_order_and_acpi_events() -> None:
    files = qemu_like_acpi()
    assert table_loader_allocations(files["etc/table-loader"]) == (
        "etc/acpi/rsdp",
        "etc/acpi/tables",
    )
    events = acpi_events(AcpiBlobs(files))
    assert [e.digest for e in events] == [
        hashlib.sha384(files[n]).digest()
        for n in ("etc/table-loader", "etc/acpi/rsdp", "etc/acpi/tables")
    ]
    assert all(e.event_data == b"ACPI DATA" for e in events)
    with pytest.raises(ConfigError, match="lack"):
        acpi_events(AcpiBlobs({"etc/table-loader": files["etc/table-loader"]}))
    with pytest.raises(ImageError, match="128-byte"):
        table_loader_allocations(b"\x01" * 100)


# -- firmware release markers ------------------------------------------------------------------


def test_release_markers_of_the_real_firmware(firmware: Callable[[str], Path]) -> None:
    new = detect_tdvf_features(firmware("OVMF.inteltdx.ms.fd").read_bytes())
    assert new.initrd_prefix is True
    assert new.named_blobs is True
    assert new.measures_fw_cfg is True
    assert new.measures_smbios is True
    assert new.no_legacy_loader_in_cvm is True  # edk2 5a6a9f7955 (202511)
    assert releases_matching(new) == (Edk2Release.R2025_11,)
    old = detect_tdvf_features(firmware("OVMF.2022.fd").read_bytes())
    assert (
        old.initrd_prefix,
        old.named_blobs,
        old.measures_fw_cfg,
        old.measures_smbios,
        old.no_legacy_loader_in_cvm,
    ) == (False, False, False, False, False)
    assert releases_matching(old) == (Edk2Release.R2024_08, Edk2Release.R2024_11)
    assert detect_tdvf_features(bytes(4096)).decompressed_volumes == 0
    assert Edk2Release.parse("2025.03") is Edk2Release.R2025_02
    assert Edk2Release.parse("202509") is Edk2Release.R2025_08
    assert Edk2Release.parse("202611") is Edk2Release.R2025_11
    assert Edk2Release.parse("2022.11") is Edk2Release.R2024_08


# -- the whole prediction ----------------------------------------------------------------------


def _debian(debian_kernel: tuple[Path, dict[str, str]]) -> bytes:
    data = debian_kernel[0].read_bytes()
    if hashlib.sha256(data).hexdigest() != KERNEL.vmlinuz_sha256:
        pytest.skip("apt served another kernel; the vectors are for 6.1.176-1")
    return data


def test_rtmr1_rtmr2_raw_against_independent_digests(
    firmware: Callable[[str], Path], debian_kernel: tuple[Path, dict[str, str]]
) -> None:
    kernel = _debian(debian_kernel)
    image = parse_ovmf(firmware("OVMF.inteltdx.ms.fd").read_bytes(), name="inteltdx")
    initrd = b"\x07" * 5000
    p = predict_tdx_rtmrs(
        image,
        memory_size=4 * GIB,
        kernel=kernel,
        initrd=initrd,
        cmdline="console=ttyS0",
        acpi=AcpiBlobs(qemu_like_acpi()),
        secure_boot={},  # no keys, as Debian's OVMF.inteltdx.fd (the .ms.fd refuses this kernel)
        stub_measures=True,
    )
    assert p.release is Edk2Release.R2025_11
    assert p.kernel_loading is KernelLoading.RAW
    assert p.rtmrs[0] is None
    assert any("SMBIOS" in n for n in p.notes)
    assert p.rtmrs[1] == fold(
        [
            bytes.fromhex(KERNEL.sha384),
            real("Calling EFI Application from Boot Option")[0],
            real("separator")[0],
            real("Exit Boot Services Invocation")[0],
            real("Exit Boot Services Returned with Success")[0],
        ]
    )
    assert p.rtmrs[2] == fold(
        [
            hashlib.sha384("initrd=initrd console=ttyS0\0".encode("utf-16-le")).digest(),
            hashlib.sha384(initrd).digest(),
        ]
    )
    assert replay(p.events)[1:3] == p.rtmrs[1:]


def test_rtmr0_old_firmware_against_independent_digests(
    firmware: Callable[[str], Path], debian_kernel: tuple[Path, dict[str, str]]
) -> None:
    kernel = _debian(debian_kernel)
    raw = firmware("OVMF.2022.fd").read_bytes()
    image = parse_ovmf(raw, name="OVMF.2022.fd")
    with raises_cvm(ConfigError, setting="edk2", match="^edk2: OVMF.2022.fd matches"):
        predict_tdx_rtmrs(
            image, memory_size=2 * GIB, kernel=kernel, initrd=None, cmdline="", acpi=None
        )
    with raises_cvm(ConfigError, setting="kernel_loading", match="patched or raw"):
        predict_tdx_rtmrs(
            image,
            memory_size=2 * GIB,
            kernel=kernel,
            initrd=None,
            cmdline="",
            acpi=None,
            release=Edk2Release.R2024_08,
        )
    acpi = qemu_like_acpi()
    p = predict_tdx_rtmrs(
        image,
        memory_size=2 * GIB,
        kernel=kernel,
        initrd=None,
        cmdline="quiet",
        acpi=AcpiBlobs(acpi),
        kernel_loading=KernelLoading.RAW,
        release=Edk2Release.R2024_08,
        stub_measures=True,
    )
    cfv = next(s for s in image.tdx_sections or () if s.type.name == "CFV")
    sep = real("separator")[0]
    expected = [
        real("TD HOB, 2 GiB, inteltdx section layout")[0],  # same TEMP/HOB layout as 2022.11
        hashlib.sha384(raw[cfv.data_offset : cfv.data_offset + cfv.raw_size]).digest(),
        *(real(n)[0] for n, _ in SECURE_BOOT_VARIABLES),
        sep,
        *(hashlib.sha384(acpi[n]).digest() for n in ACPI_BLOB_NAMES),
        real("BootOrder")[0],
        real("Boot0000")[0],
        sep,  # before edk2 202411 the ReadyToBoot separator went to RTMR0
    ]
    assert p.rtmrs[0] == fold(expected)
    assert p.rtmrs[1] == fold(
        [
            bytes.fromhex(KERNEL.sha384),
            real("Calling EFI Application from Boot Option")[0],
            real("Exit Boot Services Invocation")[0],
            real("Exit Boot Services Returned with Success")[0],
        ]
    )
    assert p.rtmrs[2] == fold([hashlib.sha384("quiet\0".encode("utf-16-le")).digest()])
    # An enrolled PK changes only its own event.
    q = predict_tdx_rtmrs(
        image,
        memory_size=2 * GIB,
        kernel=kernel,
        initrd=None,
        cmdline="quiet",
        acpi=AcpiBlobs(acpi),
        kernel_loading=KernelLoading.RAW,
        release=Edk2Release.R2024_11,
        secure_boot={"PK": b"pk"},
        stub_measures=True,
    )
    pk = next(e for e in q.events if e.description == "RTMR0 variable PK")
    assert (
        pk.digest
        == hashlib.sha384(uefi_variable_data(EFI_GLOBAL_VARIABLE_GUID, "PK", b"pk")).digest()
    )
    assert q.rtmrs[1] != p.rtmrs[1]  # 202411+: the separator moved to RTMR1


@settings(max_examples=8, deadline=None)
@given(st.integers(0xB0000, 0x1000000).map(lambda pages: pages * 0x1000))
def test_rtmr1_patched_does_not_depend_on_memory_above_2_75_gib(memory: int) -> None:
    kernel = _DEBIAN_CACHE.get("kernel")
    if kernel is None:
        pytest.skip("no Debian kernel")
    a = kernel_image(
        kernel, KernelLoading.PATCHED, memory_size=memory, initrd_size=12345, cmdline="x"
    )
    b = kernel_image(
        kernel, KernelLoading.PATCHED, memory_size=0xB0000000, initrd_size=12345, cmdline="x"
    )
    assert a == b
    c = kernel_image(
        kernel, KernelLoading.PATCHED, memory_size=0x60000000, initrd_size=12345, cmdline="x"
    )
    assert c != a  # below 2.75 GiB the initrd moves


_DEBIAN_CACHE: dict[str, bytes] = {}


@pytest.fixture(autouse=True)
def _cache_kernel(request: pytest.FixtureRequest) -> None:
    if request.function.__name__ == "test_rtmr1_patched_does_not_depend_on_memory_above_2_75_gib":
        path, _ = request.getfixturevalue("debian_kernel")
        _DEBIAN_CACHE.setdefault("kernel", path.read_bytes())


def test_patched_kernel_event_differs_from_raw(debian_kernel: tuple[Path, dict[str, str]]) -> None:
    kernel = _debian(debian_kernel)
    patched = kernel_image(
        kernel, KernelLoading.PATCHED, memory_size=4 * GIB, initrd_size=100, cmdline=""
    )
    assert patched[0x218:0x220] == struct.pack("<II", (0x7FFD7FFF - 100) & ~0xFFF, 100)
    assert (
        kernel_image(kernel, KernelLoading.RAW, memory_size=4 * GIB, initrd_size=100, cmdline="")
        is kernel
    )


# -- event log: CEL-JSON round trip, replay ------------------------------------------------------


def test_cel_round_trip_replays_to_the_prediction(
    firmware: Callable[[str], Path], debian_kernel: tuple[Path, dict[str, str]]
) -> None:
    kernel = _debian(debian_kernel)
    image = parse_ovmf(firmware("OVMF.2022.fd").read_bytes(), name="OVMF.2022.fd")
    p = predict_tdx_rtmrs(
        image,
        memory_size=4 * GIB,
        kernel=kernel,
        initrd=b"rd",
        cmdline="console=ttyS0",
        acpi=AcpiBlobs(qemu_like_acpi()),
        kernel_loading=KernelLoading.PATCHED,
        release=Edk2Release.R2024_11,
    )
    cel = json.loads(json.dumps(events_to_cel(p.events)))
    assert cel[0]["content"]["event_type"] == "EV_EFI_HANDOFF_TABLES2"
    assert cel[0]["pcr"] == 1
    assert cel[0]["digests"][0]["hashAlg"] == "sha384"
    back = events_from_cel(cel)
    assert [(e.rtmr, e.event_type, e.digest, e.event_data) for e in back] == [
        (e.rtmr, e.event_type, e.digest, e.event_data) for e in p.events
    ]
    assert replay(back)[:3] == p.rtmrs
    # Replay written out independently from the CEL records.
    regs = {i: bytes(48) for i in (1, 2, 3)}
    for r in cel:
        regs[r["pcr"]] = hashlib.sha384(
            regs[r["pcr"]] + bytes.fromhex(r["digests"][0]["digest"])
        ).digest()
    assert (regs[1], regs[2], regs[3]) == p.rtmrs


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r.update(recnum=5), "recnum"),
        (lambda r: r.update(pcr=0), "pcr"),
        (lambda r: r.update(content_type="systemd"), "content_type"),
        (lambda r: r.update(digests=[]), "sha384"),
        (lambda r: r["content"].update(event_data="zz"), "hex"),
        (lambda r: r["content"].update(event_type="EV_BOGUS"), "event_type"),
    ],
)
def test_cel_bad_records(mutate: Callable[[dict[str, Any]], None], message: str) -> None:
    e = RtmrEvent.hashed(1, EventType.EV_EFI_ACTION, b"x", "RTMR1 x")
    cel = events_to_cel([e])
    mutate(cel[0])
    with pytest.raises(LogFormatError, match=message):
        events_from_cel(cel)
    with pytest.raises(LogFormatError):
        events_from_cel({"not": "a list"})


def test_extend_is_sha384_of_the_concatenation() -> None:
    a, b = bytes(range(48)), bytes(range(48, 96))
    assert extend(a, b) == hashlib.sha384(a + b).digest()
    with pytest.raises(ValueError, match="48-byte"):
        extend(a, b"short")


# -- the file edge -------------------------------------------------------------------------------


def test_fw_cfg_dir_layouts(tmp_path: Path) -> None:
    files = qemu_like_acpi()
    write_by_name(tmp_path / "by_name", files)
    assert read_fw_cfg_dir(tmp_path / "by_name", ACPI_BLOB_NAMES) == files
    flat = tmp_path / "flat"
    for name, data in files.items():
        (flat / name).parent.mkdir(parents=True, exist_ok=True)
        (flat / name).write_bytes(data)
    assert read_fw_cfg_dir(flat, ACPI_BLOB_NAMES) == files
    with pytest.raises(ConfigError, match="not a directory"):
        read_fw_cfg_dir(tmp_path / "nope", ACPI_BLOB_NAMES)
    sb = tmp_path / "sb"
    sb.mkdir()
    (sb / "PK").write_bytes(b"pk")
    (sb / f"db-{SECURE_BOOT_VARIABLES[3][1]}").write_bytes(b"\x07\x00\x00\x00db")
    assert read_uefi_variables(sb, SECURE_BOOT_VARIABLES) == {"PK": b"pk", "db": b"db"}


def test_record_round_trip_and_first_difference() -> None:
    base = [
        *rtmr1_events(bytes(48), Edk2Release.R2025_02),
        *rtmr2_events("console=ttyS0", b"rd", Edk2Release.R2025_02),
    ]
    records = json.loads(json.dumps([event_record(e) for e in base]))
    assert tuple(event_from_record(r) for r in records) == tuple(base)
    other = [
        *rtmr1_events(bytes(48), Edk2Release.R2025_02),
        *rtmr2_events("console=ttyS1", b"rd", Edk2Release.R2025_02),
    ]
    assert first_difference(base, base) is None
    diff = first_difference(base, other)
    assert diff is not None
    assert diff.startswith("RTMR2 command line: digest ")
    no_initrd = [
        *rtmr1_events(bytes(48), Edk2Release.R2025_02),
        *rtmr2_events("console=ttyS0", None, Edk2Release.R2025_02),
    ]
    assert first_difference(base, no_initrd) == "RTMR2 command line: digest " + (
        f"{base[-2].digest.hex()[:16]}... != {no_initrd[-1].digest.hex()[:16]}..."
    )
    with pytest.raises(LogFormatError, match="fields"):
        event_from_record({"rtmr": 1})
    bad = dict(records[0], digest="00")
    with pytest.raises(LogFormatError, match="48"):
        event_from_record(bad)


def test_command_helpers_round_trip(
    tmp_path: Path, firmware: Callable[[str], Path], debian_kernel: tuple[Path, dict[str, str]]
) -> None:
    from cvmlaunch.cli._tdx_rtmr import guest_of
    from cvmlaunch.measure.rtmr import cel_json
    from cvmlaunch.measure.tdx_predict import TdxRequest, predict

    def predict_rtmrs(image: OvmfImage, **options: Any) -> TdxRtmrPrediction:
        """The command's path: options mapped to a guest, one library call."""
        with guest_of(**options) as guest:
            rtmrs = predict(image.data, TdxRequest(guest=guest), name=image.name).rtmrs
        assert rtmrs is not None
        return rtmrs

    kernel_path = str(debian_kernel[0])
    write_by_name(tmp_path / "by_name", qemu_like_acpi(cpus=2))
    (tmp_path / "initrd.img").write_bytes(b"initrd bytes")
    image = parse_ovmf(firmware("OVMF.2022.fd").read_bytes(), name="OVMF.2022.fd")
    args: dict[str, Any] = {
        "memory": "4G",
        "kernel": kernel_path,
        "initrd": str(tmp_path / "initrd.img"),
        "append": "console=ttyS0",
        "acpi": str(tmp_path / "by_name"),
        "kernel_loading": "patched",
        "secure_boot_vars": None,
        "edk2": "2024.11",
        "stub_measures": "yes",
    }
    p = predict_rtmrs(image, **args)
    fields = json.loads(json.dumps(p.json_fields()))
    assert fields["rtmr_model"] == {
        "edk2": "2024.11",
        "kernel_loading": "patched",
        "events": len(p.events),
        "notes": [],
    }
    replayed = replay(events_from_cel(json.loads(cel_json(p.events))))
    assert [r.hex() for r in replayed[:3]] == [fields["rtmr0"], fields["rtmr1"], fields["rtmr2"]]
    # The printed RTMR2 written out independently.
    assert (
        fields["rtmr2"]
        == fold(
            [
                hashlib.sha384("console=ttyS0 initrd=initrd\0".encode("utf-16-le")).digest(),
                hashlib.sha384(b"initrd bytes").digest(),
            ]
        ).hex()
    )
    for key, value, setting, message in (
        ("memory", None, None, "--memory"),
        ("memory", "4X", "memory", "^memory '4X': expected"),
        ("kernel_loading", "both", "kernel_loading", "^kernel_loading 'both'"),
        ("edk2", "soon", None, "--edk2"),
        ("stub_measures", "maybe", None, "--stub-measures"),
        ("acpi", str(tmp_path), None, "no etc/table-loader"),
    ):
        with raises_cvm(ConfigError, setting=setting, match=message):
            predict_rtmrs(image, **{**args, key: value})
    override = predict_rtmrs(image, **{**args, "edk2": "2025.02"})
    assert override.notes == ("--edk2 2025.02 overrides what the image shows (2024.08, 2024.11)",)


def test_rtmr2_of_a_stub_without_cc_measurement(
    firmware: Callable[[str], Path], debian_kernel: tuple[Path, dict[str, str]]
) -> None:
    kernel = _debian(debian_kernel)
    # Debian's 6.1 stub measures through EFI_TCG2_PROTOCOL only (its GUID's first dword is in
    # the stub, the CC protocol's is not).
    assert struct.pack("<I", 0x607F766C) in kernel
    assert struct.pack("<I", 0x96751A3D) not in kernel
    assert not stub_uses_cc_measurement(kernel)
    assert stub_uses_cc_measurement(b"xx" + uuid_le("96751a3d-72f4-41a6-a794-ed5d0e67ae6b"))
    image = parse_ovmf(firmware("OVMF.inteltdx.ms.fd").read_bytes(), name="inteltdx")
    p = predict_tdx_rtmrs(
        image, memory_size=GIB, kernel=kernel, initrd=b"rd", cmdline="x", acpi=None, secure_boot={}
    )
    assert p.rtmrs[2] == bytes(48)
    assert all(e.rtmr != 2 for e in p.events)
    assert any("RTMR2 stays zero" in n for n in p.notes)


def uuid_le(text: str) -> bytes:
    import uuid

    return uuid.UUID(text).bytes_le


def test_real_td_events_are_self_consistent_and_named() -> None:
    types = {t.name: t.value for t in EventType}
    events = [
        RtmrEvent(
            e.index - 1,
            types[e.type],
            bytes.fromhex(e.digest),
            e.event,
            "from the real log",
        )
        for e in ccel_events()
    ]
    assert inconsistent_events(events) == []
    names = [describe_event(e.rtmr, e.event_type, e.event_data) for e in events]
    assert "RTMR0 variable SecureBoot" in names
    assert "RTMR0 variable Boot0000" in names
    assert "RTMR1 Exit Boot Services Invocation" in names
    assert "RTMR2 command line" in names
    assert "RTMR2 initrd" in names
    assert names[0] == "RTMR0 TD HOB"
    boot = next(e for e in events if e.event_type == EventType.EV_EFI_VARIABLE_BOOT)
    bad = RtmrEvent(boot.rtmr, boot.event_type, bytes(48), boot.event_data, "x")
    assert inconsistent_events([bad]) == ["event 0 (x): the digest is not SHA-384 of its data"]
    short = RtmrEvent(boot.rtmr, boot.event_type, boot.digest, boot.event_data[:-1], "y")
    assert "lengths do not add up" in inconsistent_events([short])[0]


def test_reference_values_rtmrs() -> None:
    from cvmlaunch.measure.reference import ReferenceValues

    with pytest.raises(ConfigError, match="TDX"):
        ReferenceValues("sev-snp", bytes(48)).with_rtmrs((None,) * 4)
    with pytest.raises(ConfigError, match="four"):
        ReferenceValues("tdx", bytes(48)).with_rtmrs((bytes(48),) * 3)
    values = ReferenceValues("tdx", bytes(48)).with_rtmrs((None, b"\x01" * 48, None, None))
    assert values.as_dict()["rtmr1"] == "01" * 48
    assert values.as_dict()["rtmr0"] is None


def test_present_and_checked_rtmrs() -> None:
    """A register no event extends is None (not predicted); a contradicted digest fails."""
    from cvmlaunch.errors import CheckFailed
    from cvmlaunch.measure.rtmr import checked_rtmrs, present_rtmrs

    events = rtmr1_events(bytes(48), Edk2Release.R2025_02)
    regs = present_rtmrs(events)
    assert (regs[0], regs[2], regs[3]) == (None, None, None)
    assert regs[1] == replay(events)[1] != bytes(48)
    by_hand = bytes(48)  # TDX module RTMR extend: SHA-384(old || digest), from zero
    for event in events:
        assert event.rtmr == 1
        by_hand = hashlib.sha384(by_hand + event.digest).digest()
    assert regs[1] == by_hand
    assert checked_rtmrs(events, "ev.json") == regs
    n = next(i for i, e in enumerate(events) if e.event_type == EventType.EV_SEPARATOR)
    bad = [*events[:n], dataclasses.replace(events[n], digest=bytes(48)), *events[n + 1 :]]
    with pytest.raises(CheckFailed, match=rf"^ev\.json: event {n} \("):
        checked_rtmrs(bad, "ev.json")
