"""The settings of a launch: what ``cvmlaunch launch`` takes from its flags or a TOML file.

Pure: :class:`LaunchSettings` and its parts (:func:`parse_size`, the TOML reader
:func:`settings_from_toml`). It does no I/O and never imports the KVM layer.
:func:`cvmlaunch.plan.pvh.pvh_launch` builds the PVH launch plan from these settings; the
technology is :class:`cvmlaunch.technology.Technology`.

Errors name a setting by its field (``ConfigError.setting``, rule 5 of
:mod:`cvmlaunch.errors`): :func:`settings_from_toml` spells those from its file
``FILE: key``, the CLI spells the others as flags.
"""

from __future__ import annotations

import datetime
import math
import re
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from cvmlaunch.errors import ConfigError
from cvmlaunch.launch_identity import SnpLaunchIdentity, TdxLaunchIdentity
from cvmlaunch.layout import (
    FOUR_GIB,
    LOW_RAM_SPLIT,
    MAX_GPA,
    PAGE_SIZE,
    SNP_HOST_DATA_SIZE,
    TDX_MR_SIZE,
    parse_hex_bytes,
)
from cvmlaunch.technology import Technology

__all__ = [
    "DEFAULT_SNP_POLICY",
    "MAX_CMDLINE",
    "MAX_MEMORY",
    "MAX_TIMEOUT",
    "MEMORY_BACKENDS",
    "LaunchSettings",
    "file_settings",
    "parse_size",
    "settings_from_toml",
    "spelled_as_in_file",
]


#: Longest command line we place (Linux x86's COMMAND_LINE_SIZE is 2048; we allow a page).
MAX_CMDLINE = PAGE_SIZE - 1

#: The SNP guest policy of a launch that gives none: QEMU's ``sev-snp-guest`` default (SMT
#: allowed, bit 17 set); cvmlaunch.snp_policy.DEFAULT_POLICY is the same value.
DEFAULT_SNP_POLICY = 0x30000

_SIZE_RE = re.compile(r"^\s*(\d+)\s*([KMGTPE]?)(?:i?B)?\s*$", re.IGNORECASE)
_SIZE_SHIFT = {"": 20, "K": 10, "M": 20, "G": 30, "T": 40, "P": 50, "E": 60}
#: The most guest RAM there can be: RAM above the 2 GiB PCI hole (see
#: :meth:`~cvmlaunch.memory_map.MemoryMap.for_size`) ends at ``memory + 2 GiB``, which must
#: stay within the 52-bit guest physical address space (:data:`~cvmlaunch.layout.MAX_GPA`, the
#: widest x86 MAXPHYADDR).
MAX_MEMORY = MAX_GPA - (FOUR_GIB - LOW_RAM_SPLIT)
#: The longest ``--timeout``: the longest wait Python's timers take (``threading.TIMEOUT_MAX``
#: on Linux, 2**63 ns rounded down to whole seconds); ``inf`` is not a timeout.
MAX_TIMEOUT = 9223372036.0


def parse_size(text: str | int, *, setting: str = "memory") -> int:
    """A memory size as QEMU's ``-m`` reads it: a number in MiB, or with a K/M/G/T suffix.
    ``setting`` names it in errors (:attr:`ConfigError.setting`).

    Raises:
        ConfigError: not a size, or not a positive multiple of 4 KiB.
    """
    if isinstance(text, bool):
        raise ConfigError(f"{setting} {text!r} is not a size", setting=setting)
    if isinstance(text, int):
        value = text << 20
    else:
        m = _SIZE_RE.match(text)
        if m is None:
            raise ConfigError(
                f"{setting} {text!r}: expected e.g. 512M, 5G or 1024 (MiB)", setting=setting
            )
        value = int(m.group(1)) << _SIZE_SHIFT[m.group(2).upper()]
    if value <= 0 or value % PAGE_SIZE:
        raise ConfigError(
            f"{setting} {text!r} is not a positive multiple of 4 KiB", setting=setting
        )
    _check_memory(value, setting, f"{setting} {text!r}")
    return value


def _check_memory(value: int, setting: str, what: str) -> None:
    if value > MAX_MEMORY:
        raise ConfigError(
            f"{what} is {value:#x} bytes; guest RAM is at most {MAX_MEMORY:#x} bytes "
            "(4 PiB less 2 GiB: it ends 2 GiB higher, within the 52-bit guest physical "
            "address space)",
            setting=setting,
        )


@dataclass(frozen=True, slots=True)
class LaunchSettings:
    """What to launch: the settings of ``cvmlaunch launch`` (flags or a TOML file).

    Args:
        memory: guest RAM in bytes.
        vcpus: number of vCPUs (vCPU 0 runs the guest; the others park, see
            :func:`cvmlaunch.launcher.pvh.execute`).
        kernel: path of the PVH ELF kernel.
        initrd: path of the initrd, if any.
        append: the kernel command line.
        firmware: path of a firmware image mapped to end at 4 GiB, if any.
        tech: none, snp or tdx.
        timeout: seconds the guest may run before it is stopped.
        memory_backend: where guest memory comes from: ``auto`` (guest_memfd where the host
            offers it, else anonymous memory), ``guest-memfd`` or ``anonymous`` (plain VMs
            only). A host detail: it changes no record and no digest.
        policy: (snp) the SNP guest policy for SNP_LAUNCH_START; None: :data:`DEFAULT_SNP_POLICY`.
        host_data: (snp) HOST_DATA for SNP_LAUNCH_FINISH, 32 bytes; None: zero.
        id_block: (snp) path of the ID block (96 bytes, raw or base64), with ``id_auth``.
        id_auth: (snp) path of the ID auth (4096 bytes, raw or base64).
        mrconfigid: (tdx) MRCONFIGID for KVM_TDX_INIT_VM, 48 bytes; None: zero.
        mrowner: (tdx) MROWNER, 48 bytes; None: zero.
        mrownerconfig: (tdx) MROWNERCONFIG, 48 bytes; None: zero.
        vcpu_type: (snp) a QEMU CPU model name whose signature a dry run uses (as
            ``measure snp --vcpu-type``); a real launch takes the host's and checks it.
        vcpu_sig: (snp) the same as a number (CPUID 1 EAX).
        guest_features: (snp) SEV_FEATURES of the VMSAs; None: 0x1 (SNPActive).
        td_attributes: (tdx) TD attributes; None: QEMU's default (SEPT_VE_DISABLE).
        xfam: (tdx) XFAM; None: QEMU's default (the CPU's XCR0|XSS the host supports).

    The launch identity (policy ... mrownerconfig) never enters a launch digest; it is
    reported beside it, so it is recorded in the launch log header
    (:func:`cvmlaunch.measure.reference.launch_identity_settings`).

    Errors name the bad field (``ConfigError.setting``); :func:`settings_from_toml` and the
    CLI spell it as the user wrote it.

    Raises:
        ConfigError: a value out of range, or an identity setting of another technology.
    """

    memory: int = 512 << 20
    vcpus: int = 1
    kernel: str | None = None
    initrd: str | None = None
    append: str = ""
    firmware: str | None = None
    tech: Technology = Technology.PLAIN
    timeout: float = 60.0
    memory_backend: str = "auto"
    policy: int | None = None
    host_data: bytes | None = None
    id_block: str | None = None
    id_auth: str | None = None
    mrconfigid: bytes | None = None
    mrowner: bytes | None = None
    mrownerconfig: bytes | None = None
    vcpu_type: str | None = None
    vcpu_sig: int | None = None
    guest_features: int | None = None
    td_attributes: int | None = None
    xfam: int | None = None

    def __post_init__(self) -> None:
        if self.memory <= 0 or self.memory % PAGE_SIZE:
            raise ConfigError(
                f"memory {self.memory:#x} is not a positive multiple of 4 KiB", setting="memory"
            )
        _check_memory(self.memory, "memory", "memory")
        if not 1 <= self.vcpus <= 255:
            raise ConfigError(f"vcpus {self.vcpus}: expected 1 to 255", setting="vcpus")
        if not (math.isfinite(self.timeout) and 0 < self.timeout <= MAX_TIMEOUT):
            raise ConfigError(
                f"timeout {self.timeout}: expected a positive number of seconds "
                f"(finite, at most {MAX_TIMEOUT:.0f})",
                setting="timeout",
            )
        if self.memory_backend not in MEMORY_BACKENDS:
            raise ConfigError(
                f"memory_backend {self.memory_backend!r}: expected auto, guest-memfd or anonymous",
                setting="memory_backend",
            )
        if self.memory_backend == "anonymous" and self.tech is not Technology.PLAIN:
            raise ConfigError(
                f"memory_backend anonymous: {self.tech.label} guests need "
                "guest_memfd (their private memory lives only there)",
                setting="memory_backend",
            )
        for path in ("kernel", "initrd", "firmware", "id_block", "id_auth"):
            if getattr(self, path) == "":  # not "none given": a CI variable left unset
                raise ConfigError(f"{path}: empty file name", setting=path)
        if len(self.cmdline) > MAX_CMDLINE:
            raise ConfigError(
                f"append: {len(self.cmdline)} bytes is longer than {MAX_CMDLINE}", setting="append"
            )
        if "\0" in self.append:
            raise ConfigError("append: the command line contains a NUL byte", setting="append")
        if self.vcpu_type is not None and self.vcpu_sig is not None:
            raise ConfigError(
                "give vcpu_type or vcpu_sig, not both", setting="vcpu_type", also=("vcpu_sig",)
            )
        if self.vcpu_type is not None:
            from cvmlaunch.vcpu_signature import vcpu_type_signature

            vcpu_type_signature(self.vcpu_type)  # ConfigError for an unknown model
        for name in ("vcpu_sig", "guest_features", "td_attributes", "xfam"):
            value = getattr(self, name)
            if value is not None and not 0 <= value < 1 << 64:
                raise ConfigError(f"{name} {value:#x} is not a 64-bit value", setting=name)
        for tech, names in ((Technology.SEV_SNP, _SNP_ONLY), (Technology.TDX, _TDX_ONLY)):
            given = [n for n in names if getattr(self, n) is not None]
            if given and self.tech is not tech:
                raise ConfigError(
                    f"{given[0]} is a {tech.label} launch setting (tech {tech.label})",
                    setting=given[0],
                    also=("tech",),
                )
        if (self.id_block is None) != (self.id_auth is None):
            given_one = "id_block" if self.id_block is not None else "id_auth"
            raise ConfigError(
                "id_block and id_auth go together",
                setting=given_one,
                also=("id_auth" if given_one == "id_block" else "id_block",),
            )
        if self.policy is not None:
            from cvmlaunch.snp_policy import GuestPolicy

            try:
                GuestPolicy(self.policy)
            except ConfigError as exc:
                raise ConfigError(f"policy: {exc}", setting="policy") from exc
        # the identity types check the sizes (ConfigError)
        SnpLaunchIdentity(self.host_data or bytes(SNP_HOST_DATA_SIZE))
        TdxLaunchIdentity(*(v or bytes(TDX_MR_SIZE) for v in self._tdx_values()))

    @property
    def cmdline(self) -> bytes:
        """The command line's bytes (no NUL): UTF-8, and a non-UTF-8 byte given on the
        command line is that byte (see :func:`cvmlaunch.plan.sev_hashes.cmdline_bytes`).

        Raises:
            ConfigError: a surrogate that is not an escaped byte.
        """
        from cvmlaunch.plan.sev_hashes import cmdline_bytes

        return cmdline_bytes(self.append)

    def _tdx_values(self) -> tuple[bytes | None, bytes | None, bytes | None]:
        return self.mrconfigid, self.mrowner, self.mrownerconfig

    @property
    def signature(self) -> int | None:
        """(snp) The vCPU signature given (``vcpu_sig``, or ``vcpu_type``'s), or None."""
        if self.vcpu_type is not None:
            from cvmlaunch.vcpu_signature import vcpu_type_signature

            return vcpu_type_signature(self.vcpu_type)
        return self.vcpu_sig

    @property
    def snp_policy(self) -> int:
        """The SNP guest policy the launch uses (the default unless given)."""
        return DEFAULT_SNP_POLICY if self.policy is None else self.policy

    @property
    def tdx_identity(self) -> TdxLaunchIdentity:
        """MRCONFIGID / MROWNER / MROWNERCONFIG (zero where not given)."""
        return TdxLaunchIdentity(*(v or bytes(TDX_MR_SIZE) for v in self._tdx_values()))


#: The values of ``--memory-backend`` / the TOML key ``memory-backend``.
MEMORY_BACKENDS = ("auto", "guest-memfd", "anonymous")

_SNP_IDENTITY = ("policy", "host_data", "id_block", "id_auth")
_TDX_IDENTITY = ("mrconfigid", "mrowner", "mrownerconfig")
#: Settings only a launch of that technology takes.
_SNP_ONLY = (*_SNP_IDENTITY, "vcpu_type", "vcpu_sig", "guest_features")
_TDX_ONLY = (*_TDX_IDENTITY, "td_attributes", "xfam")


_TOML_KEYS = {
    "memory",
    "vcpus",
    "kernel",
    "initrd",
    "append",
    "firmware",
    "tech",
    "timeout",
    "memory-backend",
    "policy",
    "host-data",
    "id-block",
    "id-auth",
    "mrconfigid",
    "mrowner",
    "mrownerconfig",
    "vcpu-type",
    "vcpu-sig",
    "guest-features",
    "td-attributes",
    "xfam",
}


def settings_from_toml(
    text: str, *, base: str = ".", source: str = "config", overrides: Mapping[str, Any] = {}
) -> LaunchSettings:
    """Settings from a TOML document with QEMU-like keys, then ``overrides`` (the CLI flags).

    Keys: ``memory`` ("512M", "5G" or MiB), ``vcpus``, ``kernel``, ``initrd``, ``append``,
    ``firmware``, ``tech`` ("none", "snp", "tdx"), ``timeout`` (seconds), ``memory-backend``
    ("auto", "guest-memfd", "anonymous"); the launch identity
    with the names of QEMU's ``sev-snp-guest`` / ``tdx-guest`` properties: ``policy`` (SNP,
    "0x30000" or an integer), ``host-data`` (SNP, hex, 32 bytes), ``id-block`` and
    ``id-auth`` (SNP, file paths: raw or base64 files), ``mrconfigid``, ``mrowner``,
    ``mrownerconfig`` (TDX, hex, 48 bytes). Unlike QEMU, byte values are hex, not base64 (as
    on the command line). Relative paths in the file are relative to ``base`` (the file's
    directory); paths in ``overrides`` (keyed by field name: ``host_data``) are taken as
    given. An override of ``None`` means "not given".

    Errors name the bad value where it was given: ``SOURCE: key`` for the file's (the error
    spelled so, :meth:`ConfigError.spelled`), by field for an override's (the CLI spells
    that ``--host-data``).

    Raises:
        ConfigError: TOML syntax, an unknown key, or a value of the wrong type.
    """
    try:
        doc = tomllib.loads(text) if text else {}
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: {exc}") from exc
    unknown = sorted(set(doc) - _TOML_KEYS)
    if unknown:
        raise ConfigError(f"{source}: unknown key {unknown[0]!r} (known: {sorted(_TOML_KEYS)})")
    merged: dict[str, Any] = {}
    for key, value in doc.items():
        if key in ("kernel", "initrd", "firmware", "id-block", "id-auth"):
            if not isinstance(value, str):
                raise ConfigError(f"{source}: {key} must be a string path")
            value = str(PurePath(base) / value)
        merged[key.replace("-", "_")] = value
    given = {k: v for k, v in overrides.items() if v is not None}
    from_file = _from_file(doc, given)
    merged.update(given)
    try:
        return _settings(merged)
    except ConfigError as exc:
        spelled = spelled_as_in_file(exc, from_file, source)
        if spelled is exc:
            raise  # a flag's: the CLI spells it
        raise spelled from exc


def file_settings(text: str, overrides: Mapping[str, Any] = {}) -> frozenset[str]:
    """The settings (by field name) whose values come from the TOML document ``text``: its
    keys that ``overrides`` (the CLI flags; ``None`` = not given) do not override. The
    document is one :func:`settings_from_toml` has read."""
    doc = tomllib.loads(text) if text else {}
    return _from_file(doc, {k for k, v in overrides.items() if v is not None})


def _from_file(doc: Mapping[str, Any], given: Collection[str]) -> frozenset[str]:
    """The fields of the document's keys (``host-data`` is ``host_data``) not in ``given``."""
    return frozenset(k.replace("-", "_") for k in doc) - frozenset(given)


def spelled_as_in_file(exc: ConfigError, from_file: Collection[str], source: str) -> ConfigError:
    """``exc`` as the settings file ``source`` names it (``FILE: key``) when its setting came
    from the file (:func:`file_settings`), else ``exc`` itself, for the CLI to spell as a flag.
    A launcher that checks a setting later (e.g. against the host) is answered in the words
    of the place the user gave it."""
    if exc.setting is None or exc.setting not in from_file:
        return exc
    return exc.spelled(_toml_key, source=source)


def _toml_key(setting: str) -> str:
    """The TOML key of the setting (the field) ``setting``: ``host_data`` is ``host-data``."""
    return setting.replace("_", "-")


def _toml_type(value: object) -> str:
    """The TOML name of a value's type, for a one-line type error."""
    if isinstance(value, bool):
        return "boolean"
    for kind, name in (
        (str, "string"),
        (int, "integer"),
        (float, "float"),
        (list, "array"),
        (dict, "table"),
        (datetime.datetime, "date-time"),
        (datetime.date, "date"),
        (datetime.time, "time"),
    ):
        if isinstance(value, kind):
            return name
    return type(value).__name__


def _settings(values: Mapping[str, Any]) -> LaunchSettings:
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key == "memory":
            if isinstance(value, bool) or not isinstance(value, int | str):
                raise ConfigError(
                    f'{key} must be a size ("512M", "5G") or an integer (MiB), not a TOML '
                    f"{_toml_type(value)}",
                    setting=key,
                )
            if isinstance(value, int) and value > MAX_MEMORY >> 20:
                raise ConfigError(
                    f"{key} {value} MiB; guest RAM is at most {MAX_MEMORY:#x} bytes "
                    f"({MAX_MEMORY >> 20} MiB)",
                    setting=key,
                )
            kwargs[key] = parse_size(value, setting=key)
        elif key == "tech":
            kwargs[key] = (
                value
                if isinstance(value, Technology)
                else Technology.parse_launch(str(value), setting=key)
            )
        elif key == "vcpus":
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(
                    f"{key} must be an integer, not a TOML {_toml_type(value)}", setting=key
                )
            kwargs[key] = value
        elif key == "timeout":
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise ConfigError(
                    f"{key} must be a number of seconds, not a TOML {_toml_type(value)}",
                    setting=key,
                )
            kwargs[key] = float(value)
        elif key == "memory_backend" or key == "append":
            if not isinstance(value, str):
                raise ConfigError(
                    f"{key} must be a string, not a TOML {_toml_type(value)}", setting=key
                )
            kwargs[key] = value
        elif key == "policy":
            kwargs[key] = _policy(value)
        elif key in ("host_data", *_TDX_IDENTITY):
            size = SNP_HOST_DATA_SIZE if key == "host_data" else TDX_MR_SIZE
            if isinstance(value, bytes):
                kwargs[key] = value
            elif isinstance(value, str):
                kwargs[key] = parse_hex_bytes(value, size, key)
            else:
                raise ConfigError(f"{key} must be a hex string", setting=key)
        elif key in ("id_block", "id_auth", "vcpu_type"):
            if not isinstance(value, str):
                raise ConfigError(f"{key} must be a string", setting=key)
            kwargs[key] = value
        elif key in ("vcpu_sig", "guest_features", "td_attributes", "xfam"):
            kwargs[key] = _number(value, key)
        else:
            kwargs[key] = value
    return LaunchSettings(**kwargs)


def _number(value: object, setting: str) -> int:
    """An integer setting: a TOML integer, or a string in any base Python reads ("0x21").

    Raises:
        ConfigError: neither.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value, 0)
        except ValueError:
            pass
    raise ConfigError(f'{setting} must be an integer ("0x21" or 33)', setting=setting)


def _policy(value: object) -> int:
    """An SNP policy as a TOML string ("0x30000") or integer, or the CLI's string.

    Raises:
        ConfigError: not a policy, or an invalid one (its setting ``policy``).
    """
    from cvmlaunch.snp_policy import GuestPolicy

    try:
        if isinstance(value, str):
            return GuestPolicy.parse(value).value
        if isinstance(value, int) and not isinstance(value, bool):
            return GuestPolicy(value).value
    except ConfigError as exc:
        raise ConfigError(f"policy: {exc}", setting="policy") from exc
    raise ConfigError('policy must be hex ("0x30000") or an integer', setting="policy")
