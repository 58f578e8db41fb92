"""The SEV-SNP guest policy: a 64-bit value the host passes to SNP_LAUNCH_START.

Rule 1: a core value type. It imports only :mod:`cvmlaunch.errors`, so every layer that takes
a policy (the launch settings, the plans, the measurement, the launcher) validates it here,
once (SNP ABI §4.3 "Guest Policy", table "Guest Policy Structure").

Rule 2: bad input raises :class:`~cvmlaunch.errors.ConfigError`; the settings that hold a
policy (:mod:`cvmlaunch.launch_settings`, the CLI's ``--policy``) name themselves around it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from cvmlaunch.errors import ConfigError

__all__ = ["DEFAULT_POLICY", "GuestPolicy", "PolicyFlag"]


class PolicyFlag(enum.IntFlag):
    """Single-bit fields of the SNP guest policy (SNP ABI §4.3 "Guest Policy", table
    "Guest Policy Structure"; the Linux ``SNP_POLICY_MASK_*`` constants use the same bits).

    Bits 7:0 and 15:8 are the minimum ABI minor and major versions (see :class:`GuestPolicy`).
    """

    SMT = 1 << 16
    RESERVED_MBO = 1 << 17  # reserved, must be one
    MIGRATE_MA = 1 << 18
    DEBUG = 1 << 19
    SINGLE_SOCKET = 1 << 20
    CXL_ALLOW = 1 << 21
    MEM_AES_256_XTS = 1 << 22
    RAPL_DIS = 1 << 23
    CIPHERTEXT_HIDING_DRAM = 1 << 24
    PAGE_SWAP_DISABLE = 1 << 25


_POLICY_KNOWN = 0xFFFF | sum(f.value for f in PolicyFlag)


@dataclass(frozen=True, slots=True)
class GuestPolicy:
    """The 64-bit SNP guest policy (SNP ABI §4.3, table "Guest Policy Structure").

    Args:
        value: the policy as the firmware sees it.

    Raises:
        ConfigError: not a u64, bit 17 (reserved, must be one) clear, or a bit set that the
            ABI reserves (26-63).
    """

    value: int

    def __post_init__(self) -> None:
        if not isinstance(self.value, int) or not 0 <= self.value < 1 << 64:
            raise ConfigError(f"SNP policy {self.value!r} is not a 64-bit unsigned integer")
        if not self.value & PolicyFlag.RESERVED_MBO:
            raise ConfigError(
                f"SNP policy {self.value:#x}: bit 17 (reserved, must be one) is clear; "
                f"did you mean {self.value | PolicyFlag.RESERVED_MBO:#x}?"
            )
        unknown = self.value & ~_POLICY_KNOWN
        if unknown:
            raise ConfigError(
                f"SNP policy {self.value:#x}: reserved bits {unknown:#x} are set (must be zero)"
            )

    @classmethod
    def parse(cls, text: str) -> GuestPolicy:
        """Parse ``0x30000``-style hex (``0x`` optional), or decimal with a ``0d`` prefix.

        Raises:
            ConfigError: not a number, or not a valid policy.
        """
        s = text.strip().replace("_", "")
        try:
            if s[:2].lower() == "0d":
                value = int(s[2:], 10)
            else:
                value = int(s[2:] if s[:2].lower() == "0x" else s, 16)
        except ValueError as exc:
            raise ConfigError(f"SNP policy {text!r} is not a hexadecimal number") from exc
        return cls(value)

    @classmethod
    def build(
        cls,
        *,
        abi_major: int = 0,
        abi_minor: int = 0,
        flags: PolicyFlag = PolicyFlag.SMT,
    ) -> GuestPolicy:
        """A policy from its fields; bit 17 is always set.

        Raises:
            ConfigError: an ABI version field outside 0-255.
        """
        for name, v in (("ABI major", abi_major), ("ABI minor", abi_minor)):
            if not 0 <= v <= 0xFF:
                raise ConfigError(f"SNP policy: {name} version {v} is not in 0-255")
        return cls(abi_minor | abi_major << 8 | int(flags | PolicyFlag.RESERVED_MBO))

    @property
    def abi_minor(self) -> int:
        """Minimum firmware ABI minor version (bits 7:0)."""
        return self.value & 0xFF

    @property
    def abi_major(self) -> int:
        """Minimum firmware ABI major version (bits 15:8)."""
        return self.value >> 8 & 0xFF

    @property
    def flags(self) -> PolicyFlag:
        """The single-bit fields that are set."""
        return PolicyFlag(self.value & ~0xFFFF)

    def describe(self) -> str:
        """E.g. ``0x30000 (ABI >= 0.0, SMT, RESERVED_MBO)``."""
        names = [f.name for f in PolicyFlag if f in self.flags and f.name]
        return f"{self.value:#x} (ABI >= {self.abi_major}.{self.abi_minor}, {', '.join(names)})"


#: The policy QEMU's ``sev-snp-guest`` object and the peer use by default: SMT allowed.
DEFAULT_POLICY = GuestPolicy(0x30000)
