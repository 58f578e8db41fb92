"""Guest CPUID for confidential launches: the SNP CPUID page and the TDX INIT_VM parameters.

Rule 1: pure values. This module takes CPUID lists (what ``KVM_GET_SUPPORTED_CPUID``,
``KVM_GET_CPUID2`` and ``KVM_TDX_CAPABILITIES`` returned) and returns bytes and lists; the KVM
layer (:mod:`cvmlaunch.kvm_map`) makes the calls and imports this module, never the reverse.

Rule 2: QEMU is the reference for every choice (launch.md §1.4 step 5, §3.5):

* The SNP guest CPUID is the host's supported CPUID with the features SNP guests cannot use
  cleared (QEMU ``sev_snp_mask_cpuid_features``); the CPUID page is built from what
  ``KVM_GET_CPUID2`` returns on vCPU 0 (QEMU ``sev_snp_cpuid_info_fill``).
* A CPUID page the firmware rejects comes back corrected; it is reported leaf by leaf as QEMU's
  ``sev_snp_cpuid_report_mismatches`` does, and the launch stops (QEMU does not retry).
* The TDX INIT_VM CPUID keeps only the leaves ``KVM_TDX_CAPABILITIES`` lists as configurable,
  each register ANDed with their mask (QEMU ``tdx_filter_cpuid``); TD attributes and XFAM
  default as in QEMU (``SEPT_VE_DISABLE``; the CPU model's XCR0|XSS) and must be subsets of
  what the host supports.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from cvmlaunch._struct import StructTable
from cvmlaunch.errors import ConfigError

__all__ = [
    "KVM_CPUID_FLAG_SIGNIFCANT_INDEX",
    "SNP_CPUID_MAX",
    "TD_ATTR_DEBUG",
    "TD_ATTR_PERFMON",
    "TD_ATTR_PKS",
    "TD_ATTR_SEPT_VE_DISABLE",
    "TD_GPAW",
    "CpuidEntry",
    "SnpCpuidFunction",
    "TdInitParams",
    "cpuid_page_mismatches",
    "parse_snp_cpuid_page",
    "snp_cpuid_page",
    "snp_guest_cpuid",
    "tdx_guest_cpuid",
    "tdx_init_params",
]

#: ``kvm_cpuid_entry2.flags``: the leaf has subleaves (``index`` matters).
KVM_CPUID_FLAG_SIGNIFCANT_INDEX = 1
#: The SNP CPUID page holds at most 64 functions (SNP firmware ABI, CPUID page).
SNP_CPUID_MAX = 64
_PAGE = 4096
#: SNP firmware ABI, the CPUID page: its header ...
_HEADER = StructTable(
    "CPUID page header",
    (("count", 0, "I"), ("reserved1", 4, "4x"), ("reserved2", 8, "8x")),
    end=16,
)
#: ... then up to 64 of ``SNP_CPUID_FUNCTION``.
_FUNCTION = StructTable(
    "SNP_CPUID_FUNCTION",
    (
        ("eax_in", 0, "I"),
        ("ecx_in", 4, "I"),
        ("xcr0_in", 8, "Q"),
        ("xss_in", 16, "Q"),
        ("eax", 24, "I"),
        ("ebx", 28, "I"),
        ("ecx", 32, "I"),
        ("edx", 36, "I"),
        ("reserved", 40, "8x"),
    ),
    end=48,
)
#: XSAVE area size of the initial XCR0=1 state (legacy area + header), QEMU's leaf 0xD EBX.
_XSAVE_BASE_SIZE = 0x240


@dataclass(frozen=True, slots=True)
class CpuidEntry:
    """One ``struct kvm_cpuid_entry2``."""

    function: int
    index: int
    flags: int
    eax: int
    ebx: int
    ecx: int
    edx: int

    @property
    def key(self) -> tuple[int, int]:
        """(function, index), the index only where it is significant."""
        significant = self.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX
        return self.function, self.index if significant else 0


def _find(entries: Iterable[CpuidEntry], function: int, index: int = 0) -> CpuidEntry | None:
    for e in entries:
        if e.key == (function, index):
            return e
    return None


# ---------------------------------------------------------------- SEV-SNP

#: (function, index, register, bits) SNP guests must not see (QEMU sev_snp_mask_cpuid_features):
#: TSC_DEADLINE; TSC_ADJUST; SPEC_CTRL, STIBP, FLUSH_L1D, ARCH_CAPABILITIES, CORE_CAPABILITY,
#: SSBD; VIRT_SSBD.
_SNP_MASKED: tuple[tuple[int, int, str, int], ...] = (
    (0x1, 0, "ecx", 1 << 24),
    (0x7, 0, "ebx", 1 << 1),
    (0x7, 0, "edx", 0xFC00_0000),
    (0x8000_0008, 0, "ebx", 1 << 25),
)


def snp_guest_cpuid(supported: Sequence[CpuidEntry]) -> tuple[CpuidEntry, ...]:
    """The CPUID of an SNP guest: the host's supported CPUID (QEMU ``-cpu host``) with the
    features SNP guests cannot use cleared, as QEMU masks them."""
    out: list[CpuidEntry] = []
    for e in supported:
        for function, index, reg, bits in _SNP_MASKED:
            if e.key == (function, index):
                e = replace(e, **{reg: getattr(e, reg) & ~bits})
        out.append(e)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class SnpCpuidFunction:
    """One entry of the SNP CPUID page (SNP firmware ABI ``SNP_CPUID_FUNCTION``, 48 bytes)."""

    eax_in: int
    ecx_in: int
    xcr0_in: int
    xss_in: int
    eax: int
    ebx: int
    ecx: int
    edx: int


def snp_cpuid_page(entries: Sequence[CpuidEntry]) -> bytes:
    """The SNP CPUID page for ``entries`` (``KVM_GET_CPUID2`` of vCPU 0), as QEMU fills it.

    ``ecx_in`` is the subleaf only where it is significant; leaf 0xD subleaves 0 and 1 encode
    the XSAVE size of the initial XCR0=1 state (EBX 0x240, XCR0_IN 1, XSS_IN 0).

    Raises:
        ConfigError: more than :data:`SNP_CPUID_MAX` entries.
    """
    if len(entries) > SNP_CPUID_MAX:
        raise ConfigError(
            f"the guest CPUID has {len(entries)} entries; the SNP CPUID page holds {SNP_CPUID_MAX}"
        )
    page = bytearray(_PAGE)
    page[: _HEADER.size] = _HEADER.pack(count=len(entries))
    for i, e in enumerate(entries):
        ecx_in = e.index if e.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX else 0
        ebx, xcr0_in = e.ebx, 0
        if e.function == 0xD and ecx_in in (0, 1):
            ebx, xcr0_in = _XSAVE_BASE_SIZE, 1
        at = _HEADER.size + i * _FUNCTION.size
        page[at : at + _FUNCTION.size] = _FUNCTION.pack(
            eax_in=e.function,
            ecx_in=ecx_in,
            xcr0_in=xcr0_in,
            xss_in=0,
            eax=e.eax,
            ebx=ebx,
            ecx=e.ecx,
            edx=e.edx,
        )
    return bytes(page)


def parse_snp_cpuid_page(page: bytes) -> tuple[SnpCpuidFunction, ...]:
    """The entries of an SNP CPUID page (at most :data:`SNP_CPUID_MAX` are read)."""
    count = min(_HEADER.unpack(page)["count"], SNP_CPUID_MAX)
    out = []
    for i in range(count):
        out.append(SnpCpuidFunction(**_FUNCTION.unpack(page, _HEADER.size + i * _FUNCTION.size)))
    return tuple(out)


def cpuid_page_mismatches(submitted: bytes, corrected: bytes) -> list[str]:
    """What the firmware changed in a rejected CPUID page, one line per leaf (as QEMU reports).

    Args:
        submitted: the page the launcher gave ``SNP_LAUNCH_UPDATE``.
        corrected: the page the firmware wrote back (the values it accepts).
    """
    mine, theirs = parse_snp_cpuid_page(submitted), parse_snp_cpuid_page(corrected)
    lines: list[str] = []
    if len(mine) != len(theirs):
        lines.append(f"entry count: provided {len(mine)}, expected {len(theirs)}")
    for a, b in zip(mine, theirs, strict=False):
        if a == b:
            continue
        lines.append(
            f"leaf {a.eax_in:#010x} subleaf {a.ecx_in:#x}: provided "
            f"eax {a.eax:#010x} ebx {a.ebx:#010x} ecx {a.ecx:#010x} edx {a.edx:#010x}, "
            f"expected eax {b.eax:#010x} ebx {b.ebx:#010x} ecx {b.ecx:#010x} edx {b.edx:#010x}"
        )
    return lines


# ---------------------------------------------------------------- TDX

#: TD attributes (TDX module ABI, TD_PARAMS.ATTRIBUTES) QEMU can set.
TD_ATTR_DEBUG = 1 << 0
TD_ATTR_SEPT_VE_DISABLE = 1 << 28
TD_ATTR_PKS = 1 << 30
TD_ATTR_PERFMON = 1 << 63
_QEMU_TD_ATTRS = TD_ATTR_DEBUG | TD_ATTR_SEPT_VE_DISABLE | TD_ATTR_PKS | TD_ATTR_PERFMON
#: XFAM bits every TD has (x87, SSE).
_XFAM_FIXED1 = 0x3
#: CPUID.7.0:ECX.PKS.
_PKS = 1 << 31
#: CPUID.1:ECX.X2APIC: KVM programs x2APIC mode into every TD vCPU.
_X2APIC = 1 << 21
#: The TD's guest physical address width (CPUID.0x80000008:EAX[23:16]): 48, 4-level EPT with
#: the shared bit at GPA bit 47 (52 needs 5-level EPT; not chosen).
TD_GPAW = 48
_GPAW_MASK = 0xFF << 16


@dataclass(frozen=True, slots=True)
class TdInitParams:
    """The ``KVM_TDX_INIT_VM`` values: TD attributes, XFAM and the configurable CPUID."""

    attributes: int
    xfam: int
    cpuid: tuple[CpuidEntry, ...]


def tdx_guest_cpuid(supported: Sequence[CpuidEntry]) -> tuple[CpuidEntry, ...]:
    """The CPUID a TD vCPU gets with ``KVM_SET_CPUID2`` (the host's, x2APIC forced on)."""
    out = []
    for e in supported:
        if e.key == (0x1, 0):
            e = replace(e, ecx=e.ecx | _X2APIC)
        out.append(e)
    return tuple(out)


def _xfam_of(cpuid: Sequence[CpuidEntry]) -> int:
    xcr0 = _find(cpuid, 0xD, 0)
    xss = _find(cpuid, 0xD, 1)
    value = _XFAM_FIXED1
    if xcr0 is not None:
        value |= xcr0.eax | xcr0.edx << 32
    if xss is not None:
        value |= xss.ecx | xss.edx << 32
    return value


def tdx_init_params(
    *,
    supported_attrs: int,
    supported_xfam: int,
    configurable: Sequence[CpuidEntry],
    guest_cpuid: Sequence[CpuidEntry],
    attributes: int | None = None,
    xfam: int | None = None,
) -> TdInitParams:
    """TD attributes, XFAM and INIT_VM CPUID as QEMU computes them.

    Args:
        supported_attrs: ``KVM_TDX_CAPABILITIES.supported_attrs``.
        supported_xfam: ``KVM_TDX_CAPABILITIES.supported_xfam``.
        configurable: ``KVM_TDX_CAPABILITIES.cpuid``: the configurable leaves, each register a
            mask of the configurable bits.
        guest_cpuid: the vCPUs' CPUID (:func:`tdx_guest_cpuid`).
        attributes: ``--td-attributes`` (None: QEMU's default, SEPT_VE_DISABLE, plus PKS when
            the CPU has it and the host supports it).
        xfam: ``--xfam`` (None: the CPU's XCR0|XSS features the host supports).

    Raises:
        ConfigError: attributes QEMU does not set, or attributes/XFAM the host does not
            support; a configurable leaf the guest CPUID lacks entirely is simply left out.
    """
    if attributes is None:
        attributes = TD_ATTR_SEPT_VE_DISABLE
        leaf7 = _find(guest_cpuid, 0x7, 0)
        if leaf7 is not None and leaf7.ecx & _PKS and supported_attrs & TD_ATTR_PKS:
            attributes |= TD_ATTR_PKS
    elif attributes & ~_QEMU_TD_ATTRS:
        raise ConfigError(
            f"td_attributes {attributes:#x}: only DEBUG (bit 0), SEPT_VE_DISABLE (28), PKS "
            f"(30) and PERFMON (63) can be set (bits {attributes & ~_QEMU_TD_ATTRS:#x} given)",
            setting="td_attributes",
        )
    if attributes & ~supported_attrs:
        raise ConfigError(
            f"td_attributes {attributes:#x}: this host's TDX supports only "
            f"{supported_attrs:#x} (KVM_TDX_CAPABILITIES); unsupported bits "
            f"{attributes & ~supported_attrs:#x}",
            setting="td_attributes",
        )
    if xfam is None:
        xfam = _xfam_of(guest_cpuid) & supported_xfam
    elif xfam & ~supported_xfam:
        raise ConfigError(
            f"xfam {xfam:#x}: this host's TDX supports only {supported_xfam:#x}; "
            f"unsupported bits {xfam & ~supported_xfam:#x}",
            setting="xfam",
        )
    filtered: list[CpuidEntry] = []
    for mask in configurable:
        e = _find(guest_cpuid, mask.function, mask.index)
        if e is None:
            continue
        eax = e.eax & mask.eax
        if (e.function, e.index) == (0x8000_0008, 0):
            eax = (eax & ~_GPAW_MASK) | TD_GPAW << 16
        filtered.append(
            CpuidEntry(
                e.function,
                e.index,
                e.flags,
                eax,
                e.ebx & mask.ebx,
                e.ecx & mask.ecx,
                e.edx & mask.edx,
            )
        )
    if not any(e.key == (0x8000_0008, 0) for e in filtered):
        raise ConfigError(
            "the TD's CPUID has no leaf 0x80000008 (KVM_TDX_INIT_VM needs its GPAW, EAX[23:16])"
        )
    return TdInitParams(attributes, xfam, tuple(filtered))
