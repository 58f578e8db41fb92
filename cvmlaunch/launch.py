"""The launch plan for a PVH guest, and the check of the guest's own report against the log.

Rule 1: pure. This module takes settings and buffers (kernel regions, initrd bytes) and returns
values: a :class:`LaunchPlan` whose :class:`~cvmlaunch.layout.Layout` the KVM layer executes,
and the vCPU start state it needs. It does no I/O and never imports the KVM layer; the CLI
(:mod:`cvmlaunch.cli._launch`) reads the files and drives :mod:`cvmlaunch.kvm_map`.

Rule 2: the guest contract lives here (and in examples/guest/guest.h, its C side):

* Guest-physical map (below 1 MiB the launcher owns everything):

  ========================  ==============================================================
  ``0x1000``                the range table (:data:`RANGE_TABLE_GPA`), one page
  ``0x2000``                PVH ``hvm_start_info``, its module list and memory map, one page
  ``0x3000``                the kernel command line, NUL-terminated, whole pages
  ``0x70000-0x80000``       the guest's stack (never populated, never hashed)
  ``0x100000`` up           the kernel's PT_LOAD segments (where its ELF puts them)
  top of low RAM            the initrd, page aligned, below :data:`INITRD_ADDR_MAX`
  ========================  ==============================================================

* The range table (little-endian): ``magic[8] = b"CVMLRNG\\0"``, ``version u32 = 1``,
  ``count u32``, then ``count`` entries ``{gpa u64, size u64}``. It lists every populated
  region of the plan in populate order, itself included (it is written last).

* The report on COM1, one line per range: ``range <i> 0x<gpa>+0x<size> sha384 <hex>`` (or
  ``... unreachable`` for a range the guest cannot address), then ``end <count>``.

Rule 3: the launch succeeds only when, for every listed range, the SHA-384 the guest computed
over guest memory equals the ``content_sha384`` of the launch-log record for that range.
"""

from __future__ import annotations

import datetime
import enum
import hashlib
import math
import re
import struct
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

from cvmlaunch.errors import CheckFailed, ConfigError, GuestError, MeasurementMismatch
from cvmlaunch.launch_identity import SnpLaunchIdentity, TdxLaunchIdentity
from cvmlaunch.layout import (
    FOUR_GIB,
    LOW_RAM_SPLIT,
    MAX_GPA,
    PAGE_SIZE,
    SNP_HOST_DATA_SIZE,
    TDX_MR_SIZE,
    Buffer,
    Layout,
    PageType,
    Provenance,
    Region,
    SourceKind,
    align_down,
    align_up,
    parse_hex_bytes,
)
from cvmlaunch.log_entry import LogEntry, LogOp
from cvmlaunch.memory_map import MemoryMap, MemslotKind

if TYPE_CHECKING:
    from cvmlaunch.measure.log import SettingValue

__all__ = [
    "CMDLINE_GPA",
    "DEBUG_EXIT_PORT",
    "DEFAULT_SNP_POLICY",
    "GUEST_STACK",
    "INITRD_ADDR_MAX",
    "MEMORY_BACKENDS",
    "RANGE_TABLE_GPA",
    "SERIAL_PORT",
    "START_INFO_GPA",
    "GuestDigest",
    "GuestReport",
    "LaunchPlan",
    "LaunchSettings",
    "Tech",
    "build_plan",
    "check_report",
    "parse_report",
    "parse_size",
    "settings_from_toml",
]

RANGE_TABLE_GPA = 0x1000
START_INFO_GPA = 0x2000
CMDLINE_GPA = 0x3000
#: The guest's stack: RAM the plan must leave unpopulated (examples/guest/start.S).
GUEST_STACK = (0x70000, 0x80000)
#: The initrd ends at or below this address (Linux's default initrd_addr_max + 1).
INITRD_ADDR_MAX = 0x3800_0000
#: Longest command line we place (Linux x86's COMMAND_LINE_SIZE is 2048; we allow a page).
MAX_CMDLINE = PAGE_SIZE - 1
SERIAL_PORT = 0x3F8
#: QEMU's isa-debug-exit port; the example guest writes its status there before it halts.
DEBUG_EXIT_PORT = 0xF4

RANGE_TABLE_MAGIC = b"CVMLRNG\0"
RANGE_TABLE_VERSION = 1
#: Range table header: magic[8], version u32, count u32 (examples/guest/guest.h).
_TABLE_HEADER = struct.Struct("<8sII")
#: Range table entry: gpa u64, size u64.
_TABLE_ENTRY = struct.Struct("<QQ")
MAX_RANGES = (PAGE_SIZE - _TABLE_HEADER.size) // _TABLE_ENTRY.size

#: PVH boot ABI, ``struct hvm_start_info`` (Xen public/arch-x86/hvm/start_info.h), version 1:
#: magic, version, flags, nr_modules, modlist_paddr, cmdline_paddr, rsdp_paddr, memmap_paddr,
#: memmap_entries, reserved.
_START_INFO = struct.Struct("<IIIIQQQQII")
HVM_START_MAGIC = 0x336EC578
#: ``struct hvm_modlist_entry``: paddr, size, cmdline_paddr, reserved.
_MODLIST_ENTRY = struct.Struct("<QQQQ")
#: ``struct hvm_memmap_table_entry``: addr, size, type (E820 numbering), reserved.
_MEMMAP_ENTRY = struct.Struct("<QQII")
E820_RAM = 1
E820_RESERVED = 2

#: The SNP guest policy of a launch that gives none: QEMU's ``sev-snp-guest`` default (SMT
#: allowed, bit 17 set); cvmlaunch.measure.identity.DEFAULT_POLICY is the same value.
DEFAULT_SNP_POLICY = 0x30000

_SIZE_RE = re.compile(r"^\s*(\d+)\s*([KMGTPE]?)(?:i?B)?\s*$", re.IGNORECASE)
_SIZE_SHIFT = {"": 20, "K": 10, "M": 20, "G": 30, "T": 40, "P": 50, "E": 60}
#: The most guest RAM there can be: RAM above the 2 GiB PCI hole (see
#: :meth:`MemoryMap.for_size`) ends at ``memory + 2 GiB``, which must stay within the 52-bit
#: guest physical address space (:data:`~cvmlaunch.layout.MAX_GPA`, the widest x86 MAXPHYADDR).
MAX_MEMORY = MAX_GPA - (FOUR_GIB - LOW_RAM_SPLIT)
#: The longest ``--timeout``: the longest wait Python's timers take (``threading.TIMEOUT_MAX``
#: on Linux, 2**63 ns rounded down to whole seconds); ``inf`` is not a timeout.
MAX_TIMEOUT = 9223372036.0


class Tech(enum.IntEnum):
    """The confidential-computing technology of a launch (``--tech``)."""

    NONE = 0
    SNP = 1
    TDX = 2

    @classmethod
    def parse(cls, text: str, *, name: str = "--tech") -> Tech:
        """``none``, ``snp`` or ``tdx`` (any case); ``name`` says where it was given.

        Raises:
            ConfigError: anything else.
        """
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ConfigError(f"{name} {text!r}: expected none, snp or tdx") from None

    @property
    def label(self) -> str:
        """The name users type."""
        return self.name.lower()


def parse_size(text: str | int, *, name: str = "memory size") -> int:
    """A memory size as QEMU's ``-m`` reads it: a number in MiB, or with a K/M/G/T suffix.
    ``name`` says where it was given (a flag, or a file and key) in errors.

    Raises:
        ConfigError: not a size, or not a positive multiple of 4 KiB.
    """
    if isinstance(text, bool):
        raise ConfigError(f"{name} {text!r} is not a size")
    if isinstance(text, int):
        value = text << 20
    else:
        m = _SIZE_RE.match(text)
        if m is None:
            raise ConfigError(f"{name} {text!r}: expected e.g. 512M, 5G or 1024 (MiB)")
        value = int(m.group(1)) << _SIZE_SHIFT[m.group(2).upper()]
    if value <= 0 or value % PAGE_SIZE:
        raise ConfigError(f"{name} {text!r} is not a positive multiple of 4 KiB")
    _check_memory(value, f"{name} {text!r}")
    return value


def _check_memory(value: int, what: str) -> None:
    if value > MAX_MEMORY:
        raise ConfigError(
            f"{what} is {value:#x} bytes; guest RAM is at most {MAX_MEMORY:#x} bytes "
            "(4 PiB less 2 GiB: it ends 2 GiB higher, within the 52-bit guest physical "
            "address space)"
        )


@dataclass(frozen=True, slots=True)
class LaunchSettings:
    """What to launch: the settings of ``cvmlaunch launch`` (flags or a TOML file).

    Args:
        memory: guest RAM in bytes.
        vcpus: number of vCPUs (vCPU 0 runs the guest; the others park, see the CLI).
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
    (:meth:`LaunchPlan.identity_settings`).

    ``origins`` names, by field, the settings file a value came from (not compared): errors
    name such a value ``FILE: key``, any other by its flag (``--vcpus``).

    Raises:
        ConfigError: a value out of range, or an identity setting of another technology.
    """

    memory: int = 512 << 20
    vcpus: int = 1
    kernel: str | None = None
    initrd: str | None = None
    append: str = ""
    firmware: str | None = None
    tech: Tech = Tech.NONE
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
    origins: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def name(self, setting: str) -> str:
        """How errors name ``setting`` (a field): ``FILE: key`` if it came from a settings
        file (:attr:`origins`), else its flag ``--key``."""
        return setting_name(setting, self.origins.get(setting))

    def __post_init__(self) -> None:
        if self.memory <= 0 or self.memory % PAGE_SIZE:
            raise ConfigError(
                f"{self.name('memory')} {self.memory:#x} is not a positive multiple of 4 KiB"
            )
        _check_memory(self.memory, self.name("memory"))
        if not 1 <= self.vcpus <= 255:
            raise ConfigError(f"{self.name('vcpus')} {self.vcpus}: expected 1 to 255")
        if not (math.isfinite(self.timeout) and 0 < self.timeout <= MAX_TIMEOUT):
            raise ConfigError(
                f"{self.name('timeout')} {self.timeout}: expected a positive number of seconds "
                f"(finite, at most {MAX_TIMEOUT:.0f})"
            )
        if self.memory_backend not in MEMORY_BACKENDS:
            raise ConfigError(
                f"{self.name('memory_backend')} {self.memory_backend!r}: "
                "expected auto, guest-memfd or anonymous"
            )
        if self.memory_backend == "anonymous" and self.tech is not Tech.NONE:
            raise ConfigError(
                f"{self.name('memory_backend')} anonymous: {self.tech.label} guests need "
                "guest_memfd (their private memory lives only there)"
            )
        for path in ("kernel", "initrd", "firmware", "id_block", "id_auth"):
            if getattr(self, path) == "":  # not "none given": a CI variable left unset
                raise ConfigError(f"{self.name(path)}: empty file name")
        if len(self.cmdline) > MAX_CMDLINE:
            raise ConfigError(
                f"{self.name('append')}: {len(self.cmdline)} bytes is longer than {MAX_CMDLINE}"
            )
        if "\0" in self.append:
            raise ConfigError(f"{self.name('append')}: the command line contains a NUL byte")
        if self.vcpu_type is not None and self.vcpu_sig is not None:
            raise ConfigError(f"give {self.name('vcpu_type')} or {self.name('vcpu_sig')}, not both")
        if self.vcpu_type is not None:
            from cvmlaunch.measure.cpu import vcpu_type_signature

            vcpu_type_signature(self.vcpu_type)  # ConfigError for an unknown model
        for name in ("vcpu_sig", "guest_features", "td_attributes", "xfam"):
            value = getattr(self, name)
            if value is not None and not 0 <= value < 1 << 64:
                raise ConfigError(f"{self.name(name)} {value:#x} is not a 64-bit value")
        for tech, names in ((Tech.SNP, _SNP_ONLY), (Tech.TDX, _TDX_ONLY)):
            given = [n for n in names if getattr(self, n) is not None]
            if given and self.tech is not tech:
                raise ConfigError(
                    f"{self.name(given[0])} is a {tech.label} launch setting (--tech {tech.label})"
                )
        if (self.id_block is None) != (self.id_auth is None):
            origin = self.origins.get("id_block" if self.id_block is not None else "id_auth")
            raise ConfigError(
                f"{setting_name('id_block', origin)} and "
                f"{setting_name('id_auth', origin, bare=True)} go together"
            )
        if self.policy is not None:
            from cvmlaunch.measure.identity import GuestPolicy

            try:
                GuestPolicy(self.policy)
            except ConfigError as exc:
                raise ConfigError(f"{self.name('policy')}: {exc}") from exc
        # the identity types check the sizes (ConfigError)
        SnpLaunchIdentity(self.host_data or bytes(SNP_HOST_DATA_SIZE))
        TdxLaunchIdentity(*(v or bytes(TDX_MR_SIZE) for v in self._tdx_values()))

    @property
    def cmdline(self) -> bytes:
        """The command line's bytes (no NUL): UTF-8, and a non-UTF-8 byte given on the
        command line is that byte (see :func:`cvmlaunch.measure.sev_hashes.cmdline_bytes`).

        Raises:
            ConfigError: a surrogate that is not an escaped byte.
        """
        from cvmlaunch.measure.sev_hashes import cmdline_bytes

        return cmdline_bytes(self.append, self.name("append"))

    def _tdx_values(self) -> tuple[bytes | None, bytes | None, bytes | None]:
        return self.mrconfigid, self.mrowner, self.mrownerconfig

    @property
    def signature(self) -> int | None:
        """(snp) The vCPU signature given (``vcpu_sig``, or ``vcpu_type``'s), or None."""
        if self.vcpu_type is not None:
            from cvmlaunch.measure.cpu import vcpu_type_signature

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


def setting_name(setting: str, origin: str | None, *, bare: bool = False) -> str:
    """How errors name the launch setting ``setting`` (a :class:`LaunchSettings` field):
    ``FILE: key`` when ``origin`` is the settings file it came from, else its flag
    (``--key``). ``bare``: the key without the file (a second key in the same message)."""
    key = setting.replace("_", "-")
    if origin is None:
        return f"--{key}"
    return key if bare else f"{origin}: {key}"


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

    Errors name where the bad value came from: ``SOURCE: key`` for the file's, the flag
    (``--host-data``) for an override's (:attr:`LaunchSettings.origins`).

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
    origins = {k: source for k in merged if k not in given}
    merged.update(given)
    return _settings(merged, origins)


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


def _settings(values: Mapping[str, Any], origins: Mapping[str, str]) -> LaunchSettings:
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        name = setting_name(key, origins.get(key))
        if key == "memory":
            if isinstance(value, bool) or not isinstance(value, int | str):
                raise ConfigError(
                    f'{name} must be a size ("512M", "5G") or an integer (MiB), not a TOML '
                    f"{_toml_type(value)}"
                )
            if isinstance(value, int) and value > MAX_MEMORY >> 20:
                raise ConfigError(
                    f"{name} {value} MiB; guest RAM is at most {MAX_MEMORY:#x} bytes "
                    f"({MAX_MEMORY >> 20} MiB)"
                )
            kwargs[key] = parse_size(value, name=name)
        elif key == "tech":
            kwargs[key] = value if isinstance(value, Tech) else Tech.parse(str(value), name=name)
        elif key == "vcpus":
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"{name} must be an integer, not a TOML {_toml_type(value)}")
            kwargs[key] = value
        elif key == "timeout":
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise ConfigError(
                    f"{name} must be a number of seconds, not a TOML {_toml_type(value)}"
                )
            kwargs[key] = float(value)
        elif key == "memory_backend" or key == "append":
            if not isinstance(value, str):
                raise ConfigError(f"{name} must be a string, not a TOML {_toml_type(value)}")
            kwargs[key] = value
        elif key == "policy":
            kwargs[key] = _policy(value, name)
        elif key in ("host_data", *_TDX_IDENTITY):
            size = SNP_HOST_DATA_SIZE if key == "host_data" else TDX_MR_SIZE
            if isinstance(value, bytes):
                kwargs[key] = value
            elif isinstance(value, str):
                kwargs[key] = parse_hex_bytes(value, size, name)
            else:
                raise ConfigError(f"{name} must be a hex string")
        elif key in ("id_block", "id_auth", "vcpu_type"):
            if not isinstance(value, str):
                raise ConfigError(f"{name} must be a string")
            kwargs[key] = value
        elif key in ("vcpu_sig", "guest_features", "td_attributes", "xfam"):
            kwargs[key] = _number(value, name)
        else:
            kwargs[key] = value
    return LaunchSettings(**kwargs, origins=dict(origins))


def _number(value: object, name: str) -> int:
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
    raise ConfigError(f'{name} must be an integer ("0x21" or 33)')


def _policy(value: object, name: str) -> int:
    """An SNP policy as a TOML string ("0x30000") or integer, or the CLI's string; ``name``
    says where it was given.

    Raises:
        ConfigError: not a policy, or an invalid one (naming ``name``).
    """
    from cvmlaunch.measure.identity import GuestPolicy

    try:
        if isinstance(value, str):
            return GuestPolicy.parse(value).value
        if isinstance(value, int) and not isinstance(value, bool):
            return GuestPolicy(value).value
    except ConfigError as exc:
        raise ConfigError(f"{name}: {exc}") from exc
    raise ConfigError(f'{name} must be hex ("0x30000") or an integer')


@dataclass(frozen=True, slots=True)
class LaunchPlan:
    """A launch, ready to execute: the layout, and where the guest starts.

    Args:
        layout: the regions in populate order and the memory map.
        entry: the PVH 32-bit entry point (XEN_ELFNOTE_PHYS32_ENTRY).
        start_info_gpa: %ebx for vCPU 0.
        vcpus: number of vCPUs.
        tech: the technology.
        settings: the settings the plan was built from.
        snp: (snp) HOST_DATA and the ID block pair for SNP_LAUNCH_FINISH.
        tdx: (tdx) MRCONFIGID / MROWNER / MROWNERCONFIG for KVM_TDX_INIT_VM.
    """

    layout: Layout
    entry: int
    start_info_gpa: int
    vcpus: int
    tech: Tech
    settings: LaunchSettings = field(default_factory=LaunchSettings)
    snp: SnpLaunchIdentity | None = None
    tdx: TdxLaunchIdentity | None = None

    def identity_settings(self) -> dict[str, SettingValue]:
        """The launch identity as launch log header settings (docs/log-format.md, "Launch
        identity settings"): the SNP policy, host data and ID block pair, or the TDX MR values;
        empty for a plain launch."""
        if self.snp is None and self.tdx is None:
            return {}
        from cvmlaunch.measure.identity import GuestPolicy
        from cvmlaunch.measure.reference import identity_settings

        if self.snp is not None:
            policy = GuestPolicy(self.settings.snp_policy)
            return dict(identity_settings(snp=self.snp, policy=policy))
        return dict(identity_settings(tdx=self.tdx))

    @property
    def hashed(self) -> tuple[Region, ...]:
        """The ranges in the range table (every memory region), in table order."""
        return self.layout.memory_regions

    def predicted(self) -> tuple[bytes, ...]:
        """SHA-384 of each hashed range as the plan fills it: what the guest should report."""
        out = []
        for region in self.hashed:
            h = hashlib.sha384()
            for _, page in region.pages():
                h.update(page)
            out.append(h.digest())
        return tuple(out)


def _generated(name: str, gpa: int, data: bytes, detail: str = "") -> Region:
    return Region(
        gpa=gpa,
        size=align_up(max(len(data), 1)),
        page_type=PageType.NORMAL,
        measured=True,
        provenance=Provenance(SourceKind.GENERATED, name, detail=detail),
        data=data,
    )


def _memory_map_entries(memory: MemoryMap) -> bytes:
    """The PVH memory map: every RAM memslot as E820 RAM, the firmware as reserved."""
    out = b""
    for slot in sorted(memory.memslots, key=lambda s: s.gpa):
        kind = E820_RESERVED if slot.kind is MemslotKind.FIRMWARE else E820_RAM
        out += _MEMMAP_ENTRY.pack(slot.gpa, slot.size, kind, 0)
    return out


def build_plan(
    settings: LaunchSettings,
    kernel_regions: Sequence[Region],
    entry: int,
    *,
    initrd: Buffer | None = None,
    initrd_name: str = "initrd",
    firmware: Buffer | None = None,
    firmware_name: str = "firmware",
    id_block: Buffer | None = None,
    id_auth: Buffer | None = None,
) -> LaunchPlan:
    """Lay out a PVH launch: kernel, initrd, firmware, command line, start_info, range table.

    Populate order (which is also the range table's order): the kernel's regions as the ELF
    loader gave them, the initrd, the firmware, the command line, the start_info page, and
    the range table last, since it lists every range including its own.

    Args:
        settings: memory size, vCPUs, command line, technology.
        kernel_regions: the kernel's PT_LOAD regions (from the ELF loader), page-granular.
        entry: the PVH 32-bit entry point.
        initrd: the initrd's bytes (placed at the top of low RAM), if any.
        initrd_name: the initrd's name for provenance.
        firmware: a firmware image (placed to end at 4 GiB), if any.
        firmware_name: the firmware's name for provenance.
        id_block: (snp) the contents of ``settings.id_block`` (96 bytes), if given.
        id_auth: (snp) the contents of ``settings.id_auth`` (4096 bytes).

    Returns:
        The plan, with the launch identity of its technology.

    Raises:
        LayoutError: a region outside guest memory, overlapping another, or over the guest's
            reserved low pages or stack.
        ConfigError: no kernel regions, an entry outside the kernel, too many ranges, an ID
            block pair missing or not given for the settings.
        CheckFailed: an ID block pair that does not verify or whose policy is not the
            launch's (the firmware would refuse the launch).
    """
    if not kernel_regions:
        raise ConfigError("the kernel has no loadable segments")
    if not any(r.gpa <= entry < r.end for r in kernel_regions):
        raise ConfigError(f"the PVH entry {entry:#x} is not inside a loaded kernel segment")
    fw_size = align_up(len(firmware)) if firmware is not None else 0
    memory = MemoryMap.for_size(settings.memory, fw_size)
    low_end = next(s.end for s in memory.memslots if s.kind is MemslotKind.RAM_LOW)
    reserved_end = GUEST_STACK[1]
    for r in kernel_regions:
        if r.gpa < reserved_end:
            raise ConfigError(
                f"{r.provenance.describe()} at {r.gpa:#x} is below {reserved_end:#x}, "
                "where the launcher keeps its tables and the guest's stack"
            )
    regions: list[Region] = list(kernel_regions)
    modules = b""
    if initrd is not None:
        size = align_up(max(len(initrd), 1))
        top = min(low_end, INITRD_ADDR_MAX)
        gpa = align_down(top - size, 1 << 21) if top > size else -1
        kernel_end = max(r.end for r in kernel_regions)
        if gpa < kernel_end:
            raise ConfigError(
                f"{initrd_name}: {len(initrd):#x} bytes do not fit in low RAM above the kernel "
                f"(kernel ends at {kernel_end:#x}, low RAM at {low_end:#x})"
            )
        regions.append(
            Region(
                gpa=gpa,
                size=size,
                page_type=PageType.NORMAL,
                measured=True,
                provenance=Provenance(SourceKind.FILE, initrd_name, offset=0),
                data=initrd,
            )
        )
        modules = _MODLIST_ENTRY.pack(gpa, len(initrd), 0, 0)
    if firmware is not None:
        regions.append(
            Region(
                gpa=FOUR_GIB - fw_size,
                size=fw_size,
                page_type=PageType.NORMAL,
                measured=True,
                provenance=Provenance(SourceKind.FILE, firmware_name, offset=0),
                data=firmware,
            )
        )
    cmdline = settings.cmdline + b"\0"
    regions.append(_generated("cmdline", CMDLINE_GPA, cmdline, "kernel command line"))
    memmap = _memory_map_entries(memory)
    modlist_gpa = START_INFO_GPA + _START_INFO.size
    memmap_gpa = modlist_gpa + len(modules)
    start_info = (
        _START_INFO.pack(
            HVM_START_MAGIC,
            1,
            0,
            len(modules) // _MODLIST_ENTRY.size,
            modlist_gpa if modules else 0,
            CMDLINE_GPA,
            0,
            memmap_gpa,
            len(memmap) // _MEMMAP_ENTRY.size,
            0,
        )
        + modules
        + memmap
    )
    regions.append(_generated("start_info", START_INFO_GPA, start_info, "PVH hvm_start_info"))
    table_gpa = RANGE_TABLE_GPA
    listed = [*((r.gpa, r.size) for r in regions), (table_gpa, PAGE_SIZE)]
    if len(listed) > MAX_RANGES:
        raise ConfigError(f"{len(listed)} ranges do not fit in the range table (max {MAX_RANGES})")
    table = _TABLE_HEADER.pack(RANGE_TABLE_MAGIC, RANGE_TABLE_VERSION, len(listed)) + b"".join(
        _TABLE_ENTRY.pack(g, s) for g, s in listed
    )
    regions.append(_generated("range-table", table_gpa, table, "cvmlaunch range table"))
    for r in regions:
        if r.gpa < GUEST_STACK[1] and r.end > GUEST_STACK[0]:
            raise ConfigError(
                f"{r.provenance.describe()} overlaps the guest stack {GUEST_STACK[0]:#x}-"
                f"{GUEST_STACK[1]:#x}"
            )
    layout = Layout.of(regions, memory)
    return LaunchPlan(
        layout=layout,
        entry=entry,
        start_info_gpa=START_INFO_GPA,
        vcpus=settings.vcpus,
        tech=settings.tech,
        settings=settings,
        snp=_snp_identity(settings, id_block, id_auth),
        tdx=settings.tdx_identity if settings.tech is Tech.TDX else None,
    )


def _snp_identity(
    settings: LaunchSettings, id_block: Buffer | None, id_auth: Buffer | None
) -> SnpLaunchIdentity | None:
    """HOST_DATA and the ID block pair of an SNP launch, the pair checked as the firmware will
    check it (signatures, policy; the launch digest is not predicted for this plan)."""
    if (id_block is None) != (settings.id_block is None) or (id_auth is None) != (
        settings.id_auth is None
    ):
        raise ConfigError("the ID block and ID auth contents must come with --id-block/--id-auth")
    if settings.tech is not Tech.SNP:
        return None
    host_data = settings.host_data or bytes(SNP_HOST_DATA_SIZE)
    if id_block is None or id_auth is None:
        return SnpLaunchIdentity(host_data)
    from cvmlaunch.measure.identity import GuestPolicy, check_launch_id_pair

    check_launch_id_pair(
        id_block,
        id_auth,
        measurement=None,
        policy=GuestPolicy(settings.snp_policy),
        source=f"{settings.id_block} / {settings.id_auth}",
    )
    return SnpLaunchIdentity(host_data, bytes(id_block), bytes(id_auth))


@dataclass(frozen=True, slots=True)
class GuestDigest:
    """One ``range`` line of the guest's report.

    Args:
        index: the range's index in the table.
        gpa: first GPA, as the guest read it from the table.
        size: bytes, as the guest read it.
        sha384: the digest the guest computed, or None if it could not reach the range.
    """

    index: int
    gpa: int
    size: int
    sha384: bytes | None


@dataclass(frozen=True, slots=True)
class GuestReport:
    """The guest's report: its ``range`` lines and its ``end`` count (None if it never ended)."""

    digests: tuple[GuestDigest, ...]
    end: int | None


_RANGE_LINE = re.compile(
    r"^range (\d+) 0x([0-9a-f]+)\+0x([0-9a-f]+) (?:sha384 ([0-9a-f]{96})|(unreachable))$"
)
_END_LINE = re.compile(r"^end (\d+)$")


def parse_report(text: str) -> GuestReport:
    """Parse the guest's serial output (other lines are ignored).

    Raises:
        GuestError: a ``range`` line out of sequence.
    """
    digests: list[GuestDigest] = []
    end: int | None = None
    for line in text.splitlines():
        line = line.strip()
        m = _RANGE_LINE.match(line)
        if m:
            index = int(m.group(1))
            if index != len(digests):
                raise GuestError(f"guest report: range {index} out of sequence in {line!r}")
            digest = bytes.fromhex(m.group(4)) if m.group(4) else None
            digests.append(GuestDigest(index, int(m.group(2), 16), int(m.group(3), 16), digest))
            continue
        m = _END_LINE.match(line)
        if m:
            end = int(m.group(1))
    return GuestReport(tuple(digests), end)


def _describe(entry: LogEntry) -> str:
    return f"range [{entry.gpa:#x}-{entry.gpa + entry.size:#x}) ({entry.provenance.describe()})"


def check_report(report: GuestReport, hashed: Iterable[Region], log: Sequence[LogEntry]) -> int:
    """Check the guest's digests against the log's content hashes, range by range.

    Args:
        report: what the guest printed.
        hashed: the ranges of the range table, in table order.
        log: the launch measurement log (what was populated).

    Returns:
        The number of ranges checked.

    Raises:
        MeasurementMismatch: the guest's digest of a range differs from the log's; the message
            names the range.
        CheckFailed: the guest's report is incomplete, lists other ranges than the table, or a
            range has no log record.
    """
    ranges = list(hashed)
    # pre-fault records copy nothing: the contents a range was given are in its copy record
    by_range = {(e.gpa, e.size): e for e in log if e.op is not LogOp.PRE_FAULT}
    if report.end is None:
        raise CheckFailed(
            f"the guest's report is incomplete: {len(report.digests)} of {len(ranges)} ranges "
            "and no end line"
        )
    if report.end != len(ranges) or len(report.digests) != len(ranges):
        raise CheckFailed(
            f"the guest reported {len(report.digests)} ranges (end {report.end}), "
            f"the table lists {len(ranges)}"
        )
    for region, got in zip(ranges, report.digests, strict=True):
        entry = by_range.get((region.gpa, region.size))
        if entry is None:
            raise CheckFailed(
                f"no launch-log record covers range [{region.gpa:#x}-{region.end:#x}) "
                f"({region.provenance.describe()})"
            )
        if (got.gpa, got.size) != (region.gpa, region.size):
            raise CheckFailed(
                f"guest range {got.index} is {got.gpa:#x}+{got.size:#x}, the table says "
                f"{region.gpa:#x}+{region.size:#x}"
            )
        if got.sha384 is None:
            raise CheckFailed(f"the guest could not address {_describe(entry)}")
        # a range the log marks zero: the guest hashed its bytes, the host hashes zeros
        if entry.content_sha384 is None:
            from cvmlaunch.measure.log import zero_range_sha384

            want = zero_range_sha384(entry.size)
        else:
            want = entry.content_sha384
        if got.sha384 != want:
            raise MeasurementMismatch(
                f"guest digest of {_describe(entry)}", expected=want, actual=got.sha384
            )
    return len(ranges)
