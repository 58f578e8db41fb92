"""The launch log's canonical JSON Lines form: writing and strict, bounded reading.

Rule 1: canonical output. One JSON object per line, keys sorted, no insignificant whitespace,
ASCII only, integers only (no floats), digests as lowercase hex, no paths (inputs and
provenance by base name). The same log always serialises to the same bytes
(docs/log-format.md is the schema; :data:`~cvmlaunch.measure.log.LOG_VERSION` its version).

Rule 2: strict input. :func:`parse_log` rejects unknown or missing keys, wrong types, floats,
duplicate keys, upper-case or odd-length hex, out-of-order sequence numbers and a missing header
or footer, raising :class:`~cvmlaunch.errors.LogFormatError` naming the line.

Rule 3: bounded input. Before a line reaches the JSON decoder its length, the number and
nesting of its arrays and objects are checked, and the decoder takes integers of at most
:data:`~cvmlaunch.measure.log.MAX_INT_DIGITS` digits; the whole log then passes
:func:`~cvmlaunch.measure.log.check_limits`, which :func:`dump_log` also runs before it
writes. A hostile log costs bounded memory and time and ends in ``LogFormatError``, never a
``RecursionError``.

Pure: takes and returns ``str`` (:func:`parse_log_bytes` takes the bytes of a file).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from cvmlaunch.errors import ImageError, LayoutError, LogFormatError
from cvmlaunch.layout import Buffer, PageType, Provenance, SourceKind
from cvmlaunch.log_entry import LogEntry, LogOp
from cvmlaunch.measure.log import (
    LOG_FORMAT,
    LOG_VERSION,
    MAX_CONTAINERS,
    MAX_INT_DIGITS,
    MAX_LINE_BYTES,
    MAX_NESTING,
    MAX_RECORDS,
    MAX_RTMR_EVENTS,
    READ_VERSIONS,
    RTMR_EVENT_VERSION,
    ZERO_MARKER_VERSION,
    LogFooter,
    LogHeader,
    LogInput,
    MeasurementLog,
    Technology,
    base_name,
    check_limits,
)
from cvmlaunch.measure.rtmr import RTMR_COUNT, RtmrEvent, event_from_record, event_record

__all__ = ["dump_log", "dumps_log", "parse_log", "parse_log_bytes"]


# ------------------------------------------------------------------ JSON Lines: writing


def _canonical(obj: Mapping[str, Any]) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _provenance_obj(p: Provenance) -> dict[str, Any]:
    return {
        "kind": p.kind.value,
        "name": base_name(p.name),
        "offset": p.offset,
        "index": p.index,
        "detail": p.detail,
    }


def _hex(value: bytes | None) -> str | None:
    return None if value is None else value.hex()


def dump_log(log: MeasurementLog) -> Iterator[str]:
    """Yield the log's lines (each ending in ``\\n``), header first, footer last, in format
    version :data:`~cvmlaunch.measure.log.LOG_VERSION` (names cut to base names).

    Raises:
        LogFormatError: the log is past a limit the reader enforces, or an input has no
            SHA-256 (checked before the first line is yielded; a line too long when it is
            made).
    """
    check_limits(log)
    for item in log.header.inputs:
        if item.sha256 is None:
            raise LogFormatError(
                f"log input {item.role} has no SHA-256 (format version 2 names inputs by it)"
            )
    for line in _lines(log):
        if len(line) > MAX_LINE_BYTES:
            raise LogFormatError(
                f"a log line of {len(line)} bytes is longer than {MAX_LINE_BYTES}, the most a "
                "reader takes"
            )
        yield line


def _lines(log: MeasurementLog) -> Iterator[str]:
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
                        "name": base_name(i.name),
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
                    "content_sha384": _hex(e.content_sha384),
                    "page_sha384": [p.hex() for p in e.page_sha384],
                    "digest_after": _hex(e.digest_after),
                }
            )
            + "\n"
        )
    for n, event in enumerate(log.events):
        yield _canonical({"record": "rtmr_event", "seq": n, **event_record(event)}) + "\n"
    footer: dict[str, Any] = {
        "record": "footer",
        "records": log.footer.records,
        "digest": log.footer.digest.hex(),
    }
    if log.events:
        footer["events"] = len(log.events)
        footer["rtmrs"] = [_hex(r) for r in log.footer.rtmrs]
    yield _canonical(footer) + "\n"


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


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(
            f"an integer of {len(text.lstrip('-'))} digits (at most {MAX_INT_DIGITS}: "
            "every integer of the format fits in 64 bits)"
        )
    return int(text)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"duplicate key {key!r}")
        obj[key] = value
    return obj


#: A JSON string (escapes included); removed before arrays and objects are counted.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_BRACKET = re.compile(r"[\[\]{}]")


def _check_shape(text: str, where: str) -> None:
    """Refuse a line past the length, container or nesting limits before decoding it: the
    decoder recurses once per level, so depth is checked first (in C-speed passes, then a
    loop over at most :data:`MAX_CONTAINERS` brackets)."""
    if len(text) > MAX_LINE_BYTES:
        raise LogFormatError(
            f"{where}: line of {len(text)} bytes is longer than {MAX_LINE_BYTES}, the most a "
            "record may take"
        )
    bare = _STRING.sub("", text)
    opened = bare.count("[") + bare.count("{")
    if opened > MAX_CONTAINERS:
        raise LogFormatError(
            f"{where}: {opened} arrays and objects in one line (at most {MAX_CONTAINERS})"
        )
    depth = 0
    for match in _BRACKET.finditer(bare):
        depth += 1 if match.group() in "[{" else -1
        if depth > MAX_NESTING:
            raise LogFormatError(f"{where}: arrays and objects nested more than {MAX_NESTING} deep")


def _decode(text: str, where: str) -> dict[str, Any]:
    _check_shape(text, where)
    try:
        obj = json.loads(
            text,
            parse_float=_no_floats,
            parse_int=_bounded_int,
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
_EVENT_FOOTER_KEYS = (*_FOOTER_KEYS, "events", "rtmrs")
_EVENT_KEYS = ("record", "seq", "rtmr", "event_type", "description", "digest", "event_data")


def _parse_event(line: _Line, seq_expected: int) -> RtmrEvent:
    line.keys(_EVENT_KEYS)
    seq = line.get_int("seq")
    if seq != seq_expected:
        raise line.fail(f"sequence number {seq}, expected {seq_expected}")
    for key in ("digest", "event_data"):
        value = line.obj[key]
        if value != "":
            line.hex_value(key, value, None)  # lowercase, even: the canonical form
        elif key == "digest":
            raise line.fail("digest must be 48 bytes, not 0")
    body = {k: v for k, v in line.obj.items() if k not in ("record", "seq")}
    try:
        event = event_from_record(body, line.where)
    except ValueError as exc:  # RtmrEvent's own checks
        raise line.fail(str(exc)) from None
    if line.obj["event_type"] != event.type_name:
        raise line.fail(f"event_type must be written {event.type_name!r}")
    return event


def _parse_footer(line: _Line, entries: int, events: int) -> LogFooter:
    line.keys(_EVENT_FOOTER_KEYS if events else _FOOTER_KEYS)
    records = line.get_int("records")
    if records != entries:
        raise line.fail(f"footer counts {records} records, the log has {entries}")
    rtmrs: tuple[bytes | None, ...] = ()
    if events:
        if line.get_int("events") != events:
            raise line.fail(f"footer counts {line.obj['events']} RTMR events, the log has {events}")
        values = line.obj["rtmrs"]
        if not isinstance(values, list) or len(values) != RTMR_COUNT:
            raise line.fail(f"rtmrs must be a list of {RTMR_COUNT} (hex or null)")
        rtmrs = tuple(None if v is None else line.hex_value("rtmrs", v, 48) for v in values)
    return LogFooter(digest=line.get_hex("digest"), records=records, rtmrs=rtmrs)


def _parse_header(line: _Line) -> LogHeader:
    line.keys(_HEADER_KEYS)
    if line.get_str("format") != LOG_FORMAT:
        raise line.fail(f"format is {line.obj['format']!r}, expected {LOG_FORMAT!r}")
    version = line.get_int("version")
    if version not in READ_VERSIONS:
        raise line.fail(
            f"log format version {version} is not supported (this reads versions "
            f"{', '.join(map(str, READ_VERSIONS))})"
        )
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
        if version >= 2:
            _portable_name(sub, sub.get_str("name"))
            if sub.obj["sha256"] is None:
                raise sub.fail("sha256 must be given (format version 2 names inputs by it)")
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
            format_version=version,
        )
    except LayoutError as exc:
        raise line.fail(str(exc)) from exc


def _portable_name(line: _Line, name: str) -> None:
    """Format version 2 names files by base name: a path is an error."""
    if "/" in name or name in (".", ".."):
        raise line.fail(f"name {name!r} is a path (format version 2 logs carry base names)")


def _parse_range(line: _Line, seq_expected: int, version: int) -> LogEntry:
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
    if version >= 2:
        _portable_name(prov, prov.get_str("name"))
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
    try:
        return LogEntry(
            seq=seq,
            op=op,
            gpa=gpa,
            size=size,
            page_type=PageType[type_name],
            measured=line.get_bool("measured"),
            provenance=provenance,
            content_sha384=line.get_hex(
                "content_sha384", length=48, optional=version >= ZERO_MARKER_VERSION
            ),
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
        LogFormatError: anything that does not follow docs/log-format.md (format versions 1
            to 4), naming the line, or a log past the format's limits.
    """
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    header: LogHeader | None = None
    entries: list[LogEntry] = []
    events: list[RtmrEvent] = []
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
        elif kind == "rtmr_event":
            if header.format_version < RTMR_EVENT_VERSION:
                raise line.fail(
                    f"rtmr_event records are format version {RTMR_EVENT_VERSION} (this log: "
                    f"{header.format_version})"
                )
            if header.technology is not Technology.TDX:
                raise line.fail(f"a {header.technology.value} log carries no RTMR events")
            if len(events) >= MAX_RTMR_EVENTS:
                raise line.fail(f"more than {MAX_RTMR_EVENTS} RTMR events, the most a log holds")
            events.append(_parse_event(line, len(events)))
        elif kind == "range":
            if events:
                raise line.fail("a range record after the RTMR events")
            if len(entries) >= MAX_RECORDS:
                raise line.fail(f"more than {MAX_RECORDS} records, the most a log may hold")
            entries.append(_parse_range(line, len(entries), header.format_version))
        elif kind == "footer":
            footer = _parse_footer(line, len(entries), len(events))
        elif kind == "header":
            raise line.fail("a second header")
        else:
            raise line.fail(f"unknown record type {kind!r}")
    if header is None:
        raise LogFormatError(f"{name}: empty log")
    if footer is None:
        raise LogFormatError(f"{name} line {len(lines) + 1}: missing footer (truncated log?)")
    try:
        log = MeasurementLog(
            header=header, entries=tuple(entries), footer=footer, events=tuple(events)
        )
    except LayoutError as exc:
        raise LogFormatError(f"{name}: {exc}") from None
    check_limits(log)
    return log


def parse_log_bytes(data: Buffer, *, name: str = "log") -> MeasurementLog:
    """Parse a launch log from its bytes (a file's contents): UTF-8, then :func:`parse_log`.

    Raises:
        ImageError: the bytes are not UTF-8 (naming the first bad byte).
        LogFormatError: as :func:`parse_log`.
    """
    try:
        text = str(data, "utf-8")
    except UnicodeDecodeError as exc:
        raise ImageError(f"not UTF-8 text (byte {exc.start})", source=name) from exc
    return parse_log(text, name=name)
