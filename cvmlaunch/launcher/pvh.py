"""The launch of a PVH plan on KVM: map the inputs, build the plan, create the VM, populate
it, run its vCPUs, complete the launch log and check the guest's own report against it.

Rule 1: every KVM call goes through :mod:`cvmlaunch.kvm_map` and every input file through
:mod:`cvmlaunch.files`; the launch log (its header too) is built here from
:mod:`cvmlaunch.measure.log`. Nothing here prints: what a caller shows (the guest's serial
output, the log, notes, progress) reaches it through callbacks.

Rule 2: :func:`execute` is the whole launch of a plan; :func:`launch_pvh` is the launch of a
settings value (the plan built and the log header given its input digests). Tests call
:func:`execute` directly, with a fake kernel through :func:`open_vm`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cvmlaunch.errors import ConfigError, GuestError
from cvmlaunch.launch_settings import LaunchSettings
from cvmlaunch.launcher._common import ProgressFactory, check_host, input_digests
from cvmlaunch.launcher.report import check_report, parse_report
from cvmlaunch.layout import SNP_ID_AUTH_SIZE, SNP_ID_BLOCK_SIZE, Plan
from cvmlaunch.log_entry import LogEntry, LogOp
from cvmlaunch.memory_map import MemoryMap
from cvmlaunch.plan.pvh import DEBUG_EXIT_PORT, SERIAL_PORT, PvhLaunch, pvh_launch
from cvmlaunch.technology import Technology

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cvmlaunch.kvm_map import Kernel, SnpFinish, Vcpu, Vm
    from cvmlaunch.measure.log import LogHeader, LogInput, MeasurementLog, SettingValue

__all__ = [
    "LaunchResult",
    "check_snp_id_pair",
    "execute",
    "header_settings",
    "launch_pvh",
    "load_pvh_launch",
    "log_header",
    "open_vm",
    "populate_plan",
]


@contextlib.contextmanager
def load_pvh_launch(settings: LaunchSettings) -> Iterator[PvhLaunch]:
    """Map the input files and build the plan; the files stay mapped while the plan is used.

    Raises:
        ConfigError: no kernel, or a kernel without a PVH entry note.
        ImageError: an input that cannot be read or parsed.
        LayoutError: the images do not fit the memory.
    """
    from cvmlaunch.files import map_file, read_blob
    from cvmlaunch.image.elf import elf_regions, parse_elf

    if settings.kernel is None:
        raise ConfigError("no kernel: give --kernel FILE, --config FILE or --example")
    with contextlib.ExitStack() as stack:
        kernel = stack.enter_context(map_file(settings.kernel))
        image = parse_elf(kernel, name=settings.kernel)
        if image.pvh_entry is None:
            raise ConfigError(
                f"{settings.kernel}: no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY); "
                "cvmlaunch boots ELF kernels through their PVH entry"
            )
        memory = MemoryMap.for_size(settings.memory)
        # Provenance names the file, not its path: logs must not depend on where it lives.
        regions = elf_regions(
            dataclasses.replace(image, name=Path(settings.kernel).name), memory=memory
        )
        initrd = stack.enter_context(map_file(settings.initrd)) if settings.initrd else None
        firmware = stack.enter_context(map_file(settings.firmware)) if settings.firmware else None
        id_block = id_auth = None
        if settings.id_block is not None and settings.id_auth is not None:
            id_block = read_blob(settings.id_block, SNP_ID_BLOCK_SIZE, "ID block")
            id_auth = read_blob(settings.id_auth, SNP_ID_AUTH_SIZE, "ID auth")
            check_snp_id_pair(settings, id_block, id_auth)
        yield pvh_launch(
            settings,
            regions,
            image.pvh_entry,
            initrd=initrd,
            initrd_name=Path(settings.initrd).name if settings.initrd else "initrd",
            firmware=firmware,
            firmware_name=Path(settings.firmware).name if settings.firmware else "firmware",
            id_block=id_block,
            id_auth=id_auth,
        )


def check_snp_id_pair(settings: LaunchSettings, id_block: bytes, id_auth: bytes) -> None:
    """Check an SNP launch's ID block pair as the firmware will at LAUNCH_FINISH (signatures,
    policy); the launch digest of a PVH plan is not predicted, so it is not compared. Nothing
    to check for other technologies.

    Raises:
        CheckFailed: the firmware would refuse the pair.
    """
    if settings.tech is not Technology.SEV_SNP:
        return
    from cvmlaunch.measure.identity import GuestPolicy, check_launch_id_pair

    check_launch_id_pair(
        id_block,
        id_auth,
        measurement=None,
        policy=GuestPolicy(settings.snp_policy),
        source=f"{settings.id_block} / {settings.id_auth}",
    )


@dataclass(frozen=True, slots=True)
class LaunchResult:
    """What a launch did.

    Args:
        log: the launch measurement log: kvm_map's records completed with their technology's
            replay, as written and re-read (the log the guest's report was checked against).
        notes: populate steps this host skipped (e.g. no ``KVM_PRE_FAULT_MEMORY``).
        serial: everything the guest wrote to COM1.
        exit_status: the value the guest wrote to the debug-exit port, if any.
        checked: the number of ranges whose guest digest matched the log.
    """

    log: MeasurementLog
    notes: tuple[str, ...]
    serial: str
    exit_status: int | None
    checked: int


def populate_plan(
    vm: Vm,
    plan: Plan,
    snp_finish: SnpFinish | None = None,
    *,
    progress: ProgressFactory | None = None,
) -> tuple[tuple[LogEntry, ...], tuple[str, ...]]:
    """Populate the whole ``plan`` in one call, reporting the bytes copied to ``progress``.

    The progress advances on every record :func:`cvmlaunch.kvm_map.populate` makes
    (``on_record``), by the bytes copied; it is closed once populate ends.
    """
    from cvmlaunch import kvm_map

    total = sum(r.size for r in plan.memory_regions)
    bar = progress(total, "populating guest memory") if progress is not None else None
    copied = 0

    def on_record(entry: LogEntry) -> None:
        nonlocal copied
        if entry.op is LogOp.PLAIN_COPY:
            copied += entry.size
            if bar is not None:
                bar(copied)

    try:
        done = kvm_map.populate(vm, plan, snp_finish=snp_finish, on_record=on_record)
    finally:
        if bar is not None:
            bar.close()
    return done.entries, done.notes


def header_settings(launch: PvhLaunch) -> dict[str, SettingValue]:
    """The launch log header's settings for ``launch``: the memory size, the number of vCPUs,
    the PVH entry point (informational), and the launch identity of an SNP or TDX plan
    (:func:`cvmlaunch.measure.reference.launch_identity_settings`: policy, host data, ID block pair;
    MRCONFIGID, MROWNER, MROWNERCONFIG), which no digest covers."""
    settings: dict[str, SettingValue] = {
        "memory": launch.settings.memory,
        "vcpus": launch.vcpus,
        "pvh_entry": launch.entry,
    }
    from cvmlaunch.measure.reference import launch_identity_settings

    return settings | launch_identity_settings(launch)


def log_header(launch: PvhLaunch, inputs: tuple[LogInput, ...] = ()) -> LogHeader:
    """The launch log's header for ``launch`` (``--tech none``: technology ``plain``).

    Its settings are informational (the transcript covers only the records): the memory size,
    the number of vCPUs and the PVH entry point.
    """
    from cvmlaunch import __version__
    from cvmlaunch.measure.plain import plain_header

    if launch.tech is not Technology.PLAIN:  # pragma: no cover - no SNP/TDX host to run on here
        raise ConfigError(f"no launch log for {launch.tech.label} launches yet")
    return plain_header(header_settings(launch), inputs=inputs, tool_version=__version__)


def _run_vcpu(
    vcpu: Vcpu, index: int, deadline: float, timeout: float, on_out: Callable[[int, bytes], None]
) -> None:
    """Run one vCPU until it halts; relay its port output to ``on_out``.

    Raises:
        GuestError: the deadline passed, or the vCPU stopped for another reason.
    """
    from cvmlaunch import kvm_map

    while True:
        left = deadline - time.monotonic()
        exit_ = vcpu.run(timeout=max(left, 0.001)) if left > 0 else kvm_map.TimeoutExit(timeout)
        if isinstance(exit_, kvm_map.HltExit):
            return
        if isinstance(exit_, kvm_map.IoExit):
            if exit_.direction is kvm_map.IoDirection.OUT:
                on_out(exit_.port, exit_.data)
            else:  # no device model: reads of any port see all ones
                vcpu.complete_io_in(b"\xff" * (exit_.size * exit_.count))
            continue
        if isinstance(exit_, kvm_map.TimeoutExit):
            raise GuestError(
                f"vCPU {index}: the guest did not halt within {timeout:g} s (--timeout); stopped it"
            )
        raise GuestError(f"vCPU {index}: the guest stopped unexpectedly: {exit_}")


def open_vm(launch: PvhLaunch, *, kernel: Kernel | None = None) -> tuple[Vm, SnpFinish | None]:
    """Create the VM of a PVH plan: a default VM whose memory backend is the plan's
    ``memory_backend`` setting as :func:`cvmlaunch.kvm_map.choose_memory_backend` resolves it
    on this host (``vm.memory_backend``).

    SNP and TDX guests start in their firmware, not at a PVH entry: they are launched by
    :func:`cvmlaunch.launcher.launch_firmware`; a PVH plan of theirs gets its VM type's host
    checks here (nothing is created on a host without it) and then a ConfigError.

    Args:
        launch: the launch (its plan, memory map and entry).
        kernel: the kernel seam (tests pass a fake); None: the running kernel.

    Returns:
        The VM (the caller closes it) and None (no LAUNCH_FINISH arguments).

    Raises:
        KvmUnsupported: the host lacks the VM type or its memory (nothing was created).
        ConfigError: an SNP or TDX plan (see above).
        KvmError: a call failed (the VM is closed).
    """
    from cvmlaunch import kvm_map

    if launch.tech is not Technology.PLAIN:
        with kvm_map.Kvm.open(kernel) as kvm:
            kvm.caps().require(kvm_map.VM_TYPE[launch.tech], launch.settings.memory_backend)
        raise ConfigError(
            f"tech {launch.tech.label} needs firmware: a {launch.tech.label} guest starts there, "
            "not at a PVH entry (launch it with launch_firmware)",
            setting="firmware",
            also=("tech",),
        )
    vm = kvm_map.Vm.open(
        kvm_map.VM_TYPE[launch.tech], kernel=kernel, memory_backend=launch.settings.memory_backend
    )
    return vm, None


def execute(
    launch: PvhLaunch,
    *,
    timeout: float,
    header: LogHeader | None = None,
    on_serial: Callable[[bytes], None] | None = None,
    after_populate: Callable[[Vm], None] | None = None,
    on_log: Callable[[MeasurementLog, str], None] | None = None,
    on_note: Callable[[str], None] | None = None,
    progress: ProgressFactory | None = None,
) -> LaunchResult:
    """Create the VM, populate it, run its vCPUs, and check the guest's report against the log.

    vCPU 0 enters the PVH entry with %ebx = start_info. Other vCPUs enter the same entry in
    the same 32-bit state with %ebx = 0, which the example guest takes as "park": they are run
    first, one after the other, each until it halts; then vCPU 0 runs until it halts.

    The log is kvm_map's records (what populate did) completed with the technology's replay
    (:func:`cvmlaunch.measure.log.complete_log`); its header gains two host details, which
    no digest covers: ``pre_fault_memory`` (whether this host pre-faulted the ranges) and
    ``memory_backend`` (``guest-memfd`` or ``anonymous``). Once the guest has
    halted, the log is serialised, read back and replayed
    (:func:`cvmlaunch.measure.log.verify_log`), handed to ``on_log`` with its text, and the
    guest's report is checked against that re-read log. A guest that does not halt (or a
    populate that fails) never reaches ``on_log``.

    Args:
        launch: the launch (its plan, memory map and entry).
        timeout: seconds all vCPUs together may run.
        header: the log header (default: :func:`log_header` without inputs).
        on_serial: called with the guest's serial output as it comes (None: not relayed).
        after_populate: called with the :class:`cvmlaunch.kvm_map.Vm` after populate and
            before any vCPU runs (tests change guest memory through the mapping with it).
        on_log: called with the log and its text once the guest has halted, before the check
            (the CLI writes ``--log`` there, so a digest mismatch still leaves the log to
            inspect).
        on_note: called with the memory backend's note when ``auto`` fell back to anonymous
            memory (naming the missing capability), before populate, and with each populate
            note (a step this host skipped) right after populate.
        progress: makes the populate's progress display (None: none).

    Returns:
        The log, the serial output, the guest's exit status and the number of ranges checked.

    Raises:
        KvmUnsupported: the host lacks what the plan needs (before anything is created).
        KvmError: a KVM call failed.
        GuestError: the guest crashed, or did not halt within ``timeout``.
        MeasurementMismatch: a range's guest digest differs from the log (names the range).
        CheckFailed: the guest's report is incomplete or inconsistent with the table.
    """
    from cvmlaunch.measure.log import complete_log, dumps_log, parse_log, verify_log

    check_host(launch.tech, launch.settings.memory_backend)
    if launch.tech is not Technology.PLAIN:  # pragma: no cover - no SNP/TDX host to run on here
        raise ConfigError(f"launching {launch.tech.label} guests is not implemented yet")
    header = header or log_header(launch)
    serial = bytearray()
    status: list[int] = []

    def on_out(port: int, data: bytes) -> None:
        if port == SERIAL_PORT:
            serial.extend(data)
            if on_serial is not None:
                on_serial(data)
        elif port == DEBUG_EXIT_PORT:
            status.append(data[0])

    memory = launch.plan.memory
    if memory is None:  # pvh_launch always sets it
        raise ConfigError("the plan has no memory map")
    vm, finish = open_vm(launch)
    with vm:
        backend = vm.memory_backend
        if backend.fallback and on_note is not None:
            on_note(backend.reason)
        vm.map_memory(memory)
        records, notes = populate_plan(vm, launch.plan, finish, progress=progress)
        if on_note is not None:
            for note in notes:
                on_note(note)
        pre_faulted = any(e.op is LogOp.PRE_FAULT for e in records)
        settings = {
            **header.settings,
            "pre_fault_memory": pre_faulted,
            "memory_backend": backend.backend.value,
        }
        log = complete_log(dataclasses.replace(header, settings=settings), records)
        if after_populate is not None:
            after_populate(vm)
        vcpus = [vm.create_vcpu(i) for i in range(launch.vcpus)]
        for i, vcpu in enumerate(vcpus):
            vcpu.setup_protected_mode(launch.entry, rbx=launch.start_info_gpa if i == 0 else 0)
        deadline = time.monotonic() + timeout
        for i in [*range(1, len(vcpus)), 0]:
            _run_vcpu(vcpus[i], i, deadline, timeout, on_out)
    log_text = dumps_log(log)
    written = parse_log(log_text, name="launch log")
    verify_log(written)
    if on_log is not None:
        on_log(written, log_text)
    text = serial.decode("ascii", "replace")
    checked = check_report(parse_report(text), launch.hashed, written.entries)
    return LaunchResult(written, notes, text, status[0] if status else None, checked)


def launch_pvh(
    settings: LaunchSettings,
    *,
    on_serial: Callable[[bytes], None] | None = None,
    on_log: Callable[[MeasurementLog, str], None] | None = None,
    on_note: Callable[[str], None] | None = None,
    progress: ProgressFactory | None = None,
) -> LaunchResult:
    """Launch ``settings`` (``--tech none``): :func:`load_pvh_launch`, then :func:`execute` with the
    log header naming the input files (:func:`~cvmlaunch.launcher.input_digests`) and
    ``settings.timeout``; the callbacks are :func:`execute`'s.

    Raises:
        CvmLaunchError: as :func:`load_pvh_launch` and :func:`execute`.
    """
    with load_pvh_launch(settings) as launch:
        return execute(
            launch,
            timeout=settings.timeout,
            header=log_header(launch, input_digests(settings)),
            on_serial=on_serial,
            on_log=on_log,
            on_note=on_note,
            progress=progress,
        )
