"""The model firmware's rules: each broken rule gets the kernel's errno and is recorded.

The launch matrix (test_cc_launch_model.py) shows that a correct engine breaks none; these show
that the model would notice if it did, one rule at a time, by driving the KVM layer's wrappers
in a wrong order.
"""

from __future__ import annotations

import errno
from collections.abc import Callable

import pytest

from cvmlaunch import kvm_map
from cvmlaunch._uapi import Cap, MemoryAttribute, VmType
from cvmlaunch.cpuid import CpuidEntry
from cvmlaunch.errors import KvmError
from cvmlaunch.kvm_map import _engine, _kernel
from cvmlaunch.kvm_map import snp as kvm_snp
from cvmlaunch.kvm_map import tdx as kvm_tdx
from cvmlaunch.layout import PageType
from cvmlaunch.vcpu_state import BSP_RESET_EIP, snp_reset_state
from tests.model_firmware import TD_SEPT_VE_DISABLE, ModelKernel

X2APIC_CPUID = [CpuidEntry(1, 0, 0, 0, 0, 1 << 21, 0)]
GPAW48 = CpuidEntry(0x8000_0008, 0, 0, 48 << 16, 0, 0, 0)


def _snp() -> tuple[ModelKernel, kvm_map.Vm]:
    kernel = ModelKernel()
    return kernel, kvm_map.Vm.open(VmType.SNP, kernel=kernel)


def _td(init: bool = True) -> tuple[ModelKernel, kvm_map.Vm]:
    kernel = ModelKernel()
    vm = kvm_map.Vm.open(VmType.TDX, kernel=kernel)
    vm.enable_cap(Cap.SPLIT_IRQCHIP, 24)
    if init:
        vm.tdx_init_vm(attributes=TD_SEPT_VE_DISABLE, xfam=3, cpuid=[GPAW48])
    return kernel, vm


def _snp_init2_after_vcpu(vm: kvm_map.Vm) -> None:
    vm.create_vcpu()
    vm.sev_init2()


def _snp_start_before_init2(vm: kvm_map.Vm) -> None:
    vm.snp_launch_start(0x30000)


def _snp_policy_without_mbo(vm: kvm_map.Vm) -> None:
    vm.sev_init2()
    vm.snp_launch_start(0x10000)


def _snp_snp_active_to_init2(vm: kvm_map.Vm) -> None:
    vm.sev_init2(vmsa_features=1)


def _snp_update_shared(vm: kvm_map.Vm) -> None:
    vm.sev_init2()
    vm.snp_launch_start(0x30000)
    vm.add_memslot(0, 0, 0x10000)
    req = kvm_snp._SnpLaunchUpdate(vm, 0x1000, 0x1000, 0, PageType.ZERO)
    _engine._drive(req, lambda g, s: None, "test")


def _snp_update_unaligned(vm: kvm_map.Vm) -> None:
    vm.sev_init2()
    vm.snp_launch_start(0x30000)
    vm.add_memslot(0, 0, 0x10000)
    vm.set_memory_attributes(0, 0x10000, MemoryAttribute.PRIVATE)
    buf = bytearray(0x3000)
    source = _kernel._address(buf) | 0x10  # not page aligned
    req = kvm_snp._SnpLaunchUpdate(vm, 0x1000, 0x1000, source, PageType.NORMAL)
    _engine._drive(req, lambda g, s: None, "test")


def _snp_regs_after_finish(vm: kvm_map.Vm) -> None:
    vm.sev_init2()
    vm.snp_launch_start(0x30000)
    vcpu = vm.create_vcpu()
    vm.snp_launch_finish(kvm_map.SnpFinish())
    vcpu.set_state(snp_reset_state(eip=BSP_RESET_EIP, vcpu_sig=1, bsp=True))


def _snp_run_before_finish(vm: kvm_map.Vm) -> None:
    vm.sev_init2()
    vm.create_vcpu().run()


def _td_vcpu_before_init_vm(vm: kvm_map.Vm) -> None:
    vm.create_vcpu()


def _td_init_vm_twice(vm: kvm_map.Vm) -> None:
    vm.tdx_init_vm(attributes=TD_SEPT_VE_DISABLE, xfam=3, cpuid=[GPAW48])


def _td_unsupported_attributes(vm: kvm_map.Vm) -> None:
    vm.tdx_init_vm(attributes=1, xfam=3, cpuid=[GPAW48])


def _td_unconfigurable_leaf(vm: kvm_map.Vm) -> None:
    vm.tdx_init_vm(attributes=0, xfam=3, cpuid=[GPAW48, CpuidEntry(0x1F, 0, 1, 1, 0, 0, 0)])


def _td_bad_gpaw(vm: kvm_map.Vm) -> None:
    vm.tdx_init_vm(attributes=0, xfam=3, cpuid=[CpuidEntry(0x8000_0008, 0, 0, 40 << 16, 0, 0, 0)])


def _td_init_vcpu_without_x2apic(vm: kvm_map.Vm) -> None:
    vm.create_vcpu().tdx_init_vcpu(0x809000)


def _td_regs_to_a_td_vcpu(vm: kvm_map.Vm) -> None:
    vm.create_vcpu().set_state(snp_reset_state(eip=BSP_RESET_EIP, vcpu_sig=1, bsp=True))


def _td_populate_shared(vm: kvm_map.Vm) -> None:
    vm.add_memslot(0, 0, 0x10000)
    vcpu = vm.create_vcpu()
    vcpu.set_cpuid2(X2APIC_CPUID)
    vcpu.tdx_init_vcpu(0)
    with _engine._staging(0x1000) as staging:
        req = kvm_tdx._TdxInitMemRegion(vcpu, 0x1000, 0x1000, _kernel._address(staging), True)
        _engine._drive(req, lambda g, s: None, "test")


def _td_run_before_finalize(vm: kvm_map.Vm) -> None:
    vm.create_vcpu().run()


def _td_pre_fault_before_finalize(vm: kvm_map.Vm) -> None:
    vm.add_memslot(0, 0, 0x10000)
    req = _engine._PreFault(vm.create_vcpu(), 0, 0x1000)
    _engine._drive(req, lambda g, s: None, "test")


def _td_finalize_before_init(vm: kvm_map.Vm) -> None:
    vm.tdx_finalize_vm()


CASES: list[tuple[str, bool, Callable[[kvm_map.Vm], None], int, str]] = [
    ("snp", True, _snp_init2_after_vcpu, errno.EINVAL, "KVM_SEV_INIT2 after vCPUs"),
    ("snp", True, _snp_start_before_init2, errno.EINVAL, "before KVM_SEV_INIT2"),
    ("snp", True, _snp_policy_without_mbo, errno.EINVAL, "SNP policy 0x10000"),
    ("snp", True, _snp_snp_active_to_init2, errno.EINVAL, "VMSA features 0x1"),
    ("snp", True, _snp_update_shared, errno.EIO, "SNP_LAUNCH_UPDATE of shared GPA 0x1000"),
    ("snp", True, _snp_update_unaligned, errno.EINVAL, "not aligned"),
    ("snp", True, _snp_regs_after_finish, errno.EINVAL, "after LAUNCH_FINISH"),
    ("snp", True, _snp_run_before_finish, errno.EINVAL, "KVM_RUN before"),
    ("tdx", False, _td_vcpu_before_init_vm, errno.EIO, "before KVM_TDX_INIT_VM"),
    ("tdx", True, _td_init_vm_twice, errno.EINVAL, "KVM_TDX_INIT_VM twice"),
    ("tdx", False, _td_unsupported_attributes, errno.EINVAL, "TD attributes 0x1"),
    ("tdx", False, _td_unconfigurable_leaf, errno.EINVAL, "0x1f.0 is not configurable"),
    ("tdx", False, _td_bad_gpaw, errno.EINVAL, "GPAW 40"),
    ("tdx", True, _td_init_vcpu_without_x2apic, errno.EINVAL, "x2APIC"),
    ("tdx", True, _td_regs_to_a_td_vcpu, errno.EINVAL, "register state written to a TD"),
    ("tdx", True, _td_populate_shared, errno.EINVAL, "INIT_MEM_REGION of shared GPA 0x1000"),
    ("tdx", True, _td_run_before_finalize, errno.EINVAL, "KVM_RUN before"),
    ("tdx", True, _td_pre_fault_before_finalize, errno.EOPNOTSUPP, "PRE_FAULT_MEMORY before"),
    ("tdx", False, _td_finalize_before_init, errno.EINVAL, "FINALIZE_VM out of order"),
]


@pytest.mark.parametrize(
    ("tech", "init", "step", "code", "message"), CASES, ids=[c[2].__name__[1:] for c in CASES]
)
def test_each_rule_is_enforced(
    tech: str, init: bool, step: Callable[[kvm_map.Vm], None], code: int, message: str
) -> None:
    kernel, vm = _snp() if tech == "snp" else _td(init)
    with vm, pytest.raises(KvmError) as info:
        step(vm)
    assert info.value.errno == code
    assert len(kernel.violations) >= 1
    assert message in kernel.violations[0]
    assert kernel.open_fds() == []
