"""Launch measurement: folds over a launch plan (SNP launch digest, SEV/SEV-ES GCTX.LD, TDX
MRTD) and the launch measurement log.

Rule: pure computation with hashlib; no I/O, no KVM. Inputs are buffers and digests.

Typical use::

    from cvmlaunch.image.ovmf import parse_ovmf
    from cvmlaunch import measure

    image = parse_ovmf(data, name="OVMF.fd")
    settings = measure.SnpSettings(vcpus=4, vcpu_sig=measure.vcpu_type_signature("EPYC-Milan"))
    digest = measure.snp_digest(image, settings)
"""

from __future__ import annotations

from cvmlaunch import _lazy_exports

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cvmlaunch.measure.log import (
        LOG_FORMAT,
        LOG_VERSION,
        ContentProvider,
        LogFooter,
        LogHeader,
        LogInput,
        MeasurementLog,
        Replayer,
        Technology,
        complete_log,
        register_replayer,
        replay_log,
        verify_log,
    )
    from cvmlaunch.measure.log_check import SIGNATURE_ONLY, Finding, LogCheck, check_log
    from cvmlaunch.measure.log_diff import LogDiff, LogDifference, diff_logs
    from cvmlaunch.measure.log_json import dump_log, dumps_log, parse_log
    from cvmlaunch.measure.log_sign import sign_log, verify_signed_log
    from cvmlaunch.measure.reference_set import (
        Configuration,
        ReferenceSet,
        parse_vcpu_ranges,
        snp_reference_set,
        tdx_reference_set,
    )
    from cvmlaunch.measure.sev import sev_digest, sev_log
    from cvmlaunch.measure.snp import SevMode, snp_digest, snp_digest_set, snp_log, snp_ovmf_hash
    from cvmlaunch.measure.snp_chain import FoldState, fold_from, fold_plan, fold_vmsas
    from cvmlaunch.measure.tdx import (
        TDX_ALGORITHM,
        MrtdFold,
        PageOrder,
        TdxMeasurement,
        measure_tdvf,
        measure_tdx,
        mrtd,
        replay_tdx,
        replay_tdx_log,
        tdvf_contents,
        tdx_log,
    )
    from cvmlaunch.plan.sev import SevSettings, sev_updates
    from cvmlaunch.plan.sev_hashes import KernelHashes, cmdline_sha256
    from cvmlaunch.plan.snp import MAX_VCPUS, SnpSettings
    from cvmlaunch.plan.vmsa import FpuInit, VmmType
    from cvmlaunch.vcpu_signature import VCPU_TYPES, cpu_signature, vcpu_type_signature

__all__ = [
    "LOG_FORMAT",
    "LOG_VERSION",
    "MAX_VCPUS",
    "SIGNATURE_ONLY",
    "TDX_ALGORITHM",
    "VCPU_TYPES",
    "Configuration",
    "ContentProvider",
    "Finding",
    "FoldState",
    "FpuInit",
    "KernelHashes",
    "LogCheck",
    "LogDiff",
    "LogDifference",
    "LogFooter",
    "LogHeader",
    "LogInput",
    "MeasurementLog",
    "MrtdFold",
    "PageOrder",
    "ReferenceSet",
    "Replayer",
    "SevMode",
    "SevSettings",
    "SnpSettings",
    "TdxMeasurement",
    "Technology",
    "VmmType",
    "check_log",
    "cmdline_sha256",
    "complete_log",
    "cpu_signature",
    "diff_logs",
    "dump_log",
    "dumps_log",
    "fold_from",
    "fold_plan",
    "fold_vmsas",
    "measure_tdvf",
    "measure_tdx",
    "mrtd",
    "parse_log",
    "parse_vcpu_ranges",
    "register_replayer",
    "replay_log",
    "replay_tdx",
    "replay_tdx_log",
    "sev_digest",
    "sev_log",
    "sev_updates",
    "sign_log",
    "snp_digest",
    "snp_digest_set",
    "snp_log",
    "snp_ovmf_hash",
    "snp_reference_set",
    "tdvf_contents",
    "tdx_log",
    "tdx_reference_set",
    "vcpu_type_signature",
    "verify_log",
    "verify_signed_log",
]

#: Where each public name lives (a submodule, or a module of :mod:`cvmlaunch.plan` for the
#: settings a digest takes); imported on first use, so that importing one submodule (e.g.
#: ``cvmlaunch.measure.snp``) does not import every technology.
_EXPORTS: dict[str, str] = {
    "Finding": "log_check",
    "LogCheck": "log_check",
    "SIGNATURE_ONLY": "log_check",
    "check_log": "log_check",
    "sign_log": "log_sign",
    "verify_signed_log": "log_sign",
    "Configuration": "reference_set",
    "ContentProvider": "log",
    "FoldState": "snp_chain",
    "FpuInit": "cvmlaunch.plan.vmsa",
    "KernelHashes": "cvmlaunch.plan.sev_hashes",
    "LOG_FORMAT": "log",
    "LOG_VERSION": "log",
    "LogDiff": "log_diff",
    "LogDifference": "log_diff",
    "LogFooter": "log",
    "LogHeader": "log",
    "LogInput": "log",
    "MAX_VCPUS": "cvmlaunch.plan.snp",
    "MeasurementLog": "log",
    "MrtdFold": "tdx",
    "PageOrder": "tdx",
    "ReferenceSet": "reference_set",
    "Replayer": "log",
    "SevMode": "snp",
    "SevSettings": "cvmlaunch.plan.sev",
    "SnpSettings": "cvmlaunch.plan.snp",
    "TDX_ALGORITHM": "tdx",
    "TdxMeasurement": "tdx",
    "Technology": "log",
    "VCPU_TYPES": "cvmlaunch.vcpu_signature",
    "VmmType": "cvmlaunch.plan.vmsa",
    "cmdline_sha256": "cvmlaunch.plan.sev_hashes",
    "complete_log": "log",
    "cpu_signature": "cvmlaunch.vcpu_signature",
    "diff_logs": "log_diff",
    "dump_log": "log_json",
    "dumps_log": "log_json",
    "fold_from": "snp_chain",
    "fold_plan": "snp_chain",
    "fold_vmsas": "snp_chain",
    "measure_tdvf": "tdx",
    "measure_tdx": "tdx",
    "mrtd": "tdx",
    "parse_log": "log_json",
    "parse_vcpu_ranges": "reference_set",
    "register_replayer": "log",
    "replay_log": "log",
    "replay_tdx": "tdx",
    "replay_tdx_log": "tdx",
    "sev_digest": "sev",
    "sev_log": "sev",
    "sev_updates": "cvmlaunch.plan.sev",
    "snp_digest": "snp",
    "snp_digest_set": "snp",
    "snp_log": "snp",
    "snp_ovmf_hash": "snp",
    "snp_reference_set": "reference_set",
    "tdvf_contents": "tdx",
    "tdx_log": "tdx",
    "tdx_reference_set": "reference_set",
    "vcpu_type_signature": "cvmlaunch.vcpu_signature",
    "verify_log": "log",
}


__getattr__, __dir__ = _lazy_exports(globals(), _EXPORTS)
