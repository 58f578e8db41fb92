"""The ``cvmlaunch`` command.

Rule 1: the CLI only composes: it reads files (through :mod:`cvmlaunch.files`), calls the
library, formats and prints. No parsing, layout or measurement logic lives here.

Rule 2: exit codes: 0 success; 1 the tool ran but a check failed (``--expect`` mismatch, a
guest report that disagrees with the log); 2 bad input or an unusable host (usage errors
included). Every :class:`~cvmlaunch.errors.CvmLaunchError` prints one line
``cvmlaunch: error: ...`` on stderr; ``--debug`` shows the traceback instead.

Rule 3: start-up is part of the product (``measure snp`` competes with a 50 ms peer). The
commands are listed in :data:`COMMANDS` by name, summary and import path; only the module of
the command being run is imported, and ``--help`` lists the others from their summaries.
Each command module defines :class:`~cvmlaunch.cli._command.Command` objects.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cvmlaunch.errors import CvmLaunchError

TYPE_CHECKING = False  # typing is not imported at run time (start-up time)
if TYPE_CHECKING:
    from cvmlaunch.cli._command import Command

__all__ = ["COMMANDS", "main"]

#: A command: its one-line summary and ``"module:attribute"`` of its Command.
Leaf = tuple[str, str]
#: A group: its one-line summary and its commands by name.
Group = tuple[str, dict[str, Leaf]]

DESCRIPTION = "Launch confidential VMs on KVM and predict their launch measurements."

#: Every command, by name (alphabetical, as ``--help`` lists them).
COMMANDS: dict[str, Leaf | Group] = {
    "id-block": (
        "Build, sign and check SEV-SNP ID blocks (launch-time identity and enforcement).",
        {
            "snp": (
                "Sign an SNP ID block for a launch digest.",
                "cvmlaunch.cli._identity:ID_BLOCK_SNP",
            ),
            "verify": (
                "Check an ID block / ID auth pair (raw or base64 files) as the firmware will.",
                "cvmlaunch.cli._identity:ID_BLOCK_VERIFY",
            ),
        },
    ),
    "inspect": (
        "Show what the loaders see in FILE: format, sections or segments, entry points.",
        "cvmlaunch.cli._inspect:INSPECT",
    ),
    "kvm": (
        "Inspect this host's KVM.",
        {
            "caps": (
                "Show the VM types, guest_memfd flags and populate calls the host offers.",
                "cvmlaunch.cli._kvm:CAPS",
            ),
        },
    ),
    "launch": (
        "Boot a PVH guest on KVM; exit 0 only if the guest's own digests match the log.",
        "cvmlaunch.cli._launch:LAUNCH",
    ),
    "log": (
        "Verify, compare and show launch measurement logs.",
        {
            "diff": (
                "Name the first place where logs A and B diverge (exit 1), or say they match.",
                "cvmlaunch.cli._log:DIFF",
            ),
            "show": (
                "Print LOG as a table: one line per populated range.",
                "cvmlaunch.cli._log:SHOW",
            ),
            "verify": (
                "Replay LOG and check every running digest and the final one.",
                "cvmlaunch.cli._log:VERIFY",
            ),
        },
    ),
    "measure": (
        "Predict a launch measurement offline (SNP launch digest, TDX MRTD).",
        {
            "snp": (
                "Predict the SEV-SNP launch digest (or SEV / SEV-ES GCTX.LD) of an OVMF guest.",
                "cvmlaunch.cli._measure_snp:MEASURE_SNP",
            ),
            "tdx": (
                "Predict the TDX MRTD of a TD that QEMU launches with TDVF firmware "
                "(-bios FIRMWARE).",
                "cvmlaunch.cli._measure_tdx:MEASURE_TDX",
            ),
        },
    ),
    "reference-values": (
        "Print what a verifier compares for the launch LOG describes.",
        "cvmlaunch.cli._reference:REFERENCE_VALUES",
    ),
}


def load_command(target: str) -> Command:
    """Import the :class:`Command` named by ``"module:attribute"``."""
    import importlib

    from cvmlaunch.cli._command import Command

    module_name, _, attribute = target.partition(":")
    command = getattr(importlib.import_module(module_name), attribute)
    if not isinstance(command, Command):  # pragma: no cover - checked by the tests
        raise TypeError(f"{target} is not a cvmlaunch.cli._command.Command")
    return command


def _selected(argv: Sequence[str]) -> tuple[str, ...]:
    """The command path the arguments name (``("measure", "snp")``), without parsing them.

    Global options take no values, so the first word that is not an option is the command
    and, for a group, the next one is its subcommand. Anything else is left to argparse.
    """
    words = [a for a in argv if not a.startswith("-")]
    if not words or words[0] not in COMMANDS:
        return ()
    _summary, body = COMMANDS[words[0]]
    if isinstance(body, str):
        return (words[0],)
    if len(words) > 1 and words[1] in body:
        return (words[0], words[1])
    return (words[0],)


class _VersionAction(argparse.Action):
    """``--version``: looked up only when asked (importlib.metadata is slow to import)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(
            option_strings,
            argparse.SUPPRESS,
            nargs=0,
            default=argparse.SUPPRESS,
            help="show the version and exit",
        )

    def __call__(self, parser: argparse.ArgumentParser, *_args: object) -> None:
        from cvmlaunch import __version__

        print(f"cvmlaunch, version {__version__}")
        parser.exit()


def _add_leaf(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    summary: str,
    target: str,
    load: bool,
) -> None:
    from cvmlaunch.cli._command import Formatter

    if not load:
        sub.add_parser(
            name, help=summary, description=summary, formatter_class=Formatter, allow_abbrev=False
        )
        return
    command = load_command(target)
    parser = sub.add_parser(
        name,
        help=summary,
        description=command.description.strip(),
        epilog=command.epilog.strip() or None,
        formatter_class=Formatter,
        allow_abbrev=False,  # an abbreviation would change meaning when an option is added
    )
    command.configure(parser)
    parser.set_defaults(_run=command.run)


def build_parser(selected: tuple[str, ...] = ()) -> argparse.ArgumentParser:
    """The argument parser for the command path ``selected`` (see :func:`_selected`).

    Only the parsers on that path are made: argparse looks up translations for every help
    string of every parser it makes (about 0.3 ms a parser), and ``measure snp`` needs three.
    A path that ends at a group lists the group's commands; an empty one lists the top-level
    commands (for ``--help`` and for the "invalid choice" error). Only the selected command's
    module is imported; the others are listed by their summaries in :data:`COMMANDS`.
    """
    from cvmlaunch.cli._command import Formatter

    parser = argparse.ArgumentParser(
        prog="cvmlaunch", description=DESCRIPTION, formatter_class=Formatter, allow_abbrev=False
    )
    parser.add_argument("-V", "--version", action=_VersionAction)
    parser.add_argument(
        "--debug", dest="_debug", action="store_true", help="show a traceback on errors"
    )
    # prog given: argparse would otherwise format a usage line to find it (importing shutil)
    sub = parser.add_subparsers(
        title="commands", metavar="COMMAND", required=True, prog="cvmlaunch"
    )
    names = list(COMMANDS) if not selected else [selected[0]]
    for name in names:
        summary, body = COMMANDS[name]
        if isinstance(body, str):
            _add_leaf(sub, name, summary, body, load=bool(selected))
            continue
        group = sub.add_parser(
            name, help=summary, description=summary, formatter_class=Formatter, allow_abbrev=False
        )
        if not selected:
            continue
        group_sub = group.add_subparsers(
            title="commands", metavar="COMMAND", required=True, prog=f"cvmlaunch {name}"
        )
        leaves = list(body) if len(selected) == 1 else [selected[1]]
        for leaf in leaves:
            leaf_summary, target = body[leaf]
            _add_leaf(group_sub, leaf, leaf_summary, target, load=len(selected) == 2)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point: parse, run, map errors to one line and an exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_selected(args_list))
    args = parser.parse_args(args_list)
    try:
        code = args._run(args)
    except CvmLaunchError as exc:
        if args._debug:
            raise
        sys.stdout.flush()
        print(f"cvmlaunch: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    sys.exit(code or 0)


if __name__ == "__main__":  # pragma: no cover
    main()
