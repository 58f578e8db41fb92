"""The pure pieces of confidential launches: SNP CPUID page, TDX INIT_VM values, vCPU state.

Expected values come from the specifications and QEMU as launch.md §1.4 and §3.5 quote them
(SNP firmware ABI "CPUID page" layout, QEMU ``sev_snp_cpuid_info_fill``,
``sev_snp_mask_cpuid_features``, ``tdx_filter_cpuid``, ``x86_cpu_reset_hold``), packed here
by hand, not by the code under test.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cvmlaunch.cpuid import (
    SNP_CPUID_MAX,
    TD_ATTR_PKS,
    TD_ATTR_SEPT_VE_DISABLE,
    CpuidEntry,
    cpuid_page_mismatches,
    parse_snp_cpuid_page,
    snp_cpuid_page,
    snp_guest_cpuid,
    tdx_guest_cpuid,
    tdx_init_params,
)
from cvmlaunch.errors import ConfigError
from cvmlaunch.plan.vmsa import BSP_RESET_EIP as MEASURE_BSP_EIP
from cvmlaunch.vcpu_state import BSP_RESET_EIP, snp_reset_state
from tests.errors_util import raises_cvm

LEAF0 = CpuidEntry(0, 0, 0, 0x10, 0x68747541, 0x444D4163, 0x69746E65)
LEAF7 = CpuidEntry(7, 0, 1, 0, 0xFFFF_FFFF, 0x1234, 0xFFFF_FFFF)
LEAF_D0 = CpuidEntry(0xD, 0, 1, 0x2E7, 0x980, 0x988, 0)
LEAF_D1 = CpuidEntry(0xD, 1, 1, 0xF, 0x340, 0x1800, 0)
LEAF_EXT = CpuidEntry(0x8000_0008, 3, 0, 0x3030, 0xFFFF_FFFF, 0x707F, 0x10000)


def _function(eax_in: int, ecx_in: int, xcr0: int, xss: int, regs: tuple[int, ...]) -> bytes:
    # SNP ABI SNP_CPUID_FUNCTION: EAX_IN, ECX_IN u32; XCR0_IN, XSS_IN u64; EAX..EDX u32; u64 0
    return (
        struct.pack("<II", eax_in, ecx_in)
        + struct.pack("<QQ", xcr0, xss)
        + struct.pack("<IIII", *regs)
        + bytes(8)
    )


def test_snp_cpuid_page_is_qemus_layout() -> None:
    page = snp_cpuid_page([LEAF0, LEAF7, LEAF_D0, LEAF_D1, LEAF_EXT])
    header = struct.pack("<IIQ", 5, 0, 0)
    want = header + b"".join(
        (
            _function(0, 0, 0, 0, (0x10, 0x68747541, 0x444D4163, 0x69746E65)),
            _function(7, 0, 0, 0, (0, 0xFFFF_FFFF, 0x1234, 0xFFFF_FFFF)),
            # leaf 0xD subleaves 0 and 1: the XSAVE size of XCR0=1 (0x240), XCR0_IN 1
            _function(0xD, 0, 1, 0, (0x2E7, 0x240, 0x988, 0)),
            _function(0xD, 1, 1, 0, (0xF, 0x240, 0x1800, 0)),
            # no significant index: ECX_IN 0 whatever the entry's index says
            _function(0x8000_0008, 0, 0, 0, (0x3030, 0xFFFF_FFFF, 0x707F, 0x10000)),
        )
    )
    assert len(page) == 4096
    assert page == want + bytes(4096 - len(want))
    assert 16 + 64 * 48 == 3088  # the table fits one page


def test_more_than_64_cpuid_entries_are_refused() -> None:
    entries = [CpuidEntry(i, 0, 0, 0, 0, 0, 0) for i in range(SNP_CPUID_MAX + 1)]
    with pytest.raises(ConfigError, match="65 entries; the SNP CPUID page holds 64"):
        snp_cpuid_page(entries)


regs32 = st.integers(0, 0xFFFF_FFFF)
entries_st = st.lists(
    st.builds(CpuidEntry, regs32, regs32, st.sampled_from([0, 1]), regs32, regs32, regs32, regs32),
    max_size=SNP_CPUID_MAX,
)


@given(entries_st)
def test_cpuid_page_round_trips(entries: list[CpuidEntry]) -> None:
    parsed = parse_snp_cpuid_page(snp_cpuid_page(entries))
    assert len(parsed) == len(entries)
    for e, f in zip(entries, parsed, strict=True):
        assert (f.eax_in, f.eax, f.ecx, f.edx) == (e.function, e.eax, e.ecx, e.edx)
        assert f.ecx_in == (e.index if e.flags & 1 else 0)
    assert cpuid_page_mismatches(snp_cpuid_page(entries), snp_cpuid_page(entries)) == []


def test_mismatches_name_each_changed_leaf() -> None:
    mine = snp_cpuid_page([LEAF0, LEAF7, LEAF_EXT])
    fixed = snp_cpuid_page(
        [LEAF0, CpuidEntry(7, 0, 1, 0, 0x7FFF_FFFF, 0x1234, 0xFFFF_FFFF), LEAF_EXT]
    )
    assert cpuid_page_mismatches(mine, fixed) == [
        "leaf 0x00000007 subleaf 0x0: provided eax 0x00000000 ebx 0xffffffff ecx 0x00001234 "
        "edx 0xffffffff, expected eax 0x00000000 ebx 0x7fffffff ecx 0x00001234 edx 0xffffffff"
    ]
    fewer = snp_cpuid_page([LEAF0, LEAF7])
    assert cpuid_page_mismatches(mine, fewer)[0] == "entry count: provided 3, expected 2"


def test_snp_guest_cpuid_clears_what_qemu_masks() -> None:
    ones = 0xFFFF_FFFF
    host = [
        CpuidEntry(1, 0, 0, 0xA00F11, ones, ones, ones),
        CpuidEntry(7, 0, 1, ones, ones, ones, ones),
        CpuidEntry(0x8000_0008, 0, 0, ones, ones, ones, ones),
        CpuidEntry(0xD, 0, 1, ones, ones, ones, ones),
    ]
    out = snp_guest_cpuid(host)
    assert out[0] == CpuidEntry(1, 0, 0, 0xA00F11, ones, ones & ~(1 << 24), ones)  # TSC_DEADLINE
    # TSC_ADJUST; SPEC_CTRL, STIBP, FLUSH_L1D, ARCH_CAPABILITIES, CORE_CAPABILITY, SSBD
    assert out[1] == CpuidEntry(7, 0, 1, ones, ones & ~2, ones, ones & ~(0x3F << 26))
    assert out[2] == CpuidEntry(0x8000_0008, 0, 0, ones, ones & ~(1 << 25), ones, ones)
    assert out[3] == host[3]


CONFIG = (
    CpuidEntry(1, 0, 0, 0, 0, 0x8020_0000, 0),
    CpuidEntry(7, 0, 1, 0, 0xFFFF_FFFF, 0xFFFF_FFFF, 0xFFFF_FFFF),
    CpuidEntry(0x8000_0008, 0, 0, 0x00FF_0000, 0, 0, 0),
    CpuidEntry(0x1F, 0, 1, 0xFFFF_FFFF, 0, 0, 0),  # a leaf the guest CPUID lacks
)
GUEST = (
    CpuidEntry(1, 0, 0, 0x806F8, 0x800, 0xFEDA_3203, 0x178B_FBFF),
    CpuidEntry(7, 0, 1, 0, 0xF1BF_07AB, 0x1B40_5FCE | 1 << 31, 0xFC1C_4432),
    CpuidEntry(0xD, 0, 1, 0x2E7, 0, 0, 0),
    CpuidEntry(0xD, 1, 1, 0xF, 0, 0x1800, 0),
    CpuidEntry(0x8000_0008, 0, 0, 0x3934, 0, 0, 0),
)


def test_tdx_init_params_follow_qemu() -> None:
    p = tdx_init_params(
        supported_attrs=TD_ATTR_SEPT_VE_DISABLE,
        supported_xfam=0x6E7,
        configurable=CONFIG,
        guest_cpuid=GUEST,
    )
    assert p.attributes == TD_ATTR_SEPT_VE_DISABLE  # PKS not supported: not set
    assert p.xfam == (0x2E7 | 0x1800) & 0x6E7
    assert p.cpuid == (
        CpuidEntry(1, 0, 0, 0, 0, 0xFEDA_3203 & 0x8020_0000, 0),
        GUEST[1],
        CpuidEntry(0x8000_0008, 0, 0, 48 << 16, 0, 0, 0),  # GPAW 48, other bits not configurable
    )
    with_pks = tdx_init_params(
        supported_attrs=TD_ATTR_SEPT_VE_DISABLE | TD_ATTR_PKS,
        supported_xfam=0x6E7,
        configurable=CONFIG,
        guest_cpuid=GUEST,
    )
    assert with_pks.attributes == TD_ATTR_SEPT_VE_DISABLE | TD_ATTR_PKS


@pytest.mark.parametrize(
    ("kwargs", "setting", "message"),
    [
        ({"attributes": 1 << 2}, "td_attributes", "only DEBUG"),
        ({"attributes": TD_ATTR_PKS}, "td_attributes", "supports only 0x10000000"),
        ({"xfam": 0x7}, "xfam", "unsupported bits 0x4"),
    ],
)
def test_tdx_values_the_host_lacks_are_refused(
    kwargs: dict[str, int], setting: str, message: str
) -> None:
    with raises_cvm(ConfigError, setting=setting, match=message):
        tdx_init_params(
            supported_attrs=TD_ATTR_SEPT_VE_DISABLE,
            supported_xfam=0x3,
            configurable=CONFIG,
            guest_cpuid=GUEST,
            **kwargs,
        )


def test_tdx_init_vm_needs_leaf_0x80000008() -> None:
    with pytest.raises(ConfigError, match="no leaf 0x80000008"):
        tdx_init_params(
            supported_attrs=TD_ATTR_SEPT_VE_DISABLE,
            supported_xfam=0x3,
            configurable=CONFIG,
            guest_cpuid=GUEST[:4],
        )


def test_td_vcpus_get_x2apic() -> None:
    out = tdx_guest_cpuid([CpuidEntry(1, 0, 0, 1, 2, 0, 4), LEAF0])
    assert out == (CpuidEntry(1, 0, 0, 1, 2, 1 << 21, 4), LEAF0)


def test_snp_reset_state_is_qemus() -> None:
    assert BSP_RESET_EIP == MEASURE_BSP_EIP
    bsp = snp_reset_state(eip=BSP_RESET_EIP, vcpu_sig=0xA00F11, bsp=True)
    cs = bsp.segments["cs"]
    assert (cs.selector, cs.base, cs.limit, cs.type, cs.s, cs.present) == (
        0xF000,
        0xFFFF_0000,
        0xFFFF,
        0xB,
        1,
        1,
    )
    assert bsp.regs == {"rip": 0xFFF0, "rflags": 0x2, "rdx": 0xA00F11}
    assert (bsp.cr0, bsp.cr4, bsp.efer) == (0x6000_0010, 0, 0)
    assert bsp.apic_base == 0xFEE0_0900
    assert (bsp.fcw, bsp.mxcsr, bsp.xcr0) == (0x37F, 0x1F80, 1)
    assert (bsp.segments["ldt"].type, bsp.segments["ldt"].s) == (2, 0)
    assert (bsp.segments["tr"].type, bsp.segments["tr"].s) == (0xB, 0)
    ap = snp_reset_state(eip=0x80B004, vcpu_sig=0xA00F11, bsp=False)
    assert ap.segments["cs"].base == 0x80_0000
    assert ap.regs["rip"] == 0xB004
    assert ap.apic_base == 0xFEE0_0800
