"""``cvmlaunch measure snp``: the SEV-SNP (and SEV, SEV-ES) launch digest of an OVMF guest.

Flag names follow sev-snp-measure's. The firmware is mmapped, kernel and initrd are streamed
through SHA-256 (never read whole, :class:`cvmlaunch.files.FileDigests`); the options become
one :class:`cvmlaunch.measure.snp_predict.SnpRequest` (which resolves every default) and one
:func:`~cvmlaunch.measure.snp_predict.predict` call; with ``--log`` a launch measurement log
is written atomically. Exit 0 ok, 1 ``--expect`` mismatch, 2 bad input.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import click

from cvmlaunch.cli._params import (
    ANY_INT,
    FILE,
    Completing,
    firmware_dir_option,
    output_format_option,
    resolve_firmware,
)
from cvmlaunch.errors import ConfigError, MeasurementMismatch
from cvmlaunch.vcpu_signature import VCPU_TYPES, resolve_vcpu_signature

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cvmlaunch.measure.log import LogInput
    from cvmlaunch.measure.snp_predict import SnpPrediction

__all__ = ["MEASURE_SNP", "measure_snp"]


# The values of cvmlaunch.measure.snp.SevMode, plan.vmsa.VmmType and FpuInit, spelled out so
# that building the command does not import the measurement code (tests check they agree).
MODES = ["snp", "snp:ovmf-hash", "snp:svsm", "seves", "sev"]
VMMS = ["QEMU", "ec2", "gce"]
FPU_INITS = ["init2", "legacy"]


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
@click.option("--vcpus", type=ANY_INT, metavar="N", help="number of vCPUs (1..4096); one VMSA each")
@click.option(
    "--vcpu-type",
    type=Completing(list(VCPU_TYPES)),
    metavar="NAME",
    help=f"QEMU CPU model ({', '.join(VCPU_TYPES)})",
)
@click.option(
    "--vcpu-sig", type=ANY_INT, metavar="INT", help="vCPU signature (CPUID 1 EAX), e.g. 0xa00f11"
)
@click.option(
    "--vcpu-family",
    type=ANY_INT,
    metavar="INT",
    help="vCPU family (with --vcpu-model/--vcpu-stepping)",
)
@click.option("--vcpu-model", type=ANY_INT, metavar="INT", help="vCPU model")
@click.option("--vcpu-stepping", type=ANY_INT, metavar="INT", help="vCPU stepping")
@click.option(
    "--vmm-type",
    type=click.Choice(VMMS),
    default="QEMU",
    help="VMM whose vCPU state and page types to follow (ec2/gce ignore --vcpu-*) [default: QEMU]",
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
@click.option("--kernel", type=FILE, metavar="FILE", help="kernel (measured direct boot)")
@click.option("--initrd", type=FILE, metavar="FILE", help="initrd (with --kernel)")
@click.option("--append", metavar="CMDLINE", help="kernel command line (with --kernel)")
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
@click.option(
    "--log",
    "log_path",
    type=FILE,
    metavar="FILE",
    help="write the launch log ('-': standard output, the log alone)",
)
@click.option("--expect", metavar="HEX", help="exit 1 unless the digest equals HEX")
@click.option(
    "--policy",
    metavar="HEX",
    help="SNP guest policy for the launch (recorded, not measured) [default: 0x30000, QEMU's]",
)
@click.option(
    "--host-data",
    metavar="HEX",
    help="SNP HOST_DATA, 32 bytes (recorded, not measured) [default: zero]",
)
@click.option(
    "--id-block",
    type=FILE,
    metavar="FILE",
    help="SNP ID block (96 bytes, raw or base64), checked against the digest and the policy",
)
@click.option(
    "--id-auth",
    type=FILE,
    metavar="FILE",
    help="SNP ID auth (4096 bytes, raw or base64), with --id-block",
)
def MEASURE_SNP(firmware_dir: str | None, ovmf: str, **options: Any) -> None:  # noqa: N802
    measure_snp(ovmf=resolve_firmware(ovmf, firmware_dir), **options)


def measure_snp(
    mode: str,
    ovmf: str,
    vcpus: int | None,
    vcpu_type: str | None,
    vcpu_sig: int | None,
    vcpu_family: int | None,
    vcpu_model: int | None,
    vcpu_stepping: int | None,
    vmm_type: str,
    guest_features: int | None,
    fpu_init: str | None,
    kernel: str | None,
    initrd: str | None,
    append: str | None,
    kernel_sha256: str | None,
    initrd_sha256: str | None,
    snp_ovmf_hash: str | None,
    svsm: str | None,
    vars_size: int | None,
    vars_file: str | None,
    output_format: str,
    log_path: str | None,
    expect: str | None,
    policy: str | None,
    host_data: str | None,
    id_block: str | None,
    id_auth: str | None,
) -> None:
    """Run ``measure snp`` (arguments as the options; see :data:`MEASURE_SNP`)."""
    # The initrd's SHA-256 is the longest piece of work, and one stream: start it and the
    # kernel's now, so that the imports, the checks and the firmware run beside them. A file
    # that cannot be read is reported where its digest is needed, after the option checks.
    if kernel == "-" and initrd == "-":
        raise ConfigError("--kernel and --initrd cannot both be standard input ('-')")
    from cvmlaunch import files

    streams = files.FileDigests(
        None if kernel is None else (kernel, "--kernel"),
        None if initrd is None else (initrd, "--initrd"),
    )
    from cvmlaunch.layout import SNP_HOST_DATA_SIZE as HOST_DATA
    from cvmlaunch.layout import SNP_ID_AUTH_SIZE as ID_AUTH
    from cvmlaunch.layout import SNP_ID_BLOCK_SIZE as ID_BLOCK
    from cvmlaunch.layout import parse_hex_bytes as hex_
    from cvmlaunch.measure.snp import SevMode
    from cvmlaunch.measure.snp_predict import SnpRequest, digest_size, predict
    from cvmlaunch.plan.vmsa import FpuInit, VmmType

    sev_mode = SevMode(mode)
    expected = None if expect is None else hex_(expect, digest_size(sev_mode), "expect")
    seed = None if snp_ovmf_hash is None else hex_(snp_ovmf_hash, 48, "snp_ovmf_hash")
    if kernel is not None and kernel_sha256 is not None:
        raise ConfigError("give --kernel or --kernel-sha256, not both")
    if initrd is not None and initrd_sha256 is not None:
        raise ConfigError("give --initrd or --initrd-sha256, not both")
    k_sha = None if kernel_sha256 is None else hex_(kernel_sha256, 32, "kernel_sha256")
    i_sha = None if initrd_sha256 is None else hex_(initrd_sha256, 32, "initrd_sha256")
    cmdline = None
    if append is not None:
        from cvmlaunch.plan.sev_hashes import cmdline_bytes

        cmdline = cmdline_bytes(append)
    guest_policy = None
    if policy is not None:
        from cvmlaunch.snp_policy import GuestPolicy

        guest_policy = GuestPolicy.parse(policy)
    # What the files give (the kernel's and initrd's digests, the vars size, the ID block and
    # auth) stands in as zeros for the first check, so that a bad option is reported before
    # an unreadable file; the files replace the stand-ins below.
    vars_given = vars_size if vars_file is None else 0
    if vars_size is not None and vars_file is not None and sev_mode is SevMode.SNP_SVSM:
        vars_given = None  # "needs exactly one of --vars-size or --vars-file"
    request = SnpRequest(
        mode=sev_mode,
        vcpus=vcpus,
        vcpu_sig=resolve_vcpu_signature(
            vcpu_type, vcpu_sig, vcpu_family, vcpu_model, vcpu_stepping
        ),
        vmm=VmmType(vmm_type),
        guest_features=guest_features,
        fpu=None if fpu_init is None else FpuInit(fpu_init),
        kernel_sha256=bytes(32) if kernel is not None else k_sha,
        initrd_sha256=bytes(32) if initrd is not None else i_sha,
        cmdline=cmdline,
        ovmf_hash=seed,
        svsm=svsm is not None,
        vars_size=vars_given,
        policy=guest_policy,
        host_data=None if host_data is None else hex_(host_data, HOST_DATA, "host_data"),
        id_block=None if id_block is None else bytes(ID_BLOCK),
        id_auth=None if id_auth is None else bytes(ID_AUTH),
        id_source=f"{id_block} / {id_auth}",
        # the identity only shows in the log and JSON: skip it (and its imports) for hex
        record_identity=log_path is not None or output_format == "json",
        log=log_path is not None,
    )
    # every file this run reads: an output may be none of them (same device and inode)
    read = [p for p in (ovmf, kernel, initrd, svsm, vars_file, id_block, id_auth) if p]
    if log_path is not None:  # refused before the firmware is measured
        files.check_outputs([files.Output(log_path, b"", what="the launch log")], inputs=read)
    (k_size, k_file), (i_size, i_file) = streams.result()
    request = dataclasses.replace(
        request,
        kernel_sha256=k_file or k_sha,
        initrd_sha256=i_file or i_sha,
        vars_size=request.vars_size
        if vars_file is None
        else files.file_size(vars_file, "--vars-file"),
        id_block=None if id_block is None else files.read_blob(id_block, ID_BLOCK, "ID block"),
        id_auth=None if id_auth is None else files.read_blob(id_auth, ID_AUTH, "ID auth"),
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

        image = parse_ovmf(stack.enter_context(files.map_file(ovmf)), name=ovmf)
        svsm_image = None
        if svsm is not None:
            svsm_image = parse_ovmf(stack.enter_context(files.map_file(svsm)), name=svsm)
        result = predict(image, request, svsm=svsm_image, inputs=inputs)
    if result.log is not None and log_path is not None:
        from cvmlaunch.measure.log import dumps_log

        files.write_output(log_path, dumps_log(result.log), what="the launch log", inputs=read)
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
