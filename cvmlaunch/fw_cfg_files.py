"""The file edge for TDX RTMR inputs: QEMU fw_cfg blobs and UEFI variables from directories.

Rule: this module reads files and hands bytes to the pure code (:mod:`cvmlaunch.measure.
tdx_rtmr`); it computes nothing. Errors are :class:`~cvmlaunch.errors.ImageError` /
:class:`~cvmlaunch.errors.ConfigError` naming the path.

Layouts accepted:

* fw_cfg blobs: ``DIR/<name>`` (a file) or ``DIR/<name>/raw`` — the layout of a guest's
  ``/sys/firmware/qemu_fw_cfg/by_name/`` (e.g. ``by_name/etc/acpi/tables/raw``), so a directory
  copied out of a running TD works as it is.
* UEFI variables: ``DIR/<name>`` holding the variable data (e.g. ``DIR/PK``), or the efivarfs
  form ``DIR/<name>-<vendor GUID>`` whose first 4 bytes are the attributes (dropped).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from cvmlaunch.errors import ConfigError
from cvmlaunch.files import read_small

__all__ = ["read_fw_cfg_dir", "read_uefi_variables"]

#: fw_cfg ACPI blobs are at most a few hundred KiB; refuse absurd inputs.
_LIMIT = 64 << 20
_EFIVARFS_ATTRIBUTES = 4


def _is_dir(directory: str | os.PathLike[str], what: str) -> Path:
    path = Path(directory)
    if not path.is_dir():
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
