"""The launch plan of a PVH guest: a kernel, its initrd and the launcher's tables.

Rule 1: pure. This module takes settings and buffers (kernel regions, initrd bytes) and returns
values: a :class:`PvhLaunch` whose plan (:class:`~cvmlaunch.layout.Plan`) the KVM layer
executes, and the vCPU start state it needs. It does no I/O and imports neither the KVM layer
nor the measurement; the launcher (:mod:`cvmlaunch.launcher.pvh`) reads the files, checks an
SNP ID block pair as the firmware will, and drives :mod:`cvmlaunch.kvm_map`.

Rule 2: the guest contract lives here (and in examples/guest/guest.h, its C side):

* Guest-physical map (below 1 MiB the launcher owns everything):

  ========================  ==============================================================
  ``0x1000``                the range table (:data:`RANGE_TABLE_GPA`), one page
  ``0x2000``                PVH ``hvm_start_info``, its module list and memory map, one page
  ``0x3000``                the kernel command line, NUL-terminated, whole pages
  ``0x70000-0x80000``       the guest's stack (never populated, never hashed)
  ``0x100000`` up           the kernel's PT_LOAD segments (where its ELF puts them)
  top of low RAM            the initrd, page aligned, below :data:`INITRD_ADDR_MAX`
  ========================  ==============================================================

* The range table (little-endian): ``magic[8] = b"CVMLRNG\\0"``, ``version u32 = 1``,
  ``count u32``, then ``count`` entries ``{gpa u64, size u64}``. It lists every populated
  region of the plan in populate order, itself included (it is written last).

* The guest reports a SHA-384 per listed range (:mod:`cvmlaunch.launcher.report` checks the
  report).

The settings a plan is built from (:class:`~cvmlaunch.launch_settings.LaunchSettings`) live in
:mod:`cvmlaunch.launch_settings`.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from cvmlaunch.digests import range_sha384
from cvmlaunch.errors import ConfigError
from cvmlaunch.launch_identity import SnpLaunchIdentity, TdxLaunchIdentity
from cvmlaunch.launch_settings import LaunchSettings
from cvmlaunch.layout import (
    FOUR_GIB,
    PAGE_SIZE,
    SNP_HOST_DATA_SIZE,
    Buffer,
    PageType,
    Plan,
    Provenance,
    Region,
    SourceKind,
    align_down,
    align_up,
)
from cvmlaunch.memory_map import MemoryMap, MemslotKind
from cvmlaunch.technology import Technology

__all__ = [
    "CMDLINE_GPA",
    "DEBUG_EXIT_PORT",
    "GUEST_STACK",
    "INITRD_ADDR_MAX",
    "RANGE_TABLE_GPA",
    "SERIAL_PORT",
    "START_INFO_GPA",
    "PvhLaunch",
    "pvh_launch",
]

RANGE_TABLE_GPA = 0x1000
START_INFO_GPA = 0x2000
CMDLINE_GPA = 0x3000
#: The guest's stack: RAM the plan must leave unpopulated (examples/guest/start.S).
GUEST_STACK = (0x70000, 0x80000)
#: The initrd ends at or below this address (Linux's default initrd_addr_max + 1).
INITRD_ADDR_MAX = 0x3800_0000
SERIAL_PORT = 0x3F8
#: QEMU's isa-debug-exit port; the example guest writes its status there before it halts.
DEBUG_EXIT_PORT = 0xF4

RANGE_TABLE_MAGIC = b"CVMLRNG\0"
RANGE_TABLE_VERSION = 1
#: Range table header: magic[8], version u32, count u32 (examples/guest/guest.h).
_TABLE_HEADER = struct.Struct("<8sII")
#: Range table entry: gpa u64, size u64.
_TABLE_ENTRY = struct.Struct("<QQ")
MAX_RANGES = (PAGE_SIZE - _TABLE_HEADER.size) // _TABLE_ENTRY.size

#: PVH boot ABI, ``struct hvm_start_info`` (Xen public/arch-x86/hvm/start_info.h), version 1:
#: magic, version, flags, nr_modules, modlist_paddr, cmdline_paddr, rsdp_paddr, memmap_paddr,
#: memmap_entries, reserved.
_START_INFO = struct.Struct("<IIIIQQQQII")
HVM_START_MAGIC = 0x336EC578
#: ``struct hvm_modlist_entry``: paddr, size, cmdline_paddr, reserved.
_MODLIST_ENTRY = struct.Struct("<QQQQ")
#: ``struct hvm_memmap_table_entry``: addr, size, type (E820 numbering), reserved.
_MEMMAP_ENTRY = struct.Struct("<QQII")
E820_RAM = 1
E820_RESERVED = 2


@dataclass(frozen=True, slots=True)
class PvhLaunch:
    """A launch, ready to execute: the plan, and where the guest starts.

    Args:
        plan: the regions in populate order and the memory map.
        entry: the PVH 32-bit entry point (XEN_ELFNOTE_PHYS32_ENTRY).
        start_info_gpa: %ebx for vCPU 0.
        vcpus: number of vCPUs.
        tech: the technology.
        settings: the settings the plan was built from.
        snp: (snp) HOST_DATA and the ID block pair for SNP_LAUNCH_FINISH.
        tdx: (tdx) MRCONFIGID / MROWNER / MROWNERCONFIG for KVM_TDX_INIT_VM.
    """

    plan: Plan
    entry: int
    start_info_gpa: int
    vcpus: int
    tech: Technology
    settings: LaunchSettings = field(default_factory=LaunchSettings)
    snp: SnpLaunchIdentity | None = None
    tdx: TdxLaunchIdentity | None = None

    @property
    def hashed(self) -> tuple[Region, ...]:
        """The ranges in the range table (every memory region), in table order."""
        return self.plan.memory_regions

    def predicted(self) -> tuple[bytes, ...]:
        """SHA-384 of each hashed range as the plan fills it: what the guest should report."""
        return tuple(range_sha384(region.data, region.size) for region in self.hashed)


def _generated(name: str, gpa: int, data: bytes, detail: str = "") -> Region:
    return Region(
        gpa=gpa,
        size=align_up(max(len(data), 1)),
        page_type=PageType.NORMAL,
        measured=True,
        provenance=Provenance(SourceKind.GENERATED, name, detail=detail),
        data=data,
    )


def _memory_map_entries(memory: MemoryMap) -> bytes:
    """The PVH memory map: every RAM memslot as E820 RAM, the firmware as reserved."""
    out = b""
    for slot in sorted(memory.memslots, key=lambda s: s.gpa):
        kind = E820_RESERVED if slot.kind is MemslotKind.FIRMWARE else E820_RAM
        out += _MEMMAP_ENTRY.pack(slot.gpa, slot.size, kind, 0)
    return out


def pvh_launch(
    settings: LaunchSettings,
    kernel_regions: Sequence[Region],
    entry: int,
    *,
    initrd: Buffer | None = None,
    initrd_name: str = "initrd",
    firmware: Buffer | None = None,
    firmware_name: str = "firmware",
    id_block: Buffer | None = None,
    id_auth: Buffer | None = None,
) -> PvhLaunch:
    """Lay out a PVH launch: kernel, initrd, firmware, command line, start_info, range table.

    Populate order (which is also the range table's order): the kernel's regions as the ELF
    loader gave them, the initrd, the firmware, the command line, the start_info page, and
    the range table last, since it lists every range including its own.

    Args:
        settings: memory size, vCPUs, command line, technology.
        kernel_regions: the kernel's PT_LOAD regions (from the ELF loader), page-granular.
        entry: the PVH 32-bit entry point.
        initrd: the initrd's bytes (placed at the top of low RAM), if any.
        initrd_name: the initrd's name for provenance.
        firmware: a firmware image (placed to end at 4 GiB), if any.
        firmware_name: the firmware's name for provenance.
        id_block: (snp) the contents of ``settings.id_block`` (96 bytes), if given.
        id_auth: (snp) the contents of ``settings.id_auth`` (4096 bytes).

    Returns:
        The plan, with the launch identity of its technology.

    Raises:
        LayoutError: a region outside guest memory, overlapping another, or over the guest's
            reserved low pages or stack.
        ConfigError: no kernel regions, an entry outside the kernel, too many ranges, an ID
            block pair missing or not given for the settings.
        CheckFailed: an ID block pair that does not verify or whose policy is not the
            launch's (the firmware would refuse the launch).
    """
    if not kernel_regions:
        raise ConfigError("the kernel has no loadable segments")
    if not any(r.gpa <= entry < r.end for r in kernel_regions):
        raise ConfigError(f"the PVH entry {entry:#x} is not inside a loaded kernel segment")
    fw_size = align_up(len(firmware)) if firmware is not None else 0
    memory = MemoryMap.for_size(settings.memory, fw_size)
    low_end = next(s.end for s in memory.memslots if s.kind is MemslotKind.RAM_LOW)
    reserved_end = GUEST_STACK[1]
    for r in kernel_regions:
        if r.gpa < reserved_end:
            raise ConfigError(
                f"{r.provenance.describe()} at {r.gpa:#x} is below {reserved_end:#x}, "
                "where the launcher keeps its tables and the guest's stack"
            )
    regions: list[Region] = list(kernel_regions)
    modules = b""
    if initrd is not None:
        size = align_up(max(len(initrd), 1))
        top = min(low_end, INITRD_ADDR_MAX)
        gpa = align_down(top - size, 1 << 21) if top > size else -1
        kernel_end = max(r.end for r in kernel_regions)
        if gpa < kernel_end:
            raise ConfigError(
                f"{initrd_name}: {len(initrd):#x} bytes do not fit in low RAM above the kernel "
                f"(kernel ends at {kernel_end:#x}, low RAM at {low_end:#x})"
            )
        regions.append(
            Region(
                gpa=gpa,
                size=size,
                page_type=PageType.NORMAL,
                measured=True,
                provenance=Provenance(SourceKind.FILE, initrd_name, offset=0),
                data=initrd,
            )
        )
        modules = _MODLIST_ENTRY.pack(gpa, len(initrd), 0, 0)
    if firmware is not None:
        regions.append(
            Region(
                gpa=FOUR_GIB - fw_size,
                size=fw_size,
                page_type=PageType.NORMAL,
                measured=True,
                provenance=Provenance(SourceKind.FILE, firmware_name, offset=0),
                data=firmware,
            )
        )
    cmdline = settings.cmdline + b"\0"
    regions.append(_generated("cmdline", CMDLINE_GPA, cmdline, "kernel command line"))
    memmap = _memory_map_entries(memory)
    modlist_gpa = START_INFO_GPA + _START_INFO.size
    memmap_gpa = modlist_gpa + len(modules)
    start_info = (
        _START_INFO.pack(
            HVM_START_MAGIC,
            1,
            0,
            len(modules) // _MODLIST_ENTRY.size,
            modlist_gpa if modules else 0,
            CMDLINE_GPA,
            0,
            memmap_gpa,
            len(memmap) // _MEMMAP_ENTRY.size,
            0,
        )
        + modules
        + memmap
    )
    regions.append(_generated("start_info", START_INFO_GPA, start_info, "PVH hvm_start_info"))
    table_gpa = RANGE_TABLE_GPA
    listed = [*((r.gpa, r.size) for r in regions), (table_gpa, PAGE_SIZE)]
    if len(listed) > MAX_RANGES:
        raise ConfigError(f"{len(listed)} ranges do not fit in the range table (max {MAX_RANGES})")
    table = _TABLE_HEADER.pack(RANGE_TABLE_MAGIC, RANGE_TABLE_VERSION, len(listed)) + b"".join(
        _TABLE_ENTRY.pack(g, s) for g, s in listed
    )
    regions.append(_generated("range-table", table_gpa, table, "cvmlaunch range table"))
    for r in regions:
        if r.gpa < GUEST_STACK[1] and r.end > GUEST_STACK[0]:
            raise ConfigError(
                f"{r.provenance.describe()} overlaps the guest stack {GUEST_STACK[0]:#x}-"
                f"{GUEST_STACK[1]:#x}"
            )
    plan = Plan.of(regions, memory)
    return PvhLaunch(
        plan=plan,
        entry=entry,
        start_info_gpa=START_INFO_GPA,
        vcpus=settings.vcpus,
        tech=settings.tech,
        settings=settings,
        snp=_snp_identity(settings, id_block, id_auth),
        tdx=settings.tdx_identity if settings.tech is Technology.TDX else None,
    )


def _snp_identity(
    settings: LaunchSettings, id_block: Buffer | None, id_auth: Buffer | None
) -> SnpLaunchIdentity | None:
    """HOST_DATA and the ID block pair of an SNP launch (the launcher checks the pair's
    signatures and policy first, as the firmware will:
    :func:`cvmlaunch.launcher.pvh.load_pvh_launch`)."""
    if (id_block is None) != (settings.id_block is None) or (id_auth is None) != (
        settings.id_auth is None
    ):
        raise ConfigError(
            "the ID block and ID auth contents must come with id_block/id_auth",
            setting="id_block",
            also=("id_auth",),
        )
    if settings.tech is not Technology.SEV_SNP:
        return None
    host_data = settings.host_data or bytes(SNP_HOST_DATA_SIZE)
    if id_block is None or id_auth is None:
        return SnpLaunchIdentity(host_data)
    return SnpLaunchIdentity(host_data, bytes(id_block), bytes(id_auth))
