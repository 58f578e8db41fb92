"""Confidential launches of a firmware image: compose the plan, the KVM layer and the log.

:func:`launch_snp_firmware` and :func:`launch_tdx_firmware` take a parsed firmware image and
the launch settings, check the host before anything is created, build the plan
(:mod:`cvmlaunch.cc_plan`, the plan ``measure snp|tdx`` folds), execute it
(:func:`cvmlaunch.kvm_map.launch_snp` / :func:`~cvmlaunch.kvm_map.launch_tdx`) and turn what
the KVM layer recorded into the launch log (replayed by :mod:`cvmlaunch.measure.log`). The
``launch`` command calls them; tests call them with a fake kernel.
"""

from __future__ import annotations

from dataclasses import dataclass

from cvmlaunch.errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cvmlaunch.cc_plan import SnpPlan, TdxPlan
    from cvmlaunch.cpuid import CpuidEntry, TdInitParams
    from cvmlaunch.image.ovmf import OvmfImage
    from cvmlaunch.kvm_map import Kernel, SnpFinish, Vm
    from cvmlaunch.measure.log import LogInput, MeasurementLog, SettingValue
    from cvmlaunch.measure.sev_hashes import KernelHashes
    from cvmlaunch.measure.tdx import PageOrder

__all__ = ["SnpLaunched", "TdxLaunched", "launch_snp_firmware", "launch_tdx_firmware"]


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
