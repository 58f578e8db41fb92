"""Confidential launches of a firmware image: the plan, the KVM layer and the launch log.

:func:`launch_snp_firmware` and :func:`launch_tdx_firmware` take a parsed firmware image and
the launch settings, check the host before anything is created, build the plan
(:mod:`cvmlaunch.plan`, the plan ``measure snp|tdx`` folds), execute it
(:func:`cvmlaunch.kvm_map.launch_snp` / :func:`~cvmlaunch.kvm_map.launch_tdx`) and turn what
the KVM layer recorded into the launch log, whose header is built here (replayed by
:mod:`cvmlaunch.measure.log`). :func:`launch_firmware` is the whole launch of a
:class:`FirmwareLaunch` (:func:`firmware_request` makes one from the launch settings), up to
the guest's stop; :func:`load_firmware_launch` is a dry run's plan.

Rule 1: every KVM call goes through :mod:`cvmlaunch.kvm_map`, every file through
:mod:`cvmlaunch.files`. Nothing here prints: the log, notes and the guest's serial output
reach the caller through callbacks.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from cvmlaunch.errors import ConfigError, CvmLaunchError
from cvmlaunch.launch_identity import SnpLaunchIdentity, TdxLaunchIdentity
from cvmlaunch.layout import Plan

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cvmlaunch.cpuid import CpuidEntry, TdInitParams
    from cvmlaunch.fw_cfg import FwCfg
    from cvmlaunch.image.ovmf import OvmfImage
    from cvmlaunch.kvm_map import Kernel, PortBus, SnpFinish, Vm
    from cvmlaunch.launch_settings import LaunchSettings
    from cvmlaunch.layout import Buffer
    from cvmlaunch.log_entry import LogEntry
    from cvmlaunch.measure.identity import GuestPolicy
    from cvmlaunch.measure.log import LogInput, MeasurementLog, SettingValue
    from cvmlaunch.measure.tdx import PageOrder
    from cvmlaunch.plan.sev_hashes import KernelHashes
    from cvmlaunch.plan.snp import SnpLaunch
    from cvmlaunch.plan.tdvf import TdxLaunch

__all__ = [
    "FirmwareLaunch",
    "FirmwareResult",
    "SnpLaunched",
    "TdxLaunched",
    "firmware_inputs",
    "firmware_request",
    "launch_firmware",
    "launch_snp_firmware",
    "launch_tdx_firmware",
    "load_firmware_launch",
    "plan_contents",
    "run_guest",
    "served_fw_cfg",
]


@dataclass(frozen=True, slots=True)
class SnpLaunched:
    """A finished SNP launch: the launch (its plan), the log (footer = the launch digest), the
    VM (open: the caller runs and closes it) and the notes of skipped steps."""

    launch: SnpLaunch
    log: MeasurementLog
    vm: Vm
    notes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TdxLaunched:
    """A finalized TD: the launch (its plan), the log (footer = MRTD), the INIT_VM values, the
    VM (open)."""

    launch: TdxLaunch
    log: MeasurementLog
    params: TdInitParams
    vm: Vm
    notes: tuple[str, ...]


def plan_contents(plan: Plan) -> Callable[[LogEntry], Buffer]:
    """The bytes of each record of a launch of ``plan`` (one record per region, as the TDX
    engine logs), for :func:`cvmlaunch.measure.log.verify_log` and ``complete_log``.

    Raises:
        LogFormatError: (when called) a record that is not one of the plan's regions.
    """
    regions = {(r.gpa, r.size): r for r in plan.memory_regions}

    def contents(entry: LogEntry) -> Buffer:
        region = regions.get((entry.gpa, entry.size))
        if region is None:
            from cvmlaunch.errors import LogFormatError

            raise LogFormatError(
                f"record {entry.seq} ({entry.gpa:#x}+{entry.size:#x}) is no range of the plan"
            )
        return region.data

    return contents


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
    host_smt: bool | None = None,
    vcpu_sig: int | None = None,
) -> SnpLaunched:
    """Launch ``image`` as an SEV-SNP guest up to ``SNP_LAUNCH_FINISH``.

    The vCPU signature (RDX of every VMSA) is the host's CPUID 1 EAX as KVM offers it, and is
    recorded in the log's ``vcpu_sig`` setting. ``host_smt`` (None: read from sysfs) decides
    whether the policy must allow SMT.

    Raises:
        KvmUnsupported: the host has no SNP (before anything is created).
        KvmError: a KVM call failed (the VM is closed).
        ConfigError, ImageError: settings or firmware the launch cannot take.
    """
    from cvmlaunch import kvm_map
    from cvmlaunch.cpuid import snp_guest_cpuid
    from cvmlaunch.files import host_smt_active
    from cvmlaunch.measure.log import complete_log
    from cvmlaunch.measure.snp import SevMode, snp_header
    from cvmlaunch.plan.snp import SnpSettings, snp_launch

    smt = host_smt_active() if host_smt is None else host_smt
    if smt and not policy & kvm_map.SNP_POLICY_SMT:
        raise ConfigError(
            f"SNP policy {policy:#x} forbids SMT (bit 16), but this host has SMT on: the "
            "firmware would refuse SNP_LAUNCH_START (set bit 16, or turn SMT off)"
        )
    with kvm_map.Kvm.open(kernel) as kvm:
        kvm.caps().require(kvm_map.VmType.SNP)
        cpuid = snp_guest_cpuid(kvm.supported_cpuid())
        host_sig = _signature(cpuid)
        if vcpu_sig is not None and vcpu_sig != host_sig:
            raise ConfigError(
                f"this host's vCPU signature is {host_sig:#x}, not {vcpu_sig:#x} (vcpu_type/"
                "vcpu_sig): every VMSA carries the host's; drop the setting or launch elsewhere",
                setting="vcpu_sig",
                also=("vcpu_type",),
            )
        settings = SnpSettings(
            vcpus=vcpus,
            vcpu_sig=host_sig,
            guest_features=guest_features,
            kernel_hashes=kernel_hashes,
        )
        launch = snp_launch(image, settings, memory)
        if finish.id_block is not None and finish.id_auth is not None:
            _check_pair(finish.id_block, finish.id_auth, launch, policy)
        vm = kvm.create_vm(kvm_map.VmType.SNP)
        kvm.hand_over(vm)
    try:
        done = kvm_map.launch_snp(
            vm,
            launch.plan,
            states=launch.states,
            cpuid=cpuid,
            start=kvm_map.SnpStart(policy, guest_features),
            finish=finish,
        )
        header = snp_header(
            settings,
            mode=SevMode.SNP,
            inputs=inputs,
            tool_version=tool_version,
            extra_settings={"ap_reset_address": image.sev_es_reset_eip, **(extra_settings or {})},
        )
        log = complete_log(header, done.entries)
    except BaseException:
        vm.close()
        raise
    return SnpLaunched(launch, log, vm, done.notes)


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
    from cvmlaunch.measure.log import LogHeader, Technology, complete_log
    from cvmlaunch.measure.tdx import TD_HOB_MEMORY_SETTING, TDX_ALGORITHM, PageOrder
    from cvmlaunch.plan.tdvf import tdx_launch

    page_order = order or PageOrder.PER_PAGE
    with kvm_map.Kvm.open(kernel) as kvm:
        kvm.caps().require(kvm_map.VmType.TDX)
        host_cpuid = kvm.supported_cpuid()
        launch = tdx_launch(image, memory, vcpus)
        vm = kvm.create_vm(kvm_map.VmType.TDX)
        kvm.hand_over(vm)
    try:
        done, params = kvm_map.launch_tdx(
            vm,
            launch.plan,
            vcpus=vcpus,
            host_cpuid=host_cpuid,
            hob_gpa=launch.hob_gpa,
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
                TD_HOB_MEMORY_SETTING: memory,
                "td_attributes": params.attributes,
                "xfam": params.xfam,
                **(extra_settings or {}),
            },
            inputs=inputs,
            tool_version=tool_version,
            initial_digest=None,
        )
        log = complete_log(header, done.entries, plan_contents(launch.plan))
    except BaseException:
        vm.close()
        raise
    return TdxLaunched(launch, log, params, vm, done.notes)


@dataclass(frozen=True, slots=True)
class FirmwareLaunch:
    """What ``launch --tech snp|tdx --firmware FILE`` was asked (flags or settings file).

    Args:
        tech: ``snp`` or ``tdx``.
        firmware: the OVMF/TDVF image.
        memory: guest RAM in bytes.
        vcpus: the number of vCPUs.
        timeout: seconds the guest may run after the launch.
        kernel, initrd, append: (snp) measured direct boot: their SHA-256s fill the firmware's
            kernel-hashes page (QEMU ``kernel-hashes=on``).
        vcpu_sig: (snp) the vCPU signature of a dry run (no host CPU is asked); a real launch
            takes the host's.
        guest_features: (snp) SEV_FEATURES.
        policy, host_data, id_block, id_auth, auth_key_en: (snp) the launch identity.
        td_attributes, xfam: (tdx) None: QEMU's defaults.
        mrconfigid, mrowner, mrownerconfig: (tdx) the TD's owner values.
    """

    tech: str
    firmware: str
    memory: int
    vcpus: int
    timeout: float = 60.0
    kernel: str | None = None
    initrd: str | None = None
    append: str | None = None
    vcpu_sig: int | None = None
    guest_features: int = 0x1
    policy: int = 0x30000
    host_data: bytes = bytes(32)
    id_block: bytes | None = None
    id_auth: bytes | None = None
    auth_key_en: bool = False
    td_attributes: int | None = None
    xfam: int | None = None
    mrconfigid: bytes = bytes(48)
    mrowner: bytes = bytes(48)
    mrownerconfig: bytes = bytes(48)

    @property
    def snp_identity(self) -> SnpLaunchIdentity | None:
        """(snp) HOST_DATA and the ID block pair; None for a TD."""
        if self.tech != "snp":
            return None
        return SnpLaunchIdentity(self.host_data, self.id_block, self.id_auth)

    @property
    def tdx_identity(self) -> TdxLaunchIdentity | None:
        """(tdx) MRCONFIGID, MROWNER and MROWNERCONFIG; None for an SNP guest."""
        if self.tech != "tdx":
            return None
        return TdxLaunchIdentity(self.mrconfigid, self.mrowner, self.mrownerconfig)

    def identity_settings(self) -> dict[str, SettingValue]:
        """The launch identity as launch log header settings (docs/log-format.md, "Launch
        identity settings"): the SNP policy, host data and ID block pair, or the TDX MR values."""
        from cvmlaunch.measure.reference import identity_settings

        snp = self.snp_identity
        if snp is not None:
            return dict(identity_settings(snp=snp, policy=_policy(self.policy)))
        return dict(identity_settings(tdx=self.tdx_identity))


def firmware_request(settings: LaunchSettings) -> FirmwareLaunch:
    """The firmware launch of ``settings`` (``--tech snp|tdx``), the ID block pair read.

    Raises:
        ConfigError: no firmware (SNP and TDX guests start in their firmware).
        ImageError: an ID block or ID auth file that cannot be read.
    """
    from cvmlaunch.files import read_blob
    from cvmlaunch.layout import SNP_HOST_DATA_SIZE, SNP_ID_AUTH_SIZE, SNP_ID_BLOCK_SIZE
    from cvmlaunch.technology import Technology

    snp: SnpLaunchIdentity | None = None
    id_block = id_auth = None
    if settings.tech is Technology.SEV_SNP:
        if settings.id_block is not None and settings.id_auth is not None:
            id_block = read_blob(settings.id_block, SNP_ID_BLOCK_SIZE, "ID block")
            id_auth = read_blob(settings.id_auth, SNP_ID_AUTH_SIZE, "ID auth")
        snp = SnpLaunchIdentity(settings.host_data or bytes(SNP_HOST_DATA_SIZE), id_block, id_auth)
    tdx = settings.tdx_identity if settings.tech is Technology.TDX else None
    tech = settings.tech.label
    if settings.firmware is None:
        raise ConfigError(
            f"--tech {tech}: {tech.upper()} guests start in their firmware: give --firmware "
            + (
                "(an OVMF build with SEV metadata, e.g. OVMF.amdsev.fd; --kernel then boots "
                "through its kernel-hashes page)"
                if settings.tech is Technology.SEV_SNP
                else "(a TDVF build, e.g. OVMF.inteltdx.fd)"
            )
        )
    return FirmwareLaunch(
        tech=tech,
        firmware=settings.firmware,
        memory=settings.memory,
        vcpus=settings.vcpus,
        timeout=settings.timeout,
        kernel=settings.kernel,
        initrd=settings.initrd,
        append=settings.append if settings.kernel is not None else None,
        vcpu_sig=settings.signature,
        guest_features=settings.guest_features or 0x1,
        policy=settings.snp_policy,
        host_data=snp.host_data if snp is not None else bytes(32),
        id_block=id_block,
        id_auth=id_auth,
        auth_key_en=snp.auth_key_en if snp is not None else False,
        td_attributes=settings.td_attributes,
        xfam=settings.xfam,
        mrconfigid=tdx.mrconfigid if tdx is not None else bytes(48),
        mrowner=tdx.mrowner if tdx is not None else bytes(48),
        mrownerconfig=tdx.mrownerconfig if tdx is not None else bytes(48),
    )


def firmware_inputs(settings: LaunchSettings) -> tuple[LogInput, ...]:
    """The inputs a firmware launch's log lists, with their digests: those ``measure
    snp|tdx`` lists for the same settings (no command line without a kernel: nothing
    measures it then)."""
    from cvmlaunch.launcher._common import input_digests

    inputs = input_digests(settings)
    return tuple(i for i in inputs if i.role != "cmdline" or settings.kernel is not None)


def _kernel_hashes(req: FirmwareLaunch) -> KernelHashes | None:
    if req.kernel is None:
        if req.initrd is not None or req.append is not None:
            given = "initrd" if req.initrd is not None else "append"
            raise ConfigError(
                "initrd and append need kernel",
                setting=given,
                also=("append" if given == "initrd" else "initrd", "kernel"),
            )
        return None
    if req.tech != "snp":
        return None  # TDVF measures the kernel it loads into RTMR1/2 (the guest's registers)
    import hashlib

    from cvmlaunch.files import file_digest
    from cvmlaunch.plan.sev_hashes import KernelHashes, cmdline_bytes, cmdline_sha256

    initrd = file_digest(req.initrd) if req.initrd else hashlib.sha256(b"").digest()
    cmdline = cmdline_bytes(req.append) if req.append is not None else None
    return KernelHashes(
        kernel=file_digest(req.kernel), initrd=initrd, cmdline=cmdline_sha256(cmdline)
    )


@contextlib.contextmanager
def served_fw_cfg(req: FirmwareLaunch) -> Iterator[FwCfg]:
    """The fw_cfg device of a firmware launch of ``req``: the guest's RAM map (``etc/e820``,
    where OVMF's PlatformPei looks for it) and, with ``--kernel``, the kernel, initrd and
    command line. The files stay mapped while the context is open.

    SNP: as QEMU serves an SEV guest (:func:`cvmlaunch.fw_cfg.kernel_items`: the files
    unpatched, so the firmware's SHA-256s are the kernel-hashes table's). TDX: as QEMU 10.0 and
    10.1 serve a TD: the setup and kernel items with QEMU's setup-header patches (what OVMF
    before 2025.02 loads and measures, ``measure tdx --kernel-loading patched``), and the
    unpatched file as ``etc/boot/kernel`` (what later OVMF loads, ``--kernel-loading raw``).

    Raises:
        ImageError: a file cannot be read, or a kernel QEMU would refuse (its setup header
            declares more setup than the file has; TDX: not a bzImage, an initrd too large).
    """
    from cvmlaunch.fw_cfg import E820_FILE, FwCfg, KernelBoot, e820_table, kernel_items
    from cvmlaunch.memory_map import MemoryMap, MemslotKind

    ram = [
        (slot.gpa, slot.size)
        for slot in MemoryMap.for_size(req.memory).memslots
        if slot.kind is not MemslotKind.FIRMWARE
    ]
    files: dict[str, Buffer] = {E820_FILE: e820_table(ram)}
    if req.kernel is None:
        yield FwCfg(files=files)
        return
    from cvmlaunch.files import map_file
    from cvmlaunch.plan.sev_hashes import cmdline_bytes

    with contextlib.ExitStack() as stack:
        kernel = stack.enter_context(map_file(req.kernel, "the kernel"))
        initrd = stack.enter_context(map_file(req.initrd, "the initrd")) if req.initrd else None
        cmdline = cmdline_bytes(req.append) if req.append is not None else None
        name = os.path.basename(req.kernel)
        if req.tech == "snp":
            yield FwCfg(kernel_items(KernelBoot(kernel, initrd, cmdline), name=name), files)
            return
        from cvmlaunch.measure.tdx_rtmr import KernelLoading, kernel_image

        patched = kernel_image(
            kernel,
            KernelLoading.PATCHED,
            memory_size=req.memory,
            initrd_size=None if initrd is None else len(initrd),
            cmdline=req.append or "",
        )
        items = kernel_items(KernelBoot(memoryview(patched), initrd, cmdline), name=name)
        yield FwCfg(items, {**files, "etc/boot/kernel": kernel})


@contextlib.contextmanager
def load_firmware_launch(req: FirmwareLaunch) -> Iterator[SnpLaunch | TdxLaunch]:
    """The plan a launch of ``req`` executes, for a dry run (no host is asked: an SNP plan
    takes ``req.vcpu_sig``); the firmware stays mapped while the plan is used. An ID block
    is checked against the plan's digest and the policy.

    Raises:
        ConfigError: no vCPU signature (SNP), an initrd without a kernel.
        ImageError: a firmware that cannot be read or parsed.
        CheckFailed, MeasurementMismatch: an ID block the firmware would refuse (exit 1).
    """
    from cvmlaunch.files import map_file
    from cvmlaunch.image.ovmf import parse_ovmf
    from cvmlaunch.plan.snp import snp_launch
    from cvmlaunch.plan.tdvf import tdx_launch

    hashes = _kernel_hashes(req)
    with map_file(req.firmware) as data:
        image = parse_ovmf(data, name=os.path.basename(req.firmware))
        if req.tech != "snp":
            yield tdx_launch(image, req.memory, req.vcpus)
            return
        from cvmlaunch.plan.snp import SnpSettings

        if req.vcpu_sig is None:
            raise ConfigError(
                "a dry run asks no host CPU: give vcpu_type or vcpu_sig",
                setting="vcpu_type",
                also=("vcpu_sig",),
            )
        settings = SnpSettings(
            vcpus=req.vcpus,
            vcpu_sig=req.vcpu_sig,
            guest_features=req.guest_features,
            kernel_hashes=hashes,
        )
        launch = snp_launch(image, settings, req.memory)
        if req.id_block is not None and req.id_auth is not None:
            _check_pair(req.id_block, req.id_auth, launch, req.policy)
        yield launch


@dataclass(frozen=True, slots=True)
class FirmwareResult:
    """What a firmware launch did.

    Args:
        log: the launch log as written and re-read (footer: the SNP launch digest or MRTD).
        notes: launch steps this host skipped.
        ended: how the guest's run ended, for a one-line report (:func:`run_guest`).
    """

    log: MeasurementLog
    notes: tuple[str, ...]
    ended: str


def launch_firmware(
    req: FirmwareLaunch,
    *,
    kernel: Kernel | None = None,
    inputs: tuple[LogInput, ...] = (),
    identity_settings: dict[str, SettingValue] | None = None,
    on_log: Callable[[MeasurementLog, str], None] | None = None,
    on_note: Callable[[str], None] | None = None,
    on_serial: Callable[[bytes], None] | None = None,
) -> FirmwareResult:
    """Launch ``req`` (:func:`launch_snp_firmware` / :func:`launch_tdx_firmware`), then run
    the guest until it stops or ``req.timeout`` passes (:func:`run_guest`).

    Once the launch is finished (before the guest runs), its log is serialised, read back and
    replayed, and handed to ``on_log`` with its text; then each note goes to ``on_note``.
    ``inputs`` and ``identity_settings`` go into the log header. An ID block is checked
    against the plan's digest and the policy before anything is created.

    Raises:
        KvmUnsupported: the host lacks the technology (nothing was created).
        ConfigError, ImageError, KvmError: exit 2.
        CvmLaunchError: a vCPU's run failed.
    """
    from cvmlaunch import __version__, kvm_map
    from cvmlaunch.files import map_file
    from cvmlaunch.image.ovmf import parse_ovmf
    from cvmlaunch.measure.log import dumps_log, parse_log, verify_log

    hashes = _kernel_hashes(req)
    with map_file(req.firmware) as data, served_fw_cfg(req) as fw_cfg:
        image = parse_ovmf(data, name=os.path.basename(req.firmware))
        finish = kvm_map.SnpFinish(
            id_block=req.id_block,
            id_auth=req.id_auth,
            auth_key_en=req.auth_key_en,
            host_data=req.host_data,
        )
        launched: SnpLaunched | TdxLaunched
        if req.tech == "snp":
            launched = launch_snp_firmware(
                image,
                memory=req.memory,
                vcpus=req.vcpus,
                policy=req.policy,
                finish=finish,
                guest_features=req.guest_features,
                kernel_hashes=hashes,
                kernel=kernel,
                tool_version=__version__,
                vcpu_sig=req.vcpu_sig,
                inputs=inputs,
                extra_settings=identity_settings,
            )
        else:
            launched = launch_tdx_firmware(
                image,
                memory=req.memory,
                vcpus=req.vcpus,
                attributes=req.td_attributes,
                xfam=req.xfam,
                mrconfigid=req.mrconfigid,
                mrowner=req.mrowner,
                mrownerconfig=req.mrownerconfig,
                kernel=kernel,
                tool_version=__version__,
                inputs=inputs,
                extra_settings=identity_settings,
            )
        with launched.vm as vm:
            text = dumps_log(launched.log)
            written = parse_log(text, name="launch log")
            if req.tech == "snp":
                verify_log(written)
            else:
                verify_log(written, plan_contents(launched.launch.plan))
            if on_log is not None:
                on_log(written, text)
            if on_note is not None:
                for note in launched.notes:
                    on_note(note)
            ports = kvm_map.PortBus(vm, [fw_cfg])
            ended = run_guest(vm, req.timeout, on_serial or (lambda data: None), ports=ports)
    return FirmwareResult(written, launched.notes, ended)


def _check_pair(block: bytes, auth: bytes, launch: SnpLaunch, policy: int) -> None:
    """Refuse an ID block pair the firmware would refuse: bad signatures, another launch
    digest than the plan's, another policy (CheckFailed / MeasurementMismatch: exit 1)."""
    from cvmlaunch.measure.identity import check_launch_id_pair
    from cvmlaunch.measure.snp_chain import fold_plan

    check_launch_id_pair(
        block,
        auth,
        measurement=fold_plan(launch.plan),
        policy=_policy(policy),
        source="ID block / ID auth",
    )


def _policy(value: int) -> GuestPolicy:
    from cvmlaunch.measure.identity import GuestPolicy

    return GuestPolicy(value)


#: What the guest's serial port reads: line status "transmitter empty" (port + 5).
_LSR_EMPTY = b"\x60"


def run_guest(
    vm: Vm, timeout: float, on_serial: Callable[[bytes], None], *, ports: PortBus | None = None
) -> str:
    """Run every vCPU (the APs on threads) until each stops or ``timeout`` seconds pass.

    Page-state changes are served (:func:`cvmlaunch.kvm_map.serve_private_memory`); port I/O
    to a device on ``ports`` (e.g. fw_cfg) is that device's; OUTs to COM1 go to
    ``on_serial``; other port I/O reads zeros.

    Returns:
        How the BSP's run ended, for a one-line report.

    Raises:
        CvmLaunchError: a vCPU's run failed (KVM_RUN, a page-state change): the first error.
    """
    import threading
    import time

    from cvmlaunch import kvm_map

    kvm_map.install_kick_handler()
    deadline = time.monotonic() + timeout
    lock = threading.Lock()
    ended: dict[int, str] = {}
    errors: list[CvmLaunchError] = []

    def run_one(vcpu: kvm_map.Vcpu) -> None:
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    ended[vcpu.vcpu_id] = f"was stopped after {timeout:g} s (--timeout)"
                    return
                exit_ = vcpu.run(timeout=left)
                if kvm_map.serve_private_memory(vm, exit_):
                    continue
                if ports is not None and ports.serve(vcpu, exit_):
                    continue
                if isinstance(exit_, kvm_map.IoExit):
                    if exit_.direction is kvm_map.IoDirection.OUT:
                        if exit_.port == kvm_map.SERIAL_PORT:
                            with lock:
                                on_serial(exit_.data)
                    else:
                        n = exit_.size * exit_.count
                        lsr = exit_.port == kvm_map.SERIAL_PORT + 5
                        vcpu.complete_io_in(_LSR_EMPTY * n if lsr else bytes(n))
                    continue
                if isinstance(exit_, kvm_map.TimeoutExit):
                    ended[vcpu.vcpu_id] = f"was stopped after {timeout:g} s (--timeout)"
                else:
                    ended[vcpu.vcpu_id] = f"stopped: {exit_}"
                return
        except CvmLaunchError as exc:
            ended[vcpu.vcpu_id] = f"failed: {exc}"
            errors.append(exc)

    threads = [
        threading.Thread(target=run_one, args=(v,), name=f"vcpu-{v.vcpu_id}", daemon=True)
        for v in vm.vcpus[1:]
    ]
    for t in threads:
        t.start()
    if vm.vcpus:
        run_one(vm.vcpus[0])
    for t in threads:
        t.join(max(deadline - time.monotonic(), 0) + 1.0)
    if errors:
        raise errors[0]
    return ended.get(0, "had no vCPU")
