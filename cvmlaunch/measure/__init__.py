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

from cvmlaunch.measure.cpu import VCPU_TYPES, cpu_signature, vcpu_type_signature
from cvmlaunch.measure.log import (
    LOG_FORMAT,
    LOG_VERSION,
    ContentProvider,
    LogDifference,
    LogFooter,
    LogHeader,
    LogInput,
    MeasurementLog,
    Replayer,
    Technology,
    diff_logs,
    dump_log,
    dumps_log,
    parse_log,
    register_replayer,
    replay_log,
    verify_log,
)
from cvmlaunch.measure.sev import SevSettings, sev_digest, sev_log, sev_plan
from cvmlaunch.measure.sev_hashes import KernelHashes, cmdline_sha256
from cvmlaunch.measure.snp import (
    MAX_VCPUS,
    SevMode,
    SnpSettings,
    firmware_layout,
    snp_digest,
    snp_layout,
    snp_log,
    snp_ovmf_hash,
    svsm_layout,
)
from cvmlaunch.measure.snp_chain import fold_layout
from cvmlaunch.measure.vmsa import FpuInit, VmmType, svsm_vmsa_page, vmsa_page

__all__ = [
    "LOG_FORMAT",
    "LOG_VERSION",
    "MAX_VCPUS",
    "VCPU_TYPES",
    "ContentProvider",
    "FpuInit",
    "KernelHashes",
    "LogDifference",
    "LogFooter",
    "LogHeader",
    "LogInput",
    "MeasurementLog",
    "Replayer",
    "SevMode",
    "SevSettings",
    "SnpSettings",
    "Technology",
    "VmmType",
    "cmdline_sha256",
    "cpu_signature",
    "diff_logs",
    "dump_log",
    "dumps_log",
    "firmware_layout",
    "fold_layout",
    "parse_log",
    "register_replayer",
    "replay_log",
    "sev_digest",
    "sev_log",
    "sev_plan",
    "snp_digest",
    "snp_layout",
    "snp_log",
    "snp_ovmf_hash",
    "svsm_layout",
    "svsm_vmsa_page",
    "vcpu_type_signature",
    "verify_log",
    "vmsa_page",
]
