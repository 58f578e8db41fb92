"""``measure tdx`` with a guest: the RTMR part, independent of the CLI framework.

Maps the guest options through the file edge (:func:`cvmlaunch.files.map_file`,
:mod:`cvmlaunch.fw_cfg_files`) to a :class:`~cvmlaunch.measure.tdx_predict.TdxGuest`
(:func:`guest_of`); the library (:func:`cvmlaunch.measure.tdx_predict.predict`) predicts, and
renders what is not text (:meth:`~cvmlaunch.measure.tdx_rtmr.TdxRtmrPrediction.json_fields`,
:func:`cvmlaunch.measure.rtmr.cel_json`). Also ``log verify`` and ``log diff`` of RTMR event
logs (read by :func:`cvmlaunch.fw_cfg_files.read_rtmr_events`).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cvmlaunch.measure.tdx_predict import TdxGuest

__all__ = ["diff_event_logs", "guest_of", "verify_event_log"]


@contextlib.contextmanager
def guest_of(
    *,
    memory: str | None,
    kernel: str,
    initrd: str | None,
    append: str | None,
    acpi: str | None,
    kernel_loading: str | None,
    fw_cfg: str | None = None,
    smbios: str | None = None,
    boot_menu: bool = False,
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
        fw_cfg: a copy of every fw_cfg file QEMU serves (the same layouts); the ACPI blobs
            are taken from it when ``acpi`` is None.
        smbios: the SMBIOS table file, or a directory with it (``DMI``) and its entry point
            (``smbios_entry_point``); boot_menu: QEMU's ``-boot menu=on``.
        kernel_loading: ``patched`` / ``raw``; secure_boot_vars: a directory of PK, KEK, db,
            dbx, SecureBoot; edk2: ``YYYY.MM``; stub_measures: ``auto``/``yes``/``no``.

    Raises:
        ConfigError: a bad option value, a missing ACPI blob, no ``memory``.
        ImageError: unreadable inputs.
    """
    from cvmlaunch.errors import ConfigError
    from cvmlaunch.files import map_file
    from cvmlaunch.fw_cfg_files import (
        read_acpi_dir,
        read_fw_cfg_dir,
        read_smbios,
        read_uefi_variables,
    )
    from cvmlaunch.image.tdvf_features import Edk2Release
    from cvmlaunch.launch_settings import parse_size
    from cvmlaunch.measure.tdx_predict import TdxGuest
    from cvmlaunch.measure.tdx_rtmr import (
        ACPI_BLOB_NAMES,
        SECURE_BOOT_VARIABLES,
        AcpiBlobs,
        KernelLoading,
    )
    from cvmlaunch.measure.tdx_rtmr0 import FW_CFG_MEASURED

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
        blobs = AcpiBlobs(read_acpi_dir(acpi, ACPI_BLOB_NAMES))
    served = None
    if fw_cfg is not None:
        served = read_fw_cfg_dir(fw_cfg, (*ACPI_BLOB_NAMES, *(n for n, _ in FW_CFG_MEASURED)))
    table, entry_point = (None, None) if smbios is None else read_smbios(smbios)
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
            fw_cfg=served,
            boot_menu=boot_menu,
            smbios=table,
            smbios_entry_point=entry_point,
            secure_boot=secure_boot,
            kernel_loading=loading,
            release=release,
            stub_measures=None if stub is None else bool(stub),
            kernel_name=kernel,
            initrd_name=initrd or "initrd",
        )


def verify_event_log(path: str, *, as_json: bool = False) -> None:
    """``log verify`` of an RTMR event log: check every digest its event data fixes, replay,
    print RTMR0-3 (``-`` for a register the log has no event for: not predicted).

    Raises:
        CheckFailed: an event's digest contradicts its data (each is named on stderr).
        LogFormatError: not a CEL-JSON log of SHA-384 pcclient_std records.
    """
    import sys

    from cvmlaunch.errors import CheckFailed
    from cvmlaunch.fw_cfg_files import read_rtmr_events
    from cvmlaunch.measure.rtmr import inconsistent_events, present_rtmrs

    events = read_rtmr_events(path)
    problems = inconsistent_events(events)
    regs = present_rtmrs(events)
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
    from cvmlaunch.fw_cfg_files import read_rtmr_events
    from cvmlaunch.measure.rtmr import first_difference, replay

    ea, eb = read_rtmr_events(a), read_rtmr_events(b)
    first = first_difference(ea, eb)
    ra, rb = replay(ea), replay(eb)
    differing = [f"rtmr{i}" for i in range(len(ra)) if ra[i] != rb[i]]
    if as_json:
        print(json.dumps({"a": a, "b": b, "first_difference": first, "differing": differing}))
    else:
        print(first if first is not None else "the logs extend the same digests")
    if differing:
        raise CheckFailed(f"{', '.join(differing).upper()} differ")
