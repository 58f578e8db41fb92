"""``cvmlaunch report check`` and ``cvmlaunch reference-values snp|tdx``: a report built from a
real ``measure snp --log`` run, signed with a test VCEK under a self-made ARK/ASK chain.

The commands run through the root command (:func:`cli`, click's CliRunner); the routing of
``reference-values`` is also driven on its own group (:func:`invoke`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from cvmlaunch.errors import CvmLaunchError
from cvmlaunch.measure import identity as ident
from cvmlaunch.measure.log import parse_log
from tests import attest_builders as b
from tests.cli_runner import run_cli
from tests.test_identity import AUTHOR_KEY, ID_KEY
from tests.vectors import attest_field, attest_file

Firmware = Callable[[str], Path]


@dataclass(frozen=True)
class Outcome:
    exit_code: int
    stdout: str
    error: str


def cli(args: list[str]) -> Outcome:
    """``cvmlaunch ARGS``: exit code, stdout, and the one error line on stderr."""
    result = run_cli(args)
    return Outcome(result.exit_code, result.stdout, result.stderr.strip())


def invoke(command: click.Command, args: list[str]) -> Outcome:
    result = CliRunner().invoke(command, args)
    exc = result.exception
    if isinstance(exc, CvmLaunchError):
        return Outcome(exc.exit_code, result.stdout, f"cvmlaunch: error: {exc}")
    if exc is not None and not isinstance(exc, SystemExit):
        raise exc
    return Outcome(result.exit_code, result.stdout, "")


@dataclass(frozen=True)
class Launch:
    log: Path
    digest: bytes
    block: ident.IdBlock
    auth: ident.IdAuth


def _launch(tmp: Path, firmware: Firmware) -> Launch:
    """`measure snp --log` with an ID block (ID key + author key), a policy and host data."""
    ovmf = str(firmware("OVMF.amdsev.fd"))
    base = ["measure", "snp", "--ovmf", ovmf, "--vcpus", "4", "--vcpu-type", "EPYC-Genoa"]
    first = run_cli(base)
    assert first.exit_code == 0, first.output
    digest = bytes.fromhex(first.stdout.strip())
    block = ident.IdBlock(digest, b"\x0f" * 16, b"\x1e" * 16, 5, ident.GuestPolicy(0x30000))
    auth = ident.sign_id_block(block, ID_KEY, AUTHOR_KEY)
    (tmp / "id-block.bin").write_bytes(block.pack())
    (tmp / "id-auth.bin").write_bytes(auth.pack())
    log = tmp / "launch.jsonl"
    identity = ["--policy", "0x30000", "--host-data", "c3" * 32]
    identity += ["--id-block", str(tmp / "id-block.bin"), "--id-auth", str(tmp / "id-auth.bin")]
    second = run_cli([*base, *identity, "--log", str(log)])
    assert second.exit_code == 0, second.output
    assert parse_log(log.read_text()).footer.digest == digest
    return Launch(log, digest, block, auth)


def _report(launch: Launch, tmp: Path, name: str = "report.bin", /, **changes: int | bytes) -> Path:
    """The report the firmware gives that launch (ABI: SNP_LAUNCH_FINISH), signed by the VCEK."""
    fields: dict[str, int | bytes] = {
        "measurement": launch.digest,
        "policy": 0x30000,
        "host_data": b"\xc3" * 32,
        "family_id": launch.block.family_id,
        "image_id": launch.block.image_id,
        "guest_svn": launch.block.guest_svn,
        "id_key_digest": ident.key_digest(ID_KEY),
        "author_key_digest": ident.key_digest(AUTHOR_KEY),
        "key_info": 1,
        "report_data": b"\x77" * 64,
        **changes,
    }
    path = tmp / name
    path.write_bytes(b.sign_snp(b.snp_report_bytes(**fields), b.chain().vcek_key))
    return path


def _certs(tmp: Path) -> list[str]:
    (tmp / "vcek.pem").write_bytes(b.chain().vcek_pem())
    (tmp / "cert_chain.pem").write_bytes(b.chain().chain_pem())
    return ["--vcek", str(tmp / "vcek.pem"), "--cert-chain", str(tmp / "cert_chain.pem")]


@pytest.fixture
def launch(tmp_path: Path, firmware: Firmware) -> Launch:
    return _launch(tmp_path, firmware)


def test_the_launch_report_checks_out(tmp_path: Path, launch: Launch) -> None:
    report = _report(launch, tmp_path)
    out = cli(["report", "check", str(report), "--log", str(launch.log), *_certs(tmp_path)])
    assert out.exit_code == 0, out
    lines = out.stdout.splitlines()
    assert lines[0] == f"{report}: SEV-SNP attestation report v3"
    assert [line.split(":")[0].strip() for line in lines[1:-1]] == [
        "measurement",
        "policy",
        "host_data",
        "family_id",
        "image_id",
        "guest_svn",
        "id_key_digest",
        "author_key_en",
        "author_key_digest",
        "signature",
        "cert_chain",
    ]
    assert lines[-1] == "OK"


FIELD_CHANGES: dict[str, int | bytes] = {
    "measurement": b"\x01" * 48,
    "policy": 0x70000,
    "host_data": b"\xc4" * 32,
    "family_id": b"\x0e" * 16,
    "image_id": b"\x1f" * 16,
    "guest_svn": 4,
    "id_key_digest": b"\x02" * 48,
    "author_key_digest": b"\x03" * 48,
    "key_info": 0,
}


@pytest.mark.parametrize("field", sorted(FIELD_CHANGES))
def test_any_one_field_changed_is_named(tmp_path: Path, launch: Launch, field: str) -> None:
    report = _report(launch, tmp_path, **{field: FIELD_CHANGES[field]})
    out = cli(["report", "check", str(report), "--log", str(launch.log), *_certs(tmp_path)])
    named = "author_key_en" if field == "key_info" else field
    assert out.exit_code == 1
    assert out.error == f"cvmlaunch: error: {report}: does not hold: {named}"
    differs = [line for line in out.stdout.splitlines() if "DIFFERS" in line]
    assert len(differs) == 1
    assert differs[0].strip().startswith(f"{named}: DIFFERS: expected ")


def test_a_wrong_key_is_a_signature_failure(tmp_path: Path, launch: Launch) -> None:
    report = _report(launch, tmp_path)
    other = b.Chain("Genoa", serial=40)
    (tmp_path / "other.pem").write_bytes(other.vcek_pem())
    out = cli(
        [
            "report",
            "check",
            str(report),
            "--log",
            str(launch.log),
            "--vcek",
            str(tmp_path / "other.pem"),
        ],
    )
    assert out.exit_code == 1
    assert out.error.endswith("does not hold: signature")
    assert "signature: DIFFERS: report signature: does not verify with the key of" in out.stdout
    # and the right VCEK under someone else's chain
    (tmp_path / "other_chain.pem").write_bytes(other.chain_pem())
    args = ["--vcek", str(tmp_path / "vcek.pem"), "--cert-chain", str(tmp_path / "other_chain.pem")]
    _certs(tmp_path)
    out = cli(["report", "check", str(report), "--log", str(launch.log), *args])
    assert out.exit_code == 1
    assert out.error.endswith("does not hold: cert_chain")


def test_json_for_tools(tmp_path: Path, launch: Launch) -> None:
    report = _report(launch, tmp_path, host_data=bytes(32))
    out = cli(["report", "check", str(report), "--log", str(launch.log), "--json"])
    assert out.exit_code == 1
    doc = json.loads(out.stdout)
    assert doc["ok"] is False
    assert doc["signature_checked"] is False
    assert [c for c in doc["checks"] if not c["ok"]] == [
        {"check": "host_data", "ok": False, "expected": "c3" * 32, "got": "00" * 32}
    ]


def test_against_a_reference_set(tmp_path: Path, launch: Launch, firmware: Firmware) -> None:
    ovmf = str(firmware("OVMF.amdsev.fd"))
    made = cli(
        [
            "reference-values",
            "snp",
            "--ovmf",
            ovmf,
            "--vcpus",
            "1-8",
            "--vcpu-type",
            "EPYC-Milan",
            "--vcpu-type",
            "EPYC-Genoa",
            "--policy",
            "0x30000",
        ],
    )
    assert made.exit_code == 0, made
    (tmp_path / "set.json").write_text(made.stdout)
    report = _report(launch, tmp_path)
    out = cli(["report", "check", str(report), "--reference-values", str(tmp_path / "set.json")])
    assert out.exit_code == 0, out
    assert (
        "  matches: firmware=OVMF.amdsev.fd vcpu_type=EPYC-Genoa vcpus=4 vmm_type=QEMU "
        "guest_features=0x1" in out.stdout
    )
    assert "  signature: not checked (no --vcek)" in out.stdout
    bad = _report(launch, tmp_path, "bad.bin", measurement=bytes(48))
    out = cli(["report", "check", str(bad), "--reference-values", str(tmp_path / "set.json")])
    assert out.exit_code == 1
    assert "measurement: DIFFERS: expected one of the 16 values of the set" in out.stdout


def test_malformed_reports_and_usage(tmp_path: Path, launch: Launch) -> None:
    good = _report(launch, tmp_path).read_bytes()
    log = ["--log", str(launch.log)]
    cases = {
        "short.bin": (good[:-1], "truncated SEV-SNP attestation report: 1183 bytes"),
        "long.bin": (good + b"\x00", "oversized SEV-SNP attestation report: 1185 bytes"),
        "v9.bin": (b"\x09" + good[1:], "version 9 is not one the SNP firmware ABI defines"),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        out = cli(["report", "check", str(tmp_path / name), *log])
        assert out.exit_code == 2
        assert message in out.error
    report = str(tmp_path / "report.bin")
    assert cli(["report", "check", report]).exit_code == 2
    both = cli(["report", "check", report, *log, "--reference-values", str(launch.log)])
    assert "exactly one of --log" in both.error
    assert "give --vcek too" in cli(["report", "check", report, *log, "--cert-chain", report]).error
    tdx = tmp_path / "quote.bin"
    tdx.write_bytes(b.tdx_quote(b.td_body()))
    out = cli(["report", "check", str(tdx), *log, "--vcek", report])
    assert out.exit_code == 2
    assert "TDX quote signatures are not verified here" in out.error


def test_help_says_no_network() -> None:
    for args in (
        ["report", "check", "--help"],
        ["report", "--help"],
        ["reference-values", "--help"],
        ["reference-values", "snp", "--help"],
        ["reference-values", "tdx", "--help"],
    ):
        text = " ".join(cli(args).stdout.split())
        assert "No network access is made" in text or "no network access is made" in text, args
    assert "TDX quote signatures are not verified" in " ".join(
        cli(["report", "check", "--help"]).stdout.split()
    )


def test_tdx_set_and_a_quote(tmp_path: Path, firmware: Firmware) -> None:
    fw = str(firmware("OVMF.inteltdx.ms.fd"))
    made = cli(["reference-values", "tdx", "--firmware", fw])
    assert made.exit_code == 0, made
    (tmp_path / "tdx.json").write_text(made.stdout)
    doc = json.loads(made.stdout)
    mrtd = bytes.fromhex(doc["configurations"][1]["measurement"])  # two-pass
    quote = tmp_path / "q.bin"
    quote.write_bytes(b.tdx_quote(b.td_body(648, mr_td=mrtd), version=5))
    out = cli(["report", "check", str(quote), "--reference-values", str(tmp_path / "tdx.json")])
    assert out.exit_code == 0, out
    assert "order=two-pass" in out.stdout
    assert "signature: not checked (TDX quotes need Intel's collateral)" in out.stdout
    wrong = cli(["reference-values", "tdx", "--firmware", fw, "--order", "sideways"])
    assert wrong.exit_code == 2
    assert "each must be one of per-page, two-pass" in wrong.error


@click.command("reference-values")
@click.argument("log", metavar="LOG")
@click.option("--format", "fmt", default="json")
def ECHO_LOG(log: str, fmt: str) -> None:  # noqa: N802
    """Echoes what it was given: the routing of the LOG form, apart from the LOG command."""
    click.echo(f"log={log} format={fmt}")


def test_the_log_form_and_the_subcommands_share_one_name(firmware: Firmware) -> None:
    from cvmlaunch.cli._reference_set import (
        REFERENCE_VALUES_SNP,
        REFERENCE_VALUES_TDX,
        ReferenceValuesGroup,
    )

    group = ReferenceValuesGroup(
        "reference-values",
        commands=[REFERENCE_VALUES_SNP, REFERENCE_VALUES_TDX],
        log_command="tests.test_report_cli:ECHO_LOG",
        no_args_is_help=True,
    )
    root = click.Group("cvmlaunch", commands=[group])
    assert invoke(root, ["reference-values", "a.jsonl"]).stdout == "log=a.jsonl format=json\n"
    both = invoke(root, ["reference-values", "--format", "trustee", "./snp"])
    assert both.stdout == "log=./snp format=trustee\n"
    missing = CliRunner().invoke(root, ["reference-values", "--format", "trustee"])
    assert missing.exit_code == 2
    assert "Usage: cvmlaunch reference-values [OPTIONS] LOG" in missing.output
    ovmf = str(firmware("OVMF.amdsev.fd"))
    snp = invoke(
        root, ["reference-values", "snp", "--ovmf", ovmf, "--vcpus", "1", "--vcpu-type", "EPYC"]
    )
    assert json.loads(snp.stdout)["configurations"][0]["vcpus"] == 1
    assert "Commands:" in invoke(root, ["reference-values", "--help"]).stdout
    bare = CliRunner().invoke(root, ["reference-values"])  # click: help, as a usage error
    assert "Commands:" in bare.output


def test_the_log_form_through_the_root_command(launch: Launch) -> None:
    out = cli(["reference-values", "--format", "trustee", str(launch.log)])
    assert out.exit_code == 0, out
    assert json.loads(out.stdout)["snp_launch_measurement"] == [launch.digest.hex()]
    textproto = cli(["reference-values", str(launch.log), "--format", "go-sev-guest"])
    assert "  minimum_guest_svn: 5\n" in textproto.stdout
    missing = run_cli(["reference-values", "--format", "json"])
    assert missing.exit_code == 2
    assert missing.stderr == (
        "cvmlaunch: error: Missing argument 'LOG'. (see 'cvmlaunch reference-values --help')\n"
    )


def test_a_real_milan_report_with_amds_certificates(tmp_path: Path) -> None:
    """virtee/sev's Milan report (hex text), its VCEK (DER) and AMD's chain, end to end."""
    measurement = attest_field("report_milan.hex", "measurement")
    values = {"technology": "sev-snp", "measurement": measurement, "policy": "0x30000"}
    (tmp_path / "rv.json").write_text(json.dumps(values))
    args = ["report", "check", str(attest_file("report_milan.hex"))]
    args += ["--reference-values", str(tmp_path / "rv.json")]
    args += ["--vcek", str(attest_file("vcek_milan.der"))]
    args += ["--cert-chain", str(attest_file("cert_chain_milan.pem")), "--json"]
    out = cli(args)
    assert out.exit_code == 0, out
    doc = json.loads(out.stdout)
    assert doc["kind"] == "SEV-SNP attestation report v2"
    assert [c["check"] for c in doc["checks"]] == [
        "measurement",
        "policy",
        "signature",
        "cert_chain",
    ]
    assert all(c["ok"] for c in doc["checks"])
