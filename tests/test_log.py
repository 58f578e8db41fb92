"""The launch measurement log: model, canonical JSON Lines, strict parsing, replay, diff."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cvmlaunch.errors import ConfigError, LayoutError, LogFormatError, MeasurementMismatch
from cvmlaunch.layout import (
    PAGE_SIZE,
    VMSA_GPA,
    PageType,
    Plan,
    Provenance,
    Region,
    SourceKind,
)
from cvmlaunch.log_entry import LogEntry
from cvmlaunch.measure import snp_chain
from cvmlaunch.measure.log import (
    HOST_DETAILS,
    LOG_VERSION,
    LogHeader,
    LogInput,
    MeasurementLog,
    Technology,
    diff_logs,
    dumps_log,
    get_replayer,
    host_differences,
    parse_log,
    replay_log,
    verify_log,
)

FW = Provenance(SourceKind.FILE, "fw.fd", offset=0)


def small_plan(data: bytes = bytes(range(256)) * 40, vcpus: int = 2) -> Plan:
    """Two firmware pages + zero fill, a ZERO range, a SECRETS page, a partially filled
    NORMAL page, and VMSAs."""
    regions = [
        Region(0xFFFF_C000, 0x4000, PageType.NORMAL, True, FW, data),
        Region(0x80_0000, 0x3000, PageType.ZERO, False, Provenance(SourceKind.ZERO, "z")),
        Region(0x80_3000, 0x1000, PageType.SECRETS, False, Provenance(SourceKind.ZERO, "s")),
        Region(0x80_4000, 0x1000, PageType.CPUID, False, Provenance(SourceKind.ZERO, "c")),
        Region(
            0x80_5000,
            0x1000,
            PageType.NORMAL,
            True,
            Provenance(SourceKind.GENERATED, "hashes", detail="kernel hashes"),
            b"\x01" * 100,
        ),
    ]
    for i in range(vcpus):
        regions.append(
            Region(
                VMSA_GPA,
                PAGE_SIZE,
                PageType.VMSA,
                True,
                Provenance(SourceKind.VMSA, index=i),
                bytes([i + 1]) * 64,
            )
        )
    return Plan.of(regions)


def header(initial: bytes = bytes(48), **settings_: object) -> LogHeader:
    values: dict[str, object] = {"vcpus": 2, "vmm_type": "QEMU", "guest_features": 1}
    values.update(settings_)
    return LogHeader(
        technology=Technology.SEV_SNP,
        algorithm=snp_chain.SNP_ALGORITHM,
        settings=values,  # type: ignore[arg-type]
        inputs=(
            LogInput("firmware", "fw.fd", 10240, sha256=hashlib.sha256(b"x").digest()),
            LogInput(
                "kernel",
                "k",
                1,
                sha256=hashlib.sha256(b"k").digest(),
                sha384=hashlib.sha384(b"k").digest(),
            ),
        ),
        tool_version="0.1.0",
        initial_digest=initial,
    )


def make_log(plan: Plan | None = None, **kw: object) -> MeasurementLog:
    return snp_chain.log_plan(plan or small_plan(), header(**kw))  # type: ignore[arg-type]


# ------------------------------------------------------------------ model and chain


def test_page_info_layout_matches_the_abi() -> None:
    # SNP firmware ABI PAGE_INFO: 112 bytes; LENGTH 0x70 at 0x60, PAGE_TYPE at 0x62, GPA at 0x68.
    info = snp_chain.page_info(b"\xaa" * 48, b"\xbb" * 48, PageType.NORMAL, 0xFFC0_0000)
    assert len(info) == 112
    assert info[:48] == b"\xaa" * 48
    assert info[48:96] == b"\xbb" * 48
    assert info[96:].hex() == "7000010000000000" + "0000c0ff00000000"
    vmsa = snp_chain.page_info(bytes(48), bytes(48), PageType.VMSA, VMSA_GPA)
    assert vmsa[0x62] == 2
    assert vmsa[0x68:] == VMSA_GPA.to_bytes(8, "little")


def test_zero_type_pages_use_zero_contents_but_still_step() -> None:
    zero = Region(0x1000, 0x2000, PageType.ZERO, False, FW)
    d = snp_chain.fold_region(bytes(48), zero)
    expect = bytes(48)
    for gpa in (0x1000, 0x2000):
        expect = hashlib.sha384(
            expect + bytes(48) + bytes.fromhex("7000030000000000") + gpa.to_bytes(8, "little")
        ).digest()
    assert d == expect


def test_log_footer_equals_direct_fold() -> None:
    plan = small_plan()
    log = make_log(plan)
    assert log.digest == snp_chain.fold_plan(plan)
    assert log.entries[-1].digest_after == log.digest
    assert [e.seq for e in log.entries] == list(range(len(plan.regions)))
    # page hashes only where the chain needs them
    assert len(log.entries[0].page_sha384) == 4
    assert log.entries[1].page_sha384 == ()
    assert log.entries[0].page_sha384[3] == hashlib.sha384(bytes(PAGE_SIZE)).digest()
    # content hash covers the zero fill
    data = bytes(range(256)) * 40
    assert (
        log.entries[0].content_sha384 == hashlib.sha384(data + bytes(0x4000 - len(data))).digest()
    )


def test_log_seeded_with_initial_digest() -> None:
    seed = hashlib.sha384(b"seed").digest()
    plan = small_plan()
    log = make_log(plan, initial=seed)
    assert log.digest == snp_chain.fold_plan(plan, seed)
    assert log.digest != snp_chain.fold_plan(plan)
    assert verify_log(log) == log.digest


def test_header_rejects_bad_values() -> None:
    with pytest.raises(LayoutError):
        LogInput("fw", "x", 1)
    with pytest.raises(LayoutError):
        LogInput("fw", "x", 1, sha256=b"short")
    with pytest.raises(LayoutError):
        header(nested={"a": 1})
    with pytest.raises(LayoutError):
        dataclasses.replace(header(), inputs=(LogInput("a", "x", 1, sha256=bytes(32)),) * 2)


def test_settings_are_sorted_and_readonly() -> None:
    h = header(zeta=1, alpha="a")
    assert list(h.settings) == sorted(h.settings)
    with pytest.raises(TypeError):
        h.settings["vcpus"] = 3  # type: ignore[index]


# ------------------------------------------------------------------ JSON Lines


def test_round_trip_and_canonical() -> None:
    log = make_log()
    text = dumps_log(log)
    back = parse_log(text)
    assert back == log
    assert dumps_log(back) == text
    lines = text.splitlines()
    assert len(lines) == 2 + len(log.entries)
    for line in lines:
        obj = json.loads(line)
        assert line == json.dumps(obj, sort_keys=True, separators=(",", ":"))
    head = json.loads(lines[0])
    assert head["format"] == "cvmlaunch-launch-log"
    assert head["version"] == LOG_VERSION
    assert head["technology"] == "sev-snp"
    assert head["inputs"][0] == {
        "name": "fw.fd",
        "role": "firmware",
        "sha256": hashlib.sha256(b"x").hexdigest(),
        "sha384": None,
        "size": 10240,
    }
    rec = json.loads(lines[1])
    assert rec["gpa"] == 0xFFFF_C000
    assert rec["page_type"] == "NORMAL"
    assert rec["op"] == "snp.launch_update"
    assert json.loads(lines[-2])["op"] == "snp.vmsa"
    assert json.loads(lines[-1]) == {
        "digest": log.digest.hex(),
        "record": "footer",
        "records": len(log.entries),
    }


def _mutate(text: str, line: int, change: dict[str, object] | None = None, drop: str = "") -> str:
    lines = text.splitlines()
    obj = json.loads(lines[line])
    if change:
        obj.update(change)
    if drop:
        del obj[drop]
    lines[line] = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("line", "change", "drop", "message"),
    [
        (0, {"version": 5}, "", "line 1: log format version 5 is not supported"),
        (0, {"format": "other"}, "", "line 1: format is 'other'"),
        (0, {"technology": "sgx"}, "", "line 1: unknown technology 'sgx'"),
        (0, {"extra": 1}, "", "line 1: unknown field 'extra'"),
        (0, None, "settings", "line 1: missing field 'settings'"),
        (0, {"settings": {"a": [1]}}, "", "line 1: setting a must be"),
        (1, {"seq": 5}, "", "line 2: sequence number 5, expected 0"),
        (1, {"gpa": "0x1000"}, "", "line 2: gpa must be an integer"),
        (1, {"gpa": True}, "", "line 2: gpa must be an integer"),
        (1, {"measured": 1}, "", "line 2: measured must be true or false"),
        (1, {"page_type": "normal"}, "", "line 2: unknown page type 'normal'"),
        (1, {"op": "snp.bogus"}, "", "line 2: unknown op 'snp.bogus'"),
        (1, {"content_sha384": "AB" * 48}, "", "line 2: content_sha384 must be lowercase hex"),
        (1, {"content_sha384": "ab" * 47}, "", "line 2: content_sha384 must be 48 bytes"),
        (1, {"size": 0}, "", "line 2: size must be positive"),
        (2, {"record": "chapter"}, "", "line 3: unknown record type 'chapter'"),
        (2, {"record": "header"}, "", "line 3: a second header"),
        (-1, {"records": 3}, "", "footer counts 3 records, the log has"),
    ],
)
def test_parse_rejects(
    line: int, change: dict[str, object] | None, drop: str, message: str
) -> None:
    text = dumps_log(make_log())
    bad = _mutate(text, line, change, drop)
    with pytest.raises(LogFormatError, match=message.replace("(", r"\(").replace("+", r"\+")):
        parse_log(bad, name="x.jsonl")


def test_parse_rejects_floats_duplicates_truncation_and_trailing_text() -> None:
    text = dumps_log(make_log())
    lines = text.splitlines()
    with pytest.raises(LogFormatError, match="line 2: not valid JSON: floating-point"):
        parse_log("\n".join([lines[0], lines[1].replace('"seq":0', '"seq":0.0'), *lines[2:]]))
    with pytest.raises(LogFormatError, match="line 2: not valid JSON: duplicate key 'seq'"):
        parse_log("\n".join([lines[0], lines[1].replace('"seq":0', '"seq":0,"seq":0'), *lines[2:]]))
    with pytest.raises(LogFormatError, match=r"log line \d+: missing footer"):
        parse_log("\n".join(lines[:-1]) + "\n")
    with pytest.raises(LogFormatError, match=r"line \d+: text after the footer"):
        parse_log(text + lines[-1] + "\n")
    with pytest.raises(LogFormatError, match="line 2: empty line"):
        parse_log(lines[0] + "\n\n" + "\n".join(lines[1:]))
    with pytest.raises(LogFormatError, match="line 1: the first record must be the header"):
        parse_log("\n".join(lines[1:]))
    with pytest.raises(LogFormatError, match="empty log"):
        parse_log("")
    with pytest.raises(LogFormatError, match="line 1: a record must be a JSON object"):
        parse_log("[1]\n")


# ------------------------------------------------------------------ replay and verify


def test_verify_and_replay() -> None:
    log = make_log()
    assert replay_log(log) == log.digest
    assert verify_log(log) == log.digest


def test_verify_names_the_record_whose_running_value_differs() -> None:
    log = make_log()
    entries = list(log.entries)
    entries[2] = dataclasses.replace(entries[2], digest_after=bytes(48))
    bad = dataclasses.replace(log, entries=tuple(entries))
    with pytest.raises(MeasurementMismatch, match=r"record 2 \(snp.launch_update SECRETS"):
        verify_log(bad)


def test_verify_detects_a_changed_page_hash_at_that_record() -> None:
    log = make_log()
    entries = list(log.entries)
    pages = list(entries[0].page_sha384)
    pages[1] = bytes(48)
    entries[0] = dataclasses.replace(entries[0], page_sha384=tuple(pages))
    with pytest.raises(MeasurementMismatch, match="record 0 "):
        verify_log(dataclasses.replace(log, entries=tuple(entries)))


def test_verify_detects_footer_and_type_changes() -> None:
    log = make_log()
    no_running = tuple(dataclasses.replace(e, digest_after=None) for e in log.entries)
    stripped = dataclasses.replace(log, entries=no_running)
    assert verify_log(stripped) == log.digest
    bad_footer = dataclasses.replace(
        stripped, footer=dataclasses.replace(log.footer, digest=bytes(48))
    )
    with pytest.raises(MeasurementMismatch, match="footer digest mismatch"):
        verify_log(bad_footer)
    entries = list(no_running)
    entries[1] = dataclasses.replace(entries[1], page_type=PageType.UNMEASURED)
    with pytest.raises(MeasurementMismatch, match="footer digest"):
        verify_log(dataclasses.replace(stripped, entries=tuple(entries)))


def test_verify_with_contents_checks_content_hashes() -> None:
    plan = small_plan()
    log = make_log(plan)

    def contents(entry: LogEntry) -> bytes:
        return bytes(plan.regions[entry.seq].data)

    assert verify_log(log, contents) == log.digest

    def wrong(entry: LogEntry) -> bytes:
        return b"\x00" if entry.seq == 4 else contents(entry)

    with pytest.raises(MeasurementMismatch, match=r"record 4 .* contents SHA-384"):
        verify_log(log, wrong)


def test_replay_needs_page_hashes() -> None:
    log = make_log()
    entries = list(log.entries)
    entries[0] = dataclasses.replace(entries[0], page_sha384=())
    with pytest.raises(LogFormatError, match="record 0: a NORMAL range needs one SHA-384 per page"):
        verify_log(dataclasses.replace(log, entries=tuple(entries)))


def test_snp_replay_rejects_partial_pages() -> None:
    log = make_log()
    text = _mutate(dumps_log(log), 2, {"gpa": 0x80_0123})
    with pytest.raises(LogFormatError, match="record 1: range is not made of whole 4 KiB pages"):
        verify_log(parse_log(text))


def test_unknown_algorithm_has_no_replayer() -> None:
    with pytest.raises(LogFormatError, match="no replay rule"):
        get_replayer(Technology.SEV_SNP, "made-up")


def test_log_plan_rejects_wrong_header() -> None:
    h = dataclasses.replace(header(), initial_digest=None)
    with pytest.raises(ConfigError):
        snp_chain.log_plan(small_plan(), h)


# ------------------------------------------------------------------ diff


def test_diff_identical() -> None:
    d = diff_logs(make_log(), parse_log(dumps_log(make_log())))
    assert d.identical
    lines = list(d.lines())
    assert lines[0] == "the logs describe the same launch"
    assert lines[1].startswith("verdict: same final digest ")
    assert len(lines) == 2


def test_diff_names_setting_in_decimal_and_the_verdict() -> None:
    a, b = make_log(), make_log(vcpus=4)
    d = diff_logs(a, b)
    assert [x.describe() for x in d.header] == ["header: setting vcpus differs: 2 vs 4"]
    # the records are the same (the settings are only written into the header here), so
    # the digests are the same: the verdict says so
    assert d.first_range is None
    assert d.same_digest
    assert list(d.lines())[-1].startswith(f"verdict: same final digest {a.digest.hex()[:16]}")


def test_diff_names_first_range_and_field() -> None:
    a = make_log()
    b = make_log(small_plan(bytes(range(256)) * 40 + b"\x01"))
    d = diff_logs(a, b).first_range
    assert d is not None
    assert d.where == "record 0"
    assert d.what == "content_sha384"
    la = small_plan()
    regions = list(la.regions)
    regions[1] = dataclasses.replace(regions[1], gpa=0x81_0000)
    result = diff_logs(a, make_log(Plan.of(regions)))
    assert result.first_range is not None
    assert result.first_range.describe() == "record 1: gpa differs: 0x800000 vs 0x810000"
    assert not result.same_digest
    assert list(result.lines())[-1] == (
        f"verdict: the final digests differ: {a.digest.hex()} vs {result.digest_b.hex()}"
    )
    regions = list(la.regions)
    regions[2] = dataclasses.replace(regions[2], page_type=PageType.ZERO)
    d = diff_logs(a, make_log(Plan.of(regions))).first_range
    assert d is not None
    assert d.describe() == "record 2: page_type differs: SECRETS vs ZERO"
    d = diff_logs(a, make_log(small_plan(vcpus=3))).first_range
    assert d is not None
    assert (d.where, d.what) == ("record 7", "presence")


def test_host_details_are_not_differences_but_are_listed() -> None:
    """``memory_backend`` and ``pre_fault_memory`` describe the host, not the launch: logs
    that differ only there describe the same launch (docs/log-format.md), and both still
    verify to the same digest."""
    a = make_log()

    def with_host(backend: str, pre_fault: bool) -> MeasurementLog:
        settings = {**a.header.settings, "memory_backend": backend, "pre_fault_memory": pre_fault}
        log = dataclasses.replace(a, header=dataclasses.replace(a.header, settings=settings))
        return parse_log(dumps_log(log))

    gmem, anon = with_host("guest-memfd", False), with_host("anonymous", False)
    assert verify_log(gmem) == verify_log(anon) == a.digest
    assert diff_logs(gmem, anon).identical
    assert [d.describe() for d in host_differences(gmem, anon)] == [
        "header: host detail memory_backend differs: guest-memfd vs anonymous"
    ]
    assert [d.what for d in host_differences(a, with_host("anonymous", True))] == [
        "host detail memory_backend",
        "host detail pre_fault_memory",
    ]
    assert host_differences(gmem, gmem) == ()
    assert {"memory_backend", "pre_fault_memory"} == HOST_DETAILS


def test_diff_names_input_hash() -> None:
    a = make_log()
    h = dataclasses.replace(
        a.header, inputs=(LogInput("firmware", "fw.fd", 10240, sha256=bytes(32)),)
    )
    d = diff_logs(a, dataclasses.replace(a, header=h))
    whats = [x.what for x in d.header]
    assert "input firmware sha256" in whats
    assert "input kernel" in whats  # present in a only


def test_diff_lists_every_setting_shortens_long_values() -> None:
    """Three settings differ: all three are listed (not only the first), a long value is
    shortened to its start, length and SHA-256, and the verdict follows."""
    long_a, long_b = "A" * 5464, "B" * 5464
    a = make_log(vcpus=2, policy="0x30000", id_auth=long_a)
    b = make_log(vcpus=4, policy="0x70000", id_auth=long_b)
    d = diff_logs(a, b)
    lines = list(d.lines())
    sha_a = hashlib.sha256(long_a.encode()).hexdigest()[:16]
    sha_b = hashlib.sha256(long_b.encode()).hexdigest()[:16]
    assert lines == [
        f"header: setting id_auth differs: {'A' * 16}… (5464 chars, sha256 {sha_a}…) vs "
        f"{'B' * 16}… (5464 chars, sha256 {sha_b}…)",
        "header: setting policy differs: 0x30000 vs 0x70000",
        "header: setting vcpus differs: 2 vs 4",
        "the records are the same",
        f"verdict: same final digest {a.digest.hex()[:16]}… (96 chars, sha256 "
        f"{hashlib.sha256(a.digest.hex().encode()).hexdigest()[:16]}…), 3 header "
        "difference(s) outside the digest",
    ]
    doc = d.to_json()
    assert doc["same_digest"] is True
    assert [x["what"] for x in doc["header"]] == [
        "setting id_auth",
        "setting policy",
        "setting vcpus",
    ]


# ------------------------------------------------------------------ properties


_types = st.sampled_from(
    [PageType.NORMAL, PageType.ZERO, PageType.UNMEASURED, PageType.SECRETS, PageType.CPUID]
)


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    regions: list[Region] = []
    gpa = 0x10_0000
    for i in range(draw(st.integers(1, 5))):
        npages = draw(st.integers(1, 4))
        page_type = draw(_types)
        data = b""
        if page_type in (PageType.NORMAL, PageType.CPUID):
            data = draw(st.binary(max_size=npages * PAGE_SIZE))
        regions.append(
            Region(
                gpa,
                npages * PAGE_SIZE,
                page_type,
                page_type is PageType.NORMAL,
                Provenance(SourceKind.GENERATED, f"r{i}"),
                data,
            )
        )
        gpa += (npages + draw(st.integers(0, 3))) * PAGE_SIZE
    for i in range(draw(st.integers(0, 3))):
        regions.append(
            Region(
                VMSA_GPA,
                PAGE_SIZE,
                PageType.VMSA,
                True,
                Provenance(SourceKind.VMSA, index=i),
                draw(st.binary(max_size=64)),
            )
        )
    return Plan.of(regions)


@settings(max_examples=40, deadline=None)
@given(plans())
def test_page_by_page_fold_equals_range_fold(plan: Plan) -> None:
    digest = bytes(48)
    for region, gpa, page in plan.pages():
        contents = hashlib.sha384(page).digest() if region.page_type.hashes_contents else bytes(48)
        digest = hashlib.sha384(
            snp_chain.page_info(digest, contents, region.page_type, gpa)
        ).digest()
    assert digest == snp_chain.fold_plan(plan)


@settings(max_examples=40, deadline=None)
@given(plans())
def test_log_replays_to_direct_digest(plan: Plan) -> None:
    log = make_log(plan)
    assert log.digest == snp_chain.fold_plan(plan)
    back = parse_log(dumps_log(log))
    assert verify_log(back) == log.digest


_VALID = dumps_log(make_log(small_plan(vcpus=1)))


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_parse_raises_only_log_format_error(data: st.DataObject) -> None:
    """Arbitrary edits of a valid log either parse or raise LogFormatError (never anything
    else)."""
    text = _VALID
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(text) - 1))
        kind = data.draw(st.sampled_from(["delete", "insert", "replace"]))
        chunk = data.draw(st.text(alphabet='{}[]":,0123456789abcdefnulltrue-. \n', max_size=4))
        if kind == "delete":
            text = text[:i] + text[i + len(chunk) + 1 :]
        elif kind == "insert":
            text = text[:i] + chunk + text[i:]
        else:
            text = text[:i] + chunk + text[i + len(chunk) :]
    with contextlib.suppress(LogFormatError):
        parse_log(text)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=5,
)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_parse_field_level_fuzz(data: st.DataObject) -> None:
    lines = _VALID.splitlines()
    n = data.draw(st.integers(0, len(lines) - 1))
    obj = json.loads(lines[n])
    target = obj
    key = data.draw(st.sampled_from(sorted(target)))
    while isinstance(target[key], dict) and target[key] and data.draw(st.booleans()):
        target = target[key]
        key = data.draw(st.sampled_from(sorted(target)))
    target[key] = data.draw(_json_values)
    lines[n] = json.dumps(obj)
    try:
        log = parse_log("\n".join(lines) + "\n")
    except LogFormatError:
        return
    with contextlib.suppress(LogFormatError, MeasurementMismatch, ConfigError):
        verify_log(log)


def test_complete_log_fills_running_digests() -> None:
    """Records without running digests (as the KVM layer makes them) become a whole log."""
    from cvmlaunch.measure.log import complete_log

    log = make_log()
    bare = [dataclasses.replace(e, digest_after=None) for e in log.entries]
    whole = complete_log(log.header, bare)
    assert whole == log
    assert verify_log(whole) == log.digest


def test_parse_bounds_the_ranges() -> None:
    """A record ending above the largest GPA, or records covering more than
    MAX_COVERED_BYTES together, are refused at parse time (before any replay); the writer
    refuses the same logs."""
    from cvmlaunch.layout import MAX_GPA
    from cvmlaunch.measure.log import MAX_COVERED_BYTES

    log = make_log()
    text = _mutate(dumps_log(log), 2, {"gpa": MAX_GPA - PAGE_SIZE, "size": 2 * PAGE_SIZE})
    with pytest.raises(LogFormatError, match="the largest guest physical address"):
        parse_log(text)
    half = MAX_COVERED_BYTES // 2 + PAGE_SIZE
    text = _mutate(dumps_log(log), 2, {"size": half})
    text = _mutate(text, 3, {"size": half})
    with pytest.raises(LogFormatError, match="a log may cover at most"):
        parse_log(text)
    big = dataclasses.replace(
        log,
        entries=(
            dataclasses.replace(log.entries[0], size=half, page_sha384=()),
            dataclasses.replace(log.entries[1], size=half),
            *log.entries[2:],
        ),
    )
    with pytest.raises(LogFormatError, match="a log may cover at most"):
        dumps_log(big)


def test_a_5_gib_range_is_written_and_read() -> None:
    """The limits are the guest's, not 4 GiB: a 5 GiB TDX TEMP_MEM-like range round-trips."""
    log = make_log()
    size = 5 << 30
    text = _mutate(dumps_log(log), 2, {"gpa": 1 << 32, "size": size})
    assert parse_log(text).entries[1].size == size


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[" * 100_000, "100000 arrays and objects in one line"),
        ('{"a":' * 100_000, "100000 arrays and objects in one line"),
        ("[" * 10 + "]" * 10, "nested more than 4 deep"),
        ("[]" * 65 + "", "65 arrays and objects in one line"),
        ('{"record":"header","version":1' + "0" * 30 + "}", "an integer of 31 digits"),
    ],
)
def test_parse_is_bounded(text: str, message: str) -> None:
    """Hostile JSON ends in one LogFormatError line, never a RecursionError."""
    with pytest.raises(LogFormatError, match=message):
        parse_log(text + "\n")


def test_parse_bounds_the_line_length() -> None:
    from cvmlaunch.measure.log import MAX_LINE_BYTES

    text = '{"record":"header","x":"' + "a" * MAX_LINE_BYTES + '"}\n'
    with pytest.raises(LogFormatError, match="longer than"):
        parse_log(text)


def test_parse_bounds_the_record_count(monkeypatch: pytest.MonkeyPatch) -> None:
    from cvmlaunch.measure import log_json

    monkeypatch.setattr(log_json, "MAX_RECORDS", 3)
    with pytest.raises(LogFormatError, match="more than 3 records"):
        parse_log(dumps_log(make_log()))


def test_version_1_is_read_with_paths() -> None:
    """Version 1 logs may carry paths as names: still read; version 2 refuses paths."""
    from tests.test_log_zero import as_old_version

    text = as_old_version(dumps_log(make_log()), 1)  # zero ranges hashed, as v1 wrote them
    v1 = _mutate(text, 0, {"version": 1})
    lines = v1.split("\n")
    obj = json.loads(lines[0])
    obj["inputs"][0]["name"] = "/home/me/fw.fd"
    lines[0] = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    assert parse_log("\n".join(lines)).header.format_version == 1
    v2 = "\n".join([lines[0].replace('"version":1', '"version":2'), *lines[1:]])
    with pytest.raises(LogFormatError, match="is a path"):
        parse_log(v2)


def test_writer_cuts_paths_to_base_names() -> None:
    log = make_log()
    h = dataclasses.replace(
        log.header,
        inputs=(LogInput("firmware", "/srv/images/fw.fd", 1, sha256=bytes(32)),),
    )
    e0 = log.entries[0]
    e0 = dataclasses.replace(e0, provenance=dataclasses.replace(e0.provenance, name="../x/fw.fd"))
    text = dumps_log(dataclasses.replace(log, header=h, entries=(e0, *log.entries[1:])))
    assert "/srv" not in text
    assert "../x" not in text
    parsed = parse_log(text)
    assert parsed.header.inputs[0].name == "fw.fd"
    assert parsed.entries[0].provenance.name == "fw.fd"


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, (1 << 53) // PAGE_SIZE), st.integers(1, (1 << 41) // PAGE_SIZE)),
        min_size=1,
        max_size=4,
    )
)
def test_the_writer_never_writes_what_the_reader_refuses(ranges: list[tuple[int, int]]) -> None:
    """One set of limits: a log the writer writes always reads back; one it refuses is
    past a limit the reader also enforces."""
    log = make_log()
    entries = tuple(
        dataclasses.replace(
            log.entries[1], seq=i, gpa=page * PAGE_SIZE, size=pages * PAGE_SIZE, digest_after=None
        )
        for i, (page, pages) in enumerate(ranges)
    )
    candidate = dataclasses.replace(
        log, entries=entries, footer=dataclasses.replace(log.footer, records=len(entries))
    )
    try:
        text = dumps_log(candidate)
    except LogFormatError:
        from cvmlaunch.layout import MAX_GPA
        from cvmlaunch.measure.log import MAX_COVERED_BYTES

        assert any(g + s > MAX_GPA for g, s in ((e.gpa, e.size) for e in entries)) or (
            sum(e.size for e in entries) > MAX_COVERED_BYTES
        )
        return
    assert parse_log(text).entries == entries


# ------------------------------------------------------------------ what the log commands compose


def test_replay_if_possible_replays_snp_logs_only() -> None:
    from cvmlaunch.measure.log import replay_if_possible

    log = make_log()
    assert replay_if_possible(log) is True
    broken = dataclasses.replace(log, footer=dataclasses.replace(log.footer, digest=bytes(48)))
    with pytest.raises(MeasurementMismatch, match="footer digest"):
        replay_if_possible(broken)
    tdx = dataclasses.replace(
        broken, header=dataclasses.replace(broken.header, technology=Technology.TDX)
    )
    assert replay_if_possible(tdx) is False  # not replayed: the wrong footer goes unnoticed


def test_parse_log_bytes_is_utf8_then_parse_log() -> None:
    from cvmlaunch.errors import ImageError
    from cvmlaunch.measure.log_json import parse_log_bytes

    log = make_log()
    text = dumps_log(log)
    assert parse_log_bytes(memoryview(text.encode()), name="a.jsonl") == parse_log(text)
    bad = text.encode().replace(b'"fw.fd"', b'"fw\xff.fd"', 1)
    with pytest.raises(ImageError, match=r"not UTF-8 text \(byte \d+\)") as info:
        parse_log_bytes(bad, name="a.jsonl")
    assert bad[int(str(info.value).rsplit("byte ", 1)[1].rstrip(")"))] == 0xFF


def test_inputs_to_find_lists_the_file_inputs_not_given_by_size_and_sha256() -> None:
    from cvmlaunch.measure.log_check import inputs_to_find

    h = header()
    assert inputs_to_find(h, ()) == {
        (10240, hashlib.sha256(b"x").digest()): "firmware",
        (1, hashlib.sha256(b"k").digest()): "kernel",
    }
    assert inputs_to_find(h, {"firmware"}) == {(1, hashlib.sha256(b"k").digest()): "kernel"}
    cmdline = dataclasses.replace(h, inputs=(LogInput("cmdline", "cmdline", 3, sha256=bytes(32)),))
    assert inputs_to_find(cmdline, ()) == {}  # not a file


def test_cmdline_input_bytes_follows_the_format_version() -> None:
    from cvmlaunch.measure.log_check import cmdline_input_bytes

    assert cmdline_input_bytes(header(), "console=ttyS0") == b"console=ttyS0\0"
    v1 = dataclasses.replace(header(), format_version=1)
    assert cmdline_input_bytes(v1, "console=ttyS0") == b"console=ttyS0"


def test_show_lines_escape_before_aligning() -> None:
    from cvmlaunch.measure.log_show import show_lines

    fw = Provenance(SourceKind.FILE, "f\x1bw.fd", offset=0)
    region = Region(0xFFFF_F000, 0x1000, PageType.NORMAL, True, fw, b"\x90" * 16)
    log = snp_chain.log_plan(Plan.of([region]), header())
    entry = log.entries[0]
    assert entry.content_sha384 is not None
    assert entry.digest_after is not None
    lines = show_lines(log)
    table = lines[-3:-1]  # the header row and the one record
    assert "\x1b" not in "".join(lines)
    assert "f\\x1bw.fd" in table[1]  # escaped, and the columns measured after escaping:
    assert table[0].index("contents") == table[1].index(entry.content_sha384.hex()[:16])
    assert table[0].index("digest after") == table[1].index(entry.digest_after.hex()[:16])
    assert entry.digest_after.hex() not in table[1]
    assert lines[-1] == f"final digest {log.footer.digest.hex()}"
    assert entry.digest_after.hex() in show_lines(log, full=True)[-2]


def test_log_check_lines_name_the_log_on_every_line() -> None:
    from cvmlaunch.measure.log_checker import Finding, LogCheck

    digest = bytes(range(48))
    ok = LogCheck((), ("the firmware pages: give --firmware",), digest, ("record 3 CPUID",))
    assert list(ok.lines("l.jsonl", records=9, events=2)) == [
        "l.jsonl: unchecked: the firmware pages: give --firmware",
        "l.jsonl: host-decided (a signature protects it): record 3 CPUID",
        f"l.jsonl: OK 9 records, 2 RTMR events, digest {digest.hex()} (1 part(s) unchecked)",
    ]
    assert list(LogCheck((), (), None).lines("l", records=1)) == [
        "l: OK 1 records, digest not replayed"
    ]
    bad = LogCheck((Finding("record 0", "gpa", "0x0 vs 0x1000"),), (), digest)
    assert list(bad.lines("l", records=1)) == ["l: record 0: gpa: 0x0 vs 0x1000"]  # no OK line
