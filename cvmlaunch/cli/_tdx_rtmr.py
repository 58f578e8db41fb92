"""``measure tdx`` with a guest: the RTMR part, independent of the CLI framework.

Maps the guest options through the file edge (:func:`cvmlaunch.files.map_file`,
:mod:`cvmlaunch.fw_cfg_files`) to a :class:`~cvmlaunch.measure.tdx_predict.TdxGuest`
(:func:`guest_of`), and renders the prediction (:func:`rtmr_fields`, :func:`event_log_text`);
the library (:func:`cvmlaunch.measure.tdx_predict.predict`) predicts. Also the ``log verify``,
``log diff`` and ``reference-values`` helpers for RTMR event logs.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cvmlaunch.measure.log import MeasurementLog
    from cvmlaunch.measure.tdx_predict import TdxGuest
    from cvmlaunch.measure.tdx_rtmr import TdxRtmrPrediction

__all__ = [
    "diff_event_logs",
    "event_log_rtmrs",
    "event_log_text",
    "guest_of",
    "is_event_log",
    "launch_log_rtmrs",
    "rtmr_fields",
    "verify_event_log",
]


@contextlib.contextmanager
def guest_of(
    *,
    memory: str | None,
    kernel: str,
    initrd: str | None,
    append: str | None,
    acpi: str | None,
    kernel_loading: str | None,
    secure_boot_vars: str | None,
    edk2: str | None,
    stub_measures: str = "auto",
) -> Iterator[TdxGuest]:
    """``measure tdx``'s guest options as a :class:`~cvmlaunch.measure.tdx_predict.TdxGuest`,
    with the kernel and initrd mapped while the context lasts.

    Args:
        memory: QEMU ``-m`` syntax (``4G``, ``4096``).
        kernel, initrd: paths (mapped, not read whole).
        append: the command line (None: empty).
        acpi: a directory with ``etc/table-loader``, ``etc/acpi/rsdp``, ``etc/acpi/tables``
            (plain files or the sysfs ``by_name/<name>/raw`` layout).
        kernel_loading: ``patched`` / ``raw``; secure_boot_vars: a directory of PK, KEK, db,
            dbx, SecureBoot; edk2: ``YYYY.MM``; stub_measures: ``auto``/``yes``/``no``.

    Raises:
        ConfigError: a bad option value, a missing ACPI blob, no ``memory``.
        ImageError: unreadable inputs.
    """
    from cvmlaunch.errors import ConfigError
    from cvmlaunch.files import map_file
    from cvmlaunch.fw_cfg_files import read_fw_cfg_dir, read_uefi_variables
    from cvmlaunch.image.tdvf_features import Edk2Release
    from cvmlaunch.launch_settings import parse_size
    from cvmlaunch.measure.tdx_predict import TdxGuest
    from cvmlaunch.measure.tdx_rtmr import (
        ACPI_BLOB_NAMES,
        SECURE_BOOT_VARIABLES,
        AcpiBlobs,
        KernelLoading,
    )

    if memory is None:
        raise ConfigError("--memory is needed with --kernel (the TD HOB and RTMR0 depend on it)")
    size = parse_size(memory)
    loading = None if kernel_loading is None else KernelLoading.parse(kernel_loading)
    try:
        release = None if edk2 is None else Edk2Release.parse(edk2)
    except ValueError as exc:
        raise ConfigError(f"--edk2: {exc}") from None
    stub = {"auto": None, "yes": True, "no": False}.get(stub_measures.lower(), "bad")
    if stub == "bad":
        raise ConfigError(f"--stub-measures {stub_measures!r}: expected auto, yes or no")
    blobs = None
    if acpi is not None:
        files = read_fw_cfg_dir(acpi, ACPI_BLOB_NAMES)
        missing = [n for n in ACPI_BLOB_NAMES if n not in files]
        if missing:
            raise ConfigError(
                f"--acpi {acpi}: no {', '.join(missing)} (as DIR/NAME or DIR/NAME/raw)"
            )
        blobs = AcpiBlobs(files)
    secure_boot = None
    if secure_boot_vars is not None:
        secure_boot = read_uefi_variables(secure_boot_vars, SECURE_BOOT_VARIABLES)
    with contextlib.ExitStack() as stack:
        yield TdxGuest(
            kernel=stack.enter_context(map_file(kernel)),
            memory=size,
            initrd=None if initrd is None else stack.enter_context(map_file(initrd)),
            cmdline=append or "",
            acpi=blobs,
            secure_boot=secure_boot,
            kernel_loading=loading,
            release=release,
            stub_measures=None if stub is None else bool(stub),
            kernel_name=kernel,
            initrd_name=initrd or "initrd",
        )


def rtmr_fields(prediction: TdxRtmrPrediction) -> dict[str, Any]:
    """The JSON members for the RTMRs: ``rtmr0`` (hex or null), ``rtmr1``, ``rtmr2``, and
    ``rtmr_model`` (edk2 release, kernel loading, event count, notes)."""
    r0, r1, r2 = prediction.rtmrs
    return {
        "rtmr0": None if r0 is None else r0.hex(),
        "rtmr1": r1.hex(),
        "rtmr2": r2.hex(),
        "rtmr_model": {
            "edk2": prediction.release.value,
            "kernel_loading": prediction.kernel_loading.value,
            "events": len(prediction.events),
            "notes": list(prediction.notes),
        },
    }


def event_log_text(prediction: TdxRtmrPrediction) -> str:
    """The events as TCG CEL-JSON (one array, canonical key order), newline-terminated."""
    from cvmlaunch.measure.rtmr import events_to_cel

    return json.dumps(events_to_cel(prediction.events), sort_keys=True, indent=1) + "\n"


def is_event_log(path: str) -> bool:
    """Whether ``path`` holds an RTMR event log (CEL-JSON: a JSON array) rather than a launch
    log (JSON Lines objects): ``[`` then ``{`` or ``]``. Anything else, unreadable files
    included, is left to the launch-log reader to report."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        return False
    text = head.lstrip()
    return text[:1] == b"[" and text[1:].lstrip()[:1] in (b"{", b"]")


def _read_events(path: str) -> tuple[Any, ...]:
    from cvmlaunch.errors import LogFormatError
    from cvmlaunch.files import read_small
    from cvmlaunch.measure.rtmr import events_from_cel

    data = read_small(path, "RTMR event log", 64 << 20)
    try:
        records = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise LogFormatError(f"{path}: not JSON ({exc})") from None
    try:
        return events_from_cel(records)
    except LogFormatError as exc:
        raise LogFormatError(f"{path}: {exc}") from None


def verify_event_log(path: str, *, as_json: bool = False) -> None:
    """``log verify`` of an RTMR event log: check every digest its event data fixes, replay,
    print RTMR0-3 (``-`` for a register the log has no event for: not predicted).

    Raises:
        CheckFailed: an event's digest contradicts its data (each is named on stderr).
        LogFormatError: not a CEL-JSON log of SHA-384 pcclient_std records.
    """
    import sys

    from cvmlaunch.errors import CheckFailed
    from cvmlaunch.measure.rtmr import inconsistent_events, replay

    events = _read_events(path)
    problems = inconsistent_events(events)
    present = {e.rtmr for e in events}
    regs = [r if i in present else None for i, r in enumerate(replay(events))]
    if as_json:
        doc = {f"rtmr{i}": None if r is None else r.hex() for i, r in enumerate(regs)}
        print(json.dumps({"log": path, "events": len(events), "problems": problems, **doc}))
    else:
        for i, r in enumerate(regs):
            print(f"rtmr{i} {'-' if r is None else r.hex()}")
    for line in problems:
        print(f"cvmlaunch: {path}: {line}", file=sys.stderr)
    if problems:
        raise CheckFailed(f"{len(problems)} event(s) of {path} do not match their data")


def diff_event_logs(a: str, b: str, *, as_json: bool = False) -> None:
    """``log diff`` of two RTMR event logs: the first event that differs, per RTMR.

    Raises:
        CheckFailed: the logs replay to different RTMRs.
    """
    from cvmlaunch.errors import CheckFailed
    from cvmlaunch.measure.rtmr import first_difference, replay

    ea, eb = _read_events(a), _read_events(b)
    first = first_difference(ea, eb)
    ra, rb = replay(ea), replay(eb)
    differing = [f"rtmr{i}" for i in range(len(ra)) if ra[i] != rb[i]]
    if as_json:
        print(json.dumps({"a": a, "b": b, "first_difference": first, "differing": differing}))
    else:
        print(first if first is not None else "the logs extend the same digests")
    if differing:
        raise CheckFailed(f"{', '.join(differing).upper()} differ")


def event_log_rtmrs(path: str) -> tuple[bytes | None, ...]:
    """RTMR0-3 an RTMR event log replays to, None for a register it has no event for (not
    predicted, so not to be checked).

    Raises:
        CheckFailed: an event's digest contradicts its data.
        LogFormatError: not a CEL-JSON RTMR event log.
    """
    from cvmlaunch.errors import CheckFailed
    from cvmlaunch.measure.rtmr import inconsistent_events, replay

    events = _read_events(path)
    problems = inconsistent_events(events)
    if problems:
        raise CheckFailed(f"{path}: {problems[0]}")
    regs = replay(events)
    present = {e.rtmr for e in events}
    return tuple(r if i in present else None for i, r in enumerate(regs))


def launch_log_rtmrs(log: MeasurementLog, name: str) -> tuple[bytes | None, ...]:
    """RTMR0-3 a launch log's RTMR events replay to (None for a register no event extends),
    after checking every digest the events' own data fixes and the footer's RTMRs.

    Raises:
        CheckFailed: an event contradicts its data, or the events do not replay to the footer.
    """
    from cvmlaunch.errors import CheckFailed
    from cvmlaunch.measure.rtmr import inconsistent_events, replay

    problems = inconsistent_events(log.events)
    if problems:
        raise CheckFailed(f"{name}: RTMR {problems[0]}")
    present = {e.rtmr for e in log.events}
    regs = tuple(r if i in present else None for i, r in enumerate(replay(log.events)))
    if regs != log.footer.rtmrs:
        raise CheckFailed(f"{name}: the RTMR events do not replay to the footer's RTMRs")
    return regs
