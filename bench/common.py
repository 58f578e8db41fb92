"""What every benchmark gets: its options, a scratch directory, and where the inputs are."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Context", "child_env", "find_firmware"]


@dataclass
class Context:
    """Options of one bench run.

    Args:
        quick: a smoke run (small sizes, one repetition, no peer install).
        repeat: repetitions per measurement (medians are reported).
        scratch: a temporary directory for generated inputs, removed after the run.
        notes: lines for below the table (skipped benchmarks, explanations).
    """

    quick: bool
    repeat: int
    scratch: Path
    notes: list[str] = field(default_factory=list)

    def size(self, full: int, quick: int) -> int:
        """``quick`` bytes in a smoke run, else ``full``."""
        return quick if self.quick else full


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for timed child processes: Python bytecode cached as in a normal
    install (pip compiles it at install time), in the bench's cache directory rather than
    the source tree; an inherited ``PYTHONDONTWRITEBYTECODE`` would otherwise make every
    run of ours (but not of an installed peer) compile its sources again."""
    from bench.venvs import cache_dir

    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(cache_dir() / "pycache")
    env.update(extra or {})
    return env


def find_firmware(name: str) -> Path | None:
    """Firmware ``name`` from $CVMLAUNCH_FIRMWARE_DIR or ``shared/firmware`` beside the
    checkout or any parent directory (git worktrees), as the tests look for it; else None."""
    dirs = [Path(d) for d in [os.environ.get("CVMLAUNCH_FIRMWARE_DIR")] if d]
    dirs += [p / "shared" / "firmware" for p in Path(__file__).resolve().parents]
    for d in dirs:
        if (d / name).is_file():
            return d / name
    return None
