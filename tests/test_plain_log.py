"""The plain-launch transcript digest (technology ``plain``, docs/log-format.md).

The reference here is written from the prose of docs/log-format.md with bytes concatenation
(no struct, no cvmlaunch code), so a change to the step in either place fails these tests.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cvmlaunch.errors import LogFormatError, MeasurementMismatch
from cvmlaunch.layout import (
    PAGE_SIZE,
    PageType,
    Plan,
    Provenance,
    Region,
    SourceKind,
)
from cvmlaunch.log_entry import LogEntry, LogOp
from cvmlaunch.measure.log import (
    LogInput,
    Technology,
    complete_log,
    dumps_log,
    parse_log,
    replay_log,
    verify_log,
)
from cvmlaunch.measure.plain import PLAIN_ALGORITHM, plain_header, plain_log
from tests.cli_runner import run_cli


def reference_step(
    digest: bytes, op: str, gpa: int, size: int, page_type: int, measured: bool, content: bytes
) -> bytes:
    """docs/log-format.md, ``plain``: SHA-384(digest || op[32] || gpa || size || type ||
    measured || content_sha384), little endian, op NUL-padded."""
    step = (
        op.encode().ljust(32, b"\0")
        + gpa.to_bytes(8, "little")
        + size.to_bytes(8, "little")
        + bytes([page_type, 1 if measured else 0])
        + content
    )
    assert len(step) == 98
    return hashlib.sha384(digest + step).digest()


def example_plan() -> Plan:
    gen = Provenance(SourceKind.GENERATED, "table", detail="a table")
    return Plan.of(
        [
            Region(
                0x10_0000, 0x3000, PageType.NORMAL, True, Provenance(SourceKind.FILE, "k"), b"k"
            ),
            Region(0x1000, PAGE_SIZE, PageType.NORMAL, False, gen, bytes(range(256)) * 3),
            Region(0x20_0000, 0x2000, PageType.NORMAL, True, gen),
        ]
    )


def test_plan_digest_matches_the_documented_chain() -> None:
    log = plain_log(example_plan(), plain_header({"vcpus": 1}, tool_version="test"))
    digest = bytes(48)
    for region in example_plan().memory_regions:
        # docs/log-format.md: a range with no bytes has the zero marker: 48 zero bytes
        content = hashlib.sha384(region.contents()).digest() if len(region.data) else bytes(48)
        digest = reference_step(
            digest, "plain.copy", region.gpa, region.size, 1, region.measured, content
        )
    assert log.digest == digest
    assert log.header.technology is Technology.PLAIN
    assert log.header.algorithm == PLAIN_ALGORITHM == "cvmlaunch-transcript-sha384"
    assert [e.op for e in log.entries] == [LogOp.PLAIN_COPY] * 3
    assert all(e.page_sha384 == () for e in log.entries)
    assert log.entries[-1].digest_after == digest


def test_empty_plan_digest_is_the_initial_value() -> None:
    log = plain_log(Plan.of([]), plain_header({}, tool_version="t"))
    assert log.digest == bytes(48)
    assert log.entries == ()


def test_pre_fault_records_leave_the_digest_unchanged() -> None:
    predicted = plain_log(example_plan(), plain_header({}, tool_version="t"))
    records = list(predicted.entries)
    # a host that pre-faults adds records after the copies, split however the kernel likes
    first = records[0]
    records += [
        dataclasses.replace(first, op=LogOp.PRE_FAULT, measured=False, size=0x1000),
        dataclasses.replace(first, op=LogOp.PRE_FAULT, measured=False, gpa=0x10_1000, size=0x2000),
    ]
    records = [dataclasses.replace(e, seq=i, digest_after=None) for i, e in enumerate(records)]
    log = complete_log(predicted.header, records)
    assert log.digest == predicted.digest
    assert log.entries[3].digest_after == log.entries[4].digest_after == predicted.digest
    assert verify_log(parse_log(dumps_log(log))) == predicted.digest


def test_every_field_of_a_copy_record_enters_the_digest() -> None:
    base = plain_log(example_plan(), plain_header({}, tool_version="t"))
    changes = {
        "gpa": {"gpa": 0x10_1000},
        "size": {"size": 0x4000},
        "page_type": {"page_type": PageType.UNMEASURED},
        "measured": {"measured": False},
        "content": {"content_sha384": bytes(48)},
    }
    seen = {base.digest}
    for change in changes.values():
        records = [dataclasses.replace(e, digest_after=None) for e in base.entries]
        records[0] = dataclasses.replace(records[0], **change)  # type: ignore[arg-type]
        seen.add(complete_log(base.header, records).digest)
    assert len(seen) == len(changes) + 1


def test_other_technologies_ops_are_rejected() -> None:
    base = plain_log(example_plan(), plain_header({}, tool_version="t"))
    records = [dataclasses.replace(e, digest_after=None) for e in base.entries]
    records[1] = dataclasses.replace(records[1], op=LogOp.TDX_PAGE_ADD)
    with pytest.raises(
        LogFormatError, match=re.escape("record 1: op 'tdx.page_add' is not part of a plain")
    ):
        complete_log(base.header, records)


def test_header_without_initial_digest_is_rejected() -> None:
    log = plain_log(example_plan(), plain_header({}, tool_version="t"))
    bad = dataclasses.replace(log, header=dataclasses.replace(log.header, initial_digest=None))
    with pytest.raises(LogFormatError, match="48-byte initial_digest"):
        replay_log(bad)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, (1 << 40) - (1 << 20) - 1),  # ranges end below MAX_GPA (2^52)
            st.integers(1, 1 << 20),
            st.sampled_from(list(PageType)),
            st.booleans(),
            st.binary(min_size=48, max_size=48),
            st.booleans(),
        ),
        max_size=8,
    )
)
def test_replay_follows_the_documented_chain(
    rows: list[tuple[int, int, PageType, bool, bytes, bool]],
) -> None:
    prov = Provenance(SourceKind.GENERATED, "x")
    entries = [
        LogEntry(
            seq=i,
            op=LogOp.PRE_FAULT if pre else LogOp.PLAIN_COPY,
            gpa=gpa * PAGE_SIZE,
            size=size * PAGE_SIZE,
            page_type=pt,
            measured=measured,
            provenance=prov,
            content_sha384=content,
        )
        for i, (gpa, size, pt, measured, content, pre) in enumerate(rows)
    ]
    log = complete_log(plain_header({}, tool_version="t"), entries)
    digest = bytes(48)
    for e in entries:
        if e.op is LogOp.PLAIN_COPY:
            assert e.content_sha384 is not None
            digest = reference_step(
                digest, e.op.value, e.gpa, e.size, int(e.page_type), e.measured, e.content_sha384
            )
        assert log.entries[e.seq].digest_after == digest
    assert log.digest == digest
    assert replay_log(parse_log(dumps_log(log))) == digest


def test_log_verify_cli_accepts_and_rejects(tmp_path: Path) -> None:
    settings = {"memory": 1 << 29, "vcpus": 1, "pvh_entry": 0x100000}
    kernel = LogInput("kernel", "vmlinux", 1, sha256=bytes(32))
    log = plain_log(example_plan(), plain_header(settings, inputs=(kernel,), tool_version="t"))
    good = tmp_path / "good.jsonl"
    good.write_text(dumps_log(log))
    ok = run_cli(["log", "verify", str(good)])
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.splitlines() == [
        f"{good}: unchecked: the plan's records (GPA, size, page type, provenance, "
        "content_sha384): give the kernel",
        f"{good}: OK 3 records, digest {log.digest.hex()} (1 part(s) unchecked)",
    ]
    # one byte of record 1's content hash changed: its running digest no longer replays
    text = good.read_text()
    content = log.entries[1].content_sha384
    assert content is not None
    old = content.hex()
    new = ("0" if old[0] != "0" else "1") + old[1:]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(text.replace(old, new))
    result = run_cli(["log", "verify", str(bad)])
    assert result.exit_code == 1
    assert "record 1 (plain.copy NORMAL [0x1000-0x2000) table (a table)): digest_after" in (
        result.stdout
    )
    with pytest.raises(MeasurementMismatch):
        verify_log(parse_log(bad.read_text()))


def test_reference_values_refuses_a_plain_log(tmp_path: Path) -> None:
    path = tmp_path / "plain.jsonl"
    path.write_text(dumps_log(plain_log(example_plan(), plain_header({}, tool_version="t"))))
    result = run_cli(["reference-values", str(path)])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"cvmlaunch: error: {path}: a plain launch has no hardware measurement, so no "
        "attestation report carries reference values (its transcript digest is informational; "
        "cvmlaunch log verify checks it)"
    )
    assert result.stdout == ""
