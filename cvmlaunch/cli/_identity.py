"""``cvmlaunch id-block snp``: build and sign SEV-SNP ID blocks and ID auth structures.

``id-block snp`` writes the 96-byte ID block and the 4096-byte ID auth (atomically) and
prints them in base64 as QEMU's ``sev-snp-guest`` ``id-block=``/``id-auth=`` properties, with
the key digests a verifier will see (``id-block verify``, which checks a pair, is
:mod:`cvmlaunch.cli._id_block_verify`). Private keys are read, used and never printed;
``--generate-key`` writes a new key with mode 0600.

Rule: this module only composes. It reads the keys and the log (:mod:`cvmlaunch.files`), asks
:func:`cvmlaunch.measure.id_sign.sign_launch` for the block and its auth (the library decides
the digest, the policy and the fields), writes the files as one group
(:func:`cvmlaunch.outputs.write_outputs`, in a directory :func:`cvmlaunch.files.
created_directory` removes again if they fail) and prints.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import click

from cvmlaunch.cli._output import format_digest
from cvmlaunch.cli._params import (
    FILE,
    DirPath,
    id_block_field_options,
    output_format_option,
)
from cvmlaunch.errors import ConfigError
from cvmlaunch.files import created_directory, read_log, read_small
from cvmlaunch.measure import id_sign, identity
from cvmlaunch.outputs import Output, write_outputs
from cvmlaunch.text import printable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

__all__ = ["ID_BLOCK_SNP", "id_block_snp"]


def _load_key(path: str, role: str) -> ec.EllipticCurvePrivateKey:
    return identity.load_private_key(read_small(path, f"{role} key"), path)


def id_block_snp(
    measurement: str | None,
    from_log: str | None,
    id_key: str | None,
    author_key: str | None,
    generate_key: str | None,
    force: bool,
    policy: str | None,
    family_id: str,
    image_id: str,
    block_version: int,
    svn: int,
    out_dir: str | None,
    id_block_path: str | None,
    id_auth_path: str | None,
    output_format: str,
) -> None:
    """Run ``id-block snp`` (arguments as the options; see :data:`ID_BLOCK_SNP`).

    Raises:
        ConfigError: options that do not go together, bad hex, a policy that differs from
            the log's.
        ImageError: a key, log or output file that cannot be read or written.
    """
    if id_key is not None and generate_key is not None:
        raise ConfigError("give --id-key or --generate-key, not both")
    # Everything is checked and computed first; the files are written last, as one group
    # (a new key, the ID block, the ID auth): a run that fails writes none of them.
    outputs: list[Output] = []
    read = [p for p in (id_key, author_key, from_log) if p is not None]
    if generate_key is not None:
        key = identity.generate_key()
        outputs.append(
            Output(
                generate_key,
                identity.private_key_pem(key),
                mode=0o600,
                replace=force,
                what="the new key (use --force to replace a key)",
            )
        )
        if measurement is None and from_log is None:
            write_outputs(outputs, inputs=read)
            digest = identity.key_digest(key)
            if output_format == "json":
                print(json.dumps({"key": generate_key, "key_digest": digest.hex()}))
            else:
                print(
                    f"{printable(generate_key)}: key digest {format_digest(digest, output_format)}"
                )
            return
    elif id_key is not None:
        key = _load_key(id_key, "ID")
    else:
        raise ConfigError("an ID key is needed: --id-key PEM or --generate-key FILE")
    if (measurement is None) == (from_log is None):
        raise ConfigError("give the launch digest: --measurement HEX or --from-log LOG")
    if out_dir is not None and (id_block_path is not None or id_auth_path is not None):
        raise ConfigError("give --out-dir or --id-block/--id-auth, not both")
    author = _load_key(author_key, "author") if author_key is not None else None
    if from_log is not None:
        launch = id_sign.launch_from_log(read_log(from_log), from_log)
    else:
        launch = id_sign.launch_from_text(measurement or "")
    block, auth = id_sign.sign_launch(
        launch,
        key,
        author,
        policy=policy,
        family_id=family_id,
        image_id=image_id,
        svn=svn,
        version=block_version,
    )
    block_bytes, auth_bytes = block.pack(), auth.pack()

    if out_dir is not None:
        id_block_path = os.path.join(out_dir, "id-block.bin")
        id_auth_path = os.path.join(out_dir, "id-auth.bin")
    if id_block_path is not None:
        outputs.append(Output(id_block_path, block_bytes, what="the ID block"))
    if id_auth_path is not None:
        outputs.append(Output(id_auth_path, auth_bytes, what="the ID auth"))
    with created_directory(out_dir):
        write_outputs(outputs, inputs=read)

    b64_block = base64.b64encode(block_bytes).decode()
    b64_auth = base64.b64encode(auth_bytes).decode()
    if output_format == "json":
        print(
            json.dumps(
                {
                    "id_block": b64_block,
                    "id_auth": b64_auth,
                    "author_key_en": auth.has_author_key,
                    "policy": f"{block.policy.value:#x}",
                    "id_key_digest": auth.id_key_digest.hex(),
                    "author_key_digest": auth.author_key_digest.hex(),
                    "files": {"id_block": id_block_path, "id_auth": id_auth_path},
                },
                indent=2,
            )
        )
        return
    qemu = f"id-block={b64_block},id-auth={b64_auth}"
    if auth.has_author_key:
        qemu += ",author-key-enabled=on"
    print(qemu)
    print(f"id-key-digest: {format_digest(auth.id_key_digest, output_format)}")
    print(f"author-key-digest: {format_digest(auth.author_key_digest, output_format)}")


@click.command(
    "snp",
    short_help="Sign an SNP ID block for a launch digest.",
    help="""Sign an SNP ID block for a launch digest.

Prints id-block=<base64>,id-auth=<base64> for QEMU's sev-snp-guest object (with
author-key-enabled=on when there is an author key), then ID_KEY_DIGEST and
AUTHOR_KEY_DIGEST as the attestation report will carry them. Signatures are
deterministic (RFC 6979). With --generate-key alone, only writes the key and prints its digest.""",
)
@click.option(
    "--measurement",
    metavar="HEX",
    help="expected launch digest: 48 bytes, hex (or base64, as sev-snp-measure prints it)",
)
@click.option(
    "--from-log",
    type=FILE,
    metavar="LOG",
    help="take the launch digest (and policy) from an SNP launch log, replayed first",
)
@click.option("--id-key", type=FILE, metavar="FILE", help="ID key: PEM EC P-384 private key")
@click.option(
    "--author-key",
    type=FILE,
    metavar="FILE",
    help="author key (PEM EC P-384) that signs the ID key; sets AUTHOR_KEY_EN",
)
@click.option(
    "--generate-key",
    type=FILE,
    metavar="FILE",
    help="write a new P-384 ID key to FILE (mode 0600) and use it as the ID key",
)
@click.option("--force", is_flag=True, help="let --generate-key replace an existing file")
@id_block_field_options()
@click.option(
    "--out-dir",
    type=DirPath(),
    metavar="DIR",
    help="write DIR/id-block.bin and DIR/id-auth.bin",
)
@click.option("--id-block", "id_block_path", type=FILE, metavar="FILE", help="ID block file")
@click.option("--id-auth", "id_auth_path", type=FILE, metavar="FILE", help="ID auth file")
@output_format_option("how to print the key digests (json: everything as one object)")
def ID_BLOCK_SNP(**options: Any) -> None:  # noqa: N802
    id_block_snp(**options)
