"""Known answers for the tests, and the one way to read them.

Rule 1: a known answer (a value obtained outside cvmlaunch: a peer tool's output, a published
vector, a field of a real report) lives in a file under tests/vectors/, and README.md next to
it says where it came from. Test modules never embed one as a literal
(tests/test_vectors_apart.py fails on any SHA-256/SHA-384-length hex string outside this
directory), never build a path into this directory and never parse its JSON: they call a
function here, by id (a data file such as a key or a report by its name: ``identity_file``,
``attest_file``).
Rule 2: the functions return frozen values or fresh copies (hex digests as ``str``, as the
files have them); an unknown id raises KeyError naming the id and the file.
Rule 3: this module only reads files below its own directory; it computes nothing.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent


@cache
def _json(rel: str) -> Any:
    return json.loads((ROOT / rel).read_text())


def _by(rel: str, items: list[dict[str, Any]], key: str, value: str) -> dict[str, Any]:
    for item in items:
        if item.get(key) == value:
            return item
    raise KeyError(f"{value!r}: no such {key} in tests/vectors/{rel}")


def _file(directory: str, name: str) -> Path:
    path = ROOT / directory / name
    if "/" in name or name.startswith(".") or not path.is_file() or path.suffix == ".md":
        raise KeyError(f"{name!r}: no such vector file in tests/vectors/{directory}")
    return path


# ------------------------------------------------------------------ SNP (snp/peer.json)


@dataclass(frozen=True)
class SnpCase:
    """One sev-snp-measure 0.0.13 case (snp/README.md)."""

    id: str
    group: str  # "agree" or "divergent" (the peer is wrong)
    peer_command: str
    args: tuple[str, ...]  # cvmlaunch measure snp arguments; "@name" is an input file
    note: str
    digest: str | None  # the peer's output; None when it refused the case
    peer_error: str | None

    @property
    def expected(self) -> str:
        """The peer's digest (hex); LookupError for a case the peer refused."""
        if self.digest is None:
            raise LookupError(f"{self.id}: the peer refused this case ({self.peer_error})")
        return self.digest


def _snp_case(c: dict[str, Any]) -> SnpCase:
    return SnpCase(
        c["id"],
        c["group"],
        c["peer_command"],
        tuple(c["args"]),
        c["note"],
        c.get("expected"),
        c.get("peer_error"),
    )


def snp_cases() -> tuple[SnpCase, ...]:
    """Every case of snp/peer.json, in file order."""
    return tuple(_snp_case(c) for c in _json("snp/peer.json")["cases"])


def snp_case(case_id: str) -> SnpCase:
    return _snp_case(_by("snp/peer.json", _json("snp/peer.json")["cases"], "id", case_id))


def snp_inputs_sha256() -> dict[str, str]:
    """The SHA-256 of each input file the SNP cases were made with, by file name."""
    return dict(_json("snp/peer.json")["inputs_sha256"])


@dataclass(frozen=True)
class TracePoint:
    """A checkpoint of the worked SNP trace (snp/README.md), known by its two ends only."""

    id: str
    what: str
    head: str  # the first hex digits
    tail: str  # the last hex digits ("" when only the head is recorded)


def snp_trace(point: str) -> TracePoint:
    p = _by("snp/trace.json", _json("snp/trace.json")["checkpoints"], "id", point)
    return TracePoint(p["id"], p["what"], p["head"], p["tail"])


# ------------------------------------------------------------------ TDX MRTD (tdx/mrtd.json)


@dataclass(frozen=True)
class TdxVector:
    """td-shim's MRTDs of one real firmware file (tdx/README.md)."""

    file: str
    sha256: str
    page_add: int
    mr_extend: int
    mrtd_per_page: str
    mrtd_two_pass: str


@dataclass(frozen=True)
class TdxPublished:
    """A published MRTD of a synthetic image (tdx/README.md, "The published vector")."""

    name: str
    source: str
    image: str
    mrtd_per_page: str


def _tdx_vector(f: dict[str, Any]) -> TdxVector:
    keys = ("file", "sha256", "page_add", "mr_extend", "mrtd_per_page", "mrtd_two_pass")
    return TdxVector(*(f[k] for k in keys))


def tdx_firmwares() -> tuple[TdxVector, ...]:
    return tuple(_tdx_vector(f) for f in _json("tdx/mrtd.json")["firmware"])


def tdx_firmware(file: str) -> TdxVector:
    return _tdx_vector(_by("tdx/mrtd.json", _json("tdx/mrtd.json")["firmware"], "file", file))


def tdx_published(name: str) -> TdxPublished:
    p = _by("tdx/mrtd.json", _json("tdx/mrtd.json")["published"], "name", name)
    return TdxPublished(p["name"], p["source"], p["image"], p["mrtd_per_page"])


# ------------------------------------------------------------------ TDX RTMR (tdx/rtmr.json)


@dataclass(frozen=True)
class CcelEvent:
    """One event of a real TD's CCEL (tdx/README.md, "A real TD's event log")."""

    index: int  # the MR index as the CCEL has it: 1 = RTMR0
    type: str
    what: str  # the id
    digest: str  # SHA-384, hex
    event: bytes


@dataclass(frozen=True)
class KernelAuthenticode:
    """osslsigncode's Authenticode digests of the Debian kernel (tdx/README.md)."""

    file: str
    vmlinuz_sha256: str
    sha384: str
    sha256: str
    unsigned_plus_abc_sha384: str


def _ccel_event(e: dict[str, Any]) -> CcelEvent:
    return CcelEvent(e["index"], e["type"], e["what"], e["digest"], base64.b64decode(e["event"]))


def ccel_events() -> tuple[CcelEvent, ...]:
    """The real TD's CCEL events, in log order."""
    return tuple(_ccel_event(e) for e in _json("tdx/rtmr.json")["real_td_ccel"]["events"])


def ccel_event(what: str) -> CcelEvent:
    events = _json("tdx/rtmr.json")["real_td_ccel"]["events"]
    return _ccel_event(_by("tdx/rtmr.json", events, "what", what))


def debian_kernel() -> KernelAuthenticode:
    k = _json("tdx/rtmr.json")["debian_kernel_authenticode"]
    return KernelAuthenticode(
        k["file"], k["vmlinuz_sha256"], k["sha384"], k["sha256"], k["unsigned_plus_abc_sha384"]
    )


@dataclass(frozen=True)
class Td202505:
    """What a real edk2-stable202505 TD's RTMR0 showed (tdx/README.md, "edk2 202505")."""

    rtmr0_order: tuple[str, ...]  # the events' names, in log order
    fw_cfg_bootorder_data: bytes  # QEMU's bootorder fw_cfg file for q35 -kernel
    fw_cfg_bootorder_digest: str  # the captured digest of its "QEMU FW CFG" event


def td_202505() -> Td202505:
    t = _json("tdx/rtmr.json")["edk2_202505_td"]
    return Td202505(
        tuple(t["rtmr0_order"]),
        t["fw_cfg_bootorder_data"].encode("ascii"),
        t["fw_cfg_bootorder_digest"],
    )


# ------------------------------------------------------------------ SNP identity (identity/)


@dataclass(frozen=True)
class EcdsaVector:
    """A deterministic ECDSA signature (identity/README.md)."""

    id: str
    source: str
    curve: str
    hash: str
    message: bytes
    private_key: int
    r: int
    s: int


def identity_file(name: str) -> Path:
    """A file of identity/: test keys and the peer's snp-create-id-block output."""
    return _file("identity", name)


def ecdsa_vector(vector_id: str) -> EcdsaVector:
    v = _by("identity/ecdsa.json", _json("identity/ecdsa.json")["vectors"], "id", vector_id)
    return EcdsaVector(
        v["id"],
        v["source"],
        v["curve"],
        v["hash"],
        v["message"].encode(),
        int(v["private_key"], 16),
        int(v["r"], 16),
        int(v["s"], 16),
    )


# ------------------------------------------------------------------ attestation (attest/)


def attest_file(name: str) -> Path:
    """A real report, quote or certificate of attest/."""
    return _file("attest", name)


def attest_field(name: str, field: str) -> str:
    """A field of attest/``name`` (hex) as the file's source states it (attest/README.md)."""
    fields = _json("attest/fields.json")["files"]
    if name not in fields or field not in fields[name]["fields"]:
        raise KeyError(f"{name!r} {field!r}: no such field in tests/vectors/attest/fields.json")
    return str(fields[name]["fields"][field])


# ------------------------------------------------------------------ hash functions (hash/)


@dataclass(frozen=True)
class HashVector:
    id: str
    source: str
    message: bytes
    digest: str


def sha384_vector(vector_id: str) -> HashVector:
    v = _by("hash/sha384.json", _json("hash/sha384.json")["vectors"], "id", vector_id)
    return HashVector(v["id"], v["source"], v["message"].encode(), v["digest"])
