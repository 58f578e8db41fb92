"""The PVH launch plan and the guest-report check (pure: no KVM, no ELF loader needed)."""

from __future__ import annotations

import contextlib
import hashlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cvmlaunch.errors import CheckFailed, ConfigError, GuestError, MeasurementMismatch
from cvmlaunch.launch_settings import LaunchSettings, parse_size, settings_from_toml
from cvmlaunch.launcher import GuestDigest, GuestReport, check_report, parse_report
from cvmlaunch.layout import (
    FOUR_GIB,
    PageType,
    Provenance,
    Region,
    SourceKind,
)
from cvmlaunch.log_entry import LogEntry, LogOp
from cvmlaunch.plan.pvh import CMDLINE_GPA, RANGE_TABLE_GPA, START_INFO_GPA, pvh_launch
from cvmlaunch.technology import Technology

GIB = 1 << 30


def kernel(gpa: int = 0x100000, data: bytes = b"\xf4" * 5000) -> list[Region]:
    """A two-page 'kernel' as the ELF loader would give it (page granular)."""
    prov = Provenance(SourceKind.ELF_SEGMENT, "k.elf", offset=0x1000, index=0)
    return [
        Region(gpa, 0x1000, PageType.NORMAL, True, prov, data[:0x1000]),
        Region(gpa + 0x1000, 0x1000, PageType.NORMAL, True, prov, data[0x1000:]),
    ]


def log_of(regions: tuple[Region, ...]) -> list[LogEntry]:
    return [
        LogEntry(
            seq=i,
            op=LogOp.PLAIN_COPY,
            gpa=r.gpa,
            size=r.size,
            page_type=r.page_type,
            measured=r.measured,
            provenance=r.provenance,
            content_sha384=hashlib.sha384(r.contents()).digest(),
        )
        for i, r in enumerate(regions)
    ]


@pytest.mark.parametrize(
    ("text", "value"),
    [("512M", 512 << 20), ("5G", 5 << 30), ("1024", 1 << 30), ("64k", 64 << 10), (256, 256 << 20)],
)
def test_parse_size_like_qemu(text: str | int, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "5X", "-1G", "1.5G", "0", "3K"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_size(text)


def test_settings_from_toml_resolves_paths_and_flags_override() -> None:
    doc = 'memory = "5G"\nvcpus = 2\nkernel = "k.elf"\ninitrd = "/abs/i.img"\ntech = "SNP"\n'
    s = settings_from_toml(doc, base="/cfg", overrides={"vcpus": 3, "append": None})
    assert s == LaunchSettings(
        memory=5 << 30, vcpus=3, kernel="/cfg/k.elf", initrd="/abs/i.img", tech=Technology.SEV_SNP
    )


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("memory = ", "config:"),
        ("mem = '1G'", "unknown key 'mem'"),
        ("vcpus = '2'", "vcpus must be an integer"),
        ("vcpus = 0", "^config: vcpus 0: expected 1 to 255"),
        ("tech = 'sev'", "expected none, snp or tdx"),
        ("timeout = -1", "^config: timeout -1.0: expected a positive number"),
        ("memory = '5X'", "^config: memory '5X': expected e.g. 512M"),
        ("tech = 'x'", "^config: tech 'x': expected none, snp or tdx"),
        ("kernel = 3", "kernel must be a string path"),
    ],
)
def test_settings_errors_name_the_key(doc: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings_from_toml(doc)


def test_plan_layout_order_and_table() -> None:
    settings = LaunchSettings(memory=512 << 20, append="console=ttyS0")
    initrd = b"initrd!" * 100
    launch = pvh_launch(settings, kernel(), 0x100000, initrd=initrd, initrd_name="i.img")
    names = [r.provenance.describe() for r in launch.hashed]
    assert names[-3:] == [
        "cmdline (kernel command line)",
        "start_info (PVH hvm_start_info)",
        "range-table (cvmlaunch range table)",
    ]
    gpas = [r.gpa for r in launch.hashed]
    # kernel pages, initrd at the top of low RAM aligned to 2 MiB, then the fixed pages
    assert gpas == [0x100000, 0x101000, 0x1FE00000, CMDLINE_GPA, START_INFO_GPA, RANGE_TABLE_GPA]
    table = launch.hashed[-1].contents()
    magic, version, count = struct.unpack_from("<8sII", table)
    assert (magic, version, count) == (b"CVMLRNG\0", 1, 6)
    entries = [struct.unpack_from("<QQ", table, 16 + 16 * i) for i in range(count)]
    assert entries == [(r.gpa, r.size) for r in launch.hashed]
    # start_info: PVH magic, one module (the initrd), cmdline, a memory map of one RAM entry
    si = launch.hashed[-2].contents()
    fields = struct.unpack_from("<IIIIQQQQII", si)
    assert fields[0] == 0x336EC578
    assert fields[1] == 1
    assert fields[3] == 1
    assert fields[5] == CMDLINE_GPA
    assert struct.unpack_from("<QQQQ", si, fields[4] - START_INFO_GPA) == (
        0x1FE00000,
        len(initrd),
        0,
        0,
    )
    assert fields[8] == 1
    assert struct.unpack_from("<QQII", si, fields[7] - START_INFO_GPA) == (0, 512 << 20, 1, 0)
    assert launch.hashed[-3].contents().rstrip(b"\0") == b"console=ttyS0"


def test_plan_above_4g_splits_ram_and_keeps_ranges_low() -> None:
    launch = pvh_launch(LaunchSettings(memory=5 * GIB, vcpus=2), kernel(), 0x100000, initrd=b"x")
    assert launch.plan.memory is not None
    slots = [(s.gpa, s.size) for s in launch.plan.memory.memslots]
    assert slots == [(0, 2 * GIB), (FOUR_GIB, 3 * GIB)]
    assert all(r.end <= FOUR_GIB for r in launch.hashed)
    si = launch.hashed[-2].contents()
    count = struct.unpack_from("<I", si, 48)[0]
    memmap_off = struct.unpack_from("<Q", si, 40)[0] - START_INFO_GPA
    assert [struct.unpack_from("<QQII", si, memmap_off + 24 * i)[:3] for i in range(count)] == [
        (0, 2 * GIB, 1),
        (FOUR_GIB, 3 * GIB, 1),
    ]
    assert launch.vcpus == 2


def test_plan_rejects_a_kernel_over_the_launcher_pages() -> None:
    with pytest.raises(ConfigError, match="below 0x80000"):
        pvh_launch(LaunchSettings(), kernel(gpa=0x2000), 0x2000)


def test_plan_rejects_entry_outside_kernel() -> None:
    with pytest.raises(ConfigError, match="PVH entry 0x500000"):
        pvh_launch(LaunchSettings(), kernel(), 0x500000)


def test_plan_rejects_initrd_that_does_not_fit() -> None:
    with pytest.raises(ConfigError, match="do not fit in low RAM"):
        pvh_launch(LaunchSettings(memory=4 << 20), kernel(), 0x100000, initrd=bytes(3 << 20))


def test_predicted_digests_are_sha384_of_contents() -> None:
    launch = pvh_launch(LaunchSettings(append="a b c"), kernel(), 0x100000)
    assert launch.predicted() == tuple(hashlib.sha384(r.contents()).digest() for r in launch.hashed)


def report_text(plan_regions: tuple[Region, ...], flip: int | None = None) -> str:
    lines = ["cvmlaunch-guest hello", 'cvmlaunch-guest cmdline "x"']
    for i, r in enumerate(plan_regions):
        d = bytearray(hashlib.sha384(r.contents()).digest())
        if i == flip:
            d[0] ^= 1
        lines.append(f"range {i} {r.gpa:#x}+{r.size:#x} sha384 {d.hex()}")
    lines.append(f"end {len(plan_regions)}")
    return "\r\n".join(lines) + "\n"


def test_report_matches_log() -> None:
    launch = pvh_launch(LaunchSettings(), kernel(), 0x100000, initrd=b"abc")
    report = parse_report(report_text(launch.hashed))
    assert report.end == len(launch.hashed)
    assert check_report(report, launch.hashed, log_of(launch.hashed)) == len(launch.hashed)


def test_report_mismatch_names_the_range() -> None:
    launch = pvh_launch(LaunchSettings(), kernel(), 0x100000, initrd=b"abc")
    report = parse_report(report_text(launch.hashed, flip=2))
    with pytest.raises(MeasurementMismatch, match=r"range \[0x1fe00000-0x1fe01000\) \(initrd"):
        check_report(report, launch.hashed, log_of(launch.hashed))


def test_incomplete_and_unreachable_reports_fail() -> None:
    launch = pvh_launch(LaunchSettings(), kernel(), 0x100000)
    log = log_of(launch.hashed)
    text = report_text(launch.hashed)
    cut = parse_report(text.rsplit("end", 1)[0])
    with pytest.raises(CheckFailed, match="incomplete"):
        check_report(cut, launch.hashed, log)
    digests = list(parse_report(text).digests)
    digests[0] = GuestDigest(0, digests[0].gpa, digests[0].size, None)
    with pytest.raises(CheckFailed, match="could not address range"):
        check_report(GuestReport(tuple(digests), len(digests)), launch.hashed, log)
    with pytest.raises(CheckFailed, match="no launch-log record"):
        check_report(parse_report(text), launch.hashed, log[1:])


def test_report_out_of_sequence() -> None:
    with pytest.raises(GuestError, match="range 1 out of sequence"):
        parse_report("range 1 0x1000+0x1000 unreachable\n")


@given(st.text())
def test_parse_report_never_crashes(text: str) -> None:
    with contextlib.suppress(GuestError):
        parse_report(text)
