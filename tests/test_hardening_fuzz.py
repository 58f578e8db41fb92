"""Issue 15, proof: hypothesis at the library entry points and at the file edge, each example
under a deadline (SIGALRM, :func:`tests.hardening_util.deadline`) so a slow path fails the
test instead of hanging it.

Invariants: an entry point returns a value or raises a :class:`CvmLaunchError` whose text is
one printable line; nothing else escapes; a write either lands or changes no file, never
replaces a device, a FIFO or a symlink, never writes over an input, and leaves no temporary
file behind.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cvmlaunch.errors import CvmLaunchError, ImageError
from cvmlaunch.files import file_digest, map_file, read_small
from cvmlaunch.image.ovmf import parse_ovmf
from cvmlaunch.launch_settings import MAX_MEMORY, LaunchSettings, parse_size, settings_from_toml
from cvmlaunch.layout import FOUR_GIB
from cvmlaunch.measure.tdx import mrtd
from cvmlaunch.outputs import Output, write_outputs
from cvmlaunch.plan.tdvf import tdvf_plan
from cvmlaunch.text import printable
from tests.hardening_util import deadline, dev_twin, snapshot
from tests.ovmf_builder import build_ovmf

SCALE = max(1, int(os.environ.get("CVMLAUNCH_FUZZ_SCALE", "1")))
FUZZ = settings(
    max_examples=100 * SCALE,
    deadline=None,  # the SIGALRM deadline below interrupts; hypothesis' only reports after
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
#: Seconds one example may take (generous for a shared 2-core machine; a hang is days).
PER_EXAMPLE = 20


def one_line(exc: CvmLaunchError) -> None:
    text = str(exc)
    assert "\n" not in text
    assert text == printable(text)
    text.encode("utf-8", "strict")


# ------------------------------------------------------------ TDVF: any declared section

u64 = st.integers(0, (1 << 64) - 1)
page_multiple = st.integers(0, (1 << 52) >> 12).map(lambda n: n << 12)


@st.composite
def tdvf_sections(draw: st.DrawFn) -> list[tuple[int, int, int, int, int, int]]:
    bfv = (0x100000, 0x100000, FOUR_GIB - 0x100000, 0x100000, 0, 1)
    hob = (0, 0, 0x809000, 0x2000, 2, 0)
    gpa = draw(st.one_of(page_multiple, st.sampled_from([0x800000, FOUR_GIB, 1 << 47])))
    size = draw(
        st.one_of(
            page_multiple,
            st.sampled_from([0xF00000000000, 1 << 40, 0x6000, FOUR_GIB - 0x800000]),
            u64,
        )
    )
    kind = draw(st.sampled_from([2, 3]))
    attrs = draw(st.sampled_from([0, 1]))
    return [bfv, hob, (0, 0, gpa & 0xFFFFFFFFFFFFF000, size & 0xFFFFFFFFFFFFF000, kind, attrs)]


@FUZZ
@given(tdvf_sections())
def test_fuzz_6_any_tdvf_section_measures_quickly_or_is_refused(
    sections: list[tuple[int, int, int, int, int, int]],
) -> None:
    image = build_ovmf(0x200000, tdx=sections)
    try:
        with deadline(PER_EXAMPLE):
            digest = mrtd(tdvf_plan(parse_ovmf(image, name="fuzz.fd")))
    except CvmLaunchError as exc:
        one_line(exc)
        return
    assert len(digest) == 48


# ------------------------------------------------------------ sizes and settings


@FUZZ
@given(
    st.one_of(
        st.integers(-(1 << 70), 1 << 70),
        st.from_regex(r"\A\s*\d{1,25}\s*[KMGTPEkmgtpe]?(i?B)?\s*\Z"),
        st.text(max_size=30),
    )
)
def test_fuzz_8_parse_size(value: int | str) -> None:
    try:
        size = parse_size(value)
    except CvmLaunchError as exc:
        one_line(exc)
        return
    assert 0 < size <= MAX_MEMORY
    assert size % 4096 == 0
    LaunchSettings(memory=size)  # a size parse_size gives is one the settings take


toml_values = st.one_of(
    st.integers(-(1 << 63), (1 << 63) - 1).map(str),
    st.floats(allow_nan=True).map(lambda f: repr(f).replace("inf", "inf").replace("nan", "nan")),
    st.sampled_from(["[1]", "{a = 1}", "1979-05-27", "07:32:00", "true", "'512M'", "'16E'"]),
    st.text(max_size=20).map(lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'),
)


@FUZZ
@given(
    st.sampled_from(["memory", "vcpus", "timeout", "append", "tech", "kernel", "policy"]),
    toml_values,
)
def test_fuzz_8_12_toml_settings(key: str, value: str) -> None:
    try:
        with deadline(PER_EXAMPLE):
            settings_from_toml(f"{key} = {value}\n", source="vm.toml")
    except CvmLaunchError as exc:
        one_line(exc)


# ------------------------------------------------------------ the file edge

KINDS = [
    "missing",
    "regular",
    "symlink",
    "broken-symlink",
    "directory",
    "fifo",
    "dev-null",
    "same-as-input",
    "hardlink-to-input",
    "missing-directory",
    "long-name",
    "dash",
]


def _make(tmp: Path, kind: str, index: int) -> str:
    p = tmp / f"out{index}"
    if kind == "regular":
        p.write_bytes(b"old output")
    elif kind == "symlink":
        (tmp / f"target{index}").write_bytes(b"old target")
        p.symlink_to(tmp / f"target{index}")
    elif kind == "broken-symlink":
        p.symlink_to(tmp / f"nowhere{index}")
    elif kind == "directory":
        p.mkdir()
    elif kind == "fifo":
        os.mkfifo(p)
    elif kind == "dev-null":
        return str(dev_twin(tmp, "null", f"dev-null{index}"))  # never the machine's /dev/null
    elif kind == "same-as-input":
        return str(tmp / "input.fd")
    elif kind == "hardlink-to-input":
        os.link(tmp / "input.fd", p)
    elif kind == "missing-directory":
        return str(tmp / "no" / "such" / "dir" / "out")
    elif kind == "long-name":
        return str(tmp / ("n" * (250 - len(str(index))))) + str(index)
    elif kind == "dash":
        return "-"
    return str(p)


@pytest.fixture
def edge(tmp_path_factory: pytest.TempPathFactory) -> pytest.TempPathFactory:
    return tmp_path_factory


@FUZZ
@given(kinds=st.lists(st.sampled_from(KINDS), min_size=1, max_size=3), data=st.binary(max_size=64))
def test_fuzz_1_to_5_write_outputs_edge(
    edge: pytest.TempPathFactory,
    kinds: list[str],
    data: bytes,
    capfdbinary: pytest.CaptureFixture[bytes],
) -> None:
    tmp = edge.mktemp("edge")
    (tmp / "input.fd").write_bytes(b"precious input")
    paths = [_make(tmp, k, i) for i, k in enumerate(kinds)]
    before = snapshot(tmp)
    null_before = os.stat("/dev/null")
    try:
        with deadline(PER_EXAMPLE):
            write_outputs([Output(p, data) for p in paths], inputs=[str(tmp / "input.fd")])
        ok = True
    except ImageError as exc:
        one_line(exc)
        ok = False
    after = snapshot(tmp)
    capfdbinary.readouterr()
    # never: an input changed, a temporary file left, a device or FIFO or link replaced
    assert after.get("input.fd") == before["input.fd"]
    assert not [n for n in after if ".cvmlaunch-" in n]
    for name, (mode, ino, what) in before.items():
        if not stat.S_ISREG(mode):
            assert after[name][:2] == (mode, ino)
            if stat.S_ISLNK(mode):
                assert after[name][2] == what
    assert os.lstat("/dev/null").st_ino == null_before.st_ino
    if not ok:
        assert after == before  # a failed run changes no file
    else:
        for p in paths:
            kind = os.lstat(p).st_mode if p != "-" else 0
            if p != "-" and not stat.S_ISFIFO(kind) and not stat.S_ISCHR(kind):
                assert Path(p).read_bytes() == data


def _map(path: str) -> int:
    with map_file(path) as view:
        return len(view)


@FUZZ
@given(
    kind=st.sampled_from(
        ["fifo", "dev-zero", "dev-null", "directory", "dash", "missing", "regular"]
    )
)
def test_fuzz_5_inputs_never_hang(edge: pytest.TempPathFactory, kind: str) -> None:
    tmp = edge.mktemp("in")
    path = {
        "dev-zero": "/dev/zero",
        "dev-null": "/dev/null",
        "directory": str(tmp),
        "dash": "-",
    }.get(kind, str(tmp / "in"))
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "regular":
        Path(path).write_bytes(b"x" * 5000)
    for call in (
        lambda: _map(path),
        lambda: read_small(path, "key"),
        lambda: file_digest(path) if kind not in ("fifo", "dash") else None,
    ):
        try:
            with deadline(PER_EXAMPLE):
                call()
        except CvmLaunchError as exc:
            one_line(exc)
