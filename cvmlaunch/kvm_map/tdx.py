"""TDX: the populate engine (``KVM_TDX_INIT_MEM_REGION``) and the launch sequence of a TD.

Part of :mod:`cvmlaunch.kvm_map` (see its rules).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from cvmlaunch import _uapi
from cvmlaunch._uapi import Cap, MemoryAttribute, VmType
from cvmlaunch.cpuid import CpuidEntry, TdInitParams, tdx_guest_cpuid, tdx_init_params
from cvmlaunch.kvm_map._engine import (
    LaunchLog,
    _drive,
    _fill,
    _hypercall_exits,
    _map_private,
    _Recorder,
    _staging,
    _where,
)
from cvmlaunch.kvm_map._kernel import _address, _struct_buf
from cvmlaunch.kvm_map.vcpu import Vcpu
from cvmlaunch.kvm_map.vm import Vm
from cvmlaunch.launch_identity import TdxLaunchIdentity
from cvmlaunch.layout import PAGE_SIZE, Plan
from cvmlaunch.log_entry import LogEntry, LogOp

#: ``KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP)``: IOAPIC pins routed to userspace (QEMU's 24).
SPLIT_IRQCHIP_PINS = 24
#: TDX fixes the APIC bus at 25 MHz: 40 ns per cycle (QEMU ``TDX_APIC_BUS_CYCLES_NS``).
TDX_APIC_BUS_CYCLES_NS = 40


class _TdxInitMemRegion:
    op = "KVM_TDX_INIT_MEM_REGION"
    advances_source = True

    def __init__(self, vcpu: Vcpu, gpa: int, size: int, source: int, measure: bool) -> None:
        self.vcpu, self.measure = vcpu, measure
        self.buf, self.req = _struct_buf(_uapi.KvmTdxInitMemRegion)
        self.req.source_addr, self.req.gpa, self.req.nr_pages = source, gpa, size // PAGE_SIZE

    def issue(self) -> None:
        self.vcpu.tdx_init_mem_region(self.buf, self.measure)

    def position(self) -> tuple[int, int, int]:
        return int(self.req.gpa), int(self.req.nr_pages) * PAGE_SIZE, int(self.req.source_addr)


def populate_tdx(
    vm: Vm,
    plan: Plan,
    vcpu: Vcpu,
    *,
    on_record: Callable[[LogEntry], None] | None = None,
) -> LaunchLog:
    """Populate a TD: PRIVATE, then ``KVM_TDX_INIT_MEM_REGION`` per range, then FINALIZE_VM.

    ``vcpu`` must have had ``KVM_TDX_INIT_VCPU``. Each range is staged whole in a page-aligned
    buffer and issued as one request (what the MRTD prediction assumes), resumed until done;
    the measure flag is the region's ``measured`` (``tdx.page_add+extend`` records), else the
    pages are only added (``tdx.page_add``). One record per range, once it is done.

    Raises:
        ValueError: the plan has VMSA regions (TDX has none; a bug).
        KvmError: a call failed; the error names the range, errno and what was left.
    """
    if plan.vmsa_regions:
        raise ValueError("a TD has no VMSA regions to populate")
    rec = _Recorder(on_record)
    for region in plan.memory_regions:
        vm.set_memory_attributes(region.gpa, region.size, MemoryAttribute.PRIVATE)
        op = LogOp.TDX_PAGE_ADD_EXTEND if region.measured else LogOp.TDX_PAGE_ADD
        # One request per region, as QEMU issues one per TDVF section: kernels that measure
        # per request (all adds, then all extends: KVM TDX v19 / QEMU 8.x) would otherwise
        # give a different MRTD than the two-pass prediction.
        with _staging(region.size) as staging:
            _fill(staging, region, region.gpa, region.size)
            req = _TdxInitMemRegion(
                vcpu, region.gpa, region.size, _address(staging), region.measured
            )

            _drive(req, lambda gpa, done: None, _where(region))
            # One record per request: the kernel measures per request (a two-pass kernel's
            # MRTD depends on the request, not on how often a signal split the call).
            rec.add(op, region, region.gpa, region.size, per_page=False)
    vm.tdx_finalize_vm()
    return rec.log()


def launch_tdx(
    vm: Vm,
    plan: Plan,
    *,
    vcpus: int,
    host_cpuid: Sequence[CpuidEntry],
    hob_gpa: int,
    attributes: int | None = None,
    xfam: int | None = None,
    mrconfigid: bytes = bytes(48),
    mrowner: bytes = bytes(48),
    mrownerconfig: bytes = bytes(48),
    on_record: Callable[[LogEntry], None] | None = None,
) -> tuple[LaunchLog, TdInitParams]:
    """Launch a TD as Linux >= 6.16 and QEMU do, up to ``KVM_TDX_FINALIZE_VM``.

    ``KVM_TDX_CAPABILITIES`` (grown on E2BIG); attributes, XFAM and CPUID filtered against them
    (:func:`cvmlaunch.cpuid.tdx_init_params`); split IRQ chip, 25 MHz APIC bus and hypercall
    exits; ``KVM_TDX_INIT_VM`` (retried on EAGAIN); every memslot PRIVATE; per vCPU
    ``KVM_SET_CPUID2`` then ``KVM_TDX_INIT_VCPU`` with RCX = ``hob_gpa``; then
    :func:`populate_tdx` (``KVM_TDX_INIT_MEM_REGION`` per region, MEASURE only for measured
    regions, then ``KVM_TDX_FINALIZE_VM``).

    Args:
        vm: a fresh TDX VM.
        plan: the plan (TDVF sections in metadata order, the TD HOB filled in) with its
            memory map.
        vcpus: the number of vCPUs.
        host_cpuid: ``KVM_GET_SUPPORTED_CPUID``.
        hob_gpa: the TD HOB's GPA, each vCPU's initial RCX.
        attributes: TD attributes (None: QEMU's default).
        xfam: XFAM (None: QEMU's default).
        mrconfigid, mrowner, mrownerconfig: 48 bytes each, for the TD report.
        on_record: called with each log record as it is made.

    Returns:
        The log and the INIT_VM values used.

    Raises:
        ConfigError: attributes/XFAM the host does not support, owner values of a wrong size.
        ValueError: not a TDX VM, or no memory map (a bug).
        KvmError: a call failed.
    """
    if vm.vm_type is not VmType.TDX:
        raise ValueError(f"launch_tdx needs a TDX VM, not {vm.vm_type.name}")
    if plan.memory is None:
        raise ValueError("the plan has no memory map")
    identity = TdxLaunchIdentity(mrconfigid, mrowner, mrownerconfig)  # ConfigError: sizes
    caps = vm.tdx_capabilities()
    guest = tdx_guest_cpuid(host_cpuid)
    params = tdx_init_params(
        supported_attrs=caps.supported_attrs,
        supported_xfam=caps.supported_xfam,
        configurable=caps.cpuid,
        guest_cpuid=guest,
        attributes=attributes,
        xfam=xfam,
    )
    vm.enable_cap(Cap.SPLIT_IRQCHIP, SPLIT_IRQCHIP_PINS)
    if vm.check_extension(Cap.X86_APIC_BUS_CYCLES_NS):
        vm.enable_cap(Cap.X86_APIC_BUS_CYCLES_NS, TDX_APIC_BUS_CYCLES_NS)
    _hypercall_exits(vm)
    vm.tdx_init_vm(
        attributes=params.attributes,
        xfam=params.xfam,
        cpuid=params.cpuid,
        identity=identity,
    )
    _map_private(vm, plan.memory)
    for i in range(vcpus):
        vcpu = vm.create_vcpu(i)
        vcpu.set_cpuid2(guest)
        vcpu.tdx_init_vcpu(hob_gpa)
    return populate_tdx(vm, plan, vm.vcpus[0], on_record=on_record), params
