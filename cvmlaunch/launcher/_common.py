"""What the PVH and the firmware launches share: the host check, the log's input digests, and
the progress callback's shape.

Rule 1: the VM type of a technology is :data:`cvmlaunch.kvm_map.VM_TYPE` (the one mapping);
the KVM layer is imported only when a function here is called, so a dry run never loads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from cvmlaunch.launch_settings import LaunchSettings
from cvmlaunch.technology import Technology

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cvmlaunch.measure.log import LogInput

__all__ = ["Progress", "ProgressFactory", "check_host", "input_digests"]


class Progress(Protocol):
    """A progress display: called with the bytes done so far, closed once at the end."""

    def __call__(self, done: int) -> None: ...

    def close(self) -> None: ...


class ProgressFactory(Protocol):
    """Makes a :class:`Progress` for ``total`` bytes, shown with ``label``."""

    def __call__(self, total: int, label: str) -> Progress: ...


def check_host(tech: Technology, memory_backend: str = "auto") -> None:
    """Stop before creating anything when the host cannot run ``tech`` with
    ``memory_backend`` (``auto``, ``guest-memfd``, ``anonymous``).

    Raises:
        KvmUnsupported: naming the missing capability.
        ConfigError: a backend the technology cannot use.
        KvmError: ``/dev/kvm`` cannot be opened.
    """
    from cvmlaunch import kvm_map

    with kvm_map.Kvm.open() as kvm:
        kvm.caps().require(kvm_map.VM_TYPE[tech], memory_backend)


def input_digests(settings: LaunchSettings) -> tuple[LogInput, ...]:
    """The launch's input files and command line, with sizes and SHA-256/SHA-384 (streamed)."""
    from cvmlaunch.files import file_digests
    from cvmlaunch.measure.log import LogInput

    out = []
    for role in ("firmware", "kernel", "initrd"):
        path = getattr(settings, role)
        if path is not None:
            size, (sha256, sha384) = file_digests(path, ["sha256", "sha384"], role)
            out.append(LogInput(role, Path(path).name, size, sha256=sha256, sha384=sha384))
    from cvmlaunch.measure.log import cmdline_input

    out.append(cmdline_input(settings.cmdline))
    return tuple(out)
