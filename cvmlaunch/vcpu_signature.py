"""vCPU signatures: the CPUID Fn0000_0001 EAX value QEMU puts in RDX of every SEV-ES/SNP VMSA.

Rule: resolve a signature once, at the edge, from exactly one of a QEMU CPU model name, an
explicit value or family/model/stepping; the measurement code only sees the integer.

Spec: AMD APM vol. 3, CPUID Fn0000_0001_EAX (Family, Model and Stepping Identifiers):
stepping bits 3:0, base model 7:4, base family 11:8, extended model 19:16, extended family
27:20. Family = base family + extended family when base family is 0xF; model = extended model
<< 4 | base model. QEMU builds the value the same way (target/i386/cpu.c,
``x86_cpuid_version_set_family``/``_model``/``_stepping``) from its CPU model definitions.
"""

from __future__ import annotations

from cvmlaunch.errors import ConfigError

__all__ = ["VCPU_TYPES", "cpu_signature", "resolve_vcpu_signature", "vcpu_type_signature"]

_MAX_FAMILY = 0xF + 0xFF
_MAX_MODEL = 0xFF
_MAX_STEPPING = 0xF


def cpu_signature(family: int, model: int, stepping: int) -> int:
    """The CPUID Fn0000_0001 EAX signature for ``family``/``model``/``stepping``.

    Args:
        family: the display family (0..0x10E); above 0xF it is split into base 0xF and the
            extended family.
        model: the display model (0..0xFF): low nibble base model, high nibble extended model.
        stepping: 0..0xF.

    Returns:
        The 32-bit signature, e.g. 0xA00F11 for family 25 model 1 stepping 1 (EPYC-Milan).

    Raises:
        ConfigError: a value out of range.
    """
    for what, value, top in (
        ("family", family, _MAX_FAMILY),
        ("model", model, _MAX_MODEL),
        ("stepping", stepping, _MAX_STEPPING),
    ):
        if not 0 <= value <= top:
            raise ConfigError(
                f"vcpu_{what} {value} is out of range (0..{top})", setting=f"vcpu_{what}"
            )
    base_family = min(family, 0xF)
    ext_family = max(family - 0xF, 0)
    return stepping | (model & 0xF) << 4 | base_family << 8 | (model >> 4) << 16 | ext_family << 20


def _versions(base: str, count: int, sig: int) -> dict[str, int]:
    names = {base: sig}
    names.update({f"{base}-v{i}": sig for i in range(1, count + 1)})
    return names


#: QEMU x86 CPU model names of AMD EPYC generations and their signatures (QEMU
#: target/i386/cpu.c builtin_x86_defs: family/model/stepping; a model's -vN versions change
#: features, not the signature). The peer (sev-snp-measure 0.0.13) knows the first 16 of
#: these; EPYC-v5, EPYC-Rome-v4/-v5, EPYC-Milan-v3, EPYC-Genoa-v2 and EPYC-Turin-v1 are newer
#: QEMU versions of the same models.
VCPU_TYPES: dict[str, int] = {
    **_versions("EPYC", 5, cpu_signature(23, 1, 2)),
    "EPYC-IBPB": cpu_signature(23, 1, 2),
    **_versions("EPYC-Rome", 5, cpu_signature(23, 49, 0)),
    **_versions("EPYC-Milan", 3, cpu_signature(25, 1, 1)),
    **_versions("EPYC-Genoa", 2, cpu_signature(25, 17, 0)),
    **_versions("EPYC-Turin", 1, cpu_signature(26, 0, 0)),
}


def vcpu_type_signature(name: str) -> int:
    """The signature of QEMU CPU model ``name`` (case-sensitive, as QEMU's ``-cpu``).

    Raises:
        ConfigError: an unknown name (the message lists the known ones).
    """
    try:
        return VCPU_TYPES[name]
    except KeyError:
        raise ConfigError(
            f"vcpu_type: unknown vCPU type {name!r} (known: {', '.join(VCPU_TYPES)})",
            setting="vcpu_type",
        ) from None


def resolve_vcpu_signature(
    vcpu_type: str | None = None,
    vcpu_sig: int | None = None,
    family: int | None = None,
    model: int | None = None,
    stepping: int | None = None,
) -> int | None:
    """The signature from exactly one of a QEMU CPU model name, an explicit value or
    family/model/stepping (the settings ``vcpu_type``, ``vcpu_sig`` and
    ``vcpu_family``/``vcpu_model``/``vcpu_stepping``); None when none is given.

    Raises:
        ConfigError: more than one given, a partial family/model/stepping, an unknown name or
            a value out of range.
    """
    fms = (family, model, stepping)
    given = [vcpu_type is not None, vcpu_sig is not None, any(v is not None for v in fms)]
    if sum(given) > 1:
        raise ConfigError(
            "give only one of vcpu_type, vcpu_sig or vcpu_family/vcpu_model/vcpu_stepping",
            setting="vcpu_type",
            also=("vcpu_sig", "vcpu_family", "vcpu_model", "vcpu_stepping"),
        )
    if vcpu_type is not None:
        return vcpu_type_signature(vcpu_type)
    if vcpu_sig is not None:
        if not 0 <= vcpu_sig <= 0xFFFF_FFFF:
            raise ConfigError(f"vcpu_sig {vcpu_sig:#x} is not a 32-bit value", setting="vcpu_sig")
        return vcpu_sig
    if any(v is not None for v in fms):
        if family is None or model is None or stepping is None:
            raise ConfigError(
                "vcpu_family, vcpu_model and vcpu_stepping go together",
                setting="vcpu_family",
                also=("vcpu_model", "vcpu_stepping"),
            )
        return cpu_signature(family, model, stepping)
    return None
