"""cvmlaunch: launch confidential VMs on Linux KVM and predict their measurements bit for bit.

Layers (each imports only those below it):

* :mod:`cvmlaunch.errors`: the exception tree (``CvmLaunchError``).
* :mod:`cvmlaunch.layout`: pure value types (page types, regions, the plan); with
  :mod:`cvmlaunch.memory_map`, :mod:`cvmlaunch.log_entry` and :mod:`cvmlaunch.launch_identity`
  (memory map, log entry, launch identity), kept apart for start-up time.
* :mod:`cvmlaunch.image`: bytes -> typed images (OVMF/TDVF, ELF, bzImage) -> regions.
* :mod:`cvmlaunch.measure`: launch plan -> SNP launch digest, TDX MRTD, measurement log.
* :mod:`cvmlaunch.kvm_map`: the only module that talks to the kernel.
* :mod:`cvmlaunch.cli`: the ``cvmlaunch`` command; composes the above.
"""

__all__ = ["__version__"]

TYPE_CHECKING = False
if TYPE_CHECKING:
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
