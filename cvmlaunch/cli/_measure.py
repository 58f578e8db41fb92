"""``cvmlaunch measure``: the group under which each technology's measurement command lives.

The commands themselves live in ``_measure_snp.py`` and ``_measure_tdx.py`` and are added to
this group by :func:`cvmlaunch.cli._register`.
"""

from __future__ import annotations

import click

from cvmlaunch.cli._lazy import LazyGroup


@click.group("measure", cls=LazyGroup)
def measure_group() -> None:
    """Predict a launch measurement offline (SNP launch digest, TDX MRTD)."""
