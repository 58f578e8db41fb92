"""TDVF firmware -> TDX launch plan, as upstream QEMU builds it (the "QEMU profile"), and the
TDX launch of that plan (:func:`tdx_launch`: the plan in the guest's memory, the TD HOB
written into its TD_HOB section).

Rule 1: the plan is what QEMU's ``tdx_finalize_vm`` (target/i386/kvm/tdx.c) hands to
``KVM_TDX_INIT_MEM_REGION``: one range per TDVF metadata section, in metadata order (never
sorted by GPA); every section is PAGE.ADDed; only sections with the MR.EXTEND attribute are
measured. BFV/CFV bytes are the image's bytes at ``DataOffset``; TD_HOB and TEMP_MEM start
as zeros (QEMU writes the TD HOB into the TD_HOB section, but its content is not measured, so
the plan leaves it empty; the launcher fills it).

Rule 2: what upstream QEMU rejects (hw/i386/tdvf.c ``tdvf_parse_metadata`` and
``tdvf_parse_and_check_section_entry``; tdx.c ``tdx_get_hob_entry``) is rejected here with an
:class:`~cvmlaunch.errors.ImageError` naming the image and the section: fewer than two
sections, types other than BFV/CFV/TD_HOB/TEMP_MEM, a BFV/CFV without raw data, a
TD_HOB/TEMP_MEM with raw data, no TD_HOB. The structural checks (signature, version, length,
alignment, overlaps) are :func:`cvmlaunch.image.ovmf.parse_ovmf`'s.

Rule 3, where QEMU's behaviour is not a sound basis for a prediction, we refuse rather than
guess:

* a BFV/CFV whose MemoryDataSize exceeds its RawDataSize: the TDVF spec says the VMM zero-fills
  the tail, QEMU instead copies MemoryDataSize bytes of the image from DataOffset (whatever
  follows). OVMF never produces one; refused.
* reserved attribute bits (31:2 other than PAGE.AUG) set: an attribute we do not know; refused.
* a section that ends above 4 GiB (:data:`TDVF_SECTION_LIMIT`). QEMU maps the image below
  4 GiB and a TD's vCPUs start in 32-bit mode, where TDVF uses TD_HOB and TEMP_MEM (its
  stack, its first page tables) before it enters long mode; every TDVF build places them
  low. Every section is PAGE.ADDed, one MRTD extension per page, so a section declaring
  0xF00000000000 bytes would be billions of extensions (days of hashing) for a TD that no
  firmware builds: it is refused up front, and the work of a plan stays below 2**20 pages.

And one documented choice: the PAGE.AUG attribute (bit 1) is ignored, as upstream QEMU ignores
it (``TDVF_SECTION_ATTRIBUTES_PAGE_AUG`` is defined in tdvf.h and never consulted): such a
section is PAGE.ADDed like any other. td-shim-style VMMs skip PAGE.ADD for it instead; that
profile is not implemented.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from cvmlaunch.errors import ConfigError, ImageError, UnsupportedSection
from cvmlaunch.image.ovmf import TDX_METADATA_OFFSET_GUID, OvmfImage, TdvfSection
from cvmlaunch.layout import (
    FOUR_GIB,
    PageType,
    Plan,
    Provenance,
    Region,
    SourceKind,
    TdvfAttribute,
    TdvfSectionType,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cvmlaunch.image.td_hob import TdRamEntry

__all__ = ["QEMU_SECTION_TYPES", "TDVF_SECTION_LIMIT", "TdxLaunch", "tdvf_plan", "tdx_launch"]

#: The section types upstream QEMU accepts (hw/i386/tdvf.c).
QEMU_SECTION_TYPES = frozenset(
    {TdvfSectionType.BFV, TdvfSectionType.CFV, TdvfSectionType.TD_HOB, TdvfSectionType.TEMP_MEM}
)
_KNOWN_ATTRIBUTES = TdvfAttribute.MR_EXTEND | TdvfAttribute.PAGE_AUG
#: Every TDVF section ends at or below this GPA (see the module doc, Rule 3).
TDVF_SECTION_LIMIT = FOUR_GIB


def _section_region(image: OvmfImage, s: TdvfSection) -> Region:
    what = f"TDVF section {s.index} ({s.type.name})"

    def fail(message: str) -> ImageError:
        return ImageError(f"{what} {message}", source=image.name, offset=s.offset)

    if s.type not in QEMU_SECTION_TYPES:
        raise UnsupportedSection(
            f"{what}: upstream QEMU accepts only BFV, CFV, TD_HOB and TEMP_MEM sections "
            "(td-shim layouts are not supported)",
            raw=int(s.type),
            source=image.name,
            offset=s.offset,
        )
    if s.gpa + s.memory_size > TDVF_SECTION_LIMIT:
        raise fail(
            f"{s.gpa:#x}+{s.memory_size:#x} ends above 4 GiB: TDVF sections lie below 4 GiB "
            "(the TD starts in 32-bit mode); refusing"
        )
    unknown = int(s.attributes) & ~int(_KNOWN_ATTRIBUTES)
    if unknown:
        raise fail(f"has reserved attribute bits {unknown:#x} set")
    data: bytes | memoryview = b""
    if s.type in (TdvfSectionType.BFV, TdvfSectionType.CFV):
        if s.raw_size == 0:
            raise fail("has RawDataSize 0 (QEMU requires the firmware volume's bytes)")
        if s.memory_size != s.raw_size:
            raise fail(
                f"has MemoryDataSize {s.memory_size:#x} > RawDataSize {s.raw_size:#x}: QEMU "
                "would copy the image bytes that follow, the TDVF spec zero-fills; refusing "
                "to guess"
            )
        data = image.tdvf_section_data(s)
    elif s.raw_size != 0:
        raise fail(f"has RawDataSize {s.raw_size:#x} (QEMU requires 0 for this type)")
    detail = s.type.name
    if s.attributes & TdvfAttribute.PAGE_AUG:
        detail += ", PAGE.AUG ignored as QEMU does"
    return Region(
        gpa=s.gpa,
        size=s.memory_size,
        page_type=PageType.NORMAL,
        measured=bool(s.attributes & TdvfAttribute.MR_EXTEND),
        provenance=Provenance(
            SourceKind.FIRMWARE_SECTION,
            name=image.name,
            offset=s.data_offset if data else None,
            index=s.index,
            detail=detail,
        ),
        data=data,
    )


def tdvf_plan(image: OvmfImage) -> Plan:
    """The TDX launch plan of a TDVF image, as upstream QEMU populates it.

    Args:
        image: a parsed OVMF/TDVF flat image (:func:`cvmlaunch.image.ovmf.parse_ovmf`).

    Returns:
        One region per TDVF section, in metadata order; measured iff MR.EXTEND.

    Raises:
        ImageError: no TDX metadata, or metadata upstream QEMU rejects (see the module doc).
        UnsupportedSection: a section type QEMU does not accept (td-shim types 4..8).
    """
    sections = image.tdx_sections
    if sections is None:
        raise ImageError(
            f"no TDX metadata (GUID {TDX_METADATA_OFFSET_GUID} is not in the OVMF footer "
            "table): not a TDVF image",
            source=image.name,
        )
    if len(sections) < 2:
        raise ImageError(
            f"TDVF metadata has {len(sections)} section; QEMU requires at least 2",
            source=image.name,
        )
    regions = [_section_region(image, s) for s in sections]
    if not any(s.type is TdvfSectionType.TD_HOB for s in sections):
        raise ImageError(
            "TDVF metadata has no TD_HOB section (QEMU requires one)", source=image.name
        )
    return Plan.of(regions)


@dataclass(frozen=True, slots=True)
class TdxLaunch:
    """A TDX launch of a TDVF image.

    Args:
        plan: :func:`tdvf_plan`'s plan with the memory map, the TD
            HOB in its TD_HOB section.
        hob_gpa: the TD_HOB section's GPA (each vCPU's initial RCX).
        vcpus: the number of vCPUs.
        hob: the TD HOB's bytes.
        ram: the RAM entries the HOB describes (accepted by the VMM, or not).
    """

    plan: Plan
    hob_gpa: int
    vcpus: int
    hob: bytes
    ram: tuple[TdRamEntry, ...]


def tdx_launch(image: OvmfImage, memory: int, vcpus: int) -> TdxLaunch:
    """The TDX launch of ``image`` with ``vcpus`` vCPUs in ``memory`` bytes of RAM, the TD HOB
    (:func:`cvmlaunch.image.td_hob.build_td_hob`, QEMU's) written into the TD_HOB section.

    The HOB is PAGE.ADDed without MR.EXTEND, so it does not change MRTD: the plan folds to
    the MRTD of :func:`tdvf_plan` (TDVF hashes it into RTMR0).

    Raises:
        ConfigError: too little memory, a vCPU count out of range.
        ImageError: see :func:`tdvf_plan`.
        LayoutError: RAM that cannot hold the TDVF sections, a HOB larger than its section.
    """
    from cvmlaunch.image.td_hob import build_td_hob, td_hob_section, td_ram_entries
    from cvmlaunch.plan._memory import in_memory

    if not 1 <= vcpus <= 4096:
        raise ConfigError(f"vcpus: vCPU count {vcpus} is out of range (1..4096)", setting="vcpus")
    sections = image.tdx_sections or ()
    plan = in_memory(tdvf_plan(image), image, memory)
    section = td_hob_section(sections)
    hob = build_td_hob(sections, memory)
    regions = [
        replace(r, data=hob) if r.provenance.index == section.index and r.gpa == section.gpa else r
        for r in plan.regions
    ]
    return TdxLaunch(
        Plan.of(regions, plan.memory),
        section.gpa,
        vcpus,
        hob,
        td_ram_entries(sections, memory),
    )
