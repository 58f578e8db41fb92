"""sev-snp-measure, the peer, in a throwaway virtualenv of its own (never a dependency).

The virtualenv lives under the cache directory (``$XDG_CACHE_HOME/cvmlaunch/bench-peer``,
default ``~/.cache/cvmlaunch/bench-peer``) and is made on first use with the standard ``venv``
module and pip, from the package registry pip is configured for. Delete the directory to
start over.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PEER_PACKAGE", "PEER_VERSION", "Peer", "cache_dir", "find_peer"]

PEER_PACKAGE = "sev-snp-measure"
PEER_VERSION = "0.0.13"


def cache_dir() -> Path:
    """The bench's cache directory."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cvmlaunch"


@dataclass(frozen=True)
class Peer:
    """An installed peer: the command to run, or why there is none."""

    argv0: str | None
    note: str = ""


def _installed(venv: Path) -> bool:
    python = venv / "bin" / "python"
    if not (venv / "bin" / PEER_PACKAGE).exists() or not python.exists():
        return False
    probe = subprocess.run(
        [str(python), "-c", f"import importlib.metadata as m; print(m.version('{PEER_PACKAGE}'))"],
        capture_output=True,
        text=True,
        check=False,
    )
    return probe.returncode == 0 and probe.stdout.strip() == PEER_VERSION


def find_peer(install: bool, venv: Path | None = None) -> Peer:
    """The peer's command, installing it into its virtualenv if ``install`` and needed.

    Never raises: a peer that cannot be had comes back with ``argv0=None`` and a note.
    """
    venv = venv or cache_dir() / "bench-peer"
    if _installed(venv):
        return Peer(str(venv / "bin" / PEER_PACKAGE))
    if not install:
        return Peer(None, f"{PEER_PACKAGE} not installed in {venv} (run without --quick)")
    try:
        subprocess.run(
            [sys.executable, "-m", "venv", "--clear", str(venv)], check=True, capture_output=True
        )
        subprocess.run(
            [
                str(venv / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "-q",
                f"{PEER_PACKAGE}=={PEER_VERSION}",
            ],
            check=True,
            capture_output=True,
            timeout=600,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return Peer(None, f"{PEER_PACKAGE} {PEER_VERSION} could not be installed: {exc}")
    if not _installed(venv):
        return Peer(None, f"{PEER_PACKAGE} {PEER_VERSION} did not install into {venv}")
    return Peer(str(venv / "bin" / PEER_PACKAGE))
