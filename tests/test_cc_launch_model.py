"""The proof of the SNP and TDX launch engines: real firmware launched against model firmware.

Each case launches a Debian OVMF build through the engine (:mod:`cvmlaunch.launcher` ->
:mod:`cvmlaunch.kvm_map`) against :class:`tests.model_firmware.ModelKernel`, whose model PSP /
TDX module measures what the engine actually submitted, and asserts, bit for bit:

    model firmware's measurement == ``measure snp|tdx``'s prediction == the launch log's digest

with no kernel or firmware rule broken. The axes: firmware builds x vCPU counts 1/2/4/64 x
host CPU types x with/without kernel hashes (SNP) x both TDX page orders, some cases with the
model interrupting populate calls (partial progress, EAGAIN, EINTR, real signals). The whole
product runs by default (92 launches, a few seconds: the model hashes what it is given, no
guest runs).
Deliberately wrong engines (a VMSA register changed, a MEASURE flag dropped, memory
attributes set after populate) must fail the same checks.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import itertools
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cvmlaunch import kvm_map
from cvmlaunch.cpuid import CpuidEntry
from cvmlaunch.errors import ConfigError, KvmError, KvmUnsupported
from cvmlaunch.image.ovmf import OvmfImage, parse_ovmf
from cvmlaunch.kvm_map import _engine
from cvmlaunch.kvm_map import snp as kvm_snp
from cvmlaunch.kvm_map import vcpu as kvm_vcpu
from cvmlaunch.launcher import launch_snp_firmware, launch_tdx_firmware
from cvmlaunch.measure.log import dumps_log, parse_log, verify_log
from cvmlaunch.measure.snp import snp_digest
from cvmlaunch.measure.tdx import PageOrder, mrtd
from cvmlaunch.plan.sev_hashes import KernelHashes, cmdline_sha256
from cvmlaunch.plan.snp import SnpSettings
from cvmlaunch.plan.tdvf import tdvf_plan
from cvmlaunch.vcpu_state import VcpuState
from tests.conftest import find_firmware
from tests.errors_util import raises_cvm
from tests.fakekvm import Fault, _Vm
from tests.model_firmware import CPU_TYPES, ModelFault, ModelKernel, TdxOrder
from tests.vectors import snp_cases, snp_inputs_sha256, tdx_firmwares

MEMORY = 64 << 20
VCPU_COUNTS = (1, 2, 4, 64)
SNP_FIRMWARE = ("OVMF.amdsev.fd", "OVMF.generic.fd", "OVMF.2022.fd")
TDX_FIRMWARE = ("OVMF.inteltdx.ms.fd", "OVMF.generic.fd", "OVMF.amdsev.fd", "OVMF.2022.fd")
HASHES = KernelHashes(
    kernel=hashlib.sha256(b"a bzImage").digest(),
    initrd=hashlib.sha256(b"an initrd").digest(),
    cmdline=cmdline_sha256(b"console=ttyS0"),
)
ORDERS = {TdxOrder.PER_PAGE: PageOrder.PER_PAGE, TdxOrder.TWO_PASS: PageOrder.TWO_PASS}
HOST_DATA = bytes(range(32))

_IMAGES: dict[str, OvmfImage] = {}


def _image(name: str) -> OvmfImage:
    if name not in _IMAGES:
        path = find_firmware(name)
        if path is None:
            pytest.skip(f"firmware {name} not found (see tests/conftest.py firmware_dirs)")
        _IMAGES[name] = parse_ovmf(Path(path).read_bytes(), name=name)
    return _IMAGES[name]


def _snp_faults() -> list[Fault]:
    """Interruptions for SNP_LAUNCH_UPDATE: partial progress, EAGAIN, partial with a signal."""
    return [
        Fault(pages=3),
        Fault(pages=0, errno=errno.EAGAIN),
        ModelFault(pages=1, signal=True),
        Fault(pages=7),
    ] * 3


def _tdx_faults() -> list[Fault]:
    """INIT_VM's EAGAIN (no entropy), then INIT_MEM_REGION interrupted: EINTR after partial
    progress (with a real signal), EINTR with none, more partial progress."""
    return [
        Fault(errno=errno.EAGAIN),
        ModelFault(pages=5, errno=errno.EINTR, signal=True),
        Fault(pages=0, errno=errno.EINTR),
        Fault(pages=2, errno=errno.EINTR),
        ModelFault(pages=300, errno=errno.EINTR, signal=True),
    ]


@pytest.fixture(autouse=True)
def sigusr2() -> Iterator[list[int]]:
    """A handler for the model's SIGUSR2 (the default would end the process)."""
    hits: list[int] = []
    old = signal.signal(signal.SIGUSR2, lambda signum, frame: hits.append(signum))
    yield hits
    signal.signal(signal.SIGUSR2, old)


# ---------------------------------------------------------------- the cases


@dataclass(frozen=True)
class SnpCase:
    firmware: str
    vcpus: int
    cpu: str
    hashes: bool
    faults: bool

    @property
    def id(self) -> str:
        h = "hashes" if self.hashes else "nohashes"
        f = "-interrupted" if self.faults else ""
        return f"{self.firmware}-{self.vcpus}vcpu-{self.cpu}-{h}{f}"


@dataclass(frozen=True)
class TdxCase:
    firmware: str
    vcpus: int
    order: TdxOrder
    faults: bool

    @property
    def id(self) -> str:
        f = "-interrupted" if self.faults else ""
        return f"{self.firmware}-{self.vcpus}vcpu-{self.order.value}{f}"


def _hashable(firmware: str) -> bool:
    return firmware != "OVMF.2022.fd"  # no SNP_KERNEL_HASHES section


def snp_product() -> list[SnpCase]:
    return [
        SnpCase(fw, n, cpu, h, faults=(n == 2))
        for fw, n, cpu, h in itertools.product(SNP_FIRMWARE, VCPU_COUNTS, CPU_TYPES, (False, True))
        if _hashable(fw) or not h
    ]


def tdx_product() -> list[TdxCase]:
    return [
        TdxCase(fw, n, order, faults=(n == 2))
        for fw, n, order in itertools.product(TDX_FIRMWARE, VCPU_COUNTS, TdxOrder)
    ]


# ---------------------------------------------------------------- running a case


@dataclass
class SnpRun:
    kernel: ModelKernel
    model: bytes
    predicted: bytes
    logged: bytes


def run_snp(case: SnpCase, **launch: Any) -> SnpRun:
    image = _image(case.firmware)
    hashes = HASHES if case.hashes else None
    features = launch.pop("guest_features", 0x1)
    kernel = ModelKernel(
        signature=CPU_TYPES[case.cpu], faults=_snp_faults() if case.faults else None
    )
    launched = launch_snp_firmware(
        image,
        memory=MEMORY,
        vcpus=case.vcpus,
        policy=launch.pop("policy", 0x30000),
        host_smt=launch.pop("host_smt", False),  # the model firmware checks SMT itself
        guest_features=features,
        finish=kvm_map.SnpFinish(host_data=HOST_DATA),
        kernel_hashes=hashes,
        kernel=kernel,
        **launch,
    )
    with launched.vm as vm:
        for vcpu in vm.vcpus[:1]:  # sealed: the vCPUs may run now
            assert isinstance(vcpu.run(), kvm_map.HltExit)
    written = parse_log(dumps_log(launched.log))
    assert verify_log(written) == launched.log.digest
    settings = SnpSettings(
        vcpus=case.vcpus,
        vcpu_sig=CPU_TYPES[case.cpu],
        kernel_hashes=hashes,
        guest_features=features,
    )
    predicted = snp_digest(image, settings)
    return SnpRun(kernel, kernel.snp_digest(), predicted, launched.log.digest)


def _peer_snp() -> dict[tuple[str, int, str], tuple[str, str]]:
    """sev-snp-measure's digests (tests/vectors/snp/README.md) for the matrix's plain cases:
    SNP, no kernel hashes, a --vcpu-type the model host has, the default guest features."""
    inputs = snp_inputs_sha256()
    out: dict[tuple[str, int, str], tuple[str, str]] = {}
    for case in snp_cases():
        args = case.args
        opts = dict(zip(args[::2], args[1::2], strict=True)) if len(args) % 2 == 0 else {}
        if case.digest is None or case.group == "divergent":
            continue
        if set(opts) != {"--mode", "--vcpus", "--ovmf", "--vcpu-type"} or opts["--mode"] != "snp":
            continue
        fw = opts["--ovmf"].removeprefix("@")
        if opts["--vcpu-type"] in CPU_TYPES:
            key = (fw, int(opts["--vcpus"]), opts["--vcpu-type"])
            out[key] = (inputs[fw], case.expected)  # (firmware, digest)
    return out


_PEER_SNP = _peer_snp()


def check_snp(case: SnpCase) -> SnpRun:
    run = run_snp(case)
    peer = _PEER_SNP.get((case.firmware, case.vcpus, case.cpu)) if not case.hashes else None
    firmware_sha256 = hashlib.sha256(_image(case.firmware).data).hexdigest()
    if peer is not None and peer[0] == firmware_sha256:  # the model PSP against the peer
        assert run.model.hex() == peer[1], "model PSP's launch digest != sev-snp-measure's"
    assert run.kernel.violations == []
    assert run.model.hex() == run.predicted.hex(), "model PSP's launch digest != measure snp's"
    assert run.logged.hex() == run.predicted.hex(), "launch log's digest != measure snp's"
    assert run.kernel.launch_params["host_data"] == HOST_DATA
    assert run.kernel.launch_params["policy"] == 0x30000
    return run


@dataclass
class TdxRun:
    kernel: ModelKernel
    model: bytes
    predicted: bytes
    logged: bytes


def run_tdx(case: TdxCase) -> TdxRun:
    image = _image(case.firmware)
    kernel = ModelKernel(tdx_order=case.order, faults=_tdx_faults() if case.faults else None)
    launched = launch_tdx_firmware(
        image,
        memory=MEMORY,
        vcpus=case.vcpus,
        order=ORDERS[case.order],
        mrconfigid=b"c" * 48,
        kernel=kernel,
    )
    with launched.vm as vm:
        # the TD HOB the vCPUs' RCX points at is in the TD's memory, page-added
        low_ram = next(data for (_, gpa), data in kernel.guest_memory().items() if gpa == 0)
        hob_gpa, hob = launched.launch.hob_gpa, launched.launch.hob
        assert low_ram[hob_gpa : hob_gpa + len(hob)] == hob
        assert isinstance(vm.vcpus[0].run(), kvm_map.HltExit)
    predicted = mrtd(tdvf_plan(image), order=ORDERS[case.order])
    return TdxRun(kernel, kernel.mrtd(), predicted, launched.log.digest)


#: td-shim's MRTDs of the real firmware (tests/vectors/tdx/README.md), by file SHA-256.
_TD_SHIM = {
    f.sha256: {TdxOrder.PER_PAGE: f.mrtd_per_page, TdxOrder.TWO_PASS: f.mrtd_two_pass}
    for f in tdx_firmwares()
}


def check_tdx(case: TdxCase) -> TdxRun:
    run = run_tdx(case)
    known = _TD_SHIM.get(hashlib.sha256(_image(case.firmware).data).hexdigest())
    if known is not None:  # the model module against an independent implementation
        assert run.model.hex() == known[case.order], "model TDX module's MRTD != td-shim's"
    assert run.kernel.violations == []
    assert run.model.hex() == run.predicted.hex(), "model TDX module's MRTD != measure tdx's"
    assert run.logged.hex() == run.predicted.hex(), "launch log's MRTD != measure tdx's"
    hob = next(
        r for r in tdvf_plan(_image(case.firmware)).regions if "TD_HOB" in r.provenance.detail
    )
    rcx = [j[2] for j in run.kernel.journal if j[0] == "TDX_INIT_VCPU"]
    assert rcx == [hob.gpa] * case.vcpus
    assert run.kernel.launch_params["mrconfigid"] == b"c" * 48
    assert run.kernel.launch_params["attributes"] == 1 << 28  # QEMU's default, SEPT_VE_DISABLE
    return run


# ---------------------------------------------------------------- the matrix


@pytest.mark.parametrize("case", snp_product(), ids=lambda c: c.id)
def test_snp_launch_measures_what_measure_snp_predicts(case: SnpCase, sigusr2: list[int]) -> None:
    check_snp(case)
    if case.faults:
        assert sigusr2, "the model delivered no signal"


@pytest.mark.parametrize("case", tdx_product(), ids=lambda c: c.id)
def test_tdx_launch_measures_what_measure_tdx_predicts(case: TdxCase, sigusr2: list[int]) -> None:
    check_tdx(case)
    if case.faults:
        assert sigusr2, "the model delivered no signal"


def test_the_matrix_covers_every_axis() -> None:
    snp, tdx = snp_product(), tdx_product()
    assert len(snp) == 3 * 4 * 3 * 2 - 12  # the 2022 build has no kernel-hashes page
    assert {c.firmware for c in snp} == set(SNP_FIRMWARE)
    assert {c.vcpus for c in snp} == set(VCPU_COUNTS)
    assert {c.cpu for c in snp} == set(CPU_TYPES)
    assert {c.hashes for c in snp} == {False, True}
    assert {c.faults for c in snp} == {False, True}
    assert len(tdx) == 4 * 4 * 2
    assert {c.order for c in tdx} == set(TdxOrder)
    assert {c.faults for c in tdx} == {False, True}
    # the model firmware is anchored to independent values, not only to our prediction
    plain = {(c.firmware, c.vcpus, c.cpu) for c in snp if not c.hashes}
    assert len(_PEER_SNP) == 3
    assert set(_PEER_SNP) <= plain
    assert len(_TD_SHIM) == 3


# ---------------------------------------------------------------- wrong engines fail


SNP_CASE = SnpCase("OVMF.amdsev.fd", 2, "EPYC-Genoa", True, False)
TDX_CASE = TdxCase("OVMF.inteltdx.ms.fd", 2, TdxOrder.PER_PAGE, False)


def test_a_changed_vmsa_register_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    real = kvm_map.Vcpu.set_state

    def wrong(self: kvm_map.Vcpu, state: VcpuState) -> None:
        regs = dict(state.regs)
        regs["rflags"] = 0x202  # interrupts enabled: not the reset state
        real(self, dataclasses.replace(state, regs=regs))

    monkeypatch.setattr(kvm_map.Vcpu, "set_state", wrong)
    run = run_snp(SNP_CASE)
    assert run.kernel.violations == []
    assert run.model != run.predicted  # the model PSP measured the VMSA the engine set


def test_a_dropped_measure_flag_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    real = kvm_map.Vcpu.tdx_init_mem_region
    dropped: list[int] = []

    def wrong(self: kvm_map.Vcpu, region: bytearray, measure: bool) -> None:
        if measure and not dropped:
            dropped.append(1)
            measure = False
        real(self, region, measure)

    monkeypatch.setattr(kvm_map.Vcpu, "tdx_init_mem_region", wrong)
    run = run_tdx(TDX_CASE)
    assert dropped
    assert run.model != run.predicted
    assert run.logged == run.predicted  # the log says what was planned; the model disagrees


@pytest.mark.parametrize("tech", ["snp", "tdx"])
def test_memory_attributes_set_after_populate_fail(
    monkeypatch: pytest.MonkeyPatch, tech: str
) -> None:
    deferred: list[tuple[int, int, int]] = []
    real = kvm_map.Vm.set_memory_attributes

    def later(self: kvm_map.Vm, gpa: int, size: int, attributes: int) -> None:
        deferred.append((gpa, size, attributes))

    monkeypatch.setattr(kvm_map.Vm, "set_memory_attributes", later)
    real_finish = kvm_map.Vm.snp_launch_finish

    def finish_then_attributes(self: kvm_map.Vm, finish: kvm_map.SnpFinish) -> None:
        real_finish(self, finish)
        for args in deferred:
            real(self, *args)

    monkeypatch.setattr(kvm_map.Vm, "snp_launch_finish", finish_then_attributes)
    run: Callable[[], object] = (
        (lambda: run_snp(SNP_CASE)) if tech == "snp" else (lambda: run_tdx(TDX_CASE))
    )
    with pytest.raises(KvmError) as info:
        run()
    assert "LAUNCH_UPDATE" in str(info.value) or "INIT_MEM_REGION" in str(info.value)


# ---------------------------------------------------------------- the rules, one by one


def test_policy_without_smt_is_refused_on_an_smt_host() -> None:
    with pytest.raises(KvmError, match=r"SNP_LAUNCH_START.*firmware error 0x7"):
        run_snp(SNP_CASE, policy=0x20000)


def test_policy_without_smt_is_refused_before_anything_on_an_smt_host() -> None:
    with pytest.raises(ConfigError, match="forbids SMT"):
        run_snp(SNP_CASE, policy=0x20000, host_smt=True)


def test_guest_features_reach_init2_and_every_vmsa() -> None:
    run = run_snp(SNP_CASE, guest_features=0x21)  # SNPActive | DEBUG_SWAP
    assert run.kernel.violations == []
    assert run.model.hex() == run.predicted.hex()
    assert ("SEV_INIT2", 0x20, 2) in run.kernel.journal  # SNPActive is KVM's to add; GHCB v2
    with pytest.raises(KvmError, match="KVM_SEV_INIT2"):
        run_snp(SNP_CASE, guest_features=0x3)  # a feature the model host does not offer


def test_policy_without_the_must_be_one_bit_is_refused() -> None:
    with pytest.raises(ConfigError, match="bit 17"):
        kvm_map.SnpStart(0x10000)


def test_a_cpuid_page_the_firmware_corrects_is_reported_leaf_by_leaf(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = kvm_map.Vcpu.set_cpuid2

    def more(self: kvm_map.Vcpu, entries: Any) -> None:
        # a feature the host CPU lacks: CPUID 7.0 EBX bit 30 (AVX512BW on this model host)
        out = [
            CpuidEntry(e.function, e.index, e.flags, e.eax, e.ebx | 1 << 30, e.ecx, e.edx)
            if (e.function, e.index) == (7, 0)
            else e
            for e in entries
        ]
        real(self, out)

    monkeypatch.setattr(kvm_map.Vcpu, "set_cpuid2", more)
    with pytest.raises(KvmError) as info:
        run_snp(SNP_CASE)
    text = str(info.value)
    assert "firmware error 0x16" in text
    assert "leaf 0x00000007 subleaf 0x0: provided" in text
    assert "ebx 0x" in text.split("provided")[1]
    # exactly the one leaf differs, and by exactly that bit
    provided = int(text.split("provided eax")[1].split("ebx ")[1].split(",")[0].split()[0], 16)
    expected = int(text.split("expected eax")[1].split("ebx ")[1].split()[0], 16)
    assert provided ^ expected == 1 << 30
    assert text.count(" subleaf ") == 1


def test_no_snp_host_refuses_before_creating_anything() -> None:
    kernel = ModelKernel(vm_types=1 | 1 << 5)
    with pytest.raises(KvmUnsupported, match="KVM_X86_SNP_VM"):
        launch_snp_firmware(
            _image("OVMF.amdsev.fd"),
            memory=MEMORY,
            vcpus=1,
            policy=0x30000,
            finish=kvm_map.SnpFinish(),
            kernel=kernel,
        )
    assert not any(j[0] == "CREATE_VM" for j in kernel.journal)


def test_no_tdx_host_refuses_before_creating_anything() -> None:
    kernel = ModelKernel(vm_types=1 | 1 << 4)
    with pytest.raises(KvmUnsupported, match="KVM_X86_TDX_VM"):
        launch_tdx_firmware(_image("OVMF.inteltdx.ms.fd"), memory=MEMORY, vcpus=1, kernel=kernel)
    assert not any(j[0] == "CREATE_VM" for j in kernel.journal)


@pytest.mark.parametrize(
    ("attributes", "xfam", "setting", "message"),
    [
        (1 << 30, None, "td_attributes", "supports only 0x10000000"),
        (1 << 5, None, "td_attributes", "only DEBUG"),
        (None, 1 << 40, "xfam", "^xfam 0x10000000000"),
    ],
)
def test_td_attributes_and_xfam_outside_the_host_are_refused(
    attributes: int | None, xfam: int | None, setting: str, message: str
) -> None:
    kernel = ModelKernel()
    with raises_cvm(ConfigError, setting=setting, match=message):
        launch_tdx_firmware(
            _image("OVMF.inteltdx.ms.fd"),
            memory=MEMORY,
            vcpus=1,
            kernel=kernel,
            attributes=attributes,
            xfam=xfam,
        )
    assert kernel.violations == []
    assert kernel.open_fds() == []


def test_tdx_capabilities_grow_on_e2big() -> None:
    from tests.model_firmware import TDX_CONFIG

    with kvm_map.Vm.open(kvm_map.VmType.TDX, kernel=ModelKernel()) as vm:
        caps = vm.tdx_capabilities(nent=1)
    assert [(e.function, e.index) for e in caps.cpuid] == [(c[0], c[1]) for c in TDX_CONFIG]


def test_the_model_catches_pre_fault_before_finish() -> None:
    kernel = ModelKernel()
    image = _image("OVMF.amdsev.fd")
    real = kvm_snp.populate_snp

    def prefault_first(vm: kvm_map.Vm, plan: Any, finish: Any, **kw: Any) -> Any:
        req = _engine._PreFault(vm.vcpus[0], 0x800000, 0x1000)
        _engine._drive(req, lambda g, s: None, "pre-fault")
        return real(vm, plan, finish, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(kvm_snp, "populate_snp", prefault_first)
        with pytest.raises(KvmError, match="KVM_PRE_FAULT_MEMORY"):
            launch_snp_firmware(
                image,
                memory=MEMORY,
                vcpus=1,
                policy=0x30000,
                finish=kvm_map.SnpFinish(),
                kernel=kernel,
            )
    assert kernel.violations == ["KVM_PRE_FAULT_MEMORY before the launch was sealed"]


def test_page_state_changes_are_served_after_the_launch() -> None:
    kernel = ModelKernel()
    launched = launch_tdx_firmware(
        _image("OVMF.inteltdx.ms.fd"), memory=MEMORY, vcpus=1, kernel=kernel
    )
    with launched.vm as vm:
        model_vm = next(o for o in kernel.objects.values() if isinstance(o, _Vm))
        gfns = {0x100000 // 4096, 0x101000 // 4096}
        assert gfns <= model_vm.private
        shared = kvm_map.HypercallExit(12, (0x100000, 2, 0, 0, 0, 0))
        assert kvm_map.serve_private_memory(vm, shared)
        assert not gfns & model_vm.private
        private = kvm_map.HypercallExit(12, (0x100000, 2, 0x10, 0, 0, 0))
        assert kvm_map.serve_private_memory(vm, private)
        assert gfns <= model_vm.private
        fault = kvm_map.MemoryFaultExit(0, 0x100000, 0x1000)  # a shared access
        assert kvm_map.serve_private_memory(vm, fault)
        assert 0x100000 // 4096 not in model_vm.private
        assert not kvm_map.serve_private_memory(vm, kvm_map.HypercallExit(1, (0,) * 6))
        assert not kvm_map.serve_private_memory(vm, kvm_map.HltExit())
    assert kernel.violations == []


def test_a_hypercall_exit_is_decoded_and_answered() -> None:
    import ctypes
    import mmap

    from cvmlaunch import _uapi

    with mmap.mmap(-1, 3 * 4096) as run_map:
        run = _uapi.KvmRun.from_buffer(run_map)
        run.exit_reason = _uapi.ExitReason.HYPERCALL
        run.exit.hypercall.nr = 12
        for i, v in enumerate((0x100000, 2, 0x10)):
            run.exit.hypercall.args[i] = v
        exit_, _ = kvm_vcpu._decode_exit(run_map)
        assert exit_ == kvm_map.HypercallExit(12, (0x100000, 2, 0x10, 0, 0, 0))
        vcpu = kvm_map.Vcpu(ModelKernel(), -1, 0, run_map)
        run.exit.hypercall.ret = 99
        vcpu.complete_hypercall(0)
        assert run.exit.hypercall.ret == 0
        del run
        vcpu.run_map = None
        assert ctypes.sizeof(_uapi.KvmRunHypercall) == 72


@pytest.mark.parametrize(
    ("right_digest", "policy", "error"),
    [(True, 0x30000, None), (False, 0x30000, "0xb"), (True, 0x70000, "0x7")],
)
def test_an_id_block_must_carry_the_digest_and_policy(
    right_digest: bool, policy: int, error: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The launcher refuses a pair the firmware would refuse before anything is created;
    without that check, the model firmware refuses it at LAUNCH_FINISH."""
    from cvmlaunch.errors import CvmLaunchError
    from cvmlaunch.launcher import firmware
    from cvmlaunch.measure.identity import GuestPolicy, IdBlock, generate_key, sign_id_block

    image = _image("OVMF.amdsev.fd")
    digest = snp_digest(image, SnpSettings(vcpus=1, vcpu_sig=CPU_TYPES["EPYC-Milan"]))
    block = IdBlock(ld=digest if right_digest else bytes(48), policy=GuestPolicy(policy))
    auth = sign_id_block(block, generate_key())
    finish = kvm_map.SnpFinish(id_block=block.pack(), id_auth=auth.pack(), host_data=HOST_DATA)

    def launch(kernel: ModelKernel) -> None:
        launched = launch_snp_firmware(
            image, memory=MEMORY, vcpus=1, policy=0x30000, finish=finish, kernel=kernel
        )
        launched.vm.close()

    kernel = ModelKernel()
    if error is None:
        launch(kernel)
        assert kernel.launch_params["id_block"] == block.pack()
        assert kernel.launch_params["id_auth"] == auth.pack()
        assert kernel.violations == []
        return
    with pytest.raises(CvmLaunchError) as refused:
        launch(kernel)
    assert refused.value.exit_code == 1
    assert not any(j[0] == "CREATE_VM" for j in kernel.journal)
    monkeypatch.setattr(firmware, "_check_pair", lambda *args: None)
    kernel = ModelKernel()
    with pytest.raises(KvmError, match=f"SNP_LAUNCH_FINISH.*firmware error {error}"):
        launch(kernel)
    assert kernel.violations == []


def test_a_signature_other_than_the_hosts_names_the_setting() -> None:
    kernel = ModelKernel(signature=CPU_TYPES["EPYC-Milan"])
    with raises_cvm(ConfigError, setting="vcpu_sig", match=r"\(vcpu_type/vcpu_sig\)") as info:
        launch_snp_firmware(
            _image("OVMF.amdsev.fd"),
            memory=MEMORY,
            vcpus=1,
            policy=0x30000,
            host_smt=False,
            finish=kvm_map.SnpFinish(),
            kernel=kernel,
            vcpu_sig=CPU_TYPES["EPYC-Milan"] + 1,
        )
    assert info.value.also == ("vcpu_type",)
    assert not any(j[0] == "CREATE_VM" for j in kernel.journal)
