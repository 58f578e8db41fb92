"""The KVM edge: VMs, vCPUs, memslots (guest_memfd or anonymous memory), and the populate engines.

Rule 1: this is the only package that makes KVM system calls, and it makes them only through a
:class:`Kernel` (``open``, ``close``, ``ioctl``, ``mmap``). :class:`LinuxKernel` is the real one;
tests inject a fake through :meth:`Kvm.open` / :meth:`Vm.open`. Nothing here asks which kernel
it runs against.

Rule 2: every file descriptor and mapping belongs to an object with a context manager
(:class:`Kvm`, :class:`Vm`, which owns its :class:`Vcpu` and :class:`GuestMemory` objects);
``close()`` is idempotent, and every resource is registered with its owner the moment it
exists, so no error path leaks.

Rule 3: one typed wrapper per ioctl. A failure raises :class:`~cvmlaunch.errors.KvmError`
(op, errno, firmware error) ``from`` the ``OSError``; wrappers never retry.

Rule 4: every populate call (PRE_FAULT_MEMORY, TDX INIT_MEM_REGION, SNP LAUNCH_UPDATE) goes
through the one resume loop :func:`~cvmlaunch.kvm_map._engine._drive`: the kernel rewrites the
request to the range still to do, and the loop resumes from exactly there (kvm-uapi.md §2). Each
call that made progress, whole or partial, appends a :class:`~cvmlaunch.log_entry.LogEntry`: the
log is what was done, not what was planned. Records are built by
:func:`cvmlaunch.digests.entry_for_range`, the builder of the prediction's records (so both hash
a range with the same code). This package never imports :mod:`cvmlaunch.measure`; the launcher
(:mod:`cvmlaunch.launcher`) replays the log.

Rule 5: asking for a VM type the host lacks raises :class:`~cvmlaunch.errors.KvmUnsupported`
before any VM is created.

The parts, each a module of this package (their public names are this package's):

====================  =====================================================================
``_kernel``           the system-call seam (:class:`Kernel`, :class:`LinuxKernel`), helpers
``caps``              capabilities (:class:`KvmCaps`) and the memory backend choice
``vm``                the system handle (:class:`Kvm`), VMs (:class:`Vm`) and their memory
``vcpu``              vCPUs (:class:`Vcpu`): registers, CPUID, the run loop, decoded exits
``_engine``           the resume loop, the log recorder, staging, private memory
``plain``             the populate engine of plain VMs
``tdx``               TDX: populate (INIT_MEM_REGION) and the launch sequence
``snp``               SEV-SNP: populate (LAUNCH_UPDATE) and the launch sequence
``dispatch``          :func:`populate`: the engine the VM type calls for
``ports``             port I/O devices (:class:`PortBus`) the run loops serve, e.g. fw_cfg
====================  =====================================================================
"""

from __future__ import annotations

from cvmlaunch._uapi import Cap, ExitReason, GuestMemfdFlag, MemoryAttribute, VmType
from cvmlaunch.cpuid import CpuidEntry
from cvmlaunch.kvm_map._engine import HASH_OFFLOAD_MIN, MAX_STALLS, STAGING_PAGES, LaunchLog
from cvmlaunch.kvm_map._kernel import Kernel, LinuxKernel
from cvmlaunch.kvm_map.caps import (
    PLAIN_GUEST_MEMFD_FLAGS,
    VM_TYPE,
    KvmCaps,
    MemoryBackend,
    MemoryBackendChoice,
    choose_memory_backend,
)
from cvmlaunch.kvm_map.dispatch import populate
from cvmlaunch.kvm_map.plain import populate_plain
from cvmlaunch.kvm_map.ports import PortBus, PortDevice, VmRam
from cvmlaunch.kvm_map.snp import (
    GHCB_VERSION,
    SNP_ACTIVE,
    SNP_POLICY_MBO,
    SNP_POLICY_SMT,
    SnpStart,
    launch_snp,
    populate_snp,
)
from cvmlaunch.kvm_map.tdx import (
    SPLIT_IRQCHIP_PINS,
    TDX_APIC_BUS_CYCLES_NS,
    launch_tdx,
    populate_tdx,
)
from cvmlaunch.kvm_map.vcpu import (
    KICK_SIGNAL,
    SERIAL_PORT,
    FailEntryExit,
    HltExit,
    HypercallExit,
    InternalErrorExit,
    IoDirection,
    IoExit,
    MemoryFaultExit,
    MmioExit,
    OtherExit,
    Regs,
    SerialRun,
    ShutdownExit,
    Sregs,
    SystemEventExit,
    TimeoutExit,
    Vcpu,
    VcpuExit,
    install_kick_handler,
)
from cvmlaunch.kvm_map.vm import (
    KVM_PATH,
    SEV_PATH,
    TDX_INIT_VM_RETRIES,
    GuestMemory,
    Kvm,
    SnpFinish,
    TdxCapabilities,
    Vm,
    serve_private_memory,
)

__all__ = [
    "GHCB_VERSION",
    "HASH_OFFLOAD_MIN",
    "KICK_SIGNAL",
    "KVM_PATH",
    "MAX_STALLS",
    "PLAIN_GUEST_MEMFD_FLAGS",
    "SERIAL_PORT",
    "SEV_PATH",
    "SNP_ACTIVE",
    "SNP_POLICY_MBO",
    "SNP_POLICY_SMT",
    "SPLIT_IRQCHIP_PINS",
    "STAGING_PAGES",
    "TDX_APIC_BUS_CYCLES_NS",
    "TDX_INIT_VM_RETRIES",
    "VM_TYPE",
    "Cap",
    "CpuidEntry",
    "ExitReason",
    "FailEntryExit",
    "GuestMemfdFlag",
    "GuestMemory",
    "HltExit",
    "HypercallExit",
    "InternalErrorExit",
    "IoDirection",
    "IoExit",
    "Kernel",
    "Kvm",
    "KvmCaps",
    "LaunchLog",
    "LinuxKernel",
    "MemoryAttribute",
    "MemoryBackend",
    "MemoryBackendChoice",
    "MemoryFaultExit",
    "MmioExit",
    "OtherExit",
    "PortBus",
    "PortDevice",
    "Regs",
    "SerialRun",
    "ShutdownExit",
    "SnpFinish",
    "SnpStart",
    "Sregs",
    "SystemEventExit",
    "TdxCapabilities",
    "TimeoutExit",
    "Vcpu",
    "VcpuExit",
    "Vm",
    "VmRam",
    "VmType",
    "choose_memory_backend",
    "install_kick_handler",
    "launch_snp",
    "launch_tdx",
    "populate",
    "populate_plain",
    "populate_snp",
    "populate_tdx",
    "serve_private_memory",
]
