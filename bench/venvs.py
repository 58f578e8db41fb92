"""The two commands of the whole-process benchmarks, each from a throwaway virtualenv.

* The peer, sev-snp-measure, in ``bench-peer`` (never a dependency of cvmlaunch).
* Ours as a regular install runs it: ``bench-ours`` holds only cvmlaunch's dependencies
  (the requirements in its installed metadata, at the versions of the running environment)
  and a console script like pip's, which imports cvmlaunch from this source tree through
  ``PYTHONPATH``. The development
  virtualenv's editable install adds its import hook to every start-up (about 10 ms on this
  project's machine), which a user's ``pip install`` does not have.

Both live under the cache directory (``$XDG_CACHE_HOME/cvmlaunch``, default
``~/.cache/cvmlaunch``) and are made on first use with the standard ``venv`` module and pip,
from the package registry pip is configured for. Delete them to start over.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import Context, child_env, find_firmware

__all__ = ["PEER_PACKAGE", "PEER_VERSION", "Command", "cache_dir", "find_ours", "find_peer"]

PEER_PACKAGE = "sev-snp-measure"
PEER_VERSION = "0.0.13"
#: Where ``bench/`` and ``cvmlaunch/`` are.
SOURCE_ROOT = Path(__file__).resolve().parent.parent
#: The console script pip writes for ``cvmlaunch = "cvmlaunch.cli:main"``.
_CONSOLE_SCRIPT = """import re
import sys
from cvmlaunch.cli import main
if __name__ == "__main__":
    sys.argv[0] = re.sub(r"(-script\\.pyw|\\.exe)?$", "", sys.argv[0])
    sys.exit(main())
"""


def cache_dir() -> Path:
    """The bench's cache directory."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cvmlaunch"


@dataclass(frozen=True)
class Command:
    """A runnable command: its argv prefix (empty if there is none), the environment it
    needs on top of the bench's, and a note (why there is none, or how it is run)."""

    argv: tuple[str, ...]
    note: str = ""
    env: dict[str, str] = field(default_factory=dict)


def _make_venv(venv: Path, requirements: list[str]) -> None:
    subprocess.run(
        [sys.executable, "-m", "venv", "--clear", str(venv)], check=True, capture_output=True
    )
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *requirements],
        check=True,
        capture_output=True,
        timeout=600,
    )


def _peer_installed(venv: Path) -> bool:
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


def find_peer(install: bool, venv: Path | None = None) -> Command:
    """The peer's command, installing it into its virtualenv if ``install`` and needed.

    Never raises: a peer that cannot be had comes back with an empty argv and a note.
    """
    venv = venv or cache_dir() / "bench-peer"
    command = Command((str(venv / "bin" / PEER_PACKAGE),))
    if _peer_installed(venv):
        return command
    if not install:
        return Command((), f"{PEER_PACKAGE} not installed in {venv} (run without --quick)")
    try:
        _make_venv(venv, [f"{PEER_PACKAGE}=={PEER_VERSION}"])
    except (OSError, subprocess.SubprocessError) as exc:
        return Command((), f"{PEER_PACKAGE} {PEER_VERSION} could not be installed: {exc}")
    if not _peer_installed(venv):
        return Command((), f"{PEER_PACKAGE} {PEER_VERSION} did not install into {venv}")
    return command


def _dependencies() -> list[str]:
    """cvmlaunch's own (non-extra) requirements, by name, from its installed metadata."""
    names = []
    for requirement in importlib.metadata.requires("cvmlaunch") or []:
        if "extra ==" in requirement.replace("extra==", "extra =="):
            continue
        match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
        if match:
            names.append(match.group(0))
    return sorted(names)


def find_ours(install: bool, venv: Path | None = None) -> Command:
    """``cvmlaunch`` as a regular install runs it (see the module docstring), making its
    virtualenv if ``install`` and needed; else this interpreter's ``python -m cvmlaunch``,
    with a note. Never raises."""
    venv = venv or cache_dir() / "bench-ours"
    script = venv / "bin" / "cvmlaunch-bench"
    stamp = venv / "requirements.txt"
    pins = [f"{n}=={importlib.metadata.version(n)}" for n in _dependencies()]
    fallback = Command(
        (sys.executable, "-m", "cvmlaunch"),
        "ours ran from the development virtualenv (its editable install's import hook adds "
        "to every start-up)",
    )
    if not (script.exists() and stamp.exists() and stamp.read_text() == "\n".join(pins)):
        if not install:
            return fallback
        try:
            _make_venv(venv, pins)
        except (OSError, subprocess.SubprocessError) as exc:
            return Command(fallback.argv, f"{fallback.note}; making {venv} failed: {exc}")
        script.write_text(_CONSOLE_SCRIPT)
        stamp.write_text("\n".join(pins))
    return Command(
        (str(venv / "bin" / "python"), str(script)), env={"PYTHONPATH": str(SOURCE_ROOT)}
    )


@dataclass(frozen=True)
class PeerRun:
    """What a benchmark against the peer runs with: the firmware, both commands and the
    environment of the timed child processes."""

    firmware: Path
    ours: Command
    peer: Command
    env: dict[str, str]


def find_peer_run(ctx: Context, bench: str, firmware: str) -> PeerRun | None:
    """Firmware ``firmware``, the peer and ours for benchmark ``bench``; None, with a note in
    ``ctx``, when the firmware or the peer is missing (a note too when ours is a fallback)."""
    path = find_firmware(firmware)
    if path is None:
        ctx.notes.append(f"{bench}: skipped: {firmware} not found (shared/firmware)")
        return None
    peer = find_peer(install=not ctx.quick)
    if not peer.argv:
        ctx.notes.append(f"{bench}: skipped: {peer.note}")
        return None
    ours = find_ours(install=not ctx.quick)
    if ours.note:
        ctx.notes.append(f"{bench}: {ours.note}")
    # PYTHONPATH for ours; the peer imports nothing from there
    return PeerRun(path, ours, peer, child_env(ours.env))
