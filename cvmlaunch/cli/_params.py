"""Parameter types and options the commands share.

Paths are :class:`click.Path` without checks of their own (the library's file edge,
:mod:`cvmlaunch.files`, reports a missing file or a directory in one line, naming it), so
that shell completion offers file names. Options a CI job would rather set once read an
environment variable (shown in ``--help``).

Rule 1: an option two commands (or one command's form) take is declared once, here, as a
decorator (``..._option``) or a group of them (``..._options``: :func:`options` stacks them
in the order ``--help`` lists them); a command differing in a help text passes it.

Rule 2: importing this module imports click and nothing else of cvmlaunch (``measure snp``
start-up, tests/test_startup.py): choices are spelled out here, the tests check that they
equal the library's enums.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click

__all__ = [
    "ANY_INT",
    "FILE",
    "U32",
    "Completing",
    "DirPath",
    "firmware_dir_option",
    "output_format_option",
    "read_log",
    "resolve_firmware",
    "signed_by_options",
]

F = TypeVar("F", bound=Callable[..., Any])

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem

    from cvmlaunch.measure.log import MeasurementLog

if TYPE_CHECKING:  # click >= 8.2 types ParamType by what it converts to
    _IntType = click.ParamType[int]
    _StrType = click.ParamType[str]
else:
    _IntType = _StrType = click.ParamType

#: A file argument or option: any path, completed as a file name.
FILE = click.Path(readable=False)

#: The envvar of ``--firmware-dir``.
FIRMWARE_DIR_ENV = "CVMLAUNCH_FIRMWARE_DIR"
#: The envvar of ``--output-format``.
OUTPUT_FORMAT_ENV = "CVMLAUNCH_OUTPUT_FORMAT"


class DirPath(_StrType):
    """A directory path, taken as given (the command creates or reports it), completed as a
    directory name."""

    name = "directory"

    def shell_complete(
        self, ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[CompletionItem]:
        from click.shell_completion import CompletionItem  # only when completing

        return [CompletionItem(incomplete, type="dir")]


class AnyInt(_IntType):
    """An integer in any Python base (``0x1``, ``0o7``, ``42``), like sev-snp-measure's."""

    name = "integer"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return int(value, 0)
        except ValueError:
            self.fail(f"{value!r} is not an integer (decimal, 0x hex, 0o octal)", param, ctx)


class Unsigned32(AnyInt):
    """An unsigned 32-bit integer, in any base."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        number = super().convert(value, param, ctx)
        if not 0 <= number <= 0xFFFFFFFF:
            self.fail(f"{value!r} is not in the range 0..0xffffffff", param, ctx)
        return number


ANY_INT = AnyInt()
U32 = Unsigned32()


class Completing(_StrType):
    """Text checked by the command (its error names the value), completed from ``values``."""

    name = "text"

    def __init__(self, values: Sequence[str]) -> None:
        self.values = tuple(values)

    def shell_complete(
        self, ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[CompletionItem]:
        from click.shell_completion import CompletionItem  # only when completing

        return [CompletionItem(v) for v in self.values if v.startswith(incomplete)]


def output_format_option(help: str = "how to print the digest") -> Callable[[F], F]:
    """``--output-format hex|base64|json`` (default hex, or ``$CVMLAUNCH_OUTPUT_FORMAT``)."""
    return click.option(
        "--output-format",
        type=click.Choice(["hex", "base64", "json"]),
        default="hex",
        show_default=True,
        envvar=OUTPUT_FORMAT_ENV,
        show_envvar=True,
        help=help,
    )


def firmware_dir_option() -> Callable[[F], F]:
    """``--firmware-dir DIR`` (or ``$CVMLAUNCH_FIRMWARE_DIR``): see :func:`resolve_firmware`."""
    return click.option(
        "--firmware-dir",
        type=DirPath(),
        metavar="DIR",
        envvar=FIRMWARE_DIR_ENV,
        show_envvar=True,
        help="where to look for a firmware FILE given by a relative name that is not found "
        "in the current directory",
    )


def signed_by_options(what: str = "also check") -> Callable[[F], F]:
    """``--signed-by PUBKEY`` and ``--signature FILE`` (default ``LOG.dsse``): the DSSE
    signature of a log (``cvmlaunch log sign``); ``what`` starts the help text."""
    signed_by = click.option(
        "--signed-by",
        type=FILE,
        metavar="PUBKEY",
        help=f"{what} LOG's DSSE signature by this PEM public key (ECDSA P-384 or Ed25519)",
    )
    signature = click.option(
        "--signature", type=FILE, metavar="FILE", help="the DSSE envelope  [default: LOG.dsse]"
    )

    def apply(f: F) -> F:
        return signed_by(signature(f))

    return apply


def read_log(
    log_file: str, signed_by: str | None = None, signature: str | None = None
) -> tuple[MeasurementLog, str | None]:
    """The launch log ``log_file`` (:func:`cvmlaunch.files.read_log`) and, with ``signed_by``
    (:func:`signed_by_options`), the key ID its DSSE envelope (``signature``, default
    ``LOG.dsse``) verified with: the bytes checked are the bytes parsed.

    Raises:
        ConfigError: ``--signature`` without ``--signed-by`` (else it would be silently
            ignored).
        CheckFailed: the envelope is not over these bytes or not signed by that key.
    """
    from cvmlaunch import files

    if signature is not None and signed_by is None:
        from cvmlaunch.errors import ConfigError

        raise ConfigError("--signature names the envelope that --signed-by checks: give both")
    if signed_by is None:
        return files.read_log(log_file), None
    from cvmlaunch.measure.log_sign import MAX_ENVELOPE_BYTES, load_public_key, verify_signed_log

    log_bytes, log = files.read_log_bytes(log_file)
    key = load_public_key(files.read_small(signed_by, "public key"), signed_by)
    envelope_path = signature if signature is not None else log_file + ".dsse"
    envelope = files.read_small(envelope_path, "DSSE envelope", MAX_ENVELOPE_BYTES)
    return log, verify_signed_log(log_bytes, envelope, key)


def resolve_firmware(path: str, firmware_dir: str | None) -> str:
    """``path``, or ``firmware_dir/path`` when ``path`` is a relative name that does not
    exist here but does there (a missing file is reported by its name as given).

    Raises:
        ConfigError: ``--firmware-dir ''`` (an unset variable is no directory).
    """
    if firmware_dir == "":
        from cvmlaunch.errors import ConfigError

        raise ConfigError("--firmware-dir: empty directory name")
    if firmware_dir and not os.path.isabs(path) and not os.path.lexists(path):
        candidate = os.path.join(firmware_dir, path)
        if os.path.lexists(candidate):
            return candidate
    return path


# --- Option groups (Rule 1) ---------------------------------------------------------------

#: The values of cvmlaunch.measure.snp.SevMode, plan.vmsa.VmmType and FpuInit, spelled out so
#: that building a command does not import the measurement code (tests check they agree).
SEV_MODES = ["snp", "snp:ovmf-hash", "snp:svsm", "seves", "sev"]
VMMS = ["QEMU", "ec2", "gce"]
FPU_INITS = ["init2", "legacy"]


def options(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    """The option decorators ``decorators`` as one, listed in ``--help`` in this order."""

    def apply(f: F) -> F:
        for decorator in reversed(decorators):
            f = decorator(f)
        return f

    return apply


def log_option(
    help: str = "write the launch log ('-': standard output, the log alone)",
) -> Callable[[F], F]:
    """``--log FILE`` (the parameter ``log_path``): where to write the launch log."""
    return click.option("--log", "log_path", type=FILE, metavar="FILE", help=help)


def expect_option(help: str) -> Callable[[F], F]:
    """``--expect HEX``: the digest the command must predict (exit 1 otherwise)."""
    return click.option("--expect", metavar="HEX", help=help)


def direct_boot_options(file_metavar: str | None = "FILE") -> Callable[[F], F]:
    """``--kernel``, ``--initrd``, ``--append`` of SEV measured direct boot (QEMU's kernel
    hashes); ``file_metavar`` None shows click's own (``PATH``)."""
    return options(
        click.option(
            "--kernel", type=FILE, metavar=file_metavar, help="kernel (measured direct boot)"
        ),
        click.option("--initrd", type=FILE, metavar=file_metavar, help="initrd (with --kernel)"),
        click.option("--append", metavar="CMDLINE", help="kernel command line (with --kernel)"),
    )


def vmm_type_option(help: str) -> Callable[[F], F]:
    """``--vmm-type QEMU|ec2|gce`` (default QEMU)."""
    return click.option("--vmm-type", type=click.Choice(VMMS), default="QEMU", help=help)


def vcpu_type_option(*decls: str, **attrs: Any) -> Callable[[F], F]:
    """``--vcpu-type NAME``, completed from the QEMU CPU models (imported when a command that
    takes it is built)."""
    from cvmlaunch.vcpu_signature import VCPU_TYPES

    attrs.setdefault("metavar", "NAME")
    attrs.setdefault("help", f"QEMU CPU model ({', '.join(VCPU_TYPES)})")
    return click.option("--vcpu-type", *decls, type=Completing(list(VCPU_TYPES)), **attrs)


def vcpu_options() -> Callable[[F], F]:
    """``--vcpus`` and the vCPU signature: ``--vcpu-type``, ``--vcpu-sig``, or
    ``--vcpu-family``/``--vcpu-model``/``--vcpu-stepping``
    (:func:`cvmlaunch.vcpu_signature.resolve_vcpu_signature`)."""
    return options(
        click.option(
            "--vcpus", type=ANY_INT, metavar="N", help="number of vCPUs (1..4096); one VMSA each"
        ),
        vcpu_type_option(),
        click.option(
            "--vcpu-sig",
            type=ANY_INT,
            metavar="INT",
            help="vCPU signature (CPUID 1 EAX), e.g. 0xa00f11",
        ),
        click.option(
            "--vcpu-family",
            type=ANY_INT,
            metavar="INT",
            help="vCPU family (with --vcpu-model/--vcpu-stepping)",
        ),
        click.option("--vcpu-model", type=ANY_INT, metavar="INT", help="vCPU model"),
        click.option("--vcpu-stepping", type=ANY_INT, metavar="INT", help="vCPU stepping"),
    )


def snp_identity_options() -> Callable[[F], F]:
    """The SNP launch identity a prediction records: ``--policy``, ``--host-data``,
    ``--id-block``, ``--id-auth``."""
    return options(
        click.option(
            "--policy",
            metavar="HEX",
            help="SNP guest policy for the launch (recorded, not measured) "
            "[default: 0x30000, QEMU's]",
        ),
        click.option(
            "--host-data",
            metavar="HEX",
            help="SNP HOST_DATA, 32 bytes (recorded, not measured) [default: zero]",
        ),
        click.option(
            "--id-block",
            type=FILE,
            metavar="FILE",
            help="SNP ID block (96 bytes, raw or base64), checked against the digest and the "
            "policy",
        ),
        click.option(
            "--id-auth",
            type=FILE,
            metavar="FILE",
            help="SNP ID auth (4096 bytes, raw or base64), with --id-block",
        ),
    )


def tdx_owner_options() -> Callable[[F], F]:
    """The TDX owner values a prediction records: ``--mrconfigid``, ``--mrowner``,
    ``--mrownerconfig`` (48 bytes of hex each, as QEMU's ``tdx-guest`` takes them)."""
    return options(
        click.option(
            "--mrconfigid",
            metavar="HEX",
            help="MRCONFIGID, 48 bytes (recorded, not measured) [default: zero]",
        ),
        click.option("--mrowner", metavar="HEX", help="MROWNER, 48 bytes [default: zero]"),
        click.option(
            "--mrownerconfig", metavar="HEX", help="MROWNERCONFIG, 48 bytes [default: zero]"
        ),
    )


def tdx_guest_options() -> Callable[[F], F]:
    """A direct-boot TD's guest, for ``measure tdx``'s RTMRs: ``--kernel``, ``--initrd``,
    ``--append``, ``--memory``, ``--acpi``, ``--fw-cfg``, ``--smbios``, ``--boot-menu``,
    ``--kernel-loading``, ``--secure-boot-vars``,
    ``--edk2``, ``--stub-measures`` (:func:`cvmlaunch.cli._tdx_rtmr.guest_of` maps them)."""
    return options(
        click.option(
            "--kernel",
            type=FILE,
            metavar="FILE",
            help="EFI-stub bzImage given to QEMU's -kernel: predict RTMR0-2 too (docs/tdx-rtmr.md)",
        ),
        click.option("--initrd", type=FILE, metavar="FILE", help="initrd (-initrd)"),
        click.option(
            "--append", metavar="TEXT", help="kernel command line (-append)  [default: empty]"
        ),
        click.option(
            "-m", "--memory", metavar="SIZE", help="guest RAM as QEMU's -m takes it: 4G, 4096 (MiB)"
        ),
        click.option(
            "--acpi",
            type=DirPath(),
            metavar="DIR",
            help="QEMU's ACPI fw_cfg files etc/table-loader, etc/acpi/rsdp, etc/acpi/tables "
            "(a copy of a TD's /sys/firmware/qemu_fw_cfg/by_name works as it is); without it "
            "or --fw-cfg RTMR0 is not predicted",
        ),
        click.option(
            "--fw-cfg",
            type=DirPath(),
            metavar="DIR",
            help="every fw_cfg file QEMU serves: a copy of a TD's /sys/firmware/qemu_fw_cfg/"
            "by_name (a file absent here was not served); gives the ACPI tables and the items "
            "edk2 >= 2025.05 firmware measures (bootorder, …)",
        ),
        click.option(
            "--smbios",
            type=FILE,
            metavar="PATH",
            help="the SMBIOS table the firmware publishes (edk2 >= 2025.05 firmware measures "
            "it): a copy of a TD's /sys/firmware/dmi/tables (DMI and smbios_entry_point), or "
            "its DMI file alone",
        ),
        click.option(
            "--boot-menu",
            is_flag=True,
            help="QEMU runs with -boot menu=on (the BootMenu fw_cfg item edk2 >= 2025.05 "
            "measures) [default: off]",
        ),
        click.option(
            "--kernel-loading",
            type=Completing(["patched", "raw"]),
            metavar="patched|raw",
            help="how OVMF gets the kernel: QEMU < 10.2 header-patched, or the file as given "
            "[default: raw for edk2 >= 2025.02 firmware, else required]",
        ),
        click.option(
            "--secure-boot-vars",
            type=DirPath(),
            metavar="DIR",
            help="PK, KEK, db, dbx, SecureBoot variable data (files, or efivarfs NAME-GUID) "
            "[default: the firmware's own varstore]",
        ),
        click.option(
            "--edk2",
            metavar="YYYY.MM",
            help="the edk2 release of the firmware, where the image cannot tell (the RTMR event "
            "set changed in 2024.11, 2025.02, 2025.05, 2025.08; from 2025.11 a kernel Secure "
            "Boot rejects does not boot)",
        ),
        click.option(
            "--stub-measures",
            type=Completing(["auto", "yes", "no"]),
            metavar="auto|yes|no",
            default="auto",
            show_default=True,
            help="whether the kernel's EFI stub measures the command line and initrd into RTMR2 "
            "(auto: from the kernel)",
        ),
    )


def json_option(help: str = "print the result as JSON") -> Callable[[F], F]:
    """``--json`` (the parameter ``as_json``): JSON output instead of text."""
    return click.option("--json", "as_json", is_flag=True, help=help)


def log_input_options() -> Callable[[F], F]:
    """The inputs ``log verify`` checks a log against, besides the firmware: ``--svsm``,
    ``--kernel``, ``--initrd``, ``--append``, ``--acpi``, ``--fw-cfg``, ``--smbios``,
    ``--secure-boot-vars``, and ``--inputs`` directories where
    they are found by their SHA-256."""
    return options(
        click.option("--svsm", type=FILE, metavar="FILE", help="the SVSM image of an snp:svsm log"),
        click.option("--kernel", type=FILE, metavar="FILE", help="the kernel"),
        click.option("--initrd", type=FILE, metavar="FILE", help="the initrd"),
        click.option("--append", metavar="CMDLINE", help="the kernel command line"),
        click.option(
            "--acpi",
            type=DirPath(),
            metavar="DIR",
            help="the ACPI fw_cfg blobs of a TDX log with RTMR events (as measure tdx --acpi "
            "takes them)",
        ),
        click.option(
            "--fw-cfg",
            type=DirPath(),
            metavar="DIR",
            help="the fw_cfg files of a TDX log with RTMR events (as measure tdx --fw-cfg "
            "takes them)",
        ),
        click.option(
            "--smbios",
            type=FILE,
            metavar="PATH",
            help="the SMBIOS table of a TDX log with RTMR events (as measure tdx --smbios "
            "takes it)",
        ),
        click.option(
            "--secure-boot-vars",
            type=DirPath(),
            metavar="DIR",
            help="the Secure Boot variables of a TDX log measured with --secure-boot-vars "
            "(as measure tdx takes them)",
        ),
        click.option(
            "--inputs",
            "inputs",
            type=DirPath(),
            metavar="DIR",
            multiple=True,
            help="a directory where the log's inputs are found by their SHA-256 (repeatable)",
        ),
    )


def id_block_field_options() -> Callable[[F], F]:
    """The fields of an SNP ID block a signer chooses: ``--policy``, ``--family-id``,
    ``--image-id``, ``--version`` (the parameter ``block_version``), ``--svn``
    (:func:`cvmlaunch.measure.id_sign.sign_launch`)."""
    return options(
        click.option(
            "--policy",
            metavar="HEX",
            help="SNP guest policy; must equal the launch policy "
            "[default: the log's, else 0x30000]",
        ),
        click.option(
            "--family-id",
            default="00" * 16,
            metavar="HEX",
            help="FAMILY_ID (16 bytes) [default: zero]",
        ),
        click.option(
            "--image-id",
            default="00" * 16,
            metavar="HEX",
            help="IMAGE_ID (16 bytes) [default: zero]",
        ),
        click.option(
            "--version",
            "block_version",
            type=int,
            default=1,
            metavar="INT",
            help="ID block VERSION (the ABI defines only 1) [default: 1]",
        ),
        click.option(
            "--svn", type=U32, default=0, metavar="INT", help="GUEST_SVN (u32) [default: 0]"
        ),
    )
