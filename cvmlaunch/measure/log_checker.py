"""The machinery of :func:`cvmlaunch.measure.log_check.check_log`: findings, typed access to
header settings, the rules every record of a technology follows, the replay of the digest
chain and the field-by-field comparison with a rebuilt log.

Pure: logs and buffers in, findings out; nothing here knows how a plan is built.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from cvmlaunch.errors import ConfigError, CvmLaunchError, LogFormatError
from cvmlaunch.layout import PAGE_SIZE, VMSA_GPA, Buffer, PageType, SourceKind
from cvmlaunch.log_entry import LogEntry, LogOp
from cvmlaunch.measure.log import (
    ZERO_MARKER_VERSION,
    ContentProvider,
    LogHeader,
    MeasurementLog,
    Technology,
    base_name,
    get_replayer,
    zero_range_sha384,
)

__all__ = [
    "ABSENT",
    "KERNEL_HASHES",
    "RECORD_RULES",
    "SNP_VMSA",
    "Checker",
    "Finding",
    "LogCheck",
    "SettingsView",
    "decided_by",
    "hex_or_null",
    "record_where",
    "show",
]

SNP_VMSA = ("vcpus", "vcpu_sig", "vmm_type", "guest_features", "fpu", "ap_reset_address")
KERNEL_HASHES = ("kernel_hashes", "kernel_sha256", "initrd_sha256", "cmdline_sha256")
_DECIDED_BY: Mapping[Technology, Mapping[SourceKind, tuple[str, ...]]] = {
    Technology.SEV_SNP: {
        SourceKind.VMSA: SNP_VMSA,
        SourceKind.GENERATED: KERNEL_HASHES,
        SourceKind.FIRMWARE_SECTION: ("mode", "vmm_type", "kernel_hashes"),
        SourceKind.FILE: ("mode", "ovmf_hash_seed", "vars_size"),
    },
    Technology.SEV_ES: {
        SourceKind.VMSA: SNP_VMSA[:5],
        SourceKind.GENERATED: KERNEL_HASHES,
        SourceKind.FILE: ("mode",),
    },
    Technology.SEV: {SourceKind.GENERATED: KERNEL_HASHES, SourceKind.FILE: ("mode",)},
    Technology.TDX: {SourceKind.FIRMWARE_SECTION: ("order", "profile")},
    Technology.PLAIN: {
        SourceKind.GENERATED: ("memory", "pvh_entry"),
        SourceKind.ELF_SEGMENT: ("pvh_entry",),
    },
}


@dataclass(frozen=True, slots=True)
class Finding:
    """One field of the log that is not what its header (and inputs) say.

    Args:
        where: ``header``, ``record N``, ``rtmr_event N (description)``, ``footer`` or
            ``input ROLE``.
        field: the field, e.g. ``setting vcpus``, ``page_type``, ``page_sha384[0]``.
        message: what differs.
    """

    where: str
    field: str
    message: str

    def describe(self) -> str:
        """One line: ``record 3: page_type: ...``."""
        return f"{self.where}: {self.field}: {self.message}"

    def to_json(self) -> dict[str, str]:
        """The finding as a JSON object."""
        return {"where": self.where, "field": self.field, "message": self.message}


@dataclass(frozen=True, slots=True)
class LogCheck:
    """The result of :func:`~cvmlaunch.measure.log_check.check_log`.

    Args:
        findings: every difference found (empty: the log is what its header says).
        unchecked: what could not be checked without more inputs, each naming the input.
        digest: the final digest the records replay to, or None when the replay needs
            inputs that were not given (or failed).
        host_decided: fields of this log that the host decided at launch and no input can
            check (an SNP launch's CPUID page contents): only a signature protects them.
            They do not make the check incomplete.
    """

    findings: tuple[Finding, ...]
    unchecked: tuple[str, ...]
    digest: bytes | None
    host_decided: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """No finding (what was checked holds)."""
        return not self.findings

    @property
    def complete(self) -> bool:
        """Every field was checked (nothing in :attr:`unchecked`)."""
        return not self.unchecked

    def lines(self, name: str, *, records: int, events: int = 0) -> Iterator[str]:
        """The result as ``log verify`` prints it, each line starting with the log's ``name``:
        every finding, what is unchecked, what the host decided, and (when :attr:`ok`) one OK
        line with the number of ``records`` and RTMR ``events`` and the replayed digest.
        Text from the log is not escaped here (the printer does)."""
        for finding in self.findings:
            yield f"{name}: {finding.describe()}"
        for item in self.unchecked:
            yield f"{name}: unchecked: {item}"
        for item in self.host_decided:
            yield f"{name}: host-decided (a signature protects it): {item}"
        if self.ok:
            digest = self.digest.hex() if self.digest is not None else "not replayed"
            rest = f" ({len(self.unchecked)} part(s) unchecked)" if self.unchecked else ""
            shown_events = f", {events} RTMR events" if events else ""
            yield f"{name}: OK {records} records{shown_events}, digest {digest}{rest}"

    def to_json(self) -> dict[str, Any]:
        """The result as a JSON object (``log verify --json``)."""
        return {
            "ok": self.ok,
            "complete": self.complete,
            "digest": None if self.digest is None else self.digest.hex(),
            "findings": [f.to_json() for f in self.findings],
            "unchecked": list(self.unchecked),
            "host_decided": list(self.host_decided),
        }


# ------------------------------------------------------------------ settings


class SettingsView:
    """Typed access to header settings; a bad value becomes a finding (and None)."""

    def __init__(self, header: LogHeader, findings: list[Finding]) -> None:
        self.values = header.settings
        self.findings = findings

    def bad(self, key: str, message: str) -> None:
        self.findings.append(Finding("header", f"setting {key}", message))

    def get(self, key: str, kind: type, *, required: bool = True) -> Any:
        if key not in self.values:
            if required:
                self.bad(key, "missing")
            return None
        value = self.values[key]
        if value is None and not required:
            return None
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            self.bad(key, f"{value!r} is not {kind.__name__}")
            return None
        return value

    def hex(self, key: str, size: int, *, required: bool = True) -> bytes | None:
        text = self.get(key, str, required=required)
        if text is None:
            return None
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            self.bad(key, "is not hex")
            return None
        if len(raw) != size:
            self.bad(key, f"is {len(raw)} bytes, not {size}")
            return None
        return raw


def record_where(entry: LogEntry) -> str:
    """``record 7 (snp.launch_update NORMAL [0x810000-0x811000) sev-kernel-hashes ...)``."""
    return (
        f"record {entry.seq} ({entry.op.value} {entry.page_type.name} "
        f"[{entry.gpa:#x}-{entry.gpa + entry.size:#x}) {entry.provenance.describe()})"
    )


def decided_by(technology: Technology, entry: LogEntry) -> str:
    keys = _DECIDED_BY.get(technology, {}).get(entry.provenance.kind, ())
    return f" (decided by the header's settings {', '.join(keys)})" if keys else ""


# ------------------------------------------------------------------ the checker


@dataclass
class Checker:
    log: MeasurementLog
    inputs: Mapping[str, Buffer]
    findings: list[Finding] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)
    #: Fields the host decided at launch (:attr:`LogCheck.host_decided`).
    host_decided: list[str] = field(default_factory=list)
    #: The records are not the rebuilt plan's (ranges or count differ): replaying them would
    #: cost what the log declares, not what the plan measures, and cannot make them right.
    plan_differs: bool = False

    @property
    def header(self) -> LogHeader:
        return self.log.header

    @property
    def tech(self) -> Technology:
        return self.log.header.technology

    def find(self, where: str, what: str, message: str) -> None:
        self.findings.append(Finding(where, what, message))

    def fail_from(self, where: str, what: str, exc: CvmLaunchError) -> None:
        self.find(where, what, str(exc))

    # ---- inputs

    def check_inputs(self) -> dict[str, Buffer]:
        """The given inputs that match the header's list (each mismatch is a finding)."""
        ok: dict[str, Buffer] = {}
        for role, data in self.inputs.items():
            listed = self.header.input(role)
            where = f"input {role}"
            if listed is None:
                self.find(where, "role", "the log header lists no such input")
                continue
            good = True
            if len(data) != listed.size:
                self.find(
                    where, "size", f"the input is {len(data)} bytes, the log says {listed.size}"
                )
                good = False
            for name, want in (("sha256", listed.sha256), ("sha384", listed.sha384)):
                if want is not None:
                    got = hashlib.new(name, data).digest()
                    if got != want:
                        self.find(
                            where, name, f"the input's is {got.hex()}, the log says {want.hex()}"
                        )
                        good = False
            if good:
                ok[role] = data
        return ok

    # ---- records, without inputs

    def check_records(self) -> None:
        rules = RECORD_RULES.get(self.tech)
        for entry in self.log.entries:
            where = record_where(entry)
            if rules is not None:
                for what, message in rules(entry):
                    self.find(where, what, message + decided_by(self.tech, entry))

    # ---- the digest chain

    def replay(self, contents: ContentProvider | None) -> bytes | None:
        try:
            replayer = get_replayer(self.tech, self.header.algorithm)
        except LogFormatError as exc:
            self.fail_from("header", "technology/algorithm", exc)
            return None
        digest = self.header.initial_digest or b""
        try:
            for entry, digest in zip(
                self.log.entries, replayer(self.header, self.log.entries, contents), strict=True
            ):
                if entry.digest_after is not None and entry.digest_after != digest:
                    self.find(
                        record_where(entry),
                        "digest_after",
                        f"the log says {entry.digest_after.hex()}, the records replay to "
                        f"{digest.hex()}",
                    )
                    return None
        except ConfigError as exc:
            self.unchecked.append(f"the digest chain: {exc}")
            return None
        except CvmLaunchError as exc:
            self.fail_from("records", "replay", exc)
            return None
        if digest != self.log.footer.digest:
            self.find(
                "footer",
                "digest",
                f"the log says {self.log.footer.digest.hex()}, the records replay to "
                f"{digest.hex()}",
            )
        return digest

    # ---- against the rebuilt log

    def compare(self, want: MeasurementLog, *, skip_pre_fault: bool = False) -> None:
        """Every field of the log against ``want`` (the log the header and inputs give)."""
        have, wh = self.header, want.header
        if have.initial_digest != wh.initial_digest:
            self.find(
                "header",
                "initial_digest",
                f"{hex_or_null(have.initial_digest)}, the settings and inputs give "
                f"{hex_or_null(wh.initial_digest)}",
            )
        for key in sorted(set(have.settings) | set(wh.settings)):
            a, b = have.settings.get(key, ABSENT), wh.settings.get(key, ABSENT)
            if a != b or type(a) is not type(b):
                self.find("header", f"setting {key}", f"{show(a)}, the inputs give {show(b)}")
        for item in wh.inputs:
            mine = have.input(item.role)
            if mine is None:
                self.find("header", f"input {item.role}", "missing")
        entries = [e for e in self.log.entries if not (skip_pre_fault and e.op is LogOp.PRE_FAULT)]
        for got, exp in zip(entries, want.entries, strict=False):
            self._compare_entry(got, exp)
        if len(entries) != len(want.entries):
            self.plan_differs = True
            n = min(len(entries), len(want.entries))
            extra = entries[n] if len(entries) > n else want.entries[n]
            self.find(
                record_where(extra),
                "presence",
                f"the log has {len(entries)} records, the plan for these settings "
                f"{len(want.entries)}" + decided_by(self.tech, extra),
            )
        if want.footer.digest != self.log.footer.digest:
            self.find(
                "footer",
                "digest",
                f"the log says {self.log.footer.digest.hex()}, the plan gives "
                f"{want.footer.digest.hex()}",
            )

    def _compare_entry(self, got: LogEntry, exp: LogEntry) -> None:
        where = record_where(got)
        why = decided_by(self.tech, exp)
        for what, a, b in (
            ("op", got.op.value, exp.op.value),
            ("gpa", got.gpa, exp.gpa),
            ("size", got.size, exp.size),
            ("page_type", got.page_type.name, exp.page_type.name),
            ("measured", got.measured, exp.measured),
            ("provenance.kind", got.provenance.kind.value, exp.provenance.kind.value),
            ("provenance.name", base_name(got.provenance.name), base_name(exp.provenance.name)),
            ("provenance.offset", got.provenance.offset, exp.provenance.offset),
            ("provenance.index", got.provenance.index, exp.provenance.index),
            ("provenance.detail", got.provenance.detail, exp.provenance.detail),
        ):
            if a != b:
                self.find(where, what, f"{show(a)}, the plan has {show(b)}{why}")
                if what in ("op", "gpa", "size", "page_type"):
                    self.plan_differs = True
        self._compare_contents(got, exp, where, why)
        if len(got.page_sha384) != len(exp.page_sha384):
            self.find(
                where,
                "page_sha384",
                f"{len(got.page_sha384)} page hashes, the plan has {len(exp.page_sha384)}{why}",
            )
        else:
            for i, (pa, pb) in enumerate(zip(got.page_sha384, exp.page_sha384, strict=True)):
                if pa != pb:
                    self.find(
                        where,
                        f"page_sha384[{i}]",
                        f"{pa.hex()}, the plan's page {i} hashes to {pb.hex()}{why}",
                    )
                    break
        if got.digest_after is not None and exp.digest_after is not None:
            if got.digest_after != exp.digest_after:
                self.find(
                    where,
                    "digest_after",
                    f"{got.digest_after.hex()}, the plan gives {exp.digest_after.hex()}{why}",
                )
        elif (got.digest_after is None) != (exp.digest_after is None):
            self.find(
                where,
                "digest_after",
                f"{hex_or_null(got.digest_after)}, the plan gives {hex_or_null(exp.digest_after)}",
            )

    def _host_filled_cpuid(self, got: LogEntry, exp: LogEntry) -> bool:
        """An SNP launch's CPUID page: the plan leaves it empty (the prediction does not
        know the host's CPUID), the launch filled it from the host; the page type and GPA
        are the plan's (compared as every record's)."""
        return (
            self.tech is Technology.SEV_SNP
            and exp.page_type is PageType.CPUID
            and got.page_type is PageType.CPUID
            and exp.content_sha384 is None
            and got.content_sha384 is not None
        )

    def _compare_contents(self, got: LogEntry, exp: LogEntry, where: str, why: str) -> None:
        """``content_sha384``: the zero marker (None) exactly where the plan gives a range no
        bytes, in O(1); a hash where it gives bytes. A log of format version 1 or 2 stores
        the SHA-384 of the zeros instead of the marker (compared in O(size))."""
        want = exp.content_sha384
        if self._host_filled_cpuid(got, exp):
            self.host_decided.append(
                f"{where}: content_sha384, the CPUID page the launch built from the host's "
                "KVM_GET_SUPPORTED_CPUID (SNP measures a CPUID page without its contents; the "
                "firmware checks them at launch)"
            )
            return
        if want is None and self.header.format_version < ZERO_MARKER_VERSION:
            want = zero_range_sha384(exp.size)
        if got.content_sha384 == want:
            return
        if want is None:
            detail = (
                f"{show(got.content_sha384)}, but the plan gives the range no bytes: its "
                "record carries the zero marker (null)"
            )
        elif got.content_sha384 is None:
            detail = f"the zero marker (null), but the plan gives the range bytes: {want.hex()}"
        else:
            detail = f"{got.content_sha384.hex()}, the plan has {want.hex()}"
        self.find(where, "content_sha384", detail + why)


#: A setting one header has and the other lacks.
ABSENT = object()


def hex_or_null(value: bytes | None) -> str:
    """Hex, or ``null``."""
    return "null" if value is None else value.hex()


def show(value: object) -> str:
    """A value in a finding: hex for bytes, quoted text (long text shortened), JSON's
    ``true``/``false``, integers in decimal, ``(absent)`` for a missing setting."""
    if value is ABSENT:
        return "(absent)"
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else f"{value[:16]!r}… ({len(value)} chars)"
    return str(value)


# ------------------------------------------------------------------ per-record rules


def _snp_rules(e: LogEntry) -> Iterator[tuple[str, str]]:
    if e.op not in (LogOp.SNP_LAUNCH_UPDATE, LogOp.SNP_VMSA):
        yield "op", f"{e.op.value} is not an SNP operation"
    elif (e.op is LogOp.SNP_VMSA) != (e.page_type is PageType.VMSA):
        yield "op", f"{e.op.value} with page type {e.page_type.name}"
    if e.measured != e.page_type.hashes_contents:
        yield "measured", f"{str(e.measured).lower()} for a {e.page_type.name} range"
    if bool(e.page_sha384) != e.page_type.hashes_contents:
        yield "page_sha384", f"{len(e.page_sha384)} page hashes for a {e.page_type.name} range"
    elif e.page_sha384 and len(e.page_sha384) * PAGE_SIZE != e.size:
        yield "size/page_sha384", f"{len(e.page_sha384)} page hashes for {e.size:#x} bytes"
    if e.page_type is PageType.VMSA and (e.gpa, e.size) != (VMSA_GPA, PAGE_SIZE):
        yield "gpa", f"a VMSA is one page at {VMSA_GPA:#x}, not {e.gpa:#x}+{e.size:#x}"
    if e.page_type is PageType.VMSA and e.provenance.kind is not SourceKind.VMSA:
        yield "provenance.kind", f"{e.provenance.kind.value} for a VMSA"


def _sev_rules(e: LogEntry) -> Iterator[tuple[str, str]]:
    if e.op not in (LogOp.SEV_LAUNCH_UPDATE_DATA, LogOp.SEV_LAUNCH_UPDATE_VMSA):
        yield "op", f"{e.op.value} is not an SEV operation"
    vmsa = e.op is LogOp.SEV_LAUNCH_UPDATE_VMSA
    if vmsa != (e.page_type is PageType.VMSA) or (not vmsa and e.page_type is not PageType.NORMAL):
        yield "page_type", f"{e.page_type.name} for {e.op.value}"
    if vmsa and (e.gpa, e.size) != (VMSA_GPA, PAGE_SIZE):
        yield "gpa", f"a VMSA is one page at {VMSA_GPA:#x}, not {e.gpa:#x}+{e.size:#x}"
    if not e.measured:
        yield "measured", "false (every SEV update is measured)"
    if e.page_sha384:
        yield "page_sha384", "SEV logs carry no page hashes"


def _tdx_rules(e: LogEntry) -> Iterator[tuple[str, str]]:
    if e.op not in (LogOp.TDX_PAGE_ADD, LogOp.TDX_PAGE_ADD_EXTEND):
        yield "op", f"{e.op.value} is not a TDX operation"
    elif e.measured != (e.op is LogOp.TDX_PAGE_ADD_EXTEND):
        yield "measured", f"{str(e.measured).lower()} for {e.op.value}"
    if e.page_type is not PageType.NORMAL:
        yield "page_type", f"{e.page_type.name} (TDX logs use NORMAL)"
    if e.page_sha384:
        yield "page_sha384", "TDX logs carry no page hashes"


def _plain_rules(e: LogEntry) -> Iterator[tuple[str, str]]:
    if e.op not in (LogOp.PLAIN_COPY, LogOp.PRE_FAULT):
        yield "op", f"{e.op.value} is not a plain launch operation"
    if e.page_sha384:
        yield "page_sha384", "plain logs carry no page hashes"


RECORD_RULES: Mapping[Technology, Callable[[LogEntry], Iterator[tuple[str, str]]]] = {
    Technology.SEV_SNP: _snp_rules,
    Technology.SEV: _sev_rules,
    Technology.SEV_ES: _sev_rules,
    Technology.TDX: _tdx_rules,
    Technology.PLAIN: _plain_rules,
}
