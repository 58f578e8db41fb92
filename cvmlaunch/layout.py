"""The vocabulary of a launch: page types, regions, the launch plan, and their constants.

Rule 1: pure values. This module does no I/O and imports only the standard library and
:mod:`cvmlaunch.errors`. Parsers (:mod:`cvmlaunch.image`), measurement (:mod:`cvmlaunch.measure`)
and the KVM edge (:mod:`cvmlaunch.kvm_map`) all speak it, so none of them needs the others.

Rule 2: a :class:`Plan` is the launch plan: its regions are in the order they will be
populated (which is the order of the measurement: SNP and TDX digests depend on it), validated
when it is built. The measurement is a fold over the plan; the KVM engine executes the same
plan; every builder of one lives in :mod:`cvmlaunch.plan`. :data:`Layout` is its old name,
kept as an alias for external users for one release.

Rule 3: every value is validated in ``__post_init__`` and raises :class:`LayoutError` (never
``assert``); bad input raises only :class:`~cvmlaunch.errors.CvmLaunchError` subclasses.

Rule 4: start-up time. Creating a frozen dataclass costs about half a millisecond, so the core
types a digest does not need live in their own modules: the memory map
(:mod:`cvmlaunch.memory_map`: :class:`MemoryMap`, :class:`Memslot`, :class:`MemslotKind`),
log records (:mod:`cvmlaunch.log_entry`: :class:`LogEntry`, :class:`LogOp`) and launch
identities (:mod:`cvmlaunch.launch_identity`: :class:`SnpLaunchIdentity`,
:class:`TdxLaunchIdentity`); this module re-exports them on first use. Nothing here imports
``typing``.

Rule 5: no import cycles among the core modules. The shared numbers live below all of them
in :mod:`cvmlaunch.constants` (re-exported here); :mod:`cvmlaunch.memory_map` imports only
those, while :mod:`cvmlaunch.log_entry` and :mod:`cvmlaunch.launch_identity` build on this
module and are not imported by it (import-linter's layers contract keeps it so).
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from cvmlaunch.constants import (
    FOUR_GIB,
    LOW_RAM_SPLIT,
    MAX_GPA,
    PAGE_SIZE,
    PCI_HOLE_START,
    SNP_HOST_DATA_SIZE,
    SNP_ID_AUTH_SIZE,
    SNP_ID_BLOCK_SIZE,
    TDX_MR_SIZE,
    VMSA_GPA,
)
from cvmlaunch.errors import ConfigError, LayoutError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cvmlaunch.memory_map import MemoryMap, Memslot, MemslotKind

__all__ = [
    "FOUR_GIB",
    "LOW_RAM_SPLIT",
    "MAX_GPA",
    "PAGE_SIZE",
    "PCI_HOLE_START",
    "SNP_HOST_DATA_SIZE",
    "SNP_ID_AUTH_SIZE",
    "SNP_ID_BLOCK_SIZE",
    "TDX_MR_SIZE",
    "VMSA_GPA",
    "Buffer",
    "Layout",
    "MemoryMap",
    "Memslot",
    "MemslotKind",
    "PageType",
    "Plan",
    "Provenance",
    "Region",
    "SevSectionType",
    "SourceKind",
    "TdvfAttribute",
    "TdvfSectionType",
    "align_down",
    "align_up",
    "parse_hex_bytes",
]

#: Contents of a region: bytes, or a memoryview (e.g. a slice of an mmap'd file).
Buffer = bytes | memoryview


def align_down(value: int, alignment: int = PAGE_SIZE) -> int:
    """Round ``value`` down to a multiple of ``alignment`` (a power of two)."""
    return value & ~(alignment - 1)


def align_up(value: int, alignment: int = PAGE_SIZE) -> int:
    """Round ``value`` up to a multiple of ``alignment`` (a power of two)."""
    return (value + alignment - 1) & ~(alignment - 1)


class PageType(enum.IntEnum):
    """Page types of a populate operation.

    The values are the SEV-SNP PAGE_INFO PAGE_TYPE values (SNP firmware ABI, SNP_LAUNCH_UPDATE),
    which the kernel's ``KVM_SEV_SNP_PAGE_TYPE_*`` constants share. TDX has no page types: a TDX
    region is NORMAL and its :attr:`Region.measured` flag says whether it is MR.EXTENDed on top
    of being PAGE.ADDed.
    """

    NORMAL = 1
    VMSA = 2
    ZERO = 3
    UNMEASURED = 4
    SECRETS = 5
    CPUID = 6

    @property
    def hashes_contents(self) -> bool:
        """Whether SNP hashes the page contents into PAGE_INFO (NORMAL and VMSA only)."""
        return self in (PageType.NORMAL, PageType.VMSA)


class SevSectionType(enum.IntEnum):
    """OVMF SEV metadata ("ASEV") section types (edk2 OvmfSevMetadata.asm)."""

    SNP_SEC_MEM = 1
    SNP_SECRETS = 2
    CPUID = 3
    SVSM_CAA = 4
    SNP_KERNEL_HASHES = 0x10


class TdvfSectionType(enum.IntEnum):
    """TDVF metadata section types (TDVF design guide; 4.. are td-shim only)."""

    BFV = 0
    CFV = 1
    TD_HOB = 2
    TEMP_MEM = 3
    PERM_MEM = 4
    PAYLOAD = 5
    PAYLOAD_PARAM = 6
    TD_INFO = 7
    TD_PARAMS = 8


class TdvfAttribute(enum.IntFlag):
    """TDVF metadata section attributes."""

    MR_EXTEND = 1
    PAGE_AUG = 2


class SourceKind(enum.Enum):
    """Where the bytes of a region come from."""

    FILE = "file"  # a slice of an input file (name + offset)
    ELF_SEGMENT = "elf-segment"  # PT_LOAD segment n of an ELF file
    BSS = "bss"  # zero fill of an ELF segment beyond p_filesz
    GENERATED = "generated"  # a table cvmlaunch generates (hashes table, boot params, ...)
    ZERO = "zero"  # zero fill with no source
    FIRMWARE_SECTION = "firmware-section"  # a firmware metadata section (SEV or TDVF), index n
    VMSA = "vmsa"  # the initial state of vCPU n


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where a region came from; recorded in the launch measurement log.

    Args:
        kind: the kind of source.
        name: the input's name (file name) or the generated table's name.
        offset: byte offset in the input, if the bytes come from a file.
        index: ELF segment number, metadata section number or vCPU number, if any.
        detail: free text, e.g. the section type name.
    """

    kind: SourceKind
    name: str = ""
    offset: int | None = None
    index: int | None = None
    detail: str = ""

    def describe(self) -> str:
        """A short human description, e.g. ``OVMF.fd+0x84000`` or ``metadata #3 (CPUID)``."""
        parts: list[str] = []
        if self.kind is SourceKind.FILE:
            parts.append(self.name if self.offset is None else f"{self.name}+{self.offset:#x}")
        elif self.kind in (SourceKind.ELF_SEGMENT, SourceKind.BSS):
            label = "segment" if self.kind is SourceKind.ELF_SEGMENT else "bss of segment"
            parts.append(f"{self.name} {label} {self.index}")
            if self.offset is not None and self.kind is SourceKind.ELF_SEGMENT:
                parts.append(f"+{self.offset:#x}")
        elif self.kind is SourceKind.FIRMWARE_SECTION:
            parts.append(f"{self.name} metadata #{self.index}")
        elif self.kind is SourceKind.VMSA:
            parts.append(f"VMSA of vCPU {self.index}")
        else:
            parts.append(self.name or self.kind.value)
        text = " ".join(parts).replace(" +", "+")
        if self.detail:
            text = f"{text} ({self.detail})"
        return text


@dataclass(frozen=True, slots=True, eq=False)
class Region:
    """One populate operation: a page-aligned guest-physical range and what goes into it.

    Args:
        gpa: guest-physical address, 4 KiB aligned.
        size: length in bytes, a positive multiple of 4 KiB.
        page_type: the populate page type (see :class:`PageType`).
        measured: whether the contents enter the launch measurement. TDX: the range is
            MR.EXTENDed (else only PAGE.ADDed, which measures just its GPA). SNP: must equal
            ``page_type.hashes_contents``. Plain VMs: recorded in the log only.
        data: the first ``len(data)`` bytes of the range; the rest is zero. ``bytes`` or a
            ``memoryview`` (e.g. of an mmap'd file: the region does not copy it).
        provenance: where the bytes come from.

    Raises:
        LayoutError: on misalignment, a size of zero, data longer than the region, or a
            page type that cannot carry the given data or measured flag.
    """

    gpa: int
    size: int
    page_type: PageType
    measured: bool
    provenance: Provenance
    data: Buffer = b""

    def __post_init__(self) -> None:
        where = self.provenance.describe()
        if self.gpa < 0 or self.gpa % PAGE_SIZE:
            raise LayoutError(f"{where}: GPA {self.gpa:#x} is not 4 KiB aligned")
        if self.size <= 0 or self.size % PAGE_SIZE:
            raise LayoutError(f"{where}: size {self.size:#x} is not a positive multiple of 4 KiB")
        if self.gpa + self.size > MAX_GPA:
            raise LayoutError(
                f"{where}: range {self.gpa:#x}+{self.size:#x} exceeds the 52-bit address space"
            )
        if not isinstance(self.data, bytes | memoryview):
            raise LayoutError(f"{where}: data must be bytes or memoryview")
        if isinstance(self.data, memoryview) and (
            self.data.itemsize != 1 or not self.data.c_contiguous
        ):
            raise LayoutError(f"{where}: data must be a contiguous byte buffer")
        if len(self.data) > self.size:
            raise LayoutError(
                f"{where}: {len(self.data):#x} bytes of data do not fit in {self.size:#x}"
            )
        if not isinstance(self.page_type, PageType):
            raise LayoutError(f"{where}: unknown page type {self.page_type!r}")
        if self.measured and not self.page_type.hashes_contents:
            raise LayoutError(
                f"{where}: {self.page_type.name} pages cannot be measured (contents are not hashed)"
            )
        if self.page_type in (PageType.ZERO, PageType.SECRETS) and len(self.data):
            raise LayoutError(f"{where}: {self.page_type.name} pages carry no data")

    @property
    def end(self) -> int:
        """First GPA after the region."""
        return self.gpa + self.size

    @property
    def npages(self) -> int:
        """Number of 4 KiB pages."""
        return self.size // PAGE_SIZE

    def pages(self) -> Iterator[tuple[int, Buffer]]:
        """Yield ``(gpa, page)`` for every 4 KiB page, in ascending GPA order.

        Pages fully inside ``data`` are zero-copy memoryview slices; the page holding the end
        of ``data`` is zero-padded; pages past it are one shared all-zero page.
        """
        view = memoryview(self.data)
        full = len(view) // PAGE_SIZE
        for i in range(full):
            yield self.gpa + i * PAGE_SIZE, view[i * PAGE_SIZE : (i + 1) * PAGE_SIZE]
        done = full
        tail = len(view) - full * PAGE_SIZE
        if tail:
            yield (
                self.gpa + full * PAGE_SIZE,
                bytes(view[full * PAGE_SIZE :]) + bytes(PAGE_SIZE - tail),
            )
            done += 1
        for i in range(done, self.npages):
            yield self.gpa + i * PAGE_SIZE, _ZERO_PAGE

    def contents(self) -> bytes:
        """The whole range as bytes (data plus zero fill). Copies: use for small regions."""
        return bytes(self.data) + bytes(self.size - len(self.data))


_ZERO_PAGE = bytes(PAGE_SIZE)


@dataclass(frozen=True, slots=True)
class Plan:
    """A launch plan: regions in populate order, and the memory they go into.

    Regions keep the order given (measurement order matters: OVMF's metadata sections are
    measured in file order, not by GPA). VMSA regions (SNP initial vCPU state, measured at
    LAUNCH_FINISH) must come last; they all sit at :data:`VMSA_GPA`, outside guest memory, and
    are exempt from the overlap and bounds checks.

    Raises:
        LayoutError: two regions overlap, a region lies outside guest memory (when ``memory``
            is given), or a VMSA region precedes a memory region.
    """

    regions: tuple[Region, ...]
    memory: MemoryMap | None = None

    def __post_init__(self) -> None:
        memory_regions = self.memory_regions
        if any(r.page_type is PageType.VMSA for r in memory_regions):
            raise LayoutError("VMSA regions must come after all memory regions")
        for r in self.vmsa_regions:
            if r.gpa != VMSA_GPA or r.size != PAGE_SIZE:
                raise LayoutError(f"{r.provenance.describe()}: a VMSA is one page at {VMSA_GPA:#x}")
        ordered = sorted(memory_regions, key=lambda r: r.gpa)
        for a, b in itertools.pairwise(ordered):
            if b.gpa < a.end:
                raise LayoutError(
                    f"{a.provenance.describe()} [{a.gpa:#x}-{a.end:#x}) overlaps "
                    f"{b.provenance.describe()} [{b.gpa:#x}-{b.end:#x})"
                )
        if self.memory is not None:
            for r in memory_regions:
                if self.memory.slot_for(r.gpa, r.size) is None:
                    raise LayoutError(
                        f"{r.provenance.describe()} [{r.gpa:#x}-{r.end:#x}) is not inside one "
                        "memslot of guest memory"
                    )

    @classmethod
    def of(cls, regions: Iterable[Region], memory: MemoryMap | None = None) -> Plan:
        """Build and validate a plan from regions in populate order."""
        return cls(tuple(regions), memory)

    @property
    def memory_regions(self) -> tuple[Region, ...]:
        """The regions populated into guest memory (all but the VMSAs), in order."""
        vmsa_start = len(self.regions)
        while vmsa_start and self.regions[vmsa_start - 1].page_type is PageType.VMSA:
            vmsa_start -= 1
        return self.regions[:vmsa_start]

    @property
    def vmsa_regions(self) -> tuple[Region, ...]:
        """The VMSA regions (SNP, measured at LAUNCH_FINISH), BSP first."""
        return self.regions[len(self.memory_regions) :]

    def pages(self) -> Iterator[tuple[Region, int, Buffer]]:
        """Yield ``(region, gpa, page)`` for every 4 KiB page in populate order."""
        for region in self.regions:
            for gpa, page in region.pages():
                yield region, gpa, page


#: :class:`Plan`'s old name, kept for external users for one release (use ``Plan``).
Layout = Plan


def parse_hex_bytes(text: str, size: int, setting: str) -> bytes:
    """Decode hex of exactly ``size`` bytes (``0x`` prefix, ``:`` and whitespace allowed).

    The one hex parser for byte-string settings (host data, TDX MR values, IDs, digests).

    Args:
        text: the hex text as the user typed it.
        size: the exact number of bytes wanted.
        setting: the setting's field name (``"host_data"``), the error's ``setting``.

    Returns:
        The bytes.

    Raises:
        ConfigError: not hex, or not ``size`` bytes.
    """
    s = "".join(text.split()).replace(":", "")
    s = s[2:] if s[:2].lower() == "0x" else s
    try:
        raw = bytes.fromhex(s)
    except ValueError as exc:
        raise ConfigError(f"{setting}: {text!r} is not hexadecimal", setting=setting) from exc
    if len(raw) != size:
        raise ConfigError(
            f"{setting}: {len(raw)} bytes given, exactly {size} needed", setting=setting
        )
    return raw


#: The core types that live in their own modules (see rule 4), by name.
_MOVED: dict[str, str] = {
    "MemoryMap": "cvmlaunch.memory_map",
    "Memslot": "cvmlaunch.memory_map",
    "MemslotKind": "cvmlaunch.memory_map",
    # Built on this module: re-exported at run time only (importing them here for type
    # checkers would be a cycle); type-checked code imports them from their own modules.
    "LogEntry": "cvmlaunch.log_entry",
    "LogOp": "cvmlaunch.log_entry",
    "SnpLaunchIdentity": "cvmlaunch.launch_identity",
    "TdxLaunchIdentity": "cvmlaunch.launch_identity",
}


if not TYPE_CHECKING:  # hidden from type checkers, so that a misspelt name stays an error

    def __getattr__(name: str) -> object:
        """Re-export the types of rule 4, importing their module on first use."""
        module = _MOVED.get(name)
        if module is None:
            raise AttributeError(f"module 'cvmlaunch.layout' has no attribute {name!r}")
        import importlib

        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
