"""``cvmlaunch log``: verify, sign, compare and show launch measurement logs
(docs/log-format.md).

``verify`` checks every field of a log against its header and the inputs at hand, and its
DSSE signature (exit 1 naming each record and field that differs); ``sign`` writes a DSSE
envelope over a log (:mod:`cvmlaunch.cli._log_sign`); ``diff`` explains how two logs differ
(exit 1 when their final digests do); ``show`` prints a table. :func:`verify`, :func:`diff`
and :func:`show` are the commands without their options.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence

import click

from cvmlaunch.cli._params import (
    FILE,
    DirPath,
    firmware_dir_option,
    resolve_firmware,
    signed_by_options,
)
from cvmlaunch.errors import CheckFailed, ConfigError, ImageError
from cvmlaunch.text import printable

TYPE_CHECKING = False  # imports for annotations only
if TYPE_CHECKING:
    from cvmlaunch.layout import Buffer
    from cvmlaunch.measure.log import MeasurementLog

__all__ = ["DIFF", "SHOW", "VERIFY", "check_signature", "diff", "read_signed", "show", "verify"]


def _read_log(path: str) -> MeasurementLog:
    """A launch log: a file (mapped), a pipe or ``-`` (standard input, read whole up to
    :data:`cvmlaunch.cli._reference.LOG_STREAM_LIMIT` bytes)."""
    from cvmlaunch.cli._reference import LOG_STREAM_LIMIT
    from cvmlaunch.files import input_buffer

    with input_buffer(path, "a launch log", LOG_STREAM_LIMIT) as data:
        return _parse(path, data)


def _parse(path: str, data: Buffer) -> MeasurementLog:
    from cvmlaunch.measure.log_json import parse_log

    try:
        text = str(data, "utf-8")
    except UnicodeDecodeError as exc:
        raise ImageError(f"not UTF-8 text (byte {exc.start})", source=path) from exc
    return parse_log(text, name=path)


def read_signed(path: str) -> tuple[bytes, MeasurementLog]:
    """The log's bytes and the log they parse to: what is signed is what is checked."""
    from cvmlaunch.files import read_small
    from cvmlaunch.measure.log_sign import MAX_ENVELOPE_BYTES

    data = read_small(path, "log", MAX_ENVELOPE_BYTES)
    return data, _parse(path, data)


#: The roles of the file inputs a log may list (the ``cmdline`` input is ``--append``).
_FILE_ROLES = ("firmware", "svsm", "kernel", "initrd")


def _find_inputs(log: MeasurementLog, given: dict[str, str], dirs: Sequence[str]) -> dict[str, str]:
    """The files to check the log with, by role: those given, then the files in ``dirs``
    (not recursive) whose size and SHA-256 are those of an input the header lists (names do
    not matter: logs name inputs by base name, and a file may have been renamed)."""
    from cvmlaunch.files import file_digest

    found = dict(given)
    wanted = {
        (i.size, i.sha256): i.role
        for i in log.header.inputs
        if i.role in _FILE_ROLES and i.role not in found and i.sha256 is not None
    }
    sizes = {size for size, _ in wanted}
    for directory in dirs:
        try:
            names = sorted(os.listdir(directory))
        except OSError as exc:
            raise ConfigError(f"--inputs {directory}: {exc.strerror}") from exc
        for name in names:
            path = os.path.join(directory, name)
            try:
                size = os.stat(path).st_size if os.path.isfile(path) else -1
            except OSError:
                continue
            if size not in sizes:
                continue
            role = wanted.get((size, file_digest(path)))
            if role is not None and role not in found:
                found[role] = path
    return found


def verify(
    log_file: str,
    ovmf: str | None = None,
    *,
    svsm: str | None = None,
    kernel: str | None = None,
    initrd: str | None = None,
    append: str | None = None,
    acpi: str | None = None,
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
    from cvmlaunch.cli._tdx_rtmr import is_event_log, verify_event_log
    from cvmlaunch.files import map_file
    from cvmlaunch.measure.log_check import check_log

    if is_event_log(log_file):
        if signed_by is not None or ovmf or svsm or kernel or initrd or append or acpi or inputs:
            raise ConfigError(f"{log_file} is an RTMR event log: it is checked without inputs")
        verify_event_log(log_file, as_json=as_json)
        return
    signer: str | None = None
    if signature is not None and signed_by is None:  # else it would be silently ignored
        raise ConfigError("--signature names the envelope that --signed-by checks: give both")
    if signed_by is not None:
        log_bytes, log = read_signed(log_file)
        signer = check_signature(log_file, log_bytes, signed_by, signature)
    else:
        log = _read_log(log_file)
    given = {
        role: path
        for role, path in (
            ("firmware", ovmf),
            ("svsm", svsm),
            ("kernel", kernel),
            ("initrd", initrd),
        )
        if path is not None
    }
    files = _find_inputs(log, given, inputs)
    with contextlib.ExitStack() as stack:
        buffers: dict[str, Buffer] = {
            role: stack.enter_context(map_file(path)) for role, path in files.items()
        }
        if append is not None:
            from cvmlaunch.plan.sev_hashes import cmdline_bytes

            raw = cmdline_bytes(append)
            buffers["cmdline"] = raw + b"\0" if log.header.format_version >= 2 else raw
        if acpi is not None:
            buffers.update(_acpi_inputs(acpi))
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
        for finding in result.findings:
            print(printable(f"{log_file}: {finding.describe()}"))
        for item in result.unchecked:
            print(printable(f"{log_file}: unchecked: {item}"))
        for item in result.host_decided:
            print(printable(f"{log_file}: host-decided (a signature protects it): {item}"))
        if result.ok:
            digest = result.digest.hex() if result.digest is not None else "not replayed"
            rest = f" ({len(result.unchecked)} part(s) unchecked)" if result.unchecked else ""
            events = f", {len(log.events)} RTMR events" if log.events else ""
            print(
                printable(
                    f"{log_file}: OK {len(log.entries)} records{events}, digest {digest}{rest}"
                )
            )
    if not result.ok:
        raise CheckFailed(f"{len(result.findings)} field(s) of {log_file} differ")
    if require_inputs and not result.complete:
        raise CheckFailed(
            f"{len(result.unchecked)} part(s) of {log_file} could not be checked without "
            "inputs (--require-inputs)"
        )


def _acpi_inputs(directory: str) -> dict[str, bytes]:
    """The ACPI fw_cfg blobs in ``directory`` (as ``measure tdx --acpi`` takes them), by the
    roles a TDX log with RTMR events lists them under."""
    from cvmlaunch.fw_cfg_files import read_fw_cfg_dir
    from cvmlaunch.measure.log_rtmr import ACPI_ROLES

    files = read_fw_cfg_dir(directory, tuple(ACPI_ROLES))
    missing = [n for n in ACPI_ROLES if n not in files]
    if missing:
        raise ConfigError(
            f"--acpi {directory}: no {', '.join(missing)} (as DIR/NAME or DIR/NAME/raw)"
        )
    return {ACPI_ROLES[name]: files[name] for name in ACPI_ROLES}


def check_signature(log_file: str, log_bytes: bytes, signed_by: str, signature: str | None) -> str:
    """Verify the DSSE envelope of ``log_file`` (``signature``, default ``LOG.dsse``) by the
    PEM public key ``signed_by``; return the key ID that verified.

    Raises:
        CheckFailed: the envelope is not over these bytes or not signed by that key.
    """
    from cvmlaunch.files import read_small
    from cvmlaunch.measure.log_sign import (
        MAX_ENVELOPE_BYTES,
        load_public_key,
        verify_signed_log,
    )

    key = load_public_key(read_small(signed_by, "public key"), signed_by)
    envelope_path = signature if signature is not None else log_file + ".dsse"
    envelope = read_small(envelope_path, "DSSE envelope", MAX_ENVELOPE_BYTES)
    return verify_signed_log(log_bytes, envelope, key)


@click.command(
    "verify",
    help="""Check every field of LOG against its header and inputs.

The header's settings and the inputs given (--ovmf, --svsm, --kernel, --initrd, --append,
--acpi, or found by SHA-256 in --inputs DIR) rebuild the launch plan (and a TDX log's RTMR
events); every record must equal it, and
the digest chain must replay. Prints the final digest on success and what could not be
checked without inputs; exits 1 naming each record and field that differs, and with
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
@click.option("--svsm", type=FILE, metavar="FILE", help="the SVSM image of an snp:svsm log")
@click.option("--kernel", type=FILE, metavar="FILE", help="the kernel")
@click.option("--initrd", type=FILE, metavar="FILE", help="the initrd")
@click.option("--append", metavar="CMDLINE", help="the kernel command line")
@click.option(
    "--acpi",
    type=DirPath(),
    metavar="DIR",
    help="the ACPI fw_cfg blobs of a TDX log with RTMR events (as measure tdx --acpi takes them)",
)
@click.option(
    "--inputs",
    "inputs",
    type=DirPath(),
    metavar="DIR",
    multiple=True,
    help="a directory where the log's inputs are found by their SHA-256 (repeatable)",
)
@click.option(
    "--require-inputs",
    is_flag=True,
    help="exit 1 unless every field could be checked (all the inputs were at hand)",
)
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
@signed_by_options()
def VERIFY(  # noqa: N802
    log_file: str,
    ovmf: str | None,
    firmware_dir: str | None,
    svsm: str | None,
    kernel: str | None,
    initrd: str | None,
    append: str | None,
    acpi: str | None,
    inputs: tuple[str, ...],
    require_inputs: bool,
    as_json: bool,
    signed_by: str | None,
    signature: str | None,
) -> None:
    verify(
        log_file,
        None if ovmf is None else resolve_firmware(ovmf, firmware_dir),
        svsm=svsm,
        kernel=kernel,
        initrd=initrd,
        append=append,
        acpi=acpi,
        inputs=inputs,
        require_inputs=require_inputs,
        as_json=as_json,
        signed_by=signed_by,
        signature=signature,
    )


def diff(a: str, b: str, *, as_json: bool = False) -> None:
    """Run ``log diff`` (see :data:`DIFF`)."""
    from cvmlaunch.cli._tdx_rtmr import diff_event_logs, is_event_log
    from cvmlaunch.measure.log_diff import diff_logs

    if a == b == "-":
        raise ConfigError("logs A and B cannot both be standard input ('-')")
    if is_event_log(a) and is_event_log(b):
        diff_event_logs(a, b, as_json=as_json)
        return
    result = diff_logs(_read_log(a), _read_log(b))
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
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
def DIFF(a: str, b: str, as_json: bool) -> None:  # noqa: N802
    diff(a, b, as_json=as_json)


def _short(value: bytes | None, width: int = 16) -> str:
    return "-" if value is None else value.hex()[:width]


def show(log_file: str, full: bool) -> None:
    """Run ``log show`` (see :data:`SHOW`)."""
    log = _read_log(log_file)
    width = 96 if full else 16
    h = log.header
    # Everything a log names came from whoever wrote it: escaped (cvmlaunch.text.printable).
    out = printable
    print(out(f"{h.technology.value} ({h.algorithm}), written by {h.tool} {h.tool_version}"))
    from cvmlaunch.measure.log import HOST_DETAILS

    for key, value in h.settings.items():
        shown: object = value
        if isinstance(value, int) and not isinstance(value, bool) and key != "vcpus":
            shown = hex(value) if not key.endswith("size") else value
        note = "  (host detail, not measured)" if key in HOST_DETAILS else ""
        print(out(f"  {key} = {shown}{note}"))
    for item in h.inputs:
        digest = item.sha256 if item.sha256 is not None else item.sha384
        print(out(f"  input {item.role}: {item.name} ({item.size} bytes) {_short(digest, width)}"))
    if h.initial_digest is not None:
        print(f"  initial digest {_short(h.initial_digest, width)}")
    rows = [("#", "op", "GPA", "size", "type", "meas", "source", "contents", "digest after")]
    for e in log.entries:
        rows.append(
            (
                str(e.seq),
                e.op.value,
                f"{e.gpa:#x}",
                f"{e.size:#x}",
                e.page_type.name,
                "yes" if e.measured else "no",
                out(e.provenance.describe()),
                "zero" if e.content_sha384 is None else _short(e.content_sha384, width),
                _short(e.digest_after, width),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    print(f"final digest {log.footer.digest.hex()}")


@click.command(
    "show",
    help="Print LOG as a table: one line per populated range.",
    short_help="Print LOG as a table: one line per populated range.",
)
@click.argument("log_file", metavar="LOG", type=FILE)
@click.option("--full", is_flag=True, help="print whole digests instead of 16-digit prefixes")
def SHOW(log_file: str, full: bool) -> None:  # noqa: N802
    show(log_file, full)
