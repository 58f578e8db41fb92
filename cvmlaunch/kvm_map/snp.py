"""SEV-SNP: the populate engine (``SNP_LAUNCH_UPDATE``) and the launch sequence.

Part of :mod:`cvmlaunch.kvm_map` (see its rules).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cvmlaunch import _uapi
from cvmlaunch._uapi import MemoryAttribute, VmType
from cvmlaunch.cpuid import CpuidEntry, cpuid_page_mismatches, snp_cpuid_page
from cvmlaunch.errors import ConfigError, KvmError
from cvmlaunch.kvm_map._engine import (
    LaunchLog,
    _chunks,
    _drive,
    _fill,
    _hypercall_exits,
    _map_private,
    _Recorder,
    _region_bytes,
    _staging,
    _where,
)
from cvmlaunch.kvm_map._kernel import _address, _struct_buf
from cvmlaunch.kvm_map.vm import SnpFinish, Vm
from cvmlaunch.layout import PAGE_SIZE, PageType, Plan, Region
from cvmlaunch.log_entry import LogEntry, LogOp
from cvmlaunch.vcpu_state import VcpuState

#: SEV_FEATURES bit 0, SNPActive: KVM sets it itself for SNP VMs (it is not passed to INIT2).
SNP_ACTIVE = 0x1
#: SNP guest policy bit 17: reserved, must be one (SNP ABI; KVM refuses a policy without it).
SNP_POLICY_MBO = 1 << 17
#: SNP guest policy bit 16: SMT allowed (the firmware refuses a policy without it when the
#: host has SMT on).
SNP_POLICY_SMT = 1 << 16
#: The GHCB protocol version given to KVM_SEV_INIT2 (the highest KVM offers).
GHCB_VERSION = 2


class _SnpLaunchUpdate:
    op = "KVM_SEV_SNP_LAUNCH_UPDATE"

    def __init__(self, vm: Vm, gpa: int, size: int, source: int, page_type: PageType) -> None:
        self.vm = vm
        self.advances_source = page_type is not PageType.ZERO
        self.buf, self.req = _struct_buf(_uapi.KvmSevSnpLaunchUpdate)
        self.req.gfn_start, self.req.uaddr, self.req.len = gpa // PAGE_SIZE, source, size
        # the raw boundary: the plan's page type becomes the kernel's (equal members, tested)
        self.req.type = _uapi.SnpPageType(page_type.value)

    def issue(self) -> None:
        self.vm.snp_launch_update(self.buf)

    def position(self) -> tuple[int, int, int]:
        return int(self.req.gfn_start) * PAGE_SIZE, int(self.req.len), int(self.req.uaddr)


class _RegionProgress:
    """How far ``SNP_LAUNCH_UPDATE`` has taken one plan region, in order.

    The 2 MiB staging chunks and the partial progress the kernel reports are how the region
    goes in, not record boundaries: the region's one record (what ``measure snp``'s log has,
    built by the same function from the region's bytes, which the staging copies hold) is
    made once every byte of it is in, and the per-page digest chain does not depend on how
    the calls were split.
    """

    def __init__(self, region: Region) -> None:
        self.region = region
        self.next_gpa = region.gpa

    def add(self, gpa: int, size: int) -> None:
        if gpa != self.next_gpa:
            raise KvmError(
                "KVM_SEV_SNP_LAUNCH_UPDATE",
                detail=f"{_where(self.region)}: progress at {gpa:#x}, expected {self.next_gpa:#x}",
            )
        self.next_gpa += size

    def record(self, rec: _Recorder) -> None:
        region = self.region
        if self.next_gpa != region.end:
            raise KvmError(
                "KVM_SEV_SNP_LAUNCH_UPDATE",
                detail=f"{_where(region)}: stopped at {self.next_gpa:#x}",
            )
        rec.add(
            LogOp.SNP_LAUNCH_UPDATE,
            region,
            region.gpa,
            region.size,
            per_page=region.page_type.hashes_contents,
        )


def populate_snp(
    vm: Vm,
    plan: Plan,
    finish: SnpFinish | None = None,
    *,
    on_record: Callable[[LogEntry], None] | None = None,
) -> LaunchLog:
    """Populate an SNP guest: PRIVATE, ``SNP_LAUNCH_UPDATE`` per range, then LAUNCH_FINISH.

    Each range goes in with its page type; sources are page-aligned staging copies (ZERO
    pages pass no source; SECRETS pages pass a zero page), at most 2 MiB per request,
    resumed after partial progress. One record per plan region, once all of it is in (the
    records ``measure snp --log`` writes); records of NORMAL pages carry per-page SHA-384s
    (what the replay hashes).
    VMSA regions are not populated by userspace: KVM measures one VMSA per vCPU at
    LAUNCH_FINISH, in vCPU order, from the registers set on them; the plan's VMSA regions are
    logged (``snp.vmsa``) after a successful finish, and their count must equal the vCPUs'.

    Raises:
        ValueError: the number of VMSA regions differs from the number of vCPUs (a bug).
        KvmError: a call failed; the error names the range, errno, the firmware error and
            what was left. A CPUID page the firmware rejected says so.
    """
    vmsas = plan.vmsa_regions
    if vmsas and len(vmsas) != len(vm.vcpus):
        raise ValueError(
            f"the plan has {len(vmsas)} VMSA pages but the VM has {len(vm.vcpus)} vCPUs"
        )
    rec = _Recorder(on_record)
    with _staging() as staging:
        base_addr = _address(staging)
        for region in plan.memory_regions:
            vm.set_memory_attributes(region.gpa, region.size, MemoryAttribute.PRIVATE)
            progress = _RegionProgress(region)
            for gpa, size in _chunks(region):
                _fill(staging, region, gpa, size)
                source = 0 if region.page_type is PageType.ZERO else base_addr
                req = _SnpLaunchUpdate(vm, gpa, size, source, region.page_type)

                try:
                    _drive(req, progress.add, _where(region, gpa, size))
                except KvmError as exc:
                    if (
                        region.page_type is PageType.CPUID
                        and exc.fw_error == _uapi.SEV_RET_INVALID_PARAM
                        and exc.remaining is not None
                    ):
                        off = exc.remaining[0] - gpa
                        wanted = b"".join(bytes(p) for p in _region_bytes(region, gpa, size))
                        fixed = bytes(staging[off : off + PAGE_SIZE])
                        leaves = cpuid_page_mismatches(wanted[off : off + PAGE_SIZE], fixed)
                        raise KvmError(
                            exc.op,
                            errno=exc.errno,
                            fw_error=exc.fw_error,
                            remaining=exc.remaining,
                            detail=f"{_where(region, gpa, size)}: the firmware rejected the "
                            "CPUID page; what it accepts: "
                            + ("; ".join(leaves) or "the same values (no leaf differs)"),
                        ) from exc
                    raise
            progress.record(rec)
    vm.snp_launch_finish(finish or SnpFinish())
    for region in vmsas:
        rec.add(
            LogOp.SNP_VMSA,
            region,
            region.gpa,
            region.size,
            per_page=True,
        )
    return rec.log()


@dataclass(frozen=True, slots=True)
class SnpStart:
    """The arguments of ``KVM_SEV_INIT2`` and ``KVM_SEV_SNP_LAUNCH_START``.

    Args:
        policy: the guest policy (bit 17 set; SMT bit 16 set on hosts with SMT on).
        guest_features: SEV_FEATURES of every VMSA, SNPActive included (INIT2 gets it
            without SNPActive, which KVM adds itself).
        gosvw: the 16 bytes of guest OS visible workarounds.
    """

    policy: int
    guest_features: int = SNP_ACTIVE
    gosvw: bytes = bytes(16)

    def __post_init__(self) -> None:
        if not self.policy & SNP_POLICY_MBO:
            raise ConfigError(
                f"SNP policy {self.policy:#x}: bit 17 (reserved, must be one) is clear"
            )
        if not self.guest_features & SNP_ACTIVE:
            raise ConfigError(
                f"SEV_FEATURES {self.guest_features:#x} lack SNPActive (bit 0), which every "
                "SNP VMSA has"
            )
        if len(self.gosvw) != 16:
            raise ValueError(f"SNP GOSVW is {len(self.gosvw)} bytes, not 16")


def _with_page(plan: Plan, page_type: PageType, data: bytes) -> Plan:
    """``plan`` with the data of its one region of ``page_type`` replaced."""
    regions = list(plan.regions)
    found = [i for i, r in enumerate(regions) if r.page_type is page_type]
    if len(found) != 1:
        raise ValueError(f"the plan has {len(found)} {page_type.name} regions, not one")
    regions[found[0]] = dataclasses.replace(regions[found[0]], data=data)
    return Plan.of(regions, plan.memory)


def launch_snp(
    vm: Vm,
    plan: Plan,
    *,
    states: Sequence[VcpuState],
    cpuid: Sequence[CpuidEntry],
    start: SnpStart,
    finish: SnpFinish,
    on_record: Callable[[LogEntry], None] | None = None,
) -> LaunchLog:
    """Launch an SEV-SNP guest as Linux >= 6.11 and QEMU do, up to ``SNP_LAUNCH_FINISH``.

    ``KVM_SEV_INIT2`` (VMSA features, GHCB version 2), hypercall exits for page-state changes,
    ``SNP_LAUNCH_START``; every memslot (guest_memfd) set PRIVATE; one vCPU per state with
    ``KVM_SET_CPUID2`` and the state; the CPUID page built from ``KVM_GET_CPUID2`` of vCPU 0
    (:func:`cvmlaunch.cpuid.snp_cpuid_page`); then :func:`populate_snp` (``SNP_LAUNCH_UPDATE``
    per region with resume, ``SNP_LAUNCH_FINISH``, at which KVM measures one VMSA per vCPU from
    the state set here).

    Args:
        vm: a fresh SNP VM (no vCPUs, no memslots).
        plan: the plan with its memory map: memory regions in populate order, then one VMSA
            region per vCPU (what the measurement expects KVM to build).
        states: each vCPU's register state, BSP first.
        cpuid: the guest CPUID (:func:`cvmlaunch.cpuid.snp_guest_cpuid`).
        start: INIT2 and LAUNCH_START arguments.
        finish: LAUNCH_FINISH arguments.
        on_record: called with each log record as it is made.

    Raises:
        ValueError: not an SNP VM, no memory map, or a state count other than the plan's VMSAs
            (a bug).
        KvmError: a call failed (a rejected CPUID page is reported leaf by leaf).
    """
    if vm.vm_type is not VmType.SNP:
        raise ValueError(f"launch_snp needs an SNP VM, not {vm.vm_type.name}")
    if plan.memory is None:
        raise ValueError("the plan has no memory map")
    if len(states) != len(plan.vmsa_regions):
        raise ValueError(
            f"{len(states)} vCPU states for a plan with {len(plan.vmsa_regions)} VMSAs"
        )
    vm.sev_init2(vmsa_features=start.guest_features & ~SNP_ACTIVE, ghcb_version=GHCB_VERSION)
    _hypercall_exits(vm)
    vm.snp_launch_start(start.policy, start.gosvw)
    _map_private(vm, plan.memory)
    for i, state in enumerate(states):
        vcpu = vm.create_vcpu(i)
        vcpu.set_cpuid2(cpuid)
        vcpu.set_state(state)
    page = snp_cpuid_page(vm.vcpus[0].get_cpuid2())
    return populate_snp(vm, _with_page(plan, PageType.CPUID, page), finish, on_record=on_record)
