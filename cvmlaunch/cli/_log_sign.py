"""``cvmlaunch log sign``: a DSSE envelope over a launch log's exact bytes
(docs/log-format.md, "Signing: DSSE envelopes"); ``log verify --signed-by`` checks it."""

from __future__ import annotations

import click

from cvmlaunch.cli._params import FILE
from cvmlaunch.text import printable

__all__ = ["SIGN", "sign"]


def sign(log_file: str, key: str, output: str | None = None) -> None:
    """Run ``log sign``: write a DSSE envelope over the log's exact bytes (default
    ``LOG.dsse``). The log is read first (a file that is not a log is refused)."""
    from cvmlaunch.files import read_log_bytes, read_small
    from cvmlaunch.measure.log_sign import key_id, load_private_key, sign_log
    from cvmlaunch.outputs import write_output

    private = load_private_key(read_small(key, "private key"), key)
    log_bytes, _ = read_log_bytes(log_file)  # a log, or a one-line error
    out = output if output is not None else log_file + ".dsse"
    envelope = sign_log(log_bytes, private)
    write_output(out, envelope, what="the DSSE envelope", inputs=[log_file, key])
    if out != "-":  # with --output -, stdout is the envelope alone
        print(printable(f"{out}: signed {log_file} (key {key_id(private.public_key())})"))


@click.command(
    "sign",
    help="""Write a DSSE envelope over LOG's exact bytes (default LOG.dsse).

The envelope (in-toto's DSSE, docs/log-format.md) protects the fields no replay can check;
log verify --signed-by PUBKEY checks it.""",
    short_help="Write a DSSE envelope over LOG's exact bytes (default LOG.dsse).",
)
@click.argument("log_file", metavar="LOG", type=FILE)
@click.option(
    "--key",
    required=True,
    type=FILE,
    metavar="KEY",
    help="PEM private key (ECDSA P-384 or Ed25519)",
)
@click.option(
    "--output",
    type=FILE,
    metavar="FILE",
    help="the envelope ('-': standard output)  [default: LOG.dsse]",
)
def SIGN(log_file: str, key: str, output: str | None) -> None:  # noqa: N802
    sign(log_file, key, output)
