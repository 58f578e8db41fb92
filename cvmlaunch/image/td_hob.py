"""The TD HOB that QEMU hands to TDVF, as a pure function of the TDVF metadata and the RAM size.

Rule 1: this is upstream QEMU's algorithm (target/i386/kvm/tdx.c ``tdx_init_ram_entries``,
``tdx_accept_ram_range``, ``tdx_finalize_vm``; hw/i386/tdvf-hob.c ``tdvf_hob_create``), bit for
bit, because TDVF hashes the HOB into RTMR0 (``TdxHelperMeasureTdHob``): another VMM's HOB (more
attributes, MMIO or GUID HOBs) gives another RTMR0.

Rule 2: pure. Takes the TDVF sections (:attr:`cvmlaunch.image.ovmf.OvmfImage.tdx_sections`)
and a RAM size in bytes, returns values and bytes; the launcher copies the bytes into the
TD_HOB section, the RTMR0 prediction hashes :func:`td_hob_measured_bytes`.

The RAM accounting (:func:`td_ram_entries`):

1. The q35 e820 RAM entries, all UNACCEPTED: ``[0, low)`` and, when the RAM does not fit below
   the PCI hole (>= 0xB0000000 bytes), ``low = 2 GiB`` and ``[4 GiB, 4 GiB + rest)``
   (:meth:`cvmlaunch.memory_map.MemoryMap.for_size`, the one place that split lives).
2. For each TD_HOB and TEMP_MEM section in metadata order: the first entry that overlaps it
   must contain it whole (else :class:`~cvmlaunch.errors.LayoutError`); an entry already
   ACCEPTED is left alone; otherwise the entry becomes the section (ACCEPTED) and its head and
   tail remainders are appended as UNACCEPTED. Adjacent accepted sections are *not* merged.
3. Sorted by address.

The HOB (:func:`build_td_hob`), every HOB 8-byte aligned (all sizes here are multiples of 8):

* PHIT (``EFI_HOB_HANDOFF_INFO_TABLE``, 56 bytes): type 1, length 56, version 9, boot mode 0,
  four zero memory bounds, ``EfiEndOfHobList`` = GPA of the first byte after the END HOB.
* one resource descriptor (48 bytes) per RAM entry, in address order: type 3, owner GUID zero,
  resource type 0 (SYSTEM_MEMORY) for accepted, 7 (MEMORY_UNACCEPTED) for unaccepted, attribute
  7 (PRESENT | INITIALIZED | TESTED) for both, start, length.
* END (``EFI_HOB_GENERIC_HEADER``, 8 bytes): type 0xFFFF, length 8.

TDVF measures ``[PHIT, END)``: the END header is not hashed (:func:`td_hob_measured_bytes`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from cvmlaunch._struct import StructTable
from cvmlaunch.errors import LayoutError
from cvmlaunch.image.ovmf import TdvfSection
from cvmlaunch.layout import TdvfSectionType
from cvmlaunch.memory_map import MemoryMap

__all__ = [
    "HOB_ALIGNMENT",
    "RESOURCE_ATTRIBUTE_RAM",
    "RESOURCE_TYPE_SYSTEM_MEMORY",
    "RESOURCE_TYPE_UNACCEPTED",
    "TD_HOB_END_SIZE",
    "TdRamEntry",
    "build_td_hob",
    "td_hob_event_sha384",
    "td_hob_measured_bytes",
    "td_hob_section",
    "td_hob_size",
    "td_ram_entries",
]

HOB_TYPE_HANDOFF = 0x0001
HOB_TYPE_RESOURCE_DESCRIPTOR = 0x0003
HOB_TYPE_END_OF_HOB_LIST = 0xFFFF
#: ``EFI_HOB_HANDOFF_INFO_TABLE_VERSION`` as QEMU writes it.
PHIT_VERSION = 0x0009
#: ``EFI_RESOURCE_SYSTEM_MEMORY``: RAM QEMU accepted for TDVF (the TD_HOB and TEMP_MEM sections).
RESOURCE_TYPE_SYSTEM_MEMORY = 0x0
#: ``EFI_RESOURCE_MEMORY_UNACCEPTED``: RAM TDVF accepts itself.
RESOURCE_TYPE_UNACCEPTED = 0x7
#: PRESENT | INITIALIZED | TESTED, QEMU's ``EFI_RESOURCE_ATTRIBUTE_TDVF_PRIVATE`` (both kinds).
RESOURCE_ATTRIBUTE_RAM = 0x7
HOB_ALIGNMENT = 8
#: The END HOB's size; TDVF's RTMR0 hash stops before it.
TD_HOB_END_SIZE = 8

#: UEFI PI spec vol. 3, ``EFI_HOB_GENERIC_HEADER``: the first 8 bytes of every HOB, and the
#: whole END HOB.
_HEADER_ROWS = (("hob_type", 0, "H"), ("hob_length", 2, "H"), ("reserved", 4, "I"))
_END = StructTable("EFI_HOB_GENERIC_HEADER", _HEADER_ROWS, end=8)
#: UEFI PI spec vol. 3, ``EFI_HOB_HANDOFF_INFO_TABLE`` (the PHIT).
_PHIT = StructTable(
    "EFI_HOB_HANDOFF_INFO_TABLE",
    (
        *_HEADER_ROWS,
        ("version", 8, "I"),
        ("boot_mode", 12, "I"),
        ("efi_memory_top", 16, "Q"),
        ("efi_memory_bottom", 24, "Q"),
        ("efi_free_memory_top", 32, "Q"),
        ("efi_free_memory_bottom", 40, "Q"),
        ("efi_end_of_hob_list", 48, "Q"),
    ),
    end=56,
)
#: UEFI PI spec vol. 3, ``EFI_HOB_RESOURCE_DESCRIPTOR``.
_RESOURCE = StructTable(
    "EFI_HOB_RESOURCE_DESCRIPTOR",
    (
        *_HEADER_ROWS,
        ("owner", 8, "16s"),  # a GUID
        ("resource_type", 24, "I"),
        ("resource_attribute", 28, "I"),
        ("physical_start", 32, "Q"),
        ("resource_length", 40, "Q"),
    ),
    end=48,
)
_END_OF_HOB_LIST = _END.pack(hob_type=HOB_TYPE_END_OF_HOB_LIST, hob_length=_END.size, reserved=0)
_ACCEPTED_TYPES = (TdvfSectionType.TD_HOB, TdvfSectionType.TEMP_MEM)


@dataclass(frozen=True, slots=True)
class TdRamEntry:
    """One RAM range of the TD as QEMU accounts it (``TdxRamEntry``)."""

    address: int
    length: int
    accepted: bool  # True: added by the VMM (a TD_HOB/TEMP_MEM section); False: unaccepted

    @property
    def end(self) -> int:
        """First address after the range."""
        return self.address + self.length


def td_hob_section(sections: Iterable[TdvfSection]) -> TdvfSection:
    """The section QEMU writes the HOB into: the first TD_HOB in metadata order
    (``tdx_get_hob_entry``); its GPA is what every vCPU gets in RCX.

    Raises:
        LayoutError: the metadata has no TD_HOB section.
    """
    for s in sections:
        if s.type is TdvfSectionType.TD_HOB:
            return s
    raise LayoutError("TDVF metadata has no TD_HOB section: nowhere to put the TD HOB")


def td_ram_entries(sections: Iterable[TdvfSection], memory_size: int) -> tuple[TdRamEntry, ...]:
    """QEMU's RAM list for a TD with ``memory_size`` bytes of RAM (see the module doc).

    Args:
        sections: the TDVF sections in metadata order; only TD_HOB and TEMP_MEM matter.
        memory_size: guest RAM in bytes (QEMU's ``-m``), a positive multiple of 4 KiB.

    Returns:
        The entries sorted by address; they describe every RAM byte exactly once.

    Raises:
        LayoutError: a bad memory size, or a TD_HOB/TEMP_MEM section not inside one RAM range
            (QEMU: "Failed to accept memory for TDVF section").
    """
    memory_map = MemoryMap.for_size(memory_size)
    entries = [TdRamEntry(s.gpa, s.size, accepted=False) for s in memory_map.memslots]
    for s in sections:
        if s.type not in _ACCEPTED_TYPES:
            continue
        start, end = s.gpa, s.gpa + s.memory_size
        index = next(
            (i for i, e in enumerate(entries) if start < e.end and e.address < end),
            None,
        )
        if index is None or not (entries[index].address <= start and end <= entries[index].end):
            raise LayoutError(
                f"TDVF section {s.index} ({s.type.name}) {start:#x}..{end:#x} is not inside one "
                f"RAM range of a {memory_size:#x}-byte TD (QEMU cannot accept it)"
            )
        entry = entries[index]
        if entry.accepted:
            continue
        entries[index] = TdRamEntry(start, s.memory_size, accepted=True)
        if start > entry.address:
            entries.append(TdRamEntry(entry.address, start - entry.address, accepted=False))
        if end < entry.end:
            entries.append(TdRamEntry(end, entry.end - end, accepted=False))
    return tuple(sorted(entries, key=lambda e: e.address))


def td_hob_size(entry_count: int) -> int:
    """Bytes of a TD HOB with ``entry_count`` resource descriptors (PHIT + descriptors + END)."""
    return _PHIT.size + entry_count * _RESOURCE.size + _END.size


def build_td_hob(sections: Iterable[TdvfSection], memory_size: int) -> bytes:
    """The TD HOB QEMU writes into the TD_HOB section (PHIT, resource descriptors, END).

    Args:
        sections: the TDVF sections in metadata order
            (:attr:`cvmlaunch.image.ovmf.OvmfImage.tdx_sections`).
        memory_size: guest RAM in bytes.

    Returns:
        The HOB list, :func:`td_hob_size` bytes; the rest of the section stays zero.

    Raises:
        LayoutError: no TD_HOB section, RAM that cannot hold the sections, or a HOB larger than
            the TD_HOB section (QEMU: "exceeded maximum size of TD HOB").
    """
    sections = tuple(sections)
    hob_section = td_hob_section(sections)
    entries = td_ram_entries(sections, memory_size)
    size = td_hob_size(len(entries))
    if size > hob_section.memory_size:
        raise LayoutError(
            f"the TD HOB needs {size:#x} bytes ({len(entries)} RAM entries), the TD_HOB section "
            f"at {hob_section.gpa:#x} has {hob_section.memory_size:#x}"
        )
    end_of_hob_list = hob_section.gpa + size
    parts = [
        _PHIT.pack(
            hob_type=HOB_TYPE_HANDOFF,
            hob_length=_PHIT.size,
            reserved=0,
            version=PHIT_VERSION,
            boot_mode=0,
            efi_memory_top=0,
            efi_memory_bottom=0,
            efi_free_memory_top=0,
            efi_free_memory_bottom=0,
            efi_end_of_hob_list=end_of_hob_list,
        )
    ]
    for e in entries:
        parts.append(
            _RESOURCE.pack(
                hob_type=HOB_TYPE_RESOURCE_DESCRIPTOR,
                hob_length=_RESOURCE.size,
                reserved=0,
                owner=bytes(16),
                resource_type=RESOURCE_TYPE_SYSTEM_MEMORY
                if e.accepted
                else RESOURCE_TYPE_UNACCEPTED,
                resource_attribute=RESOURCE_ATTRIBUTE_RAM,
                physical_start=e.address,
                resource_length=e.length,
            )
        )
    parts.append(_END_OF_HOB_LIST)
    return b"".join(parts)


def td_hob_measured_bytes(hob: bytes) -> bytes:
    """What TDVF hashes into RTMR0: the HOB list without its 8-byte END header.

    Raises:
        LayoutError: ``hob`` does not end with an END HOB.
    """
    if len(hob) < _PHIT.size + _END.size or hob[-_END.size :] != _END_OF_HOB_LIST:
        raise LayoutError("not a TD HOB list: it does not end with an END_OF_HOB_LIST header")
    return hob[: -_END.size]


def td_hob_event_sha384(hob: bytes) -> bytes:
    """The SHA-384 of the TD HOB that TDVF extends into RTMR0 (of
    :func:`td_hob_measured_bytes`): the event digest ``inspect``, a dry run and the RTMR
    prediction show.

    Raises:
        LayoutError: ``hob`` does not end with an END HOB.
    """
    import hashlib

    return hashlib.sha384(td_hob_measured_bytes(hob)).digest()
