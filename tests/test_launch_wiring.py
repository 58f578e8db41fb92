"""``cvmlaunch launch`` carries the launch identity from the flags to the KVM calls: SNP policy
to LAUNCH_START, HOST_DATA and the ID block pair to LAUNCH_FINISH, the TDX MR values to
INIT_VM (fake kernel: this host has neither SNP nor TDX), and into the log header."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from cvmlaunch import kvm_map
from cvmlaunch.cli._cc_launch import launch_confidential
from cvmlaunch.cli._launch import example_config
from cvmlaunch.errors import ConfigError, CvmLaunchError
from cvmlaunch.image.ovmf import parse_ovmf
from cvmlaunch.launch_settings import LaunchSettings, settings_from_toml
from cvmlaunch.launcher import load_pvh_launch, open_vm
from cvmlaunch.measure import identity as ident
from cvmlaunch.measure.log import MeasurementLog, parse_log
from cvmlaunch.measure.reference import ReferenceValues
from cvmlaunch.measure.snp import snp_digest
from cvmlaunch.plan.snp import SnpSettings
from cvmlaunch.technology import Technology
from cvmlaunch.vcpu_signature import vcpu_type_signature
from tests.cli_runner import run_cli
from tests.fakekvm import FakeKernel
from tests.model_firmware import ModelKernel
from tests.test_identity import AUTHOR_KEY, ID_KEY

HOST_DATA = bytes(range(0x40, 0x60))
BLOCK = ident.IdBlock(
    ld=bytes(range(48)),
    family_id=b"f" * 16,
    image_id=b"i" * 16,
    guest_svn=1,
    policy=ident.GuestPolicy(0x30000),
)
BLOCK_RAW = BLOCK.pack()
AUTH_RAW = ident.sign_id_block(BLOCK, ID_KEY, AUTHOR_KEY).pack()


@pytest.fixture
def id_files(tmp_path: Path) -> tuple[Path, Path]:
    """The ID block raw, the ID auth as base64 text (QEMU's form): both forms are read."""
    block, auth = tmp_path / "id-block.bin", tmp_path / "id-auth.b64"
    block.write_bytes(BLOCK_RAW)
    auth.write_text(base64.b64encode(AUTH_RAW).decode() + "\n")
    return block, auth


def _example(**overrides: object) -> LaunchSettings:
    cfg = example_config()
    return settings_from_toml(cfg.read_text(), base=str(cfg.parent), overrides=overrides)


def _firmware_launch(settings: LaunchSettings, kernel: ModelKernel, log: Path) -> MeasurementLog:
    """``launch`` of ``settings`` against the model firmware; returns the log it wrote."""
    launch_confidential(settings, dry_run=False, log_file=str(log), kernel=kernel)
    return parse_log(log.read_text())


def test_snp_identity_reaches_launch_start_and_finish(
    fw_id_files: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """The policy, the host data and the ID block pair reach SNP_LAUNCH_START and FINISH byte
    for byte, and the log header records them for a verifier."""
    fd, block, auth = fw_id_files
    settings = LaunchSettings(
        tech=Technology.SEV_SNP,
        firmware=str(fd),
        policy=0x30000,
        host_data=HOST_DATA,
        id_block=str(block),
        id_auth=str(auth),
    )
    kernel = ModelKernel(signature=vcpu_type_signature("EPYC-Milan"))
    log = _firmware_launch(settings, kernel, tmp_path / "snp.jsonl")
    assert kernel.violations == []
    assert kernel.launch_params == {
        "policy": 0x30000,
        "host_data": HOST_DATA,
        "id_block": block.read_bytes(),
        "id_auth": auth.read_bytes(),
        "auth_key_en": True,
    }
    assert kernel.journal[-1] == ("SNP_LAUNCH_FINISH", HOST_DATA, 1)
    assert kernel.open_fds() == []
    recorded = log.header.settings
    assert recorded["host_data"] == HOST_DATA.hex()
    assert recorded["policy"] == "0x30000"
    values = ReferenceValues.from_settings("sev-snp", log.digest, recorded)
    assert values.id_key_digest == ident.key_digest(ID_KEY)
    assert values.author_key_digest == ident.key_digest(AUTHOR_KEY)


def test_snp_defaults_reach_the_firmware(firmware: Any, tmp_path: Path) -> None:
    kernel = ModelKernel()
    settings = LaunchSettings(tech=Technology.SEV_SNP, firmware=str(firmware("OVMF.amdsev.fd")))
    _firmware_launch(settings, kernel, tmp_path / "snp.jsonl")
    assert kernel.launch_params["policy"] == 0x30000
    assert kernel.launch_params["host_data"] == bytes(32)
    assert kernel.launch_params["id_block"] is None


def test_tdx_mr_values_reach_init_vm(firmware: Any, tmp_path: Path) -> None:
    mrs = {"mrconfigid": b"\x11" * 48, "mrowner": bytes(range(48)), "mrownerconfig": b"\xee" * 48}
    kernel = ModelKernel()
    fd = firmware("OVMF.inteltdx.ms.fd")
    settings = LaunchSettings(
        tech=Technology.TDX,
        firmware=str(fd),
        mrconfigid=mrs["mrconfigid"],
        mrowner=mrs["mrowner"],
        mrownerconfig=mrs["mrownerconfig"],
    )
    log = _firmware_launch(settings, kernel, tmp_path / "td.jsonl")
    assert kernel.violations == []
    assert {k: kernel.launch_params[k] for k in mrs} == mrs
    assert kernel.launch_params["attributes"] == 1 << 28  # QEMU's default: SEPT_VE_DISABLE
    assert {k: log.header.settings[k] for k in mrs} == {k: v.hex() for k, v in mrs.items()}
    assert kernel.open_fds() == []


@pytest.mark.parametrize("tech", [Technology.SEV_SNP, Technology.TDX])
def test_a_failed_system_call_anywhere_in_a_confidential_launch_leaks_nothing(
    tech: Technology, firmware: Any, tmp_path: Path
) -> None:
    """Every system call of a firmware launch failing in turn (INIT2, LAUNCH_START, INIT_VM,
    every populate call, FINISH/FINALIZE, the guest's run, the closes) is an error that leaves
    no fd or mapping open; the log exists only if the launch was sealed before the failure
    (it is written then, before the guest runs)."""
    name = "OVMF.amdsev.fd" if tech is Technology.SEV_SNP else "OVMF.inteltdx.ms.fd"
    settings = LaunchSettings(tech=tech, firmware=str(firmware(name)), vcpus=2)
    log = tmp_path / "launch.jsonl"
    total = ModelKernel()
    _firmware_launch(settings, total, log)
    log.unlink()
    assert total.calls > 40
    assert total.sealed_at is not None
    for n in range(total.calls):
        kernel = ModelKernel(fail_at=n)
        with pytest.raises(CvmLaunchError):
            launch_confidential(settings, dry_run=False, log_file=str(log), kernel=kernel)
        assert kernel.open_fds() == [], n
        assert kernel.open_mappings() == 0, n
        assert log.exists() == (n >= total.sealed_at), n
        log.unlink(missing_ok=True)


def test_a_pvh_plan_is_not_launched_as_snp_or_tdx() -> None:
    kernel = FakeKernel()
    with (
        load_pvh_launch(_example(tech="snp")) as launch,
        pytest.raises(ConfigError, match="firmware"),
    ):
        open_vm(launch, kernel=kernel)
    assert not any(j[0] == "CREATE_VM" for j in kernel.journal)


@pytest.fixture
def fw_id_files(tmp_path: Path, firmware: Any) -> tuple[Path, Path, Path]:
    """OVMF.amdsev.fd and an ID block pair for its SNP launch (1 vCPU, EPYC-Milan, policy
    0x30000): the digest is measure's, so only what a test changes can fail the check."""
    fd = firmware("OVMF.amdsev.fd")
    image = parse_ovmf(fd.read_bytes(), name=fd.name)
    digest = snp_digest(image, SnpSettings(vcpus=1, vcpu_sig=vcpu_type_signature("EPYC-Milan")))
    block = ident.IdBlock(ld=digest, policy=ident.GuestPolicy(0x30000))
    block_file, auth_file = tmp_path / "id-block.bin", tmp_path / "id-auth.bin"
    block_file.write_bytes(block.pack())
    auth_file.write_bytes(ident.sign_id_block(block, ID_KEY, AUTHOR_KEY).pack())
    return fd, block_file, auth_file


def test_dry_run_shows_the_identity(
    fw_id_files: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch, firmware: Any
) -> None:
    monkeypatch.setattr(kvm_map.Kvm, "open", pytest.fail)
    fd, block, auth = fw_id_files
    args = ["launch", "--dry-run", "--tech", "snp", "--firmware", str(fd), "--host-data"]
    args += [HOST_DATA.hex(), "--vcpu-type", "EPYC-Milan"]
    args += ["--id-block", str(block), "--id-auth", str(auth)]
    result = run_cli(args)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    start = lines.index("launch identity (reported beside the launch digest, never measured):")
    assert lines[start + 1 : start + 5] == [
        "  policy         0x30000 (ABI >= 0.0, SMT, RESERVED_MBO)",
        f"  host_data      {HOST_DATA.hex()}",
        f"  id_key_digest  {ident.key_digest(ID_KEY).hex()}",
        f"  author_key_digest {ident.key_digest(AUTHOR_KEY).hex()}",
    ]
    tdx_fd = firmware("OVMF.inteltdx.ms.fd")
    tdx = run_cli(
        ["launch", "--dry-run", "--tech", "tdx", "--firmware", str(tdx_fd), "--mrowner", "ab" * 48]
    )
    assert tdx.exit_code == 0, tdx.output
    assert f"  mrowner        {'ab' * 48}" in tdx.stdout.splitlines()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--host-data", "00" * 32], "--host-data is a snp launch setting (--tech snp)"),
        (["--tech", "snp", "--mrowner", "00" * 48], "--mrowner is a tdx launch setting"),
        (["--tech", "snp", "--host-data", "00"], "host-data: 1 bytes given, exactly 32 needed"),
        (["--tech", "snp", "--policy", "0x1"], "bit 17 (reserved, must be one) is clear"),
        (["--tech", "snp", "--id-auth", "x"], "--id-block and --id-auth go together"),
        (["--tech", "tdx", "--mrconfigid", "zz"], "mrconfigid: 'zz' is not hexadecimal"),
    ],
)
def test_bad_identity_flags_exit_2(
    args: list[str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kvm_map.Kvm, "open", pytest.fail)
    result = run_cli(["launch", "--example", "--dry-run", *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr


def test_an_id_block_for_another_policy_exits_1(
    fw_id_files: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kvm_map.Kvm, "open", pytest.fail)
    fd, block, auth = fw_id_files
    args = ["launch", "--dry-run", "--tech", "snp", "--firmware", str(fd), "--policy", "0x20000"]
    args += ["--vcpu-type", "EPYC-Milan", "--id-block", str(block), "--id-auth", str(auth)]
    result = run_cli(args)
    assert result.exit_code == 1, result.output
    assert "its policy 0x30000 differs from the launch policy 0x20000" in result.stderr
