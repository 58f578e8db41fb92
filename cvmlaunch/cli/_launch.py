"""``cvmlaunch launch``: boot a PVH guest on KVM and check its own digests against the log.

The command composes: settings (flags or TOML, :mod:`cvmlaunch.launch`), the input files
(:mod:`cvmlaunch.files`), the ELF loader (:mod:`cvmlaunch.image.elf`), the plan
(:func:`cvmlaunch.plan.pvh.pvh_launch`) and the KVM layer (:mod:`cvmlaunch.kvm_map`), which does
every system call. Every KVM step is in :func:`execute`, which tests call directly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import click

from cvmlaunch.cli._params import FILE
from cvmlaunch.errors import ConfigError, GuestError, ImageError
from cvmlaunch.files import Output, check_outputs, map_file, read_blob, read_small, write_output
from cvmlaunch.image.elf import elf_regions, parse_elf
from cvmlaunch.launch import check_report, parse_report
from cvmlaunch.launch_identity import SnpLaunchIdentity, TdxLaunchIdentity
from cvmlaunch.launch_settings import LaunchSettings, settings_from_toml
from cvmlaunch.layout import SNP_ID_AUTH_SIZE, SNP_ID_BLOCK_SIZE, Plan
from cvmlaunch.log_entry import LogEntry, LogOp
from cvmlaunch.memory_map import MemoryMap
from cvmlaunch.plan.pvh import DEBUG_EXIT_PORT, SERIAL_PORT, PvhLaunch, pvh_launch
from cvmlaunch.technology import Technology
from cvmlaunch.text import printable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TextIO

    from cvmlaunch.kvm_map import Kernel, SnpFinish, Vm
    from cvmlaunch.measure.log import LogHeader, LogInput, MeasurementLog, SettingValue

__all__ = [
    "LAUNCH",
    "LaunchResult",
    "describe_plan",
    "execute",
    "header_settings",
    "input_digests",
    "launch",
    "load_plan",
    "log_header",
    "open_vm",
]

#: A populate shorter than this shows no progress bar.
_PROGRESS_DELAY = 0.5
#: The progress bar's width in columns (fewer on a narrow terminal).
_BAR_WIDTH = 36


def example_config() -> Path:
    """The bundled example's TOML (cvmlaunch/data/example.toml)."""
    return Path(str(resources.files("cvmlaunch") / "data" / "example.toml"))


@contextlib.contextmanager
def load_plan(settings: LaunchSettings) -> Iterator[PvhLaunch]:
    """Map the input files and build the plan; the files stay mapped while the plan is used.

    Raises:
        ConfigError: no kernel, or a kernel without a PVH entry note.
        ImageError: an input that cannot be read or parsed.
        LayoutError: the images do not fit the memory.
    """
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


def _mib(size: int) -> str:
    return f"{size / (1 << 20):g} MiB" if size >= 1 << 20 else f"{size / 1024:g} KiB"


def _table(rows: list[tuple[str, ...]], right: frozenset[int]) -> Iterator[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        cells = (
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        yield ("  " + "  ".join(cells)).rstrip()


def describe_plan(plan: PvhLaunch) -> Iterator[str]:
    """The plan and the predicted measurement, as text lines (``--dry-run``).

    For ``--tech none`` the prediction is the transcript digest of the plain launch log
    (:mod:`cvmlaunch.measure.plain`), the value the real launch's log must end with.
    """
    s = plan.settings
    yield (
        f"plan: tech {plan.tech.label}, memory {_mib(s.memory)}, {plan.vcpus} vCPU"
        f"{'s' if plan.vcpus != 1 else ''}, PVH entry {plan.entry:#x}, "
        f"start_info {plan.start_info_gpa:#x}"
    )
    if s.append:
        yield f"cmdline: {s.append}"
    memory_map = plan.layout.memory
    if memory_map is not None:
        yield "memslots:"
        for slot in memory_map.memslots:
            yield (
                f"  {slot.slot}  [{slot.gpa:#014x}-{slot.end:#014x})  {slot.kind.value:<9}"
                f"{_mib(slot.size)}"
            )
    yield "ranges (populate order = range table order); sha384: what the guest must report:"
    rows: list[tuple[str, ...]] = [("#", "GPA range", "pages", "type", "measured", "provenance")]
    for i, region in enumerate(plan.hashed):
        rows.append(
            (
                str(i),
                f"[{region.gpa:#010x}-{region.end:#010x})",
                str(region.npages),
                region.page_type.name,
                "yes" if region.measured else "no",
                region.provenance.describe(),
            )
        )
    lines = list(_table(rows, frozenset({0, 2})))
    yield lines[0]
    for line, digest in zip(lines[1:], plan.predicted(), strict=True):
        yield line
        yield f"      sha384 {digest.hex()}"
    yield from _identity_lines(plan)
    yield from _prediction(plan)


def _identity_lines(plan: PvhLaunch) -> Iterator[str]:
    """The launch identity the VM is started with (reported beside the digest, not in it)."""
    yield from identity_lines(plan.settings.snp_policy, plan.snp, plan.tdx)


def identity_lines(
    policy: int, snp: SnpLaunchIdentity | None, tdx: TdxLaunchIdentity | None
) -> Iterator[str]:
    """The launch identity lines of a dry run: the SNP policy, host data and ID key digests,
    or the TDX MR values (nothing for a plain launch)."""
    if snp is None and tdx is None:
        return
    yield "launch identity (reported beside the launch digest, never measured):"
    if snp is not None:
        from cvmlaunch.measure.identity import GuestPolicy, IdAuth

        yield f"  policy         {GuestPolicy(policy).describe()}"
        yield f"  host_data      {snp.host_data.hex()}"
        if snp.id_auth is None:
            yield "  id_block       none"
        else:
            auth = IdAuth.unpack(snp.id_auth)
            yield f"  id_key_digest  {auth.id_key_digest.hex()}"
            if auth.has_author_key:
                yield f"  author_key_digest {auth.author_key_digest.hex()}"
    else:
        from cvmlaunch.measure.reference import identity_settings

        for key, value in identity_settings(tdx=tdx).items():
            yield f"  {key:<14} {value}"


def _prediction(plan: PvhLaunch) -> Iterator[str]:
    if plan.tech is Technology.PLAIN:
        from cvmlaunch.measure.plain import PLAIN_ALGORITHM, plain_header, plain_log

        log = plain_log(plan.layout, plain_header({}, tool_version=""))
        yield (
            f"predicted launch log digest (plain, {PLAIN_ALGORITHM}; informational, no hardware "
            f"measures a plain launch): {log.digest.hex()}"
        )
    elif plan.tech is Technology.SEV_SNP:
        yield (
            "predicted SNP launch digest: not predicted. It covers one VMSA per vCPU, and "
            "cvmlaunch defines no SNP VMSA for a PVH entry (SNP launches of this plan are not "
            "implemented), so no digest of this plan would be the one a launch reports."
        )
        if plan.settings.firmware is not None:
            yield (
                "  QEMU's SNP launch of this firmware (OVMF, kernel hashes) is predicted by: "
                f"cvmlaunch measure snp --ovmf {plan.settings.firmware} --vcpus {plan.vcpus}"
            )
    else:
        from cvmlaunch.measure.tdx import PageOrder, mrtd

        order = PageOrder.PER_PAGE
        yield (
            f"predicted MRTD (TDX fold over the plan: every range PAGE.ADDed, measured ranges "
            f"MR.EXTENDed, page order {order.value}): {mrtd(plan.layout, order=order).hex()}"
        )
        yield (
            "  covers the plan's ranges as populated; a TD starts at its firmware's reset "
            "vector, not at a PVH entry (launching this plan as a TD is not implemented)"
        )
        if plan.settings.firmware is not None:
            yield (
                "  a TDVF firmware measures by its own metadata: QEMU's launch of it is "
                f"predicted by: cvmlaunch measure tdx --firmware {plan.settings.firmware}"
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


class _LazyProgress:
    """A progress bar on stderr that appears only once a populate takes a while.

    On a terminal the bar is redrawn in place (only when the line changes) and ended with a
    newline by :meth:`close`; elsewhere (a pipe, a log file) the label is printed once.
    Standard error is looked up when the bar appears, not when this module is imported.
    """

    def __init__(self, total: int, label: str) -> None:
        self.total = total
        self.label = label
        self.start = time.monotonic()
        self.done = 0
        self.stream: TextIO | None = None
        self.terminal = False
        self.line = ""

    def __call__(self, done: int) -> None:
        self.done = done
        if self.stream is None:
            if time.monotonic() - self.start < _PROGRESS_DELAY:
                return
            self.stream = sys.stderr
            self.terminal = self.stream.isatty()
            if not self.terminal:
                print(self.label, file=self.stream, flush=True)
        if self.terminal:
            self._draw(self.stream)

    def _draw(self, stream: TextIO) -> None:
        fraction = min(self.done / self.total, 1.0) if self.total > 0 else 1.0
        try:
            columns = os.get_terminal_size(stream.fileno()).columns
        except (OSError, ValueError):
            columns = 80
        # label, two spaces, [bar], two spaces, "100%", one column spare
        width = max(10, min(_BAR_WIDTH, columns - len(self.label) - 11))
        filled = int(fraction * width)
        line = f"{self.label}  [{'#' * filled}{'-' * (width - filled)}]  {int(fraction * 100):3d}%"
        if line != self.line:
            self.line = line
            stream.write("\r" + line)
            stream.flush()

    def close(self) -> None:
        """End the bar's line (on a terminal, once the bar has appeared)."""
        if self.stream is not None and self.terminal:
            self.stream.write("\n")
            self.stream.flush()


def check_host(tech: Technology, memory_backend: str = "auto") -> None:
    """Stop before creating anything when the host cannot run ``tech`` with
    ``memory_backend`` (``auto``, ``guest-memfd``, ``anonymous``).

    Raises:
        KvmUnsupported: naming the missing capability.
        ConfigError: a backend the technology cannot use.
        KvmError: ``/dev/kvm`` cannot be opened.
    """
    from cvmlaunch import kvm_map

    vm_type = kvm_map.VM_TYPE[tech]
    with kvm_map.Kvm.open() as kvm:
        kvm.caps().require(vm_type, memory_backend)


def _populate(
    vm: Any, layout: Plan, snp_finish: SnpFinish | None = None
) -> tuple[tuple[LogEntry, ...], tuple[str, ...]]:
    """Populate the whole ``layout`` in one call, with a progress bar once it takes a moment.

    The bar advances on every record :func:`cvmlaunch.kvm_map.populate` makes (``on_record``),
    by the bytes copied.
    """
    from cvmlaunch import kvm_map

    total = sum(r.size for r in layout.memory_regions)
    progress = _LazyProgress(total, "populating guest memory")
    copied = 0

    def on_record(entry: LogEntry) -> None:
        nonlocal copied
        if entry.op is LogOp.PLAIN_COPY:
            copied += entry.size
            progress(copied)

    try:
        done = kvm_map.populate(vm, layout, snp_finish=snp_finish, on_record=on_record)
    finally:
        progress.close()
    return done.entries, done.notes


def header_settings(plan: PvhLaunch) -> dict[str, SettingValue]:
    """The launch log header's settings for ``plan``: the memory size, the number of vCPUs,
    the PVH entry point (informational), and the launch identity of an SNP or TDX plan
    (:func:`cvmlaunch.measure.reference.launch_identity_settings`: policy, host data, ID block pair;
    MRCONFIGID, MROWNER, MROWNERCONFIG), which no digest covers."""
    settings: dict[str, SettingValue] = {
        "memory": plan.settings.memory,
        "vcpus": plan.vcpus,
        "pvh_entry": plan.entry,
    }
    from cvmlaunch.measure.reference import launch_identity_settings

    return settings | launch_identity_settings(plan)


def log_header(plan: PvhLaunch, inputs: tuple[LogInput, ...] = ()) -> LogHeader:
    """The launch log's header for ``plan`` (``--tech none``: technology ``plain``).

    Its settings are informational (the transcript covers only the records): the memory size,
    the number of vCPUs and the PVH entry point.
    """
    from cvmlaunch import __version__
    from cvmlaunch.measure.plain import plain_header

    if plan.tech is not Technology.PLAIN:  # pragma: no cover - no SNP/TDX host to run on here
        raise ConfigError(f"no launch log for {plan.tech.label} launches yet")
    return plain_header(header_settings(plan), inputs=inputs, tool_version=__version__)


def input_digests(settings: LaunchSettings) -> tuple[LogInput, ...]:
    """The launch's input files and command line, with sizes and SHA-256/SHA-384 (streamed)."""
    from cvmlaunch.files import file_digests
    from cvmlaunch.measure.log import LogInput

    out = []
    for role in ("firmware", "kernel", "initrd"):
        path = getattr(settings, role)
        if path is not None:
            size, (sha256, sha384) = file_digests(path, ["sha256", "sha384"], role)
            out.append(LogInput(role, Path(path).name, size, sha256=sha256, sha384=sha384))
    from cvmlaunch.measure.log import cmdline_input

    out.append(cmdline_input(settings.cmdline))
    return tuple(out)


def _run_vcpu(
    vcpu: Any, index: int, deadline: float, timeout: float, on_out: Callable[[int, bytes], None]
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


def open_vm(plan: PvhLaunch, *, kernel: Kernel | None = None) -> tuple[Vm, SnpFinish | None]:
    """Create the VM of a PVH plan: a default VM whose memory backend is the plan's
    ``memory_backend`` setting as :func:`cvmlaunch.kvm_map.choose_memory_backend` resolves it
    on this host (``vm.memory_backend``).

    SNP and TDX guests start in their firmware, not at a PVH entry: they are launched by
    :func:`cvmlaunch.cli._cc_launch.launch_confidential`; a PVH plan of theirs gets its VM
    type's host checks here (nothing is created on a host without it) and then a ConfigError.

    Args:
        plan: the launch plan.
        kernel: the kernel seam (tests pass a fake); None: the running kernel.

    Returns:
        The VM (the caller closes it) and None (no LAUNCH_FINISH arguments).

    Raises:
        KvmUnsupported: the host lacks the VM type or its memory (nothing was created).
        ConfigError: an SNP or TDX plan (see above).
        KvmError: a call failed (the VM is closed).
    """
    from cvmlaunch import kvm_map

    if plan.tech is not Technology.PLAIN:
        vm_type = kvm_map.VM_TYPE[plan.tech]
        with kvm_map.Kvm.open(kernel) as kvm:
            kvm.caps().require(vm_type, plan.settings.memory_backend)
        raise ConfigError(
            f"a {plan.tech.label} guest starts in its firmware, not at a PVH entry: launch it "
            f"with --tech {plan.tech.label} --firmware"
        )
    vm = kvm_map.Vm.open(
        kvm_map.VmType.DEFAULT, kernel=kernel, memory_backend=plan.settings.memory_backend
    )
    return vm, None


def execute(
    plan: PvhLaunch,
    *,
    timeout: float,
    header: LogHeader | None = None,
    serial_out: TextIO | None = None,
    after_populate: Callable[[Any], None] | None = None,
    on_log: Callable[[MeasurementLog, str], None] | None = None,
    on_note: Callable[[str], None] | None = None,
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
        plan: the launch plan.
        timeout: seconds all vCPUs together may run.
        header: the log header (default: :func:`log_header` without inputs).
        serial_out: where to relay the guest's serial output as it comes (None: not relayed).
        after_populate: called with the :class:`cvmlaunch.kvm_map.Vm` after populate and
            before any vCPU runs (tests change guest memory through the mapping with it).
        on_log: called with the log and its text once the guest has halted, before the check
            (the CLI writes ``--log`` there, so a digest mismatch still leaves the log to
            inspect).
        on_note: called with the memory backend's note when ``auto`` fell back to anonymous
            memory (naming the missing capability), before populate, and with each populate
            note (a step this host skipped) right after populate.

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

    check_host(plan.tech, plan.settings.memory_backend)
    if plan.tech is not Technology.PLAIN:  # pragma: no cover - no SNP/TDX host to run on here
        raise ConfigError(f"launching {plan.tech.label} guests is not implemented yet")
    header = header or log_header(plan)
    serial = bytearray()
    status: list[int] = []

    def on_out(port: int, data: bytes) -> None:
        if port == SERIAL_PORT:
            serial.extend(data)
            if serial_out is not None:
                serial_out.write(data.decode("ascii", "replace"))
                serial_out.flush()
        elif port == DEBUG_EXIT_PORT:
            status.append(data[0])

    memory = plan.layout.memory
    if memory is None:  # pvh_launch always sets it
        raise ConfigError("the plan has no memory map")
    vm, finish = open_vm(plan)
    with vm:
        backend = vm.memory_backend
        if backend.fallback and on_note is not None:
            on_note(backend.reason)
        vm.map_memory(memory)
        records, notes = _populate(vm, plan.layout, finish)
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
        vcpus = [vm.create_vcpu(i) for i in range(plan.vcpus)]
        for i, vcpu in enumerate(vcpus):
            vcpu.setup_protected_mode(plan.entry, rbx=plan.start_info_gpa if i == 0 else 0)
        deadline = time.monotonic() + timeout
        for i in [*range(1, len(vcpus)), 0]:
            _run_vcpu(vcpus[i], i, deadline, timeout, on_out)
    log_text = dumps_log(log)
    written = parse_log(log_text, name="launch log")
    verify_log(written)
    if on_log is not None:
        on_log(written, log_text)
    text = serial.decode("ascii", "replace")
    checked = check_report(parse_report(text), plan.hashed, written.entries)
    return LaunchResult(written, notes, text, status[0] if status else None, checked)


_OPTIONS = (
    "memory",
    "vcpus",
    "firmware",
    "kernel",
    "initrd",
    "append",
    "tech",
    "timeout",
    "memory_backend",
    "policy",
    "host_data",
    "id_block",
    "id_auth",
    "mrconfigid",
    "mrowner",
    "mrownerconfig",
    "vcpu_type",
    "vcpu_sig",
    "guest_features",
    "td_attributes",
    "xfam",
)


def _read_config(path: str) -> str:
    """The text of a TOML settings file.

    Raises:
        ImageError: it cannot be read (or is a directory) or is not UTF-8 text.
    """
    data = read_small(path, "settings file")
    try:
        return data.decode()
    except UnicodeDecodeError as exc:
        raise ImageError(f"not UTF-8 text (byte {exc.start})", source=path) from None


def _inputs(settings: LaunchSettings, config: str | None) -> list[str]:
    """Every file the launch reads: ``--log`` may be none of them."""
    paths = [config, settings.kernel, settings.initrd, settings.firmware]
    return [p for p in (*paths, settings.id_block, settings.id_auth) if p]


def launch(
    *,
    config: str | None,
    example: bool,
    dry_run: bool,
    log_file: str | None,
    overrides: dict[str, Any],
) -> None:
    """Run ``launch`` (see :data:`LAUNCH`): settings from ``config`` or the bundled example,
    then ``overrides`` (the flags by :class:`~cvmlaunch.launch.LaunchSettings` field name,
    None = not given).

    Raises:
        CvmLaunchError: bad settings or inputs, an unusable host, a guest that fails
            (exit 2), or guest digests that differ from the log (exit 1).
    """
    unknown = set(overrides) - set(_OPTIONS)
    if unknown:  # pragma: no cover - a flag without a setting is a bug of this module
        raise TypeError(f"launch: unknown settings {sorted(unknown)}")
    if example and config is not None:
        raise ConfigError("give --example or --config, not both")
    if log_file == "-":
        raise ConfigError(
            "--log -: standard output carries the guest's serial output; give --log a file"
        )
    source = str(example_config()) if example else config
    text = _read_config(source) if source is not None else ""
    base = str(Path(source).parent) if source is not None else "."
    settings = settings_from_toml(
        text, base=base, source="flags" if source is None else source, overrides=overrides
    )
    read = _inputs(settings, source)
    if log_file is not None:  # refused before the guest runs: the log is written after
        check_outputs([Output(log_file, b"", what="the launch log")], inputs=read)
    if settings.tech is not Technology.PLAIN and not dry_run:
        check_host(settings.tech, settings.memory_backend)
    if settings.tech is not Technology.PLAIN:
        from cvmlaunch.cli._cc_launch import launch_confidential

        launch_confidential(settings, dry_run=dry_run, log_file=log_file, protect=tuple(read))
        return
    with load_plan(settings) as plan:
        if dry_run:
            for line in describe_plan(plan):
                print(printable(line))  # names and the command line come from inputs
            return
        header = log_header(plan, input_digests(settings))

        def write_log(log: MeasurementLog, text: str) -> None:
            if log_file is not None:
                write_output(log_file, text, what="the launch log", inputs=read)
            where = f" written to {log_file}" if log_file is not None else ""
            print(
                f"cvmlaunch: launch log{where}: {len(log.entries)} records, "
                f"{log.header.technology.value} digest {log.digest.hex()}",
                file=sys.stderr,
            )

        result = execute(
            plan,
            timeout=settings.timeout,
            header=header,
            serial_out=sys.stdout,
            on_log=write_log,
            on_note=lambda note: print(f"cvmlaunch: note: {note}", file=sys.stderr),
        )
    print(
        f"cvmlaunch: guest digests match the launch log for all {result.checked} ranges",
        file=sys.stderr,
    )


_HELP = """Boot a PVH guest, or an SEV-SNP / TDX guest's firmware, on KVM.

--tech none (default): the guest (e.g. the bundled example, --example) hashes every range
the launcher placed in its memory and reports the digests on its serial port, which is
relayed to stdout; exit 0 only if they match the log. --tech snp|tdx --firmware OVMF: a
confidential launch of the firmware (--kernel/--initrd/--append are served to it over
fw_cfg; SNP measures them in its kernel-hashes page), whose launch digest or MRTD is printed
on stderr and equals what measure snp|tdx predicts (--dry-run
prints the plan and that prediction without a host). --log FILE writes the whole log."""


@click.command("launch", help=_HELP, short_help=_HELP.splitlines()[0])
@click.option(
    "--config",
    type=FILE,
    metavar="FILE",
    help="TOML file with the settings below (QEMU-like names); flags override it",
)
@click.option("--example", is_flag=True, help="launch the bundled example guest")
@click.option("-m", "--memory", metavar="SIZE", help="guest RAM: 512M, 5G, or MiB [default: 512M]")
@click.option(
    "--vcpus", "--smp", "vcpus", type=int, metavar="N", help="number of vCPUs [default: 1]"
)
@click.option(
    "--firmware",
    "--bios",
    "firmware",
    type=FILE,
    metavar="FILE",
    help="firmware image (mapped to end at 4 GiB)",
)
@click.option("--kernel", type=FILE, metavar="FILE", help="PVH ELF kernel")
@click.option("--initrd", type=FILE, metavar="FILE", help="initial ramdisk")
@click.option("--append", metavar="CMDLINE", help="kernel command line")
@click.option(
    "--tech",
    type=click.Choice(["none", "snp", "tdx"]),
    help="confidential computing technology (none: a plain VM) [default: none]",
)
@click.option(
    "--timeout", type=float, metavar="SECONDS", help="seconds the guest may run [default: 60]"
)
@click.option(
    "--memory-backend",
    type=click.Choice(["auto", "guest-memfd", "anonymous"]),
    help="guest memory of a plain VM: guest_memfd, or anonymous memory where the host "
    "offers no guest_memfd with mmap (auto; SNP/TDX: guest-memfd only) [default: auto]",
)
@click.option(
    "--log",
    "log_file",
    type=FILE,
    metavar="FILE",
    help="write the launch measurement log (JSON Lines, docs/log-format.md) to FILE, "
    "atomically, once the guest has halted",
)
@click.option("--policy", metavar="HEX", help="SNP guest policy [default: 0x30000, QEMU's]")
@click.option("--host-data", metavar="HEX", help="SNP HOST_DATA, 32 bytes [default: zero]")
@click.option(
    "--id-block",
    type=FILE,
    metavar="FILE",
    help="SNP ID block (96 bytes, raw or base64; with --id-auth), checked before launch",
)
@click.option("--id-auth", type=FILE, metavar="FILE", help="SNP ID auth (4096 bytes)")
@click.option("--mrconfigid", metavar="HEX", help="TDX MRCONFIGID, 48 bytes [default: zero]")
@click.option("--mrowner", metavar="HEX", help="TDX MROWNER, 48 bytes [default: zero]")
@click.option("--mrownerconfig", metavar="HEX", help="TDX MROWNERCONFIG, 48 bytes [default: zero]")
@click.option(
    "--vcpu-type",
    metavar="NAME",
    help="SNP dry run: QEMU CPU model whose signature the VMSAs carry (as measure snp); a "
    "real launch takes the host's",
)
@click.option("--vcpu-sig", metavar="INT", help="SNP dry run: vCPU signature (CPUID 1 EAX)")
@click.option(
    "--guest-features", metavar="INT", help="SNP SEV_FEATURES of the VMSAs [default: 0x1]"
)
@click.option(
    "--td-attributes",
    metavar="HEX",
    help="TDX TD attributes [default: QEMU's, SEPT_VE_DISABLE (0x10000000)]",
)
@click.option(
    "--xfam", metavar="HEX", help="TDX XFAM [default: QEMU's, the CPU's XCR0|XSS the host supports]"
)
@click.option("--dry-run", is_flag=True, help="print the plan and prediction; do not run")
def LAUNCH(  # noqa: N802
    config: str | None, example: bool, dry_run: bool, log_file: str | None, **given: Any
) -> None:
    launch(config=config, example=example, dry_run=dry_run, log_file=log_file, overrides=given)
