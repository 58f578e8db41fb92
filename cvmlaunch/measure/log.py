"""The launch measurement log: one record per populated range, replayable to the digest.

Rule 1: technology-neutral. The log model (:class:`LogHeader`,
:class:`~cvmlaunch.log_entry.LogEntry` records, :class:`LogFooter`) and its JSON Lines form know
nothing about SNP or TDX; each technology registers a *replayer* (its digest fold over log
records) with :func:`register_replayer`. SNP can replay from the per-page SHA-384 list alone;
technologies whose digest needs the measured bytes (TDX MRTD, SEV's SHA-256 stream) take a
:data:`ContentProvider`.

Rule 2: canonical output. One JSON object per line, keys sorted, no insignificant whitespace,
ASCII only, integers only (no floats), digests as lowercase hex. The same log always serialises
to the same bytes (docs/log-format.md is the schema; :data:`LOG_VERSION` its version).

Rule 3: strict input. :func:`parse_log` rejects unknown or missing keys, wrong types, floats,
duplicate keys, upper-case or odd-length hex, out-of-order sequence numbers and a missing header
or footer, raising :class:`~cvmlaunch.errors.LogFormatError` naming the line.

This module does no I/O: it takes and returns ``str``.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

from cvmlaunch.errors import ConfigError, LayoutError, LogFormatError, MeasurementMismatch
from cvmlaunch.layout import (
    PAGE_SIZE,
    Buffer,
    PageType,
    Provenance,
    SourceKind,
)
from cvmlaunch.log_entry import LogEntry, LogOp

__all__ = [
    "HOST_DETAILS",
    "LOG_FORMAT",
    "LOG_VERSION",
    "MAX_RECORD_BYTES",
    "ContentProvider",
    "LogDifference",
    "LogFooter",
    "LogHeader",
    "LogInput",
    "MeasurementLog",
    "Replayer",
    "SettingValue",
    "Technology",
    "complete_log",
    "diff_logs",
    "dump_log",
    "dumps_log",
    "entry_for_range",
    "get_replayer",
    "host_differences",
    "parse_log",
    "register_replayer",
    "replay_log",
    "verify_log",
]

#: Header settings that describe the host a launch ran on, not the launch (non-measured
#: metadata): no digest covers them, replay ignores them, and :func:`diff_logs` does not
#: count them as differences (:func:`host_differences` lists them). ``memory_backend``:
#: ``guest-memfd`` or ``anonymous``; ``pre_fault_memory``: whether the host pre-faulted.
HOST_DETAILS = frozenset({"memory_backend", "pre_fault_memory"})

#: The ``format`` value of every header record.
LOG_FORMAT = "cvmlaunch-launch-log"
#: The schema version this module writes and the only one it reads (docs/log-format.md).
LOG_VERSION = 1

#: The most bytes one record may cover (1 Mi pages). Replaying a record costs a hash per page
#: even when no page hashes are stored (ZERO ranges), so this bound keeps a corrupt or hostile
#: log from making ``log verify`` run for hours; launch-time populates are far smaller.
MAX_RECORD_BYTES = 1 << 32

#: A header setting: JSON scalars only (no floats).
SettingValue = str | int | bool | None


class Technology(enum.Enum):
    """The measurement a log describes (the value is what the log file says)."""

    SEV_SNP = "sev-snp"  # SNP launch digest (PAGE_INFO chain, SHA-384)
    SEV = "sev"  # SEV GCTX.LD (SHA-256 over LAUNCH_UPDATE_DATA)
    SEV_ES = "sev-es"  # SEV-ES GCTX.LD (SHA-256, plus LAUNCH_UPDATE_VMSA)
    TDX = "tdx"  # TDX MRTD (SHA-384 over PAGE.ADD / MR.EXTEND)
    PLAIN = "plain"  # no hardware measurement: cvmlaunch's transcript digest (informational)


@dataclass(frozen=True, slots=True)
class LogInput:
    """One input file (or buffer) that went into the launch.

    Args:
        role: what the input is for, e.g. ``firmware``, ``kernel``, ``initrd``, ``cmdline``.
        name: the file name as given (informational; not used by replay).
        size: its length in bytes.
        sha256: SHA-256 of the whole input, if computed.
        sha384: SHA-384 of the whole input, if computed.

    Raises:
        LayoutError: negative size, a digest of the wrong length, or neither digest.
    """

    role: str
    name: str
    size: int
    sha256: bytes | None = None
    sha384: bytes | None = None

    def __post_init__(self) -> None:
        if not self.role:
            raise LayoutError("log input: empty role")
        if self.size < 0:
            raise LayoutError(f"log input {self.role}: negative size")
        if self.sha256 is None and self.sha384 is None:
            raise LayoutError(f"log input {self.role}: needs a SHA-256 or a SHA-384")
        if self.sha256 is not None and len(self.sha256) != 32:
            raise LayoutError(f"log input {self.role}: sha256 must be 32 bytes")
        if self.sha384 is not None and len(self.sha384) != 48:
            raise LayoutError(f"log input {self.role}: sha384 must be 48 bytes")


@dataclass(frozen=True, slots=True)
class LogHeader:
    """The first record: what was measured and every setting that affects the digest.

    Args:
        technology: the measurement the log describes.
        algorithm: the replay rule, e.g. ``snp-page-info-chain`` (a technology may have several).
        settings: every setting that affects the digest (name -> JSON scalar); kept sorted.
        inputs: the inputs, in the order the technology lists them.
        tool_version: the version of the tool that wrote the log.
        initial_digest: the running value before the first record (SNP: 48 zero bytes, or the
            precomputed firmware digest), or None when the algorithm has no such value.
        tool: the tool's name.
    """

    technology: Technology
    algorithm: str
    settings: Mapping[str, SettingValue]
    inputs: tuple[LogInput, ...]
    tool_version: str
    initial_digest: bytes | None = None
    tool: str = "cvmlaunch"

    def __post_init__(self) -> None:
        if not isinstance(self.technology, Technology):
            raise LayoutError(f"log header: unknown technology {self.technology!r}")
        if not self.algorithm:
            raise LayoutError("log header: empty algorithm")
        for key, value in self.settings.items():
            if not isinstance(key, str) or not key:
                raise LayoutError(f"log header: bad setting name {key!r}")
            if value is not None and not isinstance(value, str | int | bool):
                raise LayoutError(f"log header: setting {key} has a non-scalar value")
        object.__setattr__(self, "settings", MappingProxyType(dict(sorted(self.settings.items()))))
        roles = [i.role for i in self.inputs]
        if len(set(roles)) != len(roles):
            raise LayoutError("log header: input roles are not unique")
        object.__setattr__(self, "inputs", tuple(self.inputs))

    def input(self, role: str) -> LogInput | None:
        """The input with ``role``, or None."""
        for item in self.inputs:
            if item.role == role:
                return item
        return None


@dataclass(frozen=True, slots=True)
class LogFooter:
    """The last record: the final digest and the number of range records before it."""

    digest: bytes
    records: int

    def __post_init__(self) -> None:
        if not self.digest:
            raise LayoutError("log footer: empty digest")
        if self.records < 0:
            raise LayoutError("log footer: negative record count")


@dataclass(frozen=True, slots=True)
class MeasurementLog:
    """A whole log: header, range records (in populate order), footer.

    Raises:
        LayoutError: sequence numbers that are not 0, 1, 2, ... or a footer count that does
            not match.
    """

    header: LogHeader
    entries: tuple[LogEntry, ...]
    footer: LogFooter

    def __post_init__(self) -> None:
        object.__setattr__(self, "entries", tuple(self.entries))
        for i, entry in enumerate(self.entries):
            if entry.seq != i:
                raise LayoutError(f"log record {i}: sequence number is {entry.seq}")
        if self.footer.records != len(self.entries):
            raise LayoutError(
                f"log footer counts {self.footer.records} records, the log has {len(self.entries)}"
            )

    @property
    def digest(self) -> bytes:
        """The final digest (from the footer)."""
        return self.footer.digest


# ------------------------------------------------------------------ building records


def entry_for_range(
    *,
    seq: int,
    op: LogOp,
    gpa: int,
    size: int,
    page_type: PageType,
    measured: bool,
    provenance: Provenance,
    data: Buffer,
    with_pages: bool,
    digest_after: bytes | None,
) -> LogEntry:
    """Build a record for a populated range, hashing its contents.

    Args:
        seq, op, gpa, size, page_type, measured, provenance, digest_after: as in
            :class:`~cvmlaunch.log_entry.LogEntry`.
        data: the first bytes of the range; the rest (up to ``size``) is zero.
        with_pages: also record the SHA-384 of every 4 KiB page (SNP needs them to replay).

    Returns:
        The record.

    Raises:
        ConfigError: more data than the range holds.
    """
    view = memoryview(data)
    content = _content_hash(view, size)
    pages: tuple[bytes, ...] = ()
    if with_pages:
        from cvmlaunch.measure.pages import page_hashes

        pages = tuple(page_hashes(view, 0, size // PAGE_SIZE))
    return LogEntry(
        seq=seq,
        op=op,
        gpa=gpa,
        size=size,
        page_type=page_type,
        measured=measured,
        provenance=provenance,
        content_sha384=content,
        page_sha384=pages,
        digest_after=digest_after,
    )


# ------------------------------------------------------------------ replay


#: Gives the bytes of a logged range (``entry.size`` bytes, or fewer meaning zero fill), for
#: technologies whose digest needs the measured bytes themselves (TDX MRTD, SEV).
ContentProvider = Callable[[LogEntry], Buffer]


class Replayer(Protocol):
    """A technology's digest fold over log records.

    Called with the header, the records in order and an optional content provider; yields the
    running digest after each record, in order (so a caller can check every running value).
    Raises :class:`~cvmlaunch.errors.LogFormatError` for records it cannot replay, and
    :class:`~cvmlaunch.errors.ConfigError` when it needs contents and got none.
    """

    def __call__(
        self,
        header: LogHeader,
        entries: Sequence[LogEntry],
        contents: ContentProvider | None,
    ) -> Iterator[bytes]: ...


_REPLAYERS: dict[tuple[Technology, str], Replayer] = {}

#: Where the built-in replayers live; imported on first use so that reading a log does not
#: import every technology.
_BUILTIN_MODULES: dict[Technology, str] = {
    Technology.SEV_SNP: "cvmlaunch.measure.snp_chain",
    Technology.SEV: "cvmlaunch.measure.sev",
    Technology.SEV_ES: "cvmlaunch.measure.sev",
    Technology.TDX: "cvmlaunch.measure.tdx",
    Technology.PLAIN: "cvmlaunch.measure.plain",
}


def register_replayer(technology: Technology, algorithm: str, replayer: Replayer) -> None:
    """Register ``replayer`` for logs of ``technology`` with header ``algorithm``.

    For replayers outside cvmlaunch's built-in modules (those list theirs in ``REPLAYERS``);
    registering the same pair again replaces the earlier replayer.
    """
    _REPLAYERS[(technology, algorithm)] = replayer


def get_replayer(technology: Technology, algorithm: str) -> Replayer:
    """The replayer for ``technology``/``algorithm`` (importing its module on first use).

    A built-in technology module lists its replayers in a module-level ``REPLAYERS`` dict
    keyed by ``(technology value, algorithm)``, so that it need not import this module.

    Raises:
        LogFormatError: no replayer is known for the pair.
    """
    key = (technology, algorithm)
    if key not in _REPLAYERS and technology in _BUILTIN_MODULES:
        name = _BUILTIN_MODULES[technology]
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a missing dependency inside the module is a bug
                raise
        else:
            table: dict[tuple[str, str], Replayer] = getattr(module, "REPLAYERS", {})
            for (tech, algo), replayer in table.items():
                _REPLAYERS.setdefault((Technology(tech), algo), replayer)
    try:
        return _REPLAYERS[key]
    except KeyError:
        raise LogFormatError(
            f"no replay rule for technology {technology.value!r} algorithm {algorithm!r}"
        ) from None


def _describe(entry: LogEntry) -> str:
    return (
        f"record {entry.seq} ({entry.op.value} {entry.page_type.name} "
        f"[{entry.gpa:#x}-{entry.gpa + entry.size:#x}) {entry.provenance.describe()})"
    )


def replay_log(log: MeasurementLog, contents: ContentProvider | None = None) -> bytes:
    """Replay ``log`` with its technology's fold and return the final digest.

    Does not compare anything; see :func:`verify_log`.

    Raises:
        LogFormatError: no replayer for the log, or records the replayer cannot use.
        ConfigError: the technology needs contents and ``contents`` is None.
    """
    replayer = get_replayer(log.header.technology, log.header.algorithm)
    digest = log.header.initial_digest or b""
    for digest in replayer(log.header, log.entries, contents):  # noqa: B007
        pass
    return digest


def complete_log(
    header: LogHeader,
    entries: Sequence[LogEntry],
    contents: ContentProvider | None = None,
) -> MeasurementLog:
    """Make a whole log from records that carry no running digests (e.g. those the KVM layer
    records while it populates): replay them, fill in each ``digest_after`` and the footer.

    Args:
        header: the header (technology, algorithm, settings, inputs, initial digest).
        entries: the records in populate order, numbered from 0.
        contents: the bytes of each range, for technologies that need them.

    Raises:
        LogFormatError: no replayer, or records it cannot use.
        ConfigError: contents are needed and not given.
        LayoutError: records not numbered 0, 1, 2, ...
    """
    replayer = get_replayer(header.technology, header.algorithm)
    done: list[LogEntry] = []
    digest = header.initial_digest or b""
    for entry, digest in zip(entries, replayer(header, entries, contents), strict=True):
        done.append(dataclasses.replace(entry, digest_after=digest))
    if not digest:
        raise LogFormatError("a log with no records and no initial digest has no digest")
    return MeasurementLog(header, tuple(done), LogFooter(digest=digest, records=len(done)))


def verify_log(log: MeasurementLog, contents: ContentProvider | None = None) -> bytes:
    """Replay ``log`` and check every running digest, the footer and (with ``contents``) every
    range's contents hash.

    Args:
        log: the log.
        contents: the bytes of each range, for technologies that need them; when given, each
            range's ``content_sha384`` is checked against them too.

    Returns:
        The final digest (equal to the footer's).

    Raises:
        MeasurementMismatch: a running digest, a contents hash or the footer digest differs;
            the message names the first record that differs.
        LogFormatError: the replayer cannot use the log.
        ConfigError: contents are needed and not given.
    """
    replayer = get_replayer(log.header.technology, log.header.algorithm)
    if contents is not None:
        for entry in log.entries:
            data = memoryview(contents(entry))
            actual = _content_hash(data, entry.size)
            if actual != entry.content_sha384:
                raise MeasurementMismatch(
                    f"{_describe(entry)} contents SHA-384",
                    expected=entry.content_sha384,
                    actual=actual,
                )
    digest = log.header.initial_digest or b""
    count = 0
    for entry, digest in zip(log.entries, replayer(log.header, log.entries, contents), strict=True):
        count += 1
        if entry.digest_after is not None and entry.digest_after != digest:
            raise MeasurementMismatch(
                f"{_describe(entry)} running digest", expected=entry.digest_after, actual=digest
            )
    if count != len(log.entries):  # pragma: no cover - zip(strict=True) raises first
        raise LogFormatError("replay stopped early")
    if digest != log.footer.digest:
        raise MeasurementMismatch("footer digest", expected=log.footer.digest, actual=digest)
    return digest


def _content_hash(data: memoryview, size: int) -> bytes:
    if len(data) > size:
        raise ConfigError(f"contents of {len(data):#x} bytes for a range of {size:#x}")
    from cvmlaunch.measure.pages import range_sha384

    return range_sha384(data, size)


# ------------------------------------------------------------------ diff


@dataclass(frozen=True, slots=True)
class LogDifference:
    """Where two logs first diverge.

    Args:
        where: ``header``, ``record N`` or ``footer``.
        what: the field that differs (e.g. ``setting vcpus``, ``gpa``, ``content_sha384``).
        a: the value in the first log, as text.
        b: the value in the second log, as text.
    """

    where: str
    what: str
    a: str
    b: str

    def describe(self) -> str:
        """One line, e.g. ``record 7: gpa differs: 0x810000 vs 0x811000``."""
        return f"{self.where}: {self.what} differs: {self.a} vs {self.b}"


def host_differences(a: MeasurementLog, b: MeasurementLog) -> tuple[LogDifference, ...]:
    """The :data:`HOST_DETAILS` settings in which two logs' headers differ (non-measured
    metadata: two launches that differ only there describe the same launch)."""
    out = []
    for key in sorted(HOST_DETAILS & (set(a.header.settings) | set(b.header.settings))):
        va = a.header.settings.get(key, "(absent)")
        vb = b.header.settings.get(key, "(absent)")
        if va != vb or type(va) is not type(vb):
            out.append(LogDifference("header", f"host detail {key}", _text(va), _text(vb)))
    return tuple(out)


def _text(value: object) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return str(value.name if isinstance(value, PageType) else value.value)
    if isinstance(value, int):
        return hex(value)
    return str(value)


def diff_logs(a: MeasurementLog, b: MeasurementLog) -> LogDifference | None:
    """The first difference between two logs, header first, then record by record.

    Header: technology, algorithm, each setting (sorted by name; not the
    :data:`HOST_DETAILS`, see :func:`host_differences`), the initial digest, each
    input's size and hashes (by role). Records: operation, GPA, size, page type, measured
    flag, contents hash, page hashes (naming the first page), provenance (kind, offset and
    index; names are informational, like input names), running digest.
    Then the number of records and the final digest. The tool version is not compared.

    Returns:
        The first difference, or None when the logs describe the same launch.
    """
    ha, hb = a.header, b.header
    pairs: list[tuple[str, object, object]] = [
        ("technology", ha.technology, hb.technology),
        ("algorithm", ha.algorithm, hb.algorithm),
    ]
    for what, va, vb in pairs:
        if va != vb:
            return LogDifference("header", what, _text(va), _text(vb))
    for key in sorted((set(ha.settings) | set(hb.settings)) - HOST_DETAILS):
        va_s = ha.settings.get(key, "(absent)")
        vb_s = hb.settings.get(key, "(absent)")
        if va_s != vb_s or type(va_s) is not type(vb_s):
            return LogDifference("header", f"setting {key}", _text(va_s), _text(vb_s))
    if ha.initial_digest != hb.initial_digest:
        return LogDifference(
            "header", "initial digest", _text(ha.initial_digest), _text(hb.initial_digest)
        )
    roles = [i.role for i in ha.inputs] + [i.role for i in hb.inputs if ha.input(i.role) is None]
    for role in roles:
        ia, ib = ha.input(role), hb.input(role)
        if ia is None or ib is None:
            return LogDifference(
                "header",
                f"input {role}",
                "(absent)" if ia is None else "present",
                "(absent)" if ib is None else "present",
            )
        pairs = [
            ("size", ia.size, ib.size),
            ("sha256", ia.sha256, ib.sha256),
            ("sha384", ia.sha384, ib.sha384),
        ]
        for what, va, vb in pairs:
            if va is not None and vb is not None and va != vb:
                return LogDifference("header", f"input {role} {what}", _text(va), _text(vb))
    for ea, eb in zip(a.entries, b.entries, strict=False):
        where = f"record {ea.seq}"
        pairs = [
            ("operation", ea.op, eb.op),
            ("gpa", ea.gpa, eb.gpa),
            ("size", ea.size, eb.size),
            ("page type", ea.page_type, eb.page_type),
            ("measured", ea.measured, eb.measured),
            ("content_sha384", ea.content_sha384, eb.content_sha384),
        ]
        for what, va, vb in pairs:
            if va != vb:
                return LogDifference(where, what, _text(va), _text(vb))
        for i, (pa, pb) in enumerate(zip(ea.page_sha384, eb.page_sha384, strict=False)):
            if pa != pb:
                gpa = ea.gpa + i * PAGE_SIZE
                return LogDifference(where, f"page {i} (GPA {gpa:#x}) sha384", pa.hex(), pb.hex())
        if len(ea.page_sha384) != len(eb.page_sha384):
            return LogDifference(
                where,
                "page hash count",
                str(len(ea.page_sha384)),
                str(len(eb.page_sha384)),
            )
        pa_, pb_ = ea.provenance, eb.provenance
        if (pa_.kind, pa_.offset, pa_.index) != (pb_.kind, pb_.offset, pb_.index):
            return LogDifference(
                where, "provenance", ea.provenance.describe(), eb.provenance.describe()
            )
        if ea.digest_after != eb.digest_after:
            return LogDifference(
                where, "running digest", _text(ea.digest_after), _text(eb.digest_after)
            )
    if len(a.entries) != len(b.entries):
        return LogDifference(
            f"record {min(len(a.entries), len(b.entries))}",
            "presence",
            "present" if len(a.entries) > len(b.entries) else "(absent)",
            "present" if len(b.entries) > len(a.entries) else "(absent)",
        )
    if a.footer.digest != b.footer.digest:
        return LogDifference("footer", "digest", a.footer.digest.hex(), b.footer.digest.hex())
    return None


# ------------------------------------------------------------------ JSON Lines: writing


def _canonical(obj: Mapping[str, Any]) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _provenance_obj(p: Provenance) -> dict[str, Any]:
    return {
        "kind": p.kind.value,
        "name": p.name,
        "offset": p.offset,
        "index": p.index,
        "detail": p.detail,
    }


def _hex(value: bytes | None) -> str | None:
    return None if value is None else value.hex()


def dump_log(log: MeasurementLog) -> Iterator[str]:
    """Yield the log's lines (each ending in ``\\n``), header first, footer last."""
    h = log.header
    yield (
        _canonical(
            {
                "record": "header",
                "format": LOG_FORMAT,
                "version": LOG_VERSION,
                "technology": h.technology.value,
                "algorithm": h.algorithm,
                "settings": dict(h.settings),
                "inputs": [
                    {
                        "role": i.role,
                        "name": i.name,
                        "size": i.size,
                        "sha256": _hex(i.sha256),
                        "sha384": _hex(i.sha384),
                    }
                    for i in h.inputs
                ],
                "initial_digest": _hex(h.initial_digest),
                "tool": {"name": h.tool, "version": h.tool_version},
            }
        )
        + "\n"
    )
    for e in log.entries:
        yield (
            _canonical(
                {
                    "record": "range",
                    "seq": e.seq,
                    "op": e.op.value,
                    "gpa": e.gpa,
                    "size": e.size,
                    "page_type": e.page_type.name,
                    "measured": e.measured,
                    "provenance": _provenance_obj(e.provenance),
                    "content_sha384": e.content_sha384.hex(),
                    "page_sha384": [p.hex() for p in e.page_sha384],
                    "digest_after": _hex(e.digest_after),
                }
            )
            + "\n"
        )
    yield (
        _canonical(
            {"record": "footer", "records": log.footer.records, "digest": log.footer.digest.hex()}
        )
        + "\n"
    )


def dumps_log(log: MeasurementLog) -> str:
    """The whole log as one string (JSON Lines, canonical)."""
    return "".join(dump_log(log))


# ------------------------------------------------------------------ JSON Lines: reading


_HEX = re.compile(r"(?:[0-9a-f]{2})+")


class _Line:
    """Typed field access on one decoded JSON object, with errors naming the line."""

    def __init__(self, obj: dict[str, Any], where: str) -> None:
        self.obj = obj
        self.where = where

    def fail(self, message: str) -> LogFormatError:
        return LogFormatError(f"{self.where}: {message}")

    def keys(self, expected: Iterable[str]) -> None:
        want = set(expected)
        have = set(self.obj)
        if have - want:
            raise self.fail(f"unknown field {sorted(have - want)[0]!r}")
        if want - have:
            raise self.fail(f"missing field {sorted(want - have)[0]!r}")

    def get_str(self, key: str, *, sub: Mapping[str, Any] | None = None) -> str:
        value = (self.obj if sub is None else sub)[key]
        if not isinstance(value, str):
            raise self.fail(f"{key} must be a string")
        return value

    def get_int(
        self, key: str, *, sub: Mapping[str, Any] | None = None, optional: bool = False
    ) -> Any:
        value = (self.obj if sub is None else sub)[key]
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(f"{key} must be an integer")
        if value < 0:
            raise self.fail(f"{key} must not be negative")
        return value

    def get_bool(self, key: str) -> bool:
        value = self.obj[key]
        if not isinstance(value, bool):
            raise self.fail(f"{key} must be true or false")
        return value

    def get_hex(
        self,
        key: str,
        *,
        sub: Mapping[str, Any] | None = None,
        length: int | None = None,
        optional: bool = False,
    ) -> Any:
        value = (self.obj if sub is None else sub)[key]
        if value is None and optional:
            return None
        return self.hex_value(key, value, length)

    def hex_value(self, key: str, value: object, length: int | None) -> bytes:
        if not isinstance(value, str) or not _HEX.fullmatch(value):
            raise self.fail(f"{key} must be lowercase hex with an even number of digits")
        raw = bytes.fromhex(value)
        if length is not None and len(raw) != length:
            raise self.fail(f"{key} must be {length} bytes, not {len(raw)}")
        return raw


def _no_floats(text: str) -> Any:
    raise ValueError(f"floating-point number {text} (the log uses integers only)")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"duplicate key {key!r}")
        obj[key] = value
    return obj


def _decode(text: str, where: str) -> dict[str, Any]:
    try:
        obj = json.loads(
            text,
            parse_float=_no_floats,
            parse_constant=_no_floats,
            object_pairs_hook=_no_duplicates,
        )
    except ValueError as exc:  # JSONDecodeError is a ValueError
        raise LogFormatError(f"{where}: not valid JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise LogFormatError(f"{where}: a record must be a JSON object")
    return obj


_HEADER_KEYS = (
    "record",
    "format",
    "version",
    "technology",
    "algorithm",
    "settings",
    "inputs",
    "initial_digest",
    "tool",
)
_INPUT_KEYS = ("role", "name", "size", "sha256", "sha384")
_RANGE_KEYS = (
    "record",
    "seq",
    "op",
    "gpa",
    "size",
    "page_type",
    "measured",
    "provenance",
    "content_sha384",
    "page_sha384",
    "digest_after",
)
_PROVENANCE_KEYS = ("kind", "name", "offset", "index", "detail")
_FOOTER_KEYS = ("record", "records", "digest")


def _parse_header(line: _Line) -> LogHeader:
    line.keys(_HEADER_KEYS)
    if line.get_str("format") != LOG_FORMAT:
        raise line.fail(f"format is {line.obj['format']!r}, expected {LOG_FORMAT!r}")
    version = line.get_int("version")
    if version != LOG_VERSION:
        raise line.fail(f"log format version {version} is not supported (this reads {LOG_VERSION})")
    try:
        technology = Technology(line.get_str("technology"))
    except ValueError:
        raise line.fail(f"unknown technology {line.obj['technology']!r}") from None
    settings_obj = line.obj["settings"]
    if not isinstance(settings_obj, dict):
        raise line.fail("settings must be an object")
    for key, value in settings_obj.items():
        if value is not None and not isinstance(value, str | int | bool):
            raise line.fail(f"setting {key} must be a string, integer, boolean or null")
    inputs_obj = line.obj["inputs"]
    if not isinstance(inputs_obj, list):
        raise line.fail("inputs must be a list")
    inputs: list[LogInput] = []
    for item in inputs_obj:
        if not isinstance(item, dict):
            raise line.fail("each input must be an object")
        sub = _Line(item, f"{line.where} input {len(inputs)}")
        sub.keys(_INPUT_KEYS)
        try:
            inputs.append(
                LogInput(
                    role=sub.get_str("role"),
                    name=sub.get_str("name"),
                    size=sub.get_int("size"),
                    sha256=sub.get_hex("sha256", length=32, optional=True),
                    sha384=sub.get_hex("sha384", length=48, optional=True),
                )
            )
        except LayoutError as exc:
            raise line.fail(str(exc)) from exc
    tool_obj = line.obj["tool"]
    if not isinstance(tool_obj, dict):
        raise line.fail("tool must be an object")
    tool = _Line(tool_obj, f"{line.where} tool")
    tool.keys(("name", "version"))
    try:
        return LogHeader(
            technology=technology,
            algorithm=line.get_str("algorithm"),
            settings=settings_obj,
            inputs=tuple(inputs),
            tool_version=tool.get_str("version"),
            initial_digest=line.get_hex("initial_digest", optional=True),
            tool=tool.get_str("name"),
        )
    except LayoutError as exc:
        raise line.fail(str(exc)) from exc


def _parse_range(line: _Line, seq_expected: int) -> LogEntry:
    line.keys(_RANGE_KEYS)
    seq = line.get_int("seq")
    if seq != seq_expected:
        raise line.fail(f"sequence number {seq}, expected {seq_expected}")
    try:
        op = LogOp(line.get_str("op"))
    except ValueError:
        raise line.fail(f"unknown op {line.obj['op']!r}") from None
    type_name = line.get_str("page_type")
    if type_name not in PageType.__members__:
        raise line.fail(f"unknown page type {type_name!r}")
    prov_obj = line.obj["provenance"]
    if not isinstance(prov_obj, dict):
        raise line.fail("provenance must be an object")
    prov = _Line(prov_obj, f"{line.where} provenance")
    prov.keys(_PROVENANCE_KEYS)
    try:
        kind = SourceKind(prov.get_str("kind"))
    except ValueError:
        raise line.fail(f"unknown provenance kind {prov_obj['kind']!r}") from None
    provenance = Provenance(
        kind=kind,
        name=prov.get_str("name"),
        offset=prov.get_int("offset", optional=True),
        index=prov.get_int("index", optional=True),
        detail=prov.get_str("detail"),
    )
    pages_obj = line.obj["page_sha384"]
    if not isinstance(pages_obj, list):
        raise line.fail("page_sha384 must be a list")
    pages = tuple(line.hex_value("page_sha384", p, 48) for p in pages_obj)
    size = line.get_int("size")
    gpa = line.get_int("gpa")
    if size <= 0:
        raise line.fail("size must be positive")
    if size > MAX_RECORD_BYTES:
        raise line.fail(
            f"size {size:#x} exceeds {MAX_RECORD_BYTES:#x} bytes, the most one record may cover"
        )
    if pages and len(pages) * PAGE_SIZE != size:
        raise line.fail(f"{len(pages)} page hashes for a range of {size:#x} bytes")
    try:
        return LogEntry(
            seq=seq,
            op=op,
            gpa=gpa,
            size=size,
            page_type=PageType[type_name],
            measured=line.get_bool("measured"),
            provenance=provenance,
            content_sha384=line.get_hex("content_sha384", length=48),
            page_sha384=pages,
            digest_after=line.get_hex("digest_after", optional=True),
        )
    except LayoutError as exc:
        raise line.fail(str(exc)) from exc


def parse_log(text: str, *, name: str = "log") -> MeasurementLog:
    """Parse a JSON Lines launch log strictly.

    Args:
        text: the whole log.
        name: the log's name (file name) for error messages.

    Returns:
        The log.

    Raises:
        LogFormatError: anything that does not follow docs/log-format.md, naming the line.
    """
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    header: LogHeader | None = None
    entries: list[LogEntry] = []
    footer: LogFooter | None = None
    for number, raw in enumerate(lines, start=1):
        where = f"{name} line {number}"
        if footer is not None:
            raise LogFormatError(f"{where}: text after the footer")
        if not raw.strip():
            raise LogFormatError(f"{where}: empty line")
        line = _Line(_decode(raw, where), where)
        kind = line.obj.get("record")
        if header is None:
            if kind != "header":
                raise line.fail("the first record must be the header")
            header = _parse_header(line)
        elif kind == "range":
            entries.append(_parse_range(line, len(entries)))
        elif kind == "footer":
            line.keys(_FOOTER_KEYS)
            records = line.get_int("records")
            if records != len(entries):
                raise line.fail(f"footer counts {records} records, the log has {len(entries)}")
            footer = LogFooter(digest=line.get_hex("digest"), records=records)
        elif kind == "header":
            raise line.fail("a second header")
        else:
            raise line.fail(f"unknown record type {kind!r}")
    if header is None:
        raise LogFormatError(f"{name}: empty log")
    if footer is None:
        raise LogFormatError(f"{name} line {len(lines) + 1}: missing footer (truncated log?)")
    return MeasurementLog(header=header, entries=tuple(entries), footer=footer)
