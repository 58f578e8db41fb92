"""Start-up cost of ``cvmlaunch measure snp``'s library path, guarded by what it imports.

Speed itself lives in bench/ (no timed assertions here). What keeps it fast is what the
modules import and create at import time, and that is deterministic: a fresh interpreter
without ``site`` (so that no editable-install hook or .pth file has imported anything) loads the
measurement path and reports the modules it pulled in.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cvmlaunch

#: The source tree holding the cvmlaunch package under test.
_ROOT = str(Path(cvmlaunch.__file__).resolve().parent.parent)

#: What ``cvmlaunch measure snp`` needs from the library: parse the firmware, fold the plan.
_MEASURE_PATH = ("cvmlaunch.measure.snp", "cvmlaunch.files", "cvmlaunch.image.ovmf")

#: Modules this path must not import (each costs milliseconds, or is a heavy dependency).
_FORBIDDEN = (
    "typing",  # ~2 ms: annotations only (TYPE_CHECKING = False)
    "pathlib",  # ~3 ms with urllib.parse and ipaddress: cvmlaunch.files uses os paths
    "uuid",  # ~2 ms with platform: GUIDs are formatted by cvmlaunch.image.ovmf
    "base64",  # only to read or write a base64 blob
    "threading",  # only for a large region's parallel fold
    "click",
    "cryptography",
    "elftools",
)

#: Every cvmlaunch module the path imports. The core types the digest does not use (memory
#: map, log entries, launch identities, kernel hashes, the log model) are not among them.
_EXPECTED_CVMLAUNCH = {
    "cvmlaunch",
    "cvmlaunch.errors",
    "cvmlaunch.files",
    "cvmlaunch.image",
    "cvmlaunch.image.ovmf",
    "cvmlaunch.layout",
    "cvmlaunch.measure",
    "cvmlaunch.measure.pages",
    "cvmlaunch.measure.snp",
    "cvmlaunch.measure.snp_chain",
    "cvmlaunch.measure.vmsa",
    "cvmlaunch.text",
}

_PROBE = """
import json, sys
sys.path.insert(0, sys.argv[1])
before = set(sys.modules)
for name in sys.argv[2:]:
    __import__(name)
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def _imported(*modules: str) -> set[str]:
    """The modules a fresh interpreter (-I: isolated, -S: no site) imports for ``modules``."""
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", _PROBE, _ROOT, *modules],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return set(json.loads(out))


def test_measure_path_imports_nothing_heavy() -> None:
    imported = _imported(*_MEASURE_PATH)
    assert sorted(m for m in _FORBIDDEN if m in imported) == []
    ours = {m for m in imported if m.split(".")[0] == "cvmlaunch"}
    # and the native page hasher where the install built it (a C extension that imports only
    # _hashlib, which hashlib has loaded; tests/test_pagehash.py checks that it is there)
    assert ours - {"cvmlaunch._pagehash"} == _EXPECTED_CVMLAUNCH


def test_moved_core_types_import_on_their_own() -> None:
    """The split-off core-type modules load without the measurement code."""
    imported = _imported("cvmlaunch.memory_map", "cvmlaunch.log_entry", "cvmlaunch.launch_identity")
    assert "typing" not in imported
    assert not any(
        m.startswith("cvmlaunch.measure") or m.startswith("cvmlaunch.image") for m in imported
    )
