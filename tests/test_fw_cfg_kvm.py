"""The fw_cfg device model (cvmlaunch.fw_cfg) served to a real guest on the host's /dev/kvm
through the vCPU run loop (cvmlaunch.kvm_map.PortBus) (marker ``kvm``: runs wherever /dev/kvm
opens, skipped only naming it; once per memory backend the host's KVM_CHECK_EXTENSION offers).

The guest reads the signature, the file directory and a kernel item through the selector and
data ports (``rep insb``) and through DMA (it writes the ``FWCfgDmaAccess`` structures itself,
then their address, big endian, high half first), all into its own memory; the test reads
that memory back and compares it with the item bytes.
"""

from __future__ import annotations

import os

import pytest

from cvmlaunch.fw_cfg import FwCfg, Item
from cvmlaunch.kvm_map import HltExit, PortBus, Vm, populate
from cvmlaunch.layout import PageType, Plan, Provenance, Region, SourceKind
from cvmlaunch.memory_map import MemoryMap

pytestmark = pytest.mark.kvm

# 32-bit flat code at 0x1000, assembled with GNU as --32 from:
#   mov $0x510,%dx; xor %eax,%eax; out %ax,%dx            select SIGNATURE
#   mov $0x511,%dx; mov $0x8000,%edi; mov $4,%ecx; rep insb        -> 0x8000
#   mov $0x510,%dx; mov $0x19,%ax; out %ax,%dx            select FILE_DIR
#   mov $0x511,%dx; mov $0x8100,%edi; mov $0x100,%ecx; rep insb    -> 0x8100
#   mov $0x510,%dx; mov $0x08,%ax; out %ax,%dx            select KERNEL_SIZE
#   mov $0x511,%dx; mov $0x8200,%edi; mov $4,%ecx; rep insb        -> 0x8200
#   mov $0x510,%dx; mov $0x11,%ax; out %ax,%dx            select KERNEL_DATA
#   mov $0x511,%dx; mov $0x10000,%edi; mov 0x8200,%ecx; rep insb   -> 0x10000
#   movl $0x0a001100,0x9000        control: be32 (0x11 << 16 | SELECT | READ)
#   mov 0x8200,%eax; bswap %eax; mov %eax,0x9004           length: be32 KERNEL_SIZE
#   movl $0,0x9008; movl $0x00000400,0x900c                address: be64 0x40000
#   mov $0x514,%dx; xor %eax,%eax; out %eax,%dx            DMA address high half (0)
#   mov $0x518,%dx; mov $0x00900000,%eax; out %eax,%dx     low half be32 0x9000: go
#   movl $0x0a001900,0x9010        control: be32 (0x19 << 16 | SELECT | READ)
#   movl $0x00010000,0x9014        length: be32 0x100
#   movl $0,0x9018; movl $0x00840000,0x901c                address: be64 0x8400
#   mov $0x514,%dx; xor %eax,%eax; out %eax,%dx
#   mov $0x518,%dx; mov $0x10900000,%eax; out %eax,%dx     low half be32 0x9010: go
#   hlt
GUEST = bytes.fromhex(
    "66ba1005 31c0 66ef 66ba1105 bf00800000 b904000000 f36c 66ba1005 66b81900 66ef "
    "66ba1105 bf00810000 b900010000 f36c 66ba1005 66b80800 66ef 66ba1105 bf00820000 "
    "b904000000 f36c 66ba1005 66b81100 66ef 66ba1105 bf00000100 8b0d00820000 f36c "
    "c705009000000011000a a100820000 0fc8 a304900000 c7050890000000000000 "
    "c7050c90000000040000 66ba1405 31c0 ef 66ba1805 b800009000 ef "
    "c705109000000019000a c7051490000000000100 c7051890000000000000 "
    "c7051c90000000008400 66ba1405 31c0 ef 66ba1805 b800009010 ef f4 ".replace(" ", "")
)


def test_a_guest_reads_fw_cfg_through_ports_and_dma(memory_backend: str) -> None:
    assert len(GUEST) == 220
    kernel = os.urandom(0x3000 + 123)
    device = FwCfg(
        {Item.KERNEL_SIZE: len(kernel).to_bytes(4, "little"), Item.KERNEL_DATA: kernel},
        {"etc/boot/kernel": kernel, "opt/cvmlaunch/note": b"hello"},
    )
    directory = device.item(Item.FILE_DIR)
    assert len(directory) == 4 + 2 * 64
    memory = MemoryMap.for_size(1 << 20)
    code = Region(
        0x1000, 0x1000, PageType.NORMAL, True, Provenance(SourceKind.GENERATED, "fw_cfg"), GUEST
    )
    with Vm.open(memory_backend=memory_backend) as vm:
        vm.map_memory(memory)
        vcpu = vm.create_vcpu()
        populate(vm, Plan.of([code], memory))
        vcpu.setup_protected_mode(0x1000)
        result = vcpu.run_serial(10, ports=PortBus(vm, [device]))
        assert result.exit == HltExit()
        assert result.output == b""
        # through the ports
        assert vm.read(0x8000, 4) == b"QEMU"
        assert vm.read(0x8100, 0x100) == directory + bytes(0x100 - len(directory))
        assert vm.read(0x8200, 4) == len(kernel).to_bytes(4, "little")
        assert vm.read(0x10000, len(kernel) + 16) == kernel + bytes(16)
        # through DMA: the bytes, and the control words written back as 0 (no error)
        assert vm.read(0x40000, len(kernel) + 16) == kernel + bytes(16)
        assert vm.read(0x8400, 0x100) == directory + bytes(0x100 - len(directory))
        assert vm.read(0x9000, 4) == bytes(4)
        assert vm.read(0x9010, 4) == bytes(4)
        assert vm.read(0x9004, 4) == len(kernel).to_bytes(4, "big")
        # DMA reaches guest memory through the memslots; past them is the device's error bit
        ram = PortBus(vm).memory
        assert ram.read(0xFFFFE, 2) == vm.read(0xFFFFE, 2)
        with pytest.raises(ValueError, match="in no memslot"):
            ram.read(0xFFFFF, 2)
