"""Launch plans: every builder of the ordered regions a launch populates and a measurement folds.

Rule 1: one plan, two consumers. A builder here returns a :class:`~cvmlaunch.layout.Plan`
(the regions in populate order) or a launch (a plan in the guest's memory plus what the KVM
layer needs besides: vCPU states, the TD HOB, the PVH entry). :mod:`cvmlaunch.measure` folds
plans into digests and logs; :mod:`cvmlaunch.kvm_map` executes them. This package imports
neither (import-linter's layers contract keeps it so): it sits on the core types and the
image parsers.

Rule 2: names. ``*_plan`` builds a :class:`~cvmlaunch.layout.Plan`; ``*_launch`` builds a
``*Launch`` (a plan with its memory map and entry state):

* :mod:`cvmlaunch.plan.snp`: :func:`~cvmlaunch.plan.snp.snp_plan`,
  :func:`~cvmlaunch.plan.snp.snp_prefix_plan`, :func:`~cvmlaunch.plan.snp.svsm_plan`,
  :func:`~cvmlaunch.plan.snp.firmware_plan`, :class:`~cvmlaunch.plan.snp.SnpSettings`,
  :func:`~cvmlaunch.plan.snp.snp_launch` -> :class:`~cvmlaunch.plan.snp.SnpLaunch`; with the
  region bytes of :mod:`cvmlaunch.plan.vmsa` (VMSA pages) and :mod:`cvmlaunch.plan.sev_hashes`
  (the kernel-hashes table);
* :mod:`cvmlaunch.plan.sev`: :func:`~cvmlaunch.plan.sev.sev_updates` (SEV and SEV-ES: the
  LAUNCH_UPDATE calls, bytes at a GPA of any length, not a page-granular plan),
  :class:`~cvmlaunch.plan.sev.SevSettings`;
* :mod:`cvmlaunch.plan.tdvf`: :func:`~cvmlaunch.plan.tdvf.tdvf_plan`,
  :func:`~cvmlaunch.plan.tdvf.tdx_launch` -> :class:`~cvmlaunch.plan.tdvf.TdxLaunch`;
* :mod:`cvmlaunch.plan.pvh`: :func:`~cvmlaunch.plan.pvh.pvh_launch` ->
  :class:`~cvmlaunch.plan.pvh.PvhLaunch`.

Rule 3: start-up time. This package imports none of its modules until a name is used, so that
``measure snp`` loads only :mod:`cvmlaunch.plan.snp` and :mod:`cvmlaunch.plan.vmsa`.
"""

from __future__ import annotations

from cvmlaunch import _lazy_exports

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cvmlaunch.plan.pvh import PvhLaunch, pvh_launch
    from cvmlaunch.plan.sev import SevSettings, SevUpdate, sev_updates
    from cvmlaunch.plan.sev_hashes import KernelHashes
    from cvmlaunch.plan.snp import (
        SnpLaunch,
        SnpSettings,
        firmware_plan,
        snp_launch,
        snp_plan,
        snp_prefix_plan,
        svsm_plan,
    )
    from cvmlaunch.plan.tdvf import TdxLaunch, tdvf_plan, tdx_launch
    from cvmlaunch.plan.vmsa import FpuInit, VmmType

__all__ = [
    "FpuInit",
    "KernelHashes",
    "PvhLaunch",
    "SevSettings",
    "SevUpdate",
    "SnpLaunch",
    "SnpSettings",
    "TdxLaunch",
    "VmmType",
    "firmware_plan",
    "pvh_launch",
    "sev_updates",
    "snp_launch",
    "snp_plan",
    "snp_prefix_plan",
    "svsm_plan",
    "tdvf_plan",
    "tdx_launch",
]

#: Where each public name lives; imported on first use.
_EXPORTS: dict[str, str] = {
    "FpuInit": "vmsa",
    "KernelHashes": "sev_hashes",
    "PvhLaunch": "pvh",
    "SevSettings": "sev",
    "SevUpdate": "sev",
    "SnpLaunch": "snp",
    "SnpSettings": "snp",
    "TdxLaunch": "tdvf",
    "VmmType": "vmsa",
    "firmware_plan": "snp",
    "pvh_launch": "pvh",
    "sev_updates": "sev",
    "snp_launch": "snp",
    "snp_plan": "snp",
    "snp_prefix_plan": "snp",
    "svsm_plan": "snp",
    "tdvf_plan": "tdvf",
    "tdx_launch": "tdvf",
}

__getattr__, __dir__ = _lazy_exports(globals(), _EXPORTS)
