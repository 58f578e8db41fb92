"""``cvmlaunch measure tdx``: predict a TDX MRTD from TDVF firmware, offline, and with
``--kernel`` the RTMR0-2 of a direct-boot TD (docs/tdx-rtmr.md).

The options become one :class:`cvmlaunch.measure.tdx_predict.TdxRequest` (the guest's through
:func:`cvmlaunch.cli._tdx_rtmr.guest_of`) and one
:func:`~cvmlaunch.measure.tdx_predict.predict` call; this module renders the result.

The firmware and the kernel are mmapped, never read whole. With ``--log`` the launch
measurement log (docs/log-format.md, technology ``tdx``; with ``--kernel`` its
``rtmr_event`` records and footer RTMRs too) and with ``--event-log`` the RTMR events as TCG
CEL-JSON are written atomically. Exit 0 ok, 1 ``--expect`` mismatch, 2 bad
input.
"""

from __future__ import annotations

import json
from typing import Any

import click

from cvmlaunch.cli._params import (
    FILE,
    expect_option,
    firmware_dir_option,
    log_option,
    output_format_option,
    resolve_firmware,
    tdx_guest_options,
    tdx_owner_options,
)
from cvmlaunch.errors import ConfigError, MeasurementMismatch
from cvmlaunch.files import map_file
from cvmlaunch.layout import parse_hex_bytes
from cvmlaunch.measure.tdx import MRTD_SIZE, PageOrder
from cvmlaunch.outputs import Output, check_outputs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cvmlaunch.measure.tdx_predict import TdxPrediction

__all__ = ["MEASURE_TDX", "measure_tdx"]


def _guest_given(guest: dict[str, Any]) -> bool:
    """Whether any guest option was given (``--kernel`` is then required)."""
    defaults = {"stub_measures": "auto", "boot_menu": False}
    return any(v is not None and v != defaults.get(k) for k, v in guest.items())


def measure_tdx(
    firmware: str,
    two_pass: bool,
    log_path: str | None,
    expect: str | None,
    output_format: str,
    mrconfigid: str | None,
    mrowner: str | None,
    mrownerconfig: str | None,
    event_log: str | None = None,
    **guest: Any,
) -> None:
    """Run ``measure tdx`` (arguments as the options; see :data:`MEASURE_TDX`)."""
    from cvmlaunch.launch_identity import TdxLaunchIdentity
    from cvmlaunch.measure.tdx_predict import TdxRequest, predict

    expected = parse_hex_bytes(expect, MRTD_SIZE, "expect") if expect is not None else None
    if guest.get("kernel") is None and (_guest_given(guest) or event_log is not None):
        raise ConfigError("--memory, --initrd, --append, --acpi, … describe a guest: give --kernel")
    owner = TdxLaunchIdentity.from_hex(mrconfigid, mrowner, mrownerconfig)
    if log_path == "-" and event_log == "-":
        raise ConfigError("--log - and --event-log - would both be standard output")
    inputs = [firmware, *(guest[k] for k in ("kernel", "initrd") if guest.get(k) is not None)]
    planned = [
        Output(path, b"", what=what)
        for path, what in ((log_path, "the launch log"), (event_log, "the RTMR event log"))
        if path is not None
    ]
    if planned:  # refused before anything is measured
        check_outputs(planned, inputs=inputs)
    order = PageOrder.TWO_PASS if two_pass else PageOrder.PER_PAGE
    request = TdxRequest(order=order, owner=owner, log=log_path is not None)
    with map_file(firmware) as data:
        if guest.get("kernel") is None:
            result = predict(data, request, name=firmware)
        else:
            import dataclasses

            from cvmlaunch.cli._tdx_rtmr import guest_of

            with guest_of(**guest) as given:
                result = predict(data, dataclasses.replace(request, guest=given), name=firmware)
    _write(result, log_path, event_log, inputs)
    rtmrs = result.rtmrs
    for note in () if rtmrs is None else rtmrs.notes:
        click.echo(f"cvmlaunch: note: {note}", err=True)
    if "-" in (log_path, event_log):  # stdout is that output alone
        pass
    elif output_format == "json":
        print(json.dumps(result.json_doc(firmware), sort_keys=True))
    else:
        from cvmlaunch.cli._output import format_digest

        values: list[tuple[str, bytes | None]] = [("mrtd", result.measurement.mrtd)]
        values += [] if rtmrs is None else [(f"rtmr{i}", v) for i, v in enumerate(rtmrs.rtmrs)]
        for name, value in values:
            text = "-" if value is None else format_digest(value, output_format)
            print(text if rtmrs is None else f"{name} {text}")
    if expected is not None and expected != result.measurement.mrtd:
        raise MeasurementMismatch("MRTD", expected=expected, actual=result.measurement.mrtd)


def _write(
    result: TdxPrediction, log_path: str | None, event_log: str | None, inputs: list[str]
) -> None:
    """Write the launch log and the RTMR event log: all land or none does."""
    outputs = []
    if log_path is not None and result.log is not None:
        from cvmlaunch.measure.log import dumps_log

        outputs.append(Output(log_path, dumps_log(result.log), what="the launch log"))
    if event_log is not None and result.rtmrs is not None:
        from cvmlaunch.measure.rtmr import cel_json

        text = cel_json(result.rtmrs.events)
        outputs.append(Output(event_log, text, what="the RTMR event log"))
    if outputs:
        from cvmlaunch.outputs import write_outputs

        write_outputs(outputs, inputs=inputs)


_HELP = """Predict the TDX MRTD of a TD that QEMU launches with TDVF firmware (-bios FIRMWARE).

Every TDVF metadata section is PAGE.ADDed in metadata order; sections with the MR.EXTEND
attribute (the BFV) are also MR.EXTENDed. RAM size, vCPUs and TD attributes do not enter
MRTD. With hex output, stdout is the MRTD alone on one line. The owner values
(--mrconfigid, --mrowner, --mrownerconfig, as QEMU's tdx-guest takes them) are reported in
the TD quote beside MRTD but never enter it: they are recorded in the log header and the
JSON output (cvmlaunch reference-values reads them back).

With --kernel (and --memory) it also predicts RTMR0-2 of a direct-boot TD (QEMU -kernel,
-initrd, -append): the TD HOB, the varstore, the ACPI tables (--acpi or --fw-cfg), for edk2 >=
2025.05 firmware also fw_cfg items (--fw-cfg, --boot-menu) and the SMBIOS table (--smbios), the
boot variables, the kernel's Authenticode digest, the command line and the initrd
(docs/tdx-rtmr.md). A register
that cannot be predicted is printed as '-' (JSON null) with the reason on stderr. With hex or
base64 output each value is then a line 'NAME VALUE'."""


@click.command("tdx", help=_HELP, short_help=_HELP.splitlines()[0])
@click.option(
    "--firmware",
    required=True,
    type=FILE,
    metavar="FILE",
    help="TDVF firmware image (OVMF IntelTdx or generic build: the full flat .fd)",
)
@firmware_dir_option()
@click.option(
    "--two-pass",
    is_flag=True,
    help="older page order: per section all PAGE.ADDs, then all MR.EXTENDs (QEMU 8.x / "
    "pre-upstream KVM TDX) [default: per page (Linux >= 6.16, QEMU >= 10.1)]",
)
@log_option(
    "write the launch log here ('-': standard output, the log alone); with --kernel it "
    "carries the RTMR events too"
)
@expect_option("expected MRTD (hex); exit 1 if it differs")
@output_format_option("how to print the MRTD")
@tdx_owner_options()
@tdx_guest_options()
@click.option(
    "--event-log",
    type=FILE,
    metavar="FILE",
    help="write the RTMR events as TCG CEL-JSON here",
)
def MEASURE_TDX(firmware_dir: str | None, firmware: str, **options: Any) -> None:  # noqa: N802
    measure_tdx(firmware=resolve_firmware(firmware, firmware_dir), **options)
