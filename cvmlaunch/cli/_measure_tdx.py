"""``cvmlaunch measure tdx``: predict a TDX MRTD from TDVF firmware, offline."""

from __future__ import annotations

import json

import click

from cvmlaunch.cli._output import format_digest
from cvmlaunch.errors import ConfigError, MeasurementMismatch
from cvmlaunch.files import file_digest, map_file
from cvmlaunch.measure.tdx import MRTD_SIZE, PageOrder, TdxMeasurement, measure_tdvf

__all__ = ["measure_tdx_cmd", "parse_expected"]


def parse_expected(text: str, *, what: str = "MRTD") -> bytes:
    """``--expect`` value: hex (optionally ``0x``-prefixed) of exactly 48 bytes.

    Raises:
        ConfigError: not hex, or not 48 bytes.
    """
    cleaned = text.strip().lower().removeprefix("0x")
    try:
        value = bytes.fromhex(cleaned)
    except ValueError as exc:
        raise ConfigError(f"--expect: {text!r} is not a hex {what}") from exc
    if len(value) != MRTD_SIZE:
        raise ConfigError(f"--expect: {what} must be {MRTD_SIZE} bytes, got {len(value)}")
    return value


def _json_result(m: TdxMeasurement, firmware: str, firmware_sha256: bytes) -> str:
    doc = {
        "technology": "tdx",
        "mrtd": m.mrtd.hex(),
        "order": m.order.value,
        "profile": "qemu",
        "firmware": firmware,
        "firmware_sha256": firmware_sha256.hex(),
        "page_add": m.page_adds,
        "mr_extend": m.mr_extends,
    }
    return json.dumps(doc, indent=2)


@click.command("tdx")
@click.option(
    "--firmware",
    required=True,
    type=click.Path(dir_okay=False),
    help="TDVF firmware image (OVMF IntelTdx or generic build, the full flat .fd).",
)
@click.option(
    "--two-pass",
    is_flag=True,
    help="Older page order: per section all PAGE.ADDs, then all MR.EXTENDs (QEMU 8.x / "
    "pre-upstream KVM TDX). Default: per page (Linux >= 6.16, QEMU >= 10.1).",
)
@click.option(
    "--log", "log_path", type=click.Path(dir_okay=False), help="Write the launch log here."
)
@click.option("--expect", help="Expected MRTD (hex); exit 1 if it differs.")
@click.option(
    "--output-format",
    type=click.Choice(["hex", "base64", "json"]),
    default="hex",
    show_default=True,
    help="How to print the MRTD.",
)
def measure_tdx_cmd(
    firmware: str, two_pass: bool, log_path: str | None, expect: str | None, output_format: str
) -> None:
    """Predict the TDX MRTD of a TD launched by QEMU with TDVF firmware (-bios FIRMWARE).

    Every TDVF metadata section is PAGE.ADDed in metadata order; the sections with the
    MR.EXTEND attribute (the BFV) are also MR.EXTENDed. RAM size, vCPUs and TD attributes do
    not enter MRTD.
    """
    expected = parse_expected(expect) if expect is not None else None
    order = PageOrder.TWO_PASS if two_pass else PageOrder.PER_PAGE
    with map_file(firmware) as data:
        result = measure_tdvf(data, name=firmware, order=order)
    if log_path is not None:
        raise ConfigError("--log: the launch log writer has not landed yet")
    if output_format == "json":
        click.echo(_json_result(result, firmware, file_digest(firmware, "sha256")))
    else:
        click.echo(format_digest(result.mrtd, output_format))
    if expected is not None and expected != result.mrtd:
        raise MeasurementMismatch("MRTD", expected=expected, actual=result.mrtd)
