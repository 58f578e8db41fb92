"""Port I/O devices attached to a VM (:class:`PortBus`): the vCPU run loops hand them IO exits.

Part of :mod:`cvmlaunch.kvm_map` (see its rules). A device is any object with the
:class:`PortDevice` methods (e.g. :class:`cvmlaunch.fw_cfg.FwCfg`, which the launcher builds and
passes in; this package never imports it). Devices that do DMA reach guest memory through
:class:`VmRam`: the VM's memslot mappings (for a confidential guest, its shared pages, where
the firmware puts its DMA buffers).

Rule: one lock per bus serializes the devices (vCPU threads share them, as QEMU's big lock
does); a device sees whole IO exits (``count`` repetitions of ``size`` bytes).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Protocol

from cvmlaunch.kvm_map.vcpu import IoDirection, IoExit, Vcpu, VcpuExit
from cvmlaunch.kvm_map.vm import Vm

__all__ = ["GuestRam", "PortBus", "PortDevice", "VmRam"]


class GuestRam(Protocol):
    """Guest-physical memory a device reads and writes (``ValueError``: no memory there)."""

    def read(self, gpa: int, size: int) -> bytes:
        """``size`` bytes at ``gpa``."""
        ...

    def write(self, gpa: int, data: bytes) -> None:
        """Store ``data`` at ``gpa``."""
        ...


class PortDevice(Protocol):
    """A device on the I/O port bus."""

    def handles(self, port: int) -> bool:
        """Whether ``port`` is the device's."""
        ...

    def io_in(self, port: int, size: int, count: int = 1) -> bytes:
        """What ``count`` INs of ``size`` bytes at ``port`` read (``size * count`` bytes)."""
        ...

    def io_out(self, port: int, size: int, data: bytes, memory: GuestRam) -> None:
        """``len(data) // size`` OUTs of ``size`` bytes at ``port``."""
        ...


class VmRam:
    """A VM's memory through its memslot mappings, as :class:`GuestRam` (ranges may cross
    adjacent memslots; a byte outside every memslot raises ``ValueError``)."""

    def __init__(self, vm: Vm) -> None:
        self.vm = vm

    def _pieces(self, gpa: int, size: int) -> list[tuple[int, int]]:
        pieces, at, end = [], gpa, gpa + size
        while at < end:
            mem = next((m for m in self.vm.memory if m.gpa <= at < m.end), None)
            if mem is None:
                raise ValueError(f"guest-physical {at:#x} is in no memslot")
            n = min(end, mem.end) - at
            pieces.append((at, n))
            at += n
        return pieces

    def read(self, gpa: int, size: int) -> bytes:
        """``size`` bytes at ``gpa``."""
        return b"".join(self.vm.read(at, n) for at, n in self._pieces(gpa, size))

    def write(self, gpa: int, data: bytes) -> None:
        """Store ``data`` at ``gpa``."""
        view, done = memoryview(data), 0
        for at, n in self._pieces(gpa, len(data)):
            self.vm.write(at, view[done : done + n])
            done += n


class PortBus:
    """The devices of a VM's I/O ports, served from the vCPU run loops.

    Args:
        vm: the VM whose memory the devices' DMA reaches.
        devices: the devices, asked in order which one owns a port.
    """

    def __init__(self, vm: Vm, devices: Iterable[PortDevice] = ()) -> None:
        self.memory = VmRam(vm)
        self.devices = tuple(devices)
        self._lock = threading.Lock()

    def serve(self, vcpu: Vcpu, exit_: VcpuExit) -> bool:
        """Hand ``exit_`` to the device owning its port, if it is port I/O to one.

        Returns:
            Whether a device took it (an IN's data is then given to ``vcpu``).
        """
        if not isinstance(exit_, IoExit):
            return False
        device = next((d for d in self.devices if d.handles(exit_.port)), None)
        if device is None:
            return False
        with self._lock:
            if exit_.direction is IoDirection.OUT:
                device.io_out(exit_.port, exit_.size, exit_.data, self.memory)
            else:
                vcpu.complete_io_in(device.io_in(exit_.port, exit_.size, exit_.count))
        return True
