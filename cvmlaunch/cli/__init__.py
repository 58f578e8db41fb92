"""The ``cvmlaunch`` command.

Rule 1: the CLI only composes: it reads files (through :mod:`cvmlaunch.files`), calls the
library, formats and prints. No parsing, layout or measurement logic lives here.

Rule 2: exit codes: 0 success; 1 the tool ran but a check failed (``--expect`` mismatch, a
guest report that disagrees with the log); 2 bad input or an unusable host. Every
:class:`~cvmlaunch.errors.CvmLaunchError` prints one line ``cvmlaunch: error: ...`` on stderr;
``--debug`` shows the traceback instead.

Each command lives in its own module here and is registered in :func:`_register`.
"""

from __future__ import annotations

from typing import Any

import click

from cvmlaunch.cli._lazy import LazyGroup
from cvmlaunch.errors import CvmLaunchError

__all__ = ["main"]

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class _Group(LazyGroup):
    """Maps CvmLaunchError to one line on stderr and its exit code (traceback with --debug)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CvmLaunchError as exc:
            if ctx.meta.get("cvmlaunch.debug"):
                raise
            click.echo(f"cvmlaunch: error: {exc}", err=True)
            ctx.exit(exc.exit_code)


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """``--version``: looked up only when asked (importlib.metadata is slow to import)."""
    if not value or ctx.resilient_parsing:
        return
    from cvmlaunch import __version__

    click.echo(f"cvmlaunch, version {__version__}")
    ctx.exit()


@click.group(cls=_Group, context_settings=CONTEXT_SETTINGS)
@click.option(
    "-V",
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show the version and exit.",
)
@click.option("--debug", is_flag=True, help="Show a traceback on errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Launch confidential VMs on KVM and predict their launch measurements."""
    ctx.meta["cvmlaunch.debug"] = debug


def _register() -> None:
    """Register every command. Commands are imported on first use (start-up time)."""
    from cvmlaunch.cli import _measure

    cli.add_lazy("inspect", "cvmlaunch.cli._inspect:inspect_cmd")
    cli.add_lazy("kvm", "cvmlaunch.cli._kvm:kvm_group")
    cli.add_lazy("launch", "cvmlaunch.cli._launch:launch_cmd")
    cli.add_command(_measure.measure_group)
    _measure.measure_group.add_lazy("snp", "cvmlaunch.cli._measure_snp:measure_snp_cmd")
    _measure.measure_group.add_lazy("tdx", "cvmlaunch.cli._measure_tdx:measure_tdx_cmd")
    cli.add_lazy("log", "cvmlaunch.cli._log:log_group")
    cli.add_lazy("id-block", "cvmlaunch.cli._identity:id_block_group")
    cli.add_lazy("reference-values", "cvmlaunch.cli._reference:reference_values_cmd")


_register()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv, prog_name="cvmlaunch", standalone_mode=True)


if __name__ == "__main__":  # pragma: no cover
    main()
