"""The launcher: the library the ``launch`` command composes.

Rule 1: this package drives a launch from settings to a halted guest: it maps the inputs
(through :mod:`cvmlaunch.files`), builds the plan (:mod:`cvmlaunch.plan`), checks the host,
creates and populates the VM and runs its vCPUs (through :mod:`cvmlaunch.kvm_map`, which
makes every system call), and completes, replays and checks the launch log, headers included
(:mod:`cvmlaunch.measure.log`).

Rule 2: it prints nothing. What a caller shows (the guest's serial output, the log once it
exists, notes of skipped steps, populate progress) reaches it through callbacks, and the
result is a value (:class:`LaunchResult`, :class:`FirmwareResult`).

Rule 3: only :mod:`cvmlaunch.cli` imports it (an import-linter contract); it imports the
KVM layer inside its functions, so a dry run does not load it.

The parts, each a module of this package (their public names are this package's):

====================  =====================================================================
``_common``           the host check, the log's input digests, the progress callback
``report``            the guest's own report of a PVH launch, checked against the log
``pvh``               the PVH launch: plan from files, VM, populate, vCPUs, log, report
``firmware``          SEV-SNP / TDX launches of a firmware image, up to the guest's stop
====================  =====================================================================
"""

from __future__ import annotations

from cvmlaunch.launcher._common import (
    Progress,
    ProgressFactory,
    check_host,
    input_digests,
)
from cvmlaunch.launcher.firmware import (
    FirmwareLaunch,
    FirmwareResult,
    SnpLaunched,
    TdxLaunched,
    firmware_inputs,
    firmware_request,
    launch_firmware,
    launch_snp_firmware,
    launch_tdx_firmware,
    load_firmware_launch,
    plan_contents,
    run_guest,
    served_fw_cfg,
)
from cvmlaunch.launcher.pvh import (
    LaunchResult,
    execute,
    header_settings,
    launch_pvh,
    load_pvh_launch,
    log_header,
    open_vm,
    populate_plan,
)
from cvmlaunch.launcher.report import GuestDigest, GuestReport, check_report, parse_report

__all__ = [
    "FirmwareLaunch",
    "FirmwareResult",
    "GuestDigest",
    "GuestReport",
    "LaunchResult",
    "Progress",
    "ProgressFactory",
    "SnpLaunched",
    "TdxLaunched",
    "check_host",
    "check_report",
    "execute",
    "firmware_inputs",
    "firmware_request",
    "header_settings",
    "input_digests",
    "launch_firmware",
    "launch_pvh",
    "launch_snp_firmware",
    "launch_tdx_firmware",
    "load_firmware_launch",
    "load_pvh_launch",
    "log_header",
    "open_vm",
    "parse_report",
    "plan_contents",
    "populate_plan",
    "run_guest",
    "served_fw_cfg",
]
