"""The populate engine of plain VMs: copy through the memslot mapping, then pre-fault.

Part of :mod:`cvmlaunch.kvm_map` (see its rules).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from cvmlaunch import digests
from cvmlaunch._uapi import Cap
from cvmlaunch.kvm_map._engine import (
    HASH_OFFLOAD_MIN,
    LaunchLog,
    _copy_region,
    _drive,
    _PreFault,
    _Recorder,
    _where,
)
from cvmlaunch.kvm_map.vcpu import Vcpu
from cvmlaunch.kvm_map.vm import Vm
from cvmlaunch.layout import Plan, Region
from cvmlaunch.log_entry import LogEntry, LogOp, zero_by_construction


def populate_plain(
    vm: Vm,
    plan: Plan,
    vcpu: Vcpu | None = None,
    *,
    on_record: Callable[[LogEntry], None] | None = None,
) -> LaunchLog:
    """Populate a plain VM (type 0, or SW_PROTECTED with shared memory).

    Each memory region is copied through its memslot's mapping, whichever the VM's memory
    backend (the guest_memfd's mmap or anonymous memory; one ``plain.copy`` record per
    region, the same on both), then pre-faulted with ``KVM_PRE_FAULT_MEMORY`` on
    ``vcpu`` where the VM offers it (one ``plain.pre_fault`` record per call; pre-faulting
    never copies or measures). Where it is not offered, a note says so.

    Raises:
        ValueError: the plan has VMSA regions, or a region lies outside the VM's memslots
            (plans are built for their VM: a bug).
        KvmError: a pre-fault call failed.
    """
    if plan.vmsa_regions:
        raise ValueError("a plain VM has no VMSA regions to populate")
    rec = _Recorder(on_record)
    hashes: dict[int, bytes | None] = {}
    # The log's SHA-384 of a large region (digests.range_sha384, what the record builder
    # computes) runs on a second thread while this one copies: hashlib releases the GIL for
    # large buffers, so the two overlap on two cores. A region the plan gives no bytes is not
    # hashed at all: its record carries the zero marker.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cvmlaunch-hash") as pool:
        for index, region in enumerate(plan.memory_regions):
            mem = vm.memory_at(region.gpa, region.size)
            known: bytes | None = None
            if region.size >= HASH_OFFLOAD_MIN and not zero_by_construction(
                memoryview(region.data).nbytes
            ):
                pending = pool.submit(digests.range_sha384, region.data, region.size)
                _copy_region(mem, region)
                known = pending.result()
            else:
                _copy_region(mem, region)
            rec.add(
                LogOp.PLAIN_COPY,
                region,
                region.gpa,
                region.size,
                per_page=False,
                content_sha384=known,
            )
            hashes[index] = rec.entries[-1].content_sha384
    if not vm.check_extension(Cap.PRE_FAULT_MEMORY):
        rec.notes.append(
            "KVM_PRE_FAULT_MEMORY: not offered by this host (KVM_CAP_PRE_FAULT_MEMORY is 0); "
            "the guest faults its memory in on first access"
        )
    elif plan.memory_regions:
        if vcpu is None:
            vcpu = vm.vcpus[0] if vm.vcpus else vm.create_vcpu()
        for index, region in enumerate(plan.memory_regions):
            req = _PreFault(vcpu, region.gpa, region.size)

            def prefaulted(
                gpa: int, size: int, region: Region = region, whole: bytes | None = hashes[index]
            ) -> None:
                # A call that covered the whole region reuses the copy record's hash.
                known = whole if (gpa, size) == (region.gpa, region.size) else None
                rec.add(
                    LogOp.PRE_FAULT,
                    dataclasses.replace(region, measured=False),
                    gpa,
                    size,
                    per_page=False,
                    content_sha384=known,
                )

            _drive(req, prefaulted, _where(region))
    return rec.log()
