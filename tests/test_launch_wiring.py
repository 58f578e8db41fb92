"""``cvmlaunch launch`` carries the launch identity from the flags to the KVM calls: SNP policy
to LAUNCH_START, HOST_DATA and the ID block pair to LAUNCH_FINISH, the TDX MR values to
INIT_VM (fake kernel: this host has neither SNP nor TDX), and into the log header."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from cvmlaunch import kvm_map
from cvmlaunch.cli._launch import (
    TDX_ATTRIBUTES,
    TDX_XFAM,
    _populate,
    example_config,
    header_settings,
    load_plan,
    open_vm,
)
from cvmlaunch.errors import CvmLaunchError
from cvmlaunch.image.ovmf import parse_ovmf
from cvmlaunch.launch import LaunchSettings, Tech, settings_from_toml
from cvmlaunch.log_entry import LogOp
from cvmlaunch.measure import identity as ident
from cvmlaunch.measure.cpu import vcpu_type_signature
from cvmlaunch.measure.reference import ReferenceValues
from cvmlaunch.measure.snp import SnpSettings, snp_digest
from tests.cli_runner import run_cli
from tests.fakekvm import FakeKernel
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


def test_snp_identity_reaches_launch_start_and_finish(id_files: tuple[Path, Path]) -> None:
    """The example guest as an SNP plan, populated through the launcher's own path: the fake
    firmware sees the policy, the host data and the ID block pair byte for byte."""
    settings = _example(
        tech="snp",
        policy="0x30000",
        host_data=HOST_DATA.hex(),
        id_block=str(id_files[0]),
        id_auth=str(id_files[1]),
    )
    kernel = FakeKernel()
    with load_plan(settings) as plan:
        vm, finish = open_vm(plan, kernel=kernel)
        with vm:
            memory = plan.layout.memory
            assert memory is not None
            vm.map_memory(memory)
            records, _ = _populate(vm, plan.layout, finish)
        recorded = header_settings(plan)
    assert kernel.launch_params == {
        "policy": 0x30000,
        "host_data": HOST_DATA,
        "id_block": BLOCK_RAW,
        "id_auth": AUTH_RAW,
        "auth_key_en": True,
    }
    assert kernel.journal[-1] == ("SNP_LAUNCH_FINISH", HOST_DATA, 1)
    assert [e.op for e in records] == [LogOp.SNP_LAUNCH_UPDATE] * len(records)
    assert kernel.open_fds() == []
    # the header records it; a verifier reads the ID key digests from it
    assert recorded["host_data"] == HOST_DATA.hex()
    assert recorded["policy"] == "0x30000"
    values = ReferenceValues.from_settings("sev-snp", BLOCK.ld, recorded)
    assert values.id_key_digest == ident.key_digest(ID_KEY)
    assert values.author_key_digest == ident.key_digest(AUTHOR_KEY)


def test_snp_defaults_reach_the_firmware() -> None:
    kernel = FakeKernel()
    with load_plan(_example(tech="snp")) as plan:
        vm, finish = open_vm(plan, kernel=kernel)
        vm.close()
    assert finish == kvm_map.SnpFinish()
    assert kernel.launch_params == {"policy": 0x30000}


def test_tdx_mr_values_reach_init_vm() -> None:
    mrs = {"mrconfigid": b"\x11" * 48, "mrowner": bytes(range(48)), "mrownerconfig": b"\xee" * 48}
    kernel = FakeKernel()
    with load_plan(_example(tech="tdx", **{k: v.hex() for k, v in mrs.items()})) as plan:
        vm, finish = open_vm(plan, kernel=kernel)
        vm.close()
        recorded = header_settings(plan)
    assert finish is None
    assert kernel.launch_params == {"attributes": TDX_ATTRIBUTES, "xfam": TDX_XFAM, **mrs}
    assert {k: recorded[k] for k in mrs} == {k: v.hex() for k, v in mrs.items()}
    assert kernel.open_fds() == []


@pytest.mark.parametrize("tech", [Tech.SNP, Tech.TDX])
def test_open_vm_closes_the_vm_when_a_launch_call_fails(tech: Tech) -> None:
    """Every system call of open_vm failing in turn (INIT2, LAUNCH_START and INIT_VM
    included) leaves no fd open."""
    failures = 0
    for n in range(100):
        kernel = FakeKernel(fail_at=n)
        with load_plan(_example(tech=tech.label)) as plan:
            try:
                vm, _ = open_vm(plan, kernel=kernel)
            except CvmLaunchError:
                assert kernel.open_fds() == [], n
                failures += 1
                continue
        kernel.fail_at = None
        vm.close()
        assert kernel.open_fds() == []
        break
    else:
        pytest.fail("open_vm never succeeded")
    assert failures > 12


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
