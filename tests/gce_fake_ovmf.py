"""Rebuild google/gce-tcb-verifier's synthetic test firmware ``fakeovmf.CleanExample(size)``.

Written from the layout that package documents (testing/fakeovmf/fake_fw.go, fake_sev_data.go,
fake_tdx_data.go and ovmf/abi/abi.go), not from its code. The image is ``size`` zero bytes with:

* "LGTMLGTMLGTMLGTM" at 0x800 and at 0xA00;
* the SEV metadata ("ASEV", length 52, version 1, 3 sections) at offset 0: an unmeasured
  section 0xFF001000+0x1000 (type 1), CPUID 0xFF003000+0x1000 (type 3), secrets
  0xFF004000+0x1000 (type 2);
* the TDX metadata GUID at 0x100 and the TDVF descriptor (6 sections) at 0x110: BFV
  0x20000 -> 0xFFE20000 (0x1E0000 bytes, MR.EXTEND), CFV 0x0 -> 0xFFE00000 (0x20000),
  TEMP_MEM 0x810000+0x10000, TEMP_MEM 0x80B000+0x2000, TD_HOB 0x809000+0x2000,
  TEMP_MEM 0x800000+0x6000 (the layout of a 2 MiB OVMF);
* the GUID table ending 0x20 bytes before the end: nearest the footer the SEV-ES reset block
  (u32 0xFF0000FF, u16 22, GUID 00f771de-...), then the SEV metadata offset entry
  (u32 = image size, i.e. offset 0 from the start), then the TDX metadata offset entry
  (u32 = size - 0x110); the footer's u16 length is 3 * 22 + 18 = 84.
"""

from __future__ import annotations

import struct
import uuid

from tests.vectors import tdx_published

FOOTER = uuid.UUID("96b582de-1fb2-45f7-baea-a366c55a082d")
SEV_ES_RESET_BLOCK = uuid.UUID("00f771de-1a7e-4fcb-890e-68c77e2fb44e")
SEV_METADATA_OFFSET = uuid.UUID("dc886566-984a-4798-a75e-5585a7bf67cc")
TDX_METADATA_OFFSET = uuid.UUID("e47a6535-984a-4798-865e-4685a7bf8ec2")
TDX_METADATA = uuid.UUID("e9eaf9f3-168e-44d5-a8eb-7f4d8738f6ae")

#: google/gce-tcb-verifier verify/verifytest CleanTdxExampleMeasurement (the version pinned
#: in tdx-measure.md section 7): MRTD of CleanExample(2 MiB) under the QEMU model.
CLEAN_TDX_EXAMPLE_MRTD = tdx_published("gce-clean-example-2mib").mrtd_per_page

_TDX_SECTIONS = [  # data_offset, raw_size, gpa, memory_size, type, attributes
    (0x20000, 0x1E0000, 0xFFE20000, 0x1E0000, 0, 1),
    (0x0, 0x20000, 0xFFE00000, 0x20000, 1, 0),
    (0, 0, 0x810000, 0x10000, 3, 0),
    (0, 0, 0x80B000, 0x2000, 3, 0),
    (0, 0, 0x809000, 0x2000, 2, 0),
    (0, 0, 0x800000, 0x6000, 3, 0),
]


def _entry(data: bytes, guid: uuid.UUID) -> bytes:
    return data + struct.pack("<H", len(data) + 18) + guid.bytes_le


def clean_example(size: int = 2 * 1024 * 1024) -> bytes:
    """The CleanExample image of ``size`` bytes (>= 0x1000)."""
    fw = bytearray(size)
    fw[0x800:0x810] = b"LGTM" * 4
    fw[0xA00:0xA10] = b"LGTM" * 4
    sev = [(0xFF001000, 0x1000, 1), (0xFF003000, 0x1000, 3), (0xFF004000, 0x1000, 2)]
    header = struct.pack("<4sIII", b"ASEV", 16 + 12 * len(sev), 1, len(sev))
    blob = header + b"".join(struct.pack("<III", *s) for s in sev)
    fw[0 : len(blob)] = blob
    tdvf = struct.pack("<4sIII", b"TDVF", 16 + 32 * len(_TDX_SECTIONS), 1, len(_TDX_SECTIONS))
    tdvf += b"".join(struct.pack("<IIQQII", *s) for s in _TDX_SECTIONS)
    fw[0x100:0x110] = TDX_METADATA.bytes_le
    fw[0x110 : 0x110 + len(tdvf)] = tdvf
    # Entries from the footer backwards: reset block, SEV metadata offset, TDX metadata offset.
    reset = _entry(struct.pack("<I", 0xFF0000FF), SEV_ES_RESET_BLOCK)
    sev_off = _entry(struct.pack("<I", size), SEV_METADATA_OFFSET)
    tdx_off = _entry(struct.pack("<I", size - 0x110), TDX_METADATA_OFFSET)
    table = tdx_off + sev_off + reset
    footer = struct.pack("<H", len(table) + 18) + FOOTER.bytes_le
    blob = table + footer
    fw[size - 0x20 - len(blob) : size - 0x20] = blob
    return bytes(fw)
