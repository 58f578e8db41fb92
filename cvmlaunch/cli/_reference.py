"""``cvmlaunch reference-values LOG``: what verifiers compare, from a launch log.

Reads the log (strictly), replays it when its technology can replay from the log alone (SNP),
and prints the final digest and the launch identity the header records, as JSON or in the
words of a verifier (``--format``).
"""

from __future__ import annotations

import sys

import click

from cvmlaunch.cli._params import FILE, signed_by_options
from cvmlaunch.errors import ConfigError, ImageError
from cvmlaunch.files import input_buffer
from cvmlaunch.measure.log import MeasurementLog, Technology, parse_log, verify_log
from cvmlaunch.measure.reference import FORMATS, ReferenceValues
from cvmlaunch.text import printable

__all__ = ["REFERENCE_VALUES", "read_log", "replay_if_possible"]


#: The most a launch log read from a pipe or standard input may hold (a file is mapped, any
#: size): a stream that never ends is refused past this, naming the limit.
LOG_STREAM_LIMIT = 1 << 30


def read_log(path: str) -> MeasurementLog:
    """Read and parse a launch log: a file (mapped, not copied whole), a pipe, or ``-``
    (standard input, read whole up to :data:`LOG_STREAM_LIMIT` bytes).

    Raises:
        ImageError: the log cannot be read, is not a file or a pipe, or is not UTF-8.
        LogFormatError: the log does not follow the format.
    """
    with input_buffer(path, "a launch log", LOG_STREAM_LIMIT) as data:
        try:
            text = str(data, "utf-8")
        except UnicodeDecodeError as exc:
            raise ImageError(f"not UTF-8 text (byte {exc.start})", source=path) from exc
    return parse_log(text, name=path)


def replay_if_possible(log: MeasurementLog) -> bool:
    """Replay ``log`` and check its digests when the log alone suffices (SNP); return whether
    it was replayed.

    Raises:
        MeasurementMismatch: a running digest or the footer does not replay.
    """
    if log.header.technology is not Technology.SEV_SNP:
        return False
    verify_log(log)
    return True


def reference_values(
    log: str,
    fmt: str,
    signed_by: str | None = None,
    signature: str | None = None,
    rtmr_events: str | None = None,
) -> None:
    """Run ``reference-values`` (see :data:`REFERENCE_VALUES`); with ``signed_by``, only from
    a log whose DSSE signature by that key verifies (what no replay proves: policy without an
    ID block, host data, the TDX config IDs)."""
    if signature is not None and signed_by is None:  # else it would be silently ignored
        raise ConfigError("--signature names the envelope that --signed-by checks: give both")
    if signed_by is not None:
        from cvmlaunch.cli._log import check_signature, read_signed

        log_bytes, parsed = read_signed(log)
        signer = check_signature(log, log_bytes, signed_by, signature)
        print(printable(f"cvmlaunch: note: {log}: signature OK (key {signer})"), file=sys.stderr)
    else:
        parsed = read_log(log)
    if parsed.header.technology is Technology.PLAIN:
        raise ConfigError(
            f"{log}: a plain launch has no hardware measurement, so no attestation report "
            "carries reference values (its transcript digest is informational; "
            "cvmlaunch log verify checks it)"
        )
    if not replay_if_possible(parsed):
        print(
            printable(
                f"cvmlaunch: note: {log}: {parsed.header.technology.value} logs are not "
                "replayed here (replay needs the inputs: cvmlaunch log verify)"
            ),
            file=sys.stderr,
        )
    values = ReferenceValues.from_settings(
        parsed.header.technology.value, parsed.footer.digest, parsed.header.settings
    )
    rtmrs = None
    if parsed.events:
        from cvmlaunch.cli._tdx_rtmr import launch_log_rtmrs

        rtmrs = launch_log_rtmrs(parsed, log)
    if rtmr_events is not None:
        from cvmlaunch.cli._tdx_rtmr import event_log_rtmrs
        from cvmlaunch.errors import CheckFailed

        given = event_log_rtmrs(rtmr_events)
        if rtmrs is not None and given != rtmrs:
            raise CheckFailed(f"{log} and {rtmr_events} replay to different RTMRs")
        rtmrs = given
    if rtmrs is not None:
        values = values.with_rtmrs(rtmrs)
    print("\n".join(printable(line) for line in values.render(fmt).splitlines()))


@click.command(
    "reference-values",
    short_help="Print what a verifier compares for the launch LOG describes.",
    help="""Print what a verifier compares for the launch LOG describes.

SEV-SNP: MEASUREMENT, policy, HOST_DATA, ID_KEY_DIGEST, AUTHOR_KEY_DIGEST, FAMILY_ID,
IMAGE_ID, GUEST_SVN. TDX: MRTD, MRCONFIGID, MROWNER, MROWNERCONFIG, and RTMR0-3 when the
log carries RTMR events. SNP logs and RTMR events are replayed first (exit 1 if they do not
replay to their footer). Settings no replay proves (policy
without an ID block, host data, TDX config IDs) are only as good as the log's origin:
--signed-by requires the log's DSSE signature (cvmlaunch log sign) by that key (exit 1 if it
does not verify).""",
)
@click.argument("log", metavar="LOG", type=FILE)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="json",
    help="json, Trustee RVPS names, or the options of snpguest / go-sev-guest / "
    "go-tdx-guest [default: json]",
)
@signed_by_options("require")
@click.option(
    "--rtmr-events",
    type=FILE,
    metavar="FILE",
    help="TDX: also RTMR0-3, replayed from this RTMR event log (measure tdx --event-log); a "
    "register without events is left unchecked. A log with RTMR events (format 4) carries "
    "them itself",
)
def REFERENCE_VALUES(  # noqa: N802
    log: str, fmt: str, signed_by: str | None, signature: str | None, rtmr_events: str | None
) -> None:
    reference_values(log, fmt, signed_by, signature, rtmr_events)
