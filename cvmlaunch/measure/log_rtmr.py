"""Checking a TDX launch log's RTMR events (format version 4, docs/log-format.md).

Rule 1: without inputs, what the log alone decides: every event whose digest its own data
fixes (separators, EFI actions, Secure Boot and boot variables) is checked against that data,
and the events are replayed (:func:`cvmlaunch.measure.rtmr.replay`) to the footer's RTMRs.

Rule 2: with the firmware and the kernel (and the initrd, the command line and the ACPI blobs
the header lists), the events are predicted again
(:func:`cvmlaunch.measure.tdx_rtmr.predict_tdx_rtmrs`) from the header's ``rtmr_*`` settings,
and every field of every event must equal the prediction's: RTMR, event type, description,
digest, event data. What a missing input leaves unchecked is listed.

Pure: a :class:`~cvmlaunch.measure.log_checker.Checker` and buffers in, findings out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cvmlaunch.errors import CvmLaunchError
from cvmlaunch.layout import Buffer
from cvmlaunch.measure.log_checker import Checker, SettingsView
from cvmlaunch.measure.rtmr import (
    RTMR_COUNT,
    RtmrEvent,
    event_record,
    inconsistent_events,
    replay,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cvmlaunch.image.ovmf import OvmfImage

__all__ = [
    "ACPI_ROLES",
    "FW_CFG_ROLES",
    "RTMR_SETTINGS",
    "SECURE_BOOT_ROLES",
    "SMBIOS_ENTRY_POINT_ROLE",
    "SMBIOS_ROLE",
    "check_rtmr_events",
    "event_where",
]

#: The header inputs of the ACPI fw_cfg blobs, by role (the blob names of
#: :data:`cvmlaunch.measure.tdx_rtmr.ACPI_BLOB_NAMES`).
ACPI_ROLES = {
    "etc/table-loader": "acpi_table_loader",
    "etc/acpi/rsdp": "acpi_rsdp",
    "etc/acpi/tables": "acpi_tables",
}
#: The header inputs of the fw_cfg files edk2 >= 202505 measures, by role (the files of
#: :data:`cvmlaunch.measure.tdx_rtmr0.FW_CFG_MEASURED`; the numbered BootMenu item is the
#: setting ``rtmr_boot_menu``). A log that predicted such an RTMR0 lists every one QEMU served.
FW_CFG_ROLES = {
    "etc/extra-pci-roots": "fw_cfg_extra_pci_roots",
    "etc/boot-menu-wait": "fw_cfg_boot_menu_wait",
    "etc/reserved-memory-end": "fw_cfg_reserved_memory_end",
    "opt/ovmf/X-PciMmio64Mb": "fw_cfg_pci_mmio64_mb",
    "bootorder": "fw_cfg_bootorder",
}
#: The header inputs of the SMBIOS table and its entry point (edk2 >= 202505).
SMBIOS_ROLE = "smbios"
SMBIOS_ENTRY_POINT_ROLE = "smbios_entry_point"
#: The header inputs of the Secure Boot variables given at measure time (setting
#: ``rtmr_secure_boot`` = ``inputs``), by variable name; a variable not listed was absent.
SECURE_BOOT_ROLES = {n: f"secure_boot_{n}" for n in ("SecureBoot", "PK", "KEK", "db", "dbx")}
#: The header settings that, with the inputs, decide the RTMR events.
RTMR_SETTINGS = (
    "rtmr_boot_menu",
    "rtmr_edk2",
    "rtmr_kernel_loading",
    "rtmr_memory",
    "rtmr_secure_boot",
    "rtmr_stub_measures",
)
#: Appended to a finding about a predicted event: what decides it.
_DECIDED = f" (decided by the inputs and the settings {', '.join(RTMR_SETTINGS)})"
_FIELDS = ("rtmr", "event_type", "description", "digest", "event_data")


def event_where(n: int, event: RtmrEvent) -> str:
    """How a finding names an event: ``rtmr_event 12 (RTMR2 command line)``."""
    return f"rtmr_event {n} ({event.description})"


def check_rtmr_events(
    c: Checker, s: SettingsView, found: Mapping[str, Buffer], image: OvmfImage | None
) -> None:
    """Check the log's RTMR events (module doc); findings and unchecked parts go to ``c``."""
    events = c.log.events
    if not events:
        return
    for line in inconsistent_events(events):
        n = int(line.split()[1])
        c.find(event_where(n, events[n]), "event_data", line.split(": ", 1)[1])
    regs = replay(events)
    present = {e.rtmr for e in events}
    for i in range(RTMR_COUNT):
        want = regs[i] if i in present else None
        have = c.log.footer.rtmrs[i]
        if want != have:
            last = [n for n, e in enumerate(events) if e.rtmr == i]
            named = f" (last event: {event_where(last[-1], events[last[-1]])})" if last else ""
            c.find(
                "footer",
                f"rtmrs[{i}]",
                f"the log says {'null' if have is None else have.hex()}, its RTMR{i} events "
                f"replay to {'null' if want is None else want.hex()}{named}",
            )
    _check_against_inputs(c, s, found, image, events)


def _check_against_inputs(
    c: Checker,
    s: SettingsView,
    found: Mapping[str, Buffer],
    image: OvmfImage | None,
    events: Sequence[RtmrEvent],
) -> None:
    from cvmlaunch.image.tdvf_features import Edk2Release
    from cvmlaunch.measure.tdx_rtmr import AcpiBlobs, KernelLoading, predict_tdx_rtmrs

    memory = s.get("rtmr_memory", int)
    loading = s.get("rtmr_kernel_loading", str)
    release = s.get("rtmr_edk2", str)
    stub = s.get("rtmr_stub_measures", bool)
    secure_boot = s.get("rtmr_secure_boot", str)
    if secure_boot not in (None, "image", "inputs", "given"):
        s.bad("rtmr_secure_boot", f"{secure_boot!r} is not image, inputs or given")
        secure_boot = None
    missing = [
        role
        for role in ("firmware", "kernel", "initrd", "cmdline")
        if (role == "kernel" or c.header.input(role) is not None) and role not in found
    ]
    cmdline = found.get("cmdline")
    listed = c.header.input("cmdline")
    if cmdline is None and listed is not None and listed.size == 1:
        cmdline, missing = b"\0", [r for r in missing if r != "cmdline"]  # the empty line
    if image is None and "firmware" not in missing:
        missing.insert(0, "firmware")
    if missing or None in (memory, loading, release, stub, secure_boot) or image is None:
        if missing:
            c.unchecked.append(
                "the RTMR events' digests and data against the inputs: give the "
                + ", ".join("--append" if r == "cmdline" else r for r in missing)
            )
        return
    acpi_roles = [r for r in ACPI_ROLES.values() if c.header.input(r) is not None]
    blobs = None
    if acpi_roles and all(r in found for r in ACPI_ROLES.values()):
        blobs = AcpiBlobs({name: bytes(found[role]) for name, role in ACPI_ROLES.items()})
    newer = Edk2Release.parse(release).measures_fw_cfg_and_smbios if _is_release(release) else False
    boot_menu = s.get("rtmr_boot_menu", bool, required=newer)
    fw_cfg, smbios, entry_point, lacking = None, None, None, []
    if newer and acpi_roles:
        served = {n: r for n, r in FW_CFG_ROLES.items() if c.header.input(r) is not None}
        lacking = [r for r in (*served.values(), SMBIOS_ROLE) if r not in found]
        fw_cfg = {n: bytes(found[r]) for n, r in served.items() if r in found}
        smbios = bytes(found[SMBIOS_ROLE]) if SMBIOS_ROLE in found else None
        if c.header.input(SMBIOS_ENTRY_POINT_ROLE) is not None:
            if SMBIOS_ENTRY_POINT_ROLE in found:
                entry_point = bytes(found[SMBIOS_ENTRY_POINT_ROLE])
            else:
                lacking.append(SMBIOS_ENTRY_POINT_ROLE)
    variables: dict[str, bytes] | None = None  # None: the image's own
    if secure_boot == "inputs":
        logged = {n: r for n, r in SECURE_BOOT_ROLES.items() if c.header.input(r) is not None}
        absent = [r for r in logged.values() if r not in found]
        lacking += absent
        variables = {n: bytes(found[r]) for n, r in logged.items() if r in found}
    if acpi_roles and blobs is None:
        lacking[:0] = [r for r in ACPI_ROLES.values() if r not in found]
    check_rtmr0 = blobs is not None and secure_boot in ("image", "inputs") and not lacking
    if acpi_roles and not check_rtmr0:
        c.unchecked.append(
            "the RTMR0 events against the inputs: "
            + (
                "the Secure Boot variables were given at measure time and not logged"
                if secure_boot == "given"
                else f"give {', '.join(lacking)} ("
                + ", ".join(f for f, roles in _FLAGS if any(r in roles for r in lacking))
                + ")"
            )
        )
    text = bytes(cmdline or b"\0")[:-1].decode("utf-8", "surrogateescape")
    try:
        want = predict_tdx_rtmrs(
            image,
            memory_size=memory,
            kernel=found["kernel"],
            initrd=found.get("initrd"),
            cmdline=text,
            acpi=blobs if check_rtmr0 else None,
            fw_cfg=fw_cfg if check_rtmr0 else None,
            boot_menu=bool(boot_menu),
            smbios=smbios if check_rtmr0 else None,
            smbios_entry_point=entry_point if check_rtmr0 else None,
            # variables given at measure time and not logged (a version-4 log before
            # ``inputs``): RTMR0 is left unchecked, RTMR1-2 do not depend on them
            secure_boot=variables if secure_boot != "given" else {},
            kernel_loading=KernelLoading.parse(loading),
            release=Edk2Release.parse(release),
            stub_measures=stub,
        ).events
    except (CvmLaunchError, ValueError) as exc:
        c.find("header", f"settings {', '.join(RTMR_SETTINGS)}", f"no RTMR events follow: {exc}")
        return
    have = [(n, e) for n, e in enumerate(events) if check_rtmr0 or e.rtmr != 0]
    exp = [e for e in want if check_rtmr0 or e.rtmr != 0]
    for (n, got), wanted in zip(have, exp, strict=False):
        a, b = event_record(got), event_record(wanted)
        for key in _FIELDS:
            if a[key] != b[key]:
                c.find(
                    event_where(n, got),
                    key,
                    f"{_short(a[key])}, the settings and inputs give {_short(b[key])}{_DECIDED}",
                )
    if len(have) != len(exp):
        c.find(
            "rtmr_events",
            "count",
            f"the log has {len(have)} events the inputs decide, the inputs give {len(exp)}"
            + _DECIDED,
        )


#: The ``log verify`` options that give each kind of input, for the unchecked note.
_FLAGS = (
    ("--acpi DIR or --fw-cfg DIR", tuple(ACPI_ROLES.values())),
    ("--fw-cfg DIR", tuple(FW_CFG_ROLES.values())),
    ("--smbios DIR", (SMBIOS_ROLE, SMBIOS_ENTRY_POINT_ROLE)),
    ("--secure-boot-vars DIR", tuple(SECURE_BOOT_ROLES.values())),
)


def _is_release(text: str) -> bool:
    from cvmlaunch.image.tdvf_features import Edk2Release

    try:
        Edk2Release.parse(text)
    except ValueError:
        return False
    return True


def _short(value: object) -> str:
    text = str(value)
    return text if len(text) <= 80 else f"{text[:64]}... ({len(text) // 2} bytes)"
