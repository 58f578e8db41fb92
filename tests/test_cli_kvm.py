"""``cvmlaunch kvm caps``."""

from __future__ import annotations

import json

import pytest

from cvmlaunch.kvm_map import Kvm
from tests.cli_runner import run_cli


@pytest.mark.kvm
def test_kvm_caps_json_is_the_probe() -> None:
    result = run_cli(["kvm", "caps", "--json"])
    assert result.exit_code == 0, result.output
    with Kvm.open() as kvm:
        expected = kvm.caps().as_dict()
    assert json.loads(result.output) == expected
    assert "DEFAULT" in expected["vm_type_names"]  # type: ignore[operator]


@pytest.mark.kvm
def test_kvm_caps_table() -> None:
    result = run_cli(["kvm", "caps"])
    assert result.exit_code == 0, result.output
    with Kvm.open() as kvm:
        caps = kvm.caps()
    lines = dict(line.split(None, 1) for line in result.output.splitlines())
    assert lines["vm_types"] == f"{caps.vm_types:#x}"
    assert lines["guest_memfd_flags"] == f"{caps.guest_memfd_flags:#x}"
    assert lines["pre_fault_memory"] == ("yes" if caps.pre_fault_memory else "no")
    assert lines["max_vcpus"] == str(caps.max_vcpus)
    # which backend a plain launch would use, and why; what is missing (the rules)
    has_gmem = caps.guest_memfd and caps.guest_memfd_flags & 3 == 3 and caps.user_memory2
    assert lines["plain_memory_backend"] == ("guest-memfd" if has_gmem else "anonymous")
    why = lines["plain_memory_backend_reason"]
    if not caps.guest_memfd:
        assert "does not offer KVM_CAP_GUEST_MEMFD" in why
    missing = lines["missing"].split(", ")
    for name, offered in (
        ("KVM_CAP_GUEST_MEMFD", caps.guest_memfd),
        ("GUEST_MEMFD_FLAG_MMAP", caps.guest_memfd_flags & 1),
        ("KVM_CAP_PRE_FAULT_MEMORY", caps.pre_fault_memory),
        ("KVM_CAP_MEMORY_ATTRIBUTES", caps.memory_attributes),
    ):
        assert (name in missing) == (not offered), name


def test_kvm_caps_without_a_device_is_one_line_exit_2() -> None:
    result = run_cli(["kvm", "caps", "--device", "/nonexistent/kvm"])
    assert result.exit_code == 2
    assert result.output == (
        "cvmlaunch: error: this host's KVM does not offer /nonexistent/kvm "
        "(cannot open it: No such file or directory)\n"
    )


def test_default_device_is_the_kvm_layers() -> None:
    from cvmlaunch.cli._kvm import DEFAULT_DEVICE
    from cvmlaunch.kvm_map import KVM_PATH

    assert DEFAULT_DEVICE == KVM_PATH
