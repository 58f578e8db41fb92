"""One vocabulary: the plan package's names, the one Technology enum and its VM types, the
plan's page types against the kernel's, and the old names kept for external users."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import cvmlaunch
from cvmlaunch import _uapi, kvm_map, layout
from cvmlaunch.errors import ConfigError
from cvmlaunch.launch_settings import LaunchSettings, settings_from_toml
from cvmlaunch.layout import PageType, Plan
from cvmlaunch.measure import log as measure_log
from cvmlaunch.technology import Technology
from tests.errors_util import raises_cvm


def test_plan_package_exports_resolve() -> None:
    import cvmlaunch.plan as p

    assert sorted(p._EXPORTS) == sorted(p.__all__)
    for name in p.__all__:
        value = getattr(p, name)
        assert value.__module__.startswith("cvmlaunch.plan."), name
    with pytest.raises(AttributeError):
        _ = p.no_such_name


def test_measure_reexports_the_settings_a_digest_takes_from_plan() -> None:
    import cvmlaunch.measure as m
    from cvmlaunch.plan import sev_hashes, snp, vmsa

    assert m.SnpSettings is snp.SnpSettings
    assert m.MAX_VCPUS == snp.MAX_VCPUS == 4096
    assert m.KernelHashes is sev_hashes.KernelHashes
    assert m.cmdline_sha256 is sev_hashes.cmdline_sha256
    assert m.FpuInit is vmsa.FpuInit
    assert m.VmmType is vmsa.VmmType


def test_page_type_and_the_kernel_page_type_have_equal_members() -> None:
    """The engine converts PageType to SnpPageType by value at the raw struct; both carry the
    SNP firmware ABI's PAGE_TYPE values (SNP_LAUNCH_UPDATE), as linux/kvm.h's
    KVM_SEV_SNP_PAGE_TYPE_* do."""
    spec = [
        ("NORMAL", 1),
        ("VMSA", 2),
        ("ZERO", 3),
        ("UNMEASURED", 4),
        ("SECRETS", 5),
        ("CPUID", 6),
    ]
    assert [(t.name, t.value) for t in PageType] == spec
    assert [(t.name, t.value) for t in _uapi.SnpPageType] == spec
    for t in PageType:
        assert _uapi.SnpPageType(t.value).name == t.name


def test_one_technology_enum_with_the_log_values() -> None:
    assert {t.name: t.value for t in Technology} == {
        "SEV_SNP": "sev-snp",
        "SEV": "sev",
        "SEV_ES": "sev-es",
        "TDX": "tdx",
        "PLAIN": "plain",
    }
    assert measure_log.Technology is Technology
    assert LaunchSettings().tech is Technology.PLAIN


@pytest.mark.parametrize(
    ("text", "tech"),
    [
        ("none", Technology.PLAIN),
        ("snp", Technology.SEV_SNP),
        ("tdx", Technology.TDX),
        (" SNP ", Technology.SEV_SNP),
        ("Tdx", Technology.TDX),
    ],
)
def test_tech_flag_spelling(text: str, tech: Technology) -> None:
    assert Technology.parse_launch(text) is tech
    assert Technology.parse_launch(tech.label) is tech


@pytest.mark.parametrize("text", ["sev-snp", "plain", "sev", "sev-es", "SEV_SNP", ""])
def test_tech_flag_takes_only_the_launch_words(text: str) -> None:
    with raises_cvm(ConfigError, setting="tech", match=r"^tech .*: expected none, snp or tdx$"):
        Technology.parse_launch(text)


def test_labels_are_the_flag_words_or_the_log_value() -> None:
    assert [t.label for t in Technology] == ["snp", "sev", "sev-es", "tdx", "none"]
    assert settings_from_toml('tech = "tdx"\n').tech is Technology.TDX


def test_vm_type_of_each_launched_technology() -> None:
    # linux/kvm.h: KVM_X86_DEFAULT_VM 0, KVM_X86_SNP_VM 4, KVM_X86_TDX_VM 5
    assert (_uapi.VmType.DEFAULT, _uapi.VmType.SNP, _uapi.VmType.TDX) == (0, 4, 5)
    assert dict(kvm_map.VM_TYPE) == {
        Technology.PLAIN: _uapi.VmType.DEFAULT,
        Technology.SEV_SNP: _uapi.VmType.SNP,
        Technology.TDX: _uapi.VmType.TDX,
    }
    # every technology --tech names has a VM type
    assert {Technology.parse_launch(w) for w in ("none", "snp", "tdx")} == set(kvm_map.VM_TYPE)


def test_layout_is_the_old_name_of_plan() -> None:
    assert layout.Layout is Plan
    assert "Layout" in layout.__all__
    assert "Plan" in layout.__all__


_PLAN_PROBE = """
import json, sys
sys.path.insert(0, sys.argv[1])
before = set(sys.modules)
from cvmlaunch.image.ovmf import parse_ovmf
from cvmlaunch.plan.snp import SnpSettings, snp_launch
from cvmlaunch.plan.tdvf import tdx_launch

snp = snp_launch(
    parse_ovmf(open(sys.argv[2], "rb").read(), name="snp.fd"),
    SnpSettings(vcpus=2, vcpu_sig=0xA00F11),
    1 << 30,
)
tdx = tdx_launch(parse_ovmf(open(sys.argv[3], "rb").read(), name="tdx.fd"), 1 << 30, 2)
assert len(snp.states) == 2 and tdx.vcpus == 2
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def test_a_confidential_launch_gets_its_plan_without_the_measurement(
    firmware: Callable[[str], Path],
) -> None:
    """``snp_launch`` and ``tdx_launch`` build their plans from cvmlaunch.plan alone: no
    module of cvmlaunch.measure (nor the KVM edge, nor the CLI) is loaded."""
    out = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            "-c",
            _PLAN_PROBE,
            str(Path(cvmlaunch.__file__).resolve().parent.parent),
            str(firmware("OVMF.amdsev.fd")),
            str(firmware("OVMF.inteltdx.ms.fd")),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    imported = set(json.loads(out))
    assert "cvmlaunch.plan.snp" in imported
    assert "cvmlaunch.plan.tdvf" in imported
    assert (
        sorted(
            m
            for m in imported
            if m.split(".")[:2] in (["cvmlaunch", "measure"], ["cvmlaunch", "kvm_map"])
            or m.split(".")[:2] == ["cvmlaunch", "cli"]
        )
        == []
    )
