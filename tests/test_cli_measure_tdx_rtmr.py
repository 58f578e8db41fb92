"""``cvmlaunch measure tdx --kernel …``: MRTD and RTMR0-2 printed, the CEL-JSON event log
replays to them (replayed here from the spec's fold, not cvmlaunch's), and bad input exits 2
with one line."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.acpi_blobs import qemu_like_acpi, write_by_name
from tests.cli_runner import run_cli
from tests.test_smbios import qemu_q35_table, reference_filter
from tests.test_tdx_rtmr import KERNEL, fold, real
from tests.vectors import td_202505


def replay_cel(path: Path) -> dict[str, str]:
    regs = {n: bytes(48) for n in (1, 2, 3)}
    for record in json.loads(path.read_text()):
        digest = bytes.fromhex(record["digests"][0]["digest"])
        regs[record["pcr"]] = hashlib.sha384(regs[record["pcr"]] + digest).digest()
    return {f"rtmr{n - 1}": regs[n].hex() for n in regs}


@pytest.fixture
def guest(tmp_path: Path, debian_kernel: tuple[Path, dict[str, str]]) -> dict[str, str]:
    write_by_name(tmp_path / "acpi", qemu_like_acpi(cpus=4))
    # a TD's whole /sys/firmware/qemu_fw_cfg/by_name: the ACPI blobs, QEMU's -kernel bootorder
    served = {**qemu_like_acpi(cpus=4), "bootorder": td_202505().fw_cfg_bootorder_data}
    write_by_name(tmp_path / "by_name", {**served, "etc/e820": bytes(20)})
    (tmp_path / "DMI").write_bytes(qemu_q35_table(4 << 30))
    (tmp_path / "nokeys").mkdir()
    (tmp_path / "initrd.img").write_bytes(b"an initrd" * 1000)
    return {
        "kernel": str(debian_kernel[0]),
        "initrd": str(tmp_path / "initrd.img"),
        "acpi": str(tmp_path / "acpi"),
        "fw_cfg": str(tmp_path / "by_name"),
        "smbios": str(tmp_path / "DMI"),
        "nokeys": str(tmp_path / "nokeys"),
        "event_log": str(tmp_path / "events.json"),
    }


def _done_when(fw: Path, guest: dict[str, str], *extra: str) -> list[str]:
    return [
        "measure", "tdx", "--firmware", str(fw), "--memory", "4G", "--kernel", guest["kernel"],
        "--initrd", guest["initrd"], "--append", "console=ttyS0", "--acpi", guest["acpi"],
        "--output-format", "json", *extra,
    ]  # fmt: skip


def test_done_when_command_firmware_keys_refuse_the_debian_kernel(
    firmware: Callable[[str], Path], guest: dict[str, str]
) -> None:
    """The issue's command as written: the .ms.fd has Microsoft's keys enrolled (Secure Boot
    on) and the Debian kernel's signer chains to none of them, so OVMF (edk2 >= 2025.11) does
    not boot it in a TD: no RTMR is printed for a boot that cannot happen."""
    result = run_cli(_done_when(firmware("OVMF.inteltdx.ms.fd"), guest))
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert "Secure Boot on" in line
    assert "CN=Debian Secure Boot CA" in line
    assert "--secure-boot-vars" in line


def test_done_when_command(firmware: Callable[[str], Path], guest: dict[str, str]) -> None:
    """The issue's command with what the host decides besides ACPI (every fw_cfg file QEMU
    served, the SMBIOS table) and the variables of the key-less build (Debian's
    OVMF.inteltdx.fd, same code): MRTD and RTMR0-2 printed, and the event log replays to them."""
    fw = firmware("OVMF.inteltdx.ms.fd")
    extra = ["--fw-cfg", guest["fw_cfg"], "--smbios", guest["smbios"]]
    extra += ["--secure-boot-vars", guest["nokeys"], "--event-log", guest["event_log"]]
    result = run_cli([*_done_when(fw, guest, *extra), "--stub-measures", "yes"])
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    plain = run_cli(["measure", "tdx", "--firmware", str(fw)])
    assert doc["mrtd"] == plain.stdout.strip()
    assert result.stderr == ""  # nothing left unpredicted
    replayed = replay_cel(Path(guest["event_log"]))
    assert {k: doc[k] for k in ("rtmr0", "rtmr1", "rtmr2")} == replayed
    # RTMR0's events other than the TD HOB and CFV, from outside cvmlaunch (the real TDs'
    # digests, hashlib over the blobs, the test's own SMBIOS filter)
    records = json.loads(Path(guest["event_log"]).read_text())
    rtmr0 = [bytes.fromhex(r["digests"][0]["digest"]) for r in records if r["pcr"] == 1]
    served = qemu_like_acpi(cpus=4)
    assert rtmr0[2:] == [
        hashlib.sha384(b"\0\0").digest(),
        bytes.fromhex(td_202505().fw_cfg_bootorder_digest),
        *(real(n)[0] for n in ("SecureBoot", "PK", "KEK", "db", "dbx", "separator")),
        *(hashlib.sha384(served[n]).digest() for n in ACPI_NAMES),
        hashlib.sha384(reference_filter(qemu_q35_table(4 << 30))).digest(),
        hashlib.sha384(b"\0\0").digest(),
        rtmr0[-1],  # Boot0000: tests/test_tdx_rtmr0.py builds it by hand
    ]
    initrd = Path(guest["initrd"]).read_bytes()
    assert (
        doc["rtmr2"]
        == fold(
            [
                hashlib.sha384("initrd=initrd console=ttyS0\0".encode("utf-16-le")).digest(),
                hashlib.sha384(initrd).digest(),
            ]
        ).hex()
    )
    if hashlib.sha256(Path(guest["kernel"]).read_bytes()).hexdigest() == KERNEL.vmlinuz_sha256:
        assert (
            doc["rtmr1"]
            == fold(
                [
                    bytes.fromhex(KERNEL.sha384),
                    real("Calling EFI Application from Boot Option")[0],
                    real("separator")[0],
                    real("Exit Boot Services Invocation")[0],
                    real("Exit Boot Services Returned with Success")[0],
                ]
            ).hex()
        )
    verified = run_cli(["log", "verify", guest["event_log"]])
    assert verified.exit_code == 0
    assert verified.stdout.splitlines() == [
        f"rtmr0 {doc['rtmr0']}",
        f"rtmr1 {doc['rtmr1']}",
        f"rtmr2 {doc['rtmr2']}",
        "rtmr3 -",
    ]
    assert doc["rtmr_model"]["edk2"] == "2025.11"
    assert doc["rtmr_model"]["kernel_loading"] == "raw"
    # without the SMBIOS table RTMR0 is not predicted, and the note says what to give
    partial = run_cli(_done_when(fw, guest, "--secure-boot-vars", guest["nokeys"]))
    assert partial.exit_code == 0
    assert json.loads(partial.stdout)["rtmr0"] is None
    assert "--fw-cfg DIR" in partial.stderr
    assert "--smbios DIR" in partial.stderr


ACPI_NAMES = ("etc/table-loader", "etc/acpi/rsdp", "etc/acpi/tables")


def test_old_firmware_predicts_rtmr0_and_hex_lines(
    firmware: Callable[[str], Path], guest: dict[str, str]
) -> None:
    fw = firmware("OVMF.2022.fd")
    args = [
        "measure",
        "tdx",
        "--firmware",
        str(fw),
        "--memory",
        "3G",
        "--kernel",
        guest["kernel"],
        "--initrd",
        guest["initrd"],
        "--acpi",
        guest["acpi"],
        "--event-log",
        guest["event_log"],
        "--kernel-loading",
        "patched",
        "--edk2",
        "2024.11",
        "--stub-measures",
        "yes",
    ]
    result = run_cli([*args, "--output-format", "json"])
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["rtmr0"] is not None
    assert {k: doc[k] for k in ("rtmr0", "rtmr1", "rtmr2")} == replay_cel(Path(guest["event_log"]))
    hexed = run_cli(args)
    assert hexed.exit_code == 0
    assert hexed.stdout.splitlines() == [
        f"{name} {doc[name]}" for name in ("mrtd", "rtmr0", "rtmr1", "rtmr2")
    ]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--memory", "4G", "--acpi", "/nonexistent"], "not a directory"),
        (["--kernel-loading", "both", "--memory", "4G"], "--kernel-loading"),
        (["--memory", "lots"], "--memory 'lots': expected e.g. 512M"),
        ([], "--memory"),
    ],
)
def test_bad_guest_input(
    firmware: Callable[[str], Path], guest: dict[str, str], extra: list[str], message: str
) -> None:
    fw = firmware("OVMF.inteltdx.ms.fd")
    result = run_cli(["measure", "tdx", "--firmware", str(fw), "--kernel", guest["kernel"], *extra])
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_guest_options_need_a_kernel(firmware: Callable[[str], Path]) -> None:
    fw = firmware("OVMF.inteltdx.ms.fd")
    result = run_cli(["measure", "tdx", "--firmware", str(fw), "--memory", "4G"])
    assert result.exit_code == 2
    assert "--kernel" in result.stderr


def test_old_firmware_asks_for_the_release(
    firmware: Callable[[str], Path], guest: dict[str, str]
) -> None:
    fw = firmware("OVMF.2022.fd")
    result = run_cli(
        ["measure", "tdx", "--firmware", str(fw), "--memory", "2G", "--kernel", guest["kernel"]]
    )
    assert result.exit_code == 2
    assert "--edk2" in result.stderr


def test_log_verify_and_diff_of_event_logs(
    tmp_path: Path, firmware: Callable[[str], Path], guest: dict[str, str]
) -> None:
    fw = firmware("OVMF.2022.fd")
    base = [
        "measure",
        "tdx",
        "--firmware",
        str(fw),
        "--memory",
        "4G",
        "--kernel",
        guest["kernel"],
        "--initrd",
        guest["initrd"],
        "--acpi",
        guest["acpi"],
        "--kernel-loading",
        "raw",
        "--edk2",
        "2024.11",
        "--stub-measures",
        "yes",
    ]
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    printed = run_cli([*base, "--append", "console=ttyS0", "--event-log", str(a)])
    assert printed.exit_code == 0
    assert run_cli([*base, "--append", "console=ttyS1", "--event-log", str(b)]).exit_code == 0
    verified = run_cli(["log", "verify", str(a)])
    assert verified.exit_code == 0, verified.stderr
    assert verified.stdout.splitlines()[:3] == printed.stdout.splitlines()[1:4]
    same = run_cli(["log", "diff", str(a), str(a)])
    assert same.exit_code == 0
    differ = run_cli(["log", "diff", str(a), str(b)])
    assert differ.exit_code == 1
    assert differ.stdout.startswith("RTMR2 command line: digest ")
    assert "RTMR2" in differ.stderr
    # An EFI action whose digest is not its text's: named, exit 1.
    records = json.loads(a.read_text())
    action = next(r for r in records if r["content"]["event_type"] == "EV_EFI_ACTION")
    action["digests"][0]["digest"] = "00" * 48
    a.write_text(json.dumps(records))
    tampered = run_cli(["log", "verify", str(a)])
    assert tampered.exit_code == 1
    assert "Calling EFI Application" in tampered.stderr or "EV_EFI_ACTION" in tampered.stderr
    assert run_cli(["log", "verify", str(a), "--append", "x"]).exit_code == 2


def test_reference_values_carry_the_rtmrs(
    tmp_path: Path, firmware: Callable[[str], Path], guest: dict[str, str]
) -> None:
    fw = firmware("OVMF.2022.fd")
    log, events = tmp_path / "td.jsonl", tmp_path / "events.json"
    measured = run_cli(
        [
            "measure",
            "tdx",
            "--firmware",
            str(fw),
            "--memory",
            "4G",
            "--kernel",
            guest["kernel"],
            "--acpi",
            guest["acpi"],
            "--kernel-loading",
            "raw",
            "--edk2",
            "2024.11",
            "--stub-measures",
            "no",
            "--log",
            str(log),
            "--event-log",
            str(events),
            "--output-format",
            "json",
        ]
    )
    assert measured.exit_code == 0, measured.stderr
    doc = json.loads(measured.stdout)
    assert doc["rtmr2"] == "00" * 48  # the stub does not measure: no RTMR2 events
    values = run_cli(["reference-values", str(log), "--rtmr-events", str(events)])
    assert values.exit_code == 0, values.stderr
    ref = json.loads(values.stdout)
    assert ref["mr_td"] == doc["mrtd"]
    assert (ref["rtmr0"], ref["rtmr1"]) == (doc["rtmr0"], doc["rtmr1"])
    assert (ref["rtmr2"], ref["rtmr3"]) == (None, None)  # no events: not checked
    text = run_cli(
        ["reference-values", str(log), "--rtmr-events", str(events), "--format", "go-tdx-guest"]
    ).stdout
    rtmr_lines = [line.strip() for line in text.splitlines() if line.strip().startswith("rtmrs:")]
    assert len(rtmr_lines) == 4
    assert rtmr_lines[2:] == ['rtmrs: ""', 'rtmrs: ""']
    expected_r1 = "".join(f"\\x{b:02x}" for b in bytes.fromhex(doc["rtmr1"]))
    assert rtmr_lines[1] == f'rtmrs: "{expected_r1}"'


def test_report_check_compares_the_predicted_rtmrs(
    tmp_path: Path, firmware: Callable[[str], Path], guest: dict[str, str]
) -> None:
    from tests import attest_builders as b

    fw = firmware("OVMF.2022.fd")
    log, events = tmp_path / "td.jsonl", tmp_path / "events.json"
    measured = run_cli(
        [
            "measure",
            "tdx",
            "--firmware",
            str(fw),
            "--memory",
            "2G",
            "--kernel",
            guest["kernel"],
            "--initrd",
            guest["initrd"],
            "--append",
            "quiet",
            "--acpi",
            guest["acpi"],
            "--kernel-loading",
            "patched",
            "--edk2",
            "2024.08",
            "--stub-measures",
            "yes",
            "--log",
            str(log),
            "--event-log",
            str(events),
            "--output-format",
            "json",
        ]
    )
    assert measured.exit_code == 0, measured.stderr
    doc = json.loads(measured.stdout)
    ref = tmp_path / "ref.json"
    ref.write_text(run_cli(["reference-values", str(log), "--rtmr-events", str(events)]).stdout)
    fields = {"mr_td": bytes.fromhex(doc["mrtd"])}
    fields |= {f"rtmr{i}": bytes.fromhex(doc[f"rtmr{i}"]) for i in range(3)}
    quote = tmp_path / "q.bin"
    quote.write_bytes(b.tdx_quote(b.td_body(584, **fields)))
    ok = run_cli(["report", "check", str(quote), "--reference-values", str(ref)])
    assert ok.exit_code == 0, ok.output
    assert "rtmr2: ok" in ok.stdout
    fields["rtmr2"] = bytes(48)  # a TD whose stub measured nothing
    quote.write_bytes(b.tdx_quote(b.td_body(584, **fields)))
    bad = run_cli(["report", "check", str(quote), "--reference-values", str(ref)])
    assert bad.exit_code == 1
    assert f"rtmr2: DIFFERS: expected {doc['rtmr2']}, got {'00' * 48}" in bad.stdout


def test_event_log_outputs(firmware: Callable[[str], Path], guest: dict[str, str]) -> None:
    fw = firmware("OVMF.inteltdx.ms.fd")
    base = ["measure", "tdx", "--firmware", str(fw), "--memory", "4G", "--kernel", guest["kernel"]]
    base += ["--secure-boot-vars", guest["nokeys"]]
    to_stdout = run_cli([*base, "--event-log", "-"])
    assert to_stdout.exit_code == 0, to_stdout.stderr
    assert json.loads(to_stdout.stdout)[0]["content"]["event_type"] == (
        "EV_EFI_BOOT_SERVICES_APPLICATION"
    )
    over_kernel = run_cli([*base, "--event-log", guest["kernel"]])
    assert over_kernel.exit_code == 2
    assert len(over_kernel.stderr.strip().splitlines()) == 1
    both = run_cli([*base, "--event-log", "-", "--log", "-"])
    assert both.exit_code == 2
    assert "standard output" in both.stderr


def _rtmr_launch_log(
    tmp_path: Path, fw: Path, guest: dict[str, str], append: str, name: str = "td.jsonl"
) -> tuple[Path, dict[str, object]]:
    log = tmp_path / name
    result = run_cli(
        [
            "measure",
            "tdx",
            "--firmware",
            str(fw),
            "--memory",
            "4G",
            "--kernel",
            guest["kernel"],
            "--initrd",
            guest["initrd"],
            "--append",
            append,
            "--acpi",
            guest["acpi"],
            "--kernel-loading",
            "raw",
            "--edk2",
            "2024.11",
            "--stub-measures",
            "yes",
            "--log",
            str(log),
            "--output-format",
            "json",
        ]
    )
    assert result.exit_code == 0, result.stderr
    return log, json.loads(result.stdout)


def test_launch_log_carries_the_rtmr_events(
    tmp_path: Path, firmware: Callable[[str], Path], guest: dict[str, str]
) -> None:
    fw = firmware("OVMF.2022.fd")
    log, doc = _rtmr_launch_log(tmp_path, fw, guest, "console=ttyS0")
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert lines[0]["version"] == 4
    events = [r for r in lines if r["record"] == "rtmr_event"]
    ranges = [n for n, r in enumerate(lines) if r["record"] == "range"]
    assert ranges
    assert min(n for n, r in enumerate(lines) if r["record"] == "rtmr_event") > max(ranges)
    # the footer's RTMRs, replayed here from the spec's fold over the records' digests
    regs = [bytes(48)] * 4
    for e in events:
        regs[e["rtmr"]] = hashlib.sha384(regs[e["rtmr"]] + bytes.fromhex(e["digest"])).digest()
    footer = lines[-1]
    assert footer["events"] == len(events)
    assert footer["rtmrs"][:3] == [regs[0].hex(), regs[1].hex(), regs[2].hex()]
    assert footer["rtmrs"][3] is None
    assert footer["rtmrs"][:3] == [doc["rtmr0"], doc["rtmr1"], doc["rtmr2"]]
    assert footer["digest"] == doc["mrtd"]
    assert "/" not in log.read_text().split("\n")[0].split('"inputs"')[1].split('"initial')[0]
    bare = run_cli(["log", "verify", str(log)])
    assert bare.exit_code == 0, bare.stdout + bare.stderr
    assert "unchecked: the RTMR events" in bare.stdout
    full = run_cli(
        [
            "log",
            "verify",
            str(log),
            "--inputs",
            str(Path(guest["kernel"]).parent),
            "--inputs",
            str(Path(guest["initrd"]).parent),
            "--inputs",
            str(fw.parent),
            "--acpi",
            guest["acpi"],
            "--append",
            "console=ttyS0",
            "--require-inputs",
        ]
    )
    assert full.exit_code == 0, full.stdout + full.stderr
    assert f"OK 6 records, {len(events)} RTMR events, digest {doc['mrtd']}" in full.stdout
    ref = run_cli(["reference-values", str(log)])
    assert ref.exit_code == 0, ref.stderr
    values = json.loads(ref.stdout)
    assert [values[f"rtmr{i}"] for i in range(4)] == [*footer["rtmrs"][:3], None]
    # log diff: two launches that differ in --append name the RTMR2 command line event
    other, _ = _rtmr_launch_log(tmp_path, fw, guest, "console=ttyS1", "other.jsonl")
    differ = run_cli(["log", "diff", str(log), str(other)])
    assert differ.exit_code == 1, differ.stdout + differ.stderr
    assert "first differing RTMR event: RTMR2 command line: digest " in differ.stdout
    assert "verdict: same final digest, the RTMRs differ: RTMR2" in differ.stdout
    assert "the RTMRs differ" in differ.stderr
    assert run_cli(["log", "diff", str(log), str(log)]).exit_code == 0


def test_a_launch_log_of_a_2025_11_td_checks_every_event_against_its_host_inputs(
    tmp_path: Path, firmware: Callable[[str], Path], guest: dict[str, str]
) -> None:
    """measure tdx --log of an edk2 2026.08 TD with all host inputs: log verify with the same
    inputs re-predicts every RTMR event (--require-inputs passes); a different SMBIOS table
    or a different bootorder is named; without them RTMR0 is listed as unchecked."""
    from tests.test_smbios import ep32

    fw = firmware("OVMF.inteltdx.ms.fd")
    tables = tmp_path / "tables"
    tables.mkdir()
    dmi = Path(guest["smbios"]).read_bytes()
    (tables / "DMI").write_bytes(dmi)
    (tables / "smbios_entry_point").write_bytes(ep32(len(dmi)))
    log = tmp_path / "td.jsonl"
    host = ["--fw-cfg", guest["fw_cfg"], "--smbios", str(tables)]
    host += ["--secure-boot-vars", guest["nokeys"]]
    common = ["--kernel", guest["kernel"], "--initrd", guest["initrd"], "--append", "quiet"]
    measured = run_cli(
        ["measure", "tdx", "--firmware", str(fw), "--memory", "4G", *common, *host,
         "--stub-measures", "yes", "--log", str(log), "--output-format", "json"]
    )  # fmt: skip
    assert measured.exit_code == 0, measured.stderr
    assert json.loads(measured.stdout)["rtmr0"] is not None
    header = json.loads(log.read_text().splitlines()[0])
    roles = {i["role"] for i in header["inputs"]}
    assert {"fw_cfg_bootorder", "smbios", "smbios_entry_point"} <= roles
    assert not any(r.startswith("secure_boot_") for r in roles)  # none given: none logged
    assert header["settings"]["rtmr_secure_boot"] == "inputs"
    assert header["settings"]["rtmr_boot_menu"] is False
    verify = ["log", "verify", str(log), "--firmware", str(fw), *common]
    ok = run_cli([*verify, *host, "--require-inputs"])
    assert ok.exit_code == 0, ok.output
    partial = run_cli(verify)
    assert partial.exit_code == 0
    assert "smbios" in partial.stdout
    assert run_cli([*verify, *host, "--boot-menu"]).exit_code == 2  # not a verify option
    # a log that claims -boot menu=on: the BootMenu fw_cfg event is named
    lines = log.read_text().splitlines()
    edited = json.loads(lines[0])
    edited["settings"]["rtmr_boot_menu"] = True
    (tmp_path / "menu.jsonl").write_text("\n".join([json.dumps(edited), *lines[1:]]) + "\n")
    menu = run_cli(["log", "verify", str(tmp_path / "menu.jsonl"), *verify[3:], *host])
    assert menu.exit_code == 1
    assert "(RTMR0 fw_cfg BootMenu): digest" in menu.stdout
    # a TD whose firmware published other SMBIOS tables (more RAM): the input is named
    (tables / "DMI").write_bytes(qemu_q35_table(8 << 30))
    other = run_cli([*verify, *host])
    assert other.exit_code == 1
    assert "input smbios" in other.stdout
