"""Write the example guest's initrd: a tiny newc cpio archive, byte-for-byte reproducible.

    python3 examples/guest/make_initrd.py [OUTPUT]   (default: cvmlaunch/data/example-initrd.img)

Format: the "newc" cpio format (magic 070701, 13 eight-digit hex fields, NUL-terminated name,
each header+name and each body padded to 4 bytes, a final "TRAILER!!!" entry), as the Linux
initramfs loader reads it (Documentation/driver-api/early-userspace/buffer-format.rst). All
times, owners and inode numbers are fixed so the output never changes.
"""

from __future__ import annotations

import sys
from pathlib import Path

FILES: tuple[tuple[str, bytes], ...] = (
    ("hello.txt", b"Hello from the cvmlaunch example initrd.\n"),
    (
        "README",
        b"This archive is measured by cvmlaunch and hashed again by the example guest;\n"
        b"the launch succeeds only when both agree, range by range.\n",
    ),
)


def _pad4(data: bytes) -> bytes:
    return data + bytes(-len(data) % 4)


def _entry(ino: int, name: str, mode: int, body: bytes) -> bytes:
    fields = (ino, mode, 0, 0, 1, 0, len(body), 0, 0, 0, 0, len(name) + 1, 0)
    header = b"070701" + b"".join(f"{v:08x}".encode() for v in fields)
    return _pad4(header + name.encode() + b"\0") + _pad4(body)


def build() -> bytes:
    """The archive bytes."""
    out = b"".join(_entry(i + 1, n, 0o100644, b) for i, (n, b) in enumerate(FILES))
    return out + _entry(0, "TRAILER!!!", 0, b"")


def main() -> None:
    default = Path(__file__).resolve().parents[2] / "cvmlaunch" / "data" / "example-initrd.img"
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else default
    target.write_bytes(build())


if __name__ == "__main__":
    main()
