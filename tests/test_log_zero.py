"""The zero marker (format version 3): ranges the plan gives no bytes cost O(1) to write and
to check, however large they are declared; flipping the marker is a finding naming the field.

The cost is asserted structurally: every content hash of a range goes through
:func:`cvmlaunch.digests.range_sha384` (the one range hasher), which these tests wrap
with a counter of the bytes it is asked to hash. No timing assertions.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cvmlaunch import digests
from cvmlaunch.errors import LogFormatError
from cvmlaunch.layout import PAGE_SIZE, Buffer, PageType, Plan, Provenance, Region, SourceKind
from cvmlaunch.measure import log as log_module
from cvmlaunch.measure.log import (
    LOG_VERSION,
    MAX_COVERED_BYTES,
    ZERO_MARKER_VERSION,
    LogInput,
    dumps_log,
    parse_log,
    verify_log,
)
from cvmlaunch.measure.log_check import check_log
from cvmlaunch.measure.plain import plain_header, plain_log
from tests.cli_runner import run_cli
from tests.ovmf_builder import build_ovmf


class Counter:
    """Bytes the range hasher was asked to hash (data and zero fill)."""

    def __init__(self) -> None:
        self.bytes = 0
        self.calls = 0


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter]:
    """Count what :func:`digests.range_sha384` hashes, wherever it is called from."""
    counter = Counter()
    real = digests.range_sha384

    def counting(data: Buffer, size: int) -> bytes:
        counter.calls += 1
        counter.bytes += size
        return real(data, size)

    monkeypatch.setattr(digests, "range_sha384", counting)
    log_module._zero_range_sha384.cache_clear()
    yield counter
    log_module._zero_range_sha384.cache_clear()


def as_old_version(text: str, version: int) -> str:
    """``text`` as a version 1 or 2 writer wrote it: the SHA-384 of the zeros instead of the
    zero marker (an independent rewrite: hashlib over the declared size)."""
    out = []
    for line in text.splitlines():
        obj = json.loads(line)
        if obj["record"] == "header":
            obj["version"] = version
        elif obj["record"] == "range" and obj["content_sha384"] is None:
            obj["content_sha384"] = hashlib.sha384(bytes(obj["size"])).hexdigest()
        out.append(json.dumps(obj, sort_keys=True, separators=(",", ":")))
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------ a 1 TiB zero range


def test_a_1_tib_zero_range_is_written_and_verified_without_hashing_it(hashed: Counter) -> None:
    """A plain launch plan of a 1 TiB range with no bytes (the most a log may cover) and one
    page of data: writing, reading and verifying the log hash the data page only."""
    big = Region(1 << 40, MAX_COVERED_BYTES - PAGE_SIZE, PageType.NORMAL, False,
                 Provenance(SourceKind.ZERO, "ram"))  # fmt: skip
    page = Region(0x1000, PAGE_SIZE, PageType.NORMAL, False,
                  Provenance(SourceKind.FILE, "kernel", offset=0), b"\x90" * 100)  # fmt: skip
    settings_ = {"memory": 1 << 41, "vcpus": 1, "pvh_entry": 0x1000}
    log = plain_log(Plan.of([page, big]), plain_header(settings_, tool_version="t"))
    assert log.entries[1].content_sha384 is None
    text = dumps_log(log)
    record = json.loads(text.splitlines()[2])
    assert record["content_sha384"] is None
    assert record["size"] == (1 << 40) - PAGE_SIZE
    parsed = parse_log(text)
    assert verify_log(parsed) == log.digest
    result = check_log(parsed)
    assert result.findings == (), result.findings
    assert result.digest == log.digest
    # only the data page was hashed: once by the writer
    assert (hashed.calls, hashed.bytes) == (1, PAGE_SIZE)


def test_plain_transcript_step_of_a_zero_range_is_48_zero_bytes() -> None:
    """docs/log-format.md: the step of a record with the zero marker carries 48 zero bytes
    where a record with bytes carries their SHA-384 (written here from the document)."""
    import struct

    zero = Region(0x10_0000, 0x20_0000, PageType.NORMAL, False, Provenance(SourceKind.BSS, "k"))
    log = plain_log(Plan.of([zero]), plain_header({}, tool_version="t"))
    step = struct.pack("<32sQQBB48s", b"plain.copy", 0x10_0000, 0x20_0000, 1, 0, bytes(48))
    assert log.digest == hashlib.sha384(bytes(48) + step).digest()


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(1, 1 << 20),  # pages
            st.sampled_from([PageType.ZERO, PageType.UNMEASURED, PageType.NORMAL]),
            st.binary(max_size=300),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_snp_writer_hashes_only_the_bytes_given(
    ranges: list[tuple[int, PageType, bytes]],
) -> None:
    """SNP logs (any sizes up to 4 GiB a range): the range hasher is asked for the ranges
    with bytes only; ranges with none carry the marker; the log reads back and replays."""
    from cvmlaunch.measure.log import LogHeader, Technology
    from cvmlaunch.measure.snp_chain import SNP_ALGORITHM, log_plan

    counter = Counter()
    real = digests.range_sha384

    def counting(data: Buffer, size: int) -> bytes:
        counter.bytes += size
        return real(data, size)

    regions, gpa = [], 0
    for count, page_type, data in ranges:
        if page_type is not PageType.NORMAL:
            data = b""
            count = min(count, 1 << 12)  # ZERO pages still step once each in the replay
        else:
            count = min(count, 16)
        regions.append(Region(gpa, count * PAGE_SIZE, page_type, page_type is PageType.NORMAL,
                              Provenance(SourceKind.ZERO, "r"), data))  # fmt: skip
        gpa += count * PAGE_SIZE
    header = LogHeader(Technology.SEV_SNP, SNP_ALGORITHM, {}, (), "t", bytes(48))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(digests, "range_sha384", counting)
        log = log_plan(Plan.of(regions), header)
        assert verify_log(parse_log(dumps_log(log))) == log.digest
    assert counter.bytes == sum(r.size for r in regions if r.data)
    for entry, region in zip(log.entries, regions, strict=True):
        assert (entry.content_sha384 is None) == (not region.data)


# ------------------------------------------------------------------ TDX, with the firmware


SIZE = 0x40000
BFV = (0x20000, 0x20000, 0xFFFE0000, 0x20000, 0, 1)
HOB = (0, 0, 0x809000, 0x2000, 2, 0)
#: A 64 MiB TEMP_MEM: no bytes in the firmware, only PAGE.ADDs (one MRTD step a page).
TEMP = (0, 0, 0x1000_0000, 64 << 20, 3, 0)


@pytest.fixture
def tdx_firmware(tmp_path: Path) -> Path:
    path = tmp_path / "fw.fd"
    path.write_bytes(build_ovmf(SIZE, tdx=[BFV, HOB, TEMP]))
    return path


def _measure_tdx(fw: Path, out: Path) -> str:
    result = run_cli(["measure", "tdx", "--firmware", str(fw), "--log", str(out)])
    assert result.exit_code == 0, result.output
    return out.read_text()


def test_tdx_temp_mem_costs_o1_to_write_and_check(
    tdx_firmware: Path, tmp_path: Path, hashed: Counter
) -> None:
    text = _measure_tdx(tdx_firmware, tmp_path / "tdx.jsonl")
    records = [json.loads(line) for line in text.splitlines()[1:-1]]
    assert [r["content_sha384"] is None for r in records] == [False, True, True]
    writer = hashed.bytes
    assert writer == BFV[1]  # the BFV's bytes, not the 64 MiB TEMP_MEM nor the HOB
    log = parse_log(text)
    result = check_log(log, {"firmware": tdx_firmware.read_bytes()})
    assert result.findings == ()
    assert result.unchecked == ()
    assert result.digest == log.digest
    assert hashed.bytes - writer == BFV[1]  # the check rebuilt the BFV's hash only


def test_flipping_the_marker_fails_verify_naming_the_field(
    tdx_firmware: Path, tmp_path: Path
) -> None:
    text = _measure_tdx(tdx_firmware, tmp_path / "tdx.jsonl")
    lines = text.splitlines()
    bfv, temp = json.loads(lines[1]), json.loads(lines[3])
    assert bfv["content_sha384"] is not None
    assert temp["content_sha384"] is None
    edits = {
        # a range with bytes marked zero
        "bytes->marker": (1, None),
        # a zero range given a hash: the SHA-384 of its zeros, as version 2 wrote it
        "marker->hash": (3, hashlib.sha384(bytes(temp["size"])).hexdigest()),
    }
    for label, (n, value) in edits.items():
        obj = json.loads(lines[n])
        obj["content_sha384"] = value
        edited = [*lines]
        edited[n] = json.dumps(obj, sort_keys=True, separators=(",", ":"))
        path = tmp_path / f"{label}.jsonl"
        path.write_text("\n".join(edited) + "\n")
        result = run_cli(["log", "verify", str(path), "--firmware", str(tdx_firmware)])
        assert result.exit_code == 1, (label, result.output)
        assert f"record {n - 1}" in result.output, label
        assert "content_sha384" in result.output, label
        assert "zero marker" in result.output, label


def test_version_2_logs_hash_zero_ranges_and_still_verify(
    tdx_firmware: Path, tmp_path: Path
) -> None:
    text = _measure_tdx(tdx_firmware, tmp_path / "tdx.jsonl")
    assert json.loads(text.splitlines()[0])["version"] == LOG_VERSION >= ZERO_MARKER_VERSION
    for version in (1, 2):
        old = parse_log(as_old_version(text, version))
        assert old.header.format_version == version
        assert all(e.content_sha384 is not None for e in old.entries)
        result = check_log(old, {"firmware": tdx_firmware.read_bytes()})
        assert result.findings == (), result.findings
        assert result.digest == old.digest
    # a version 2 log has no marker: null is malformed there
    with pytest.raises(LogFormatError, match="content_sha384 must be lowercase hex"):
        parse_log(text.replace(f'"version":{LOG_VERSION}', '"version":2', 1))


def test_verify_log_checks_the_marker_against_the_contents_given() -> None:
    from cvmlaunch.errors import MeasurementMismatch

    zero = Region(0x10_0000, 0x4000, PageType.NORMAL, False, Provenance(SourceKind.BSS, "k"))
    log = plain_log(Plan.of([zero]), plain_header({}, tool_version="t"))
    assert verify_log(log, lambda e: b"") == log.digest
    assert verify_log(log, lambda e: bytes(0x4000)) == log.digest
    with pytest.raises(MeasurementMismatch, match="marks the range zero"):
        verify_log(log, lambda e: b"\x00\x01")


def test_kvm_recorder_marks_what_the_prediction_marks(hashed: Counter) -> None:
    """The KVM layer's records (one shared builder) carry the marker exactly where the
    prediction's do: a range with no bytes."""
    from cvmlaunch.kvm_map._engine import _Recorder
    from cvmlaunch.log_entry import LogOp

    rec = _Recorder()
    zero = Region(0x10_0000, 1 << 30, PageType.NORMAL, False, Provenance(SourceKind.BSS, "k"))
    data = Region(0x1000, PAGE_SIZE, PageType.NORMAL, False,
                  Provenance(SourceKind.FILE, "k", offset=0), b"\x01")  # fmt: skip

    rec.add(LogOp.TDX_PAGE_ADD, zero, zero.gpa, zero.size, per_page=False)
    assert hashed.bytes == 0, "the contents of a zero range were hashed"
    rec.add(LogOp.TDX_PAGE_ADD, data, data.gpa, data.size, per_page=False)
    assert rec.entries[0].content_sha384 is None
    assert rec.entries[1].content_sha384 == hashlib.sha384(b"\x01" + bytes(4095)).digest()
    predicted = plain_log(Plan.of([data, zero]), plain_header({}, tool_version="t"))
    assert [e.content_sha384 for e in predicted.entries] == [
        rec.entries[1].content_sha384,
        None,
    ]


def test_inputs_unrelated() -> None:
    """LogInput is untouched by the marker: inputs always carry their hashes."""
    item = LogInput("kernel", "k", 1, sha256=bytes(32))
    assert item.sha256 == bytes(32)


def test_plain_populate_hashes_no_range_the_plan_gives_no_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The engine copies a dataless range (its record carries the marker) without hashing
    it: only the range with bytes reaches the content hasher."""
    from cvmlaunch.kvm_map import Vm, plain
    from cvmlaunch.memory_map import MemoryMap, Memslot, MemslotKind
    from tests.fakekvm import FakeKernel

    bss = Region(0x10_0000, 256 * PAGE_SIZE, PageType.NORMAL, True,
                 Provenance(SourceKind.BSS, "k"))  # fmt: skip
    data = Region(0x1000, PAGE_SIZE, PageType.NORMAL, True,
                  Provenance(SourceKind.FILE, "k", offset=0), b"\x01")  # fmt: skip
    memory = MemoryMap((Memslot(0, 0, 1024 * PAGE_SIZE, MemslotKind.RAM_LOW),))
    plan = Plan.of([data, bss], memory)
    hashed_regions: list[tuple[bytes, int]] = []
    real = digests.range_sha384

    def counting(contents: Buffer, size: int) -> bytes:
        hashed_regions.append((bytes(contents), size))
        return real(contents, size)

    monkeypatch.setattr(digests, "range_sha384", counting)
    with Vm.open(kernel=FakeKernel(guest_memfd=False)) as vm:
        vm.map_memory(memory)
        log = plain.populate_plain(vm, plan)
        assert vm.read(bss.gpa, bss.size) == bytes(bss.size)
    assert hashed_regions == [(data.data, data.size)]
    assert [e.content_sha384 for e in log.entries[:2]] == [
        hashlib.sha384(b"\x01" + bytes(PAGE_SIZE - 1)).digest(),
        None,
    ]
