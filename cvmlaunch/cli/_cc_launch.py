"""``launch --tech snp|tdx --firmware FILE``: the confidential launch of a firmware image.

Rule 1: the command maps the launch settings to a request
(:func:`cvmlaunch.launcher.firmware_request`), calls one launcher function
(:func:`cvmlaunch.launcher.launch_firmware`, or :func:`~cvmlaunch.launcher.load_firmware_launch`
for a dry run) and renders: the launch digest or MRTD, notes and how the guest ended on
stderr, the guest's serial output on stdout, the plan of a dry run on stdout
(:mod:`cvmlaunch.cli._launch_text`). The launch, its log and its header are the launcher's.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from cvmlaunch.launcher import FirmwareLaunch

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TextIO

    from cvmlaunch.kvm_map import Kernel
    from cvmlaunch.launch_settings import LaunchSettings
    from cvmlaunch.measure.log import LogInput, MeasurementLog, SettingValue

__all__ = ["FirmwareLaunch", "launch_confidential", "run_firmware_launch"]


def run_firmware_launch(
    req: FirmwareLaunch,
    *,
    dry_run: bool,
    log_file: str | None = None,
    kernel: Kernel | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    identity: Sequence[str] = (),
    identity_settings: dict[str, SettingValue] | None = None,
    inputs: tuple[LogInput, ...] = (),
    protect: Sequence[str] = (),
) -> None:
    """``launch --tech snp|tdx --firmware FILE``: print the plan (dry run), or launch, write
    the log, and run the guest until it stops or ``req.timeout`` passes.

    ``identity`` (lines) is printed after a dry run's plan; ``identity_settings`` and
    ``inputs`` go into the log header; the log is never written over a file of ``protect``
    (the launch's inputs). An ID block is checked against the plan's digest and
    the policy before anything is created (the firmware would refuse the launch).

    Raises:
        KvmUnsupported: the host lacks the technology (nothing was created).
        ConfigError, ImageError, KvmError: exit 2.
    """
    from cvmlaunch import launcher

    stdout = out or sys.stdout
    stderr = err or sys.stderr
    if dry_run:
        from cvmlaunch.cli._launch_text import describe_firmware_launch
        from cvmlaunch.text import printable

        with launcher.load_firmware_launch(req) as launch:
            lines = [*describe_firmware_launch(launch, req.policy), *identity]
        for line in lines:
            print(printable(line), file=stdout)  # names come from the inputs
        return

    def on_log(log: MeasurementLog, text: str) -> None:
        if log_file is not None:
            from cvmlaunch.outputs import write_output

            write_output(log_file, text, what="the launch log", inputs=protect)
        what = "SNP launch digest" if req.tech == "snp" else "MRTD"
        where = f" (log written to {log_file})" if log_file is not None else ""
        print(f"cvmlaunch: {what} {log.digest.hex()}{where}", file=stderr, flush=True)

    def on_serial(data: bytes) -> None:
        stdout.write(data.decode("ascii", "replace"))
        stdout.flush()

    result = launcher.launch_firmware(
        req,
        kernel=kernel,
        inputs=inputs,
        identity_settings=identity_settings,
        on_log=on_log,
        on_note=lambda note: print(f"cvmlaunch: note: {note}", file=stderr),
        on_serial=on_serial,
    )
    print(f"cvmlaunch: the guest {result.ended}", file=stderr)


def launch_confidential(
    settings: LaunchSettings,
    *,
    dry_run: bool,
    log_file: str | None,
    kernel: Kernel | None = None,
    protect: Sequence[str] = (),
) -> None:
    """``launch --tech snp|tdx``: the firmware launch of ``settings`` (see
    :func:`run_firmware_launch`), with the launch identity and the input digests.

    Raises:
        ConfigError: no firmware (SNP and TDX guests start in their firmware), or settings
            the launch cannot take.
        CheckFailed, MeasurementMismatch: an ID block the firmware would refuse (exit 1).
    """
    from cvmlaunch.cli._launch_text import identity_lines
    from cvmlaunch.launcher import firmware_inputs, firmware_request

    req = firmware_request(settings)
    ident = req.identity_settings()
    run_firmware_launch(
        req,
        dry_run=dry_run,
        log_file=log_file,
        kernel=kernel,
        identity=list(identity_lines(req.policy, req.snp_identity, req.tdx_identity)),
        identity_settings=ident,
        inputs=() if dry_run else firmware_inputs(settings),
        protect=protect,
    )
