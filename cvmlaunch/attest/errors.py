"""The errors of :mod:`cvmlaunch.attest` (subclasses of the project's tree).

A report or quote that cannot be read is bad input (:class:`ReportFormatError`, exit 2); a
report that was read but does not hold (a field differs, a signature or certificate does not
verify) is a failed check (:class:`ReportMismatch`, :class:`SignatureInvalid`, exit 1).
"""

from __future__ import annotations

from cvmlaunch.errors import CheckFailed, ImageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cvmlaunch.attest.compare import Difference

__all__ = [
    "CertificateError",
    "ReportFormatError",
    "ReportMismatch",
    "SignatureInvalid",
    "UnknownReportVersion",
]


class ReportFormatError(ImageError):
    """An attestation report or quote that is truncated, oversized or malformed (exit 2)."""


class UnknownReportVersion(ReportFormatError):
    """A report or quote of a version this parser does not know (never guessed at)."""


class CertificateError(ImageError):
    """A certificate file that cannot be read, or a key of the wrong kind (exit 2)."""


class SignatureInvalid(CheckFailed):
    """A report signature or certificate signature that does not verify (exit 1)."""


class ReportMismatch(CheckFailed):
    """Report fields that differ from the reference values (exit 1).

    Args:
        differences: every field that differs, expected vs got.
    """

    def __init__(self, differences: tuple[Difference, ...]):
        self.differences = differences
        super().__init__(
            "the report differs from the reference values: "
            + "; ".join(f"{d.field}: expected {d.expected}, got {d.got}" for d in differences)
        )
