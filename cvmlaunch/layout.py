"""The vocabulary of a launch: page types, regions, the memory map, the launch plan, log entries.

Rule 1: pure values. This module does no I/O and imports only the standard library and
:mod:`cvmlaunch.errors`. Parsers (:mod:`cvmlaunch.image`), measurement (:mod:`cvmlaunch.measure`)
and the KVM edge (:mod:`cvmlaunch.kvm_map`) all speak it, so none of them needs the others.

Rule 2: a :class:`Layout` is a *plan*: its regions are in the order they will be populated
(which is the order of the measurement: SNP and TDX digests depend on it), validated when it
is built. The measurement is a fold over the plan; the KVM engine executes the same plan.

Rule 3: every value is validated in ``__post_init__`` and raises :class:`LayoutError` (never
``assert``); bad input raises only :class:`~cvmlaunch.errors.CvmLaunchError` subclasses.
"""

from __future__ import annotations

import base64
import enum
import itertools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from cvmlaunch.errors import ConfigError, LayoutError

__all__ = [
    "FOUR_GIB",
    "PAGE_SIZE",
    "PCI_HOLE_START",
    "SNP_HOST_DATA_SIZE",
    "SNP_ID_AUTH_SIZE",
    "SNP_ID_BLOCK_SIZE",
    "TDX_MR_SIZE",
    "VMSA_GPA",
    "Buffer",
    "Layout",
    "LogEntry",
    "LogOp",
    "MemoryMap",
    "Memslot",
    "MemslotKind",
    "PageType",
    "Provenance",
    "Region",
    "SevSectionType",
    "SnpLaunchIdentity",
    "SourceKind",
    "TdvfAttribute",
    "TdvfSectionType",
    "TdxLaunchIdentity",
    "align_down",
    "align_up",
    "parse_hex_bytes",
]

PAGE_SIZE = 4096
FOUR_GIB = 1 << 32
#: q35: with this much RAM or more, low RAM stops at 2 GiB and the rest moves above 4 GiB.
PCI_HOLE_START = 0xB000_0000
#: q35 low-RAM limit once the RAM no longer fits below the PCI hole.
LOW_RAM_SPLIT = 0x8000_0000
#: KVM measures every SNP VMSA at this GPA ((u64)-1, page aligned, bits 63:52 clear).
VMSA_GPA = 0xFFFF_FFFF_F000
#: Largest guest-physical address we accept (52-bit physical address space).
MAX_GPA = 1 << 52

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


@dataclass(frozen=True, slots=True)
class Layout:
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
    def of(cls, regions: Iterable[Region], memory: MemoryMap | None = None) -> Layout:
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


class LogOp(enum.Enum):
    """What a launch-log record did (the value is what the log file says)."""

    SNP_LAUNCH_UPDATE = "snp.launch_update"
    SNP_VMSA = "snp.vmsa"
    SEV_LAUNCH_UPDATE_DATA = "sev.launch_update_data"
    SEV_LAUNCH_UPDATE_VMSA = "sev.launch_update_vmsa"
    TDX_PAGE_ADD = "tdx.page_add"
    TDX_PAGE_ADD_EXTEND = "tdx.page_add+extend"
    PLAIN_COPY = "plain.copy"
    PRE_FAULT = "plain.pre_fault"


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One record of the launch measurement log: one populated range (not one page).

    Args:
        seq: sequence number, from 0.
        op: what was done.
        gpa: first GPA of the range.
        size: bytes in the range.
        page_type: the populate page type.
        measured: whether the contents entered the measurement.
        provenance: where the bytes came from.
        content_sha384: SHA-384 of the range's bytes as populated (zero fill included).
        page_sha384: SHA-384 of each 4 KiB page, where the technology needs it to replay (SNP).
        digest_after: the running measurement after this range, when known.
    """

    seq: int
    op: LogOp
    gpa: int
    size: int
    page_type: PageType
    measured: bool
    provenance: Provenance
    content_sha384: bytes
    page_sha384: tuple[bytes, ...] = ()
    digest_after: bytes | None = None

    def __post_init__(self) -> None:
        if len(self.content_sha384) != 48:
            raise LayoutError(f"log record {self.seq}: content_sha384 must be 48 bytes")
        if any(len(h) != 48 for h in self.page_sha384):
            raise LayoutError(f"log record {self.seq}: page hashes must be 48 bytes each")


#: SEV-SNP HOST_DATA: 32 bytes given to SNP_LAUNCH_FINISH and reported verbatim.
SNP_HOST_DATA_SIZE = 32
#: SEV-SNP ID block and ID auth sizes (SNP firmware ABI, SNP_LAUNCH_FINISH).
SNP_ID_BLOCK_SIZE = 96
SNP_ID_AUTH_SIZE = 4096
#: TDX MRCONFIGID, MROWNER, MROWNERCONFIG: 48 bytes each (TD_PARAMS, KVM_TDX_INIT_VM).
TDX_MR_SIZE = 48
# SNP firmware ABI, "ID Authentication Information Structure": ID_KEY_SIG at 0x680 and
# AUTHOR_KEY at 0x880 (1028 bytes) are all zero when there is no author key.
_SNP_AUTHOR_AREA = slice(0x680, 0x880 + 0x404)


def _exact(value: object, size: int, what: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != size:
        got = len(value) if isinstance(value, bytes | bytearray | memoryview) else type(value)
        raise ConfigError(f"{what} must be exactly {size} bytes (got {got})")
    return value


def parse_hex_bytes(text: str, size: int, what: str) -> bytes:
    """Decode hex of exactly ``size`` bytes (``0x`` prefix, ``:`` and whitespace allowed).

    The one hex parser for byte-string settings (host data, TDX MR values, IDs, digests).

    Args:
        text: the hex text as the user typed it.
        size: the exact number of bytes wanted.
        what: the setting's name, for the error message.

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
        raise ConfigError(f"{what}: {text!r} is not hexadecimal") from exc
    if len(raw) != size:
        raise ConfigError(f"{what}: {len(raw)} bytes given, exactly {size} needed")
    return raw


@dataclass(frozen=True, slots=True)
class SnpLaunchIdentity:
    """What SNP_LAUNCH_FINISH takes besides the VMSAs: HOST_DATA and the optional ID block.

    The KVM layer passes these in ``struct kvm_sev_snp_launch_finish`` (``host_data``,
    ``id_block_en``/``id_block_uaddr``, ``id_auth_uaddr``, ``auth_key_en``); the launch log
    header records them; verifiers compare HOST_DATA and the ID key digests in the report.
    None of them enters the launch digest. Build the ID block and auth with
    :mod:`cvmlaunch.measure.identity`.

    Args:
        host_data: 32 bytes, reported verbatim (zero by default).
        id_block: the 96-byte ID block, or None for no ID block (``id_block_en`` = 0).
        id_auth: the 4096-byte ID auth; required exactly when ``id_block`` is given.

    Raises:
        ConfigError: a value of the wrong size, or an ID block without its auth (or the
            reverse).
    """

    host_data: bytes = bytes(SNP_HOST_DATA_SIZE)
    id_block: bytes | None = None
    id_auth: bytes | None = None

    def __post_init__(self) -> None:
        _exact(self.host_data, SNP_HOST_DATA_SIZE, "SNP host data")
        if (self.id_block is None) != (self.id_auth is None):
            raise ConfigError("an SNP ID block and its ID auth must be given together")
        if self.id_block is not None:
            _exact(self.id_block, SNP_ID_BLOCK_SIZE, "SNP ID block")
        if self.id_auth is not None:
            _exact(self.id_auth, SNP_ID_AUTH_SIZE, "SNP ID auth")

    @classmethod
    def from_hex(cls, host_data: str) -> SnpLaunchIdentity:
        """Host data from hex (exactly 32 bytes), no ID block.

        Raises:
            ConfigError: not hex, or not 32 bytes.
        """
        return cls(parse_hex_bytes(host_data, SNP_HOST_DATA_SIZE, "SNP host data"))

    @property
    def id_block_en(self) -> bool:
        """LAUNCH_FINISH's ID_BLOCK_EN."""
        return self.id_block is not None

    @property
    def auth_key_en(self) -> bool:
        """LAUNCH_FINISH's AUTH_KEY_EN: an ID auth whose author-key part is not all zero."""
        return self.id_auth is not None and any(self.id_auth[_SNP_AUTHOR_AREA])

    def to_record(self) -> dict[str, str | bool | None]:
        """The launch log header's form: hex for host data and the ID block, base64 for the
        4 KiB ID auth (QEMU's ``id-auth`` form)."""
        return {
            "host_data": self.host_data.hex(),
            "id_block": None if self.id_block is None else self.id_block.hex(),
            "id_auth": None if self.id_auth is None else base64.b64encode(self.id_auth).decode(),
            "auth_key_en": self.auth_key_en,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, object]) -> SnpLaunchIdentity:
        """Inverse of :meth:`to_record`.

        Raises:
            ConfigError: a missing or malformed field.
        """
        host = record.get("host_data")
        block = record.get("id_block")
        auth = record.get("id_auth")
        if not isinstance(host, str):
            raise ConfigError("SNP launch identity: host_data must be a hex string")
        if block is not None and not isinstance(block, str):
            raise ConfigError("SNP launch identity: id_block must be a hex string or null")
        if auth is not None and not isinstance(auth, str):
            raise ConfigError("SNP launch identity: id_auth must be a base64 string or null")
        try:
            auth_raw = None if auth is None else base64.b64decode(auth, validate=True)
        except ValueError as exc:
            raise ConfigError("SNP launch identity: id_auth is not base64") from exc
        return cls(
            parse_hex_bytes(host, SNP_HOST_DATA_SIZE, "SNP host data"),
            None if block is None else parse_hex_bytes(block, SNP_ID_BLOCK_SIZE, "SNP ID block"),
            auth_raw,
        )


@dataclass(frozen=True, slots=True)
class TdxLaunchIdentity:
    """The owner-chosen TD_PARAMS values KVM_TDX_INIT_VM takes (``struct kvm_tdx_init_vm``
    ``mrconfigid``/``mrowner``/``mrownerconfig``), reported in the TD quote, never measured
    into MRTD and not enforced by the TDX module. All zero by default (as in QEMU).

    Raises:
        ConfigError: a value that is not 48 bytes.
    """

    mrconfigid: bytes = bytes(TDX_MR_SIZE)
    mrowner: bytes = bytes(TDX_MR_SIZE)
    mrownerconfig: bytes = bytes(TDX_MR_SIZE)

    def __post_init__(self) -> None:
        _exact(self.mrconfigid, TDX_MR_SIZE, "TDX MRCONFIGID")
        _exact(self.mrowner, TDX_MR_SIZE, "TDX MROWNER")
        _exact(self.mrownerconfig, TDX_MR_SIZE, "TDX MROWNERCONFIG")

    @classmethod
    def from_hex(
        cls,
        mrconfigid: str | None = None,
        mrowner: str | None = None,
        mrownerconfig: str | None = None,
    ) -> TdxLaunchIdentity:
        """From hex strings of exactly 48 bytes each (None: all zero).

        Raises:
            ConfigError: not hex, or not 48 bytes.
        """
        zero = bytes(TDX_MR_SIZE)
        return cls(
            zero
            if mrconfigid is None
            else parse_hex_bytes(mrconfigid, TDX_MR_SIZE, "TDX MRCONFIGID"),
            zero if mrowner is None else parse_hex_bytes(mrowner, TDX_MR_SIZE, "TDX MROWNER"),
            zero
            if mrownerconfig is None
            else parse_hex_bytes(mrownerconfig, TDX_MR_SIZE, "TDX MROWNERCONFIG"),
        )

    def to_record(self) -> dict[str, str]:
        """The launch log header's form (hex)."""
        return {
            "mrconfigid": self.mrconfigid.hex(),
            "mrowner": self.mrowner.hex(),
            "mrownerconfig": self.mrownerconfig.hex(),
        }

    @classmethod
    def from_record(cls, record: Mapping[str, object]) -> TdxLaunchIdentity:
        """Inverse of :meth:`to_record` (absent fields are zero).

        Raises:
            ConfigError: a malformed field.
        """
        values: list[str | None] = []
        for key in ("mrconfigid", "mrowner", "mrownerconfig"):
            v = record.get(key)
            if v is not None and not isinstance(v, str):
                raise ConfigError(f"TDX launch identity: {key} must be a hex string")
            values.append(v)
        return cls.from_hex(*values)
