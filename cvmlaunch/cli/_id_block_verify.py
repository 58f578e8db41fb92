"""``cvmlaunch id-block verify``: check an SEV-SNP ID block / ID auth pair as the firmware
will at SNP_LAUNCH_FINISH.

Rule: this module only composes. It reads the pair (:func:`cvmlaunch.files.read_blob`: raw or
base64), asks :func:`cvmlaunch.measure.identity.verify_id_pair` for every check and prints the
result (:meth:`~cvmlaunch.measure.identity.IdVerification.lines`, ``to_json``).
"""

from __future__ import annotations

import json

import click

from cvmlaunch.cli._params import FILE, json_option
from cvmlaunch.errors import CheckFailed
from cvmlaunch.files import read_blob
from cvmlaunch.measure import identity

__all__ = ["ID_BLOCK_VERIFY", "id_block_verify"]


def id_block_verify(id_block: str, id_auth: str, as_json: bool) -> None:
    """Run ``id-block verify`` (see :data:`ID_BLOCK_VERIFY`).

    Raises:
        ImageError: a file that cannot be read or has the wrong size.
        CheckFailed: a check failed (after every check is printed).
    """
    block_bytes = read_blob(id_block, identity.ID_BLOCK_SIZE, "ID block")
    auth_bytes = read_blob(id_auth, identity.ID_AUTH_SIZE, "ID auth")
    result = identity.verify_id_pair(block_bytes, auth_bytes)
    if as_json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print("\n".join(result.lines()))
    if not result.ok:
        names = ", ".join(c.name for c in result.failures)
        raise CheckFailed(
            f"{id_block} / {id_auth}: {len(result.failures)} check(s) failed: {names}"
        )


@click.command(
    "verify",
    short_help="Check an ID block / ID auth pair (raw or base64 files) as the firmware will.",
    help="""Check an ID block / ID auth pair (raw or base64 files) as the firmware will.

Checks the block fields, the algorithms, the curves, both signatures and that every
reserved area is zero; prints the key digests a verifier will see. Exit 1 if a check fails.""",
)
@click.argument("id_block", metavar="ID_BLOCK", type=FILE)
@click.argument("id_auth", metavar="ID_AUTH", type=FILE)
@json_option("print JSON instead of text")
def ID_BLOCK_VERIFY(id_block: str, id_auth: str, as_json: bool) -> None:  # noqa: N802
    id_block_verify(id_block, id_auth, as_json)
