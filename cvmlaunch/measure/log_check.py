"""Checking a launch log field by field: the whole log, not only its digest chain.

Rule 1: a log is checked against what its header says. The header's settings (and, with the
inputs at hand, the inputs themselves) rebuild the launch plan with the same code that wrote
the log (:func:`~cvmlaunch.measure.snp.snp_log`, :func:`~cvmlaunch.measure.sev.sev_log`,
:func:`~cvmlaunch.measure.tdx.tdx_log`, :func:`~cvmlaunch.measure.plain.plain_log`), and every
field of every record must equal the rebuilt one: GPA, size, op, page type, measured flag,
provenance, contents hash, page hashes, running digest; then the footer. Each difference is
a :class:`Finding` naming the record and the field (and, for records the settings decide,
the settings that decide them).

Rule 2: without the inputs, everything the header alone decides is still checked (per-record
consistency of op, page type and measured flag; the SNP VMSAs, rebuilt from the settings; the
number of vCPUs; the kernel hashes against the inputs' SHA-256s; the launch identity against
the ID block; the digest chain where it replays from the log), and what could not be checked
is listed (:attr:`LogCheck.unchecked`), naming the input that would check it.

Rule 3: what no replay proves (settings outside the digest: the SNP policy without an ID
block, HOST_DATA, the TDX owner values, host details, the tool) is listed in
:data:`SIGNATURE_ONLY`: only a signature over the log's bytes
(:mod:`cvmlaunch.measure.log_sign`) protects it.

Pure: logs and buffers in, a :class:`LogCheck` out. Errors of the log's own content become
findings; only a caller's mistake raises.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any

from cvmlaunch.errors import ConfigError, CvmLaunchError, LogFormatError
from cvmlaunch.layout import PAGE_SIZE, Buffer, PageType, SourceKind
from cvmlaunch.log_entry import LogEntry, LogOp
from cvmlaunch.measure.log import ContentProvider, LogHeader, MeasurementLog, Technology
from cvmlaunch.measure.log_checker import (
    ABSENT,
    KERNEL_HASHES,
    Checker,
    Finding,
    LogCheck,
    SettingsView,
    decided_by,
    record_where,
    show,
)

__all__ = [
    "FILE_ROLES",
    "SIGNATURE_ONLY",
    "Finding",
    "LogCheck",
    "check_log",
    "cmdline_input_bytes",
    "inputs_to_find",
]

#: The roles of the file inputs a log may list (the ``cmdline`` input is a string:
#: :func:`cmdline_input_bytes`).
FILE_ROLES = ("firmware", "svsm", "kernel", "initrd")

SIGNATURE_ONLY: Mapping[str, tuple[str, ...]] = {
    "all": (
        "header.tool.name",
        "header.tool.version",
        "header.inputs[].name",
    ),
    "sev-snp": (
        "header.settings.policy (without an ID block)",
        "header.settings.host_data",
        "the CPUID record's content_sha384 in a launch's log (host-decided: the CPUID page "
        "the launch built from the host's KVM_GET_SUPPORTED_CPUID; SNP measures a CPUID page "
        "without its contents, the firmware checks them)",
    ),
    "sev": (),
    "sev-es": (),
    "tdx": (
        "header.settings.mrconfigid",
        "header.settings.mrowner",
        "header.settings.mrownerconfig",
        "header.settings.vcpus (a launch's; checked: at least one)",
        "header.settings.td_attributes (a launch's; checked: 64 bits)",
        "header.settings.xfam (a launch's; checked: 64 bits with x87 and SSE)",
    ),
    "plain": (
        "header.settings.vcpus",
        "header.settings.memory_backend",
        "header.settings.pre_fault_memory (checked against the pre-fault records)",
        "the plain.pre_fault records (which ranges a host pre-faulted, and how it split them)",
    ),
}

# ------------------------------------------------------------------ identity


def _check_snp_identity(c: Checker, s: SettingsView) -> None:
    from cvmlaunch.measure.identity import GuestPolicy, verify_id_pair

    policy: GuestPolicy | None = None
    text = s.get("policy", str, required=False)
    if text is not None:
        try:
            policy = GuestPolicy.parse(text)
        except ConfigError as exc:
            s.bad("policy", str(exc))
    s.hex("host_data", 32, required=False)
    block = s.hex("id_block", 96, required=False)
    auth_text = s.get("id_auth", str, required=False)
    if (s.values.get("id_block") is None) != (s.values.get("id_auth") is None):
        s.bad("id_auth", "id_block and id_auth go together")
        return
    if block is None or auth_text is None:
        return
    try:
        auth = base64.b64decode(auth_text, validate=True)
    except (binascii.Error, ValueError):
        s.bad("id_auth", "is not base64")
        return
    if len(auth) != 4096:
        s.bad("id_auth", f"is {len(auth)} bytes, not 4096")
        return
    result = verify_id_pair(block, auth)
    for check in result.failures:
        c.find("header", "setting id_block/id_auth", f"{check.name}: {check.detail}")
    if result.block is None:
        return
    if result.block.ld != c.log.footer.digest:
        c.find(
            "header",
            "setting id_block",
            f"its launch digest {result.block.ld.hex()} is not the log's digest "
            f"{c.log.footer.digest.hex()}",
        )
    if policy is not None and result.block.policy != policy:
        c.find(
            "header",
            "setting policy",
            f"{policy.value:#x} differs from the ID block's {result.block.policy.value:#x}",
        )


def _check_tdx_identity(s: SettingsView) -> None:
    for key in ("mrconfigid", "mrowner", "mrownerconfig"):
        s.hex(key, 48, required=False)
    _check_tdx_launch(s)


#: The settings a TD launch's log header adds to a prediction's (``launch --tech tdx``):
#: ``td_hob_memory`` decides the TD HOB's bytes (checked through the TD_HOB record's
#: content_sha384); ``memory`` must equal it; ``td_attributes`` and ``xfam`` (what
#: ``KVM_TDX_INIT_VM`` got, in the TD report but not in MRTD) and ``vcpus`` are checked for
#: form only (:data:`SIGNATURE_ONLY`).
TDX_LAUNCH_SETTINGS = ("memory", "vcpus", "td_hob_memory", "td_attributes", "xfam")
#: XFAM bits 0 (x87) and 1 (SSE): the TDX module requires both.
_XFAM_FIXED1 = 0x3


def _check_tdx_launch(s: SettingsView) -> None:
    """The form of a TD launch's settings, and ``memory`` against ``td_hob_memory``."""
    values = {k: s.get(k, int, required=False) for k in TDX_LAUNCH_SETTINGS}
    for key in ("memory", "td_hob_memory"):
        size = values[key]
        if size is not None and (size <= 0 or size % PAGE_SIZE):
            s.bad(key, f"{size} is not a positive number of whole pages")
    memory, hob = values["memory"], values["td_hob_memory"]
    if (memory is None) != (hob is None) or (memory is not None and memory != hob):
        s.bad(
            "td_hob_memory",
            f"{show(hob if hob is not None else ABSENT)}, but memory is "
            f"{show(memory if memory is not None else ABSENT)}: QEMU's TD HOB describes all "
            "of the TD's RAM",
        )
    vcpus = values["vcpus"]
    if vcpus is not None and vcpus < 1:
        s.bad("vcpus", f"{vcpus} is not a number of vCPUs")
    for key in ("td_attributes", "xfam"):
        value = values[key]
        if value is not None and not 0 <= value < 1 << 64:
            s.bad(key, f"{value:#x} is not a 64-bit value")
    xfam = values["xfam"]
    if xfam is not None and xfam & _XFAM_FIXED1 != _XFAM_FIXED1:
        s.bad("xfam", f"{xfam:#x} lacks x87 and SSE (bits 0 and 1), which every TD has")


# ------------------------------------------------------------------ per technology


def _kernel_hashes_settings(c: Checker, s: SettingsView) -> Any:
    """KernelHashes from the settings (None without), checked against the listed inputs."""
    from cvmlaunch.plan.sev_hashes import KernelHashes

    on = s.get("kernel_hashes", bool)
    if not on:
        for key in KERNEL_HASHES[1:]:
            if key in s.values:
                s.bad(key, "given, but kernel_hashes is false")
        return None
    kernel, initrd, cmdline = (s.hex(k, 32) for k in KERNEL_HASHES[1:])
    for role, key, want in (
        ("kernel", "kernel_sha256", kernel),
        ("initrd", "initrd_sha256", initrd),
        ("cmdline", "cmdline_sha256", cmdline),
    ):
        listed = c.header.input(role)
        if listed is None or listed.sha256 is None:
            continue
        if role == "cmdline" and c.header.format_version < 2:
            continue  # version 1 hashed the command line without its NUL
        if listed.sha256 != want:
            s.bad(
                key, f"{show(want)} is not the SHA-256 of the {role} input ({listed.sha256.hex()})"
            )
    if kernel is None or initrd is None or cmdline is None:
        return None
    return KernelHashes(kernel=kernel, initrd=initrd, cmdline=cmdline)


def _snp_settings(c: Checker, s: SettingsView) -> Any:
    """SnpSettings from the header (None when a setting is bad: a finding says which)."""
    from cvmlaunch.plan.snp import MAX_VCPUS, SnpSettings
    from cvmlaunch.plan.vmsa import FpuInit, VmmType

    vcpus = s.get("vcpus", int)
    vmsas = sum(1 for e in c.log.entries if e.page_type is PageType.VMSA)
    if isinstance(vcpus, int) and vcpus != vmsas:
        s.bad("vcpus", f"{vcpus}, but the log has {vmsas} VMSA records (one per vCPU)")
    sig = s.get("vcpu_sig", int)
    features = s.get("guest_features", int)
    try:
        vmm = VmmType(s.get("vmm_type", str))
    except ValueError:
        s.bad("vmm_type", "is not QEMU, ec2 or gce")
        vmm = None
    try:
        fpu = FpuInit(s.get("fpu", str))
    except ValueError:
        s.bad("fpu", "is not init2 or legacy")
        fpu = None
    hashes = _kernel_hashes_settings(c, s)
    seed = s.get("ovmf_hash_seed", bool)
    initial = c.header.initial_digest
    if seed is False and initial != bytes(48):
        c.find("header", "initial_digest", "not zero, but ovmf_hash_seed is false")
    if seed and (initial is None or initial == bytes(48)):
        s.bad("ovmf_hash_seed", "true, but the initial digest is zero")
    if isinstance(vcpus, int) and not 1 <= vcpus <= MAX_VCPUS:
        s.bad("vcpus", f"{vcpus} is out of range (1..{MAX_VCPUS})")
        vcpus = None
    if isinstance(sig, int) and not 0 <= sig < 1 << 32:
        s.bad("vcpu_sig", f"{sig:#x} is not a 32-bit value")
        sig = None
    if isinstance(features, int) and not (0 <= features < 1 << 64 and features & 1):
        s.bad("guest_features", f"{features:#x} is not a 64-bit value with SNPActive (bit 0)")
        features = None
    if vcpus is None or sig is None or features is None or seed is None:
        return None
    if vmm is None or fpu is None:
        return None
    try:
        return SnpSettings(
            vcpus=vcpus,
            vcpu_sig=sig,
            vmm=vmm,
            guest_features=features,
            kernel_hashes=hashes,
            ovmf_hash=initial if seed else None,
            fpu=fpu,
        )
    except ConfigError as exc:
        c.find("header", "settings", str(exc))
        return None


def _snp_vmsas(c: Checker, s: SettingsView, settings: Any, mode: str, *, svsm_given: bool) -> None:
    """The VMSA records against the pages the settings give (no input needed)."""
    from cvmlaunch.plan.vmsa import BSP_RESET_EIP, vmsa_page

    if mode != "snp":
        if not svsm_given:  # with it, the rebuilt plan checks them
            c.unchecked.append(f"the VMSA records of mode {mode}: give the SVSM image")
        return
    ap_eip = s.get("ap_reset_address", int, required=False)
    pages: dict[int, bytes] = {}
    ordinal = 0
    for e in c.log.entries:
        if e.page_type is not PageType.VMSA or e.provenance.kind is not SourceKind.VMSA:
            continue
        index = e.provenance.index or 0
        if e.provenance.index != ordinal:
            c.find(record_where(e), "provenance.index", f"{e.provenance.index}, vCPU {ordinal}")
        ordinal += 1
        eip = BSP_RESET_EIP if index == 0 else ap_eip
        if eip is None:
            s.bad("ap_reset_address", "null, but the log has AP VMSAs")
            return
        if eip not in pages:
            pages[eip] = vmsa_page(
                eip=eip,
                vcpu_sig=settings.vcpu_sig,
                sev_features=settings.guest_features,
                vmm=settings.vmm,
                fpu=settings.fpu,
            )
        page = pages[eip]
        why = decided_by(c.tech, e)
        want = hashlib.sha384(page).digest()
        if e.page_sha384[:1] != (want,):
            c.find(record_where(e), "page_sha384[0]", f"not the VMSA page the settings give{why}")
        if e.content_sha384 != want:
            c.find(record_where(e), "content_sha384", f"not the VMSA page the settings give{why}")
        detail = "BSP" if index == 0 else "AP"
        if e.provenance.detail != detail:
            c.find(
                record_where(e), "provenance.detail", f"{e.provenance.detail!r} for vCPU {index}"
            )


_SNP_BASE = (
    "mode",
    "vcpus",
    "vcpu_sig",
    "vmm_type",
    "guest_features",
    "fpu",
    "ovmf_hash_seed",
    *KERNEL_HASHES,
    "policy",
    "host_data",
    "id_block",
    "id_auth",
)
#: The settings each SNP mode writes (docs/log-format.md).
_SNP_MODE_SETTINGS = {
    "snp": frozenset((*_SNP_BASE, "ap_reset_address")),
    "snp:svsm": frozenset((*_SNP_BASE, "vars_size")),
    "snp:ovmf-hash": frozenset(("mode",)),
}


def _check_snp(c: Checker, s: SettingsView, found: Mapping[str, Buffer]) -> ContentProvider | None:
    mode = s.get("mode", str)
    if mode not in ("snp", "snp:svsm", "snp:ovmf-hash"):
        if mode is not None:
            s.bad("mode", f"{mode!r} is not snp, snp:svsm or snp:ovmf-hash")
        return None
    allowed = _SNP_MODE_SETTINGS[mode]
    for key in c.header.settings:
        if key not in allowed:
            s.bad(key, f"is not a setting of mode {mode!r}")
    if mode == "snp:svsm" and c.header.input("svsm") is None:
        c.find("header", "input svsm", "missing (mode 'snp:svsm' measures an SVSM image)")
    if mode in ("snp", "snp:svsm"):
        _check_snp_identity(c, s)
    if mode == "snp:ovmf-hash":
        settings = None
    else:
        settings = _snp_settings(c, s)
        if settings is not None:
            _snp_vmsas(c, s, settings, mode, svsm_given="svsm" in found)
    need = ["firmware"] + (["svsm"] if mode == "snp:svsm" else [])
    missing = [r for r in need if r not in found]
    if missing:
        c.unchecked.append(
            "the records of the firmware's pages and metadata sections (GPA, size, page type, "
            "provenance, content_sha384, page_sha384) and the kernel-hashes page: give the "
            + " and ".join(missing)
        )
        return None
    if mode != "snp:ovmf-hash" and settings is None:
        return None
    return _rebuild_snp(c, s, found, mode, settings)


def _rebuild_snp(
    c: Checker, s: SettingsView, found: Mapping[str, Buffer], mode: str, given: Any
) -> ContentProvider | None:
    """Rebuild the SNP log from the firmware (and SVSM image) and the settings; compare."""
    from cvmlaunch.image.ovmf import parse_ovmf
    from cvmlaunch.measure.snp import SevMode, snp_log
    from cvmlaunch.plan.snp import SnpSettings, firmware_plan, snp_plan, svsm_plan

    listed = c.header.input("firmware")
    name = listed.name if listed is not None else "firmware"
    try:
        image = parse_ovmf(found["firmware"], name=name)
        extra: dict[str, Any] = {}
        settings: SnpSettings = given if given is not None else SnpSettings(vcpus=1, vcpu_sig=0)
        if mode == "snp:ovmf-hash":
            plan = firmware_plan(image)
        elif mode == "snp:svsm":
            svsm_name = c.header.input("svsm")
            svsm = parse_ovmf(found["svsm"], name=svsm_name.name if svsm_name else "svsm")
            size = s.get("vars_size", int)
            if size is None:
                return None
            plan = svsm_plan(image, svsm, settings, vars_size=size)
            extra["vars_size"] = size
        else:
            plan = snp_plan(image, settings)
            extra["ap_reset_address"] = image.sev_es_reset_eip
        for key in ("policy", "host_data", "id_block", "id_auth"):
            if key in c.header.settings:
                extra[key] = c.header.settings[key]
        want = snp_log(
            plan,
            settings,
            mode=SevMode(mode),
            inputs=c.header.inputs,
            tool_version=c.header.tool_version,
            extra_settings=extra,
        )
    except CvmLaunchError as exc:
        c.fail_from("header", "settings", exc)
        return None
    c.compare(want)
    return None


def _check_sev(c: Checker, s: SettingsView, found: Mapping[str, Buffer]) -> ContentProvider | None:
    from cvmlaunch.measure.sev import sev_contents, sev_log, sev_settings_from_header

    es = c.tech is Technology.SEV_ES
    mode = s.get("mode", str)
    if mode != ("seves" if es else "sev"):
        s.bad("mode", f"{mode!r} for technology {c.tech.value}")
    _kernel_hashes_settings(c, s)
    if es:
        vcpus = s.get("vcpus", int)
        vmsas = sum(1 for e in c.log.entries if e.op is LogOp.SEV_LAUNCH_UPDATE_VMSA)
        if isinstance(vcpus, int) and vcpus != vmsas:
            s.bad("vcpus", f"{vcpus}, but the log has {vmsas} VMSA records (one per vCPU)")
        features = s.get("guest_features", int)
        if features and s.values.get("fpu") == "legacy":
            s.bad("guest_features", f"{features:#x}, but legacy (fpu) SEV-ES VMs have 0")
    firmware = found.get("firmware")
    if firmware is None:
        c.unchecked.append(
            "every record's content_sha384 and running digest, and the final digest (the "
            "SEV digest is a SHA-256 over the measured bytes): give the firmware"
        )
        return None
    from cvmlaunch.image.ovmf import parse_ovmf

    listed = c.header.input("firmware")
    try:
        image = parse_ovmf(firmware, name=listed.name if listed else "firmware")
        settings = sev_settings_from_header(c.header)
        want = sev_log(image, settings, inputs=c.header.inputs, tool_version=c.header.tool_version)
        contents = sev_contents(c.header, image)
    except CvmLaunchError as exc:
        c.fail_from("header", "settings", exc)
        return None
    c.compare(want)
    return _guarded(contents, len(want.entries))


def _check_tdx(c: Checker, s: SettingsView, found: Mapping[str, Buffer]) -> ContentProvider | None:
    from cvmlaunch.measure.tdx import PageOrder

    order = s.get("order", str)
    if order is not None and order not in {o.value for o in PageOrder}:
        s.bad("order", f"{order!r} is not per-page or two-pass")
        order = None
    profile = s.get("profile", str)
    if profile is not None and profile != "qemu":
        s.bad("profile", f"{profile!r}: only the 'qemu' TDVF plan is known")
        profile = None
    _check_tdx_identity(s)
    from cvmlaunch.measure.log_rtmr import RTMR_SETTINGS, check_rtmr_events

    firmware = found.get("firmware")
    if firmware is None:
        c.unchecked.append(
            "the records' GPAs, sizes, ops and content_sha384, and the running digests of "
            "measured (page_add+extend) records: give the firmware"
        )
        check_rtmr_events(c, s, found, None)
        return None
    if order is None or profile is None:
        check_rtmr_events(c, s, found, None)
        return None
    from cvmlaunch.image.ovmf import parse_ovmf
    from cvmlaunch.measure.tdx import measure_tdx, tdvf_contents, tdvf_log_regions, tdx_log

    listed = c.header.input("firmware")
    try:
        image = parse_ovmf(firmware, name=listed.name if listed else "firmware")
        settings = {
            k: v
            for k, v in c.header.settings.items()
            if k
            in (
                "profile",
                "mrconfigid",
                "mrowner",
                "mrownerconfig",
                *TDX_LAUNCH_SETTINGS,
                *RTMR_SETTINGS,
            )
        }
        want = tdx_log(
            measure_tdx(tdvf_log_regions(c.header, image), order=PageOrder(order)),
            inputs=c.header.inputs,
            tool_version=c.header.tool_version,
            settings=settings,
        )
        contents = tdvf_contents(c.header, image)
    except CvmLaunchError as exc:
        c.fail_from("header", "settings", exc)
        check_rtmr_events(c, s, found, None)
        return None
    c.compare(want)
    check_rtmr_events(c, s, found, image)
    return _guarded(contents, len(want.entries))


def _check_plain(
    c: Checker, s: SettingsView, found: Mapping[str, Buffer]
) -> ContentProvider | None:
    memory = s.get("memory", int)
    s.get("vcpus", int)
    entry = s.get("pvh_entry", int)
    pre = s.get("pre_fault_memory", bool, required=False)
    has_pre = any(e.op is LogOp.PRE_FAULT for e in c.log.entries)
    if pre is not None and pre != has_pre:
        s.bad(
            "pre_fault_memory",
            f"{str(pre).lower()}, but the log has {'' if has_pre else 'no '}plain.pre_fault "
            "records",
        )
    if c.header.input("kernel") is None:
        c.unchecked.append(
            "the plan's records: the header lists no kernel input (a plain launch boots one)"
        )
        return None
    need = ["kernel"] + [i.role for i in c.header.inputs if i.role in ("initrd", "firmware")]
    cmdline = c.header.input("cmdline")
    missing = [r for r in need if r not in found]
    cmdline_bytes = found.get("cmdline")
    if cmdline is not None and cmdline_bytes is None:
        if c.header.format_version >= 2 and cmdline.size == 1:
            cmdline_bytes = b"\0"  # the empty command line: its one byte is known
        else:
            missing.append("cmdline (--append)")
    if missing:
        c.unchecked.append(
            "the plan's records (GPA, size, page type, provenance, content_sha384): give the "
            + ", ".join(missing)
        )
        return None
    if memory is None or entry is None or cmdline_bytes is None:
        return None
    try:
        want = _plain_expected(c.header, found, bytes(cmdline_bytes), memory)
    except CvmLaunchError as exc:
        c.fail_from("header", "settings", exc)
        return None
    if want.header.settings.get("pvh_entry") != entry:
        s.bad(
            "pvh_entry",
            f"{entry:#x}, the kernel's PVH entry is {want.header.settings.get('pvh_entry')}",
        )
    c.compare(_plain_view(want, c.header), skip_pre_fault=True)
    return None


def _plain_view(want: MeasurementLog, header: LogHeader) -> MeasurementLog:
    """The rebuilt plain log with the given header's settings that no input decides."""
    import dataclasses

    settings = dict(header.settings)
    return dataclasses.replace(want, header=dataclasses.replace(want.header, settings=settings))


def _plain_expected(
    header: LogHeader, found: Mapping[str, Buffer], cmdline: bytes, memory: int
) -> MeasurementLog:
    """The plain log the plan rebuilt from the inputs gives (copy records only)."""
    from cvmlaunch.image.elf import elf_regions, parse_elf
    from cvmlaunch.launch_settings import LaunchSettings
    from cvmlaunch.measure.plain import plain_header, plain_log
    from cvmlaunch.memory_map import MemoryMap
    from cvmlaunch.plan.pvh import pvh_launch

    def name(role: str) -> str:
        item = header.input(role)
        return item.name if item is not None else role

    import dataclasses

    append = cmdline.rstrip(b"\0").decode() if header.format_version >= 2 else cmdline.decode()
    vcpus = header.settings.get("vcpus")
    settings = LaunchSettings(
        memory=memory, vcpus=vcpus if isinstance(vcpus, int) else 1, append=append
    )
    image = parse_elf(found["kernel"], name=name("kernel"))
    if image.pvh_entry is None:
        raise ConfigError("the kernel has no PVH entry note")
    regions = elf_regions(
        dataclasses.replace(image, name=name("kernel")), memory=MemoryMap.for_size(memory)
    )
    launch = pvh_launch(
        settings,
        regions,
        image.pvh_entry,
        initrd=found.get("initrd"),
        initrd_name=name("initrd"),
        firmware=found.get("firmware"),
        firmware_name=name("firmware"),
    )
    settings_out: dict[str, Any] = {"pvh_entry": launch.entry}
    return plain_log(
        launch.plan,
        plain_header(settings_out, inputs=header.inputs, tool_version=header.tool_version),
    )


def _guarded(contents: ContentProvider, count: int) -> ContentProvider:
    """``contents``, or an error for records the plan does not have (a finding elsewhere)."""

    def guarded(entry: LogEntry) -> Buffer:
        if entry.seq >= count:
            raise LogFormatError(f"record {entry.seq}: the plan has only {count} records")
        return contents(entry)

    return guarded


_TECH_CHECKS: Mapping[
    Technology,
    Callable[[Checker, SettingsView, Mapping[str, Buffer]], ContentProvider | None],
] = {
    Technology.SEV_SNP: _check_snp,
    Technology.SEV: _check_sev,
    Technology.SEV_ES: _check_sev,
    Technology.TDX: _check_tdx,
    Technology.PLAIN: _check_plain,
}


def check_log(log: MeasurementLog, inputs: Mapping[str, Buffer] | None = None) -> LogCheck:
    """Check every field of ``log`` against what its header and the inputs at hand say.

    Args:
        log: the log (as :func:`~cvmlaunch.measure.log_json.parse_log` read it).
        inputs: the inputs at hand by role (``firmware``, ``svsm``, ``kernel``, ``initrd``,
            ``cmdline``), each the input's whole bytes (``cmdline``: the command line and its
            NUL, as the log's format version 2 defines the input). Each must match the
            header's size and hashes (else a finding, and it is not used).

    Returns:
        The findings (empty: the log holds), what could not be checked without more inputs,
        and the replayed digest.
    """
    c = Checker(log, inputs or {})
    found = c.check_inputs()
    s = SettingsView(log.header, c.findings)
    c.check_records()
    contents = _TECH_CHECKS[log.header.technology](c, s, found)
    # the plan bounds the replay's cost when the inputs rebuilt it: records that are not the
    # plan's are not replayed (they already fail)
    digest = None if c.plan_differs else c.replay(contents)
    return LogCheck(tuple(_unique(c.findings)), tuple(c.unchecked), digest, tuple(c.host_decided))


def inputs_to_find(header: LogHeader, given: Collection[str]) -> dict[tuple[int, bytes], str]:
    """The file inputs ``header`` lists (:data:`FILE_ROLES`) and ``given`` (roles at hand)
    lacks, by size and SHA-256: what to look for among files whose names may differ (a log
    names inputs by base name, and a file may have been renamed). Inputs listed without a
    SHA-256 cannot be found so.
    """
    return {
        (i.size, i.sha256): i.role
        for i in header.inputs
        if i.role in FILE_ROLES and i.role not in given and i.sha256 is not None
    }


def cmdline_input_bytes(header: LogHeader, cmdline: str) -> bytes:
    """The ``cmdline`` input of :func:`check_log` for the command line text ``cmdline``: its
    bytes, with the NUL that format version 2 and later hash (version 1 hashed the text).

    Raises:
        ConfigError: a command line QEMU would refuse (:func:`~cvmlaunch.plan.sev_hashes.
            cmdline_bytes`).
    """
    from cvmlaunch.plan.sev_hashes import cmdline_bytes

    raw = cmdline_bytes(cmdline)
    return raw + b"\0" if header.format_version >= 2 else raw


def _unique(findings: Sequence[Finding]) -> Iterator[Finding]:
    seen: set[Finding] = set()
    for f in findings:
        if f not in seen:
            seen.add(f)
            yield f
