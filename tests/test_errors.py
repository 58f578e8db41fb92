"""Errors that name settings: the library names a setting by its field, the boundary spells it
(the CLI as the flag, the TOML reader as ``FILE: key``), and the exception tree's contracts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import pytest

from cvmlaunch.cli import flag_for
from cvmlaunch.cli._launch import example_config
from cvmlaunch.errors import ConfigError, KvmError, KvmUnsupported
from cvmlaunch.launch_settings import LaunchSettings, settings_from_toml
from cvmlaunch.measure.snp import SevMode
from cvmlaunch.measure.snp_predict import SnpRequest
from cvmlaunch.technology import Technology
from tests.cli_runner import run_cli
from tests.errors_util import raises_cvm


def test_a_config_error_names_its_setting_and_is_spelled_once() -> None:
    error = ConfigError("vcpus 300: expected 1 to 255", setting="vcpus")
    assert (error.setting, str(error)) == ("vcpus", "vcpus 300: expected 1 to 255")
    flag = error.spelled(lambda s: "--" + s)
    assert str(flag) == "--vcpus 300: expected 1 to 255"
    assert (flag.setting, flag.message, flag.spelled_out) == ("vcpus", str(flag), True)
    toml = error.spelled(str, source="vm.toml")
    assert str(toml) == "vm.toml: vcpus 300: expected 1 to 255"
    # the first boundary to spell it wins: the CLI does not respell a file's key
    assert toml.spelled(lambda s: "--" + s) is toml
    # only whole mentions are spelled: "memory" is not inside "memory_backend"
    both = ConfigError(
        "give vcpu_type or vcpu_sig, not both", setting="vcpu_type", also=("vcpu_sig",)
    )
    assert str(both.spelled(lambda s: "--" + s.replace("_", "-"))) == (
        "give --vcpu-type or --vcpu-sig, not both"
    )
    backend = ConfigError("memory_backend 'x' (memory 1)", setting="memory_backend")
    assert str(backend.spelled(lambda s: "<" + s + ">")) == "<memory_backend> 'x' (memory 1)"


def test_a_message_that_does_not_name_its_setting_is_a_bug() -> None:
    with pytest.raises(ValueError, match="does not name 'vcpus'"):
        ConfigError("300: expected 1 to 255", setting="vcpus")
    with pytest.raises(ValueError, match="does not name 'vcpu_sig'"):
        ConfigError("vcpu_type: give one", setting="vcpu_type", also=("vcpu_sig",))


def test_raises_cvm_checks_the_setting() -> None:
    with raises_cvm(ConfigError, setting="vcpus"):
        LaunchSettings(vcpus=300)
    with (
        pytest.raises(AssertionError, match="names setting 'vcpus', not 'memory'"),
        raises_cvm(ConfigError, setting="memory"),
    ):
        LaunchSettings(vcpus=300)


@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [
        ({"vcpus": 0}, "vcpus"),
        ({"memory": 4095}, "memory"),
        ({"timeout": 0.0}, "timeout"),
        ({"memory_backend": "hugetlb"}, "memory_backend"),
        ({"kernel": ""}, "kernel"),
        ({"append": "a\0b"}, "append"),
        ({"tech": Technology.SEV_SNP, "vcpu_type": "EPYC", "vcpu_sig": 1}, "vcpu_type"),
        ({"tech": Technology.SEV_SNP, "vcpu_sig": 1 << 64}, "vcpu_sig"),
        ({"mrowner": bytes(48)}, "mrowner"),
        ({"tech": Technology.SEV_SNP, "id_auth": "a"}, "id_auth"),
        ({"tech": Technology.SEV_SNP, "policy": 0x10000}, "policy"),
        ({"tech": Technology.SEV_SNP, "host_data": bytes(31)}, "host_data"),
        ({"tech": Technology.TDX, "mrconfigid": bytes(47)}, "mrconfigid"),
    ],
)
def test_launch_settings_name_the_field_not_a_flag(kwargs: dict[str, object], setting: str) -> None:
    with raises_cvm(ConfigError, setting=setting) as info:
        LaunchSettings(**kwargs)  # type: ignore[arg-type]
    assert "--" not in str(info.value)


def test_the_toml_reader_spells_its_keys_and_leaves_flags_to_the_cli() -> None:
    with raises_cvm(ConfigError, setting="vcpu_sig", match=r"^vm\.toml: vcpu-sig 0x1"):
        settings_from_toml('tech = "snp"\nvcpu-sig = "0x10000000000000000"', source="vm.toml")
    with raises_cvm(ConfigError, setting="vcpu_sig", match=r"^vcpu_sig 0x1") as info:
        settings_from_toml('tech = "snp"', overrides={"vcpu_sig": 1 << 64}, source="vm.toml")
    assert not info.value.spelled_out


def test_flag_for_reads_the_click_params() -> None:
    @click.command()
    @click.option("-m", "--memory", "memory")
    @click.option("--format", "fmt")
    @click.option("--snp-ovmf-hash")
    def command(memory: str, fmt: str, snp_ovmf_hash: str) -> None:
        """A command."""

    assert flag_for(command, "memory") == "--memory"
    assert flag_for(command, "snp_ovmf_hash") == "--snp-ovmf-hash"
    assert flag_for(command, "format") == "--format"  # the param is "fmt": by its name
    assert flag_for(command, "ovmf_hash") == "--snp-ovmf-hash"  # SETTING_FLAGS
    assert flag_for(None, "host_data") == "--host-data"


@pytest.mark.parametrize(
    ("key", "toml_value", "flag", "flag_value", "message"),
    [
        ("vcpus", "0", "--vcpus", "0", "vcpus 0: expected 1 to 255"),
        ("timeout", "-1", "--timeout", "-1", "timeout -1.0: expected a positive number"),
        ("vcpu-sig", '"0x10000000000000000"', "--vcpu-sig", "0x10000000000000000", "vcpu-sig"),
        ("memory", '"lots"', "--memory", "lots", "memory 'lots': expected e.g. 512M"),
        ("mrowner", '"00"', "--mrowner", "00", "mrowner: 1 bytes given, exactly 48 needed"),
    ],
)
def test_the_same_bad_value_names_the_file_key_or_the_flag(
    tmp_path: Path, key: str, toml_value: str, flag: str, flag_value: str, message: str
) -> None:
    guest = example_config().parent / "example-guest.elf"
    cfg = tmp_path / "vm.toml"
    cfg.write_text(f'kernel = "{guest}"\ntech = "snp"\n{key} = {toml_value}\n')
    in_file = run_cli(["launch", "--config", str(cfg), "--dry-run"])
    assert in_file.exit_code == 2, in_file.output
    assert in_file.stderr.startswith(f"cvmlaunch: error: {cfg}: {message}")
    good = tmp_path / "good.toml"
    good.write_text(f'kernel = "{guest}"\ntech = "snp"\n')
    on_cli = run_cli(["launch", "--config", str(good), "--dry-run", flag, flag_value])
    assert on_cli.exit_code == 2, on_cli.output
    spelled = message.replace(key, flag, 1) if message.startswith(key) else f"{flag} "
    assert on_cli.stderr.startswith(f"cvmlaunch: error: {spelled}")
    for result in (in_file, on_cli):
        assert len(result.stderr.splitlines()) == 1
        assert "Traceback" not in result.stderr


def test_kvm_unsupported_is_a_kvm_error_of_the_capability_check() -> None:
    error = KvmUnsupported("KVM_CAP_GUEST_MEMFD", detail="flags 0")
    assert isinstance(error, KvmError)
    assert (error.op, error.errno, error.fw_error, error.remaining, error.cap) == (
        "capability check",
        None,
        None,
        None,
        "KVM_CAP_GUEST_MEMFD",
    )
    assert str(error) == "this host's KVM does not offer KVM_CAP_GUEST_MEMFD (flags 0)"
    assert error.exit_code == 2


def test_programming_errors_are_not_cvmlaunch_errors() -> None:
    """A call no input can cause is a bug: a plain exception, not a one-line exit 2."""
    from cvmlaunch.kvm_map import Vm, VmType, populate
    from cvmlaunch.layout import Plan
    from cvmlaunch.memory_map import MemoryMap
    from tests.fakekvm import FakeKernel

    kernel = FakeKernel()
    with Vm.open(VmType.DEFAULT, kernel=kernel) as vm:
        vm.map_memory(MemoryMap.for_size(2 << 20))
        with pytest.raises(ValueError, match=r"is outside memslot 0"):
            vm.memory[0].write(vm.memory[0].end - 1, b"ab")
        with pytest.raises(ValueError, match="no general register called 'rzz'"):
            vm.create_vcpu()._set_regs(rzz=1)
    with (
        Vm.open(VmType.TDX, kernel=FakeKernel()) as vm,
        pytest.raises(ValueError, match="TDX populate needs a vCPU"),
    ):
        populate(vm, Plan.of((), MemoryMap.for_size(2 << 20)))


def test_a_value_that_ends_in_a_setting_name_is_not_a_mention() -> None:
    """``svsm`` in ``mode snp:svsm`` is the mode's value, not the setting ``svsm``."""
    error = ConfigError("mode snp:svsm needs svsm", setting="svsm", also=("mode",))
    assert str(error.spelled(lambda s: "--" + s)) == "--mode snp:svsm needs --svsm"
    with pytest.raises(ValueError, match="does not name 'svsm'"):
        ConfigError("mode snp:svsm needs a file", setting="svsm")


def test_flag_for_spells_library_names_the_cli_gives_another_flag() -> None:
    @click.command()
    @click.option("--append")
    @click.option("--snp-ovmf-hash")
    def command(append: str, snp_ovmf_hash: str) -> None:
        """A command."""

    # SnpRequest.cmdline is what --append gives; ovmf_hash is --snp-ovmf-hash's digest
    assert flag_for(command, "cmdline") == "--append"
    assert flag_for(None, "cmdline") == "--append"
    assert flag_for(command, "ovmf_hash") == "--snp-ovmf-hash"


_SNP = {"vcpus": 1, "vcpu_sig": 0}


@pytest.mark.parametrize(
    ("kwargs", "setting", "also"),
    [
        ({**_SNP, "cmdline": b"quiet"}, "cmdline", ("initrd", "kernel")),
        ({**_SNP, "initrd_sha256": bytes(32)}, "initrd", ("cmdline", "kernel")),
        ({"mode": SevMode.SEV, "ovmf_hash": bytes(48)}, "ovmf_hash", ("mode",)),
        ({"mode": SevMode.SNP_OVMF_HASH, "kernel_sha256": bytes(32)}, "kernel", ("mode",)),
        ({**_SNP, "mode": SevMode.SNP_SVSM}, "svsm", ("mode",)),
        ({**_SNP, "mode": SevMode.SNP_SVSM, "svsm": True}, "vars_size", ("mode", "vars_file")),
        (
            {
                **_SNP,
                "mode": SevMode.SNP_SVSM,
                "svsm": True,
                "vars_size": 0,
                "kernel_sha256": bytes(32),
            },
            "kernel",
            ("mode",),
        ),
        ({**_SNP, "svsm": True}, "svsm", ("vars_size", "vars_file", "mode")),
        ({**_SNP, "vars_size": 0}, "vars_size", ("svsm", "vars_file", "mode")),
        ({"mode": SevMode.SEV, "host_data": bytes(32)}, "host_data", ("mode",)),
        ({**_SNP, "id_auth": bytes(4096)}, "id_auth", ("id_block",)),
        ({"mode": SevMode.SEV_ES, "vcpu_sig": 0}, "vcpus", ("mode",)),
        (
            {"vcpus": 1},
            "vcpu_sig",
            ("mode", "vcpu_type", "vcpu_family", "vcpu_model", "vcpu_stepping"),
        ),
    ],
)
def test_snp_requests_name_the_setting_not_a_flag(
    kwargs: dict[str, object], setting: str, also: tuple[str, ...]
) -> None:
    with raises_cvm(ConfigError, setting=setting) as info:
        SnpRequest(**kwargs)  # type: ignore[arg-type]
    assert info.value.also == also
    assert "--" not in str(info.value)


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--append", "quiet"], "--initrd and --append need --kernel"),
        (["--initrd-sha256", "00" * 32], "--initrd and --append need --kernel"),
        (
            ["--mode", "sev", "--snp-ovmf-hash", "00" * 48],
            "--snp-ovmf-hash works only with --mode snp",
        ),
        (
            ["--mode", "snp:ovmf-hash", "--kernel-sha256", "00" * 32],
            "--mode snp:ovmf-hash measures the firmware only (no --kernel)",
        ),
        (["--mode", "snp:svsm"], "--mode snp:svsm needs --svsm"),
        (
            ["--mode", "snp:svsm", "--svsm", "{fw}"],
            "--mode snp:svsm needs exactly one of --vars-size or --vars-file",
        ),
        (
            [
                "--mode",
                "snp:svsm",
                "--svsm",
                "{fw}",
                "--vars-size",
                "0",
                "--kernel-sha256",
                "00" * 32,
            ],
            "--mode snp:svsm does not take --kernel",
        ),
        (["--vars-file", "{fw}"], "--svsm, --vars-size and --vars-file belong to --mode snp:svsm"),
        (
            ["--mode", "sev", "--host-data", "00" * 32],
            "--host-data is an SNP launch setting (--mode snp or snp:svsm)",
        ),
        (["--id-auth", "{fw}"], "--id-block and --id-auth go together"),
        (
            ["--kernel", "{fw}", "--kernel-sha256", "00" * 32],
            "give --kernel or --kernel-sha256, not both",
        ),
        (
            ["--initrd", "{fw}", "--initrd-sha256", "00" * 32],
            "give --initrd or --initrd-sha256, not both",
        ),
        (
            ["--mode", "seves", "--vcpus", "1"],
            "--mode seves with QEMU needs --vcpu-type, --vcpu-sig "
            "or --vcpu-family/--vcpu-model/--vcpu-stepping",
        ),
    ],
)
def test_measure_snp_spells_the_request_settings_as_its_flags(
    firmware: Any, args: list[str], line: str
) -> None:
    fw = str(firmware("OVMF.amdsev.fd"))
    vcpus = [] if "--vcpus" in args else ["--vcpus", "1", "--vcpu-sig", "0"]
    argv = ["measure", "snp", "--ovmf", fw, *vcpus, *(a.format(fw=fw) for a in args)]
    result = run_cli(argv)
    assert result.exit_code == 2, result.output
    assert result.stderr == f"cvmlaunch: error: {line}\n"


def test_the_firmware_launcher_names_settings_not_flags(firmware: Any) -> None:
    from cvmlaunch.launcher import FirmwareLaunch
    from cvmlaunch.launcher.firmware import load_firmware_launch

    snp = str(firmware("OVMF.amdsev.fd"))
    cases = [
        (FirmwareLaunch("snp", snp, 64 << 20, 1, initrd=snp), "initrd", ("append", "kernel")),
        (FirmwareLaunch("snp", snp, 64 << 20, 1), "vcpu_type", ("vcpu_sig",)),
    ]
    for req, setting, also in cases:
        with raises_cvm(ConfigError, setting=setting) as info, load_firmware_launch(req):
            pass
        assert info.value.also == also
        assert "--" not in str(info.value)


def test_a_pvh_launch_of_a_confidential_plan_names_tech_and_firmware() -> None:
    from cvmlaunch.launcher.pvh import load_pvh_launch, open_vm
    from tests.fakekvm import FakeKernel

    cfg = example_config()
    settings = settings_from_toml(cfg.read_text(), base=str(cfg.parent), overrides={"tech": "snp"})
    with (
        load_pvh_launch(settings) as launch,
        raises_cvm(ConfigError, setting="firmware", match="^tech snp needs firmware") as info,
    ):
        open_vm(launch, kernel=FakeKernel())
    assert info.value.also == ("tech",)


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["--tech", "snp", "--firmware", "{snp}", "--initrd", "{snp}"],
            "--initrd and --append need --kernel",
        ),
        (
            ["--tech", "snp", "--firmware", "{snp}"],
            "a dry run asks no host CPU: give --vcpu-type or --vcpu-sig",
        ),
    ],
)
def test_launch_spells_the_firmware_launchers_settings_as_its_flags(
    firmware: Any, args: list[str], line: str
) -> None:
    snp = str(firmware("OVMF.amdsev.fd"))
    result = run_cli(["launch", "--dry-run", *(a.format(snp=snp) for a in args)])
    assert result.exit_code == 2, result.output
    assert result.stderr == f"cvmlaunch: error: {line}\n"


def test_launch_names_a_later_checked_setting_where_it_was_given(
    firmware: Any, tmp_path: Path
) -> None:
    """A setting the launcher checks after the settings are read (initrd without a kernel) is
    named as the file names it when it came from the file, and as the flag otherwise."""
    snp = firmware("OVMF.amdsev.fd")
    initrd = tmp_path / "initrd.img"
    initrd.write_bytes(b"initrd")
    cfg = tmp_path / "vm.toml"
    cfg.write_text(f'tech = "snp"\nfirmware = "{snp}"\ninitrd = "{initrd}"\n')
    args = ["launch", "--dry-run", "--vcpu-type", "EPYC-Milan"]
    from_file = run_cli([*args, "--config", str(cfg)])
    assert from_file.exit_code == 2, from_file.output
    assert from_file.stderr == f"cvmlaunch: error: {cfg}: initrd and append need kernel\n"
    flagged = run_cli([*args, "--config", str(cfg), "--initrd", str(initrd)])
    assert flagged.stderr == "cvmlaunch: error: --initrd and --append need --kernel\n"


def test_file_settings_are_the_keys_no_flag_overrides() -> None:
    from cvmlaunch.launch_settings import file_settings, spelled_as_in_file

    text = 'vcpus = 2\nhost-data = "00"\nmemory = "1G"\n'
    keys = file_settings(text, {"memory": 1 << 30, "vcpus": None})
    assert keys == {"vcpus", "host_data"}
    error = ConfigError("host_data is odd", setting="host_data")
    assert str(spelled_as_in_file(error, keys, "vm.toml")) == "vm.toml: host-data is odd"
    other = ConfigError("memory is odd", setting="memory")
    assert spelled_as_in_file(other, keys, "vm.toml") is other
