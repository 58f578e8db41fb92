"""Start-up cost of ``cvmlaunch measure snp``, guarded by what it imports.

Speed itself lives in bench/ (no timed assertions here). What keeps it fast is what the
modules import and create at import time, and that is deterministic: a fresh interpreter
without ``site`` (so that no editable-install hook or .pth file has imported anything) loads the
measurement path and reports the modules it pulled in.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
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
    "cvmlaunch._struct",
    "cvmlaunch.constants",
    "cvmlaunch.digests",
    "cvmlaunch.errors",
    "cvmlaunch.files",
    "cvmlaunch.image",
    "cvmlaunch.image.ovmf",
    "cvmlaunch.layout",
    "cvmlaunch.measure",
    "cvmlaunch.measure.snp",
    "cvmlaunch.measure.snp_chain",
    "cvmlaunch.plan",
    "cvmlaunch.plan.snp",
    "cvmlaunch.plan.vmsa",
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


# ------------------------------------------------------------------ the CLI

#: A fresh interpreter (-I: isolated; with site, where click is installed) runs ``cvmlaunch
#: ARGS`` in-process and prints, after the command's output, the modules it imported.
_CLI_PROBE = """
import json, sys
sys.path.insert(0, sys.argv[1])
before = set(sys.modules)
import cvmlaunch.cli
code = None
if len(sys.argv) > 2:
    try:
        cvmlaunch.cli.main(sys.argv[2:])
    except SystemExit as done:
        code = done.code
print(json.dumps([code, sorted(set(sys.modules) - before)]))
"""

#: What the CLI itself is made of before any command is chosen.
_CLI_CORE = {"cvmlaunch", "cvmlaunch.cli", "cvmlaunch.errors", "cvmlaunch.text"}

#: Modules of other commands, and the heavy dependencies they bring.
_OTHER_COMMANDS = (
    "cvmlaunch.cli._identity",
    "cvmlaunch.cli._inspect",
    "cvmlaunch.cli._kvm",
    "cvmlaunch.cli._launch",
    "cvmlaunch.launcher",
    "cvmlaunch.cli._log",
    "cvmlaunch.cli._measure_tdx",
    "cvmlaunch.cli._reference",
    "cvmlaunch.launch",
    "cvmlaunch.launch_settings",
    "cvmlaunch.plan.pvh",
    "cvmlaunch.plan.tdvf",
    "cvmlaunch.kvm_map",
    "cvmlaunch._uapi",
    "cvmlaunch.image.elf",
    "cvmlaunch.measure.tdx",
    "cryptography",
    "elftools",
)


def _cli_imported(*args: str) -> tuple[int | None, set[str]]:
    out = subprocess.run(
        [sys.executable, "-I", "-c", _CLI_PROBE, _ROOT, *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    code, modules = json.loads(out.splitlines()[-1])
    return code, set(modules)


def _heavy(imported: set[str]) -> list[str]:
    return sorted(m for m in imported if m in _OTHER_COMMANDS or m.split(".")[0] in _OTHER_COMMANDS)


def test_importing_the_cli_imports_no_command() -> None:
    """``import cvmlaunch.cli``: click and the registry; no command module."""
    _code, imported = _cli_imported()
    assert "click" in imported
    assert {m for m in imported if m.split(".")[0] == "cvmlaunch"} == _CLI_CORE
    assert _heavy(imported) == []


def test_measure_snp_imports_only_its_own_modules(firmware: Callable[[str], Path]) -> None:
    """A ``measure snp`` run loads its command module, the shared parameter types and the
    measurement path (as above), and nothing of the other commands: no launcher, no
    cryptography, no pyelftools."""
    ovmf = str(firmware("OVMF.amdsev.fd"))
    code, imported = _cli_imported(
        "measure", "snp", "--ovmf", ovmf, "--vcpus", "1", "--vcpu-type", "EPYC-v4"
    )
    assert code == 0
    assert _heavy(imported) == []
    ours = {m for m in imported if m.split(".")[0] == "cvmlaunch"} - {"cvmlaunch._pagehash"}
    assert ours == _EXPECTED_CVMLAUNCH | _CLI_CORE | {
        "cvmlaunch.cli._measure_snp",
        "cvmlaunch.cli._params",
        "cvmlaunch.vcpu_signature",
        "cvmlaunch.measure.snp_predict",  # the request and predict(), moved from the command
    }
