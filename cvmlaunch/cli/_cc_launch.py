"""Confidential launches of a firmware image: compose the plan, the KVM layer and the log.

:func:`launch_snp_firmware` and :func:`launch_tdx_firmware` take a parsed firmware image and
the launch settings, check the host before anything is created, build the plan
(:mod:`cvmlaunch.cc_plan`, the plan ``measure snp|tdx`` folds), execute it
(:func:`cvmlaunch.kvm_map.launch_snp` / :func:`~cvmlaunch.kvm_map.launch_tdx`) and turn what
the KVM layer recorded into the launch log (replayed by :mod:`cvmlaunch.measure.log`). The
``launch`` command calls them; tests call them with a fake kernel.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from cvmlaunch.errors import ConfigError
from cvmlaunch.layout import Layout

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cvmlaunch.cc_plan import SnpPlan, TdxPlan
    from cvmlaunch.cpuid import CpuidEntry, TdInitParams
    from cvmlaunch.image.ovmf import OvmfImage
    from cvmlaunch.kvm_map import Kernel, SnpFinish, Vm
    from cvmlaunch.measure.log import LogInput, MeasurementLog, SettingValue
    from cvmlaunch.measure.sev_hashes import KernelHashes
    from cvmlaunch.measure.tdx import PageOrder

__all__ = [
    "SnpLaunched",
    "TdxLaunched",
    "describe_snp",
    "describe_tdx",
    "launch_snp_firmware",
    "launch_tdx_firmware",
]


@dataclass(frozen=True, slots=True)
class SnpLaunched:
    """A finished SNP launch: the plan, the log (footer = the launch digest), the VM (open:
    the caller runs and closes it) and the notes of skipped steps."""

    plan: SnpPlan
    log: MeasurementLog
    vm: Vm
    notes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TdxLaunched:
    """A finalized TD: the plan, the log (footer = MRTD), the INIT_VM values, the VM (open)."""

    plan: TdxPlan
    log: MeasurementLog
    params: TdInitParams
    vm: Vm
    notes: tuple[str, ...]


def _signature(cpuid: tuple[CpuidEntry, ...]) -> int:
    leaf1 = next((e for e in cpuid if e.function == 1), None)
    if leaf1 is None:
        raise ConfigError("KVM_GET_SUPPORTED_CPUID has no leaf 1: no vCPU signature")
    return leaf1.eax


def launch_snp_firmware(
    image: OvmfImage,
    *,
    memory: int,
    vcpus: int,
    policy: int,
    finish: SnpFinish,
    guest_features: int = 0x1,
    kernel_hashes: KernelHashes | None = None,
    inputs: tuple[LogInput, ...] = (),
    extra_settings: dict[str, SettingValue] | None = None,
    kernel: Kernel | None = None,
    tool_version: str = "",
) -> SnpLaunched:
    """Launch ``image`` as an SEV-SNP guest up to ``SNP_LAUNCH_FINISH``.

    The vCPU signature (RDX of every VMSA) is the host's CPUID 1 EAX as KVM offers it, and is
    recorded in the log's ``vcpu_sig`` setting.

    Raises:
        KvmUnsupported: the host has no SNP (before anything is created).
        KvmError: a KVM call failed (the VM is closed).
        ConfigError, ImageError: settings or firmware the launch cannot take.
    """
    from cvmlaunch import kvm_map
    from cvmlaunch.cc_plan import snp_plan
    from cvmlaunch.cpuid import snp_guest_cpuid
    from cvmlaunch.measure.log import LogHeader, Technology, complete_log
    from cvmlaunch.measure.snp import SevMode, SnpSettings
    from cvmlaunch.measure.snp_chain import SNP_ALGORITHM, ZERO_DIGEST

    with kvm_map.Kvm.open(kernel) as kvm:
        kvm.caps().require(kvm_map.VmType.SNP)
        cpuid = snp_guest_cpuid(kvm.supported_cpuid())
        settings = SnpSettings(
            vcpus=vcpus,
            vcpu_sig=_signature(cpuid),
            guest_features=guest_features,
            kernel_hashes=kernel_hashes,
        )
        plan = snp_plan(image, settings, memory)
        vm = kvm.create_vm(kvm_map.VmType.SNP)
    try:
        done = kvm_map.launch_snp(
            vm,
            plan.layout,
            states=plan.states,
            cpuid=cpuid,
            start=kvm_map.SnpStart(policy, guest_features),
            finish=finish,
        )
        values = {
            **settings.log_settings(),
            "mode": SevMode.SNP.value,
            "memory": memory,
            **(extra_settings or {}),
        }
        header = LogHeader(
            technology=Technology.SEV_SNP,
            algorithm=SNP_ALGORITHM,
            settings=values,
            inputs=inputs,
            tool_version=tool_version,
            initial_digest=ZERO_DIGEST,
        )
        log = complete_log(header, done.entries)
    except BaseException:
        vm.close()
        raise
    return SnpLaunched(plan, log, vm, done.notes)


def launch_tdx_firmware(
    image: OvmfImage,
    *,
    memory: int,
    vcpus: int,
    attributes: int | None = None,
    xfam: int | None = None,
    mrconfigid: bytes = bytes(48),
    mrowner: bytes = bytes(48),
    mrownerconfig: bytes = bytes(48),
    order: PageOrder | None = None,
    inputs: tuple[LogInput, ...] = (),
    extra_settings: dict[str, SettingValue] | None = None,
    kernel: Kernel | None = None,
    tool_version: str = "",
) -> TdxLaunched:
    """Launch ``image`` as a TD up to ``KVM_TDX_FINALIZE_VM``.

    Args:
        order: the page order the host kernel uses (Linux >= 6.16: per page, the default);
            written into the log, whose replay then gives the MRTD that kernel measures.

    Raises:
        KvmUnsupported: the host has no TDX (before anything is created).
        KvmError: a KVM call failed (the VM is closed).
        ConfigError, ImageError: settings or firmware the launch cannot take.
    """
    from cvmlaunch import kvm_map
    from cvmlaunch.cc_plan import tdx_plan
    from cvmlaunch.measure.log import LogHeader, Technology, complete_log
    from cvmlaunch.measure.tdx import TDX_ALGORITHM, PageOrder, tdvf_contents

    page_order = order or PageOrder.PER_PAGE
    with kvm_map.Kvm.open(kernel) as kvm:
        kvm.caps().require(kvm_map.VmType.TDX)
        host_cpuid = kvm.supported_cpuid()
        plan = tdx_plan(image, memory, vcpus)
        vm = kvm.create_vm(kvm_map.VmType.TDX)
    try:
        done, params = kvm_map.launch_tdx(
            vm,
            plan.layout,
            vcpus=vcpus,
            host_cpuid=host_cpuid,
            hob_gpa=plan.hob_gpa,
            attributes=attributes,
            xfam=xfam,
            mrconfigid=mrconfigid,
            mrowner=mrowner,
            mrownerconfig=mrownerconfig,
        )
        header = LogHeader(
            technology=Technology.TDX,
            algorithm=TDX_ALGORITHM,
            settings={
                "profile": "qemu",
                "order": page_order.value,
                "memory": memory,
                "vcpus": vcpus,
                "td_attributes": params.attributes,
                "xfam": params.xfam,
                **(extra_settings or {}),
            },
            inputs=inputs,
            tool_version=tool_version,
            initial_digest=None,
        )
        log = complete_log(header, done.entries, tdvf_contents(header, image))
    except BaseException:
        vm.close()
        raise
    return TdxLaunched(plan, log, params, vm, done.notes)


def _mib(size: int) -> str:
    return f"{size / (1 << 20):g} MiB" if size >= 1 << 20 else f"{size / 1024:g} KiB"


def _ranges(layout: Layout) -> Iterator[str]:
    memory = layout.memory
    if memory is not None:
        yield "memslots (guest_memfd, set PRIVATE before anything is populated):"
        for slot in memory.memslots:
            yield (
                f"  {slot.slot}  [{slot.gpa:#014x}-{slot.end:#014x})  {slot.kind.value:<9}"
                f"{_mib(slot.size)}"
            )
    yield "ranges (populate order = measurement order):"
    for i, r in enumerate(layout.regions):
        yield (
            f"  {i:>3}  [{r.gpa:#014x}-{r.end:#014x})  {r.npages:>5} pages  "
            f"{r.page_type.name:<10} {'measured' if r.measured else 'not measured':<12}  "
            f"{r.provenance.describe()}"
        )


def describe_snp(plan: SnpPlan, policy: int) -> Iterator[str]:
    """The SNP plan and the launch digest to expect, as text lines (``launch --dry-run``).

    The digest is the fold of the plan (:func:`cvmlaunch.measure.snp_chain.fold_layout`): the
    value ``measure snp`` prints for the same firmware, vCPUs, signature and kernel hashes.
    """
    from cvmlaunch.measure.identity import GuestPolicy
    from cvmlaunch.measure.snp_chain import fold_layout

    s = plan.settings
    yield (
        f"plan: tech snp, {s.vcpus} vCPU{'s' if s.vcpus != 1 else ''}, vCPU signature "
        f"{s.vcpu_sig:#x}, SEV_FEATURES {s.guest_features:#x}, kernel hashes "
        f"{'on' if s.kernel_hashes is not None else 'off'}"
    )
    yield f"policy: {GuestPolicy(policy).describe()}"
    yield from _ranges(plan.layout)
    yield (
        "vCPUs (KVM builds each VMSA from these at SNP_LAUNCH_FINISH): "
        + ", ".join(
            f"{i}: CS base {st.segments['cs'].base:#x} IP {st.regs['rip']:#x}"
            for i, st in enumerate(plan.states[:4])
        )
        + (" ..." if len(plan.states) > 4 else "")
    )
    yield f"predicted SNP launch digest: {fold_layout(plan.layout).hex()}"


def describe_tdx(plan: TdxPlan, order: PageOrder) -> Iterator[str]:
    """The TDX plan, its TD HOB and the MRTD to expect, as text lines (``launch --dry-run``).

    The MRTD is the fold of the plan (:func:`cvmlaunch.measure.tdx.mrtd`): the value
    ``measure tdx`` prints for the same firmware and page order.
    """
    from cvmlaunch.measure.tdx import mrtd

    yield (
        f"plan: tech tdx, {plan.vcpus} vCPU{'s' if plan.vcpus != 1 else ''}, TD HOB at "
        f"{plan.hob_gpa:#x} (every vCPU's RCX), page order {order.value}"
    )
    yield from _ranges(plan.layout)
    yield f"predicted MRTD: {mrtd(plan.layout, order=order).hex()}"
