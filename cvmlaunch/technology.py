"""The technology of a launch or a measurement: one enum for the whole package.

Rule 1: one spelling. :class:`Technology`'s values are what a launch log's header says
(``sev-snp``, ``sev``, ``sev-es``, ``tdx``, ``plain``); the launch settings, the plans, the
log and the verifier all use this enum. The KVM VM type of a technology is the KVM layer's
business (:data:`cvmlaunch.kvm_map.VM_TYPE`); what an SEV measurement covers is
:class:`cvmlaunch.measure.snp.SevMode`.

Rule 2: the command line keeps its own words: ``--tech none|snp|tdx`` (and the TOML ``tech``
key) name the technologies a launch supports; :meth:`Technology.parse_launch` reads them and
:attr:`Technology.label` writes them.

Rule 3: the bottom of the package: this module imports only :mod:`cvmlaunch.errors`.
"""

from __future__ import annotations

import enum

from cvmlaunch.errors import ConfigError

__all__ = ["LAUNCH_LABELS", "Technology"]


class Technology(enum.Enum):
    """A launch's or a measurement's technology (the value is what the log file says)."""

    SEV_SNP = "sev-snp"  # SNP launch digest (PAGE_INFO chain, SHA-384)
    SEV = "sev"  # SEV GCTX.LD (SHA-256 over LAUNCH_UPDATE_DATA)
    SEV_ES = "sev-es"  # SEV-ES GCTX.LD (SHA-256, plus LAUNCH_UPDATE_VMSA)
    TDX = "tdx"  # TDX MRTD (SHA-384 over PAGE.ADD / MR.EXTEND)
    PLAIN = "plain"  # no hardware measurement: cvmlaunch's transcript digest (informational)

    @classmethod
    def parse_launch(cls, text: str, *, setting: str = "tech") -> Technology:
        """A launch's technology as ``--tech`` spells it: ``none``, ``snp`` or ``tdx`` (any
        case); ``setting`` names it in errors (:attr:`ConfigError.setting`).

        Raises:
            ConfigError: anything else.
        """
        tech = _BY_LABEL.get(text.strip().lower())
        if tech is None:
            raise ConfigError(f"{setting} {text!r}: expected none, snp or tdx", setting=setting)
        return tech

    @property
    def label(self) -> str:
        """The name users type after ``--tech`` (``none``, ``snp``, ``tdx``; the log's value
        for a technology cvmlaunch does not launch)."""
        return LAUNCH_LABELS.get(self, self.value)


#: ``--tech`` spellings of the technologies a launch supports.
LAUNCH_LABELS: dict[Technology, str] = {
    Technology.PLAIN: "none",
    Technology.SEV_SNP: "snp",
    Technology.TDX: "tdx",
}
_BY_LABEL = {label: tech for tech, label in LAUNCH_LABELS.items()}
