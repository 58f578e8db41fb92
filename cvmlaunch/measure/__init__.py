"""Launch measurement: folds over a launch plan (SNP launch digest, TDX MRTD) and the log.

Rule: pure computation with hashlib; no I/O, no KVM.
"""
