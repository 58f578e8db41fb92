"""``cvmlaunch measure snp``: the SEV-SNP (and SEV, SEV-ES) launch digest of an OVMF guest.

Flag names follow sev-snp-measure's. The firmware is mmapped, kernel and initrd are streamed
through SHA-256 (never read whole, :class:`cvmlaunch.files.FileDigests`); the options become
one :class:`cvmlaunch.measure.snp_predict.SnpRequest` (which resolves every default) and one
:func:`~cvmlaunch.measure.snp_predict.predict` call; with ``--log`` a launch measurement log
is written atomically. Exit 0 ok, 1 ``--expect`` mismatch, 2 bad input.
"""

from __future__ import annotations

import contextlib
from typing import Any

import click

from cvmlaunch.cli._params import (
    ANY_INT,
    FILE,
    FPU_INITS,
    SEV_MODES,
    VMMS,
    direct_boot_options,
    expect_option,
    firmware_dir_option,
    log_option,
    output_format_option,
    resolve_firmware,
    snp_identity_options,
    vcpu_options,
    vmm_type_option,
)
from cvmlaunch.errors import ConfigError, MeasurementMismatch

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cvmlaunch.measure.log import LogInput
    from cvmlaunch.measure.snp_predict import SnpInputs, SnpPrediction

__all__ = ["FPU_INITS", "MEASURE_SNP", "MODES", "VMMS", "measure_snp"]

#: The choices of --mode, --vmm-type, --fpu-init (:mod:`cvmlaunch.cli._params`).
MODES = SEV_MODES

_HELP = """Predict the SEV-SNP launch digest (or SEV / SEV-ES GCTX.LD) of an OVMF guest.

With hex output, stdout is the digest alone on one line. --log FILE writes the launch
measurement log (JSON Lines, docs/log-format.md); --expect HEX exits 1 on a mismatch.
In snp and snp:svsm modes the launch identity (--policy, --host-data, --id-block and
--id-auth) is recorded in the log header and the JSON output; it does not enter the
digest. An ID block must verify and carry this digest and policy, or the exit is 1."""


@click.command("snp", help=_HELP, short_help=_HELP.splitlines()[0])
@click.option(
    "--mode",
    type=click.Choice(MODES),
    default="snp",
    help="snp; snp:ovmf-hash (firmware pages only, reusable with --snp-ovmf-hash); seves / "
    "sev (SHA-256 GCTX.LD); snp:svsm (with --svsm and --vars-size/--vars-file) "
    "[default: snp]",
)
@click.option(
    "--ovmf",
    "--firmware",
    "ovmf",
    required=True,
    type=FILE,
    metavar="FILE",
    help="OVMF image (mapped to end at 4 GiB)",
)
@firmware_dir_option()
@vcpu_options()
@vmm_type_option(
    "VMM whose vCPU state and page types to follow (ec2/gce ignore --vcpu-*) [default: QEMU]"
)
@click.option(
    "--guest-features",
    type=ANY_INT,
    metavar="INT",
    help="SEV_FEATURES of the VMSAs [default: 0x1 (SNP), 0 (SEV-ES)]",
)
@click.option(
    "--fpu-init",
    type=click.Choice(FPU_INITS),
    help="FPU fields of the VMSAs: init2 = MXCSR 0x1F80/FCW 0x37F (KVM_SEV_INIT2 VMs on "
    "Linux >= 6.10: every SNP VM; SEV-ES with QEMU legacy-vm-type=off); legacy = 0/0 (QEMU "
    "9.1+'s default SEV-ES launch; any VM on older kernels) [default: init2 for snp modes, "
    "legacy for seves]",
)
@direct_boot_options()
@click.option(
    "--kernel-sha256",
    metavar="HEX",
    help="SHA-256 of the kernel, instead of --kernel (the file need not be at hand)",
)
@click.option("--initrd-sha256", metavar="HEX", help="SHA-256 of the initrd, instead of --initrd")
@click.option("--snp-ovmf-hash", metavar="HEX", help="precomputed snp:ovmf-hash of the firmware")
@click.option("--svsm", type=FILE, metavar="FILE", help="Coconut SVSM image (snp:svsm)")
@click.option(
    "--vars-size", type=ANY_INT, metavar="INT", help="firmware vars size in bytes (snp:svsm)"
)
@click.option("--vars-file", type=FILE, metavar="FILE", help="firmware vars file (snp:svsm)")
@output_format_option()
@log_option()
@expect_option("exit 1 unless the digest equals HEX")
@snp_identity_options()
def MEASURE_SNP(  # noqa: N802
    firmware_dir: str | None,
    ovmf: str,
    output_format: str,
    log_path: str | None,
    expect: str | None,
    **given: Any,
) -> None:
    from cvmlaunch.measure.snp_predict import SnpInputs

    inputs = SnpInputs(ovmf=resolve_firmware(ovmf, firmware_dir), **given)
    measure_snp(inputs, output_format=output_format, log_path=log_path, expect=expect)


def measure_snp(
    given: SnpInputs, *, output_format: str = "hex", log_path: str | None, expect: str | None
) -> None:
    """Run ``measure snp`` (see :data:`MEASURE_SNP`): ``given`` the prediction's inputs."""
    # The initrd's SHA-256 is the longest piece of work, and one stream: start it and the
    # kernel's now, so that the imports, the checks and the firmware run beside them. A file
    # that cannot be read is reported where its digest is needed, after the option checks.
    kernel, initrd = given.kernel, given.initrd
    if kernel == "-" and initrd == "-":
        raise ConfigError("--kernel and --initrd cannot both be standard input ('-')")
    from cvmlaunch import files

    streams = files.FileDigests(
        None if kernel is None else (kernel, "--kernel"),
        None if initrd is None else (initrd, "--initrd"),
    )
    from cvmlaunch.layout import SNP_ID_AUTH_SIZE, SNP_ID_BLOCK_SIZE, parse_hex_bytes
    from cvmlaunch.measure.snp import SevMode
    from cvmlaunch.measure.snp_predict import digest_size, predict

    sev_mode = SevMode(given.mode)
    size = digest_size(sev_mode)
    expected = None if expect is None else parse_hex_bytes(expect, size, "expect")
    # the identity only shows in the log and JSON: skip it (and its imports) for hex
    as_text = log_path is None and output_format != "json"
    request = given.request(record_identity=not as_text, log=log_path is not None)
    read = given.files  # an output may be none of them (same device and inode)
    if log_path is not None:  # refused before the firmware is measured
        from cvmlaunch.outputs import Output, check_outputs, write_output

        check_outputs([Output(log_path, b"", what="the launch log")], inputs=read)
    (k_size, k_file), (i_size, i_file) = streams.result()
    id_block, id_auth, vars_file = given.id_block, given.id_auth, given.vars_file
    request = given.with_files(
        request,
        kernel_sha256=k_file,
        initrd_sha256=i_file,
        vars_size=None if vars_file is None else files.file_size(vars_file, "--vars-file"),
        id_block=None
        if id_block is None
        else files.read_blob(id_block, SNP_ID_BLOCK_SIZE, "ID block"),
        id_auth=None if id_auth is None else files.read_blob(id_auth, SNP_ID_AUTH_SIZE, "ID auth"),
    )
    inputs: list[LogInput] = []
    if request.log:
        from cvmlaunch.measure.log import LogInput

        if kernel is not None and k_file is not None:
            inputs.append(LogInput("kernel", kernel, k_size, k_file))
        if initrd is not None and i_file is not None:
            inputs.append(LogInput("initrd", initrd, i_size, i_file))
    with contextlib.ExitStack() as stack:
        from cvmlaunch.image.ovmf import parse_ovmf

        image = parse_ovmf(stack.enter_context(files.map_file(given.ovmf)), name=given.ovmf)
        svsm = None
        if given.svsm is not None:
            svsm = parse_ovmf(stack.enter_context(files.map_file(given.svsm)), name=given.svsm)
        result = predict(image, request, svsm=svsm, inputs=inputs)
    if result.log is not None and log_path is not None:
        from cvmlaunch.measure.log import dumps_log

        write_output(log_path, dumps_log(result.log), what="the launch log", inputs=read)
    if log_path != "-":  # with --log -, stdout is the log alone (its footer has the digest)
        _print(result, output_format, sev_mode)
    if expected is not None and expected != result.digest:
        raise MeasurementMismatch("launch digest", expected=expected, actual=result.digest)


def _print(result: SnpPrediction, output_format: str, mode: Any) -> None:
    digest = result.digest
    if output_format == "hex":  # not via _output.format_digest: it imports base64 (start-up)
        print(digest.hex())
        return
    if output_format == "base64":
        import base64

        print(base64.b64encode(digest).decode())
        return
    import json

    out: dict[str, Any] = {"mode": mode.value, "digest": digest.hex(), "settings": result.settings}
    if result.log is not None:
        out["log_records"] = len(result.log.entries)
    print(json.dumps(out, sort_keys=True))
