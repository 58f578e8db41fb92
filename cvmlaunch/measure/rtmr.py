"""TDX RTMR events: the extend fold, replay, and the event log as TCG CEL-JSON.

Rule 1: an event is what the firmware logs for one RTMR extend (:class:`RtmrEvent`): the RTMR
(0..3; the CC event log's MR index is one more: 1 = RTMR0, edk2 ``CC_MR_INDEX_*``), the TCG
event type, the event data as logged (where cvmlaunch can predict it; empty when it depends on
run-time state such as a load address), the SHA-384 digest extended, and a short description
(``"RTMR2 command line"``) that ``log diff`` names.

Rule 2: replay is the one fold ``RTMR = SHA384(RTMR || digest)`` from 48 zero bytes
(:func:`extend`), per RTMR, in log order; :func:`replay` is the only place it runs.

Rule 3: CEL-JSON (TCG Canonical Event Log Format v1.0, section 5 "JSON encoding"): an array of
records ``{"recnum", "pcr", "digests": [{"hashAlg": "sha384", "digest": hex}], "content_type":
"pcclient_std", "content": {"event_type": name or number, "event_data": hex}}``. ``pcr`` holds
the CC MR index as TDX event logs (CCEL) record it, so a CEL consumer replays it into
``RTMR[pcr - 1]``. The description is not part of CEL; :func:`events_from_cel` rebuilds one
from the event type.

Rule 4: in the launch log (format version 4), an event is an ``rtmr_event`` record whose body
is :func:`event_record` (docs/log-format.md); :func:`first_difference` is what ``log diff``
names.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cvmlaunch.errors import CheckFailed, LogFormatError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from cvmlaunch.measure.log import MeasurementLog

__all__ = [
    "RTMR_COUNT",
    "SHA384_SIZE",
    "EventType",
    "RtmrEvent",
    "cel_json",
    "checked_rtmrs",
    "describe_event",
    "event_from_record",
    "event_record",
    "events_from_cel",
    "events_to_cel",
    "extend",
    "first_difference",
    "inconsistent_events",
    "launch_log_rtmrs",
    "present_rtmrs",
    "replay",
    "sha384",
]

SHA384_SIZE = 48
RTMR_COUNT = 4
#: UEFI_VARIABLE_DATA's fixed part: GUID, u64 name length (characters), u64 data length.
_VARIABLE_HEADER = 32
_ZERO = bytes(SHA384_SIZE)


class EventType(enum.IntEnum):
    """TCG PC Client event types that TDVF and the Linux EFI stub log (TCG PC Client Platform
    Firmware Profile, "Event Types")."""

    EV_NO_ACTION = 0x3
    EV_SEPARATOR = 0x4
    EV_ACTION = 0x5
    EV_EVENT_TAG = 0x6
    EV_PLATFORM_CONFIG_FLAGS = 0xA
    EV_EFI_VARIABLE_DRIVER_CONFIG = 0x80000001
    EV_EFI_VARIABLE_BOOT = 0x80000002
    EV_EFI_BOOT_SERVICES_APPLICATION = 0x80000003
    EV_EFI_ACTION = 0x80000007
    EV_EFI_HANDOFF_TABLES = 0x80000009
    EV_EFI_PLATFORM_FIRMWARE_BLOB2 = 0x8000000A
    EV_EFI_HANDOFF_TABLES2 = 0x8000000B
    EV_EFI_VARIABLE_AUTHORITY = 0x800000E0


def sha384(data: bytes | bytearray | memoryview) -> bytes:
    """SHA-384 of ``data``."""
    return hashlib.sha384(data).digest()


def extend(rtmr: bytes, digest: bytes) -> bytes:
    """One RTMR extend: ``SHA384(rtmr || digest)`` (TDG.MR.RTMR.EXTEND).

    Raises:
        ValueError: either value is not 48 bytes.
    """
    if len(rtmr) != SHA384_SIZE or len(digest) != SHA384_SIZE:
        raise ValueError("an RTMR extend takes a 48-byte register and a 48-byte digest")
    return sha384(rtmr + digest)


@dataclass(frozen=True, slots=True)
class RtmrEvent:
    """One RTMR extend as the firmware logs it (see the module doc)."""

    rtmr: int
    event_type: int
    digest: bytes
    event_data: bytes
    description: str

    def __post_init__(self) -> None:
        if not 0 <= self.rtmr < RTMR_COUNT:
            raise ValueError(f"RTMR index {self.rtmr} is not 0..3")
        if len(self.digest) != SHA384_SIZE:
            raise ValueError(f"{self.description}: a SHA-384 digest is 48 bytes")

    @property
    def mr_index(self) -> int:
        """The CC event log's MR index (1 = RTMR0)."""
        return self.rtmr + 1

    @property
    def type_name(self) -> str:
        """``EV_...`` or the number in hex."""
        try:
            return EventType(self.event_type).name
        except ValueError:
            return f"{self.event_type:#x}"

    @classmethod
    def hashed(
        cls,
        rtmr: int,
        event_type: int,
        data: bytes,
        description: str,
        event_data: bytes | None = None,
    ) -> RtmrEvent:
        """An event whose digest is SHA-384 of ``data``; the logged event data is ``data``
        unless ``event_data`` says otherwise."""
        return cls(
            rtmr, event_type, sha384(data), data if event_data is None else event_data, description
        )


def replay(events: Iterable[RtmrEvent]) -> tuple[bytes, bytes, bytes, bytes]:
    """RTMR0..3 after extending every event's digest, from 48 zero bytes each."""
    regs = [_ZERO] * RTMR_COUNT
    for e in events:
        regs[e.rtmr] = extend(regs[e.rtmr], e.digest)
    return regs[0], regs[1], regs[2], regs[3]


#: Linux EFI stub event tags (drivers/firmware/efi/libstub): what RTMR2's events are.
_TAGS = {0x8F3B22ED: "command line", 0x8F3B22EC: "initrd"}


def describe_event(rtmr: int, event_type: int, data: bytes) -> str:
    """A short name for an event read back from a log, from its type and data (the names
    cvmlaunch's own predictions use where the data tells: ``"RTMR2 command line"``)."""
    prefix = f"RTMR{rtmr}"
    if event_type == EventType.EV_EVENT_TAG and len(data) >= 4:
        tag = _TAGS.get(int.from_bytes(data[:4], "little"))
        if tag:
            return f"{prefix} {tag}"
    if event_type == EventType.EV_EFI_ACTION and data.isascii():
        return f"{prefix} {data.decode()}"
    variables = (EventType.EV_EFI_VARIABLE_DRIVER_CONFIG, EventType.EV_EFI_VARIABLE_BOOT)
    if event_type in variables and len(data) >= _VARIABLE_HEADER:
        chars = int.from_bytes(data[16:24], "little")
        name = data[32 : 32 + 2 * chars].decode("utf-16-le", errors="replace")
        return f"{prefix} variable {name}"
    names = {
        EventType.EV_SEPARATOR: "separator",
        EventType.EV_EFI_BOOT_SERVICES_APPLICATION: "kernel (Authenticode)",
        EventType.EV_EFI_PLATFORM_FIRMWARE_BLOB2: "CFV (UEFI variable store)",
        EventType.EV_PLATFORM_CONFIG_FLAGS: "ACPI",
        EventType.EV_EFI_HANDOFF_TABLES2: "TD HOB",
    }
    try:
        return f"{prefix} {names.get(EventType(event_type), EventType(event_type).name)}"
    except ValueError:
        return f"{prefix} event type {event_type:#x}"


def events_to_cel(events: Sequence[RtmrEvent]) -> list[dict[str, Any]]:
    """The events as a CEL-JSON array (module doc, Rule 3); ``json.dumps`` it."""
    return [
        {
            "recnum": n,
            "pcr": e.mr_index,
            "digests": [{"hashAlg": "sha384", "digest": e.digest.hex()}],
            "content_type": "pcclient_std",
            "content": {"event_type": e.type_name, "event_data": e.event_data.hex()},
        }
        for n, e in enumerate(events)
    ]


def _event_type(value: object, where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 0xFFFFFFFF:
        return value
    if isinstance(value, str):
        try:
            return EventType[value.upper()].value
        except KeyError:
            pass
        try:
            return int(value, 0)
        except ValueError:
            pass
    raise LogFormatError(f"{where}: event_type {value!r} is neither a known name nor a number")


def events_from_cel(records: object) -> tuple[RtmrEvent, ...]:
    """Parse a CEL-JSON array (``json.loads`` output) of ``pcclient_std`` records with SHA-384
    digests and CC MR indices 1..4.

    Raises:
        LogFormatError: anything else (the message names the record).
    """
    if not isinstance(records, list):
        raise LogFormatError("a CEL-JSON log is an array of records")
    out = []
    for n, r in enumerate(records):
        where = f"CEL record {n}"
        if not isinstance(r, dict):
            raise LogFormatError(f"{where} is not an object")
        if r.get("recnum") != n:
            raise LogFormatError(f"{where}: recnum {r.get('recnum')!r}, expected {n}")
        pcr = r.get("pcr")
        if not isinstance(pcr, int) or isinstance(pcr, bool) or not 1 <= pcr <= RTMR_COUNT:
            raise LogFormatError(f"{where}: pcr {pcr!r} is not a CC MR index 1..4")
        if r.get("content_type") != "pcclient_std":
            raise LogFormatError(
                f"{where}: content_type {r.get('content_type')!r} (need pcclient_std)"
            )
        digests = r.get("digests")
        sha = [
            d.get("digest")
            for d in digests or ()
            if isinstance(d, dict) and str(d.get("hashAlg")).lower() in ("sha384", "0x000c", "12")
        ] if isinstance(digests, list) else []  # fmt: skip
        if len(sha) != 1 or not isinstance(sha[0], str):
            raise LogFormatError(f"{where}: needs exactly one sha384 digest")
        content = r.get("content")
        if not isinstance(content, dict) or not isinstance(content.get("event_data"), str):
            raise LogFormatError(f"{where}: content needs event_type and hex event_data")
        try:
            digest = bytes.fromhex(sha[0])
            data = bytes.fromhex(content["event_data"])
        except ValueError as exc:
            raise LogFormatError(f"{where}: bad hex ({exc})") from None
        if len(digest) != SHA384_SIZE:
            raise LogFormatError(f"{where}: the sha384 digest is {len(digest)} bytes")
        kind = _event_type(content.get("event_type"), where)
        out.append(RtmrEvent(pcr - 1, kind, digest, data, describe_event(pcr - 1, kind, data)))
    return tuple(out)


def event_record(event: RtmrEvent) -> dict[str, Any]:
    """One event as a launch-log record body: ``{rtmr, event_type, description, digest,
    event_data}`` (hex strings; ``event_type`` the ``EV_`` name or the number)."""
    return {
        "rtmr": event.rtmr,
        "event_type": event.type_name,
        "description": event.description,
        "digest": event.digest.hex(),
        "event_data": event.event_data.hex(),
    }


def event_from_record(record: object, where: str = "RTMR event") -> RtmrEvent:
    """The inverse of :func:`event_record`.

    Raises:
        LogFormatError: a missing or unknown field, a bad type or bad hex.
    """
    fields = {"rtmr", "event_type", "description", "digest", "event_data"}
    if not isinstance(record, dict) or set(record) != fields:
        raise LogFormatError(f"{where}: needs exactly the fields {', '.join(sorted(fields))}")
    rtmr, description = record["rtmr"], record["description"]
    if not isinstance(rtmr, int) or isinstance(rtmr, bool) or not 0 <= rtmr < RTMR_COUNT:
        raise LogFormatError(f"{where}: rtmr {rtmr!r} is not 0..3")
    if not isinstance(description, str) or not isinstance(record["digest"], str):
        raise LogFormatError(f"{where}: description and digest are strings")
    if not isinstance(record["event_data"], str):
        raise LogFormatError(f"{where}: event_data is a hex string")
    try:
        digest = bytes.fromhex(record["digest"])
        data = bytes.fromhex(record["event_data"])
    except ValueError as exc:
        raise LogFormatError(f"{where}: bad hex ({exc})") from None
    if len(digest) != SHA384_SIZE:
        raise LogFormatError(f"{where}: digest is {len(digest)} bytes, not 48")
    return RtmrEvent(rtmr, _event_type(record["event_type"], where), digest, data, description)


def first_difference(a: Sequence[RtmrEvent], b: Sequence[RtmrEvent]) -> str | None:
    """The first event (per RTMR, in log order) whose digest or type differs between two logs,
    named by its description (e.g. ``"RTMR2 command line: digest 1a2b… != 3c4d…"``); None when
    the logs extend the same digests into the same RTMRs."""
    for rtmr in range(RTMR_COUNT):
        xs = [e for e in a if e.rtmr == rtmr]
        ys = [e for e in b if e.rtmr == rtmr]
        for n, (x, y) in enumerate(zip(xs, ys, strict=False)):
            if x.event_type != y.event_type:
                return (
                    f"RTMR{rtmr} event {n}: {x.description} ({x.type_name}) != "
                    f"{y.description} ({y.type_name})"
                )
            if x.digest != y.digest:
                return (
                    f"{x.description}: digest {x.digest.hex()[:16]}... != {y.digest.hex()[:16]}..."
                )
        if len(xs) != len(ys):
            longer = xs if len(xs) > len(ys) else ys
            extra = longer[min(len(xs), len(ys))]
            side = "first" if len(xs) > len(ys) else "second"
            return f"RTMR{rtmr}: only the {side} log has {extra.description}"
    return None


#: Event types whose digest is fixed by the event data alone (TCG PC Client PFP): the digest
#: of the whole data, or (EV_EFI_VARIABLE_BOOT) of the variable data inside UEFI_VARIABLE_DATA.
_SELF_DESCRIBING = (
    EventType.EV_SEPARATOR,
    EventType.EV_EFI_ACTION,
    EventType.EV_EFI_VARIABLE_DRIVER_CONFIG,
    EventType.EV_EFI_VARIABLE_AUTHORITY,
)


def inconsistent_events(events: Sequence[RtmrEvent]) -> list[str]:
    """The events whose digest their own event data contradicts (types whose digest the data
    fixes: separators, EFI actions, Secure Boot, authority and boot variables), each as one
    line naming the event; events whose digest covers something else (a blob, the kernel)
    are not checkable from the log alone."""
    out = []
    for n, e in enumerate(events):
        if e.event_type in _SELF_DESCRIBING:
            measured = e.event_data
        elif e.event_type == EventType.EV_EFI_VARIABLE_BOOT and len(e.event_data) >= 32:
            chars = int.from_bytes(e.event_data[16:24], "little")
            size = int.from_bytes(e.event_data[24:32], "little")
            start = _VARIABLE_HEADER + 2 * chars
            if start + size != len(e.event_data):
                out.append(f"event {n} ({e.description}): UEFI_VARIABLE_DATA lengths do not add up")
                continue
            measured = e.event_data[start:]
        else:
            continue
        if sha384(measured) != e.digest:
            out.append(f"event {n} ({e.description}): the digest is not SHA-384 of its data")
    return out


def present_rtmrs(events: Sequence[RtmrEvent]) -> tuple[bytes | None, ...]:
    """RTMR0-3 ``events`` replay to, None for a register no event extends (not predicted, so
    not to be checked)."""
    present = {e.rtmr for e in events}
    return tuple(r if i in present else None for i, r in enumerate(replay(events)))


def checked_rtmrs(events: Sequence[RtmrEvent], name: str) -> tuple[bytes | None, ...]:
    """:func:`present_rtmrs` of the RTMR event log ``name``, after checking every digest its
    events' own data fixes.

    Raises:
        CheckFailed: an event's digest contradicts its data.
    """
    problems = inconsistent_events(events)
    if problems:
        raise CheckFailed(f"{name}: {problems[0]}")
    return present_rtmrs(events)


def launch_log_rtmrs(log: MeasurementLog, name: str) -> tuple[bytes | None, ...]:
    """RTMR0-3 a launch log's RTMR events replay to (None for a register no event extends),
    after checking every digest the events' own data fixes and the footer's RTMRs.

    Raises:
        CheckFailed: an event contradicts its data, or the events do not replay to the footer.
    """
    problems = inconsistent_events(log.events)
    if problems:
        raise CheckFailed(f"{name}: RTMR {problems[0]}")
    regs = present_rtmrs(log.events)
    if regs != log.footer.rtmrs:
        raise CheckFailed(f"{name}: the RTMR events do not replay to the footer's RTMRs")
    return regs


def cel_json(events: Sequence[RtmrEvent]) -> str:
    """The events as TCG CEL-JSON text (one array, canonical key order), newline-terminated."""
    import json

    return json.dumps(events_to_cel(events), sort_keys=True, indent=1) + "\n"
