"""The Python mirror of the KVM ABI (cvmlaunch._uapi) against the C headers.

A C program is generated from ``_uapi``'s own tables (every ioctl number, constant, struct size
and field offset), compiled against the kernel uAPI headers and run; its output must equal the
Python values. Headers: ``$CVMLAUNCH_KERNEL_HEADERS`` (an ``include`` directory), else the
shared Linux 7.2 headers next to the repository, else the system headers if they are new enough.
The test skips only when there is no C compiler or no suitable headers, and says which.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from cvmlaunch import _uapi
from tests.conftest import REPO


def _header_dirs() -> list[Path]:
    env = os.environ.get("CVMLAUNCH_KERNEL_HEADERS")
    if env:
        return [Path(env)]
    # ../shared from the repository root (from a worktree under /work/wt, two levels up).
    shared = [p / "shared" / "kernel-headers" / "linux-7.2" / "include" for p in REPO.parents]
    return [*shared[:2], Path("/usr/include")]


def _suitable(include: Path) -> bool:
    kvm_h = include / "linux" / "kvm.h"
    return kvm_h.is_file() and "KVM_CAP_GUEST_MEMFD_FLAGS" in kvm_h.read_text(errors="replace")


def _compiler() -> str | None:
    for cc in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if cc and shutil.which(cc):
            return cc
    return None


def _fields(cls: type[ctypes.Structure] | type[ctypes.Union]) -> list[str]:
    return [name for name, *_ in cls._fields_]


def _program() -> tuple[str, dict[str, int]]:
    """The C source and the values Python expects for each printed line."""
    lines: list[str] = []
    expected: dict[str, int] = {}

    def emit(key: str, c_expr: str, value: int) -> None:
        lines.append(f'    printf("%s %llu\\n", "{key}", (unsigned long long)({c_expr}));')
        expected[key] = value

    for name, number in _uapi.IOCTLS.items():
        emit(name, name, number)
    for name, value in _uapi.CONSTANTS.items():
        emit(name, name, value)
    for cname, cls in _uapi.STRUCTS.items():
        emit(f"sizeof({cname})", f"sizeof(struct {cname})", ctypes.sizeof(cls))
        if cls is _uapi.KvmRun:
            continue  # its exit union is anonymous in C; see KVM_RUN_MEMBERS
        for field in _fields(cls):
            emit(
                f"{cname}.{field}",
                f"offsetof(struct {cname}, {field})",
                getattr(cls, field).offset,
            )
    for member, offset in _uapi.KVM_RUN_MEMBERS.items():
        emit(f"kvm_run.{member}", f"offsetof(struct kvm_run, {member})", offset)
    source = (
        "#include <stddef.h>\n#include <stdio.h>\n#include <linux/kvm.h>\n"
        "int main(void) {\n" + "\n".join(lines) + "\n    return 0;\n}\n"
    )
    return source, expected


def test_uapi_matches_kernel_headers(tmp_path: Path) -> None:
    cc = _compiler()
    if cc is None:
        pytest.skip("no C compiler (cc, gcc or clang) on PATH")
    candidates = _header_dirs()
    include = next((d for d in candidates if _suitable(d)), None)
    if include is None:
        pytest.skip(
            "no kernel headers with KVM_CAP_GUEST_MEMFD_FLAGS in "
            f"{[str(d) for d in candidates]} (set CVMLAUNCH_KERNEL_HEADERS)"
        )
    source, expected = _program()
    (tmp_path / "abi.c").write_text(source)
    binary = tmp_path / "abi"
    subprocess.run(
        [cc, "-std=gnu11", "-I", str(include), "-o", str(binary), str(tmp_path / "abi.c")],
        check=True,
        capture_output=True,
    )
    out = subprocess.run([str(binary)], check=True, capture_output=True, text=True).stdout
    actual = {k: int(v) for k, v in (line.split() for line in out.splitlines())}
    mismatches = {k: (v, actual.get(k)) for k, v in expected.items() if actual.get(k) != v}
    assert mismatches == {}
    # The anchors the research note measured, so the comparison itself cannot be vacuous.
    assert actual["KVM_CREATE_GUEST_MEMFD"] == 0xC040AED4
    assert actual["sizeof(kvm_userspace_memory_region2)"] == 160
    assert actual["kvm_userspace_memory_region2.guest_memfd"] == 40
    assert actual["kvm_sev_snp_launch_finish.host_data"] == 19
    assert len(actual) > 250


def test_both_memslot_calls_are_in_the_checked_tables() -> None:
    """The anonymous backend binds memory with KVM_SET_USER_MEMORY_REGION2 (flags 0) or,
    without KVM_CAP_USER_MEMORY2, KVM_SET_USER_MEMORY_REGION: both calls, both structs and
    both capabilities are in the tables the header test above compiles and compares. The
    numbers are kvm.h's ``_IOW(KVMIO, 0x46, struct kvm_userspace_memory_region)`` (32 bytes)
    and ``_IOW(KVMIO, 0x49, struct kvm_userspace_memory_region2)`` (160 bytes), by hand."""
    iow = 1 << 30  # _IOC_WRITE << _IOC_DIRSHIFT

    assert _uapi.IOCTLS["KVM_SET_USER_MEMORY_REGION"] == iow | 32 << 16 | 0xAE << 8 | 0x46
    assert _uapi.IOCTLS["KVM_SET_USER_MEMORY_REGION2"] == iow | 160 << 16 | 0xAE << 8 | 0x49
    assert _uapi.STRUCTS["kvm_userspace_memory_region"] is _uapi.KvmUserspaceMemoryRegion
    assert _fields(_uapi.KvmUserspaceMemoryRegion) == [
        "slot",
        "flags",
        "guest_phys_addr",
        "memory_size",
        "userspace_addr",
    ]
    assert (_uapi.CONSTANTS["KVM_CAP_USER_MEMORY"], _uapi.CONSTANTS["KVM_CAP_USER_MEMORY2"]) == (
        3,
        231,
    )
