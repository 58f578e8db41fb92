"""``cvmlaunch log``: verify, compare and show launch measurement logs (docs/log-format.md).

``verify`` replays a log and checks every running digest (exit 1 naming the first record that
differs); ``diff`` names the first range (or header setting) where two logs diverge (exit 1
when they do); ``show`` prints a table.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import click

from cvmlaunch.cli._params import FILE, firmware_dir_option, resolve_firmware
from cvmlaunch.errors import CheckFailed, ConfigError, ImageError

TYPE_CHECKING = False  # imports for annotations only
if TYPE_CHECKING:
    from cvmlaunch.measure.log import ContentProvider, MeasurementLog

__all__ = ["DIFF", "SHOW", "VERIFY"]


def _read_log(path: str) -> MeasurementLog:
    from cvmlaunch.files import map_file
    from cvmlaunch.measure.log import parse_log

    with map_file(path) as data:
        try:
            text = str(data, "utf-8")
        except UnicodeDecodeError as exc:
            raise ImageError(f"not UTF-8 text (byte {exc.start})", source=path) from exc
    return parse_log(text, name=path)


@contextlib.contextmanager
def _contents(log: MeasurementLog, ovmf: str | None) -> Iterator[ContentProvider | None]:
    """The measured bytes rebuilt from the firmware and the header: SEV/SEV-ES logs (with
    ``--firmware``) and TDX logs (``--firmware``, or else the firmware the header names, which
    must match the header's hashes)."""
    from cvmlaunch.files import map_file
    from cvmlaunch.measure.log import Technology

    if log.header.technology is Technology.TDX:
        listed = log.header.input("firmware")
        path = ovmf if ovmf is not None else (listed.name if listed is not None else None)
        if path is None:
            yield None  # page_add-only logs replay without bytes; others say what is missing
            return
        if ovmf is None and not os.path.isfile(path):
            raise ConfigError(
                f"replaying this TDX log needs its firmware: {path!r} (named in the log "
                "header) is not found here; give --firmware FILE"
            )
        from cvmlaunch.image.ovmf import parse_ovmf
        from cvmlaunch.measure.tdx import check_log_input, tdvf_contents

        with map_file(path) as data:
            check_log_input(log.header, "firmware", data, name=path)
            yield tdvf_contents(log.header, parse_ovmf(data, name=path))
        return
    if ovmf is None or log.header.technology not in (Technology.SEV, Technology.SEV_ES):
        yield None
        return
    from cvmlaunch.image.ovmf import parse_ovmf
    from cvmlaunch.measure.sev import sev_contents

    with map_file(ovmf) as data:
        yield sev_contents(log.header, parse_ovmf(data, name=ovmf))


def verify(log_file: str, ovmf: str | None) -> None:
    """Run ``log verify`` (see :data:`VERIFY`)."""
    from cvmlaunch.measure.log import verify_log

    log = _read_log(log_file)
    with _contents(log, ovmf) as contents:
        digest = verify_log(log, contents)
    print(f"{log_file}: OK {len(log.entries)} records, digest {digest.hex()}")


@click.command(
    "verify",
    help="""Replay LOG and check every running digest and the final one.

Prints the final digest on success; exits 1 naming the first record that differs.""",
    short_help="Replay LOG and check every running digest and the final one.",
)
@click.argument("log_file", metavar="LOG", type=FILE)
@click.option(
    "--ovmf",
    "--firmware",
    "ovmf",
    type=FILE,
    metavar="FILE",
    help="the firmware, for SEV/SEV-ES and TDX logs (their replay needs the measured bytes; "
    "TDX defaults to the firmware the log header names)",
)
@firmware_dir_option()
def VERIFY(log_file: str, ovmf: str | None, firmware_dir: str | None) -> None:  # noqa: N802
    verify(log_file, None if ovmf is None else resolve_firmware(ovmf, firmware_dir))


def diff(a: str, b: str) -> None:
    """Run ``log diff`` (see :data:`DIFF`)."""
    from cvmlaunch.measure.log import diff_logs, host_differences

    log_a, log_b = _read_log(a), _read_log(b)
    difference = diff_logs(log_a, log_b)
    if difference is None:
        print("the logs describe the same launch")
        for detail in host_differences(log_a, log_b):
            print(f"  {detail.what} differs (not measured): {detail.a} vs {detail.b}")
        return
    raise CheckFailed(f"logs differ: {difference.describe()}")


@click.command(
    "diff",
    help="Name the first place where logs A and B diverge (exit 1), or say they match.",
    short_help="Name the first place where logs A and B diverge (exit 1), or say they match.",
)
@click.argument("a", metavar="A", type=FILE)
@click.argument("b", metavar="B", type=FILE)
def DIFF(a: str, b: str) -> None:  # noqa: N802
    diff(a, b)


def _short(value: bytes | None, width: int = 16) -> str:
    return "-" if value is None else value.hex()[:width]


def show(log_file: str, full: bool) -> None:
    """Run ``log show`` (see :data:`SHOW`)."""
    log = _read_log(log_file)
    width = 96 if full else 16
    h = log.header
    print(f"{h.technology.value} ({h.algorithm}), written by {h.tool} {h.tool_version}")
    from cvmlaunch.measure.log import HOST_DETAILS

    for key, value in h.settings.items():
        shown: object = value
        if isinstance(value, int) and not isinstance(value, bool) and key != "vcpus":
            shown = hex(value) if not key.endswith("size") else value
        note = "  (host detail, not measured)" if key in HOST_DETAILS else ""
        print(f"  {key} = {shown}{note}")
    for item in h.inputs:
        digest = item.sha256 if item.sha256 is not None else item.sha384
        print(f"  input {item.role}: {item.name} ({item.size} bytes) {_short(digest, width)}")
    if h.initial_digest is not None:
        print(f"  initial digest {_short(h.initial_digest, width)}")
    rows = [("#", "op", "GPA", "size", "type", "meas", "source", "contents", "digest after")]
    for e in log.entries:
        rows.append(
            (
                str(e.seq),
                e.op.value,
                f"{e.gpa:#x}",
                f"{e.size:#x}",
                e.page_type.name,
                "yes" if e.measured else "no",
                e.provenance.describe(),
                _short(e.content_sha384, width),
                _short(e.digest_after, width),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    print(f"final digest {log.footer.digest.hex()}")


@click.command(
    "show",
    help="Print LOG as a table: one line per populated range.",
    short_help="Print LOG as a table: one line per populated range.",
)
@click.argument("log_file", metavar="LOG", type=FILE)
@click.option("--full", is_flag=True, help="print whole digests instead of 16-digit prefixes")
def SHOW(log_file: str, full: bool) -> None:  # noqa: N802
    show(log_file, full)
