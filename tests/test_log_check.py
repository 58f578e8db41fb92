"""``check_log``: every field of a real log checked against its header and inputs.

The logs are written by the CLI from the real firmware images (SNP with kernel hashes and an
ID block, SEV-ES, SEV, TDX) and by the launch plan of the bundled example guest (plain).
Each test edits one field at a time, to a different value of the same type, and requires
that the check fails naming that field, unless the field is one only a signature protects
(:data:`cvmlaunch.measure.log_check.SIGNATURE_ONLY`, listed here too) or the edit makes the
log unreadable (a format error, exit 2: sequence numbers, record counts, the format name).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cvmlaunch.errors import LogFormatError
from cvmlaunch.measure.log import MeasurementLog
from cvmlaunch.measure.log_check import SIGNATURE_ONLY, check_log
from cvmlaunch.measure.log_json import dumps_log, parse_log
from tests.cli_runner import run_cli

DATA = Path(__file__).resolve().parent.parent / "cvmlaunch" / "data"
APPEND = "console=ttyS0 root=/dev/vda1"

#: The fields only a signature protects, per technology (docs/log-format.md says the same).
#: Paths: line kind, then the keys.
SIGNATURE_FIELDS = {
    "all": {("header", "tool", "name"), ("header", "tool", "version")},
    "sev-snp": {("header", "settings", "host_data")},
    "sev-es": set(),
    "sev": set(),
    "tdx": {
        ("header", "settings", "mrconfigid"),
        ("header", "settings", "mrowner"),
        ("header", "settings", "mrownerconfig"),
    },
    "plain": {("header", "settings", "vcpus"), ("header", "settings", "memory_backend")},
}
#: Input names are informational (inputs are found by SHA-256): a name no record repeats is
#: only protected by a signature; the firmware's name is repeated in its records'
#: provenance, so editing it alone is found.
NAME_FIELDS = {"name"}
#: Edits that make the log unreadable: the reader refuses it (exit 2), naming the line.
FORMAT_FIELDS = {"seq", "records", "events", "format", "version", "record"}

_ENUMS = {
    "op": ["snp.launch_update", "snp.vmsa", "sev.launch_update_data", "tdx.page_add"],
    "page_type": ["NORMAL", "VMSA", "ZERO", "SECRETS"],
    "kind": ["file", "generated", "zero", "firmware-section", "vmsa"],
    "technology": ["sev-snp", "sev", "tdx", "plain"],
    "mode": ["snp", "snp:svsm", "seves", "sev"],
    "vmm_type": ["QEMU", "ec2"],
    "fpu": ["init2", "legacy"],
    "order": ["per-page", "two-pass"],
    "detail": ["BSP", "AP", "ZERO"],
    "event_type": ["EV_SEPARATOR", "EV_EFI_ACTION"],
}


def _other(key: str, value: object) -> object:
    """A different value of the same type (aligned GPAs and sizes, valid hex stays hex)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + (4096 if key in ("gpa", "size", "memory") else 1)
    if value is None:
        return 0 if key in ("offset", "index") else "00" * 48
    assert isinstance(value, str)
    if key == "event_data" and not value:
        return "00"
    if key in _ENUMS:
        choices = _ENUMS[key]
        return next(c for c in choices if c != value)
    if value and len(value) % 2 == 0 and all(ch in "0123456789abcdef" for ch in value):
        return value[:-1] + ("1" if value[-1] != "1" else "2")
    return value + "x"


def _leaves(obj: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(obj, list):
        # every input; of a list of page hashes, the first and the last
        every = bool(obj) and isinstance(obj[0], dict)
        for i in range(len(obj)) if every else sorted({0, len(obj) - 1}) if obj else []:
            yield from _leaves(obj[i], (*path, i))
    else:
        yield path, obj


def _set(obj: Any, path: tuple[Any, ...], value: object) -> None:
    for k in path[:-1]:
        obj = obj[k]
    obj[path[-1]] = value


def _edits(text: str) -> Iterator[tuple[int, str, tuple[Any, ...], str]]:
    """(line number, line kind, path, edited log text) for every leaf of the header, the
    footer and the range records: the first record of each kind (op, page type, provenance
    kind) and the last two (the last VMSA and the one before); of the RTMR events, the first
    of each RTMR and event type, and the last."""
    lines = text.splitlines()
    ranges = [i for i, line in enumerate(lines) if '"record":"range"' in line]
    kinds: dict[tuple[str, str, str], int] = {}
    for i in ranges:
        r = json.loads(lines[i])
        kinds.setdefault((r["op"], r["page_type"], r["provenance"]["kind"]), i)
    events = [i for i, line in enumerate(lines) if '"record":"rtmr_event"' in line]
    for i in events:
        r = json.loads(lines[i])
        kinds.setdefault((str(r["rtmr"]), r["event_type"], "rtmr_event"), i)
    chosen = {0, len(lines) - 1, *kinds.values(), *ranges[-2:], *events[-1:]}
    for n in sorted(chosen):
        obj = json.loads(lines[n])
        kind = obj["record"]
        for path, value in _leaves(obj):
            edited = json.loads(lines[n])
            _set(edited, path, _other(str(path[-1]) if path else "", value))
            out = list(lines)
            out[n] = json.dumps(edited, sort_keys=True, separators=(",", ":"))
            yield n, kind, path, "\n".join(out) + "\n"


def _field_name(path: tuple[Any, ...]) -> str:
    """The name a finding must contain: the last key (``page_sha384`` for a list item)."""
    names = [p for p in path if isinstance(p, str)]
    return names[-1]


def _run_edits(text: str, technology: str, inputs: dict[str, bytes]) -> dict[str, list[str]]:
    """Edit every field; return the outcome per category (for the assertions and report)."""
    base = parse_log(text)
    assert check_log(base, inputs).findings == ()
    signature = SIGNATURE_FIELDS["all"] | SIGNATURE_FIELDS[technology]
    outcome: dict[str, list[str]] = {"found": [], "format": [], "signature": [], "missed": []}
    for n, kind, path, edited in _edits(text):
        label = f"line {n + 1} {kind}.{'.'.join(map(str, path))}"
        try:
            log = parse_log(edited)
        except LogFormatError:
            outcome["format"].append(label)
            assert (
                _field_name(path) in FORMAT_FIELDS
                or (kind == "footer" and path == ("records",))
                or (  # only a TDX log carries RTMR events
                    path == ("technology",) and '"record":"rtmr_event"' in text
                )
            ), label
            continue
        result = check_log(log, inputs)
        name = _field_name(path)
        text_out = "\n".join(f.describe() for f in result.findings)
        if (kind, *[p for p in path if isinstance(p, str)]) in signature or _host_decided(
            text, n, path
        ):
            outcome["signature"].append(label)
            assert result.ok, (label, text_out)
        elif name in NAME_FIELDS and kind == "header":
            outcome["signature" if result.ok else "found"].append(label)
        elif result.ok or name not in text_out:
            outcome["missed"].append(f"{label}: {text_out[:300]}")
        else:
            outcome["found"].append(label)
    return outcome


def _host_decided(text: str, n: int, path: tuple[Any, ...]) -> bool:
    """An SNP CPUID page's content_sha384: the host's CPUID in a launch's log, the zero
    marker in a prediction's; SNP measures the page without its contents (SIGNATURE_ONLY)."""
    line = json.loads(text.splitlines()[n])
    return line.get("page_type") == "CPUID" and path == ("content_sha384",)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("logcheck")
    (d / "kernel.bin").write_bytes(bytes(range(256)) * 4000 + b"kernel")
    (d / "initrd.bin").write_bytes(b"initrd" * 5000)
    return d


@pytest.fixture
def features_once(monkeypatch: pytest.MonkeyPatch) -> dict[bytes, int]:
    """Every edit is checked against the same firmware, and telling its edk2 release inflates
    the image's LZMA volumes (most of the check's time). The detection is a pure function of
    the image's bytes: the first check computes it for real, the others reuse it (the count
    of real computations is returned, for the test to assert that the reuse happened)."""
    from cvmlaunch.image.tdvf_features import TdvfFeatures, detect_tdvf_features

    real = detect_tdvf_features
    seen: dict[bytes, TdvfFeatures] = {}
    computed: dict[bytes, int] = {}

    def once(data: Any, *, name: str = "firmware") -> TdvfFeatures:
        key = bytes(data)
        if key not in seen:
            seen[key] = real(data, name=name)
            computed[key] = computed.get(key, 0) + 1
        return seen[key]

    monkeypatch.setattr("cvmlaunch.measure.tdx_rtmr.detect_tdvf_features", once)
    return computed


def _firmware(firmware: Any, name: str) -> Path:
    path: Path = firmware(name)
    return path


def _snp_id_pair(work: Path, digest: bytes) -> tuple[Path, Path]:
    from cvmlaunch.measure.identity import DEFAULT_POLICY, IdBlock, generate_key, sign_id_block

    key, author = generate_key(), generate_key()
    block = IdBlock(ld=digest, family_id=b"f" * 16, image_id=b"i" * 16, guest_svn=3,
                    policy=DEFAULT_POLICY)  # fmt: skip
    auth = sign_id_block(block, key, author)
    (work / "id_block.bin").write_bytes(block.pack())
    (work / "id_auth.b64").write_text(base64.b64encode(auth.pack()).decode())
    return work / "id_block.bin", work / "id_auth.b64"


def _measure(args: list[str]) -> str:
    r = run_cli(args)
    assert r.exit_code == 0, r.output
    return r.stdout.strip()


def snp_case(work: Path, fw: Path) -> tuple[str, dict[str, bytes]]:
    common = ["measure", "snp", "--ovmf", str(fw), "--vcpus", "2", "--vcpu-type", "EPYC-Milan",
              "--kernel", str(work / "kernel.bin"), "--initrd", str(work / "initrd.bin"),
              "--append", APPEND]  # fmt: skip
    digest = bytes.fromhex(_measure(common))
    block, auth = _snp_id_pair(work, digest)
    log = work / "snp.jsonl"
    _measure([*common, "--policy", "0x30000", "--host-data", "ab" * 32,
              "--id-block", str(block), "--id-auth", str(auth), "--log", str(log)])  # fmt: skip
    return log.read_text(), {
        "firmware": fw.read_bytes(),
        "kernel": (work / "kernel.bin").read_bytes(),
        "initrd": (work / "initrd.bin").read_bytes(),
        "cmdline": APPEND.encode() + b"\0",
    }


def sev_case(work: Path, fw: Path, mode: str) -> tuple[str, dict[str, bytes]]:
    log = work / f"{mode}.jsonl"
    kernel = str(work / "kernel.bin")
    args = ["measure", "snp", "--mode", mode, "--ovmf", str(fw),
            "--kernel", kernel, "--append", APPEND, "--log", str(log)]  # fmt: skip
    if mode == "seves":
        args += ["--vcpus", "2", "--vcpu-type", "EPYC-Milan"]
    _measure(args)
    return log.read_text(), {
        "firmware": fw.read_bytes(),
        "kernel": (work / "kernel.bin").read_bytes(),
        "cmdline": APPEND.encode() + b"\0",
    }


def tdx_case(work: Path, fw: Path) -> tuple[str, dict[str, bytes]]:
    log = work / "tdx.jsonl"
    _measure(["measure", "tdx", "--firmware", str(fw), "--mrowner", "cd" * 48,
              "--log", str(log)])  # fmt: skip
    return log.read_text(), {"firmware": fw.read_bytes()}


def tdx_rtmr_case(work: Path, fw: Path, kernel: Path) -> tuple[str, dict[str, bytes]]:
    """A TDX log with RTMR events (RTMR0-2: old firmware, ACPI tables, initrd, command
    line) and every input that decides them."""
    from tests.acpi_blobs import qemu_like_acpi, write_by_name

    acpi = qemu_like_acpi(cpus=2)
    write_by_name(work / "acpi", acpi)
    log = work / "tdx-rtmr.jsonl"
    _measure(["measure", "tdx", "--firmware", str(fw), "--memory", "3G", "--kernel",
              str(kernel), "--initrd", str(work / "initrd.bin"), "--append", APPEND,
              "--acpi", str(work / "acpi"), "--kernel-loading", "patched", "--edk2", "2024.11",
              "--stub-measures", "yes", "--log", str(log)])  # fmt: skip
    roles = {"etc/table-loader": "acpi_table_loader", "etc/acpi/rsdp": "acpi_rsdp",
             "etc/acpi/tables": "acpi_tables"}  # fmt: skip
    return log.read_text(), {
        "firmware": fw.read_bytes(),
        "kernel": kernel.read_bytes(),
        "initrd": (work / "initrd.bin").read_bytes(),
        "cmdline": APPEND.encode() + b"\0",
        **{role: acpi[name] for name, role in roles.items()},
    }


def plain_log_text() -> tuple[str, dict[str, bytes]]:
    """The log ``cvmlaunch launch --example`` writes, but for what the host adds at run time
    (pre-fault records; this host need not run KVM): the plan's log with the launch's
    header."""
    from cvmlaunch.launch_settings import LaunchSettings
    from cvmlaunch.launcher import input_digests, load_pvh_launch, log_header
    from cvmlaunch.measure.plain import plain_log

    settings = LaunchSettings(
        memory=512 << 20,
        vcpus=2,
        kernel=str(DATA / "example-guest.elf"),
        initrd=str(DATA / "example-initrd.img"),
        append=APPEND,
    )
    with load_pvh_launch(settings) as launch:
        header = log_header(launch, input_digests(settings))
        header = type(header)(
            technology=header.technology,
            algorithm=header.algorithm,
            settings={**header.settings, "pre_fault_memory": False},
            inputs=header.inputs,
            tool_version=header.tool_version,
            initial_digest=header.initial_digest,
        )
        log: MeasurementLog = plain_log(launch.plan, header)
        text = dumps_log(log)
    return text, {
        "kernel": (DATA / "example-guest.elf").read_bytes(),
        "initrd": (DATA / "example-initrd.img").read_bytes(),
        "cmdline": APPEND.encode() + b"\0",
    }


def _assert_outcome(outcome: dict[str, list[str]]) -> None:
    assert outcome["missed"] == []
    assert len(outcome["found"]) > 20


def test_every_field_of_an_snp_log(work: Path, firmware: Any) -> None:
    text, inputs = snp_case(work, _firmware(firmware, "OVMF.amdsev.fd"))
    _assert_outcome(_run_edits(text, "sev-snp", inputs))


def test_every_field_of_an_sev_es_log(work: Path, firmware: Any) -> None:
    text, inputs = sev_case(work, _firmware(firmware, "OVMF.amdsev.fd"), "seves")
    _assert_outcome(_run_edits(text, "sev-es", inputs))


def test_every_field_of_an_sev_log(work: Path, firmware: Any) -> None:
    text, inputs = sev_case(work, _firmware(firmware, "OVMF.amdsev.fd"), "sev")
    _assert_outcome(_run_edits(text, "sev", inputs))


def test_every_field_of_a_tdx_log(work: Path, firmware: Any) -> None:
    text, inputs = tdx_case(work, _firmware(firmware, "OVMF.inteltdx.ms.fd"))
    _assert_outcome(_run_edits(text, "tdx", inputs))


def test_every_field_of_a_tdx_log_with_rtmr_events(
    work: Path, firmware: Any, debian_kernel: tuple[Path, Any], features_once: dict[bytes, int]
) -> None:
    text, inputs = tdx_rtmr_case(work, _firmware(firmware, "OVMF.2022.fd"), debian_kernel[0])
    assert text.count('"record":"rtmr_event"') > 10
    outcome = _run_edits(text, "tdx", inputs)
    _assert_outcome(outcome)
    assert list(features_once.values()) == [1]  # one firmware, inflated once
    edited = {label.split(" ", 2)[2] for label in outcome["found"]}
    for field in ("rtmr", "event_type", "description", "digest", "event_data"):
        assert any(f"rtmr_event.{field}" == e for e in edited), field
    assert "footer.rtmrs.0" in edited
    assert "footer.rtmrs.3" in edited
    # without the inputs: the replay and the events' own data are still checked
    base = parse_log(text)
    alone = check_log(base)
    assert alone.findings == ()
    assert any("RTMR events" in u for u in alone.unchecked)
    lines = text.splitlines()
    n = next(i for i, line in enumerate(lines) if '"EV_SEPARATOR"' in line)
    sep = json.loads(lines[n])
    sep["event_data"] = "01000000"
    lines[n] = json.dumps(sep, sort_keys=True, separators=(",", ":"))
    found = check_log(parse_log("\n".join(lines) + "\n")).findings
    assert [f.field for f in found] == ["event_data"], found
    assert "separator" in found[0].where


def test_every_field_of_a_plain_log() -> None:
    text, inputs = plain_log_text()
    _assert_outcome(_run_edits(text, "plain", inputs))


@pytest.mark.kvm
def test_every_field_of_a_real_launch_log(tmp_path: Path) -> None:
    """The log ``cvmlaunch launch --example --log`` writes on this host (with its host
    details: memory backend, pre-fault records where the host pre-faults)."""
    path = tmp_path / "launch.jsonl"
    result = run_cli(["launch", "--example", "--log", str(path)])
    assert result.exit_code == 0, result.output
    append = "console=ttyS0 cvmlaunch.example=1"
    inputs = {
        "kernel": (DATA / "example-guest.elf").read_bytes(),
        "initrd": (DATA / "example-initrd.img").read_bytes(),
        "cmdline": append.encode() + b"\0",
    }
    _assert_outcome(_run_edits(path.read_text(), "plain", inputs))


def test_signature_only_fields_are_documented() -> None:
    """The test's list and the library's list name the same fields."""
    for tech, fields in SIGNATURE_FIELDS.items():
        names = {".".join(p[1:]) for p in fields}
        listed = " ".join(SIGNATURE_ONLY[tech])
        for name in names:
            assert name in listed, (tech, name)


def test_a_version_1_log_still_checks(work: Path, firmware: Any) -> None:
    """Version 1 logs (paths as names, the command line hashed without its NUL) are read and
    checked; only the v2 definition of the cmdline input differs."""
    import hashlib

    text, inputs = sev_case(work, _firmware(firmware, "OVMF.amdsev.fd"), "sev")
    lines = text.splitlines()
    head = json.loads(lines[0])
    head["version"] = 1
    for item in head["inputs"]:
        item["name"] = "/home/someone/images/" + item["name"]
        if item["role"] == "cmdline":
            raw = APPEND.encode()
            item.update(
                name="--append",
                size=len(raw),
                sha256=hashlib.sha256(raw).hexdigest(),
                sha384=hashlib.sha384(raw).hexdigest(),
            )
    lines[0] = json.dumps(head, sort_keys=True, separators=(",", ":"))
    for i in range(1, len(lines) - 1):
        rec = json.loads(lines[i])
        if rec["provenance"]["kind"] == "file":
            rec["provenance"]["name"] = "/srv/" + rec["provenance"]["name"]
        lines[i] = json.dumps(rec, sort_keys=True, separators=(",", ":"))
    log = parse_log("\n".join(lines) + "\n")
    assert log.header.format_version == 1
    inputs["cmdline"] = APPEND.encode()  # version 1: no NUL
    result = check_log(log, inputs)
    assert result.findings == ()
    assert result.complete


def test_records_off_the_plan_are_not_replayed(work: Path, firmware: Any) -> None:
    """With the inputs, a record whose range is not the plan's fails without being replayed:
    a 4 GiB ZERO record in place of a small one costs nothing."""
    text, inputs = snp_case(work, _firmware(firmware, "OVMF.amdsev.fd"))
    lines = text.splitlines()
    n = next(i for i, line in enumerate(lines) if '"page_type":"ZERO"' in line)
    rec = json.loads(lines[n])
    rec["size"] = 1 << 32
    lines[n] = json.dumps(rec, sort_keys=True, separators=(",", ":"))
    result = check_log(parse_log("\n".join(lines) + "\n"), inputs)
    assert result.digest is None
    assert [f.field for f in result.findings][:1] == ["size"]


@pytest.mark.parametrize(
    "args",
    [
        ["--mode", "snp:svsm", "--svsm", "@synthetic-svsm.bin", "--vars-size", "0x84000",
         "--vcpus", "2", "--vcpu-type", "EPYC-Milan"],
        ["--mode", "snp:ovmf-hash"],
        ["--vcpus", "3", "--vmm-type", "ec2"],
        ["--vcpus", "3", "--vmm-type", "gce"],
        ["--vcpus", "1", "--vcpu-sig", "0", "--snp-ovmf-hash", "@seed"],
    ],
    ids=["svsm", "ovmf-hash", "ec2", "gce", "seeded"],
)  # fmt: skip
def test_every_snp_mode_checks_completely(tmp_path: Path, args: list[str]) -> None:
    """Each SNP mode's log, with its inputs found by SHA-256 in a directory, checks with
    nothing left unchecked; without them, the firmware's records are listed as unchecked."""
    from tests.snp_inputs import materialize

    files = materialize(tmp_path / "in")
    fw = files["OVMF.amdsev.fd"]
    seed = _measure(["measure", "snp", "--mode", "snp:ovmf-hash", "--ovmf", str(fw)])
    argv = [seed if a == "@seed" else str(files[a[1:]]) if a.startswith("@") else a for a in args]
    log_path = tmp_path / "m.jsonl"
    _measure(["measure", "snp", "--ovmf", str(fw), *argv, "--log", str(log_path)])
    log = parse_log(log_path.read_text())
    found = {"firmware": fw.read_bytes()}
    if "--svsm" in args:
        found["svsm"] = files["synthetic-svsm.bin"].read_bytes()
    full = check_log(log, found)
    assert (full.findings, full.unchecked) == ((), ())
    assert full.digest == log.digest
    alone = check_log(log)
    assert alone.findings == ()
    assert any("give the firmware" in u for u in alone.unchecked)


@pytest.mark.parametrize("tech", ["tdx", "tdx-rtmr", "sev"])
def test_log_verify_exits_1_naming_every_edited_field(
    work: Path, firmware: Any, tmp_path: Path, tech: str, request: pytest.FixtureRequest
) -> None:
    """The same edits through ``cvmlaunch log verify`` with the inputs: exit 1 naming the
    field, 0 for the signature-only fields, 2 (one line) for the format errors."""
    if tech == "tdx-rtmr":
        request.getfixturevalue("features_once")
        kernel = request.getfixturevalue("debian_kernel")[0]
        fw = _firmware(firmware, "OVMF.2022.fd")
        text, _ = tdx_rtmr_case(work, fw, kernel)
        args = ["--firmware", str(fw), "--kernel", str(kernel), "--initrd",
                str(work / "initrd.bin"), "--append", APPEND,
                "--acpi", str(work / "acpi")]  # fmt: skip
        tech = "tdx"
    elif tech == "tdx":
        text, _ = tdx_case(work, _firmware(firmware, "OVMF.inteltdx.ms.fd"))
        args = ["--firmware", str(_firmware(firmware, "OVMF.inteltdx.ms.fd"))]
    else:
        text, _ = sev_case(work, _firmware(firmware, "OVMF.amdsev.fd"), "sev")
        args = ["--ovmf", str(_firmware(firmware, "OVMF.amdsev.fd")), "--kernel",
                str(work / "kernel.bin"), "--append", APPEND]  # fmt: skip
    signature = SIGNATURE_FIELDS["all"] | SIGNATURE_FIELDS[tech]
    path = tmp_path / "edited.jsonl"
    codes: dict[int, int] = {}
    for _, kind, keys, edited in _edits(text):
        path.write_text(edited)
        result = run_cli(["log", "verify", str(path), *args, "--require-inputs"])
        codes[result.exit_code] = codes.get(result.exit_code, 0) + 1
        label = (kind, keys, result.output)
        name = _field_name(keys)
        if result.exit_code == 2:
            assert (
                name in FORMAT_FIELDS
                or (kind, keys) == ("footer", ("records",))
                or (keys == ("technology",) and '"record":"rtmr_event"' in text)
            ), label
            assert len(result.output.splitlines()) == 1, label
        elif (kind, *[k for k in keys if isinstance(k, str)]) in signature or (
            name in NAME_FIELDS and kind == "header"
        ):
            assert result.exit_code in (0, 1), label
        else:
            assert result.exit_code == 1, label
            assert name in result.stdout, label
    assert codes[1] > 20
