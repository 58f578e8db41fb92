"""``cvmlaunch launch``: boot a PVH guest on KVM and check its own digests against the log.

Rule 1: the command maps its inputs (flags or a TOML file through
:func:`~cvmlaunch.launch_settings.settings_from_toml`; files through :mod:`cvmlaunch.files`), calls
one launcher function (:func:`cvmlaunch.launcher.launch_pvh`; ``--tech snp|tdx``:
:func:`cvmlaunch.cli._cc_launch.launch_confidential`) and renders: the guest's serial output
on stdout; the log line, notes and the progress bar on stderr. A dry run prints the plan
(:mod:`cvmlaunch.cli._launch_text`).
"""

from __future__ import annotations

import dataclasses
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import click

from cvmlaunch.cli._params import FILE
from cvmlaunch.errors import ConfigError, ImageError
from cvmlaunch.files import read_small
from cvmlaunch.launch_settings import (
    LaunchSettings,
    file_settings,
    settings_from_toml,
    spelled_as_in_file,
)
from cvmlaunch.outputs import Output, check_outputs, write_output
from cvmlaunch.technology import Technology
from cvmlaunch.text import printable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cvmlaunch.measure.log import MeasurementLog

__all__ = ["LAUNCH", "example_config", "launch"]


def example_config() -> Path:
    """The bundled example's TOML (cvmlaunch/data/example.toml)."""
    return Path(str(resources.files("cvmlaunch") / "data" / "example.toml"))


def _relay(data: bytes) -> None:
    """The guest's serial output, to stdout as it comes."""
    sys.stdout.write(data.decode("ascii", "replace"))
    sys.stdout.flush()


def _read_config(path: str) -> str:
    """The text of a TOML settings file.

    Raises:
        ImageError: it cannot be read (or is a directory) or is not UTF-8 text.
    """
    data = read_small(path, "settings file")
    try:
        return data.decode()
    except UnicodeDecodeError as exc:
        raise ImageError(f"not UTF-8 text (byte {exc.start})", source=path) from None


def _inputs(settings: LaunchSettings, config: str | None) -> list[str]:
    """Every file the launch reads: ``--log`` may be none of them."""
    paths = [config, settings.kernel, settings.initrd, settings.firmware]
    return [p for p in (*paths, settings.id_block, settings.id_auth) if p]


def launch(
    *,
    config: str | None,
    example: bool,
    dry_run: bool,
    log_file: str | None,
    overrides: dict[str, Any],
) -> None:
    """Run ``launch`` (see :data:`LAUNCH`): settings from ``config`` or the bundled example,
    then ``overrides`` (the flags by :class:`~cvmlaunch.launch_settings.LaunchSettings` field name,
    None = not given).

    Raises:
        CvmLaunchError: bad settings or inputs, an unusable host, a guest that fails
            (exit 2), or guest digests that differ from the log (exit 1).
    """
    unknown = set(overrides) - {f.name for f in dataclasses.fields(LaunchSettings)}
    if unknown:  # pragma: no cover - a flag without a setting is a bug of this module
        raise TypeError(f"launch: unknown settings {sorted(unknown)}")
    if example and config is not None:
        raise ConfigError("give --example or --config, not both")
    if log_file == "-":
        raise ConfigError(
            "--log -: standard output carries the guest's serial output; give --log a file"
        )
    source = str(example_config()) if example else config
    text = _read_config(source) if source is not None else ""
    base = str(Path(source).parent) if source is not None else "."
    settings = settings_from_toml(
        text, base=base, source="flags" if source is None else source, overrides=overrides
    )
    from_file = file_settings(text, overrides) if source is not None else frozenset()
    try:
        _launch(settings, source, dry_run=dry_run, log_file=log_file)
    except ConfigError as exc:  # a setting the launcher checks later, named where it was given
        spelled = spelled_as_in_file(exc, from_file, source or "flags")
        if spelled is exc:
            raise
        raise spelled from exc


def _launch(
    settings: LaunchSettings, source: str | None, *, dry_run: bool, log_file: str | None
) -> None:
    """:func:`launch` once the settings are read."""
    read = _inputs(settings, source)
    if log_file is not None:  # refused before the guest runs: the log is written after
        check_outputs([Output(log_file, b"", what="the launch log")], inputs=read)
    if settings.tech is not Technology.PLAIN:
        from cvmlaunch.cli._cc_launch import launch_confidential

        if not dry_run:
            from cvmlaunch.launcher import check_host

            check_host(settings.tech, settings.memory_backend)
        launch_confidential(settings, dry_run=dry_run, log_file=log_file, protect=tuple(read))
        return
    from cvmlaunch import launcher

    if dry_run:
        from cvmlaunch.cli._launch_text import describe_launch

        with launcher.load_pvh_launch(settings) as launch:
            for line in describe_launch(launch):
                print(printable(line))  # names and the command line come from inputs
        return

    def write_log(log: MeasurementLog, text: str) -> None:
        if log_file is not None:
            write_output(log_file, text, what="the launch log", inputs=read)
        where = f" written to {log_file}" if log_file is not None else ""
        print(
            f"cvmlaunch: launch log{where}: {len(log.entries)} records, "
            f"{log.header.technology.value} digest {log.digest.hex()}",
            file=sys.stderr,
        )

    from cvmlaunch.cli._progress import LazyProgress

    result = launcher.launch_pvh(
        settings,
        on_serial=_relay,
        on_log=write_log,
        on_note=lambda note: print(f"cvmlaunch: note: {note}", file=sys.stderr),
        progress=LazyProgress,
    )
    print(
        f"cvmlaunch: guest digests match the launch log for all {result.checked} ranges",
        file=sys.stderr,
    )


_HELP = """Boot a PVH guest, or an SEV-SNP / TDX guest's firmware, on KVM.

--tech none (default): the guest (e.g. the bundled example, --example) hashes every range
the launcher placed in its memory and reports the digests on its serial port, which is
relayed to stdout; exit 0 only if they match the log. --tech snp|tdx --firmware OVMF: a
confidential launch of the firmware (--kernel/--initrd/--append are served to it over
fw_cfg; SNP measures them in its kernel-hashes page), whose launch digest or MRTD is printed
on stderr and equals what measure snp|tdx predicts (--dry-run
prints the plan and that prediction without a host). --log FILE writes the whole log."""


@click.command("launch", help=_HELP, short_help=_HELP.splitlines()[0])
@click.option(
    "--config",
    type=FILE,
    metavar="FILE",
    help="TOML file with the settings below (QEMU-like names); flags override it",
)
@click.option("--example", is_flag=True, help="launch the bundled example guest")
@click.option("-m", "--memory", metavar="SIZE", help="guest RAM: 512M, 5G, or MiB [default: 512M]")
@click.option(
    "--vcpus", "--smp", "vcpus", type=int, metavar="N", help="number of vCPUs [default: 1]"
)
@click.option(
    "--firmware",
    "--bios",
    "firmware",
    type=FILE,
    metavar="FILE",
    help="firmware image (mapped to end at 4 GiB)",
)
@click.option("--kernel", type=FILE, metavar="FILE", help="PVH ELF kernel")
@click.option("--initrd", type=FILE, metavar="FILE", help="initial ramdisk")
@click.option("--append", metavar="CMDLINE", help="kernel command line")
@click.option(
    "--tech",
    type=click.Choice(["none", "snp", "tdx"]),
    help="confidential computing technology (none: a plain VM) [default: none]",
)
@click.option(
    "--timeout", type=float, metavar="SECONDS", help="seconds the guest may run [default: 60]"
)
@click.option(
    "--memory-backend",
    type=click.Choice(["auto", "guest-memfd", "anonymous"]),
    help="guest memory of a plain VM: guest_memfd, or anonymous memory where the host "
    "offers no guest_memfd with mmap (auto; SNP/TDX: guest-memfd only) [default: auto]",
)
@click.option(
    "--log",
    "log_file",
    type=FILE,
    metavar="FILE",
    help="write the launch measurement log (JSON Lines, docs/log-format.md) to FILE, "
    "atomically, once the guest has halted",
)
@click.option("--policy", metavar="HEX", help="SNP guest policy [default: 0x30000, QEMU's]")
@click.option("--host-data", metavar="HEX", help="SNP HOST_DATA, 32 bytes [default: zero]")
@click.option(
    "--id-block",
    type=FILE,
    metavar="FILE",
    help="SNP ID block (96 bytes, raw or base64; with --id-auth), checked before launch",
)
@click.option("--id-auth", type=FILE, metavar="FILE", help="SNP ID auth (4096 bytes)")
@click.option("--mrconfigid", metavar="HEX", help="TDX MRCONFIGID, 48 bytes [default: zero]")
@click.option("--mrowner", metavar="HEX", help="TDX MROWNER, 48 bytes [default: zero]")
@click.option("--mrownerconfig", metavar="HEX", help="TDX MROWNERCONFIG, 48 bytes [default: zero]")
@click.option(
    "--vcpu-type",
    metavar="NAME",
    help="SNP dry run: QEMU CPU model whose signature the VMSAs carry (as measure snp); a "
    "real launch takes the host's",
)
@click.option("--vcpu-sig", metavar="INT", help="SNP dry run: vCPU signature (CPUID 1 EAX)")
@click.option(
    "--guest-features", metavar="INT", help="SNP SEV_FEATURES of the VMSAs [default: 0x1]"
)
@click.option(
    "--td-attributes",
    metavar="HEX",
    help="TDX TD attributes [default: QEMU's, SEPT_VE_DISABLE (0x10000000)]",
)
@click.option(
    "--xfam", metavar="HEX", help="TDX XFAM [default: QEMU's, the CPU's XCR0|XSS the host supports]"
)
@click.option("--dry-run", is_flag=True, help="print the plan and prediction; do not run")
def LAUNCH(  # noqa: N802
    config: str | None, example: bool, dry_run: bool, log_file: str | None, **given: Any
) -> None:
    launch(config=config, example=example, dry_run=dry_run, log_file=log_file, overrides=given)
