"""``cvmlaunch reference-values`` and ``id-block snp --from-log`` on real launch logs."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from pathlib import Path

from cvmlaunch.launch_identity import SnpLaunchIdentity, TdxLaunchIdentity
from cvmlaunch.layout import (
    VMSA_GPA,
    PageType,
    Plan,
    Provenance,
    Region,
    SourceKind,
)
from cvmlaunch.measure import identity as ident
from cvmlaunch.measure import snp_chain
from cvmlaunch.measure.log import (
    LogFooter,
    LogHeader,
    LogInput,
    MeasurementLog,
    Technology,
    dumps_log,
    parse_log,
)
from cvmlaunch.measure.reference import identity_settings
from tests.cli_runner import run_cli
from tests.test_identity import ID_KEY, ID_KEY_FILE
from tests.vectors import snp_case

FW = Provenance(SourceKind.FILE, "fw.fd", offset=0)
PLAN = Plan.of(
    [
        Region(0xFFFF_E000, 0x2000, PageType.NORMAL, True, FW, b"\x90" * 0x1800),
        Region(0x80_0000, 0x1000, PageType.ZERO, False, Provenance(SourceKind.ZERO, "z")),
        Region(VMSA_GPA, 0x1000, PageType.VMSA, True, Provenance(SourceKind.VMSA, index=0), b"v"),
    ]
)
INPUTS = (LogInput("firmware", "fw.fd", 0x1800, sha256=bytes(32)),)


def _snp_log(tmp: Path, settings: Mapping[str, str | int | bool | None]) -> tuple[Path, bytes]:
    header = LogHeader(
        Technology.SEV_SNP,
        snp_chain.SNP_ALGORITHM,
        {"vcpus": 1, **settings},
        INPUTS,
        "0.1.0",
        initial_digest=bytes(48),
    )
    log = snp_chain.log_plan(PLAN, header)
    path = tmp / "launch.jsonl"
    path.write_text(dumps_log(log))
    return path, log.footer.digest


def test_reference_values_of_an_snp_log_with_an_id_block(tmp_path: Path) -> None:
    ld = _snp_log(tmp_path, {})[1]
    block = ident.IdBlock(ld, b"\x01" * 16, b"\x02" * 16, 3, ident.GuestPolicy(0x30000))
    auth = ident.sign_id_block(block, ID_KEY)
    snp = SnpLaunchIdentity(b"\x42" * 32, block.pack(), auth.pack())
    path, digest = _snp_log(tmp_path, identity_settings(snp=snp, policy=block.policy))
    assert digest == ld
    assert parse_log(path.read_text()).header.settings["host_data"] == "42" * 32

    result = run_cli(["reference-values", str(path)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {
        "technology": "sev-snp",
        "measurement": ld.hex(),
        "policy": "0x30000",
        "host_data": "42" * 32,
        "id_key_digest": ident.key_digest(ID_KEY).hex(),
        "author_key_digest": None,
        "family_id": "01" * 16,
        "image_id": "02" * 16,
        "guest_svn": 3,
    }
    snpguest = run_cli(["reference-values", str(path), "--format", "snpguest"])
    assert snpguest.output.split()[:2] == ["--measurement", ld.hex()]


def test_reference_values_rejects_a_log_that_does_not_replay(tmp_path: Path) -> None:
    path, _ = _snp_log(tmp_path, {"host_data": "00" * 32})
    log = parse_log(path.read_text())
    forged = MeasurementLog(log.header, log.entries, LogFooter(bytes(48), log.footer.records))
    path.write_text(dumps_log(forged))
    result = run_cli(["reference-values", str(path)])
    assert result.exit_code == 1
    assert "mismatch" in result.output


def test_reference_values_rejects_an_id_block_for_another_digest(tmp_path: Path) -> None:
    block = ident.IdBlock(bytes(48))
    snp = SnpLaunchIdentity(bytes(32), block.pack(), ident.sign_id_block(block, ID_KEY).pack())
    path, _ = _snp_log(tmp_path, identity_settings(snp=snp))
    result = run_cli(["reference-values", str(path)])
    assert result.exit_code == 1
    assert "ID block launch digest" in result.output


def test_reference_values_of_a_tdx_log(tmp_path: Path) -> None:
    mrtd = bytes(range(48))
    tdx = TdxLaunchIdentity.from_hex(mrconfigid="ab" * 48)
    header = LogHeader(Technology.TDX, "tdx-mrtd", identity_settings(tdx=tdx), INPUTS, "0.1.0")
    path = tmp_path / "tdx.jsonl"
    path.write_text(dumps_log(MeasurementLog(header, (), LogFooter(mrtd, 0))))
    result = run_cli(["reference-values", str(path), "--format", "go-tdx-guest"])
    assert result.exit_code == 0, result.output
    assert "    mr_td: " + "".join(f"\\x{b:02x}" for b in mrtd).join('""') in result.stdout
    assert "    mr_config_id: " + "\\xab" * 48 in result.stdout.replace('"', "")
    wrong = run_cli(["reference-values", str(path), "--format", "snpguest"])
    assert wrong.exit_code == 2


def test_id_block_from_log(tmp_path: Path) -> None:
    path, ld = _snp_log(tmp_path, {"policy": "0x70000"})
    out = tmp_path / "out"
    args = ["id-block", "snp", "--from-log", str(path), "--id-key", str(ID_KEY_FILE)]
    result = run_cli([*args, "--out-dir", str(out)])
    assert result.exit_code == 0, result.output
    block = ident.IdBlock.unpack((out / "id-block.bin").read_bytes())
    assert block.ld == ld
    assert block.policy == ident.GuestPolicy(0x70000)  # taken from the log
    clash = run_cli([*args, "--policy", "0x30000"])
    assert clash.exit_code == 2
    assert "differs from the policy 0x70000" in clash.output
    both = run_cli([*args, "--measurement", ld.hex()])
    assert both.exit_code == 2


def test_real_firmware_log_to_id_block_and_reference_values(
    tmp_path: Path, firmware: Callable[[str], Path]
) -> None:
    """OVMF.amdsev.fd, 2 x EPYC-v4, QEMU: sev-snp-measure 0.0.13 prints the same digest."""
    expected = snp_case("amdsev-2-epyc").expected
    log = tmp_path / "launch.jsonl"
    measured = run_cli(
        [
            "measure",
            "snp",
            "--ovmf",
            str(firmware("OVMF.amdsev.fd")),
            "--vcpus",
            "2",
            "--vcpu-type",
            "EPYC-v4",
            "--log",
            str(log),
        ],
    )
    assert measured.exit_code == 0, measured.output
    assert measured.output.strip() == expected
    signed = run_cli(
        [
            "id-block",
            "snp",
            "--from-log",
            str(log),
            "--id-key",
            str(ID_KEY_FILE),
            "--output-format",
            "json",
        ],
    )
    assert signed.exit_code == 0, signed.output
    block = ident.IdBlock.unpack(base64.b64decode(json.loads(signed.output)["id_block"]))
    assert block.ld.hex() == expected
    values = run_cli(["reference-values", str(log), "--format", "trustee"])
    # measure snp records QEMU's default launch identity: policy 0x30000, zero host data
    assert json.loads(values.output) == {
        "snp_launch_measurement": [expected],
        "snp_policy": ["0x30000"],
        "snp_host_data": ["00" * 32],
    }
