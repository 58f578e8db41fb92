"""The guest-physical memory of a VM: memslots and the q35-style memory map.

A core value module like :mod:`cvmlaunch.layout` (same rules: pure, frozen, validated, raising
:class:`~cvmlaunch.errors.LayoutError`), kept apart so that measuring a launch plan does not
pay for creating these types: only launching (:mod:`cvmlaunch.plan`,
:mod:`cvmlaunch.kvm_map`) and ELF/raw placement use them. :mod:`cvmlaunch.layout` re-exports
them.
"""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass

from cvmlaunch.constants import FOUR_GIB, LOW_RAM_SPLIT, PAGE_SIZE, PCI_HOLE_START
from cvmlaunch.errors import LayoutError

__all__ = ["MemoryMap", "Memslot", "MemslotKind"]


class MemslotKind(enum.Enum):
    """What a memslot holds."""

    RAM_LOW = "ram-low"
    RAM_HIGH = "ram-high"
    FIRMWARE = "firmware"


@dataclass(frozen=True, slots=True)
class Memslot:
    """One KVM memslot (backed by its own guest_memfd)."""

    slot: int
    gpa: int
    size: int
    kind: MemslotKind

    @property
    def end(self) -> int:
        """First GPA after the slot."""
        return self.gpa + self.size


@dataclass(frozen=True, slots=True)
class MemoryMap:
    """The guest-physical memory of a VM, as memslots (q35-style).

    Build it with :meth:`for_size`.
    """

    memslots: tuple[Memslot, ...]

    def __post_init__(self) -> None:
        spans = sorted((s.gpa, s.end, s.slot) for s in self.memslots)
        for s in self.memslots:
            if s.gpa % PAGE_SIZE or s.size <= 0 or s.size % PAGE_SIZE:
                raise LayoutError(f"memslot {s.slot}: {s.gpa:#x}+{s.size:#x} is not page aligned")
        for (_, end_a, slot_a), (start_b, _, slot_b) in itertools.pairwise(spans):
            if start_b < end_a:
                raise LayoutError(f"memslots {slot_a} and {slot_b} overlap")
        if len({s.slot for s in self.memslots}) != len(self.memslots):
            raise LayoutError("memslot numbers are not unique")

    @classmethod
    def for_size(cls, memory: int, firmware_size: int = 0) -> MemoryMap:
        """The memslot plan for ``memory`` bytes of RAM and an optional firmware image.

        RAM below the 32-bit PCI hole, as QEMU's q35 machine lays it out: all of it below 4 GiB
        when it is less than 0xB0000000 bytes, else the first 2 GiB below 4 GiB and the rest from
        4 GiB up. Firmware (if any) is mapped to end exactly at 4 GiB.

        Raises:
            LayoutError: memory not a positive multiple of 4 KiB, or firmware that does not fit
                between low RAM and 4 GiB.
        """
        if memory <= 0 or memory % PAGE_SIZE:
            raise LayoutError(f"memory size {memory:#x} is not a positive multiple of 4 KiB")
        if firmware_size < 0 or firmware_size % PAGE_SIZE:
            raise LayoutError(f"firmware size {firmware_size:#x} is not a multiple of 4 KiB")
        low = memory if memory < PCI_HOLE_START else LOW_RAM_SPLIT
        slots = [Memslot(0, 0, low, MemslotKind.RAM_LOW)]
        if memory > low:
            slots.append(Memslot(len(slots), FOUR_GIB, memory - low, MemslotKind.RAM_HIGH))
        if firmware_size:
            fw_gpa = FOUR_GIB - firmware_size
            if fw_gpa < low:
                raise LayoutError(
                    f"firmware of {firmware_size:#x} bytes would overlap low RAM (ends {low:#x})"
                )
            slots.append(Memslot(len(slots), fw_gpa, firmware_size, MemslotKind.FIRMWARE))
        return cls(tuple(slots))

    @property
    def ram_size(self) -> int:
        """Bytes of RAM (firmware excluded)."""
        return sum(s.size for s in self.memslots if s.kind is not MemslotKind.FIRMWARE)

    def slot_for(self, gpa: int, size: int) -> Memslot | None:
        """The memslot that holds all of ``[gpa, gpa + size)``, or None."""
        for s in self.memslots:
            if s.gpa <= gpa and gpa + size <= s.end:
                return s
        return None
