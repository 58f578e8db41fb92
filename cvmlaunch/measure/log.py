"""The launch measurement log: the model, its limits and the replay of its digest.

Rule 1: technology-neutral. The log model (:class:`LogHeader`,
:class:`~cvmlaunch.log_entry.LogEntry` records, :class:`LogFooter`) knows nothing about SNP or
TDX; each technology registers a *replayer* (its digest fold over log records) with
:func:`register_replayer`. SNP can replay from the per-page SHA-384 list alone; technologies
whose digest needs the measured bytes (TDX MRTD, SEV's SHA-256 stream) take a
:data:`ContentProvider`.

Rule 2: one set of limits (:data:`MAX_RECORDS`, :data:`MAX_COVERED_BYTES`, ... below), checked
by :func:`check_limits`, which the writer runs before it writes and the reader after it reads:
the writer never emits a log the reader rejects, and a replay never runs longer than the
limits allow.

The rest of the log lives beside this module, split along its seams:
:mod:`cvmlaunch.measure.log_json` (the canonical JSON Lines form: ``dumps_log``,
``parse_log``), :mod:`cvmlaunch.measure.log_check` (``check_log``: every field against the
plan the header's settings give), :mod:`cvmlaunch.measure.log_diff` (``diff_logs``) and
:mod:`cvmlaunch.measure.log_sign` (DSSE envelopes). Their public names are importable from
here too.

This module does no I/O.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

from cvmlaunch.errors import LayoutError, LogFormatError, MeasurementMismatch
from cvmlaunch.layout import MAX_GPA, Buffer
from cvmlaunch.log_entry import LogEntry
from cvmlaunch.measure.rtmr import RTMR_COUNT, RtmrEvent
from cvmlaunch.technology import Technology

TYPE_CHECKING = False
if TYPE_CHECKING:  # the sibling modules are imported when their names are first used
    from cvmlaunch.measure.log_diff import LogDiff, LogDifference, diff_logs, host_differences
    from cvmlaunch.measure.log_json import dump_log, dumps_log, parse_log

__all__ = [
    "HOST_DETAILS",
    "LOG_FORMAT",
    "LOG_VERSION",
    "MAX_COVERED_BYTES",
    "MAX_EVENT_DATA",
    "MAX_INT_DIGITS",
    "MAX_LINE_BYTES",
    "MAX_NESTING",
    "MAX_RECORDS",
    "MAX_RTMR_EVENTS",
    "READ_VERSIONS",
    "RTMR_EVENT_VERSION",
    "ZERO_MARKER_VERSION",
    "ContentProvider",
    "LogDiff",
    "LogDifference",
    "LogFooter",
    "LogHeader",
    "LogInput",
    "MeasurementLog",
    "Replayer",
    "SettingValue",
    "Technology",
    "base_name",
    "check_limits",
    "cmdline_input",
    "complete_log",
    "diff_logs",
    "dump_log",
    "dumps_log",
    "get_replayer",
    "host_differences",
    "parse_log",
    "register_replayer",
    "replay_if_possible",
    "replay_log",
    "verify_log",
    "zero_range_sha384",
]

#: Header settings that describe the host a launch ran on, not the launch (non-measured
#: metadata): no digest covers them, replay ignores them, and :func:`diff_logs` does not
#: count them as differences (:func:`host_differences` lists them). ``memory_backend``:
#: ``guest-memfd`` or ``anonymous``; ``pre_fault_memory``: whether the host pre-faulted.
HOST_DETAILS = frozenset({"memory_backend", "pre_fault_memory"})

#: The ``format`` value of every header record.
LOG_FORMAT = "cvmlaunch-launch-log"
#: The schema version this module writes (docs/log-format.md). Version 2: no paths (inputs
#: and provenance by base name), every input with its SHA-256, the command line input
#: includes its terminating NUL. Version 3: a range the plan gives no bytes carries the zero
#: marker (``content_sha384`` null) instead of the SHA-384 of its zeros. Version 4: a TDX log
#: may carry ``rtmr_event`` records after its ranges and the RTMRs they replay to in its
#: footer.
LOG_VERSION = 4
#: The versions the reader takes (version 1 logs may carry paths as names; versions 1 and 2
#: hash zero ranges).
READ_VERSIONS = (1, 2, 3, 4)
#: The first version whose ranges may carry the zero marker.
ZERO_MARKER_VERSION = 3
#: The first version that may carry RTMR events.
RTMR_EVENT_VERSION = 4

# ---- the limits (docs/log-format.md, "Limits"): the reader refuses, the writer never writes,
# a log past any of them.

#: The longest line, newline excluded: bounds the memory one record takes. A NORMAL SNP
#: record stores 99 bytes per 4 KiB page, so one line holds the page hashes of a 2.5 GiB
#: range.
MAX_LINE_BYTES = 1 << 26
#: The deepest nesting of JSON arrays and objects in a line (a header is 3 deep).
MAX_NESTING = 4
#: The most JSON arrays and objects in one line (a header with its inputs has a dozen).
MAX_CONTAINERS = 64
#: The most digits of an integer: every integer of the format fits in 64 bits (20 digits).
MAX_INT_DIGITS = 20
#: The most range records in a log.
MAX_RECORDS = 1 << 20
#: The most bytes the records of a log may cover together (1 TiB). Replaying a record costs
#: a step per page even where no contents are hashed (an SNP ZERO page is one PAGE_INFO
#: hash, a TDX PAGE.ADD one 128-byte buffer), so this bounds the replay of any log the
#: reader accepts (about 2^28 steps); every record also ends at or below the largest guest
#: physical address (:data:`cvmlaunch.layout.MAX_GPA`).
MAX_COVERED_BYTES = 1 << 40
#: The most RTMR event records in a log (TDVF and the EFI stub log a few dozen).
MAX_RTMR_EVENTS = 4096
#: The most event data bytes one RTMR event record carries (the largest TDVF logs is the TD
#: HOB, a few KiB; Secure Boot variables with certificates stay well below this).
MAX_EVENT_DATA = 1 << 20

#: A header setting: JSON scalars only (no floats).
SettingValue = str | int | bool | None


def base_name(name: str) -> str:
    """The last component of a path (``/a/b/OVMF.fd`` -> ``OVMF.fd``): logs carry no paths,
    so that the same launch gives the same bytes from any directory on any machine."""
    return name.rsplit("/", 1)[-1]


@dataclass(frozen=True, slots=True)
class LogInput:
    """One input file (or buffer) that went into the launch.

    Args:
        role: what the input is for, e.g. ``firmware``, ``kernel``, ``initrd``, ``cmdline``.
        name: the file's base name (informational: inputs are found by their SHA-256; a path
            given here is cut to its last component, :func:`base_name`).
        size: its length in bytes.
        sha256: SHA-256 of the whole input (format version 2 requires it).
        sha384: SHA-384 of the whole input, if computed.

    The ``cmdline`` input is the command line's bytes followed by the NUL that ends it (as
    QEMU measures it and the launcher writes it): :func:`cmdline_input` makes it.

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
        object.__setattr__(self, "name", base_name(self.name))


def cmdline_input(cmdline: str | bytes | None) -> LogInput:
    """The ``cmdline`` input of a launch: the command line's bytes and the terminating NUL,
    the one definition of the command line's hash (its SHA-256 is the kernel-hashes table's
    ``cmdline_sha256``; docs/log-format.md, "The command line")."""
    import hashlib

    raw = cmdline.encode() if isinstance(cmdline, str) else (cmdline or b"")
    data = raw + b"\0"
    return LogInput(
        role="cmdline",
        name="cmdline",
        size=len(data),
        sha256=hashlib.sha256(data).digest(),
        sha384=hashlib.sha384(data).digest(),
    )


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
        format_version: the format version the log was read as (a new log: :data:`LOG_VERSION`;
            written logs are always that version).
    """

    technology: Technology
    algorithm: str
    settings: Mapping[str, SettingValue]
    inputs: tuple[LogInput, ...]
    tool_version: str
    initial_digest: bytes | None = None
    tool: str = "cvmlaunch"
    format_version: int = LOG_VERSION

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
    """The last record: the final digest and the number of range records before it; for a
    log with RTMR events, the RTMR0..3 they replay to (None for a register no event extends)."""

    digest: bytes
    records: int
    rtmrs: tuple[bytes | None, ...] = ()

    def __post_init__(self) -> None:
        if not self.digest:
            raise LayoutError("log footer: empty digest")
        if self.records < 0:
            raise LayoutError("log footer: negative record count")
        object.__setattr__(self, "rtmrs", tuple(self.rtmrs))
        if self.rtmrs and len(self.rtmrs) != RTMR_COUNT:
            raise LayoutError(f"log footer: {len(self.rtmrs)} RTMRs, not {RTMR_COUNT}")


@dataclass(frozen=True, slots=True)
class MeasurementLog:
    """A whole log: header, range records (in populate order), RTMR events (TDX only, in
    the order the firmware extends them), footer.

    Raises:
        LayoutError: sequence numbers that are not 0, 1, 2, ... a footer count that does
            not match, RTMR events in a log that is not TDX, or events without the footer's
            RTMRs (or RTMRs without events).
    """

    header: LogHeader
    entries: tuple[LogEntry, ...]
    footer: LogFooter
    events: tuple[RtmrEvent, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "entries", tuple(self.entries))
        object.__setattr__(self, "events", tuple(self.events))
        if self.events and self.header.technology is not Technology.TDX:
            raise LayoutError(f"a {self.header.technology.value} log carries no RTMR events")
        if bool(self.events) != bool(self.footer.rtmrs):
            raise LayoutError("log footer: RTMRs go with RTMR events, and only with them")
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


def check_limits(log: MeasurementLog) -> None:
    """Check ``log`` against the format's limits (docs/log-format.md, "Limits"): the writer
    runs this before writing, the reader after reading.

    Raises:
        LogFormatError: more than :data:`MAX_RECORDS` records, a range ending above
            :data:`~cvmlaunch.layout.MAX_GPA`, or records covering more than
            :data:`MAX_COVERED_BYTES` together.
    """
    if len(log.events) > MAX_RTMR_EVENTS:
        raise LogFormatError(
            f"{len(log.events)} RTMR events: a log holds at most {MAX_RTMR_EVENTS}"
        )
    for n, event in enumerate(log.events):
        if len(event.event_data) > MAX_EVENT_DATA:
            raise LogFormatError(
                f"RTMR event {n}: {len(event.event_data)} bytes of event data (at most "
                f"{MAX_EVENT_DATA})"
            )
    if len(log.entries) > MAX_RECORDS:
        raise LogFormatError(f"{len(log.entries)} records: a log holds at most {MAX_RECORDS}")
    covered = 0
    for entry in log.entries:
        if entry.size <= 0:
            raise LogFormatError(f"record {entry.seq}: size must be positive")
        if entry.gpa + entry.size > MAX_GPA:
            raise LogFormatError(
                f"record {entry.seq}: range {entry.gpa:#x}+{entry.size:#x} ends above "
                f"{MAX_GPA:#x}, the largest guest physical address"
            )
        covered += entry.size
    if covered > MAX_COVERED_BYTES:
        raise LogFormatError(
            f"the records cover {covered} bytes together; a log may cover at most "
            f"{MAX_COVERED_BYTES} (1 TiB)"
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
            if entry.content_sha384 is None:  # the zero marker: O(bytes given), no hash
                if data.nbytes > entry.size or bytes(data).count(0) != data.nbytes:
                    raise MeasurementMismatch(
                        f"{_describe(entry)} contents: the log marks the range zero, the "
                        "contents given are not",
                        expected=b"",
                        actual=bytes(data[:64]),
                    )
                continue
            from cvmlaunch.digests import range_sha384

            actual = range_sha384(data, entry.size)
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


def replay_if_possible(log: MeasurementLog) -> bool:
    """Replay ``log`` and check its digests when the log alone suffices (SEV-SNP: its records
    carry every page hash); return whether it was replayed. The other technologies replay
    only with their inputs (:func:`cvmlaunch.measure.log_check.check_log`).

    Raises:
        MeasurementMismatch: a running digest or the footer does not replay.
    """
    if log.header.technology is not Technology.SEV_SNP:
        return False
    verify_log(log)
    return True


def zero_range_sha384(size: int) -> bytes:
    """The SHA-384 of ``size`` zero bytes: what format versions 1 and 2 store for a range
    that version 3 marks zero (comparing such a log with the plan costs O(size), once per
    distinct size)."""
    return _zero_range_sha384(size)


@functools.lru_cache(maxsize=64)
def _zero_range_sha384(size: int) -> bytes:
    from cvmlaunch.digests import range_sha384

    return range_sha384(b"", size)


#: Names that live in the sibling modules (the log's seams), importable from here too.
_SIBLINGS = {
    "dump_log": "log_json",
    "dumps_log": "log_json",
    "parse_log": "log_json",
    "LogDifference": "log_diff",
    "LogDiff": "log_diff",
    "diff_logs": "log_diff",
    "host_differences": "log_diff",
}


def __getattr__(name: str) -> Any:
    module = _SIBLINGS.get(name)
    if module is None:
        raise AttributeError(f"module 'cvmlaunch.measure.log' has no attribute {name!r}")
    return getattr(importlib.import_module(f"cvmlaunch.measure.{module}"), name)
