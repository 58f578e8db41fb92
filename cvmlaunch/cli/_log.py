"""``cvmlaunch log``: verify, sign, compare and show launch measurement logs
(docs/log-format.md).

``verify`` checks every field of a log against its header and the inputs at hand, and its
DSSE signature (exit 1 naming each record and field that differs); ``sign`` writes a DSSE
envelope over a log (:mod:`cvmlaunch.cli._log_sign`); ``diff`` explains how two logs differ
(exit 1 when their final digests do); ``show`` prints a table. :func:`verify`, :func:`diff`
and :func:`show` are the commands without their options.

Rule: this module only composes. It reads the log (:func:`cvmlaunch.cli._params.read_log`,
checking its signature), maps the inputs given or found by digest
(:func:`cvmlaunch.files.find_by_digest`), calls the library
(:func:`~cvmlaunch.measure.log_check.check_log`, :func:`~cvmlaunch.measure.log_diff.diff_logs`,
:func:`~cvmlaunch.measure.log_show.show_lines`) and prints the result, escaped.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import click

from cvmlaunch.cli._params import (
    FILE,
    firmware_dir_option,
    json_option,
    log_input_options,
    read_log,
    resolve_firmware,
    signed_by_options,
)
from cvmlaunch.errors import CheckFailed, ConfigError
from cvmlaunch.text import printable

TYPE_CHECKING = False  # imports for annotations only
if TYPE_CHECKING:
    from cvmlaunch.layout import Buffer

__all__ = ["DIFF", "SHOW", "VERIFY", "diff", "show", "verify"]


def verify(
    log_file: str,
    ovmf: str | None = None,
    *,
    svsm: str | None = None,
    kernel: str | None = None,
    initrd: str | None = None,
    append: str | None = None,
    acpi: str | None = None,
    fw_cfg: str | None = None,
    smbios: str | None = None,
    secure_boot_vars: str | None = None,
    inputs: Sequence[str] = (),
    require_inputs: bool = False,
    as_json: bool = False,
    signed_by: str | None = None,
    signature: str | None = None,
) -> None:
    """Run ``log verify`` (see :data:`VERIFY`): check every field of the log against its
    header and the inputs at hand (docs/log-format.md, "What log verify proves"), and its
    signature with ``signed_by``.

    Raises:
        CheckFailed: a field differs, the signature does not verify, or (``require_inputs``)
            something could not be checked without inputs.
    """
    from cvmlaunch.cli._tdx_rtmr import verify_event_log
    from cvmlaunch.files import find_by_digest, map_file
    from cvmlaunch.fw_cfg_files import is_event_log
    from cvmlaunch.measure.log_check import check_log, cmdline_input_bytes, inputs_to_find

    if is_event_log(log_file):
        at_hand = (ovmf, svsm, kernel, initrd, append, acpi, fw_cfg, smbios, secure_boot_vars)
        if signed_by is not None or any(at_hand) or inputs:
            raise ConfigError(f"{log_file} is an RTMR event log: it is checked without inputs")
        verify_event_log(log_file, as_json=as_json)
        return
    log, signer = read_log(log_file, signed_by, signature)
    roles = {"firmware": ovmf, "svsm": svsm, "kernel": kernel, "initrd": initrd}
    given = {role: path for role, path in roles.items() if path is not None}
    files = given | find_by_digest(inputs, inputs_to_find(log.header, given), "inputs")
    with contextlib.ExitStack() as stack:
        buffers: dict[str, Buffer] = {
            role: stack.enter_context(map_file(path)) for role, path in files.items()
        }
        if append is not None:
            buffers["cmdline"] = cmdline_input_bytes(log.header, append)
        if acpi is not None:  # the ACPI fw_cfg blobs, by the roles the log lists them under
            from cvmlaunch.fw_cfg_files import read_acpi_dir
            from cvmlaunch.measure.log_rtmr import ACPI_ROLES

            blobs = read_acpi_dir(acpi, ACPI_ROLES)
            buffers |= {ACPI_ROLES[name]: blob for name, blob in blobs.items()}
        if fw_cfg is not None:  # every fw_cfg file QEMU served: the ACPI blobs and the items
            from cvmlaunch.fw_cfg_files import read_fw_cfg_dir
            from cvmlaunch.measure.log_rtmr import ACPI_ROLES, FW_CFG_ROLES

            edk2 = log.header.settings.get("rtmr_edk2")
            by_name: dict[str, str] = {} if acpi is not None else dict(ACPI_ROLES)
            if isinstance(edk2, str) and _measures_fw_cfg(edk2):
                by_name |= FW_CFG_ROLES
            served = read_fw_cfg_dir(fw_cfg, by_name)
            buffers |= {by_name[name]: blob for name, blob in served.items()}
        if smbios is not None:
            from cvmlaunch.fw_cfg_files import read_smbios
            from cvmlaunch.measure.log_rtmr import SMBIOS_ENTRY_POINT_ROLE, SMBIOS_ROLE

            table, entry_point = read_smbios(smbios)
            buffers[SMBIOS_ROLE] = table
            if entry_point is not None:
                buffers[SMBIOS_ENTRY_POINT_ROLE] = entry_point
        if secure_boot_vars is not None:  # by the roles the log lists them under
            from cvmlaunch.fw_cfg_files import read_uefi_variables
            from cvmlaunch.measure.log_rtmr import SECURE_BOOT_ROLES
            from cvmlaunch.measure.tdx_rtmr0 import SECURE_BOOT_VARIABLES

            variables = read_uefi_variables(secure_boot_vars, SECURE_BOOT_VARIABLES)
            buffers |= {SECURE_BOOT_ROLES[n]: data for n, data in variables.items()}
        result = check_log(log, buffers)
    if as_json:
        import json

        doc = {"log": log_file, "records": len(log.entries), **result.to_json()}
        doc["signed_by"] = signer
        print(json.dumps(doc, sort_keys=True))
    else:
        # names and values come from the log and the command line: escaped
        if signer is not None:
            print(printable(f"{log_file}: signature OK (key {signer})"))
        for line in result.lines(log_file, records=len(log.entries), events=len(log.events)):
            print(printable(line))
    if not result.ok:
        raise CheckFailed(f"{len(result.findings)} field(s) of {log_file} differ")
    if require_inputs and not result.complete:
        raise CheckFailed(
            f"{len(result.unchecked)} part(s) of {log_file} could not be checked without "
            "inputs (--require-inputs)"
        )


def _measures_fw_cfg(edk2: str) -> bool:
    """Whether a log's ``rtmr_edk2`` release measures fw_cfg items (so --fw-cfg gives them)."""
    from cvmlaunch.image.tdvf_features import Edk2Release

    try:
        return Edk2Release.parse(edk2).measures_fw_cfg_and_smbios
    except ValueError:
        return False


@click.command(
    "verify",
    help="""Check every field of LOG against its header and inputs.

The header's settings and the inputs given (--ovmf, --svsm, --kernel, --initrd, --append,
--acpi, --fw-cfg, --smbios, --secure-boot-vars, or found by SHA-256 in --inputs DIR) rebuild
the launch plan (and a TDX log's RTMR events); every record must equal it, and the digest
chain must replay. Prints the final digest on success and what could not be checked without
inputs; exits 1 naming each record and field that differs, and with
--signed-by when LOG's DSSE signature does not verify (docs/log-format.md).

An RTMR event log (CEL-JSON, from measure tdx --event-log) is replayed instead: it prints
RTMR0-3 and exits 1 naming each event whose digest its own data contradicts
(docs/tdx-rtmr.md).""",
    short_help="Check every field of LOG against its header and inputs.",
)
@click.argument("log_file", metavar="LOG", type=FILE)
@click.option(
    "--ovmf",
    "--firmware",
    "ovmf",
    type=FILE,
    metavar="FILE",
    help="the firmware (checked against the log's hashes), to check the records it decides",
)
@firmware_dir_option()
@log_input_options()
@click.option(
    "--require-inputs",
    is_flag=True,
    help="exit 1 unless every field could be checked (all the inputs were at hand)",
)
@json_option()
@signed_by_options()
def VERIFY(log_file: str, ovmf: str | None, firmware_dir: str | None, **given: Any) -> None:  # noqa: N802
    verify(log_file, None if ovmf is None else resolve_firmware(ovmf, firmware_dir), **given)


def diff(a: str, b: str, *, as_json: bool = False) -> None:
    """Run ``log diff`` (see :data:`DIFF`)."""
    from cvmlaunch.cli._tdx_rtmr import diff_event_logs
    from cvmlaunch.fw_cfg_files import is_event_log
    from cvmlaunch.measure.log_diff import diff_logs

    if a == b == "-":
        raise ConfigError("logs A and B cannot both be standard input ('-')")
    if is_event_log(a) and is_event_log(b):
        diff_event_logs(a, b, as_json=as_json)
        return
    result = diff_logs(read_log(a)[0], read_log(b)[0])
    if as_json:
        import json

        print(json.dumps({"a": a, "b": b, **result.to_json()}, sort_keys=True))
    else:
        for line in result.lines():
            print(printable(line))
    if not result.same_digest:
        raise CheckFailed(
            "the final digests differ" if result.digest_a != result.digest_b else "the RTMRs differ"
        )


@click.command(
    "diff",
    help="""Explain how logs A and B differ; exit 1 if their digests do.

Lists every header difference, the first diverging range, then the verdict: whether the
final digests differ (exit 1) or not (exit 0, even when settings outside the digest do).
For two RTMR event logs (CEL-JSON): the first event that differs, named ("RTMR2 command
line: …"); exit 1 if the RTMRs they replay to differ.""",
    short_help="Explain how logs A and B differ; exit 1 if their digests do.",
)
@click.argument("a", metavar="A", type=FILE)
@click.argument("b", metavar="B", type=FILE)
@json_option()
def DIFF(a: str, b: str, as_json: bool) -> None:  # noqa: N802
    diff(a, b, as_json=as_json)


def show(log_file: str, full: bool) -> None:
    """Run ``log show`` (see :data:`SHOW`)."""
    from cvmlaunch.measure.log_show import show_lines

    log, _ = read_log(log_file)
    print("\n".join(show_lines(log, full=full)))


@click.command(
    "show",
    help="Print LOG as a table: one line per populated range.",
    short_help="Print LOG as a table: one line per populated range.",
)
@click.argument("log_file", metavar="LOG", type=FILE)
@click.option("--full", is_flag=True, help="print whole digests instead of 16-digit prefixes")
def SHOW(log_file: str, full: bool) -> None:  # noqa: N802
    show(log_file, full)
