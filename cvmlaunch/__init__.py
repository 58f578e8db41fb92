"""cvmlaunch: launch confidential VMs on Linux KVM and predict their measurements bit for bit.

Layers (each imports only those below it):

* :mod:`cvmlaunch.errors`: the exception tree (``CvmLaunchError``).
* :mod:`cvmlaunch.layout`: pure value types (page types, regions, the plan); with
  :mod:`cvmlaunch.memory_map`, :mod:`cvmlaunch.log_entry` and :mod:`cvmlaunch.launch_identity`
  (memory map, log entry, launch identity), kept apart for start-up time.
* :mod:`cvmlaunch.image`: bytes -> typed images (OVMF/TDVF, ELF, bzImage) -> regions.
* :mod:`cvmlaunch.plan`: images and settings -> launch plans (SNP, TDVF, PVH).
* :mod:`cvmlaunch.measure`: launch plan -> SNP launch digest, TDX MRTD, measurement log;
  beside it, not importing it, :mod:`cvmlaunch.kvm_map`: the only package that talks to the
  kernel; executes plans.
* :mod:`cvmlaunch.launcher`: drives a launch over both (plan, VM, populate, vCPUs, log).
* :mod:`cvmlaunch.cli`: the ``cvmlaunch`` command; composes the above.

The layers and the core modules under them (:mod:`cvmlaunch.constants`,
:mod:`cvmlaunch.technology`, :mod:`cvmlaunch.snp_policy`, :mod:`cvmlaunch.vcpu_signature`,
:mod:`cvmlaunch.digests`) are import-linter contracts in pyproject.toml.
"""

from __future__ import annotations

__all__ = ["__version__"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

    __version__: str


def __getattr__(name: str) -> str:
    """``__version__`` is looked up on first use: importlib.metadata costs ~20 ms of start-up."""
    if name != "__version__":
        raise AttributeError(f"module 'cvmlaunch' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        value = version("cvmlaunch")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
        value = "0+unknown"
    globals()["__version__"] = value
    return value


def _lazy_exports(
    namespace: dict[str, Any], exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` (PEP 562) of a subpackage that re-exports names
    from its submodules but imports each submodule only on first use (start-up time).

    ``namespace`` is the subpackage's ``globals()``, ``exports`` maps a name to the submodule
    that defines it (or a full ``cvmlaunch.…`` module name for a name re-exported from
    elsewhere). ``__getattr__(name)`` imports ``<package>.<exports[name]>``, stores the
    value in the subpackage and returns it; another name raises :class:`AttributeError`.
    ``__dir__()`` lists the subpackage's globals and its ``__all__``. It lives here, in the
    module every import of cvmlaunch loads anyway, so that it costs no module of its own.
    """
    package = namespace["__name__"]

    def getattr_(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        import importlib

        where = module if module.startswith("cvmlaunch.") else f"{package}.{module}"
        value = getattr(importlib.import_module(where), name)
        namespace[name] = value
        return value

    def dir_() -> list[str]:
        return sorted(set(namespace) | set(namespace["__all__"]))

    return getattr_, dir_
