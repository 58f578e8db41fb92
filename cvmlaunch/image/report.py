"""What a loader sees in an image, as a report of plain values (``cvmlaunch inspect``).

Rule 1: pure. :func:`build_report` takes the image's bytes, asks
:func:`cvmlaunch.image.detect.detect_format` what they are, calls that format's parser and
returns plain values (ints, strings, bools, lists, dicts in a fixed key order) that JSON can
carry as they are. A TDVF image's report has the TD HOB QEMU would build for a given RAM size.

Rule 2: :func:`render_text` shows a report as aligned text: numbers in hexadecimal, one table
per list. Names and version strings in it come from the file: the printer escapes them
(:func:`cvmlaunch.text.printable`).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

from cvmlaunch.errors import ImageError
from cvmlaunch.image.bzimage import BzImage, LoadFlag, XLoadFlag, parse_bzimage
from cvmlaunch.image.detect import ImageFormat, detect_format
from cvmlaunch.image.elf import ElfImage, SegmentFlag, elf_regions, parse_elf
from cvmlaunch.image.ovmf import OvmfImage, parse_ovmf
from cvmlaunch.layout import FOUR_GIB, Buffer, TdvfAttribute

TYPE_CHECKING = False  # imports for annotations only
if TYPE_CHECKING:
    from typing import Any

    Report = dict[str, Any]

__all__ = ["build_report", "render_text"]


def build_report(data: Buffer, *, name: str, memory: int = 2 << 30) -> Report:
    """Detect and parse ``data``; the report as plain values in a fixed key order.

    A TDVF image's report has the TD HOB QEMU builds for a TD of ``memory`` bytes of RAM.

    Raises:
        ImageError: the format is unknown, or the image is malformed.
    """
    fmt = detect_format(data)
    head: Report = {"file": name, "format": fmt.value, "size": len(data)}
    if fmt is ImageFormat.OVMF:
        return head | _ovmf_report(parse_ovmf(data, name=name), memory)
    if fmt is ImageFormat.ELF:
        return head | _elf_report(parse_elf(data, name=name))
    if fmt is ImageFormat.BZIMAGE:
        return head | _bzimage_report(parse_bzimage(data, name=name))
    raise ImageError(
        "unrecognised format (not OVMF/TDVF flat firmware, an ELF executable or a bzImage)",
        source=name,
    )


def _flags(value: enum.IntFlag, kind: type[enum.IntFlag]) -> list[str]:
    """Names of the set bits, in definition order; unknown bits as one hex number."""
    names = [m.name or "" for m in kind if m.value and (value & m.value) == m.value]
    known = 0
    for m in kind:
        known |= m.value
    if int(value) & ~known:
        names.append(hex(int(value) & ~known))
    return names


def _range(pair: tuple[int, int] | None) -> Report | None:
    return None if pair is None else {"gpa": pair[0], "size": pair[1]}


def _td_hob(img: OvmfImage, memory: int, warnings: list[str]) -> Report | None:
    """QEMU's TD HOB for ``img`` and ``memory`` bytes of RAM, or None (with a warning when
    the image has TDX metadata QEMU could not build one for)."""
    if not img.tdx_sections:
        return None
    from cvmlaunch.errors import LayoutError
    from cvmlaunch.image.td_hob import (
        build_td_hob,
        td_hob_event_sha384,
        td_hob_section,
        td_ram_entries,
    )

    try:
        hob = build_td_hob(img.tdx_sections, memory)
    except LayoutError as exc:
        warnings.append(f"no TD HOB: {exc}")
        return None
    return {
        "memory": memory,
        "gpa": td_hob_section(img.tdx_sections).gpa,
        "size": len(hob),
        "rtmr0_sha384": td_hob_event_sha384(hob).hex(),
        "ram": [
            {"address": e.address, "length": e.length, "accepted": e.accepted}
            for e in td_ram_entries(img.tdx_sections, memory)
        ],
    }


def _ovmf_report(img: OvmfImage, memory: int = 2 << 30) -> Report:
    warnings: list[str] = []
    tdx: list[Report] | None = None
    if img.tdx_sections is not None:
        tdx = []
        for s in img.tdx_sections:
            in_image = s.data_offset + s.raw_size <= img.size
            tdx.append(
                {
                    "index": s.index,
                    "type": s.type.name,
                    "gpa": s.gpa,
                    "memory_size": s.memory_size,
                    "data_offset": s.data_offset,
                    "raw_size": s.raw_size,
                    "attributes": _flags(s.attributes, TdvfAttribute),
                    "offset": s.offset,
                    "data_in_image": in_image,
                }
            )
        described = max((s.data_offset + s.raw_size for s in img.tdx_sections), default=0)
        if described != img.size:
            warnings.append(
                f"the TDX metadata describes a {described:#x}-byte image, this one has "
                f"{img.size:#x} bytes (a code-only image? TDX needs the full flat image)"
            )
    sev = None
    if img.sev_sections is not None:
        sev = [
            {
                "index": s.index,
                "gpa": s.gpa,
                "size": s.size,
                "type": s.type.name,
                "offset": s.offset,
            }
            for s in img.sev_sections
        ]
    return {
        "gpa": img.gpa,
        "end": FOUR_GIB,
        "guid_table": [
            {"guid": str(e.guid), "name": e.name, "offset": e.offset, "data": e.data.hex()}
            for e in img.guid_table
        ],
        "sev_es_reset_eip": img.sev_es_reset_eip,
        "sev_hash_table": _range(img.sev_hash_table),
        "sev_secret": _range(img.sev_secret),
        "has_kernel_hashes": img.has_kernel_hashes,
        "sev_sections": sev,
        "tdx_sections": tdx,
        "td_hob": _td_hob(img, memory, warnings),
        "svsm_entry_offset": img.svsm_entry_offset,
        "warnings": warnings,
    }


def _segment_flags(flags: SegmentFlag) -> str:
    return "".join(
        letter if bit in flags else "-"
        for letter, bit in (("R", SegmentFlag.R), ("W", SegmentFlag.W), ("X", SegmentFlag.X))
    )


def _elf_report(img: ElfImage) -> Report:
    return {
        "class": img.elf_class.name,
        "machine": img.machine.name,
        "entry": img.entry,
        "pvh_entry": img.pvh_entry,
        "segments": [
            {
                "index": s.index,
                "type": "PT_LOAD",
                "paddr": s.paddr,
                "vaddr": s.vaddr,
                "offset": s.offset,
                "filesz": s.filesz,
                "memsz": s.memsz,
                "flags": _segment_flags(s.flags),
                "align": s.align,
            }
            for s in img.segments
        ],
        "regions": [
            {
                "gpa": r.gpa,
                "size": r.size,
                "source": r.provenance.kind.value,
                "segment": r.provenance.index,
                "offset": r.provenance.offset,
                "detail": r.provenance.detail,
            }
            for r in elf_regions(img)
        ],
    }


def _bzimage_report(k: BzImage) -> Report:
    payload = None
    if k.payload_offset is not None and k.payload_length is not None:
        payload = {
            "offset": k.payload_offset,
            "length": k.payload_length,
            "format": k.payload_format.value if k.payload_format else None,
        }
    return {
        "protocol": k.protocol_string,
        "kernel_version": k.kernel_version,
        "setup_sects": k.setup_sects,
        "kernel_offset": k.kernel_offset,
        "kernel_size": k.kernel_size,
        "load_address": k.load_address,
        "entry_points": {"startup_32": k.load_address, "startup_64": k.startup_64},
        "relocatable": k.relocatable,
        "kernel_alignment": k.kernel_alignment,
        "min_alignment": k.min_alignment,
        "pref_address": k.pref_address,
        "init_size": k.init_size,
        "loadflags": _flags(k.loadflags, LoadFlag),
        "xloadflags": _flags(k.xloadflags, XLoadFlag),
        "initrd_addr_max": k.initrd_addr_max,
        "cmdline_size": k.cmdline_size,
        "payload": payload,
        "handover_offset": k.handover_offset,
        "kernel_info_offset": k.kernel_info_offset,
    }


# ---------------------------------------------------------------- text rendering


def _hex(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return hex(value)
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "-"
    return str(value)


def _size(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n:#x} ({n >> shift} {unit})"
    return f"{n:#x} ({n} bytes)"


def _pairs(pairs: Sequence[tuple[str, str]]) -> list[str]:
    width = max(len(k) for k, _ in pairs)
    return [f"{k:<{width}}  {v}" for k, v in pairs]


def _table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    if not rows:
        return ["", f"{title}: none"]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = ["", title]
    for row in (headers, *rows):
        lines.append(
            "  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        )
    return lines


def render_text(report: Report) -> str:
    """The report as aligned text: key/value lines, then one table per list."""
    fmt = ImageFormat(report["format"])
    head = [("file", report["file"]), ("format", fmt.description), ("size", _size(report["size"]))]
    lines: list[str]
    if fmt is ImageFormat.OVMF:
        lines = _ovmf_text(report, head)
    elif fmt is ImageFormat.ELF:
        lines = _elf_text(report, head)
    else:
        lines = _bzimage_text(report, head)
    return "\n".join(lines)


def _ovmf_text(r: Report, head: list[tuple[str, str]]) -> list[str]:
    def span(v: Report | None) -> str:
        return "-" if v is None else f"{v['gpa']:#x} size {v['size']:#x}"

    lines = _pairs(
        [
            *head,
            ("GPA", f"{r['gpa']:#x}-{r['end']:#x}"),
            ("SEV-ES reset EIP", _hex(r["sev_es_reset_eip"])),
            ("SEV hash table", span(r["sev_hash_table"])),
            ("SEV secret area", span(r["sev_secret"])),
            ("SVSM entry offset", _hex(r["svsm_entry_offset"])),
        ]
    )
    lines += _table(
        "GUID table (nearest the footer first)",
        ["GUID", "name", "offset", "data"],
        [[e["guid"], e["name"], _hex(e["offset"]), e["data"] or "-"] for e in r["guid_table"]],
    )
    if r["sev_sections"] is None:
        lines += ["", "SEV metadata: none"]
    else:
        lines += _table(
            "SEV metadata sections",
            ["#", "GPA", "size", "type"],
            [
                [str(s["index"]), _hex(s["gpa"]), _hex(s["size"]), s["type"]]
                for s in r["sev_sections"]
            ],
        )
    if r["tdx_sections"] is None:
        lines += ["", "TDX metadata: none"]
    else:
        lines += _table(
            "TDX metadata sections",
            ["#", "type", "GPA", "memory size", "data offset", "raw size", "attributes"],
            [
                [
                    str(s["index"]),
                    s["type"],
                    _hex(s["gpa"]),
                    _hex(s["memory_size"]),
                    _hex(s["data_offset"]),
                    _hex(s["raw_size"]),
                    _hex(s["attributes"]) + ("" if s["data_in_image"] else " (data outside)"),
                ]
                for s in r["tdx_sections"]
            ],
        )
    hob = r["td_hob"]
    if hob is not None:
        lines += _table(
            f"TD HOB (QEMU's, for {_size(hob['memory'])} of RAM): {hob['size']} bytes at "
            f"{_hex(hob['gpa'])}, RTMR0 event sha384 {hob['rtmr0_sha384']}",
            ["start", "length", "resource"],
            [
                [
                    _hex(e["address"]),
                    _hex(e["length"]),
                    "SYSTEM_MEMORY (accepted by the VMM)" if e["accepted"] else "UNACCEPTED",
                ]
                for e in hob["ram"]
            ],
        )
    for w in r["warnings"]:
        lines += ["", f"warning: {w}"]
    return lines


def _elf_text(r: Report, head: list[tuple[str, str]]) -> list[str]:
    lines = _pairs(
        [
            *head,
            ("class", f"{r['class']} {r['machine']}"),
            ("entry", _hex(r["entry"])),
            ("PVH entry", _hex(r["pvh_entry"])),
        ]
    )
    lines += _table(
        "PT_LOAD segments (placed by physical address)",
        ["#", "GPA", "memsz", "filesz", "file offset", "vaddr", "flags"],
        [
            [
                str(s["index"]),
                _hex(s["paddr"]),
                _hex(s["memsz"]),
                _hex(s["filesz"]),
                _hex(s["offset"]),
                _hex(s["vaddr"]),
                s["flags"],
            ]
            for s in r["segments"]
        ],
    )
    lines += _table(
        "Regions (whole pages, populated once each)",
        ["GPA", "size", "source"],
        [
            [
                _hex(g["gpa"]),
                _hex(g["size"]),
                f"{g['source']} {g['segment']}"
                + ("" if g["offset"] is None else f" +{g['offset']:#x}")
                + (f" ({g['detail']})" if g["detail"] else ""),
            ]
            for g in r["regions"]
        ],
    )
    return lines


def _payload(payload: Report | None) -> str:
    if payload is None:
        return "-"
    return f"{payload['format']}, {payload['length']:#x} bytes at +{payload['offset']:#x}"


def _bzimage_text(r: Report, head: list[tuple[str, str]]) -> list[str]:
    payload = r["payload"]
    entries = r["entry_points"]
    return _pairs(
        [
            *head,
            ("kernel version", _hex(r["kernel_version"])),
            ("boot protocol", r["protocol"]),
            (
                "setup sectors",
                f"{r['setup_sects']} (kernel at file offset {r['kernel_offset']:#x})",
            ),
            ("kernel size", _hex(r["kernel_size"])),
            ("load address", _hex(r["load_address"])),
            ("32-bit entry", _hex(entries["startup_32"])),
            ("64-bit entry", _hex(entries["startup_64"])),
            ("relocatable", _hex(r["relocatable"])),
            ("kernel alignment", _hex(r["kernel_alignment"])),
            ("min alignment", _hex(r["min_alignment"])),
            ("pref address", _hex(r["pref_address"])),
            ("init size", _hex(r["init_size"])),
            ("loadflags", _hex(r["loadflags"])),
            ("xloadflags", _hex(r["xloadflags"])),
            ("initrd addr max", _hex(r["initrd_addr_max"])),
            ("cmdline size", f"{r['cmdline_size']} bytes"),
            ("payload", _payload(payload)),
            ("handover offset", _hex(r["handover_offset"])),
            ("kernel info offset", _hex(r["kernel_info_offset"])),
        ]
    )
