"""A launch with ``--kernel`` serves the kernel over fw_cfg (launcher.firmware.served_fw_cfg,
run_guest's PortBus), against the model firmware: its BSP reads the blobs as OVMF's
QemuKernelLoaderFsDxe does (each size item through the ports, each data item by DMA into
shared memory), and the SHA-256s of what it got are the entries of the kernel-hashes page the
launch measured (the page as the model PSP received it, whose SHA-384 the log records)."""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import io
import os
import struct
from collections.abc import Generator
from pathlib import Path

import pytest

from cvmlaunch import _uapi
from cvmlaunch.cli._cc_launch import FirmwareLaunch, launch_confidential, run_firmware_launch
from cvmlaunch.errors import ImageError
from cvmlaunch.image.ovmf import guid_bytes_le
from cvmlaunch.launch_settings import LaunchSettings
from cvmlaunch.measure.log import parse_log, verify_log
from cvmlaunch.measure.log_check import check_log
from cvmlaunch.measure.tdx_rtmr import KernelLoading, kernel_image
from cvmlaunch.technology import Technology
from tests.builders import build_bzimage
from tests.conftest import find_firmware
from tests.fakekvm import _Vcpu, _Vm
from tests.model_firmware import CPU_TYPES, ModelKernel

MEMORY = 256 << 20
PAGE = 4096
_DATA_OFFSET = PAGE  # where the model puts an IO exit's data in kvm_run (3 pages long)
_ACCESS = 0x100000  # the firmware's FWCfgDmaAccess and bounce buffer, in shared memory
_BUFFER = 0x200000

# (size item, data item) of each blob, QemuKernelLoaderFsDxe's order
_BLOBS = {
    "setup": (0x17, 0x18),
    "kernel": (0x08, 0x11),
    "initrd": (0x0B, 0x12),
    "cmdline": (0x14, 0x15),
}

#: An IO exit: (port, direction, size, count, OUT data); an IN's answer is sent back.
IoStep = tuple[int, int, int, int, bytes]


class FwCfgReadingModel(ModelKernel):
    """The model firmware whose BSP, once the launch is sealed, reads the kernel over fw_cfg."""

    def __init__(self, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.pages: dict[int, bytes] = {}
        self.served: dict[str, bytes] = {}
        self.signature = b""
        self._script: Generator[IoStep, bytes, None] | None = None
        self._pending: IoStep | None = None

    def _write_page(self, vm: _Vm, gpa: int, page: bytes) -> None:
        self.pages[gpa] = page
        super()._write_page(vm, gpa, page)

    def _memory(self, vm: _Vm, gpa: int) -> int:
        slot = vm.slot_for(gpa)
        assert slot is not None
        return slot.userspace_addr + gpa - slot.gpa

    def _firmware(self, vm: _Vm) -> Generator[IoStep, bytes, None]:
        def select(key: int) -> Generator[IoStep, bytes, None]:
            yield (0x510, _uapi.KVM_EXIT_IO_OUT, 2, 1, key.to_bytes(2, "little"))

        def read(n: int) -> Generator[IoStep, bytes, bytes]:
            return (yield (0x511, _uapi.KVM_EXIT_IO_IN, 1, n, b""))

        yield from select(0x0000)
        self.signature = yield from read(4)
        yield from select(0x0019)
        count = int.from_bytes((yield from read(4)), "big")
        entries = (yield from read(64 * count)) if count else b""
        files = {}
        for i in range(count):
            size, key, _, raw = struct.unpack_from(">IHH56s", entries, 64 * i)
            files[raw.rstrip(b"\0").decode()] = (size, key)
        for name, (size_key, data_key) in _BLOBS.items():
            yield from select(size_key)
            size = int.from_bytes((yield from read(4)), "little")
            self.served[name] = yield from self._dma(vm, data_key, size)
        for name, (size, key) in files.items():
            self.served[name] = yield from self._dma(vm, key, size)

    def _dma(self, vm: _Vm, data_key: int, size: int) -> Generator[IoStep, bytes, bytes]:
        """Select ``data_key`` and read ``size`` bytes by DMA, as QemuFwCfgLib does."""
        access = struct.pack(">IIQ", data_key << 16 | 0x08 | 0x02, size, _BUFFER)
        ctypes.memmove(self._memory(vm, _ACCESS), access, len(access))
        yield (0x514, _uapi.KVM_EXIT_IO_OUT, 4, 1, bytes(4))
        yield (0x518, _uapi.KVM_EXIT_IO_OUT, 4, 1, _ACCESS.to_bytes(4, "big"))
        assert ctypes.string_at(self._memory(vm, _ACCESS), 4) == bytes(4)  # no error
        return ctypes.string_at(self._memory(vm, _BUFFER), size)

    def _vcpu(self, vcpu: _Vcpu, request: int, arg: int | bytearray) -> int:
        vm = vcpu.vm
        if request != _uapi.KVM_RUN or vcpu.vcpu_id != 0 or not self._sealed(vm):
            return super()._vcpu(vcpu, request, arg)
        fd = vcpu.fd
        step: IoStep | None = None
        if self._script is None:
            self._script = self._firmware(vm)
            step = next(self._script)
        elif self._pending is not None:
            port, direction, size, count, _ = self._pending
            answer = b""
            if direction == _uapi.KVM_EXIT_IO_IN:
                answer = os.pread(fd, size * count, _DATA_OFFSET)
            try:
                step = self._script.send(answer)
            except StopIteration:
                step = None
        if step is None:
            self._pending = None
            return super()._vcpu(vcpu, request, arg)
        self._pending = step
        port, direction, size, count, data = step
        run = bytearray(ctypes.sizeof(_uapi.KvmRun))
        r = _uapi.KvmRun.from_buffer(run)
        r.exit_reason = _uapi.ExitReason.IO
        io_ = r.exit.io
        io_.direction, io_.size, io_.port, io_.count = direction, size, port, count
        io_.data_offset = _DATA_OFFSET
        os.pwrite(fd, bytes(run), 0)
        os.pwrite(fd, data, _DATA_OFFSET)
        return 0


def _fw(name: str = "OVMF.amdsev.fd") -> str:
    path = find_firmware(name)
    if path is None:
        pytest.skip(f"firmware {name} not found")
    return str(path)


def _kernel(setup_sects: int, size: int) -> bytes:
    data = bytearray(hashlib.shake_256(b"kernel").digest(size))
    data[0x1F1] = setup_sects
    return bytes(data)


def test_the_snp_launch_serves_what_its_hashes_page_measured(tmp_path: Path) -> None:
    kernel = _kernel(0x1B, 0x9000 + 77)
    initrd = hashlib.shake_256(b"initrd").digest(0x5000 + 3)
    (tmp_path / "vmlinuz").write_bytes(kernel)
    (tmp_path / "initrd").write_bytes(initrd)
    model = FwCfgReadingModel(signature=CPU_TYPES["EPYC-Genoa"])
    req = FirmwareLaunch(
        "snp",
        _fw(),
        MEMORY,
        1,
        kernel=str(tmp_path / "vmlinuz"),
        initrd=str(tmp_path / "initrd"),
        append="console=ttyS0 root=/dev/vda é",
    )
    log_file = tmp_path / "launch.log"
    out, err = io.StringIO(), io.StringIO()
    run_firmware_launch(req, dry_run=False, log_file=str(log_file), kernel=model, out=out, err=err)
    assert model.violations == []
    assert "the guest stopped: HltExit()" in err.getvalue()

    # what the device served: the files unpatched, split where QEMU splits them
    assert model.signature == b"QEMU"
    assert model.served["setup"] == kernel[: 28 * 512]
    assert model.served["setup"] + model.served["kernel"] == kernel
    assert model.served["initrd"] == initrd
    assert model.served["cmdline"] == "console=ttyS0 root=/dev/vda é".encode() + b"\0"

    # the kernel-hashes page the launch measured: the page the model PSP received, which the
    # log records (its SHA-384) and replays to the digest
    log = parse_log(log_file.read_text())
    assert verify_log(log) == model.snp_digest()
    (entry,) = [e for e in log.entries if e.provenance.name == "sev-kernel-hashes"]
    page = b"".join(model.pages[entry.gpa + i] for i in range(0, entry.size, PAGE))
    assert hashlib.sha384(page).digest() == entry.content_sha384

    # its table (QEMU target/i386/sev.c layout, read here by hand): GUID, u16 length, then
    # cmdline, initrd, kernel entries of GUID, u16 length, SHA-256
    at = page.index(guid_bytes_le("9438d606-4f22-4cc9-b479-a793d411fd21"))
    entries = {}
    for i in range(3):
        guid, length, digest = struct.unpack_from("<16sH32s", page, at + 18 + 50 * i)
        assert length == 50
        entries[guid] = digest
    assert entries == {
        guid_bytes_le("97d02dd8-bd20-4c94-aa78-e7714d36ab2a"): hashlib.sha256(
            model.served["cmdline"]
        ).digest(),
        guid_bytes_le("44baf731-3a2f-4bd7-9af1-41e29169781d"): hashlib.sha256(
            model.served["initrd"]
        ).digest(),
        guid_bytes_le("4de79437-abd2-427f-b835-d5b172d2045b"): hashlib.sha256(
            model.served["setup"] + model.served["kernel"]
        ).digest(),
    }


def test_a_kernel_qemu_would_refuse_stops_the_launch_before_anything_is_created(
    tmp_path: Path,
) -> None:
    (tmp_path / "vmlinuz").write_bytes(_kernel(0x40, 0x2000))  # 65 sectors of setup > 8 KiB
    model = FwCfgReadingModel(signature=CPU_TYPES["EPYC-Genoa"])
    req = FirmwareLaunch("snp", _fw(), MEMORY, 1, kernel=str(tmp_path / "vmlinuz"))
    with pytest.raises(ImageError, match="invalid kernel header"):
        run_firmware_launch(req, dry_run=False, kernel=model, out=io.StringIO(), err=io.StringIO())
    assert model.journal == []


def test_a_td_is_served_the_kernel_as_qemu_10_0_serves_it(tmp_path: Path) -> None:
    """TDX: the setup/kernel items carry QEMU's setup-header patches (``measure tdx
    --kernel-loading patched`` measures them), ``etc/boot/kernel`` is the file as given
    (``--kernel-loading raw``); no kernel-hashes page; MRTD unchanged by the kernel."""
    kernel = build_bzimage(payload=hashlib.shake_256(b"td kernel").digest(0x6000))
    initrd = b"td initrd" * 999
    (tmp_path / "vmlinuz").write_bytes(kernel)
    (tmp_path / "initrd").write_bytes(initrd)
    fw = _fw("OVMF.generic.fd")
    model = FwCfgReadingModel()
    settings = LaunchSettings(
        memory=MEMORY,
        vcpus=1,
        firmware=fw,
        kernel=str(tmp_path / "vmlinuz"),
        initrd=str(tmp_path / "initrd"),
        append="console=hvc0",
        tech=Technology.TDX,
    )
    log_file = tmp_path / "td.log"
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        launch_confidential(settings, dry_run=False, log_file=str(log_file), kernel=model)
    assert model.violations == []
    assert "the guest stopped: HltExit()" in err.getvalue()
    patched = kernel_image(
        kernel,
        KernelLoading.PATCHED,
        memory_size=MEMORY,
        initrd_size=len(initrd),
        cmdline="console=hvc0",
    )
    assert patched != kernel
    assert model.served["setup"] + model.served["kernel"] == patched
    # the same patches written by hand from QEMU 10.0 hw/i386/x86-common.c x86_load_linux
    # (boot protocol 2.15, XLF_CAN_BE_LOADED_ABOVE_4G): cmd_line_ptr 0x20000, loader type
    # 0xB0, CAN_USE_HEAP with heap_end_ptr cmdline_addr - real_addr - 0x200, the initrd
    # page-aligned below the RAM under 4 GiB less QEMU's 0x20000 + 0x8000 of ACPI data
    by_hand = bytearray(kernel)
    by_hand[0x210] = 0xB0
    by_hand[0x211] |= 0x80
    struct.pack_into("<H", by_hand, 0x224, 0x20000 - 0x10000 - 0x200)
    initrd_max = MEMORY - (0x20000 + 0x8000) - 1
    struct.pack_into("<II", by_hand, 0x218, (initrd_max - len(initrd)) & ~0xFFF, len(initrd))
    struct.pack_into("<I", by_hand, 0x228, 0x20000)
    assert model.served["setup"] + model.served["kernel"] == by_hand
    assert len(model.served["setup"]) == 5 * 512
    assert model.served["etc/boot/kernel"] == kernel
    assert model.served["initrd"] == initrd
    assert model.served["cmdline"] == b"console=hvc0\0"
    # the kernel changes nothing the TDX module measures: MRTD as without it
    without = ModelKernel()
    run_firmware_launch(
        FirmwareLaunch("tdx", fw, MEMORY, 1),
        dry_run=False,
        kernel=without,
        out=io.StringIO(),
        err=io.StringIO(),
    )
    log = parse_log(log_file.read_text())
    assert log.footer.digest == model.mrtd() == without.mrtd()
    # the log records the kernel, initrd and command line as inputs, and log verify takes them
    inputs = {"firmware": Path(fw).read_bytes(), "kernel": kernel, "initrd": initrd}
    result = check_log(log, inputs | {"cmdline": b"console=hvc0\0"})
    assert result.findings == (), "\n".join(f.describe() for f in result.findings)
    assert result.digest == model.mrtd()
