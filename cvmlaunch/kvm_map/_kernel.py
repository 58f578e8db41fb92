"""The system-call seam: the :class:`Kernel` protocol, the real :class:`LinuxKernel`, and
the small helpers every wrapper uses (struct buffers, one ioctl, CPUID lists, a TDX command).

Part of :mod:`cvmlaunch.kvm_map` (see its rules).
"""

from __future__ import annotations

import ctypes
import errno as errno_codes
import mmap
import os
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from cvmlaunch import _uapi
from cvmlaunch._uapi import Cap, TdxCmd
from cvmlaunch.cpuid import CpuidEntry
from cvmlaunch.errors import KvmError

#: Largest CPUID list asked for (KVM_MAX_CPUID_ENTRIES is 256).
_MAX_CPUID_ENTRIES = 4096


class Kernel(Protocol):
    """The system calls cvmlaunch makes on KVM. Failures raise ``OSError`` with an errno."""

    def open(self, path: str, flags: int) -> int:
        """``open(2)``; returns a file descriptor."""
        ...

    def close(self, fd: int) -> None:
        """``close(2)``."""
        ...

    def ioctl(self, fd: int, request: int, arg: int | bytearray) -> int:
        """``ioctl(2)`` with an integer argument or a pointer to ``arg`` (read and written)."""
        ...

    def mmap(self, fd: int, length: int) -> mmap.mmap:
        """A shared read/write mapping of ``fd`` from offset 0; ``fd`` -1 maps private
        anonymous memory (zero-filled, what a VMM gives a guest as RAM)."""
        ...


class LinuxKernel:
    """The real :class:`Kernel`: thin wrappers over :mod:`os`, :mod:`fcntl` and :mod:`mmap`."""

    def open(self, path: str, flags: int) -> int:
        """``os.open``."""
        return os.open(path, flags | os.O_CLOEXEC)

    def close(self, fd: int) -> None:
        """``os.close``."""
        os.close(fd)

    def ioctl(self, fd: int, request: int, arg: int | bytearray) -> int:
        """``fcntl.ioctl`` (a buffer argument is updated in place).

        A negative fd fails with EBADF, as the system call would (Python's fcntl refuses it
        with a ValueError before making the call).
        """
        import fcntl

        if fd < 0:
            raise OSError(errno_codes.EBADF, os.strerror(errno_codes.EBADF))
        if isinstance(arg, int):
            return int(fcntl.ioctl(fd, request, arg))
        return int(fcntl.ioctl(fd, request, arg, True))

    def mmap(self, fd: int, length: int) -> mmap.mmap:
        """``mmap.mmap(fd, length, MAP_SHARED, PROT_READ | PROT_WRITE)``; for ``fd`` -1
        ``MAP_PRIVATE | MAP_ANONYMOUS``."""
        share = mmap.MAP_PRIVATE if fd == -1 else mmap.MAP_SHARED
        return mmap.mmap(fd, length, share, mmap.PROT_READ | mmap.PROT_WRITE)


def _address(buf: bytearray | mmap.mmap) -> int:
    """The user address of a buffer (the temporary ctypes view is released at once)."""
    return ctypes.addressof(ctypes.c_char.from_buffer(buf))


_S = TypeVar("_S", bound=ctypes.Structure)


def _struct_buf(cls: type[_S]) -> tuple[bytearray, _S]:
    """A zeroed buffer for ``cls`` and a ctypes view over it."""
    buf = bytearray(ctypes.sizeof(cls))
    return buf, cls.from_buffer(buf)


class _Closer:
    """A stack of close actions run once, last first, even if some of them fail."""

    def __init__(self) -> None:
        self._actions: list[Callable[[], None]] = []

    def push(self, action: Callable[[], None]) -> None:
        self._actions.append(action)

    def close(self) -> None:
        error: BaseException | None = None
        while self._actions:
            action = self._actions.pop()
            try:
                action()
            except OSError as exc:  # re-raised after the rest are closed
                error = error or KvmError("close", errno=exc.errno)
                error.__cause__ = exc
            except BaseException as exc:
                error = error or exc
        if error is not None:
            raise error


def _ioctl(kernel: Kernel, fd: int, request: int, arg: int | bytearray, op: str) -> int:
    """One ioctl; an ``OSError`` becomes :class:`KvmError` naming ``op``."""
    try:
        return kernel.ioctl(fd, request, arg)
    except OSError as exc:
        raise KvmError(op, errno=exc.errno) from exc


def _cap_op(cap: Cap | int) -> str:
    name = cap.name if isinstance(cap, Cap) else str(int(cap))
    return f"KVM_CHECK_EXTENSION(KVM_CAP_{name})"


_CPUID_FIELDS = ("function", "index", "flags", "eax", "ebx", "ecx", "edx")


def _cpuid_from_c(e: _uapi.KvmCpuidEntry2) -> CpuidEntry:
    """Copy one ``struct kvm_cpuid_entry2`` out of C."""
    return CpuidEntry(*(int(getattr(e, f)) for f in _CPUID_FIELDS))


def _cpuid_call(
    kernel: Kernel, fd: int, request: int, op: str, nent: int = 64
) -> tuple[CpuidEntry, ...]:
    """A ``struct kvm_cpuid2`` read (GET_SUPPORTED_CPUID, GET_CPUID2), grown on E2BIG."""
    while True:
        head = ctypes.sizeof(_uapi.KvmCpuid2)
        buf = bytearray(head + nent * ctypes.sizeof(_uapi.KvmCpuidEntry2))
        header = _uapi.KvmCpuid2.from_buffer(buf)
        header.nent = nent
        try:
            kernel.ioctl(fd, request, buf)
        except OSError as exc:
            if exc.errno == errno_codes.E2BIG and nent < 4096:
                nent *= 2
                continue
            raise KvmError(op, errno=exc.errno) from exc
        entries = (_uapi.KvmCpuidEntry2 * nent).from_buffer(buf, head)
        return tuple(_cpuid_from_c(e) for e in entries[: min(int(header.nent), nent)])


def _cpuid_array(entries: Sequence[CpuidEntry]) -> ctypes.Array[_uapi.KvmCpuidEntry2]:
    arr = (_uapi.KvmCpuidEntry2 * len(entries))()
    for i, e in enumerate(entries):
        for f in _CPUID_FIELDS:
            setattr(arr[i], f, getattr(e, f))
    return arr


def _tdx_op(kernel: Kernel, fd: int, cmd: TdxCmd, flags: int, data: int) -> None:
    """``KVM_MEMORY_ENCRYPT_OP`` with a ``kvm_tdx_cmd``; ``hw_error`` is the firmware error."""
    buf, c = _struct_buf(_uapi.KvmTdxCmd)
    c.id, c.flags, c.data = cmd, flags, data
    try:
        kernel.ioctl(fd, _uapi.KVM_MEMORY_ENCRYPT_OP, buf)
    except OSError as exc:
        raise KvmError(
            f"KVM_TDX_{cmd.name}", errno=exc.errno, fw_error=int(c.hw_error) or None
        ) from exc
