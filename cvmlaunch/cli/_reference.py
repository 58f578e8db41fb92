"""``cvmlaunch reference-values LOG``: what verifiers compare, from a launch log.

Reads the log (strictly; :func:`cvmlaunch.cli._params.read_log`), replays it when its
technology can replay from the log alone (SNP: :func:`cvmlaunch.measure.log.replay_if_possible`),
and prints the final digest and the launch identity the header records
(:meth:`cvmlaunch.measure.reference.ReferenceValues.from_log`), as JSON or in the words of a
verifier (``--format``).
"""

from __future__ import annotations

import sys

import click

from cvmlaunch.cli._params import FILE, read_log, signed_by_options
from cvmlaunch.errors import ConfigError
from cvmlaunch.measure.log import Technology, replay_if_possible
from cvmlaunch.measure.reference import FORMATS, ReferenceValues
from cvmlaunch.text import printable

__all__ = ["REFERENCE_VALUES", "reference_values"]


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
    parsed, signer = read_log(log, signed_by, signature)
    if signer is not None:
        print(printable(f"cvmlaunch: note: {log}: signature OK (key {signer})"), file=sys.stderr)
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
    if parsed.header.settings.get("mode") == "snp:ovmf-hash":  # as from_log, with the command
        raise ConfigError(
            "this log measures the firmware pages alone (--mode snp:ovmf-hash): its digest "
            "seeds a launch digest and no attestation report carries it; get a launch "
            "digest with cvmlaunch measure snp --mode snp --ovmf FW --vcpus N --vcpu-type "
            "TYPE --log LOG (or feed this digest to it as --snp-ovmf-hash)"
        )
    values = ReferenceValues.from_log(parsed)
    rtmrs = None
    if parsed.events:
        from cvmlaunch.measure.rtmr import launch_log_rtmrs

        rtmrs = launch_log_rtmrs(parsed, log)
    if rtmr_events is not None:
        from cvmlaunch.errors import CheckFailed
        from cvmlaunch.fw_cfg_files import read_rtmr_events
        from cvmlaunch.measure.rtmr import checked_rtmrs

        given = checked_rtmrs(read_rtmr_events(rtmr_events), rtmr_events)
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
