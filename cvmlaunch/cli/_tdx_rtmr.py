"""``measure tdx`` with a guest: the RTMR part, independent of the CLI framework.

Composes the file edge (:func:`cvmlaunch.files.map_file`, :mod:`cvmlaunch.fw_cfg_files`) and the
pure prediction (:func:`cvmlaunch.measure.tdx_rtmr.predict_tdx_rtmrs`); the command module only
declares options and calls :func:`predict_rtmrs`, :func:`rtmr_fields` and
:func:`event_log_text`.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cvmlaunch.image.ovmf import OvmfImage
    from cvmlaunch.measure.log import LogInput, MeasurementLog
    from cvmlaunch.measure.tdx_rtmr import TdxRtmrPrediction

__all__ = [
    "GUEST_OPTIONS",
    "diff_event_logs",
    "event_log_rtmrs",
    "event_log_text",
    "is_event_log",
    "launch_log_rtmrs",
    "predict_rtmrs",
    "rtmr_fields",
    "rtmr_log_parts",
    "verify_event_log",
]

#: The options that ask for RTMRs (any of them given, or --kernel, turns the prediction on).
GUEST_OPTIONS = (
    "memory",
    "kernel",
    "initrd",
    "append",
    "acpi",
    "kernel_loading",
    "secure_boot_vars",
    "edk2",
    "stub_measures",
    "event_log",
)


def predict_rtmrs(
    image: OvmfImage,
    *,
    memory: str | None,
    kernel: str,
    initrd: str | None,
    append: str,
    acpi: str | None,
    kernel_loading: str | None,
    secure_boot_vars: str | None,
    edk2: str | None,
    stub_measures: str = "auto",
) -> TdxRtmrPrediction:
    """Read the guest's inputs and predict RTMR0-2.

    Args:
        memory: QEMU ``-m`` syntax (``4G``, ``4096``); required.
        kernel, initrd: paths (mapped, not read whole).
        acpi: a directory with ``etc/table-loader``, ``etc/acpi/rsdp``, ``etc/acpi/tables``
            (plain files or the sysfs ``by_name/<name>/raw`` layout); None: no RTMR0.
        kernel_loading: ``patched`` / ``raw`` / None (from the firmware).
        secure_boot_vars: a directory of PK, KEK, db, dbx, SecureBoot; None: the image's own.
        edk2: ``YYYY.MM`` of the firmware's edk2 release; None: from the image.
        stub_measures: ``yes``/``no``: whether the kernel's EFI stub measures into RTMR2;
            ``auto``: told from the kernel.

    Raises:
        ConfigError: a missing ``--memory``, a bad option value, a missing ACPI blob.
        ImageError: unreadable or malformed inputs.
        LayoutError: a memory size the TD HOB cannot be built for.
    """
    from cvmlaunch.errors import ConfigError
    from cvmlaunch.files import map_file
    from cvmlaunch.fw_cfg_files import read_fw_cfg_dir, read_uefi_variables
    from cvmlaunch.image.tdvf_features import Edk2Release
    from cvmlaunch.launch_settings import parse_size
    from cvmlaunch.measure.tdx_rtmr import (
        ACPI_BLOB_NAMES,
        SECURE_BOOT_VARIABLES,
        AcpiBlobs,
        KernelLoading,
        predict_tdx_rtmrs,
    )

    if memory is None:
        raise ConfigError("--memory is needed with --kernel (the TD HOB and RTMR0 depend on it)")
    memory_size = parse_size(memory)
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
        kernel_data = stack.enter_context(map_file(kernel))
        initrd_data = None if initrd is None else stack.enter_context(map_file(initrd))
        return predict_tdx_rtmrs(
            image,
            memory_size=memory_size,
            kernel=kernel_data,
            initrd=initrd_data,
            cmdline=append,
            acpi=blobs,
            secure_boot=secure_boot,
            kernel_loading=loading,
            release=release,
            kernel_name=kernel,
            stub_measures=None if stub is None else bool(stub),
        )


def rtmr_log_parts(
    prediction: TdxRtmrPrediction, guest: dict[str, Any]
) -> tuple[tuple[LogInput, ...], dict[str, Any]]:
    """The launch log's header inputs (kernel, initrd, command line, ACPI blobs: base name,
    size, SHA-256, SHA-384) and ``rtmr_*`` settings that decide the RTMR events
    (docs/log-format.md, "RTMR events"), from ``measure tdx``'s guest options."""
    import hashlib

    from cvmlaunch.files import map_file
    from cvmlaunch.fw_cfg_files import read_fw_cfg_dir
    from cvmlaunch.launch_settings import parse_size
    from cvmlaunch.measure.log import LogInput, cmdline_input
    from cvmlaunch.measure.log_rtmr import ACPI_ROLES
    from cvmlaunch.measure.tdx_rtmr import ACPI_BLOB_NAMES, stub_uses_cc_measurement
    from cvmlaunch.plan.sev_hashes import cmdline_bytes

    def item(role: str, name: str, data: Any) -> LogInput:
        return LogInput(
            role=role,
            name=name,
            size=len(data),
            sha256=hashlib.sha256(data).digest(),
            sha384=hashlib.sha384(data).digest(),
        )

    inputs = []
    stub = {"yes": True, "no": False}.get(str(guest.get("stub_measures", "auto")).lower())
    for role in ("kernel", "initrd"):
        path = guest.get(role)
        if path is not None:
            with map_file(path) as data:
                inputs.append(item(role, path, data))
                if role == "kernel" and stub is None:
                    stub = stub_uses_cc_measurement(data)
    inputs.append(cmdline_input(cmdline_bytes(guest.get("append") or "")))
    if guest.get("acpi") is not None and prediction.rtmrs[0] is not None:
        files = read_fw_cfg_dir(guest["acpi"], ACPI_BLOB_NAMES)
        inputs += [item(ACPI_ROLES[n], n.rsplit("/", 1)[-1], files[n]) for n in ACPI_BLOB_NAMES]
    settings = {
        "rtmr_edk2": prediction.release.value,
        "rtmr_kernel_loading": prediction.kernel_loading.value,
        "rtmr_memory": parse_size(guest["memory"]),
        "rtmr_secure_boot": "image" if guest.get("secure_boot_vars") is None else "given",
        "rtmr_stub_measures": bool(stub),
    }
    return tuple(inputs), settings


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
