"""Parameter types and options the commands share.

Paths are :class:`click.Path` without checks of their own (the library's file edge,
:mod:`cvmlaunch.files`, reports a missing file or a directory in one line, naming it), so
that shell completion offers file names. Options a CI job would rather set once read an
environment variable (shown in ``--help``).
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
