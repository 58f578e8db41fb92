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


def _import_dataclasses_without_inspect() -> None:
    """Import :mod:`dataclasses` with its ``inspect`` import deferred to first use.

    ``dataclasses`` imports ``inspect`` (with ast, dis, tokenize: about 6 ms, an eighth of a
    ``measure snp``) for one use: a signature docstring for a dataclass that has none, which
    cvmlaunch's never lack. CPython 3.15 defers that import itself (gh-137855); on older
    versions the CLI, which owns its process, hands ``dataclasses`` a stand-in module for the
    length of its import. The stand-in imports the real ``inspect`` on first attribute access
    and delegates to it, so behaviour is unchanged; ``import inspect`` anywhere else gets the
    real module, as the stand-in leaves ``sys.modules`` once ``dataclasses`` is loaded.
    """
    if sys.version_info >= (3, 15) or "dataclasses" in sys.modules or "inspect" in sys.modules:
        return
    import types

    class _Inspect(types.ModuleType):
        def __getattr__(self, name: str) -> object:
            if sys.modules.get("inspect") is self:  # asked during dataclasses' own import
                del sys.modules["inspect"]
            import importlib

            return getattr(importlib.import_module("inspect"), name)

    sys.modules["inspect"] = _Inspect("inspect")
    try:
        import dataclasses  # noqa: F401 - imported for its side effect on sys.modules
    finally:
        if isinstance(sys.modules.get("inspect"), _Inspect):
            del sys.modules["inspect"]


_import_dataclasses_without_inspect()

from cvmlaunch.errors import CvmLaunchError  # noqa: E402 - after the dataclasses import above

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
                "Explain how logs A and B differ; exit 1 when their final digests differ.",
                "cvmlaunch.cli._log:DIFF",
            ),
            "show": (
                "Print LOG as a table: one line per populated range.",
                "cvmlaunch.cli._log:SHOW",
            ),
            "sign": (
                "Sign LOG: write a DSSE envelope over its exact bytes (default LOG.dsse).",
                "cvmlaunch.cli._log:SIGN",
            ),
            "verify": (
                "Check every field of LOG against its header and inputs, and its digests.",
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


def _command_call(argv: Sequence[str]) -> tuple[str, str, list[str], bool] | None:
    """Split ``[--debug] COMMAND [SUBCOMMAND] ARGS...`` into the command's name (as its
    ``prog``), its ``"module:attribute"``, its arguments and whether ``--debug`` was given;
    None for anything else (help, version, a group alone, an unknown name: argparse's
    business, see :func:`build_parser`)."""
    debug = argv[:1] == ["--debug"]
    rest = list(argv[1:] if debug else argv)
    if not rest or rest[0] not in COMMANDS:
        return None
    name = rest.pop(0)
    _summary, body = COMMANDS[name]
    if isinstance(body, str):
        return (name, body, rest, debug)
    if rest and rest[0] in body:
        leaf = rest.pop(0)
        return (f"{name} {leaf}", body[leaf][1], rest, debug)
    return None


def command_parser(name: str, target: str) -> argparse.ArgumentParser:
    """The parser of one command (``name`` as in ``"measure snp"``), with its arguments."""
    from cvmlaunch.cli._command import Formatter

    command = load_command(target)
    parser = argparse.ArgumentParser(
        prog=f"cvmlaunch {name}",
        description=command.description.strip(),
        epilog=command.epilog.strip() or None,
        formatter_class=Formatter,
        allow_abbrev=False,  # an abbreviation would change meaning when an option is added
    )
    command.configure(parser)
    parser.set_defaults(_run=command.run)
    return parser


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


def build_parser(group: str | None = None) -> argparse.ArgumentParser:
    """The parser that lists the commands (``cvmlaunch --help``), or a group's commands
    (``cvmlaunch measure --help``), by name and summary, without importing them. It answers
    help, ``--version`` and usage errors; commands are parsed by :func:`command_parser`."""
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
    for name in COMMANDS if group is None else [group]:
        summary, body = COMMANDS[name]
        child = sub.add_parser(
            name, help=summary, description=summary, formatter_class=Formatter, allow_abbrev=False
        )
        if group is None or isinstance(body, str):
            continue
        leaves = child.add_subparsers(
            title="commands", metavar="COMMAND", required=True, prog=f"cvmlaunch {name}"
        )
        for leaf, (leaf_summary, _target) in body.items():
            leaves.add_parser(
                leaf,
                help=leaf_summary,
                description=leaf_summary,
                formatter_class=Formatter,
                allow_abbrev=False,
            )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point: parse, run, map errors to one line and an exit code.

    A command line that names a command is parsed by that command's parser alone (one
    parser: start-up time); anything else by :func:`build_parser`, which prints help or a
    usage error and exits 2. A reader that closes the pipe early (``cvmlaunch log show LOG |
    head``) ends the command quietly with exit 1; Ctrl-C prints one line and exits 130.
    """
    try:
        code = _main(list(sys.argv[1:] if argv is None else argv))
        sys.stdout.flush()  # inside the try: a closed pipe shows here, not at interpreter exit
    except BrokenPipeError:
        _silence_stdout()
        code = 1
    except KeyboardInterrupt:  # Ctrl-C: one line, the shell's code for SIGINT
        print("cvmlaunch: interrupted", file=sys.stderr)
        code = 130
    sys.exit(code)


def _main(args_list: list[str]) -> int:
    call = _command_call(args_list)
    if call is None:
        words = [a for a in args_list if not a.startswith("-")]
        group = words[0] if words and words[0] in COMMANDS else None
        parser = build_parser(group)
        try:
            parser.parse_args(args_list)  # exits: help, version or a usage error
        except SystemExit as done:
            return done.code if isinstance(done.code, int) else 2
        parser.error("no command given")  # pragma: no cover - required subcommands
    name, target, rest, debug = call
    try:
        args = command_parser(name, target).parse_args(rest)
    except SystemExit as done:  # help (0) or a usage error (2), already printed
        return done.code if isinstance(done.code, int) else 2
    try:
        code = args._run(args)
    except CvmLaunchError as exc:
        if debug:
            raise
        sys.stdout.flush()
        print(f"cvmlaunch: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return int(code or 0)


def _silence_stdout() -> None:
    """Point stdout at /dev/null: Python flushes it again at exit, which would raise again."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


if __name__ == "__main__":  # pragma: no cover
    main()
