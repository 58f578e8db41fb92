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

Rule 5: a bad setting is named by its field, not by how a user spelled it. A
:class:`ConfigError` carries ``setting``, the library's field name (``"vcpus"``,
``"host_data"``), and a neutral message that names the setting by that field name
("vcpus 300: expected 1 to 255"). The boundary that knows where the value came from spells
it, once, with :meth:`ConfigError.spelled`: the CLI as the flag (``--vcpus 300: ...``), the
TOML reader as ``FILE: key`` (``vm.toml: vcpus 300: ...``). Library messages never spell a
flag.

Rule 6: a programming error (a call the library's own callers cannot make from any input: an
address outside every memory slot, a plan with no populate path) is not a
:class:`CvmLaunchError`: it raises :class:`ValueError`, :class:`TypeError` or
:class:`RuntimeError` (a bug, shown with its traceback), never ``assert``.

This module imports nothing from cvmlaunch but :mod:`cvmlaunch.text` (which imports nothing).
"""

from __future__ import annotations

import re
from collections.abc import Callable

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
    """A setting is out of range or inconsistent (vCPU count, vCPU type, memory size...).

    Args:
        message: what is wrong, naming ``setting`` (and ``also``) by field name.
        setting: the library's name of the bad setting (``"vcpus"``), if it is one; the
            message must mention it (its first mention is what a boundary respells).
        also: other settings the message names (``"give vcpu_type or vcpu_sig"``).
        source: where the settings came from (a file name), prefixed to the message.
    """

    def __init__(
        self,
        message: str,
        *,
        setting: str | None = None,
        also: tuple[str, ...] = (),
        source: str | None = None,
    ):
        self.message = message
        self.setting = setting
        self.also = also
        self.source = source
        #: whether a boundary has spelled the settings (:meth:`spelled`): then they stay so.
        self.spelled_out = False
        for name in (setting, *also) if setting is not None else also:
            if _mention(name).search(message) is None:
                raise ValueError(f"ConfigError message {message!r} does not name {name!r}")
        super().__init__(f"{source}: {message}" if source else message)

    def spelled(self, spell: Callable[[str], str], *, source: str | None = None) -> ConfigError:
        """This error with its settings named as ``spell`` names them (the first mention of
        each), and ``source`` prefixed: how a boundary (the CLI, a settings file) says it.
        An error already spelled is returned as it is (the first boundary knows best)."""
        if self.spelled_out:
            return self
        message = self.message
        for name in (self.setting, *self.also) if self.setting is not None else self.also:
            spelling = spell(name).replace("\\", "\\\\")  # literal in re.sub
            message = _mention(name).sub(spelling, message, count=1)
        error = ConfigError(message, source=source or self.source)
        error.setting, error.also, error.spelled_out = self.setting, self.also, True
        return error


def _mention(name: str) -> re.Pattern[str]:
    """A whole-word mention of the setting ``name`` in a message: not part of a longer name
    (``memory`` in ``memory_backend``), nor a value's tail (``svsm`` in ``mode snp:svsm``)."""
    return re.compile(rf"(?<![\w:-]){re.escape(name)}(?![\w-])")


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
        self.op = op
        self.errno = errno
        self.fw_error = fw_error
        self.remaining = remaining
        self.detail = detail
        super().__init__(self._text())

    def _text(self) -> str:
        """The one line: the call, the detail, then what the kernel said."""
        import os

        parts = [self.op]
        if self.detail:
            parts.append(self.detail)
        if self.errno is not None:
            parts.append(f"errno {self.errno} ({os.strerror(self.errno)})")
        if self.fw_error is not None:
            parts.append(f"firmware error {self.fw_error:#x}")
        if self.remaining is not None:
            gpa, size = self.remaining
            parts.append(f"{size:#x} bytes left at GPA {gpa:#x}")
        return ": ".join(parts[:2]) + "".join(f", {p}" for p in parts[2:])


class KvmUnsupported(KvmError):
    """The host's KVM lacks a capability the launch needs; raised before anything is created.

    Its ``op`` is ``"capability check"``; ``cap`` names what is missing.
    """

    def __init__(self, cap: str, *, detail: str = ""):
        self.cap = cap
        super().__init__("capability check", detail=detail)

    def _text(self) -> str:
        text = f"this host's KVM does not offer {self.cap}"
        return f"{text} ({self.detail})" if self.detail else text


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
