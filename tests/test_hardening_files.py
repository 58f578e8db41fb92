"""Issue 15, items 1-5 at the file edge (:mod:`cvmlaunch.files`, :mod:`cvmlaunch.outputs`):
outputs never replace a device, a FIFO, a symlink, an input or a key; groups land whole or not
at all; inputs that are mapped or sized are regular files, so nothing hangs."""

from __future__ import annotations

import hashlib
import os
import re
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from cvmlaunch.errors import ImageError
from cvmlaunch.files import (
    file_digest,
    file_digests,
    file_size,
    input_buffer,
    map_file,
    read_small,
    read_stream,
)
from cvmlaunch.outputs import Output, check_outputs, write_output, write_outputs
from tests.errors_util import raises_cvm
from tests.hardening_util import dev_twin, snapshot, within


def _open_writer_soon(fifo: Path, data: bytes) -> threading.Thread:
    def run() -> None:
        with open(fifo, "wb") as f:
            f.write(data)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


# ------------------------------------------------------------------ item 1: what is replaced


def test_1_regular_file_replaced_atomically_with_mode(tmp_path: Path) -> None:
    p = tmp_path / "log.json"
    p.write_bytes(b"old")
    write_output(p, "new")
    assert p.read_bytes() == b"new"
    assert stat.S_IMODE(p.stat().st_mode) == 0o644
    assert sorted(os.listdir(tmp_path)) == ["log.json"]  # no temporary file left


def test_1_fifo_is_written_through_not_replaced(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader is there before the write
    try:
        within(5, lambda: write_output(fifo, b"log text"))
        assert os.read(reader, 100) == b"log text"
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert sorted(os.listdir(tmp_path)) == ["fifo"]


def test_1_fifo_without_reader_refused_not_hung(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    before = snapshot(tmp_path)
    with pytest.raises(ImageError, match="a FIFO with no reader"):
        within(5, lambda: write_output(fifo, b"x"))
    assert snapshot(tmp_path) == before


def test_1_dev_null_stays_a_device(tmp_path: Path) -> None:
    null = dev_twin(tmp_path, "null")  # never the machine's /dev/null
    before = os.stat(null)
    write_output(null, b"discarded")
    after = os.lstat(null)
    assert stat.S_ISCHR(after.st_mode)
    assert (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev)
    assert not [n for n in os.listdir(null.parent) if n.startswith(".cvmlaunch-")]


def test_1_symlink_followed_link_kept(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "log.json"
    target.write_bytes(b"old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    write_output(link, b"new")
    assert link.is_symlink()
    assert os.readlink(link) == str(target)
    assert target.read_bytes() == b"new"
    assert sorted(os.listdir(tmp_path)) == ["link.json", "real"]
    assert os.listdir(tmp_path / "real") == ["log.json"]


def test_1_broken_symlink_refused(tmp_path: Path) -> None:
    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "missing.json")
    before = snapshot(tmp_path)
    with pytest.raises(ImageError, match="symlink to a missing file") as e:
        write_output(link, b"x")
    assert str(link) in str(e.value)
    assert "\n" not in str(e.value)
    assert snapshot(tmp_path) == before


def test_1_dash_is_stdout(
    capfdbinary: pytest.CaptureFixture[bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # undone after the test: the cwd is process-global
    write_output("-", b'{"log": 1}\n')
    assert capfdbinary.readouterr().out == b'{"log": 1}\n'
    assert os.listdir(tmp_path) == []  # no file named '-'


def test_1_dev_stdout_written_through(tmp_path: Path) -> None:
    """``--log /dev/stdout`` with stdout redirected to a file: the file gets the text, the
    symlink and the file's inode stay (a subprocess: its stdout is the file). The link is
    made in tmp_path as /dev/stdout is (-> /proc/self/fd/1), so a defect cannot replace the
    machine's /dev/stdout."""
    out = tmp_path / "captured"
    link = tmp_path / "stdout"
    link.symlink_to("/proc/self/fd/1")
    code = (
        "import sys; from cvmlaunch.outputs import write_output;"
        f"print('first', flush=True); write_output({str(link)!r}, b'log\\n')"
    )
    with open(out, "wb") as f:
        ino = os.fstat(f.fileno()).st_ino
        subprocess.run([sys.executable, "-c", code], stdout=f, check=True, timeout=60)
    assert out.read_bytes() == b"first\nlog\n"
    assert out.stat().st_ino == ino
    assert os.readlink(link) == "/proc/self/fd/1"
    assert sorted(os.listdir(tmp_path)) == ["captured", "stdout"]


def test_1_directory_refused(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    before = snapshot(tmp_path)
    with pytest.raises(ImageError, match="cannot write: Is a directory"):
        write_output(tmp_path / "d", b"x")
    assert snapshot(tmp_path) == before


def test_1_empty_name_refused() -> None:
    with pytest.raises(ImageError, match="empty file name"):
        write_output("", b"x")


@pytest.mark.parametrize("length", [241, 250, 255])
def test_1_long_names_written(tmp_path: Path, length: int) -> None:
    p = tmp_path / ("l" * length)
    write_output(p, b"x")
    assert p.read_bytes() == b"x"
    write_output(p, b"y")  # and replaced
    assert p.read_bytes() == b"y"
    assert os.listdir(tmp_path) == [p.name]


def test_9_dev_full_is_one_error_no_file_changed(tmp_path: Path) -> None:
    full = dev_twin(tmp_path, "full")  # never the machine's /dev/full
    before = os.lstat(full)
    with pytest.raises(ImageError) as e:
        write_output(full, b"x" * 10)
    assert str(e.value) == f"{full}: cannot write: No space left on device"
    after = os.lstat(full)
    assert stat.S_ISCHR(after.st_mode)
    assert (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev)


# --------------------------------------------------------------- items 2 and 3: groups


def test_2_3_group_lands_whole(tmp_path: Path) -> None:
    a, b = tmp_path / "id-block.bin", tmp_path / "id-auth.bin"
    a.write_bytes(b"old block")
    write_outputs([Output(str(a), b"B" * 96), Output(str(b), b"A" * 4096)])
    assert a.read_bytes() == b"B" * 96
    assert b.read_bytes() == b"A" * 4096
    assert sorted(os.listdir(tmp_path)) == ["id-auth.bin", "id-block.bin"]


def test_3_second_output_unwritable_first_unchanged(tmp_path: Path) -> None:
    a = tmp_path / "id-block.bin"
    a.write_bytes(b"old block")
    before = snapshot(tmp_path)
    with pytest.raises(ImageError, match=r"missing/id-auth\.bin: cannot write"):
        write_outputs(
            [Output(str(a), b"B" * 96), Output(str(tmp_path / "missing" / "id-auth.bin"), b"A")]
        )
    assert snapshot(tmp_path) == before


def test_2_failed_write_through_changes_no_file(tmp_path: Path) -> None:
    """A key file and a log to /dev/full: the device fails, the key is not written."""
    key = tmp_path / "key.pem"
    full = dev_twin(tmp_path, "full")  # never the machine's /dev/full
    before = snapshot(tmp_path)
    with pytest.raises(ImageError, match=f"^{re.escape(str(full))}: cannot write"):
        write_outputs(
            [Output(str(key), b"KEY", mode=0o600, replace=False), Output(str(full), b"x")]
        )
    assert snapshot(tmp_path) == before


def test_2_key_never_replaced_without_permission(tmp_path: Path) -> None:
    key = tmp_path / "victim.pem"
    key.write_bytes(b"precious")
    before = snapshot(tmp_path)
    with pytest.raises(ImageError, match="already exists"):
        write_outputs([Output(str(key), b"new", mode=0o600, replace=False)])
    assert snapshot(tmp_path) == before


def test_2_new_key_has_mode_0600(tmp_path: Path) -> None:
    key = tmp_path / "new.pem"
    write_outputs([Output(str(key), b"new", mode=0o600, replace=False)])
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.read_bytes() == b"new"


def test_2_3_same_file_named_twice_refused(tmp_path: Path) -> None:
    a = tmp_path / "out.bin"
    with pytest.raises(ImageError, match="named twice"):
        write_outputs([Output(str(a), b"1"), Output(str(tmp_path / "." / "out.bin"), b"2")])
    assert not a.exists()


# ------------------------------------------------------------------- item 4: over an input


@pytest.mark.parametrize("how", ["same", "symlink", "hardlink"])
def test_4_output_over_input_refused(tmp_path: Path, how: str) -> None:
    firmware = tmp_path / "OVMF.fd"
    firmware.write_bytes(b"firmware bytes")
    out = tmp_path / "log.json"
    if how == "same":
        out = firmware
    elif how == "symlink":
        out.symlink_to(firmware)
    else:
        os.link(firmware, out)
    before = snapshot(tmp_path)
    with pytest.raises(ImageError, match=r"same file as .*OVMF\.fd; refusing"):
        write_output(out, b"log", inputs=[str(firmware)])
    assert snapshot(tmp_path) == before


# ----------------------------------------------------------- item 5: inputs that would hang


@pytest.mark.parametrize("reader", [map_file, read_small])
def test_5_fifo_as_mapped_input_refused(tmp_path: Path, reader: object) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    def call() -> None:
        if reader is map_file:
            with map_file(fifo):
                pass
        else:
            read_small(fifo, "key")

    with pytest.raises(ImageError, match=r"a FIFO; .* must be a regular file"):
        within(5, call)


@pytest.mark.parametrize("path", ["/dev/zero", "/dev/null"])
def test_5_device_as_mapped_input_refused(path: str) -> None:
    def call() -> None:
        with map_file(path):
            pass

    with pytest.raises(ImageError, match=r"a character device; .* must be a regular file"):
        within(5, call)


def test_5_directory_and_dash_as_mapped_input_refused(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="Is a directory"), map_file(tmp_path):
        pass
    with pytest.raises(ImageError, match=r"standard input \('-'\) is a stream"), map_file("-"):
        pass


def test_5_dev_zero_streamed_refused_not_hung() -> None:
    with pytest.raises(ImageError, match="a character device; initrd must be a file or a pipe"):
        within(5, lambda: file_digest("/dev/zero", "sha256", what="initrd"))


def test_5_streamed_from_fifo(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    data = os.urandom(3 << 20)
    t = _open_writer_soon(fifo, data)
    assert within(10, lambda: file_digest(fifo, "sha256")) == hashlib.sha256(data).digest()
    t.join(5)


def test_5_streamed_from_stdin_dash() -> None:
    code = "import sys; from cvmlaunch.files import file_digest; print(file_digest('-').hex())"
    data = b"kernel" * 1000
    r = subprocess.run(
        [sys.executable, "-c", code], input=data, capture_output=True, check=True, timeout=60
    )
    assert r.stdout.decode().strip() == hashlib.sha256(data).hexdigest()


def test_5_read_stream_limit_bounds_a_pipe(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    t = _open_writer_soon(fifo, b"x" * 5000)
    with pytest.raises(ImageError, match="too large for log"):
        within(10, lambda: read_stream(fifo, "log", 4096))
    t.join(5)


# ------------------------------------------------- item 12: --vars-file; streamed sizes


@pytest.mark.parametrize("kind", ["directory", "fifo", "device"])
def test_12_file_size_of_non_regular_refused(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "vars"
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path = Path("/dev/zero")
    with pytest.raises(ImageError, match=r"Is a directory|must be a regular file"):
        within(5, lambda: file_size(path, "the vars file"))


def test_12_file_size_of_a_file(tmp_path: Path) -> None:
    p = tmp_path / "vars.fd"
    p.write_bytes(bytes(0x84000))
    assert file_size(p) == 0x84000


def test_5_file_digests_of_a_pipe_give_its_size(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    data = os.urandom((2 << 20) + 17)
    t = _open_writer_soon(fifo, data)
    size, (s256, s384) = within(10, lambda: file_digests(fifo, ["sha256", "sha384"]))
    t.join(5)
    assert size == len(data)
    assert s256 == hashlib.sha256(data).digest()
    assert s384 == hashlib.sha384(data).digest()


def test_1_check_outputs_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "in.fd").write_bytes(b"input")
    before = snapshot(tmp_path)
    check_outputs([Output(str(tmp_path / "log.json"), b"x")], inputs=[str(tmp_path / "in.fd")])
    with pytest.raises(ImageError, match="No such file or directory"):
        check_outputs([Output(str(tmp_path / "no" / "log.json"), b"x")])
    with pytest.raises(ImageError, match="same file as"):
        check_outputs([Output(str(tmp_path / "in.fd"), b"x")], inputs=[str(tmp_path / "in.fd")])
    with pytest.raises(ImageError, match="named twice"):
        check_outputs([Output("-", b"x"), Output("-", b"y")])
    assert snapshot(tmp_path) == before


def test_5_input_buffer_maps_a_file_and_reads_a_pipe(tmp_path: Path) -> None:
    p = tmp_path / "log.jsonl"
    p.write_bytes(b"file bytes")
    with input_buffer(p, "launch log", 100) as view:
        assert bytes(view) == b"file bytes"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    t = _open_writer_soon(fifo, b"pipe bytes")
    with within(10, lambda: input_buffer(fifo, "launch log", 100).__enter__()) as view:
        assert bytes(view) == b"pipe bytes"
    t.join(5)
    with pytest.raises(ImageError, match="a character device; launch log must be a file or a"):
        within(5, lambda: input_buffer("/dev/zero", "launch log", 100).__enter__())


def test_5_file_digests_across_mmap_windows(tmp_path: Path) -> None:
    """A regular file is hashed through 4 MiB windows: every boundary case gives hashlib's
    digest of the whole file."""
    for size in (0, 1, (4 << 20) - 1, 4 << 20, (9 << 20) + 5):
        data = os.urandom(size)
        p = tmp_path / f"f{size}"
        p.write_bytes(data)
        got = file_digests(p, ["sha256", "sha384"])
        assert got == (size, [hashlib.sha256(data).digest(), hashlib.sha384(data).digest()])
        assert file_digest(p, "sha384") == hashlib.sha384(data).digest()


# ------------------------------------------------------------------ inputs found by digest


def test_find_by_digest_finds_renamed_inputs_and_hashes_only_wanted_sizes(tmp_path: Path) -> None:
    from cvmlaunch.files import find_by_digest

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "renamed.fd").write_bytes(b"firmware")
    (a / "other").write_bytes(b"firmwarf")  # same size, other digest
    (b / "a-copy").write_bytes(b"firmware")  # a second match: the first found wins
    (b / "vmlinuz").write_bytes(b"kernel!")
    (b / "dangling").symlink_to(tmp_path / "gone")  # cannot be examined: passed over
    os.mkfifo(b / "pipe")  # not a regular file: never opened (a FIFO would block)
    wanted = {
        (8, hashlib.sha256(b"firmware").digest()): "firmware",
        (7, hashlib.sha256(b"kernel!").digest()): "kernel",
        (6, hashlib.sha256(b"initrd").digest()): "initrd",
    }
    found = find_by_digest([str(a), str(b)], wanted, "inputs")
    assert found == {"firmware": str(a / "renamed.fd"), "kernel": str(b / "vmlinuz")}
    assert find_by_digest([str(b)], wanted, "inputs")["firmware"] == str(b / "a-copy")
    assert find_by_digest([], wanted, "inputs") == {}
    missing = re.escape(str(tmp_path / "c"))
    with raises_cvm(setting="inputs", match=f"^inputs {missing}: No such"):
        find_by_digest([str(tmp_path / "c")], wanted, "inputs")


def test_created_directory_is_removed_again_when_the_block_fails(tmp_path: Path) -> None:
    from cvmlaunch.files import created_directory

    target = tmp_path / "x" / "y" / "z"
    seen = []

    def fail() -> None:
        with created_directory(str(target)):
            seen.append(target.is_dir())
            raise RuntimeError("a write failed")

    with pytest.raises(RuntimeError):
        fail()
    assert seen == [True]
    assert list(tmp_path.iterdir()) == []  # x, y and z: all created here, all removed
    (tmp_path / "keep").mkdir()
    with created_directory(str(tmp_path / "keep" / "new")):
        (tmp_path / "keep" / "new" / "f").write_bytes(b"1")
    assert (tmp_path / "keep" / "new" / "f").read_bytes() == b"1"
    (tmp_path / "file").write_bytes(b"")
    with (
        pytest.raises(ImageError, match="cannot create directory"),
        created_directory(str(tmp_path / "file" / "sub")),
    ):
        pass  # pragma: no cover
    with created_directory(None):
        pass
