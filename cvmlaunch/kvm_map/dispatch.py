"""One populate entry point: the engine the VM type calls for.

Part of :mod:`cvmlaunch.kvm_map` (see its rules).
"""

from __future__ import annotations

from collections.abc import Callable

from cvmlaunch._uapi import VmType
from cvmlaunch.kvm_map._engine import LaunchLog
from cvmlaunch.kvm_map.plain import populate_plain
from cvmlaunch.kvm_map.snp import populate_snp
from cvmlaunch.kvm_map.tdx import populate_tdx
from cvmlaunch.kvm_map.vcpu import Vcpu
from cvmlaunch.kvm_map.vm import SnpFinish, Vm
from cvmlaunch.layout import Plan
from cvmlaunch.log_entry import LogEntry


def populate(
    vm: Vm,
    plan: Plan,
    *,
    vcpu: Vcpu | None = None,
    snp_finish: SnpFinish | None = None,
    on_record: Callable[[LogEntry], None] | None = None,
) -> LaunchLog:
    """Populate ``plan`` by the path the VM's type calls for (resolved once, here).

    Plain (DEFAULT, SW_PROTECTED): :func:`populate_plain`. TDX: :func:`populate_tdx` (needs
    ``vcpu``, default the first). SNP: :func:`populate_snp`. ``on_record`` is called with each
    log record as soon as it exists (e.g. to drive a progress bar).

    Raises:
        ValueError: a type with no populate path (SEV, SEV-ES) or a missing vCPU (a bug).
        KvmError: a call failed.
    """
    if vm.vm_type in (VmType.DEFAULT, VmType.SW_PROTECTED):
        return populate_plain(vm, plan, vcpu, on_record=on_record)
    if vm.vm_type is VmType.TDX:
        chosen = vcpu or (vm.vcpus[0] if vm.vcpus else None)
        if chosen is None:
            raise ValueError("TDX populate needs a vCPU that has had KVM_TDX_INIT_VCPU")
        return populate_tdx(vm, plan, chosen, on_record=on_record)
    if vm.vm_type is VmType.SNP:
        return populate_snp(vm, plan, snp_finish, on_record=on_record)
    raise ValueError(f"no populate path for {vm.vm_type.name} VMs")
