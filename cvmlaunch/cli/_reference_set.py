"""``cvmlaunch reference-values``: a launch log's values (``reference-values LOG``), or a set of
them from inputs and ranges (``reference-values snp …``, ``reference-values tdx …``).

The group: a first argument that names a subcommand (``snp``, ``tdx``) or asks for help runs
the group; anything else is the LOG form (a log file literally called ``snp`` is ``./snp``).
The LOG command is imported from :mod:`cvmlaunch.cli._reference` only when it runs.

No network access is made. The library does the work
(:mod:`cvmlaunch.measure.reference_set`: the ranges, the page orders, the set and its
renderings; :meth:`cvmlaunch.plan.sev_hashes.KernelHashes.for_boot`); this module maps the
files and prints.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from contextlib import ExitStack
from typing import Any

import click

from cvmlaunch.cli._params import (
    ANY_INT,
    FILE,
    Completing,
    firmware_dir_option,
    resolve_firmware,
)
from cvmlaunch.errors import ConfigError
from cvmlaunch.vcpu_signature import VCPU_TYPES

TYPE_CHECKING = False  # imports for annotations only
if TYPE_CHECKING:
    from cvmlaunch.layout import Buffer

__all__ = ["REFERENCE_VALUES", "REFERENCE_VALUES_SNP", "REFERENCE_VALUES_TDX"]

#: The ``reference-values LOG`` command (``module:attribute``), imported when it runs.
LOG_COMMAND = "cvmlaunch.cli._reference:REFERENCE_VALUES"
#: Where the group keeps the arguments of the LOG form between parsing and invoking.
_LOG_FORM = "cvmlaunch.reference-values.log-form"
_FORMATS = ("json", "trustee", "snpguest", "go-sev-guest", "go-tdx-guest")
_FORMAT_HELP = (
    "json (our set document, which `report check --reference-values` reads), Trustee RVPS "
    "names, snpguest options, or a go-sev-guest / go-tdx-guest check.Config textproto "
    "[default: json]"
)


def _split(values: Sequence[str]) -> list[str]:
    """Repeated and comma-separated values, in order, without repeats."""
    out = [v.strip() for value in values for v in value.split(",") if v.strip()]
    return list(dict.fromkeys(out))


def _map_firmwares(
    stack: ExitStack, paths: Sequence[str], firmware_dir: str | None
) -> list[tuple[str, Buffer]]:
    """Each firmware (found in ``firmware_dir`` when relative and not here), mapped until
    ``stack`` closes, by its base name."""
    from cvmlaunch.files import map_file

    found = (resolve_firmware(p, firmware_dir) for p in paths)
    return [(os.path.basename(path), stack.enter_context(map_file(path))) for path in found]


@click.command(
    "snp",
    short_help="The SEV-SNP launch digest of every firmware x vCPU type x vCPU count.",
    help="""The SEV-SNP launch digest of every configuration: each --ovmf, each --vcpu-type,
each vCPU count of --vcpus (ranges like 1-16,32,64). The firmware pages, metadata sections and
kernel hashes are folded once per firmware; only the VMSAs differ per vCPU type and count, so
a set of hundreds costs about one `measure snp`. Each digest equals what
`cvmlaunch measure snp --mode snp` prints for that configuration.

Configurations are listed firmware by firmware (as given), vCPU type by type (as given), vCPU
counts ascending. No network access is made.""",
)
@click.option(
    "--ovmf",
    "--firmware",
    "ovmf",
    multiple=True,
    required=True,
    type=FILE,
    help="OVMF build (repeat for several)",
)
@firmware_dir_option()
@click.option("--vcpus", required=True, metavar="RANGES", help="vCPU counts, e.g. 1-16,32,64")
@click.option(
    "--vcpu-type",
    "vcpu_types",
    multiple=True,
    required=True,
    type=Completing(list(VCPU_TYPES)),
    metavar="NAME[,NAME...]",
    help="QEMU CPU models (repeat or comma-separate)",
)
@click.option("--kernel", type=FILE, help="kernel (measured direct boot)")
@click.option("--initrd", type=FILE, help="initrd (with --kernel)")
@click.option("--append", metavar="CMDLINE", help="kernel command line (with --kernel)")
@click.option(
    "--vmm-type",
    type=click.Choice(["QEMU", "ec2", "gce"]),
    default="QEMU",
    help="VMM whose vCPU state and page types to follow [default: QEMU]",
)
@click.option(
    "--guest-features",
    type=ANY_INT,
    default=1,
    metavar="INT",
    help="SEV_FEATURES of the VMSAs [default: 0x1]",
)
@click.option("--policy", metavar="HEX", help="the guest policy every launch uses (recorded)")
@click.option("--format", "fmt", type=click.Choice(_FORMATS), default="json", help=_FORMAT_HELP)
def REFERENCE_VALUES_SNP(  # noqa: N802
    ovmf: tuple[str, ...],
    firmware_dir: str | None,
    vcpus: str,
    vcpu_types: tuple[str, ...],
    kernel: str | None,
    initrd: str | None,
    append: str | None,
    vmm_type: str,
    guest_features: int,
    policy: str | None,
    fmt: str,
) -> None:
    """Run ``reference-values snp``."""
    from cvmlaunch.files import file_digest
    from cvmlaunch.measure.identity import GuestPolicy
    from cvmlaunch.measure.reference_set import parse_vcpu_ranges, snp_reference_set
    from cvmlaunch.plan.sev_hashes import KernelHashes
    from cvmlaunch.plan.vmsa import VmmType

    if (initrd is not None or append is not None) and kernel is None:
        raise ConfigError("--initrd and --append need --kernel")
    counts = parse_vcpu_ranges(vcpus)
    hashes = None
    if kernel is not None:
        hashes = KernelHashes.for_boot(
            file_digest(kernel), None if initrd is None else file_digest(initrd), append
        )
    with ExitStack() as stack:
        result = snp_reference_set(
            _map_firmwares(stack, ovmf, firmware_dir),
            vcpus=counts,
            vcpu_types=_split(vcpu_types),
            vmm=VmmType(vmm_type),
            guest_features=guest_features,
            kernel_hashes=hashes,
            policy=None if policy is None else GuestPolicy.parse(policy),
        )
    click.echo(result.render(fmt))


@click.command(
    "tdx",
    short_help="The TDX MRTD of every firmware build x page order.",
    help="""The TDX MRTD of every configuration: each --firmware (a TDVF build, as QEMU's
-bios loads it), each --order (per-page: Linux >= 6.16 with QEMU >= 10.1; two-pass: KVM TDX
v19 / QEMU 8.x stacks). Both orders by default, for fleets mid-upgrade. No network access is
made.""",
)
@click.option(
    "--firmware",
    "--ovmf",
    "firmware",
    multiple=True,
    required=True,
    type=FILE,
    help="TDVF build (repeat for several)",
)
@firmware_dir_option()
@click.option(
    "--order",
    "orders",
    multiple=True,
    type=Completing(["per-page", "two-pass"]),
    metavar="ORDER[,ORDER]",
    help="page orders: per-page, two-pass [default: both]",
)
@click.option("--format", "fmt", type=click.Choice(_FORMATS), default="json", help=_FORMAT_HELP)
def REFERENCE_VALUES_TDX(  # noqa: N802
    firmware: tuple[str, ...], firmware_dir: str | None, orders: tuple[str, ...], fmt: str
) -> None:
    """Run ``reference-values tdx``."""
    from cvmlaunch.measure.reference_set import parse_page_orders, tdx_reference_set

    chosen = parse_page_orders(_split(orders))
    with ExitStack() as stack:
        result = tdx_reference_set(_map_firmwares(stack, firmware, firmware_dir), orders=chosen)
    click.echo(result.render(fmt))


class ReferenceValuesGroup(click.Group):
    """A group whose subcommands run as usual, and whose other first arguments run the
    command ``log_command`` (``module:attribute``, imported then) as if it were the group:
    ``cvmlaunch reference-values LOG [--format F]`` keeps its usage line and errors."""

    def __init__(self, *args: Any, log_command: str, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.log_command = log_command

    def _log_form(self) -> click.Command:
        module, _, attribute = self.log_command.partition(":")
        command: Any = getattr(importlib.import_module(module), attribute)
        if not isinstance(command, click.Command):  # pragma: no cover - registry error
            raise TypeError(f"{self.log_command} is not a click command")
        return command

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            ctx.meta[_LOG_FORM] = list(args)
            return []
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        args = ctx.meta.pop(_LOG_FORM, None)
        if args is None:
            return super().invoke(ctx)
        command = self._log_form()
        with command.make_context(ctx.info_name, args, parent=ctx.parent) as sub:
            return command.invoke(sub)


REFERENCE_VALUES = ReferenceValuesGroup(
    "reference-values",
    commands=[REFERENCE_VALUES_SNP, REFERENCE_VALUES_TDX],
    short_help="Print what a verifier compares: for the launch LOG describes, or a whole set.",
    help="""Print what a verifier compares.

\b
cvmlaunch reference-values LOG [--format F] [--signed-by PUBKEY]
                                              the values of one launch log
cvmlaunch reference-values snp ...            SEV-SNP digests of firmware x vCPU types x counts
cvmlaunch reference-values tdx ...            TDX MRTDs of firmware builds x page orders

Each form's options: cvmlaunch reference-values LOG|snp|tdx --help.

Formats: json, trustee, snpguest, go-sev-guest (check.Config textproto: it carries
minimum_guest_svn), go-tdx-guest (check.Config textproto: any_mr_td holds a set). No network
access is made.""",
    no_args_is_help=True,
    log_command=LOG_COMMAND,
)
