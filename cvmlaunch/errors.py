"""The exception tree of cvmlaunch.

Rule 1: every failure cvmlaunch anticipates is a subclass of :class:`CvmLaunchError`.
Any other exception escaping a public function is a bug.

Rule 2: a message is one line that names the input (file, range, call) and the problem.

Rule 3: :class:`CheckFailed` means "the tool ran fine, but a check did not hold" (exit 1);
every other :class:`CvmLaunchError` means bad input or an unusable host (exit 2).

Rule 4: a message is printable: whatever it quotes from an input (a file name, a provenance
name) is escaped by :func:`cvmlaunch.text.printable` when the message is formed as text
(``str(error)``), so a name with a newline or a terminal escape cannot split the line or
drive the terminal. The raw values stay on the exception's attributes (``source``...).

This module imports nothing from cvmlaunch but :mod:`cvmlaunch.text` (which imports nothing).
"""

from __future__ import annotations

from cvmlaunch.text import printable

__all__ = [
    "CheckFailed",
    "ConfigError",
    "CvmLaunchError",
    "GuestError",
    "ImageError",
    "KvmError",
    "KvmUnsupported",
    "LayoutError",
    "LogFormatError",
    "MeasurementMismatch",
    "UnsupportedSection",
]


class CvmLaunchError(Exception):
    """Base of every error cvmlaunch raises on purpose. Not raised directly."""

    exit_code = 2

    def __new__(cls, *args: object, **kwargs: object) -> CvmLaunchError:
        if cls is CvmLaunchError:
            raise TypeError("CvmLaunchError is abstract: raise one of its subclasses")
        return super().__new__(cls)

    def __str__(self) -> str:
        return printable(super().__str__())


class ImageError(CvmLaunchError):
    """A firmware, kernel or other input image is malformed or not what was expected.

    Args:
        message: what is wrong.
        source: the input's name (usually its path), prefixed to the message.
        offset: where in the input the problem was found, if known.
    """

    def __init__(self, message: str, *, source: str | None = None, offset: int | None = None):
        self.message = message
        self.source = source
        self.offset = offset
        text = message
        if offset is not None:
            text = f"{text} (at offset {offset:#x})"
        if source:
            text = f"{source}: {text}"
        super().__init__(text)


class UnsupportedSection(ImageError):
    """A firmware metadata section of a type this version does not know (never coerced)."""

    def __init__(
        self,
        message: str,
        *,
        raw: int,
        source: str | None = None,
        offset: int | None = None,
    ):
        self.raw = raw
        super().__init__(message, source=source, offset=offset)


class LayoutError(CvmLaunchError):
    """Regions that cannot be laid out: misaligned, overlapping, outside guest memory."""


class ConfigError(CvmLaunchError):
    """A setting is out of range or inconsistent (vCPU count, vCPU type, memory size...)."""


class LogFormatError(CvmLaunchError):
    """A launch measurement log that cannot be read or does not replay."""


class KvmError(CvmLaunchError):
    """A KVM ioctl failed.

    Args:
        op: the call, e.g. ``KVM_SEV_SNP_LAUNCH_UPDATE``.
        errno: the errno the kernel returned, if any.
        fw_error: the firmware status (SNP) or SEAMCALL status (TDX), if any.
        remaining: the (gpa, size) still to do when the call gave up, if it was a populate.
        detail: extra context, e.g. the range being populated.
    """

    def __init__(
        self,
        op: str,
        *,
        errno: int | None = None,
        fw_error: int | None = None,
        remaining: tuple[int, int] | None = None,
        detail: str = "",
    ):
        import os

        self.op = op
        self.errno = errno
        self.fw_error = fw_error
        self.remaining = remaining
        parts = [op]
        if detail:
            parts.append(detail)
        if errno is not None:
            parts.append(f"errno {errno} ({os.strerror(errno)})")
        if fw_error is not None:
            parts.append(f"firmware error {fw_error:#x}")
        if remaining is not None:
            gpa, size = remaining
            parts.append(f"{size:#x} bytes left at GPA {gpa:#x}")
        super().__init__(": ".join(parts[:2]) + "".join(f", {p}" for p in parts[2:]))


class KvmUnsupported(KvmError):
    """The host's KVM lacks a capability the launch needs; raised before anything is created."""

    def __init__(self, cap: str, *, detail: str = ""):
        self.cap = cap
        msg = f"this host's KVM does not offer {cap}"
        if detail:
            msg = f"{msg} ({detail})"
        CvmLaunchError.__init__(self, msg)
        self.op = "capability check"
        self.errno = None
        self.fw_error = None
        self.remaining = None


class CheckFailed(CvmLaunchError):
    """The tool ran, but a check did not hold (exit 1)."""

    exit_code = 1


class MeasurementMismatch(CheckFailed):
    """A computed digest differs from the expected one."""

    def __init__(self, what: str, *, expected: bytes, actual: bytes):
        self.expected = expected
        self.actual = actual
        super().__init__(f"{what} mismatch: expected {expected.hex()}, got {actual.hex()}")


class GuestError(CvmLaunchError):
    """The guest did something the launcher cannot accept (crash, timeout, bad report)."""
