"""The settings of a launch, under the name they had before :mod:`cvmlaunch.launch_settings`.

Rule 1: nothing lives here. The settings (:class:`LaunchSettings`, :func:`settings_from_toml`,
:func:`parse_size`) are :mod:`cvmlaunch.launch_settings`'s and this module re-exports them, so
``from cvmlaunch.launch import LaunchSettings`` keeps working; the PVH plan and the guest
contract are :mod:`cvmlaunch.plan.pvh`'s; the check of the guest's report against the launch
log is :mod:`cvmlaunch.launcher.report`'s.
"""

from __future__ import annotations

from cvmlaunch.launch_settings import (
    DEFAULT_SNP_POLICY,
    MAX_CMDLINE,
    MAX_MEMORY,
    MAX_TIMEOUT,
    MEMORY_BACKENDS,
    LaunchSettings,
    parse_size,
    settings_from_toml,
)

__all__ = [
    "DEFAULT_SNP_POLICY",
    "MAX_CMDLINE",
    "MAX_MEMORY",
    "MAX_TIMEOUT",
    "MEMORY_BACKENDS",
    "LaunchSettings",
    "parse_size",
    "settings_from_toml",
]
