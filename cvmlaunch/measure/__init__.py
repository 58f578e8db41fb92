"""Launch measurement: folds over a launch plan (SNP launch digest, TDX MRTD) and the log.

Rule: pure computation with hashlib; no I/O, no KVM.
"""

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

__all__ = [
    "LOG_FORMAT",
    "LOG_VERSION",
    "ContentProvider",
    "LogDifference",
    "LogFooter",
    "LogHeader",
    "LogInput",
    "MeasurementLog",
    "Replayer",
    "Technology",
    "diff_logs",
    "dump_log",
    "dumps_log",
    "parse_log",
    "register_replayer",
    "replay_log",
    "verify_log",
]
