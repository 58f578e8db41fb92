"""The ``cvmlaunch`` command: a click command tree whose commands are imported when used.

Rule 1: the CLI only composes: it reads files (through :mod:`cvmlaunch.files`), calls the
library, formats and prints. No parsing, planning or measurement logic lives here.

Rule 2: exit codes: 0 success; 1 the tool ran but a check failed (``--expect`` mismatch, a
guest report that disagrees with the log: :class:`~cvmlaunch.errors.CheckFailed`); 2 bad
input or an unusable host, click's usage errors included. Every error prints one line
``cvmlaunch: error: ...`` on stderr; ``--debug`` (or ``CVMLAUNCH_DEBUG=1``) prints the
traceback first and exits with the same code. A :class:`~cvmlaunch.errors.ConfigError`
names its setting by the command's flag (:func:`flag_for`: ``vcpus`` is ``--vcpus``).
Ctrl-C prints ``cvmlaunch: interrupted`` and exits 130; a reader that closes the pipe early
(``cvmlaunch log show LOG | head``) ends the command quietly with exit 1.
:meth:`CvmLaunchGroup.main` is where all of this happens (:mod:`cvmlaunch.cli._exit`, loaded
when a run fails, prints the line and decides the code).

Rule 3: commands are imported only when they run (or their help is shown), so that
``cvmlaunch measure snp`` loads neither the launcher, cryptography nor pyelftools. Every
command is one line of :data:`COMMANDS`, the registry:

* a command: ``"name": "module:attribute"``, where ``attribute`` is a :class:`click.Command`
  (or :class:`click.Group`) object defined by ``module``, conventionally
  ``cvmlaunch.cli._<name>``. The module imports click and, inside its functions, the
  library; it raises :class:`~cvmlaunch.errors.CvmLaunchError` subclasses for bad input.
* a group of commands: ``"name": ("one-line help", {sub-registry})``; the group itself is
  made here, its commands are imported like the top-level ones.

To add ``cvmlaunch report``, write ``cvmlaunch/cli/_report.py`` defining ``REPORT`` and add
``"report": "cvmlaunch.cli._report:REPORT"``; for ``cvmlaunch log sign``, add
``"sign": "cvmlaunch.cli._log_sign:SIGN"`` to the ``log`` group's registry.
:class:`LazyGroup` does the rest: it lists the names, and imports ``module:attribute`` only
in :meth:`LazyGroup.get_command`. Tests (tests/test_startup.py) check what a run imports.

Shell completion is click's: ``eval "$(_CVMLAUNCH_COMPLETE=bash_source cvmlaunch)"`` (or
``zsh_source``, ``fish_source``).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

import click

from cvmlaunch.errors import CvmLaunchError

__all__ = [
    "CLI",
    "COMMANDS",
    "CONTEXT_SETTINGS",
    "SETTING_FLAGS",
    "CvmLaunchGroup",
    "LazyGroup",
    "flag_for",
    "main",
]

#: A registry: command names to ``"module:attribute"``, or to a group's help and registry.
Registry = Mapping[str, "str | tuple[str, Registry]"]

#: Every command, by name (``--help`` lists them alphabetically).
COMMANDS: Registry = {
    "id-block": (
        "Build, sign and check SEV-SNP ID blocks (launch-time identity and enforcement).",
        {
            "snp": "cvmlaunch.cli._identity:ID_BLOCK_SNP",
            "verify": "cvmlaunch.cli._id_block_verify:ID_BLOCK_VERIFY",
        },
    ),
    "inspect": "cvmlaunch.cli._inspect:INSPECT",
    "kvm": (
        "Inspect this host's KVM.",
        {
            "caps": "cvmlaunch.cli._kvm:CAPS",
        },
    ),
    "launch": "cvmlaunch.cli._launch:LAUNCH",
    "log": (
        "Verify, sign, compare and show launch measurement logs.",
        {
            "diff": "cvmlaunch.cli._log:DIFF",
            "show": "cvmlaunch.cli._log:SHOW",
            "sign": "cvmlaunch.cli._log_sign:SIGN",
            "verify": "cvmlaunch.cli._log:VERIFY",
        },
    ),
    "measure": (
        "Predict a launch measurement offline (SNP launch digest, TDX MRTD).",
        {
            "snp": "cvmlaunch.cli._measure_snp:MEASURE_SNP",
            "tdx": "cvmlaunch.cli._measure_tdx:MEASURE_TDX",
        },
    ),
    "reference-values": "cvmlaunch.cli._reference_set:REFERENCE_VALUES",
    "report": "cvmlaunch.cli._report:REPORT",
}

#: Settings every command shares (command modules pass them to ``click.command``).
CONTEXT_SETTINGS: dict[str, Any] = {
    "help_option_names": ["-h", "--help"],
    "max_content_width": 100,
}

DESCRIPTION = "Launch confidential VMs on KVM and predict their launch measurements."

#: The environment variable click's shell completion reads (``_{PROG}_COMPLETE``).
COMPLETE_VAR = "_CVMLAUNCH_COMPLETE"


def load_command(target: str) -> click.Command:
    """Import the command named by ``"module:attribute"``."""
    module_name, _, attribute = target.partition(":")
    command = getattr(importlib.import_module(module_name), attribute)
    if not isinstance(command, click.Command):  # pragma: no cover - checked by the tests
        raise TypeError(f"{target} is not a click.Command")
    return command


#: Library settings (:attr:`~cvmlaunch.errors.ConfigError.setting`) whose flag is not a
#: parameter of that name; any other setting is the command's option of that name, else ``--``
#: and its name with dashes.
SETTING_FLAGS: Mapping[str, str] = {"ovmf_hash": "--snp-ovmf-hash", "cmdline": "--append"}

#: Where :meth:`LazyGroup.resolve_command` leaves the command being run (``ctx.meta`` is
#: shared by a context and its children).
_RUNNING = "cvmlaunch.command"


def flag_for(command: click.Command | None, setting: str) -> str:
    """How the CLI spells the library setting ``setting`` when ``command`` runs: the long
    flag of its option named ``setting``, else :data:`SETTING_FLAGS`, else ``--setting``
    with dashes (``host_data`` is ``--host-data``)."""
    for param in command.params if command is not None else ():
        if param.name == setting and isinstance(param, click.Option):
            longs = [opt for opt in param.opts if opt.startswith("--")]
            if longs:
                return longs[0]
    return SETTING_FLAGS.get(setting, "--" + setting.replace("_", "-"))


class LazyGroup(click.Group):
    """A :class:`click.Group` whose commands are a :data:`Registry`: listed by name, imported
    (or, for a nested group, made) on first :meth:`get_command`."""

    def __init__(self, name: str | None = None, *, lazy: Registry, **kwargs: Any) -> None:
        kwargs.setdefault("context_settings", CONTEXT_SETTINGS)
        kwargs.setdefault("no_args_is_help", False)  # a missing command is a usage error
        super().__init__(name, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = self.lazy.get(cmd_name)
        if entry is not None and cmd_name not in self.commands:
            if isinstance(entry, str):
                command = load_command(entry)
            else:
                summary, registry = entry
                command = LazyGroup(cmd_name, lazy=registry, help=summary, short_help=summary)
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        ctx.meta[_RUNNING] = command  # the innermost wins: the command whose flags these are
        return name, command, rest


class CvmLaunchGroup(LazyGroup):
    """The root command: its :meth:`main` maps errors to one line and an exit code."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> NoReturn:
        """Run the command line ``args`` (default: ``sys.argv[1:]``) and exit.

        Unlike click's :meth:`click.Command.main`, which this replaces, errors end in one
        ``cvmlaunch: error:`` line (click's usage errors too), Ctrl-C in one line and exit
        130 (not ``Aborted!``), and ``--debug`` prints the traceback before that line.
        ``standalone_mode`` is accepted for click's test runner and ignored: this always exits.
        """
        argv = list(sys.argv[1:] if args is None else args)
        prog = prog_name or "cvmlaunch"
        var = complete_var or COMPLETE_VAR
        instruction = os.environ.get(var)
        if instruction:
            from click.shell_completion import shell_complete

            sys.exit(shell_complete(self, extra, prog, var, instruction))
        debug = False
        ctx: click.Context | None = None
        if sys.stdout is None:  # started with stdout closed (`cvmlaunch ... >&-`)
            from cvmlaunch.cli import _exit

            _exit.error("standard output is closed")
            sys.exit(2)
        try:
            try:
                with self.make_context(prog, argv, **extra) as ctx:
                    debug = bool(ctx.params.get("debug"))
                    self.invoke(ctx)
                code = 0
            except click.exceptions.Exit as done:  # --help, --version
                code = done.exit_code
            except (click.ClickException, CvmLaunchError) as exc:
                from cvmlaunch.cli import _exit

                command = ctx.meta.get(_RUNNING) if ctx is not None else None
                code = _exit.failed(exc, command, debug)
            sys.stdout.flush()  # inside the try: a closed pipe shows here, not at exit
        except BrokenPipeError:
            from cvmlaunch.cli import _exit

            code = _exit.pipe_closed()
        except OSError as exc:
            from cvmlaunch.cli import _exit

            failed = _exit.output_failed(exc, debug)
            if failed is None:
                raise  # not ours to explain: a bug, with its traceback
            code = failed
        except KeyboardInterrupt:  # Ctrl-C: one line, the shell's code for SIGINT
            print("cvmlaunch: interrupted", file=sys.stderr)
            code = 130
        sys.exit(code)


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """``--version``: looked up only when asked."""
    if not value or ctx.resilient_parsing:
        return
    from cvmlaunch import __version__

    click.echo(f"cvmlaunch, version {__version__}")
    ctx.exit()


@click.group(
    "cvmlaunch",
    cls=CvmLaunchGroup,
    lazy=COMMANDS,
    help=DESCRIPTION,
    context_settings=CONTEXT_SETTINGS,
)
@click.option(
    "-V",
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show the version and exit.",
)
@click.option(
    "--debug",
    is_flag=True,
    envvar="CVMLAUNCH_DEBUG",
    show_envvar=True,
    help="Show the traceback of an error (before its one line).",
)
def CLI(debug: bool) -> None:  # noqa: N802 - the command object, named like the others
    """The root command (its options are handled by :meth:`CvmLaunchGroup.main`)."""


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Console-script entry point (``cvmlaunch``): run ``argv`` and exit."""
    CLI.main(argv, prog_name="cvmlaunch")


if __name__ == "__main__":  # pragma: no cover
    main()
