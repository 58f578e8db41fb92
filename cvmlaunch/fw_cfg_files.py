"""The file edge for TDX RTMR inputs: QEMU fw_cfg blobs and UEFI variables from directories,
and RTMR event logs (CEL-JSON, as ``measure tdx --event-log`` writes them).

Rule: this module reads files and hands bytes to the pure code (:mod:`cvmlaunch.measure.
tdx_rtmr`); it computes nothing. Errors are :class:`~cvmlaunch.errors.ImageError` /
:class:`~cvmlaunch.errors.ConfigError` naming the path.

Layouts accepted:

* fw_cfg blobs: ``DIR/<name>`` (a file) or ``DIR/<name>/raw`` — the layout of a guest's
  ``/sys/firmware/qemu_fw_cfg/by_name/`` (e.g. ``by_name/etc/acpi/tables/raw``), so a directory
  copied out of a running TD works as it is.
* the SMBIOS table: the structure table as a guest's ``/sys/firmware/dmi/tables/DMI`` holds
  it, or a copy of that directory (``DMI`` and ``smbios_entry_point``) (:func:`read_smbios`).
* UEFI variables: ``DIR/<name>`` holding the variable data (e.g. ``DIR/PK``), or the efivarfs
  form ``DIR/<name>-<vendor GUID>`` whose first 4 bytes are the attributes (dropped).
* RTMR event logs: a file holding one CEL-JSON array (:func:`is_event_log`,
  :func:`read_rtmr_events`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from cvmlaunch.errors import ConfigError, LogFormatError
from cvmlaunch.files import read_small

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cvmlaunch.measure.rtmr import RtmrEvent

__all__ = [
    "is_event_log",
    "read_acpi_dir",
    "read_fw_cfg_dir",
    "read_rtmr_events",
    "read_smbios",
    "read_uefi_variables",
]

#: fw_cfg ACPI blobs are at most a few hundred KiB; refuse absurd inputs.
_LIMIT = 64 << 20
_EFIVARFS_ATTRIBUTES = 4


def _is_dir(directory: str | os.PathLike[str], what: str) -> Path:
    path = Path(directory)
    if not os.fspath(directory) or not path.is_dir():
        raise ConfigError(f"{what} {os.fspath(path)!r} is not a directory")
    return path


def read_fw_cfg_dir(directory: str | os.PathLike[str], names: Iterable[str]) -> dict[str, bytes]:
    """The fw_cfg files ``names`` found in ``directory`` (absent ones are left out).

    Raises:
        ConfigError: ``directory`` is not a directory.
        ImageError: a file that exists but cannot be read.
    """
    root = _is_dir(directory, "fw_cfg directory")
    out = {}
    for name in names:
        for candidate in (root / name / "raw", root / name):
            if candidate.is_file():
                out[name] = read_small(candidate, f"fw_cfg file {name}", _LIMIT)
                break
    return out


def read_acpi_dir(directory: str, names: Iterable[str]) -> dict[str, bytes]:
    """Every fw_cfg file ``names`` in ``directory``, as ``--acpi DIR`` gives them.

    Raises:
        ConfigError: not a directory, or a file missing (each is named).
        ImageError: a file that cannot be read.
    """
    wanted = tuple(names)
    files = read_fw_cfg_dir(directory, wanted)
    missing = [n for n in wanted if n not in files]
    if missing:
        raise ConfigError(
            f"--acpi {directory}: no {', '.join(missing)} (as DIR/NAME or DIR/NAME/raw)"
        )
    return files


def read_smbios(path: str | os.PathLike[str]) -> tuple[bytes, bytes | None]:
    """The SMBIOS structure table and, where there is one, its entry point: ``path`` is the
    table (a copy of a guest's ``/sys/firmware/dmi/tables/DMI``) or a copy of that whole
    directory (``DMI`` and ``smbios_entry_point``).

    Raises:
        ConfigError: a directory without ``DMI``.
        ImageError: a file that cannot be read, or one past the size limit.
    """
    root = Path(path)
    if not root.is_dir():
        return read_small(root, "SMBIOS table", _LIMIT), None
    if not (root / "DMI").is_file():
        raise ConfigError(f"{os.fspath(root)}: no DMI (the SMBIOS table) in this directory")
    entry = root / "smbios_entry_point"
    return (
        read_small(root / "DMI", "SMBIOS table", _LIMIT),
        read_small(entry, "SMBIOS entry point", _LIMIT) if entry.is_file() else None,
    )


def read_uefi_variables(
    directory: str | os.PathLike[str], variables: Iterable[tuple[str, str]]
) -> dict[str, bytes]:
    """Variable data by name for each ``(name, vendor GUID)`` present in ``directory``.

    Raises:
        ConfigError: not a directory, both forms of one variable present, or an efivarfs file
            shorter than its 4-byte attribute header.
        ImageError: a file that cannot be read.
    """
    root = _is_dir(directory, "UEFI variable directory")
    out = {}
    for name, guid in variables:
        plain, efivarfs = root / name, root / f"{name}-{guid}"
        if plain.is_file() and efivarfs.is_file():
            raise ConfigError(f"{root}: both {name} and {efivarfs.name}; keep one")
        if plain.is_file():
            out[name] = read_small(plain, f"UEFI variable {name}", _LIMIT)
        elif efivarfs.is_file():
            raw = read_small(efivarfs, f"UEFI variable {name}", _LIMIT)
            if len(raw) < _EFIVARFS_ATTRIBUTES:
                raise ConfigError(f"{efivarfs}: shorter than the efivarfs attribute header")
            out[name] = raw[_EFIVARFS_ATTRIBUTES:]
    return out


def is_event_log(path: str) -> bool:
    """Whether ``path`` holds an RTMR event log (CEL-JSON: a JSON array) rather than a launch
    log (JSON Lines objects): ``[`` then ``{`` or ``]``. Anything else, unreadable files
    included, is left to the launch-log reader to report."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        return False
    text = head.lstrip()
    return text[:1] == b"[" and text[1:].lstrip()[:1] in (b"{", b"]")


def read_rtmr_events(path: str) -> tuple[RtmrEvent, ...]:
    """The events of the RTMR event log ``path`` (CEL-JSON).

    Raises:
        LogFormatError: not JSON, or not CEL-JSON of SHA-384 pcclient_std records.
        ImageError: a file that cannot be read.
    """
    import json

    from cvmlaunch.measure.rtmr import events_from_cel

    data = read_small(path, "RTMR event log", _LIMIT)
    try:
        records = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise LogFormatError(f"{path}: not JSON ({exc})") from None
    try:
        return events_from_cel(records)
    except LogFormatError as exc:
        raise LogFormatError(f"{path}: {exc}") from None
