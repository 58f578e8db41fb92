"""The file edge: inputs opened for the pure layers, and the directories outputs go into.

Rule 1 (inputs): parsing and measurement take buffers. This module turns paths into buffers
(read-only mmaps, or bytes for small and empty files) and streams digests, so a 256 MiB initrd
is hashed in chunks and never copied. An input that is mapped or sized (:func:`map_file`,
:func:`read_small`) must be a regular file: it is opened with ``O_NONBLOCK`` and checked with
``fstat`` first, so a FIFO or a device is refused with one line instead of hanging. A streamed
input (:func:`file_digest`, :func:`read_stream`) may also be a pipe or FIFO, and ``-`` names
standard input; devices, directories and sockets are refused (``/dev/zero`` never ends).

Outputs are written by :mod:`cvmlaunch.outputs` (atomically, never over an input or a device).

Start-up time: paths are plain ``os`` paths (no :mod:`pathlib`, which drags in ``urllib``);
:mod:`base64` and :mod:`tempfile` are imported only when used.
"""

from __future__ import annotations

import contextlib
import hashlib
import mmap
import os
import stat
import sys
from collections.abc import Iterable, Iterator, Sequence

from cvmlaunch.errors import ConfigError, ImageError

TYPE_CHECKING = False  # typing is not imported at run time (start-up time)
if TYPE_CHECKING:
    from collections.abc import Mapping
    from io import BufferedReader

    from cvmlaunch.measure.log import MeasurementLog

__all__ = [
    "LOG_STREAM_LIMIT",
    "STDIO",
    "FileDigests",
    "created_directory",
    "file_digest",
    "file_digests",
    "file_kind",
    "file_size",
    "find_by_digest",
    "host_smt_active",
    "input_buffer",
    "map_file",
    "path_name",
    "read_blob",
    "read_log",
    "read_log_bytes",
    "read_small",
    "read_stream",
    "same_file",
    "sha256_of",
]

#: The name that means standard input (for a streamed input) or standard output.
STDIO = "-"

_CHUNK = 1 << 20
#: A regular file is hashed through read-only mmap windows of this size: the page cache is
#: hashed in place (no copy into a read buffer, about a tenth of the CPU of reading a large
#: initrd), and unmapping each window keeps what a file adds to the peak RSS to one window.
_WINDOW = 4 << 20


def file_kind(mode: int) -> str:
    """What a file of ``st_mode`` is, in the words ``ls``/``stat`` use."""
    for test, name in (
        (stat.S_ISREG, "a regular file"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"  # pragma: no cover - every Linux type is named above


def path_name(path: str | os.PathLike[str]) -> str:
    """``path`` as a string; the empty name is refused (exit 2), as no file has it."""
    name = os.fspath(path)
    if name == "":
        raise ImageError("empty file name", source="''")
    return name


# ---------------------------------------------------------------------------------- inputs


def _open_regular(name: str, what: str, failure: str = "cannot open") -> int:
    """Open ``name`` read-only without blocking (a FIFO opens at once) and require a regular
    file; return the descriptor."""
    if name == STDIO:
        raise ImageError(f"{what} must be a regular file; standard input ('-') is a stream")
    try:
        fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as exc:
        raise ImageError(f"{failure}: {exc.strerror}", source=name) from exc
    try:
        mode = os.fstat(fd).st_mode
    except OSError as exc:  # pragma: no cover - fstat of an open descriptor
        os.close(fd)
        raise ImageError(f"cannot open: {exc.strerror}", source=name) from exc
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):  # in the words of EISDIR, as open(2) would say
            raise ImageError(f"{failure}: Is a directory", source=name)
        raise ImageError(f"{file_kind(mode)}; {what} must be a regular file", source=name)
    return fd


@contextlib.contextmanager
def map_file(path: str | os.PathLike[str], what: str = "this input") -> Iterator[memoryview]:
    """Map the regular file ``path`` read-only and yield a memoryview of it (empty files yield
    an empty view).

    The view is released when the context exits; do not keep slices of it beyond that.

    Raises:
        ImageError: the file cannot be opened or mapped, or is not a regular file (a FIFO, a
            device, a directory, ``-``).
    """
    name = path_name(path)
    fd = _open_regular(name, what)
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            yield memoryview(b"")
            return
        try:
            mapping = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
        except (OSError, ValueError) as exc:
            raise ImageError(f"cannot map: {exc}", source=name) from exc
    finally:
        os.close(fd)
    view = memoryview(mapping)
    try:
        yield view
    finally:
        view.release()
        with contextlib.suppress(BufferError):
            mapping.close()


@contextlib.contextmanager
def _open_stream(name: str, what: str) -> Iterator[BufferedReader]:
    """A streamed input: a regular file, a pipe or FIFO, or standard input for ``-``."""
    if name == STDIO:
        stdin = sys.stdin
        if stdin is None:
            raise ImageError(f"{what}: standard input is closed", source=STDIO)
        try:
            mode = os.fstat(stdin.fileno()).st_mode
        except (OSError, ValueError) as exc:
            raise ImageError(f"{what}: standard input is closed", source=STDIO) from exc
        if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
            raise ImageError(
                f"standard input is {file_kind(mode)}; {what} must be a file or a pipe",
                source=STDIO,
            )
        with open(stdin.fileno(), "rb", closefd=False) as f:
            yield f
        return
    try:
        mode = os.stat(name).st_mode
    except OSError as exc:
        raise ImageError(f"cannot read: {exc.strerror}", source=name) from exc
    if stat.S_ISDIR(mode):  # in the words of EISDIR, as the other inputs say it
        raise ImageError("cannot read: Is a directory", source=name)
    if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
        raise ImageError(f"{file_kind(mode)}; {what} must be a file or a pipe", source=name)
    # A FIFO is opened as `cat` opens it: the open waits for its writer (a FIFO opened
    # without blocking and no writer yet would read as empty, a wrong digest).
    try:
        f = open(name, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise ImageError(f"cannot read: {exc.strerror}", source=name) from exc
    with f:
        kind = os.fstat(f.fileno()).st_mode
        if not (stat.S_ISREG(kind) or stat.S_ISFIFO(kind)):  # replaced since the stat
            raise ImageError(f"{file_kind(kind)}; {what} must be a file or a pipe", source=name)
        yield f


def file_digest(
    path: str | os.PathLike[str], algorithm: str = "sha256", what: str = "this input"
) -> bytes:
    """Stream ``path`` through ``algorithm`` (any hashlib name) in 1 MiB chunks. ``path`` may
    be a regular file, a pipe or FIFO, or ``-`` (standard input).

    Raises:
        ImageError: the file cannot be read, or is a device, a directory or a socket.
    """
    return file_digests(path, [algorithm], what)[1][0]


def file_digests(
    path: str | os.PathLike[str], algorithms: Sequence[str], what: str = "this input"
) -> tuple[int, list[bytes]]:
    """Stream ``path`` once through every hash in ``algorithms``; return its size (a pipe's
    size is only known once it is read) and the digests, in order. ``path`` may be a regular
    file, a pipe or FIFO, or ``-`` (standard input).

    Raises:
        ImageError: the input cannot be read, or is a device, a directory or a socket.
    """
    name = path_name(path)
    hashes = [hashlib.new(a) for a in algorithms]
    size = 0
    with _open_stream(name, what) as f:
        try:
            info = os.fstat(f.fileno())
            if stat.S_ISREG(info.st_mode) and info.st_size > 0:
                size = _hash_windows(f.fileno(), info.st_size, hashes)
            else:
                buf = bytearray(_CHUNK)
                view = memoryview(buf)
                while n := f.readinto(buf):
                    size += n
                    for h in hashes:
                        h.update(view[:n])
        except (OSError, ValueError) as exc:
            text = exc.strerror if isinstance(exc, OSError) else str(exc)
            raise ImageError(f"cannot read: {text}", source=name) from exc
    return size, [h.digest() for h in hashes]


class FileDigests:
    """Size and SHA-256 of up to two streamed inputs (either may be None), started now.

    The last input is streamed on a thread of its own from the moment this is made, the first
    by the caller's thread in :meth:`result`. hashlib releases the GIL, so the two run on two
    cores, and the longest stream (an initrd's, given last) starts before the caller's other
    work (imports, checks, the firmware), which then runs beside it with the first input's
    hash on the other core. A failure is kept and raised by :meth:`result`, so that a file
    that cannot be read is reported where its digest is needed.

    Args:
        inputs: ``(path, what)`` pairs (:func:`file_digests`), or None for an absent input.
    """

    def __init__(self, *inputs: tuple[str, str] | None) -> None:
        self._inputs = inputs
        self._digests: list[tuple[int, bytes | None]] = [(0, None)] * len(inputs)
        self._errors: list[Exception | None] = [None] * len(inputs)
        self._threads = []
        if any(item is not None for item in inputs[1:]):
            import threading  # only then (a firmware-only run does without it)

            self._threads = [
                threading.Thread(target=self._hash, args=(i, item), name="sha256", daemon=True)
                for i, item in enumerate(inputs)
                if i > 0 and item is not None
            ]
        for thread in self._threads:
            thread.start()

    def _hash(self, index: int, item: tuple[str, str]) -> None:
        try:
            self._digests[index] = sha256_of(*item)
        except Exception as exc:  # re-raised in the caller's thread by result()
            # Exception, not BaseException: the caller's thread hashes the first input here
            # too, and a Ctrl-C (KeyboardInterrupt) kept for later would leave it waiting in
            # join() on a stream that may never end.
            self._errors[index] = exc

    def result(self) -> list[tuple[int, bytes | None]]:
        """Sizes and digests in the order of the inputs (``(0, None)`` for a None input),
        once all are done.

        Raises:
            ImageError: an input cannot be read (the first such input's error).
        """
        if self._inputs and self._inputs[0] is not None:
            self._hash(0, self._inputs[0])
        for thread in self._threads:
            thread.join()
        for error in self._errors:
            if error is not None:
                raise error
        return list(self._digests)


def sha256_of(path: str | os.PathLike[str], what: str = "this input") -> tuple[int, bytes]:
    """Size and SHA-256 of a streamed input: a file (hashed in place through mmap windows), a
    pipe, or ``-`` (standard input) (:func:`file_digests`).

    Raises:
        ImageError: the input cannot be read, or is a device, a directory or a socket.
    """
    size, (digest,) = file_digests(path, ["sha256"], what)
    return size, digest


def _hash_windows(fd: int, size: int, hashes: list[hashlib._Hash]) -> int:
    """Feed the regular file ``fd`` of ``size`` bytes to ``hashes`` through mmap windows."""
    for offset in range(0, size, _WINDOW):
        length = min(_WINDOW, size - offset)
        with mmap.mmap(fd, length, offset=offset, prot=mmap.PROT_READ) as m:
            m.madvise(mmap.MADV_SEQUENTIAL)
            for h in hashes:
                h.update(m)
    return size


def file_size(path: str | os.PathLike[str], what: str = "this input") -> int:
    """The size of the regular file ``path`` (a FIFO, a device or a directory has no size
    that means anything: refused).

    Raises:
        ImageError: it cannot be opened or is not a regular file.
    """
    name = path_name(path)
    fd = _open_regular(name, what)
    try:
        return os.fstat(fd).st_size
    finally:
        os.close(fd)


def read_stream(path: str | os.PathLike[str], what: str, limit: int) -> bytes:
    """Read a streamed input whole (a regular file, a pipe or FIFO, or ``-``), refusing
    anything over ``limit`` bytes (read at most ``limit + 1``: a pipe that never ends does
    not hang the reader past that).

    Raises:
        ImageError: the input cannot be read, is not a file or a pipe, or is too large.
    """
    name = path_name(path)
    with _open_stream(name, what) as f:
        try:
            data = f.read(limit + 1)
        except OSError as exc:
            raise ImageError(f"cannot read {what}: {exc.strerror}", source=name) from exc
    if len(data) > limit:
        raise ImageError(f"too large for {what} (more than {limit} bytes)", source=name)
    return data


@contextlib.contextmanager
def input_buffer(
    path: str | os.PathLike[str], what: str, stream_limit: int
) -> Iterator[memoryview]:
    """The whole of an input that may be streamed (a launch log): a regular file is mapped
    (:func:`map_file`); a pipe, a FIFO or ``-`` (standard input) is read whole, up to
    ``stream_limit`` bytes (:func:`read_stream`).

    Raises:
        ImageError: the input cannot be read, is not a file or a pipe, or a stream is longer
            than ``stream_limit``.
    """
    name = path_name(path)
    stream = name == STDIO
    if not stream:
        with contextlib.suppress(OSError):
            stream = not stat.S_ISREG(os.stat(name).st_mode)  # read_stream names the kind
    if stream:
        yield memoryview(read_stream(name, what, stream_limit))
        return
    with map_file(name, what) as view:
        yield view


def read_small(path: str | os.PathLike[str], what: str, limit: int = 1 << 20) -> bytes:
    """Read a small regular file whole (a key, an ID block), refusing anything over ``limit``.

    Raises:
        ImageError: the file cannot be read, is not a regular file, or is larger than
            ``limit`` bytes.
    """
    name = path_name(path)
    fd = _open_regular(name, what, f"cannot read {what}")
    try:
        with os.fdopen(fd, "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise ImageError(f"cannot read {what}: {exc.strerror}", source=name) from exc
    if len(data) > limit:
        raise ImageError(f"too large for {what}", source=name)
    return data


def read_blob(path: str | os.PathLike[str], size: int, what: str) -> bytes:
    """A fixed-size blob stored raw (exactly ``size`` bytes) or as base64 text decoding to
    ``size`` bytes (the form QEMU's command line takes, e.g. ``id-block=``/``id-auth=``).

    Raises:
        ImageError: the file cannot be read, or is neither form.
    """
    data = read_small(path, what)
    if len(data) == size:
        return data
    import base64
    import binascii

    try:
        decoded = base64.b64decode(b"".join(data.split()), validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if len(decoded) == size:
        return decoded
    raise ImageError(
        f"{what}: {len(data)} bytes; expected {size} raw bytes or their base64",
        source=os.fspath(path),
    )


#: The most a launch log read from a pipe or standard input may hold (a file is mapped, any
#: size): a stream that never ends is refused past this, naming the limit.
LOG_STREAM_LIMIT = 1 << 30


def read_log(path: str) -> MeasurementLog:
    """Read and parse a launch log: a file (mapped, not copied whole), a pipe, or ``-``
    (standard input, read whole up to :data:`LOG_STREAM_LIMIT` bytes).

    Raises:
        ImageError: the log cannot be read, is not a file or a pipe, or is not UTF-8.
        LogFormatError: the log does not follow the format.
    """
    from cvmlaunch.measure.log_json import parse_log_bytes

    with input_buffer(path, "a launch log", LOG_STREAM_LIMIT) as data:
        return parse_log_bytes(data, name=path)


def read_log_bytes(path: str) -> tuple[bytes, MeasurementLog]:
    """A launch log's bytes (a regular file, at most the largest a DSSE envelope may carry)
    and the log they parse to: what is signed is what is checked.

    Raises:
        ImageError: the file cannot be read, is too large or is not UTF-8.
        LogFormatError: the log does not follow the format.
    """
    from cvmlaunch.measure.log_json import parse_log_bytes
    from cvmlaunch.measure.log_sign import MAX_ENVELOPE_BYTES

    data = read_small(path, "log", MAX_ENVELOPE_BYTES)
    return data, parse_log_bytes(data, name=path)


def find_by_digest(
    directories: Iterable[str], wanted: Mapping[tuple[int, bytes], str], setting: str
) -> dict[str, str]:
    """The regular files in ``directories`` (not recursive, names sorted) whose size and
    SHA-256 are a key of ``wanted``, by that key's value (a role); the first file found for
    a role is kept. Names do not matter, so a renamed input is found; only files of a wanted
    size are hashed. A file that cannot be examined is passed over.

    Raises:
        ConfigError: a directory cannot be listed (naming ``setting``, the caller's name of
            the directories, and the directory).
        ImageError: a file of a wanted size cannot be read.
    """
    found: dict[str, str] = {}
    sizes = {size for size, _ in wanted}
    for directory in directories:
        try:
            names = sorted(os.listdir(directory))
        except OSError as exc:
            raise ConfigError(f"{setting} {directory}: {exc.strerror}", setting=setting) from exc
        for name in names:
            path = os.path.join(directory, name)
            try:
                size = os.stat(path).st_size if os.path.isfile(path) else -1
            except OSError:
                continue
            if size not in sizes:
                continue
            role = wanted.get((size, file_digest(path)))
            if role is not None and role not in found:
                found[role] = path
    return found


@contextlib.contextmanager
def created_directory(path: str | None) -> Iterator[None]:
    """Create the directory ``path`` (and its missing parents) for the outputs written inside
    the block; if the block raises, remove the directories created (deepest first), so a run
    that fails leaves no trace. ``None``: nothing to create.

    Raises:
        ImageError: the directory cannot be created.
    """
    if path is None:
        yield
        return
    created: list[str] = []
    parent = os.path.abspath(path)
    while not os.path.isdir(parent) and parent not in created:
        created.append(parent)
        parent = os.path.dirname(parent)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        for d in created:
            with contextlib.suppress(OSError):
                os.rmdir(d)
        raise ImageError(f"cannot create directory: {exc.strerror}", source=path) from exc
    try:
        yield
    except BaseException:
        for d in created:  # deepest first
            with contextlib.suppress(OSError):
                os.rmdir(d)
        raise


def same_file(a: os.stat_result, b: os.stat_result) -> bool:
    """Whether two stats name one file (device and inode)."""
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def host_smt_active() -> bool:
    """Whether this host runs with SMT on (``/sys/devices/system/cpu/smt/active``; False
    where the file is missing, as on hosts without SMT)."""
    try:
        with open("/sys/devices/system/cpu/smt/active", encoding="ascii") as f:
            return f.read().strip() == "1"
    except OSError:
        return False
