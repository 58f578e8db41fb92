"""The SEV kernel-hashes table: measured direct boot of kernel, initrd and command line.

Rule: built from SHA-256 digests, never from file contents, so callers stream the files (or
already have the hashes) and a 256 MiB initrd is never held in memory.

Spec: QEMU target/i386/sev.c (``SevHashTable``, ``PaddedSevHashTable``, ``SevHashTableEntry``)
and edk2 OvmfPkg/AmdSev BlobVerifierLibSevHashes: all little endian, packed:

* header: GUID 9438d606-4f22-4cc9-b479-a793d411fd21, u16 total length (168);
* three entries in this order, each GUID | u16 length (50) | SHA-256:
  cmdline 97d02dd8-bd20-4c94-aa78-e7714d36ab2a (the command line including its NUL; no
  command line hashes the single NUL byte), initrd 44baf731-3a2f-4bd7-9af1-41e29169781d (no
  initrd hashes empty input), kernel 4de79437-abd2-427f-b835-d5b172d2045b (the bzImage file as
  on disk);
* zero padding to a multiple of 16 (176 bytes).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from cvmlaunch.errors import ConfigError, ImageError
from cvmlaunch.image.ovmf import guid_bytes_le
from cvmlaunch.layout import PAGE_SIZE

__all__ = ["HASH_TABLE_SIZE", "KernelHashes", "cmdline_bytes", "cmdline_sha256"]

_TABLE_GUID = guid_bytes_le("9438d606-4f22-4cc9-b479-a793d411fd21")
_CMDLINE_GUID = guid_bytes_le("97d02dd8-bd20-4c94-aa78-e7714d36ab2a")
_INITRD_GUID = guid_bytes_le("44baf731-3a2f-4bd7-9af1-41e29169781d")
_KERNEL_GUID = guid_bytes_le("4de79437-abd2-427f-b835-d5b172d2045b")

_HEADER = struct.Struct("<16sH")  # GUID, u16 length of the whole (unpadded) table
_ENTRY = struct.Struct("<16sH32s")  # GUID, u16 length of the entry, SHA-256
_TABLE_LENGTH = _HEADER.size + 3 * _ENTRY.size  # 168
#: The padded table, as placed in guest memory and measured.
HASH_TABLE_SIZE = (_TABLE_LENGTH + 15) & ~15  # 176


def cmdline_bytes(text: str, setting: str = "append") -> bytes:
    """The bytes of a kernel command line given as text, as QEMU's ``-append`` takes them.

    A command line is bytes in the end (QEMU copies ``-append`` as given; the kernel parses
    bytes). Text is UTF-8; a byte that is not UTF-8 arrives from ``sys.argv`` as a
    ``surrogateescape`` character (``\udcff`` for 0xff) and is turned back into that byte,
    so ``--append $'\xff'`` measures the byte 0xff, as QEMU would. A surrogate that is not
    an escaped byte (not from an argument or a file) is no text at all: refused.

    Raises:
        ConfigError: a surrogate that is not an escaped byte.
    """
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as exc:
        bad = ord(text[exc.start])
        raise ConfigError(
            f"{setting}: character U+{bad:04X} at {exc.start} is neither text nor an escaped byte",
            setting=setting,
        ) from None


def cmdline_sha256(cmdline: bytes | None) -> bytes:
    """SHA-256 of a kernel command line as QEMU measures it: the bytes plus a terminating NUL.

    Args:
        cmdline: the raw command line (no NUL), or None for no ``-append`` (hashes ``b"\\0"``).
    """
    return hashlib.sha256((cmdline or b"") + b"\0").digest()


_EMPTY_SHA256 = hashlib.sha256(b"").digest()


@dataclass(frozen=True, slots=True)
class KernelHashes:
    """The three SHA-256 digests QEMU puts in the kernel-hashes table.

    Args:
        kernel: SHA-256 of the kernel file.
        initrd: SHA-256 of the initrd file (of empty input when there is none).
        cmdline: SHA-256 of the command line including its NUL (see :func:`cmdline_sha256`).

    Raises:
        ConfigError: a digest that is not 32 bytes.
    """

    kernel: bytes
    initrd: bytes = _EMPTY_SHA256
    cmdline: bytes = cmdline_sha256(None)

    def __post_init__(self) -> None:
        for what in ("kernel", "initrd", "cmdline"):
            if len(getattr(self, what)) != 32:
                raise ConfigError(f"the {what} SHA-256 must be 32 bytes")

    @classmethod
    def for_boot(
        cls, kernel: bytes, initrd: bytes | None = None, cmdline: str | None = None
    ) -> KernelHashes:
        """The table of a direct boot: the kernel's SHA-256, the initrd's (None: no initrd,
        the SHA-256 of empty input) and the command line text (None: no ``-append``), with
        QEMU's rules for its bytes (:func:`cmdline_bytes`).

        Raises:
            ConfigError: a command line QEMU would refuse, or a digest that is not 32 bytes.
        """
        return cls(
            kernel=kernel,
            initrd=_EMPTY_SHA256 if initrd is None else initrd,
            cmdline=cmdline_sha256(None if cmdline is None else cmdline_bytes(cmdline)),
        )

    def table(self) -> bytes:
        """The padded 176-byte table."""
        out = _HEADER.pack(_TABLE_GUID, _TABLE_LENGTH)
        for guid, digest in (
            (_CMDLINE_GUID, self.cmdline),
            (_INITRD_GUID, self.initrd),
            (_KERNEL_GUID, self.kernel),
        ):
            out += _ENTRY.pack(guid, _ENTRY.size, digest)
        return out + bytes(HASH_TABLE_SIZE - len(out))

    def page_data(self, offset: int, size: int = PAGE_SIZE, *, source: str = "firmware") -> bytes:
        """The contents of the SNP kernel-hashes section: zeros with the table at ``offset``.

        Args:
            offset: where the table starts in the section (the hash-table GUID entry's base
                GPA modulo 4 KiB, as QEMU places it).
            size: the section size (QEMU zero-fills all of it).
            source: the firmware's name for errors.

        Raises:
            ImageError: the table does not fit in the section at ``offset``.
        """
        if offset < 0 or offset + HASH_TABLE_SIZE > size:
            raise ImageError(
                f"the kernel-hashes table ({HASH_TABLE_SIZE} bytes at +{offset:#x}) does not fit "
                f"in the {size:#x}-byte SNP_KERNEL_HASHES section",
                source=source,
            )
        return bytes(offset) + self.table()
