"""Fuzzing the loaders (hypothesis): arbitrary bytes, and mutations of real and synthetic
images, fed to every loader and to ``cvmlaunch inspect``'s report builder.

The invariant (h11's fuzz rule): a loader either returns a value or raises a
:class:`~cvmlaunch.errors.CvmLaunchError` subclass. Anything else (IndexError, struct.error,
ELFError, ValueError, OverflowError...) escaping is a bug, and so is a hang (pytest-timeout).
When a loader succeeds, its result must hold together (checked below).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cvmlaunch.errors import CvmLaunchError
from cvmlaunch.image.bzimage import parse_bzimage
from cvmlaunch.image.detect import detect_format
from cvmlaunch.image.elf import elf_regions, parse_elf
from cvmlaunch.image.ovmf import FOOTER_GUID, guid_bytes_le, parse_ovmf
from cvmlaunch.image.raw import initrd_gpa, kernel_cmdline
from cvmlaunch.image.report import build_report
from cvmlaunch.layout import FOUR_GIB, Buffer, Plan
from cvmlaunch.memory_map import MemoryMap
from tests.builders import PT_NOTE, ElfSpec, Seg, build_bzimage, build_elf, pvh_note
from tests.conftest import find_firmware
from tests.ovmf_builder import build_ovmf
from tests.real_images import RealElf

#: Scale every test's example count with $CVMLAUNCH_FUZZ_SCALE (e.g. 20 for a long local run).
SCALE = max(1, int(os.environ.get("CVMLAUNCH_FUZZ_SCALE", "1")))
FUZZ = settings(
    max_examples=120 * SCALE,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MEMORY = MemoryMap.for_size(256 << 20)
FIRMWARE_NAMES = ["OVMF.amdsev.fd", "OVMF.generic.fd", "OVMF.inteltdx.ms.fd", "OVMF.2022.fd"]


# ---------------------------------------------------------------- checked calls


def check_ovmf(data: Buffer) -> None:
    try:
        img = parse_ovmf(data, name="fuzz.fd")
    except CvmLaunchError:
        return
    assert img.gpa == FOUR_GIB - len(data)
    for s in img.tdx_sections or ():
        assert s.raw_size <= s.memory_size


def check_elf(data: Buffer) -> None:
    try:
        img = parse_elf(data, name="fuzz.elf")
    except CvmLaunchError:
        return
    try:
        regions = elf_regions(img, memory=MEMORY)
    except CvmLaunchError:
        regions = elf_regions(img)
    plan = Plan.of(regions)  # page aligned, no page twice
    covered = sum(r.size for r in plan.regions)
    assert covered >= sum(s.memsz for s in img.segments)


def check_bzimage(data: Buffer) -> None:
    try:
        k = parse_bzimage(data, name="fuzz.bz")
    except CvmLaunchError:
        return
    assert k.kernel_offset + k.kernel_size == len(data)
    assert k.kernel_offset == (k.setup_sects + 1) * 512


def check_inspect(data: Buffer) -> None:
    detect_format(data)
    try:
        build_report(data, name="fuzz")
    except CvmLaunchError:
        return


LOADERS: dict[str, Callable[[Buffer], None]] = {
    "ovmf": check_ovmf,
    "elf": check_elf,
    "bzimage": check_bzimage,
    "inspect": check_inspect,
}


# ---------------------------------------------------------------- mutations


_INTERESTING = [0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 1 << 63, (1 << 64) - 1]


@st.composite
def mutations(draw: st.DrawFn, seed: bytes, hot: list[tuple[int, int]]) -> memoryview:
    """``seed`` with 1..8 edits (bytes or little-endian words of interesting or random
    values, mostly inside the ``hot`` ranges where the headers are), maybe truncated; as a
    memoryview, the way the CLI hands an mmap'd file to the loaders."""
    data = bytearray(seed)
    size = len(data)
    for _ in range(draw(st.integers(1, 8))):
        lo, hi = draw(st.sampled_from([*hot, (0, size)]))
        hi = min(hi, size)
        if hi <= lo:
            continue
        width = draw(st.sampled_from([1, 2, 4, 8]))
        pos = draw(st.integers(lo, max(lo, hi - width)))
        value = draw(
            st.one_of(
                st.sampled_from([*_INTERESTING, size, size - pos, size - lo]),
                st.integers(0, (1 << (8 * width)) - 1),
            )
        )
        blob = (value % (1 << (8 * width))).to_bytes(width, "little")
        data[pos : pos + width] = blob[: max(0, size - pos)]
    cut = draw(st.sampled_from(["none"] * 6 + ["prefix", "suffix"]))
    if cut == "prefix":
        data = data[: draw(st.integers(0, size))]
    elif cut == "suffix":
        data = data[draw(st.integers(0, size)) :]
    return memoryview(data)


# ---------------------------------------------------------------- arbitrary bytes


@pytest.mark.timeout(120)
@pytest.mark.parametrize("loader", sorted(LOADERS))
@FUZZ
@given(data=st.binary(max_size=4096))
def test_arbitrary_bytes(loader: str, data: bytes) -> None:
    LOADERS[loader](data)


@pytest.mark.timeout(120)
@FUZZ
@given(body=st.binary(min_size=0, max_size=2048), klass=st.sampled_from([1, 2, 3]))
def test_arbitrary_bytes_behind_elf_magic(body: bytes, klass: int) -> None:
    data = b"\x7fELF" + bytes([klass, 1, 1]) + body
    check_elf(data)
    check_inspect(data)


@pytest.mark.timeout(120)
@FUZZ
@given(setup=st.binary(min_size=0x300, max_size=0x1400), tail=st.binary(max_size=512))
def test_arbitrary_bytes_behind_hdrs_magic(setup: bytes, tail: bytes) -> None:
    data = bytearray(setup + tail)
    data[0x202:0x206] = b"HdrS"
    check_bzimage(bytes(data))
    check_inspect(bytes(data))


@pytest.mark.timeout(120)
@FUZZ
@given(body=st.binary(min_size=0, max_size=4096), pages=st.integers(1, 4))
def test_arbitrary_bytes_before_ovmf_footer(body: bytes, pages: int) -> None:
    size = pages * 0x1000
    data = bytearray(size)
    data[size - 0x20 - len(body) - 18 : size - 0x20 - 18] = body[: size - 0x20 - 18]
    data[size - 0x30 : size - 0x20] = guid_bytes_le(FOOTER_GUID)
    data[size - 0x32 : size - 0x30] = struct.pack("<H", min(len(body) + 18, 0xFFFF))
    check_ovmf(bytes(data))
    check_inspect(bytes(data))


@pytest.mark.timeout(60)
@FUZZ
@given(
    cmdline=st.one_of(st.text(max_size=300), st.binary(max_size=300)),
    limit=st.one_of(st.none(), st.integers(-5, 400)),
)
def test_cmdline(cmdline: str | bytes, limit: int | None) -> None:
    try:
        out = kernel_cmdline(cmdline, limit=limit)
    except CvmLaunchError:
        return
    assert out.endswith(b"\x00")
    assert out.count(0) == 1


@pytest.mark.timeout(60)
@FUZZ
@given(
    size=st.integers(-10, 1 << 34),
    memory=st.integers(1, 1 << 22).map(lambda pages: pages * 0x1000),
    addr_max=st.integers(0, (1 << 32) - 1),
)
def test_initrd_placement(size: int, memory: int, addr_max: int) -> None:
    try:
        gpa = initrd_gpa(size, memory=MemoryMap.for_size(memory), addr_max=addr_max)
    except CvmLaunchError:
        return
    assert gpa % 0x1000 == 0
    assert gpa + size - 1 <= addr_max


# ---------------------------------------------------------------- mutations of real images


@pytest.fixture(scope="module")
def firmware_images() -> dict[str, bytes]:
    images = {}
    for name in FIRMWARE_NAMES:
        path = find_firmware(name)
        if path is not None:
            images[name] = path.read_bytes()
    if not images:
        pytest.skip("no firmware found (set CVMLAUNCH_FIRMWARE_DIR)")
    return images


def _ovmf_hot(size: int) -> list[tuple[int, int]]:
    # the GUID table, and the SEV / TDX metadata the Debian builds keep in their last 4 KiB
    return [(size - 0x1000, size), (size - 0x200, size - 0x20)]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", FIRMWARE_NAMES)
@settings(FUZZ, max_examples=60 * SCALE)
@given(data=st.data())
def test_mutated_firmware(
    firmware_images: dict[str, bytes], name: str, data: st.DataObject
) -> None:
    if name not in firmware_images:
        pytest.skip(f"{name} not found")
    seed = firmware_images[name]
    mutated = data.draw(mutations(seed, _ovmf_hot(len(seed))))
    check_ovmf(mutated)
    check_inspect(mutated)


_SYNTHETIC_OVMF = build_ovmf(
    0x10000,
    sev=[(0x800000, 0x9000, 1), (0x80D000, 0x1000, 2), (0x80E000, 0x1000, 3)],
    tdx=[
        (0x8000, 0x8000, 0xFFFF8000, 0x8000, 0, 1),
        (0, 0x8000, 0xFFFF0000, 0x8000, 1, 0),
        (0, 0, 0x809000, 0x2000, 2, 0),
    ],
    hash_table=(0x810C00, 0x400),
)


@pytest.mark.timeout(120)
@settings(FUZZ, max_examples=300 * SCALE)
@given(data=st.data())
def test_mutated_synthetic_firmware(data: st.DataObject) -> None:
    hot = [(0x100, 0x140), (0x3F0, 0x480), (0x10000 - 0x100, 0x10000)]
    mutated = data.draw(mutations(_SYNTHETIC_OVMF, hot))
    check_ovmf(mutated)
    check_inspect(mutated)


@pytest.mark.timeout(120)
@settings(FUZZ, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_real_elf(real_elf: RealElf, data: st.DataObject) -> None:
    seed = real_elf.path.read_bytes()
    # ELF and program headers (not the magic); text, note and data
    hot = [(4, 0x200), (0x1000, 0x1040)]
    mutated = data.draw(mutations(seed, hot))
    check_elf(mutated)
    check_inspect(mutated)


_SYNTHETIC_ELF = build_elf(
    ElfSpec(
        [
            Seg(0x100000, b"\xf4" * 0x1800, memsz=0x2800),
            Seg(0x102800, b"D" * 0x100, memsz=0x3000),
            Seg(0, pvh_note(0x100000), type=PT_NOTE),
        ]
    )
)


@pytest.mark.timeout(120)
@settings(FUZZ, max_examples=300 * SCALE)
@given(data=st.data())
def test_mutated_synthetic_elf(data: st.DataObject) -> None:
    mutated = data.draw(mutations(_SYNTHETIC_ELF, [(4, 0x100), (0x1000, 0x1010)]))
    check_elf(mutated)
    check_inspect(mutated)


@pytest.fixture(scope="module")
def kernel_seed(debian_kernel: tuple[Path, dict[str, str]]) -> bytes:
    return debian_kernel[0].read_bytes()


@pytest.mark.timeout(300)
@settings(FUZZ, max_examples=60 * SCALE)
@given(data=st.data())
def test_mutated_debian_kernel(kernel_seed: bytes, data: st.DataObject) -> None:
    hot = [(0x1F1, 0x26C), (0x44C0, 0x4540), (0x5000, 0x5300)]
    mutated = data.draw(mutations(kernel_seed, hot))
    check_bzimage(mutated)
    check_inspect(mutated)


@pytest.mark.timeout(120)
@settings(FUZZ, max_examples=300 * SCALE)
@given(data=st.data())
def test_mutated_synthetic_bzimage(data: st.DataObject) -> None:
    seed = build_bzimage(payload=b"\x1f\x8b" + bytes(0x2FFE), payload_offset=0)
    mutated = data.draw(mutations(seed, [(0x1F1, 0x26C), (0x300, 0x340)]))
    check_bzimage(mutated)
    check_inspect(mutated)
