"""Asserting cvmlaunch errors by what they carry, not by their prose.

``raises_cvm(ConfigError, setting="vcpus")`` is :func:`pytest.raises` that also checks the
error names the setting ``vcpus`` (:attr:`ConfigError.setting`), as pyca/cryptography's
``raises_unsupported_algorithm(reason)`` checks a reason code. ``match`` still checks the
message where the words are the point.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from cvmlaunch.errors import ConfigError, CvmLaunchError

__all__ = ["raises_cvm"]


@contextmanager
def raises_cvm(
    kind: type[CvmLaunchError] = ConfigError,
    *,
    setting: str | None,
    match: str | None = None,
) -> Iterator[pytest.ExceptionInfo[Any]]:
    """Expect ``kind`` naming ``setting`` (None: an error that names no setting)."""
    with pytest.raises(kind, match=match) as info:
        yield info
    assert getattr(info.value, "setting", None) == setting, (
        f"{kind.__name__} names setting {getattr(info.value, 'setting', None)!r}, "
        f"not {setting!r}: {info.value}"
    )
