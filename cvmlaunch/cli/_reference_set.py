"""``cvmlaunch reference-values``: a launch log's values (``reference-values LOG``), or a set of
them from inputs and ranges (``reference-values snp …``, ``reference-values tdx …``).

The group: a first argument that names a subcommand (``snp``, ``tdx``) or asks for help runs
the group; anything else is the LOG form (a log file literally called ``snp`` is ``./snp``):
:class:`cvmlaunch.cli._groups.ReferenceValuesGroup`. The LOG command is imported from
:mod:`cvmlaunch.cli._reference` only when it runs.

No network access is made. The library does the work
(:mod:`cvmlaunch.measure.reference_set`: the ranges, the page orders, the set and its
renderings; :meth:`cvmlaunch.plan.sev_hashes.KernelHashes.for_boot`); this module maps the
files and prints.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import ExitStack

import click

from cvmlaunch.cli._groups import ReferenceValuesGroup
from cvmlaunch.cli._params import (
    ANY_INT,
    FILE,
    Completing,
    direct_boot_options,
    firmware_dir_option,
    resolve_firmware,
    vcpu_type_option,
    vmm_type_option,
)
from cvmlaunch.errors import ConfigError

TYPE_CHECKING = False  # imports for annotations only
if TYPE_CHECKING:
    from cvmlaunch.layout import Buffer

__all__ = [
    "REFERENCE_VALUES",
    "REFERENCE_VALUES_SNP",
    "REFERENCE_VALUES_TDX",
    "ReferenceValuesGroup",
]

#: The ``reference-values LOG`` command (``module:attribute``), imported when it runs.
LOG_COMMAND = "cvmlaunch.cli._reference:REFERENCE_VALUES"
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
@vcpu_type_option(
    "vcpu_types",
    multiple=True,
    required=True,
    metavar="NAME[,NAME...]",
    help="QEMU CPU models (repeat or comma-separate)",
)
@direct_boot_options(file_metavar=None)
@vmm_type_option("VMM whose vCPU state and page types to follow [default: QEMU]")
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
