"""What the host's KVM offers (:class:`KvmCaps`), the memory backend a VM gets from it, and the
VM type of each technology (:data:`VM_TYPE`, the one place that mapping lives).

Part of :mod:`cvmlaunch.kvm_map` (see its rules).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from cvmlaunch._uapi import GuestMemfdFlag, MemoryAttribute, VmType
from cvmlaunch.errors import ConfigError, KvmUnsupported
from cvmlaunch.technology import Technology

#: The KVM VM type a launch of each technology creates (the technologies cvmlaunch launches).
VM_TYPE: Mapping[Technology, VmType] = MappingProxyType(
    {
        Technology.PLAIN: VmType.DEFAULT,
        Technology.SEV_SNP: VmType.SNP,
        Technology.TDX: VmType.TDX,
    }
)


@dataclass(frozen=True, slots=True)
class KvmCaps:
    """What this host's KVM offers (``KVM_CHECK_EXTENSION`` on the system fd).

    Args:
        api_version: ``KVM_GET_API_VERSION`` (12).
        vm_types: ``KVM_CAP_VM_TYPES``, a mask of ``1 << VmType``.
        guest_memfd: ``KVM_CAP_GUEST_MEMFD``.
        guest_memfd_flags: ``KVM_CAP_GUEST_MEMFD_FLAGS`` (for the default VM type).
        user_memory2: ``KVM_CAP_USER_MEMORY2``.
        memory_attributes: ``KVM_CAP_MEMORY_ATTRIBUTES``, the mask of settable attributes.
        pre_fault_memory: ``KVM_CAP_PRE_FAULT_MEMORY``.
        memory_fault_info: ``KVM_CAP_MEMORY_FAULT_INFO``.
        max_vcpus: ``KVM_CAP_MAX_VCPUS``.
        nr_memslots: ``KVM_CAP_NR_MEMSLOTS``.
        vcpu_mmap_size: ``KVM_GET_VCPU_MMAP_SIZE``.
        user_memory: ``KVM_CAP_USER_MEMORY`` (``KVM_SET_USER_MEMORY_REGION``; every KVM).
    """

    api_version: int
    vm_types: int
    guest_memfd: bool
    guest_memfd_flags: int
    user_memory2: bool
    memory_attributes: int
    pre_fault_memory: bool
    memory_fault_info: bool
    max_vcpus: int
    nr_memslots: int
    vcpu_mmap_size: int
    user_memory: bool = True

    def supports(self, vm_type: VmType) -> bool:
        """Whether ``KVM_CREATE_VM(vm_type)`` is offered."""
        return bool(self.vm_types & (1 << vm_type))

    @property
    def tdx(self) -> bool:
        """TDX guests (``KVM_X86_TDX_VM``)."""
        return self.supports(VmType.TDX)

    @property
    def snp(self) -> bool:
        """SEV-SNP guests (``KVM_X86_SNP_VM``)."""
        return self.supports(VmType.SNP)

    def require(
        self, vm_type: VmType, memory_backend: str | MemoryBackend = "auto"
    ) -> MemoryBackendChoice:
        """Check that a VM of ``vm_type`` can be built here, and choose its memory backend
        (:func:`choose_memory_backend`).

        Raises:
            KvmUnsupported: naming the first missing capability.
            ConfigError: a backend the VM type cannot use, or an unknown backend name.
        """
        if vm_type is not VmType.DEFAULT and not self.supports(vm_type):
            raise KvmUnsupported(
                f"KVM_X86_{vm_type.name}_VM",
                detail=f"KVM_CAP_VM_TYPES is {self.vm_types:#x}, bit {int(vm_type)} is clear",
            )
        return choose_memory_backend(self, vm_type, memory_backend)

    def missing(self) -> tuple[str, ...]:
        """The memory capabilities this host lacks, of guest_memfd, its mmap flag, pre-fault
        and memory attributes (names as the kernel headers spell them)."""
        out = []
        if not self.guest_memfd:
            out.append("KVM_CAP_GUEST_MEMFD")
        if not self.guest_memfd_flags & GuestMemfdFlag.MMAP:
            out.append("GUEST_MEMFD_FLAG_MMAP")
        if not self.guest_memfd_flags & GuestMemfdFlag.INIT_SHARED:
            out.append("GUEST_MEMFD_FLAG_INIT_SHARED")
        if not self.pre_fault_memory:
            out.append("KVM_CAP_PRE_FAULT_MEMORY")
        if not self.memory_attributes:
            out.append("KVM_CAP_MEMORY_ATTRIBUTES")
        if not self.user_memory2:
            out.append("KVM_CAP_USER_MEMORY2")
        return tuple(out)

    def as_dict(self) -> dict[str, int | bool | str | list[str]]:
        """A JSON-ready view, with the VM type names spelled out, the capabilities this host
        lacks (:meth:`missing`), and the memory backend a plain launch would use and why."""
        out: dict[str, int | bool | str | list[str]] = {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self)
        }
        out["vm_type_names"] = [t.name for t in VmType if self.supports(t)]
        out["tdx"] = self.tdx
        out["snp"] = self.snp
        out["missing"] = list(self.missing())
        try:
            choice = choose_memory_backend(self, VmType.DEFAULT)
        except KvmUnsupported as exc:
            out["plain_memory_backend"] = "none"
            out["plain_memory_backend_reason"] = str(exc)
        else:
            out["plain_memory_backend"] = choice.backend.value
            out["plain_memory_backend_reason"] = choice.reason
        return out


# ---------------------------------------------------------------- memory backends


class MemoryBackend(enum.StrEnum):
    """Where a VM's memslots get their memory (``launch --memory-backend``).

    ``GUEST_MEMFD``: a guest_memfd per memslot (``KVM_MEM_GUEST_MEMFD``); a plain VM maps it
    with ``GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED`` and ``userspace_addr`` points
    at that mapping. ``ANONYMOUS``: private anonymous memory bound with
    ``KVM_SET_USER_MEMORY_REGION2`` (flags 0), or ``KVM_SET_USER_MEMORY_REGION`` where
    ``KVM_CAP_USER_MEMORY2`` is absent. Only plain VMs can use it: SNP, TDX and SW_PROTECTED
    guests keep private memory, which only guest_memfd holds.
    """

    GUEST_MEMFD = "guest-memfd"
    ANONYMOUS = "anonymous"


#: The guest_memfd flags a plain VM's guest_memfd memslot needs: populate copies through the
#: guest_memfd's own mapping, and the guest reads the same (shared) pages.
PLAIN_GUEST_MEMFD_FLAGS = GuestMemfdFlag.MMAP | GuestMemfdFlag.INIT_SHARED


@dataclass(frozen=True, slots=True)
class MemoryBackendChoice:
    """The memory backend a VM uses, and why.

    Args:
        backend: the backend.
        requested: what was asked: ``auto``, ``guest-memfd`` or ``anonymous``.
        missing: what guest_memfd would need for this VM type that the host lacks (empty:
            guest_memfd is offered).
    """

    backend: MemoryBackend
    requested: str
    missing: tuple[str, ...] = ()

    @property
    def fallback(self) -> bool:
        """``auto`` took anonymous memory because guest_memfd is not offered."""
        return self.requested == "auto" and self.backend is MemoryBackend.ANONYMOUS

    @property
    def reason(self) -> str:
        """One line: the backend and why it was chosen."""
        if self.backend is MemoryBackend.GUEST_MEMFD:
            why = "asked for" if self.requested != "auto" else "offered by this host's KVM"
            return f"memory backend: guest-memfd ({why})"
        if self.missing and self.requested == "auto":
            return (
                "memory backend: anonymous memory, as this host's KVM does not offer "
                f"{' or '.join(self.missing)} (guest_memfd for a plain VM needs it)"
            )
        return "memory backend: anonymous memory (asked for)"


def _guest_memfd_missing(caps: KvmCaps, vm_type: VmType) -> tuple[str, ...]:
    """What guest_memfd memslots for ``vm_type`` need that ``caps`` lacks."""
    out = []
    if not caps.guest_memfd:
        out.append("KVM_CAP_GUEST_MEMFD")
    if not caps.user_memory2:
        out.append("KVM_CAP_USER_MEMORY2")
    if vm_type is VmType.DEFAULT:
        for flag in PLAIN_GUEST_MEMFD_FLAGS:  # MMAP, then INIT_SHARED
            if caps.guest_memfd and not caps.guest_memfd_flags & flag:
                out.append(f"GUEST_MEMFD_FLAG_{flag.name}")
    elif not caps.memory_attributes & MemoryAttribute.PRIVATE:
        out.append("KVM_MEMORY_ATTRIBUTE_PRIVATE")
    return tuple(out)


def choose_memory_backend(
    caps: KvmCaps, vm_type: VmType, requested: str | MemoryBackend = "auto"
) -> MemoryBackendChoice:
    """The memory backend for a VM of ``vm_type`` on a host with ``caps`` (pure: no kernel).

    ``auto``: guest_memfd where the host offers it for the VM type (for a plain VM: with
    ``GUEST_MEMFD_FLAG_MMAP`` and ``GUEST_MEMFD_FLAG_INIT_SHARED``), else anonymous memory
    (plain VMs only). ``guest-memfd`` / ``anonymous``: that backend, or an error.

    Raises:
        KvmUnsupported: the backend asked for (or, for SNP/TDX/SW_PROTECTED, guest_memfd)
            needs a capability the host lacks; the first missing one is named.
        ConfigError: ``anonymous`` for a VM type with private memory, or an unknown name.
    """
    text = str(requested.value if isinstance(requested, MemoryBackend) else requested)
    if text not in ("auto", *(b.value for b in MemoryBackend)):
        raise ConfigError(
            f"memory_backend {text!r}: expected auto, guest-memfd or anonymous",
            setting="memory_backend",
        )
    private = vm_type is not VmType.DEFAULT
    missing = _guest_memfd_missing(caps, vm_type)
    if text == MemoryBackend.ANONYMOUS:
        if private:
            raise ConfigError(
                f"memory_backend anonymous: {vm_type.name} guests need guest_memfd "
                "(their private memory lives only there)",
                setting="memory_backend",
            )
        if not (caps.user_memory2 or caps.user_memory):
            raise KvmUnsupported("KVM_CAP_USER_MEMORY")
        return MemoryBackendChoice(MemoryBackend.ANONYMOUS, text, missing)
    if not missing:
        return MemoryBackendChoice(MemoryBackend.GUEST_MEMFD, text)
    if text == MemoryBackend.GUEST_MEMFD or private:
        detail = ""
        if missing[0].startswith("GUEST_MEMFD_FLAG_"):
            detail = f"KVM_CAP_GUEST_MEMFD_FLAGS is {caps.guest_memfd_flags:#x}"
        elif missing[0] == "KVM_MEMORY_ATTRIBUTE_PRIVATE":
            detail = f"KVM_CAP_MEMORY_ATTRIBUTES is {caps.memory_attributes:#x}"
        raise KvmUnsupported(missing[0], detail=detail)
    if not (caps.user_memory2 or caps.user_memory):
        raise KvmUnsupported("KVM_CAP_USER_MEMORY")
    return MemoryBackendChoice(MemoryBackend.ANONYMOUS, text, missing)
