"""``launch --tech snp|tdx --firmware``'s composition (cli/_cc_launch.run_firmware_launch):
dry runs print the digest ``measure snp|tdx`` prints; launches against the model firmware
write a log whose digest is the model's; hosts without the technology refuse up front."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from cvmlaunch.cli._cc_launch import FirmwareLaunch, run_firmware_launch
from cvmlaunch.errors import ConfigError, KvmUnsupported
from cvmlaunch.image.ovmf import parse_ovmf
from cvmlaunch.image.td_hob import build_td_hob, td_hob_measured_bytes, td_ram_entries
from cvmlaunch.measure.log import parse_log, verify_log
from cvmlaunch.measure.snp import snp_digest
from cvmlaunch.measure.tdx import mrtd, tdvf_contents
from cvmlaunch.plan.sev_hashes import KernelHashes, cmdline_sha256
from cvmlaunch.plan.snp import SnpSettings
from cvmlaunch.plan.tdvf import tdvf_plan
from tests.conftest import find_firmware
from tests.errors_util import raises_cvm
from tests.model_firmware import CPU_TYPES, ModelKernel

MEMORY = 256 << 20


def _fw(name: str) -> str:
    path = find_firmware(name)
    if path is None:
        pytest.skip(f"firmware {name} not found")
    return str(path)


def _run(req: FirmwareLaunch, **kw: object) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    run_firmware_launch(req, out=out, err=err, **kw)  # type: ignore[arg-type]
    return out.getvalue(), err.getvalue()


def test_snp_dry_run_prints_measure_snps_digest() -> None:
    fw = _fw("OVMF.amdsev.fd")
    req = FirmwareLaunch("snp", fw, MEMORY, 4, vcpu_sig=0xA00F11)
    text, _ = _run(req, dry_run=True)
    image = parse_ovmf(Path(fw).read_bytes(), name="x")
    want = snp_digest(image, SnpSettings(vcpus=4, vcpu_sig=0xA00F11))
    assert f"predicted SNP launch digest: {want.hex()}" in text
    for word in ("ZERO", "SECRETS", "CPUID", "VMSA of vCPU 3 (AP)"):
        assert word in text


def test_snp_dry_run_needs_a_signature() -> None:
    req = FirmwareLaunch("snp", _fw("OVMF.amdsev.fd"), MEMORY, 1)
    with raises_cvm(ConfigError, setting="vcpu_type", match="give vcpu_type or vcpu_sig$"):
        _run(req, dry_run=True)


def test_tdx_dry_run_prints_measure_tdxs_mrtd() -> None:
    fw = _fw("OVMF.inteltdx.ms.fd")
    text, _ = _run(FirmwareLaunch("tdx", fw, MEMORY, 2), dry_run=True)
    want = mrtd(tdvf_plan(parse_ovmf(Path(fw).read_bytes(), name="x")))
    assert f"predicted MRTD: {want.hex()}" in text
    assert "TD HOB at 0x809000" in text
    image = parse_ovmf(Path(fw).read_bytes(), name="x")
    sections = image.tdx_sections or ()
    hob = build_td_hob(sections, MEMORY)
    rtmr0_event = hashlib.sha384(td_hob_measured_bytes(hob)).hexdigest()
    assert f"TD HOB (QEMU's; PAGE.ADDed, not MR.EXTENDed): {len(hob)} bytes at 0x809000" in text
    assert f"RTMR0 event sha384 {rtmr0_event}" in text
    ram = td_ram_entries(sections, MEMORY)
    assert sum(1 for line in text.splitlines() if line.endswith("unaccepted")) == sum(
        1 for e in ram if not e.accepted
    )


def test_snp_launch_with_a_kernel_writes_the_log_the_model_measured(tmp_path: Path) -> None:
    fw = _fw("OVMF.amdsev.fd")
    kernel_file = tmp_path / "vmlinuz"
    kernel = bytearray(b"MZ a bzImage, as far as the hashes page is concerned" * 100)
    kernel[0x1F1] = 0  # setup_sects 0 (means 4): the file holds the setup QEMU serves apart
    kernel_file.write_bytes(kernel)
    log_file = tmp_path / "launch.log"
    model = ModelKernel(signature=CPU_TYPES["EPYC-Genoa"])
    req = FirmwareLaunch(
        "snp", fw, MEMORY, 2, kernel=str(kernel_file), append="console=ttyS0", host_data=b"h" * 32
    )
    _, err = _run(req, dry_run=False, log_file=str(log_file), kernel=model)
    assert model.violations == []
    hashes = KernelHashes(
        kernel=hashlib.sha256(kernel_file.read_bytes()).digest(),
        cmdline=cmdline_sha256(b"console=ttyS0"),
    )
    image = parse_ovmf(Path(fw).read_bytes(), name="x")
    want = snp_digest(
        image, SnpSettings(vcpus=2, vcpu_sig=CPU_TYPES["EPYC-Genoa"], kernel_hashes=hashes)
    )
    assert model.snp_digest() == want
    assert f"SNP launch digest {want.hex()}" in err
    assert "the guest stopped: HltExit()" in err
    log = parse_log(log_file.read_text())
    assert verify_log(log) == want
    assert log.header.settings["vcpu_sig"] == CPU_TYPES["EPYC-Genoa"]
    assert model.launch_params["host_data"] == b"h" * 32


def test_tdx_launch_writes_the_log_the_model_measured(tmp_path: Path) -> None:
    fw = _fw("OVMF.generic.fd")
    model = ModelKernel()
    log_file = tmp_path / "td.log"
    req = FirmwareLaunch("tdx", fw, MEMORY, 4, mrowner=b"o" * 48)
    _, err = _run(req, dry_run=False, log_file=str(log_file), kernel=model)
    assert model.violations == []
    want = mrtd(tdvf_plan(parse_ovmf(Path(fw).read_bytes(), name="x")))
    assert model.mrtd() == want
    assert f"MRTD {want.hex()}" in err
    log = parse_log(log_file.read_text())
    image = parse_ovmf(Path(fw).read_bytes(), name="x")
    assert verify_log(log, tdvf_contents(log.header, image)) == want
    assert model.launch_params["mrowner"] == b"o" * 48


@pytest.mark.parametrize(("tech", "vm_type"), [("snp", "SNP"), ("tdx", "TDX")])
def test_a_host_without_the_technology_refuses_before_creating_anything(
    tech: str, vm_type: str, tmp_path: Path
) -> None:
    model = ModelKernel(vm_types=1)
    req = FirmwareLaunch(tech, _fw("OVMF.generic.fd"), MEMORY, 1)
    with pytest.raises(KvmUnsupported, match=f"KVM_X86_{vm_type}_VM"):
        _run(req, dry_run=False, log_file=str(tmp_path / "x.log"), kernel=model)
    assert not any(j[0] == "CREATE_VM" for j in model.journal)
    assert not (tmp_path / "x.log").exists()


def test_tdx_takes_a_kernel_that_changes_no_mrtd() -> None:
    """TDVF loads the kernel over fw_cfg (served: tests/test_fw_cfg_launch.py) and measures it
    into RTMR1/2, not MRTD: the dry run's plan is the one without a kernel."""
    fw = _fw("OVMF.generic.fd")
    req = FirmwareLaunch("tdx", fw, MEMORY, 1, kernel="/dev/null", append="console=hvc0")
    assert _run(req, dry_run=True) == _run(FirmwareLaunch("tdx", fw, MEMORY, 1), dry_run=True)
