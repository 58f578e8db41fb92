"""The one entry point of TDX prediction: MRTD of TDVF firmware, and RTMR0-2 of a direct-boot
TD, with their launch log.

Rule 1: one place resolves what a user may leave out. :class:`TdxRequest` and
:class:`TdxGuest` hold the settings as given (None: the default); their docstrings list every
default with its source. Callers (the CLI) map their inputs to a request and render the
result.

Rule 2: :func:`predict` only composes: QEMU's plan folded into MRTD
(:func:`cvmlaunch.measure.tdx.measure_tdvf`), the RTMR events
(:func:`cvmlaunch.measure.tdx_rtmr.predict_tdx_rtmrs`) and the log
(:func:`cvmlaunch.measure.tdx.tdx_log`): no measurement logic of its own. Inputs come as
buffers (:mod:`cvmlaunch.files` maps them); nothing here touches the OS.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from cvmlaunch.launch_identity import TdxLaunchIdentity
from cvmlaunch.layout import Buffer
from cvmlaunch.measure.tdx import PageOrder, TdxMeasurement, measure_tdvf, tdx_log

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from cvmlaunch.image.tdvf_features import Edk2Release
    from cvmlaunch.measure.log import LogInput, MeasurementLog, SettingValue
    from cvmlaunch.measure.tdx_rtmr import AcpiBlobs, KernelLoading, TdxRtmrPrediction

__all__ = ["PROFILE", "TdxGuest", "TdxPrediction", "TdxRequest", "predict"]

#: The launch-plan profile predicted: QEMU's (docs/log-format.md, ``tdx``).
PROFILE = "qemu"


@dataclass(frozen=True, slots=True)
class TdxGuest:
    """A direct-boot guest (QEMU ``-kernel``, ``-initrd``, ``-append``, ``-m``): what RTMR0-2
    depend on besides the firmware.

    Defaults (:func:`cvmlaunch.measure.tdx_rtmr.predict_tdx_rtmrs` applies them):

    * ``cmdline``: empty (no ``-append``).
    * ``acpi``: None: taken from ``fw_cfg``; without both, RTMR0 is not predicted (it
      measures QEMU's ACPI tables), with a note.
    * ``fw_cfg``, ``smbios``: None: RTMR0 of edk2 >= 2025.05 firmware, which also measures
      fw_cfg items and the SMBIOS table, is not predicted, with a note.
    * ``smbios_entry_point``: None: SMBIOS 3.x hashing (the same bytes as 2.x for a table that
      ends with its type-127 structure).
    * ``boot_menu``: off (QEMU's ``-boot menu=`` default).
    * ``secure_boot``: None: the variables the image's own varstore holds.
    * ``kernel_loading``: RAW for firmware that loads ``etc/boot/kernel`` (edk2 >= 2025.02);
      else it must be given (QEMU < 10.2 patches the setup header, >= 10.2 does not).
    * ``release``: the edk2 release the image shows; asked for when it cannot be told.
    * ``stub_measures``: told from the kernel (does its EFI stub use
      EFI_CC_MEASUREMENT_PROTOCOL).

    Args:
        kernel, initrd: the images as given to QEMU (buffers, not copied).
        memory: guest RAM in bytes (the TD HOB, measured into RTMR0, describes it).
        kernel_name, initrd_name: their names in errors and in the log header.
    """

    kernel: Buffer
    memory: int
    initrd: Buffer | None = None
    cmdline: str = ""
    acpi: AcpiBlobs | None = None
    fw_cfg: Mapping[str, bytes] | None = None
    boot_menu: bool = False
    smbios: bytes | None = None
    smbios_entry_point: bytes | None = None
    secure_boot: Mapping[str, bytes] | None = None
    kernel_loading: KernelLoading | None = None
    release: Edk2Release | None = None
    stub_measures: bool | None = None
    kernel_name: str = "kernel"
    initrd_name: str = "initrd"


@dataclass(frozen=True, slots=True)
class TdxRequest:
    """What to predict for a TD launched by QEMU with TDVF firmware (``-bios``).

    Defaults:

    * ``order``: PER_PAGE, each page's PAGE.ADD then its MR.EXTENDs (Linux >= 6.16,
      QEMU >= 10.1); TWO_PASS is the older order (QEMU 8.x, pre-upstream KVM TDX).
    * ``owner``: MRCONFIGID, MROWNER and MROWNERCONFIG all zero (QEMU's default); recorded in
      the settings, never measured.
    * ``guest``: None: MRTD only (no RTMR is predicted).

    Args:
        log: build the launch log too (with a guest, its RTMR events and footer RTMRs).
    """

    order: PageOrder = PageOrder.PER_PAGE
    owner: TdxLaunchIdentity = field(default_factory=TdxLaunchIdentity)
    guest: TdxGuest | None = None
    log: bool = False


@dataclass(frozen=True, slots=True)
class TdxPrediction:
    """The result of :func:`predict`.

    Args:
        measurement: MRTD, the page order, the per-region records and the operation counts.
        firmware_sha256: the firmware's SHA-256 (as the JSON output reports it).
        settings: the settings that describe the launch (order, profile, the owner values).
        rtmrs: RTMR0-2 and their events, with a guest.
        log: the launch log, when the request asked for one.
    """

    measurement: TdxMeasurement
    firmware_sha256: bytes
    settings: dict[str, SettingValue]
    rtmrs: TdxRtmrPrediction | None = None
    log: MeasurementLog | None = None

    def json_doc(self, firmware: str) -> dict[str, Any]:
        """The JSON output of ``measure tdx`` (``firmware``: the firmware's name): MRTD, the
        settings, the firmware's SHA-256, the operation counts, the log's record count and,
        with a guest, the RTMRs (:meth:`~cvmlaunch.measure.tdx_rtmr.TdxRtmrPrediction.
        json_fields`)."""
        m = self.measurement
        doc: dict[str, Any] = {
            "technology": "tdx",
            "digest": m.mrtd.hex(),
            "mrtd": m.mrtd.hex(),
            "settings": self.settings,
            "firmware": {"name": firmware, "sha256": self.firmware_sha256.hex()},
            "page_add": m.page_adds,
            "mr_extend": m.mr_extends,
        }
        if self.log is not None:
            doc["log_records"] = len(m.log)
        if self.rtmrs is not None:
            doc |= self.rtmrs.json_fields()
        return doc


def _input(role: str, name: str, data: Buffer) -> LogInput:
    from cvmlaunch.measure.log import LogInput

    return LogInput(
        role=role,
        name=name,
        size=len(data),
        sha256=hashlib.sha256(data).digest(),
        sha384=hashlib.sha384(data).digest(),
    )


def _guest_log_parts(
    guest: TdxGuest, rtmrs: TdxRtmrPrediction
) -> tuple[list[LogInput], dict[str, SettingValue]]:
    """The log header's inputs of a guest (kernel, initrd, command line; when RTMR0 was
    predicted, the ACPI blobs and, for edk2 >= 202505, every measured fw_cfg file QEMU served
    and the SMBIOS table) and the ``rtmr_*`` settings that decide the RTMR events
    (docs/log-format.md, "RTMR events")."""
    from cvmlaunch.measure.log import cmdline_input
    from cvmlaunch.measure.log_rtmr import (
        ACPI_ROLES,
        FW_CFG_ROLES,
        SECURE_BOOT_ROLES,
        SMBIOS_ENTRY_POINT_ROLE,
        SMBIOS_ROLE,
    )
    from cvmlaunch.measure.tdx_rtmr import ACPI_BLOB_NAMES, stub_uses_cc_measurement
    from cvmlaunch.measure.tdx_rtmr0 import Rtmr0Host
    from cvmlaunch.plan.sev_hashes import cmdline_bytes

    inputs = [_input("kernel", guest.kernel_name, guest.kernel)]
    if guest.initrd is not None:
        inputs.append(_input("initrd", guest.initrd_name, guest.initrd))
    inputs.append(cmdline_input(cmdline_bytes(guest.cmdline)))
    newer = rtmrs.release.measures_fw_cfg_and_smbios
    if rtmrs.rtmrs[0] is not None:
        host = Rtmr0Host(guest.acpi, guest.fw_cfg).with_acpi_from_fw_cfg()
        assert host.acpi is not None  # RTMR0 was predicted from them
        files = host.acpi.files
        inputs += [_input(ACPI_ROLES[n], n.rsplit("/", 1)[-1], files[n]) for n in ACPI_BLOB_NAMES]
        if newer and guest.fw_cfg is not None and guest.smbios is not None:
            served = [(n, guest.fw_cfg[n]) for n in FW_CFG_ROLES if guest.fw_cfg.get(n)]
            inputs += [_input(FW_CFG_ROLES[n], n.rsplit("/", 1)[-1], data) for n, data in served]
            inputs.append(_input(SMBIOS_ROLE, "DMI", guest.smbios))
            if guest.smbios_entry_point is not None:
                ep = guest.smbios_entry_point
                inputs.append(_input(SMBIOS_ENTRY_POINT_ROLE, "smbios_entry_point", ep))
    if rtmrs.rtmrs[0] is not None and guest.secure_boot is not None:
        given = guest.secure_boot
        inputs += [
            _input(SECURE_BOOT_ROLES[n], n, given[n]) for n in SECURE_BOOT_ROLES if n in given
        ]
    stub = guest.stub_measures
    settings: dict[str, SettingValue] = {
        "rtmr_edk2": rtmrs.release.value,
        "rtmr_kernel_loading": rtmrs.kernel_loading.value,
        "rtmr_memory": guest.memory,
        "rtmr_secure_boot": "image" if guest.secure_boot is None else "inputs",
        "rtmr_stub_measures": stub_uses_cc_measurement(guest.kernel) if stub is None else stub,
    }
    if newer:
        settings["rtmr_boot_menu"] = guest.boot_menu
    return inputs, settings


def predict(firmware: Buffer, request: TdxRequest, *, name: str = "firmware") -> TdxPrediction:
    """MRTD of the TDVF image ``firmware`` and, with a guest, its RTMR0-2.

    Args:
        firmware: the whole flat TDVF image (bytes or a mapped memoryview; not copied).
        request: the settings (defaults: :class:`TdxRequest`, :class:`TdxGuest`).
        name: the firmware's name in errors and in the log header.

    Raises:
        ImageError: not a TDVF image, metadata QEMU rejects, a kernel that is not an EFI stub.
        ConfigError: a release or kernel loading that cannot be told and was not given.
        LayoutError: a memory size the TD HOB cannot be built for.
    """
    from cvmlaunch.measure.reference import identity_settings

    measurement = measure_tdvf(firmware, name=name, order=request.order)
    sha256 = hashlib.sha256(firmware).digest()
    owner = identity_settings(tdx=request.owner)
    rtmrs = None
    guest = request.guest
    if guest is not None:
        from cvmlaunch.image.ovmf import parse_ovmf
        from cvmlaunch.measure.tdx_rtmr import predict_tdx_rtmrs

        rtmrs = predict_tdx_rtmrs(
            parse_ovmf(firmware, name=name),
            memory_size=guest.memory,
            kernel=guest.kernel,
            initrd=guest.initrd,
            cmdline=guest.cmdline,
            acpi=guest.acpi,
            fw_cfg=guest.fw_cfg,
            boot_menu=guest.boot_menu,
            smbios=guest.smbios,
            smbios_entry_point=guest.smbios_entry_point,
            secure_boot=guest.secure_boot,
            kernel_loading=guest.kernel_loading,
            release=guest.release,
            kernel_name=guest.kernel_name,
            stub_measures=guest.stub_measures,
        )
    settings: dict[str, SettingValue] = {
        "order": measurement.order.value,
        "profile": PROFILE,
        **owner,
    }
    log = None
    if request.log:
        from cvmlaunch import __version__

        inputs = [_input("firmware", name, firmware)]
        header: dict[str, SettingValue] = {"profile": PROFILE, **owner}
        if guest is not None and rtmrs is not None:
            guest_inputs, rtmr_settings = _guest_log_parts(guest, rtmrs)
            inputs += guest_inputs
            header |= rtmr_settings
        log = tdx_log(
            measurement,
            inputs=tuple(inputs),
            tool_version=__version__,
            settings=header,
            events=() if rtmrs is None else rtmrs.events,
        )
    return TdxPrediction(measurement, sha256, settings, rtmrs, log)
