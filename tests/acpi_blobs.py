"""QEMU-shaped ACPI fw_cfg blobs for tests (and the README's example): ``etc/acpi/tables``
(DSDT, FACS, FACP, APIC, RSDT), ``etc/acpi/rsdp`` (a 20-byte revision-0 RSDP pointing at the
RSDT's offset) and ``etc/table-loader`` (ALLOCATE rsdp in FSEG, ALLOCATE tables in HIGH, pointer
and checksum commands), each padded to 4 KiB as QEMU serves them. The layout follows research
launch.md section 4.2 item 9; the bytes are ours (a stand-in for what a real VMM serves, not a
copy of QEMU's tables).

``python -m tests.acpi_blobs DIR`` writes them in the layout a guest's
``/sys/firmware/qemu_fw_cfg/by_name/`` has (``DIR/etc/acpi/tables/raw`` ...).
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

PAGE = 4096


def _table(signature: bytes, body: bytes, revision: int = 1) -> bytearray:
    length = 36 + len(body)
    t = bytearray(
        signature
        + struct.pack("<IBB", length, revision, 0)
        + b"BOCHS "
        + b"BXPC    "
        + struct.pack("<I", 1)
        + b"BXPC"
        + struct.pack("<I", 1)
    )
    t += body
    t[9] = (-sum(t)) & 0xFF
    return t


def _pad(blob: bytes) -> bytes:
    return blob + bytes(-len(blob) % PAGE)


def _command(kind: int, payload: bytes) -> bytes:
    raw = struct.pack("<I", kind) + payload
    return raw + bytes(128 - len(raw))


def _name(text: str) -> bytes:
    return text.encode().ljust(56, b"\x00")


def qemu_like_acpi(cpus: int = 1) -> dict[str, bytes]:
    """The three blobs by fw_cfg name; ``cpus`` changes the MADT (and so every digest)."""
    dsdt = _table(b"DSDT", b"\x10\x05\\_SB_" + bytes(8))
    facs = bytearray(b"FACS" + struct.pack("<I", 64) + bytes(56))
    offsets = {}
    tables = bytearray()
    for name, table in (("DSDT", dsdt), ("FACS", facs)):
        offsets[name] = len(tables)
        tables += table
    facp_body = bytearray(80)
    facp = _table(b"FACP", bytes(facp_body), revision=1)
    offsets["FACP"] = len(tables)
    tables += facp
    lapics = b"".join(struct.pack("<BBBBI", 0, 8, i, i, 1) for i in range(cpus))
    apic = _table(b"APIC", struct.pack("<II", 0xFEE00000, 1) + lapics)
    offsets["APIC"] = len(tables)
    tables += apic
    rsdt_entries = [offsets["FACP"], offsets["APIC"]]
    rsdt = _table(b"RSDT", b"".join(struct.pack("<I", o) for o in rsdt_entries))
    offsets["RSDT"] = len(tables)
    tables += rsdt
    rsdp = bytearray(
        b"RSD PTR " + b"\x00" + b"BOCHS " + b"\x00" + struct.pack("<I", offsets["RSDT"])
    )
    t, r = "etc/acpi/tables", "etc/acpi/rsdp"
    loader = [
        _command(1, _name(r) + struct.pack("<IB", 16, 2)),
        _command(1, _name(t) + struct.pack("<IB", 64, 1)),
        _command(
            3, _name(t) + struct.pack("<III", offsets["DSDT"] + 9, offsets["DSDT"], len(dsdt))
        ),
        _command(2, _name(t) + _name(t) + struct.pack("<IB", offsets["FACP"] + 36, 4)),
        _command(
            3, _name(t) + struct.pack("<III", offsets["FACP"] + 9, offsets["FACP"], len(facp))
        ),
        _command(
            3, _name(t) + struct.pack("<III", offsets["APIC"] + 9, offsets["APIC"], len(apic))
        ),
        *(
            _command(2, _name(t) + _name(t) + struct.pack("<IB", offsets["RSDT"] + 36 + 4 * i, 4))
            for i in range(len(rsdt_entries))
        ),
        _command(
            3, _name(t) + struct.pack("<III", offsets["RSDT"] + 9, offsets["RSDT"], len(rsdt))
        ),
        _command(2, _name(r) + _name(t) + struct.pack("<IB", 16, 4)),
        _command(3, _name(r) + struct.pack("<III", 8, 0, 20)),
    ]
    return {
        "etc/table-loader": _pad(b"".join(loader)),
        r: bytes(rsdp),
        t: _pad(bytes(tables)),
    }


def write_by_name(directory: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` as ``directory/<name>/raw`` (the sysfs fw_cfg ``by_name`` layout)."""
    for name, data in files.items():
        path = directory / name / "raw"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tests.acpi_blobs DIR")
    write_by_name(Path(sys.argv[1]), qemu_like_acpi())
