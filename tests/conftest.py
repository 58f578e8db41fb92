"""Shared fixtures. Paths are relative to this file, never to the working directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


def firmware_dirs() -> list[Path]:
    """Where test firmware may be: $CVMLAUNCH_FIRMWARE_DIR, ../shared/firmware, distro paths."""
    dirs: list[Path] = []
    env = os.environ.get("CVMLAUNCH_FIRMWARE_DIR")
    if env:
        dirs.append(Path(env))
    # ../shared/firmware beside the checkout (CI), or beside any parent (git worktrees).
    dirs += [p / "shared" / "firmware" for p in REPO.parents]
    dirs += [Path("/usr/share/ovmf"), Path("/usr/share/OVMF")]
    return dirs


def find_firmware(name: str) -> Path | None:
    """The first firmware file called ``name`` in :func:`firmware_dirs`, or None."""
    for d in firmware_dirs():
        p = d / name
        if p.is_file():
            return p
    return None


@pytest.fixture
def firmware() -> object:
    """A function ``firmware(name) -> Path`` that skips the test when the file is absent."""

    def get(name: str) -> Path:
        p = find_firmware(name)
        if p is None:
            pytest.skip(f"firmware {name} not found in {[str(d) for d in firmware_dirs()]}")
        return p

    return get
