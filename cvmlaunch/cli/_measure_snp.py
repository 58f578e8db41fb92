"""``cvmlaunch measure snp``: the SEV-SNP (and SEV, SEV-ES) launch digest of an OVMF guest.

Flag names follow sev-snp-measure's. The firmware is mmapped, kernel and initrd are streamed
through SHA-256 (never read whole); with ``--log`` a launch measurement log is written
atomically. Exit 0 ok, 1 ``--expect`` mismatch, 2 bad input.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
from collections.abc import Iterator
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
from cvmlaunch.measure.cpu import VCPU_TYPES, cpu_signature, vcpu_type_signature

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cvmlaunch.image.ovmf import OvmfImage
    from cvmlaunch.measure.identity import GuestPolicy
    from cvmlaunch.measure.log import LogInput, MeasurementLog, SettingValue
    from cvmlaunch.measure.snp import SevMode
    from cvmlaunch.plan.sev_hashes import KernelHashes

__all__ = ["MEASURE_SNP", "measure_snp"]


# The values of cvmlaunch.measure.snp.SevMode, plan.vmsa.VmmType and FpuInit, spelled out so
# that building the command does not import the measurement code (tests check they agree).
MODES = ["snp", "snp:ovmf-hash", "snp:svsm", "seves", "sev"]
VMMS = ["QEMU", "ec2", "gce"]
FPU_INITS = ["init2", "legacy"]


def _resolve_sig(
    vcpu_type: str | None,
    vcpu_sig: int | None,
    family: int | None,
    model: int | None,
    stepping: int | None,
) -> int | None:
    """Exactly one of --vcpu-type, --vcpu-sig or --vcpu-family/-model/-stepping, or None."""
    fms = (family, model, stepping)
    given = [vcpu_type is not None, vcpu_sig is not None, any(v is not None for v in fms)]
    if sum(given) > 1:
        raise ConfigError(
            "give only one of --vcpu-type, --vcpu-sig or --vcpu-family/--vcpu-model/--vcpu-stepping"
        )
    if vcpu_type is not None:
        return vcpu_type_signature(vcpu_type)
    if vcpu_sig is not None:
        if not 0 <= vcpu_sig <= 0xFFFF_FFFF:
            raise ConfigError(f"--vcpu-sig {vcpu_sig:#x} is not a 32-bit value")
        return vcpu_sig
    if any(v is not None for v in fms):
        if family is None or model is None or stepping is None:
            raise ConfigError("--vcpu-family, --vcpu-model and --vcpu-stepping go together")
        return cpu_signature(family, model, stepping)
    return None


@contextlib.contextmanager
def _firmware(path: str) -> Iterator[OvmfImage]:
    from cvmlaunch.files import map_file
    from cvmlaunch.image.ovmf import parse_ovmf

    with map_file(path) as data:
        yield parse_ovmf(data, name=path)


def _input(role: str, path: str, data: memoryview | bytes) -> LogInput:
    from cvmlaunch.measure.log import LogInput

    return LogInput(
        role=role,
        name=os.path.basename(path),
        size=len(data),
        sha256=hashlib.sha256(data).digest(),
        sha384=hashlib.sha384(data).digest(),
    )


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
    streams = _FileDigests(kernel, initrd)
    from cvmlaunch.layout import parse_hex_bytes
    from cvmlaunch.measure.snp import SevMode, snp_log
    from cvmlaunch.measure.snp_chain import ZERO_DIGEST, fold_layout
    from cvmlaunch.plan.snp import SnpSettings, firmware_plan, snp_plan, svsm_plan
    from cvmlaunch.plan.vmsa import FpuInit, VmmType

    sev_mode = SevMode(mode)
    vmm = VmmType(vmm_type)
    is_sev = sev_mode in (SevMode.SEV, SevMode.SEV_ES)
    expected = (
        parse_hex_bytes(expect, 32 if is_sev else 48, "expect") if expect is not None else None
    )
    seed = (
        parse_hex_bytes(snp_ovmf_hash, 48, "snp_ovmf_hash") if snp_ovmf_hash is not None else None
    )
    if kernel is not None and kernel_sha256 is not None:
        raise ConfigError("give --kernel or --kernel-sha256, not both")
    if initrd is not None and initrd_sha256 is not None:
        raise ConfigError("give --initrd or --initrd-sha256, not both")
    given_kernel = (
        parse_hex_bytes(kernel_sha256, 32, "kernel_sha256") if kernel_sha256 is not None else None
    )
    given_initrd = (
        parse_hex_bytes(initrd_sha256, 32, "initrd_sha256") if initrd_sha256 is not None else None
    )
    _check_combination(
        sev_mode,
        kernel if given_kernel is None else "--kernel-sha256",
        initrd if given_initrd is None else "--initrd-sha256",
        append,
        seed,
        svsm,
        vars_size,
        vars_file,
    )
    # The identity only shows in the log and JSON (and is checked when given): skip it (and
    # the identity modules' import cost) for a plain hex digest.
    identity_given = any(v is not None for v in (policy, host_data, id_block, id_auth))
    launch_id = (
        _launch_identity(sev_mode, policy, host_data, id_block, id_auth)
        if identity_given or log_path is not None or output_format == "json"
        else None
    )
    sig = _resolve_sig(vcpu_type, vcpu_sig, vcpu_family, vcpu_model, vcpu_stepping)
    if sev_mode in (SevMode.SNP, SevMode.SNP_SVSM, SevMode.SEV_ES):
        if vcpus is None:
            raise ConfigError(f"--mode {mode} needs --vcpus")
        if vmm is VmmType.QEMU and sig is None:
            raise ConfigError(
                f"--mode {mode} with QEMU needs --vcpu-type, --vcpu-sig or "
                "--vcpu-family/--vcpu-model/--vcpu-stepping"
            )
    if vmm is not VmmType.QEMU:
        sig = 0x600  # EC2 and GCE configure no CPUID leaf 1: KVM leaves RDX = 0x600
    fpu = FpuInit(fpu_init) if fpu_init is not None else None
    want_log = log_path is not None
    # every file this run reads: an output may be none of them (same device and inode)
    read = [p for p in (ovmf, kernel, initrd, svsm, vars_file, id_block, id_auth) if p]
    if log_path is not None:  # refused before the firmware is measured
        from cvmlaunch.files import Output, check_outputs

        check_outputs([Output(log_path, b"", what="the launch log")], inputs=read)
    inputs: list[LogInput] = []
    hashes = _kernel_hashes(
        streams, kernel, initrd, append, inputs if want_log else None, given_kernel, given_initrd
    )

    log: MeasurementLog | None = None
    settings_out: dict[str, Any]
    with contextlib.ExitStack() as stack:
        image = stack.enter_context(_firmware(ovmf))
        if want_log:
            inputs.insert(0, _input("firmware", ovmf, image.data))
        if is_sev:
            from cvmlaunch.measure.sev import SevSettings, sev_digest, sev_log

            es = sev_mode is SevMode.SEV_ES
            sev_settings = SevSettings(
                es=es,
                vcpus=vcpus if es and vcpus is not None else 1,
                vcpu_sig=sig or 0,
                vmm=vmm,
                guest_features=guest_features or 0,
                kernel_hashes=hashes,
                fpu=fpu or FpuInit.LEGACY,
            )
            settings_out = sev_settings.log_settings()
            if want_log:
                log = sev_log(image, sev_settings, inputs=tuple(inputs), tool_version=_version())
                digest = log.digest
            else:
                digest = sev_digest(image, sev_settings)
        else:
            settings = SnpSettings(
                vcpus=vcpus if vcpus is not None else 1,
                vcpu_sig=sig or 0,
                vmm=vmm,
                guest_features=0x1 if guest_features is None else guest_features,
                kernel_hashes=hashes,
                ovmf_hash=seed,
                fpu=fpu or FpuInit.INIT2,
            )
            extra: dict[str, SettingValue] = {}
            if sev_mode is SevMode.SNP_OVMF_HASH:
                layout = firmware_plan(image)
                settings_out = {}
            elif sev_mode is SevMode.SNP_SVSM:
                svsm_image = stack.enter_context(_firmware(svsm or ""))
                size = _vars_size(vars_size, vars_file)
                layout = svsm_plan(image, svsm_image, settings, vars_size=size)
                if want_log:
                    inputs.append(_input("svsm", svsm or "", svsm_image.data))
                extra = {"vars_size": size}
                settings_out = {**settings.log_settings(), **extra}
            else:
                layout = snp_plan(image, settings)
                extra = {"ap_reset_address": image.sev_es_reset_eip}
                settings_out = settings.log_settings()
            if launch_id is not None:
                extra |= launch_id.settings
                settings_out |= launch_id.settings
            if want_log:
                log = snp_log(
                    layout,
                    settings,
                    mode=sev_mode,
                    inputs=tuple(inputs),
                    tool_version=_version(),
                    extra_settings=extra,
                )
                digest = log.digest
            else:
                digest = fold_layout(layout, settings.ovmf_hash or ZERO_DIGEST)
    if launch_id is not None:
        launch_id.check(digest)
    if log is not None and log_path is not None:
        from cvmlaunch.files import write_output
        from cvmlaunch.measure.log import dumps_log

        write_output(log_path, dumps_log(log), what="the launch log", inputs=read)
    if log_path != "-":  # with --log -, stdout is the log alone (its footer has the digest)
        _print(digest, output_format, sev_mode, settings_out, log)
    if expected is not None and expected != digest:
        raise MeasurementMismatch("launch digest", expected=expected, actual=digest)


@dataclasses.dataclass(frozen=True, slots=True)
class _LaunchId:
    """The SNP launch identity given on the command line: its log header settings, the
    policy, and the ID block pair (``(source, block, auth)``) to check against the digest."""

    settings: dict[str, SettingValue]
    policy: GuestPolicy
    pair: tuple[str, bytes, bytes] | None

    def check(self, digest: bytes) -> None:
        """Raise CheckFailed / MeasurementMismatch unless the ID block fits this launch."""
        if self.pair is None:
            return
        from cvmlaunch.measure.identity import check_launch_id_pair

        source, block, auth = self.pair
        check_launch_id_pair(block, auth, measurement=digest, policy=self.policy, source=source)


def _launch_identity(
    mode: SevMode,
    policy: str | None,
    host_data: str | None,
    id_block: str | None,
    id_auth: str | None,
) -> _LaunchId | None:
    """Parse and read the launch identity options (None for modes without one).

    Raises:
        ConfigError: an option the mode does not take, bad hex, a lone --id-block/--id-auth.
        ImageError: an ID block or ID auth file of the wrong size or unreadable.
    """
    from cvmlaunch.measure.snp import SevMode

    given = [
        o
        for o, v in (
            ("--policy", policy),
            ("--host-data", host_data),
            ("--id-block", id_block),
            ("--id-auth", id_auth),
        )
        if v is not None
    ]
    if mode not in (SevMode.SNP, SevMode.SNP_SVSM):
        if given:
            raise ConfigError(f"{given[0]} is an SNP launch setting (--mode snp or snp:svsm)")
        return None
    if (id_block is None) != (id_auth is None):
        raise ConfigError("--id-block and --id-auth go together")
    from cvmlaunch.files import read_blob
    from cvmlaunch.launch_identity import SnpLaunchIdentity
    from cvmlaunch.layout import (
        SNP_HOST_DATA_SIZE,
        SNP_ID_AUTH_SIZE,
        SNP_ID_BLOCK_SIZE,
        parse_hex_bytes,
    )
    from cvmlaunch.measure.identity import DEFAULT_POLICY, GuestPolicy
    from cvmlaunch.measure.reference import identity_settings

    guest_policy = GuestPolicy.parse(policy) if policy is not None else DEFAULT_POLICY
    snp = SnpLaunchIdentity()
    if host_data is not None:
        snp = SnpLaunchIdentity(parse_hex_bytes(host_data, SNP_HOST_DATA_SIZE, "host_data"))
    pair: tuple[str, bytes, bytes] | None = None
    if id_block is not None and id_auth is not None:
        block = read_blob(id_block, SNP_ID_BLOCK_SIZE, "ID block")
        auth = read_blob(id_auth, SNP_ID_AUTH_SIZE, "ID auth")
        pair = (f"{id_block} / {id_auth}", block, auth)
        snp = SnpLaunchIdentity(snp.host_data, block, auth)
    settings = identity_settings(snp=snp, policy=guest_policy)
    return _LaunchId(dict(settings), guest_policy, pair)


def _check_combination(
    mode: SevMode,
    kernel: str | None,
    initrd: str | None,
    append: str | None,
    seed: bytes | None,
    svsm: str | None,
    vars_size: int | None,
    vars_file: str | None,
) -> None:
    """Reject option combinations the mode cannot honour (one clear line each)."""
    from cvmlaunch.measure.snp import SevMode

    if (initrd is not None or append is not None) and kernel is None:
        raise ConfigError("--initrd and --append need --kernel")
    if seed is not None and mode is not SevMode.SNP:
        raise ConfigError("--snp-ovmf-hash works only with --mode snp")
    if mode is SevMode.SNP_OVMF_HASH and kernel is not None:
        raise ConfigError("--mode snp:ovmf-hash measures the firmware only (no --kernel)")
    if mode is SevMode.SNP_SVSM:
        if svsm is None:
            raise ConfigError("--mode snp:svsm needs --svsm")
        if (vars_size is None) == (vars_file is None):
            raise ConfigError("--mode snp:svsm needs exactly one of --vars-size or --vars-file")
        if kernel is not None:
            raise ConfigError("--mode snp:svsm does not take --kernel")
    elif svsm is not None or vars_size is not None or vars_file is not None:
        raise ConfigError("--svsm, --vars-size and --vars-file belong to --mode snp:svsm")


def _kernel_hashes(
    streams: _FileDigests,
    kernel: str | None,
    initrd: str | None,
    append: str | None,
    inputs: list[LogInput] | None,
    kernel_sha: bytes | None = None,
    initrd_sha: bytes | None = None,
) -> KernelHashes | None:
    """The kernel hashes: the SHA-256 of kernel and initrd as ``streams`` computes them
    (unless given); record the files as log inputs if asked (the hashes are in the log's
    settings either way)."""
    if kernel is None and kernel_sha is None:
        return None
    from cvmlaunch.plan.sev_hashes import KernelHashes, cmdline_bytes, cmdline_sha256

    (kernel_size, kernel_digest), (initrd_size, initrd_digest) = streams.result()
    kernel_sha = kernel_digest or kernel_sha
    initrd_sha = initrd_digest or initrd_sha
    if initrd_sha is None:
        initrd_sha = hashlib.sha256(b"").digest()
    if kernel_sha is None:  # pragma: no cover - one of kernel / kernel_sha is set above
        raise ConfigError("no kernel")
    cmdline = cmdline_bytes(append) if append is not None else None
    if inputs is not None:
        from cvmlaunch.measure.log import LogInput

        if kernel is not None:
            inputs.append(LogInput("kernel", _basename(kernel), kernel_size, kernel_sha))
        if initrd is not None:
            inputs.append(LogInput("initrd", _basename(initrd), initrd_size, initrd_sha))
        if cmdline is not None:
            from cvmlaunch.measure.log import cmdline_input

            inputs.append(cmdline_input(cmdline))
    return KernelHashes(kernel=kernel_sha, initrd=initrd_sha, cmdline=cmdline_sha256(cmdline))


class _FileDigests:
    """SHA-256 of up to two files (either may be None): the last is streamed on a thread of
    its own from the moment this is made, the first by the caller's thread in
    :meth:`result`. hashlib releases the GIL, so the two run on two cores, and the longest
    stream (the initrd's, given last) starts before the caller's other work (imports, checks,
    the firmware), which then runs beside it with the first file's hash on the other core."""

    def __init__(self, *paths: str | None) -> None:
        self._paths = paths
        self._digests: list[tuple[int, bytes | None]] = [(0, None)] * len(paths)
        self._errors: list[Exception | None] = [None] * len(paths)
        self._threads = []
        if any(path is not None for path in paths[1:]):
            import threading  # only then (a firmware-only run does without it)

            self._threads = [
                threading.Thread(target=self._hash, args=(i, path), name="sha256", daemon=True)
                for i, path in enumerate(paths)
                if i > 0 and path is not None
            ]
        for thread in self._threads:
            thread.start()

    def _hash(self, index: int, path: str) -> None:
        try:
            self._digests[index] = _sha256_of(path, ("--kernel", "--initrd")[index])
        except Exception as exc:  # re-raised in the caller's thread by result()
            # Exception, not BaseException: the caller's thread hashes the first file here
            # too, and a Ctrl-C (KeyboardInterrupt) kept for later would leave it waiting in
            # join() on a stream that may never end.
            self._errors[index] = exc

    def result(self) -> list[tuple[int, bytes | None]]:
        """Sizes and digests in the order of the paths (``(0, None)`` for a None path), once
        all are done.

        Raises:
            ImageError: a file cannot be read (the first such path's error).
        """
        if self._paths and self._paths[0] is not None:
            self._hash(0, self._paths[0])
        for thread in self._threads:
            thread.join()
        for error in self._errors:
            if error is not None:
                raise error
        return list(self._digests)


def _basename(path: str) -> str:
    """The name a log records for an input: its file name (``-`` for standard input)."""
    return os.path.basename(path) or path


def _sha256_of(path: str, what: str) -> tuple[int, bytes]:
    """Size and SHA-256 of a streamed input: a file (hashed in place through mmap windows), a
    pipe, or ``-`` (standard input) (:func:`cvmlaunch.files.file_digests`).

    Raises:
        ImageError: the input cannot be read, or is a device, a directory or a socket.
    """
    from cvmlaunch.files import file_digests

    size, (digest,) = file_digests(path, ["sha256"], what)
    return size, digest


def _vars_size(vars_size: int | None, vars_file: str | None) -> int:
    if vars_file is not None:
        from cvmlaunch.files import file_size

        return file_size(vars_file, "--vars-file")
    return vars_size or 0


def _print(
    digest: bytes,
    output_format: str,
    mode: SevMode,
    settings: dict[str, Any],
    log: MeasurementLog | None,
) -> None:
    if output_format == "hex":  # not via _output.format_digest: it imports tempfile (speed)
        print(digest.hex())
        return
    if output_format == "base64":
        import base64

        print(base64.b64encode(digest).decode())
        return
    import json

    out: dict[str, Any] = {
        "mode": mode.value,
        "digest": digest.hex(),
        "settings": settings,
    }
    if log is not None:
        out["log_records"] = len(log.entries)
    print(json.dumps(out, sort_keys=True))


def _version() -> str:
    from cvmlaunch import __version__

    return __version__
