"""Shared fixtures. Paths are relative to this file, never to the working directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


def firmware_dirs() -> list[Path]:
    """Where test firmware may be: $CVMLAUNCH_FIRMWARE_DIR, ../shared/firmware, distro paths."""
    dirs: list[Path] = []
    env = os.environ.get("CVMLAUNCH_FIRMWARE_DIR")
    if env:
        dirs.append(Path(env))
    # ../shared/firmware beside the checkout (CI), or beside any parent (git worktrees).
    dirs += [p / "shared" / "firmware" for p in REPO.parents]
    dirs += [Path("/usr/share/ovmf"), Path("/usr/share/OVMF")]
    return dirs


def find_firmware(name: str) -> Path | None:
    """The first firmware file called ``name`` in :func:`firmware_dirs`, or None."""
    for d in firmware_dirs():
        p = d / name
        if p.is_file():
            return p
    return None


@pytest.fixture
def firmware() -> object:
    """A function ``firmware(name) -> Path`` that skips the test when the file is absent."""

    def get(name: str) -> Path:
        p = find_firmware(name)
        if p is None:
            pytest.skip(f"firmware {name} not found in {[str(d) for d in firmware_dirs()]}")
        return p

    return get


# ---------------------------------------------------------------- KVM markers
# `kvm` tests run wherever /dev/kvm opens (they must not skip on this project's machines);
# `snp` / `tdx` tests also need the host to offer that VM type.

_KVM_PROBE: dict[str, object] = {}


def _kvm_host() -> tuple[str | None, object]:
    """(reason /dev/kvm is unusable or None, the host's KvmCaps or None)."""
    if "result" not in _KVM_PROBE:
        from cvmlaunch.errors import CvmLaunchError
        from cvmlaunch.kvm_map import Kvm

        try:
            with Kvm.open() as kvm:
                _KVM_PROBE["result"] = (None, kvm.caps())
        except CvmLaunchError as exc:
            _KVM_PROBE["result"] = (str(exc), None)
    result = _KVM_PROBE["result"]
    assert isinstance(result, tuple)
    return result[0], result[1]


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip `kvm` tests only if /dev/kvm cannot be opened; `snp`/`tdx` if the host lacks them;
    `guest_memfd` tests if it lacks guest_memfd (or, with ``mmap=True``, its mmap flag)."""
    names = {m.name for m in item.iter_markers()}
    if not names & {"kvm", "snp", "tdx", "guest_memfd"}:
        return
    reason, caps = _kvm_host()
    if reason is not None:
        pytest.skip(f"no /dev/kvm ({reason})")
    for tech in ("snp", "tdx"):
        if tech in names and not getattr(caps, tech):
            pytest.skip(
                f"this host's KVM does not offer KVM_X86_{tech.upper()}_VM "
                f"(KVM_CAP_VM_TYPES is {int(getattr(caps, 'vm_types', 0)):#x})"
            )
    marker = item.get_closest_marker("guest_memfd")
    if marker is not None:
        if not getattr(caps, "guest_memfd", False):
            pytest.skip("KVM_CAP_GUEST_MEMFD not offered")
        flags = int(getattr(caps, "guest_memfd_flags", 0))
        if marker.kwargs.get("mmap") and flags & 3 != 3:
            pytest.skip(
                "GUEST_MEMFD_FLAG_MMAP|GUEST_MEMFD_FLAG_INIT_SHARED not offered "
                f"(KVM_CAP_GUEST_MEMFD_FLAGS is {flags:#x})"
            )


def host_memory_backends() -> list[str]:
    """The memory backends a plain VM can use on this host (``anonymous`` where /dev/kvm does
    not open: the tests that take them skip there anyway)."""
    from cvmlaunch.errors import CvmLaunchError
    from cvmlaunch.kvm_map import KvmCaps, VmType, choose_memory_backend

    _, caps = _kvm_host()
    out = ["anonymous"]
    if isinstance(caps, KvmCaps):
        try:
            choose_memory_backend(caps, VmType.DEFAULT, "guest-memfd")
        except CvmLaunchError:
            pass
        else:
            out.insert(0, "guest-memfd")
    return out


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test that takes ``memory_backend`` runs once per backend this host offers."""
    if "memory_backend" in metafunc.fixturenames:
        metafunc.parametrize("memory_backend", host_memory_backends())


# ---------------------------------------------------------------- loader inputs (real images)


@pytest.fixture(scope="session", params=[64, 32], ids=["elf64", "elf32"])
def real_elf(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> object:
    """An ELF (32- and 64-bit) linked with the machine's gcc/ld: BSS, a PVH note, segments
    sharing a page. Skips only when there is no gcc."""
    from tests.real_images import have_toolchain, link_elf

    if not have_toolchain():
        pytest.skip("gcc/ld not installed")
    return link_elf(tmp_path_factory.mktemp(f"elf{request.param}"), request.param)


@pytest.fixture(scope="session")
def debian_kernel() -> object:
    """(path, provenance) of a real Debian bzImage, fetched once by
    tests/fixtures/fetch-debian-kernel.sh into ~/.cache/cvmlaunch (outside the repo)."""
    import shutil

    from tests.real_images import fetch_debian_kernel

    if shutil.which("apt-get") is None:
        pytest.skip("no apt-get on this machine: cannot fetch a Debian kernel")
    return fetch_debian_kernel()


# ---------------------------------------------------------------- the SNP fold's page hasher


def load_native_pagehash() -> object:
    """The native page hasher ``cvmlaunch._pagehash``. A development install builds it, so
    its absence fails the test, unless ``CVMLAUNCH_NO_NATIVE=1`` says that this environment
    runs without it (then the test is skipped)."""
    try:
        from cvmlaunch import _pagehash
    except ImportError as exc:
        if os.environ.get("CVMLAUNCH_NO_NATIVE") == "1":
            pytest.skip(f"cvmlaunch._pagehash absent, allowed by CVMLAUNCH_NO_NATIVE=1: {exc}")
        pytest.fail(
            f"cvmlaunch._pagehash is not importable ({exc}); `pip install -e .` builds it "
            "(needs a C compiler and the Python headers). Set CVMLAUNCH_NO_NATIVE=1 to run "
            "without it."
        )
    return _pagehash


@pytest.fixture(params=["native", "hashlib", "native-2-workers", "hashlib-2-workers"])
def snp_fold_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test once per way the SNP fold can hash pages: the native batch hasher or
    hashlib page by page, each serial as small regions are folded and on two threads in
    small batches (every region of two pages or more)."""
    from cvmlaunch import digests
    from cvmlaunch.measure import snp_chain

    name = str(request.param)
    if name.startswith("native"):
        load_native_pagehash()
        assert digests._sha384_pages is not None
        assert digests._sha384 is not None
    else:
        monkeypatch.setattr(digests, "_sha384_pages", None)
        monkeypatch.setattr(digests, "_sha384", None)
    if name.endswith("2-workers"):
        monkeypatch.setattr(snp_chain, "PARALLEL_MIN_PAGES", 2)
        monkeypatch.setattr(snp_chain, "BATCH_PAGES", 100)
        monkeypatch.setattr(snp_chain, "default_workers", lambda: 2)
    else:
        monkeypatch.setattr(snp_chain, "default_workers", lambda: 1)
    return name
