"""cvmlaunch: launch confidential VMs on Linux KVM and predict their measurements bit for bit.

Layers (each imports only those below it):

* :mod:`cvmlaunch.errors`: the exception tree (``CvmLaunchError``).
* :mod:`cvmlaunch.layout`: pure value types (page types, regions, memory map, plan, log entry).
* :mod:`cvmlaunch.image`: bytes -> typed images (OVMF/TDVF, ELF, bzImage) -> regions.
* :mod:`cvmlaunch.measure`: launch plan -> SNP launch digest, TDX MRTD, measurement log.
* :mod:`cvmlaunch.kvm_map`: the only module that talks to the kernel.
* :mod:`cvmlaunch.cli`: the ``cvmlaunch`` command; composes the above.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cvmlaunch")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"

__all__ = ["__version__"]
