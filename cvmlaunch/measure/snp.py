"""The SEV-SNP launch digest and log of an OVMF guest: folds over the plan.

Rule 1: one source of truth. :func:`cvmlaunch.plan.snp.snp_plan` builds the ordered launch
plan (the LAUNCH_UPDATE ranges, then one VMSA per vCPU) that the KVM layer executes; the
digest (:func:`snp_digest`) and the log (:func:`snp_log`) are folds over that same plan
(:mod:`cvmlaunch.measure.snp_chain`). This module builds no plan.

Rule 2: every host-dependent knob is an explicit, validated field of
:class:`~cvmlaunch.plan.snp.SnpSettings` and is written into the log header; :class:`SevMode`
says what is measured.
"""

from __future__ import annotations

import enum
from dataclasses import replace

from cvmlaunch.errors import ConfigError
from cvmlaunch.image.ovmf import OvmfImage
from cvmlaunch.layout import Plan
from cvmlaunch.measure.snp_chain import (
    SNP_ALGORITHM,
    ZERO_DIGEST,
    FoldState,
    fold_from,
    fold_plan,
    fold_vmsas,
    log_plan,
)
from cvmlaunch.plan.snp import (
    SnpSettings,
    firmware_plan,
    snp_plan,
    snp_prefix_plan,
    snp_vmsa_pages,
)

TYPE_CHECKING = False
if TYPE_CHECKING:  # the log model is imported only when used
    from collections.abc import Sequence

    from cvmlaunch.measure.log import LogHeader, LogInput, MeasurementLog, SettingValue

__all__ = [
    "SevMode",
    "snp_digest",
    "snp_digest_set",
    "snp_header",
    "snp_log",
    "snp_ovmf_hash",
]


class SevMode(enum.Enum):
    """What to measure (the value is sev-snp-measure's ``--mode`` name)."""

    SNP = "snp"
    SNP_OVMF_HASH = "snp:ovmf-hash"  # only the firmware pages; reusable as a seed
    SNP_SVSM = "snp:svsm"  # OVMF + Coconut SVSM image
    SEV_ES = "seves"
    SEV = "sev"


def snp_digest_set(
    image: OvmfImage,
    settings: SnpSettings,
    vcpu_sigs: Sequence[int],
    vcpu_counts: Sequence[int],
    *,
    prefix: FoldState | None = None,
    workers: int | None = None,
) -> dict[tuple[int, int], bytes]:
    """The launch digest of every (vCPU signature, vCPU count) combination.

    The shared prefix (:func:`~cvmlaunch.plan.snp.snp_prefix_plan`) is folded once (or taken
    from ``prefix``, a state saved from an earlier fold of it); then, per signature, the VMSAs
    of every count come out of one pass (:func:`cvmlaunch.measure.snp_chain.fold_vmsas`). Each
    digest equals ``snp_digest(image, replace(settings, vcpu_sig=sig, vcpus=count))``.

    Args:
        image: the parsed firmware.
        settings: every setting but ``vcpus`` and ``vcpu_sig``, which are ignored.
        vcpu_sigs: the signatures (duplicates are computed once).
        vcpu_counts: the counts (1..:data:`~cvmlaunch.plan.vmsa.MAX_VCPUS`).
        prefix: the fold state after the prefix, if already known (its ``regions`` must be
            the prefix's region count).
        workers: content-hashing threads for the firmware (see
            :func:`cvmlaunch.measure.snp_chain.fold_region`).

    Returns:
        ``{(vcpu_sig, vcpus): digest}``.

    Raises:
        ConfigError: a count or signature out of range, or a ``prefix`` of another length.
        ImageError, LayoutError: see :func:`~cvmlaunch.plan.snp.snp_plan`.
    """
    counts = sorted(set(vcpu_counts))
    if not counts:
        return {}
    for count in counts:  # the settings' own checks, with the messages users know
        replace(settings, vcpus=count)
    top = replace(settings, vcpus=counts[-1])
    plan = snp_prefix_plan(image, top)
    if prefix is None:
        prefix = fold_from(plan, FoldState(settings.ovmf_hash or ZERO_DIGEST), workers=workers)
    elif prefix.regions != len(plan.regions):
        raise ConfigError(
            f"the saved fold state covers {prefix.regions} regions, the prefix has "
            f"{len(plan.regions)}"
        )
    out: dict[tuple[int, int], bytes] = {}
    for sig in dict.fromkeys(vcpu_sigs):
        bsp, ap = snp_vmsa_pages(image, replace(top, vcpu_sig=sig))
        for count, digest in fold_vmsas(prefix.digest, bsp, ap, counts).items():
            out[(sig, count)] = digest
    return out


def snp_ovmf_hash(image: OvmfImage) -> bytes:
    """The running digest after the firmware pages (sev-snp-measure's ``snp:ovmf-hash``).

    Feed it back as :attr:`SnpSettings.ovmf_hash` to skip hashing the firmware; the image
    given then only supplies the metadata, hash-table offset and AP reset address.
    """
    return fold_plan(firmware_plan(image))


def snp_digest(image: OvmfImage, settings: SnpSettings) -> bytes:
    """The SNP launch digest (attestation report MEASUREMENT) of an OVMF guest.

    Raises:
        ImageError, LayoutError: see :func:`~cvmlaunch.plan.snp.snp_plan`.
    """
    return fold_plan(snp_plan(image, settings), settings.ovmf_hash or ZERO_DIGEST)


def snp_log(
    plan: Plan,
    settings: SnpSettings,
    *,
    mode: SevMode,
    inputs: tuple[LogInput, ...],
    tool_version: str,
    extra_settings: dict[str, SettingValue] | None = None,
) -> MeasurementLog:
    """Fold a plan into a launch log (one record per range, with per-page hashes).

    Args:
        plan: the plan from :func:`~cvmlaunch.plan.snp.snp_plan` or
            :func:`~cvmlaunch.plan.snp.svsm_plan` (or any SNP plan).
        settings: the settings the plan was built with (written into the header).
        mode: the mode (written into the header).
        inputs: the inputs with their sizes and digests.
        tool_version: the writer's version.
        extra_settings: more header settings (e.g. ``vars_size``, ``ap_reset_address``, and
            the launch identity from :func:`cvmlaunch.measure.reference.identity_settings`,
            which is recorded but never enters the digest).

    Returns:
        The log; its footer digest equals :func:`cvmlaunch.measure.snp_chain.fold_plan`.
    """
    header = snp_header(
        settings,
        mode=mode,
        inputs=inputs,
        tool_version=tool_version,
        extra_settings=extra_settings,
    )
    return log_plan(plan, header)


def snp_header(
    settings: SnpSettings,
    *,
    mode: SevMode,
    inputs: tuple[LogInput, ...],
    tool_version: str,
    extra_settings: dict[str, SettingValue] | None = None,
) -> LogHeader:
    """The header of an SNP launch log: the one :func:`snp_log` writes for a prediction and
    the launcher writes for a launch (:mod:`cvmlaunch.launcher.firmware`), so the two agree.

    Args: as :func:`snp_log`.
    """
    from cvmlaunch.measure.log import LogHeader, Technology

    # snp:ovmf-hash measures the firmware pages only: no other setting affects it
    values = {} if mode is SevMode.SNP_OVMF_HASH else settings.log_settings()
    values["mode"] = mode.value
    values.update(extra_settings or {})
    return LogHeader(
        technology=Technology.SEV_SNP,
        algorithm=SNP_ALGORITHM,
        settings=values,
        inputs=inputs,
        tool_version=tool_version,
        initial_digest=settings.ovmf_hash or ZERO_DIGEST,
    )
