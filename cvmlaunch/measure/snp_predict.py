"""The one entry point of SEV-SNP (and SEV, SEV-ES) launch digest prediction.

Rule 1: one place resolves what a user may leave out. :class:`SnpRequest` holds the mode and
the settings as given (None: the default) and turns them into
:class:`~cvmlaunch.plan.snp.SnpSettings` (or SEV's
:class:`~cvmlaunch.measure.sev.SevSettings`); its docstring lists every default with its
source. Callers (the CLI) map their inputs to a request and render the result.

Rule 2: :func:`predict` only picks the plan of the mode (:mod:`cvmlaunch.plan.snp`) and
folds it (:mod:`cvmlaunch.measure.snp_chain`, :mod:`cvmlaunch.measure.sev`): no measurement
logic of its own. Images come parsed, file
digests computed (:mod:`cvmlaunch.files`); nothing here touches the OS.

Rule 3: :class:`SnpInputs` is a request as a command line gives it (text, file names): one
object from the CLI, parsed and checked here (:meth:`SnpInputs.request`), its files read by the
caller.

Start-up time: the log model, the SEV code, the kernel hashes and the launch identity are
imported only when a request needs them.
"""

from __future__ import annotations

from dataclasses import dataclass

from cvmlaunch.errors import ConfigError
from cvmlaunch.measure.snp import SevMode, snp_log
from cvmlaunch.measure.snp_chain import ZERO_DIGEST, fold_plan
from cvmlaunch.plan.snp import SnpSettings, firmware_plan, snp_plan, svsm_plan
from cvmlaunch.plan.vmsa import FpuInit, VmmType

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from cvmlaunch.image.ovmf import OvmfImage
    from cvmlaunch.measure.log import LogInput, MeasurementLog, SettingValue
    from cvmlaunch.plan.sev import SevSettings
    from cvmlaunch.plan.sev_hashes import KernelHashes
    from cvmlaunch.snp_policy import GuestPolicy

__all__ = [
    "VMM_RESET_VCPU_SIG",
    "SnpInputs",
    "SnpPrediction",
    "SnpRequest",
    "digest_size",
    "predict",
]

_SNP_ACTIVE = 0x1  # SEV_FEATURES bit 0, SNPActive


def digest_size(mode: SevMode) -> int:
    """The size of ``mode``'s digest: 32 (SEV and SEV-ES: SHA-256 GCTX.LD) or 48 (SNP)."""
    return 32 if mode in (SevMode.SEV, SevMode.SEV_ES) else 48


#: The vCPU signature of EC2 and GCE guests: those VMMs configure no CPUID leaf 1, so KVM
#: leaves RDX at its reset value 0x600 (research snp-measure.md, "VMM differences";
#: sev-snp-measure 0.0.13 agrees: vectors ``amdsev-4-ec2``, ``amdsev-4-gce``). The VMSA builder
#: (:func:`cvmlaunch.plan.vmsa.vmsa_page`) writes it for these VMMs; this is the value the
#: settings record.
VMM_RESET_VCPU_SIG = 0x600

_SNP_MODES = (SevMode.SNP, SevMode.SNP_SVSM)  # the modes with a launch identity
_VMSA_MODES = (SevMode.SNP, SevMode.SNP_SVSM, SevMode.SEV_ES)  # the modes that measure VMSAs


@dataclass(frozen=True, slots=True, eq=False)  # eq: not a value to compare (start-up time)
class SnpRequest:
    """What to predict: the mode and the settings as given, None meaning "the default".

    The defaults, resolved here and nowhere else:

    * ``vcpus``: required (no default) in snp, snp:svsm and seves, whose VMSAs are measured
      (one per vCPU); 1 in sev and snp:ovmf-hash, which measure no VMSA.
    * ``vcpu_sig``: required with QEMU in those modes (QEMU puts its CPU model's signature in
      RDX); with EC2 and GCE always :data:`VMM_RESET_VCPU_SIG` (0x600), whatever is given; 0
      where no VMSA is measured.
    * ``guest_features``: 0x1 (SNPActive, which KVM sets for every SNP guest) in the SNP modes;
      0 for SEV-ES (KVM_SEV_ES_INIT VMs have SEV_FEATURES 0).
    * ``fpu``: INIT2 in the SNP modes (KVM_SEV_INIT2: every SNP VM on Linux >= 6.10); LEGACY
      for SEV-ES (QEMU 9.1+'s default SEV-ES launch, KVM_SEV_ES_INIT: MXCSR = FCW = 0; where
      sev-snp-measure differs, vector ``div-seves-legacy-fpu``).
    * measured direct boot: no ``initrd_sha256`` is the SHA-256 of no bytes, no ``cmdline``
      that of a lone NUL (what QEMU hashes without ``-initrd`` / ``-append``).
    * launch identity (snp, snp:svsm only; recorded, never measured): ``policy`` 0x30000
      (:data:`cvmlaunch.snp_policy.DEFAULT_POLICY`, QEMU's), ``host_data`` zero, no ID
      block.

    Args:
        mode: what to measure.
        vcpus, vcpu_sig, vmm, guest_features, fpu: the VMSA settings (:class:`SnpSettings`).
        kernel_sha256, initrd_sha256, cmdline: measured direct boot (``cmdline`` as bytes,
            without the NUL); None: no kernel.
        ovmf_hash: a precomputed ``snp:ovmf-hash`` to start from (snp only).
        svsm: whether an SVSM image is given (snp:svsm needs one, no other mode takes one).
        vars_size: the firmware vars size below OVMF (snp:svsm only, where it is needed).
        policy, host_data, id_block, id_auth: the SNP launch identity; an ID block must carry
            the predicted digest and ``policy`` (``id_source`` names it in errors).
        record_identity: record the launch identity in the settings even when none is given
            (False saves its import when only the digest is wanted).
        log: build the launch log too.

    Errors name settings (:attr:`ConfigError.setting`, rule 5 of :mod:`cvmlaunch.errors`)
    by field, but for what a field is made from: ``kernel`` and ``initrd`` (the files whose
    digests ``kernel_sha256`` and ``initrd_sha256`` are: "initrd and cmdline need kernel"),
    ``vars_file`` (one way to give ``vars_size``) and ``vcpu_type``, ``vcpu_family``,
    ``vcpu_model``, ``vcpu_stepping`` (:func:`cvmlaunch.vcpu_signature.resolve_vcpu_signature`'s
    ways to give ``vcpu_sig``).

    Raises:
        ConfigError: a combination the mode cannot honour (values are checked by
            :meth:`settings`).
    """

    mode: SevMode = SevMode.SNP
    vcpus: int | None = None
    vcpu_sig: int | None = None
    vmm: VmmType = VmmType.QEMU
    guest_features: int | None = None
    fpu: FpuInit | None = None
    kernel_sha256: bytes | None = None
    initrd_sha256: bytes | None = None
    cmdline: bytes | None = None
    ovmf_hash: bytes | None = None
    svsm: bool = False
    vars_size: int | None = None
    policy: GuestPolicy | None = None
    host_data: bytes | None = None
    id_block: bytes | None = None
    id_auth: bytes | None = None
    id_source: str = "ID block"
    record_identity: bool = True
    log: bool = False

    def __post_init__(self) -> None:
        mode = self.mode
        kernel = self.kernel_sha256 is not None
        if (self.initrd_sha256 is not None or self.cmdline is not None) and not kernel:
            given = "initrd" if self.initrd_sha256 is not None else "cmdline"
            raise ConfigError(
                "initrd and cmdline need kernel",
                setting=given,
                also=("cmdline" if given == "initrd" else "initrd", "kernel"),
            )
        if self.ovmf_hash is not None and mode is not SevMode.SNP:
            raise ConfigError(
                "ovmf_hash works only with mode snp", setting="ovmf_hash", also=("mode",)
            )
        if mode is SevMode.SNP_OVMF_HASH and kernel:
            raise ConfigError(
                "mode snp:ovmf-hash measures the firmware only (no kernel)",
                setting="kernel",
                also=("mode",),
            )
        if mode is SevMode.SNP_SVSM:
            if not self.svsm:
                raise ConfigError("mode snp:svsm needs svsm", setting="svsm", also=("mode",))
            if self.vars_size is None:
                raise ConfigError(
                    "mode snp:svsm needs exactly one of vars_size or vars_file",
                    setting="vars_size",
                    also=("mode", "vars_file"),
                )
            if kernel:
                raise ConfigError(
                    "mode snp:svsm does not take kernel", setting="kernel", also=("mode",)
                )
        elif self.svsm or self.vars_size is not None:
            raise ConfigError(
                "svsm, vars_size and vars_file belong to mode snp:svsm",
                setting="svsm" if self.svsm else "vars_size",
                also=("vars_size" if self.svsm else "svsm", "vars_file", "mode"),
            )
        identity = [
            name
            for name, value in (
                ("policy", self.policy),
                ("host_data", self.host_data),
                ("id_block", self.id_block),
                ("id_auth", self.id_auth),
            )
            if value is not None
        ]
        if identity and mode not in _SNP_MODES:
            raise ConfigError(
                f"{identity[0]} is an SNP launch setting (mode snp or snp:svsm)",
                setting=identity[0],
                also=("mode",),
            )
        if (self.id_block is None) != (self.id_auth is None):
            given = "id_block" if self.id_block is not None else "id_auth"
            raise ConfigError(
                "id_block and id_auth go together",
                setting=given,
                also=("id_auth" if given == "id_block" else "id_block",),
            )
        if mode in _VMSA_MODES:
            if self.vcpus is None:
                raise ConfigError(f"mode {mode.value} needs vcpus", setting="vcpus", also=("mode",))
            if self.vmm is VmmType.QEMU and self.vcpu_sig is None:
                raise ConfigError(
                    f"mode {mode.value} with QEMU needs vcpu_type, vcpu_sig or "
                    "vcpu_family/vcpu_model/vcpu_stepping",
                    setting="vcpu_sig",
                    also=("mode", "vcpu_type", "vcpu_family", "vcpu_model", "vcpu_stepping"),
                )

    @property
    def is_sev(self) -> bool:
        """Whether the digest is SEV's or SEV-ES's GCTX.LD (SHA-256, 32 bytes), not SNP's."""
        return self.mode in (SevMode.SEV, SevMode.SEV_ES)

    def _sig(self) -> int:
        if self.vmm is not VmmType.QEMU:
            return VMM_RESET_VCPU_SIG
        return self.vcpu_sig or 0

    def kernel_hashes(self) -> KernelHashes | None:
        """The kernel-hashes table of measured direct boot (None without a kernel)."""
        if self.kernel_sha256 is None:
            return None
        import hashlib

        from cvmlaunch.plan.sev_hashes import KernelHashes, cmdline_sha256

        initrd = self.initrd_sha256
        return KernelHashes(
            kernel=self.kernel_sha256,
            initrd=hashlib.sha256(b"").digest() if initrd is None else initrd,
            cmdline=cmdline_sha256(self.cmdline),
        )

    def settings(self) -> SnpSettings | SevSettings:
        """The settings with every default filled in (:class:`SevSettings` for sev and seves).

        Raises:
            ConfigError: a value out of range.
        """
        if self.is_sev:
            from cvmlaunch.plan.sev import SevSettings

            es = self.mode is SevMode.SEV_ES
            return SevSettings(
                es=es,
                vcpus=self.vcpus if es and self.vcpus is not None else 1,
                vcpu_sig=self._sig(),
                vmm=self.vmm,
                guest_features=self.guest_features or 0,
                kernel_hashes=self.kernel_hashes(),
                fpu=self.fpu or FpuInit.LEGACY,
            )
        return SnpSettings(
            vcpus=self.vcpus if self.vcpus is not None else 1,
            vcpu_sig=self._sig(),
            vmm=self.vmm,
            guest_features=_SNP_ACTIVE if self.guest_features is None else self.guest_features,
            kernel_hashes=self.kernel_hashes(),
            ovmf_hash=self.ovmf_hash,
            fpu=self.fpu or FpuInit.INIT2,
        )

    def identity_settings(self) -> dict[str, SettingValue] | None:
        """The launch identity as header settings (policy, host data, ID block and auth), or
        None: not an SNP mode, or none given and ``record_identity`` off.

        Raises:
            ConfigError: a value of the wrong size.
        """
        given = (self.policy, self.host_data, self.id_block, self.id_auth)
        if self.mode not in _SNP_MODES or (
            not self.record_identity and all(v is None for v in given)
        ):
            return None
        from cvmlaunch.launch_identity import SnpLaunchIdentity
        from cvmlaunch.measure.reference import identity_settings
        from cvmlaunch.snp_policy import DEFAULT_POLICY

        snp = SnpLaunchIdentity()
        if self.host_data is not None:
            snp = SnpLaunchIdentity(self.host_data)
        if self.id_block is not None and self.id_auth is not None:
            snp = SnpLaunchIdentity(snp.host_data, self.id_block, self.id_auth)
        return dict(identity_settings(snp=snp, policy=self.policy or DEFAULT_POLICY))

    def check_id_block(self, digest: bytes) -> None:
        """Raise unless the ID block (if any) verifies and carries ``digest`` and the policy.

        Raises:
            CheckFailed, MeasurementMismatch: the ID block does not fit this launch.
            ImageError: an ID block or ID auth of the wrong size.
        """
        if self.id_block is None or self.id_auth is None:
            return
        from cvmlaunch.measure.identity import check_launch_id_pair
        from cvmlaunch.snp_policy import DEFAULT_POLICY

        check_launch_id_pair(
            self.id_block,
            self.id_auth,
            measurement=digest,
            policy=self.policy or DEFAULT_POLICY,
            source=self.id_source,
        )


class SnpPrediction:
    """The result of :func:`predict` (a plain class: a dataclass's generated methods would
    cost ``measure snp`` start-up time, tests/test_startup.py).

    Args:
        digest: the launch digest (48 bytes; 32 for SEV and SEV-ES).
        settings: the settings that decided it, as the JSON output shows them (snp:ovmf-hash:
            none; the launch identity where recorded).
        log: the launch log, when the request asked for one.
    """

    __slots__ = ("digest", "log", "settings")

    def __init__(
        self,
        digest: bytes,
        settings: dict[str, SettingValue],
        log: MeasurementLog | None = None,
    ) -> None:
        self.digest = digest
        self.settings = settings
        self.log = log

    def __repr__(self) -> str:
        return f"SnpPrediction(digest={self.digest.hex()}, settings={self.settings!r})"


def _image_input(role: str, image: OvmfImage) -> LogInput:
    """The log header input of a parsed image: its name (cut to the file name by LogInput),
    size and digests."""
    import hashlib

    from cvmlaunch.measure.log import LogInput

    return LogInput(
        role=role,
        name=image.name,
        size=len(image.data),
        sha256=hashlib.sha256(image.data).digest(),
        sha384=hashlib.sha384(image.data).digest(),
    )


def _tool_version() -> str:
    from cvmlaunch import __version__

    return __version__


def predict(
    image: OvmfImage,
    request: SnpRequest,
    *,
    svsm: OvmfImage | None = None,
    inputs: Sequence[LogInput] = (),
) -> SnpPrediction:
    """The launch digest (and, if asked, the log) of ``request`` for the firmware ``image``.

    Picks the plan of the mode (:func:`~cvmlaunch.plan.snp.snp_plan`, ``svsm_plan``,
    ``firmware_plan``, or SEV's :func:`~cvmlaunch.measure.sev.sev_updates`), folds it (or
    logs it: the log's footer digest is the same fold), then checks an ID block against the
    digest.

    Args:
        image: the OVMF firmware.
        request: the mode and settings (defaults: :class:`SnpRequest`).
        svsm: the Coconut SVSM image (snp:svsm).
        inputs: the log header inputs besides the images (kernel, initrd: name, size,
            SHA-256); the firmware, the command line and the SVSM image are added here.

    Raises:
        ConfigError: settings out of range or that the mode cannot honour.
        ImageError, LayoutError: see :func:`~cvmlaunch.plan.snp.snp_plan` and ``svsm_plan``.
        CheckFailed: an ID block that does not fit this launch.
    """
    settings = request.settings()
    log: MeasurementLog | None = None
    header_inputs: list[LogInput] = []
    if request.log:
        header_inputs = [_image_input("firmware", image), *inputs]
        if request.cmdline is not None:
            from cvmlaunch.measure.log import cmdline_input

            header_inputs.append(cmdline_input(request.cmdline))
    if not isinstance(settings, SnpSettings):
        from cvmlaunch.measure.sev import sev_digest, sev_log

        if request.log:
            log = sev_log(
                image, settings, inputs=tuple(header_inputs), tool_version=_tool_version()
            )
            return SnpPrediction(log.digest, settings.log_settings(), log)
        return SnpPrediction(sev_digest(image, settings), settings.log_settings())
    extra: dict[str, SettingValue] = {}
    shown: dict[str, SettingValue] = settings.log_settings()
    if request.mode is SevMode.SNP_OVMF_HASH:
        plan = firmware_plan(image)
        shown = {}
    elif request.mode is SevMode.SNP_SVSM:
        if svsm is None:
            raise ConfigError("mode snp:svsm needs svsm", setting="svsm", also=("mode",))
        size = request.vars_size or 0
        plan = svsm_plan(image, svsm, settings, vars_size=size)
        if request.log:
            header_inputs.append(_image_input("svsm", svsm))
        extra = {"vars_size": size}
        shown |= extra
    else:
        plan = snp_plan(image, settings)
        extra = {"ap_reset_address": image.sev_es_reset_eip}
    identity = request.identity_settings()
    if identity is not None:
        extra |= identity
        shown |= identity
    if request.log:
        log = snp_log(
            plan,
            settings,
            mode=request.mode,
            inputs=tuple(header_inputs),
            tool_version=_tool_version(),
            extra_settings=extra,
        )
        digest = log.digest
    else:
        digest = fold_plan(plan, settings.ovmf_hash or ZERO_DIGEST)
    request.check_id_block(digest)
    return SnpPrediction(digest, shown, log)


@dataclass(frozen=True, slots=True, eq=False)
class SnpInputs:
    """A request as a command line gives it: text, numbers and file names (``measure snp``'s
    options, one field each, None: not given). :meth:`request` parses the text and checks the
    combination; the files are read by the caller (:mod:`cvmlaunch.files`) and replace their
    stand-ins (:meth:`with_files`).

    Args:
        mode: an :class:`SevMode` value; ovmf: the firmware file.
        vcpus, vcpu_type, vcpu_sig, vcpu_family, vcpu_model, vcpu_stepping: the vCPU count and
            signature (:func:`cvmlaunch.vcpu_signature.resolve_vcpu_signature`).
        vmm_type, fpu_init: :class:`VmmType` and :class:`FpuInit` values; guest_features: as
            :class:`SnpRequest`.
        kernel, initrd, append: measured direct boot; kernel_sha256, initrd_sha256: hex
            digests instead of the files.
        snp_ovmf_hash: hex; svsm, vars_file: files; vars_size: bytes.
        policy, host_data: hex; id_block, id_auth: files.
    """

    ovmf: str
    mode: str = "snp"
    vcpus: int | None = None
    vcpu_type: str | None = None
    vcpu_sig: int | None = None
    vcpu_family: int | None = None
    vcpu_model: int | None = None
    vcpu_stepping: int | None = None
    vmm_type: str = "QEMU"
    guest_features: int | None = None
    fpu_init: str | None = None
    kernel: str | None = None
    initrd: str | None = None
    append: str | None = None
    kernel_sha256: str | None = None
    initrd_sha256: str | None = None
    snp_ovmf_hash: str | None = None
    svsm: str | None = None
    vars_size: int | None = None
    vars_file: str | None = None
    policy: str | None = None
    host_data: str | None = None
    id_block: str | None = None
    id_auth: str | None = None

    @property
    def files(self) -> list[str]:
        """Every file these inputs name (an output may be none of them)."""
        given = (self.ovmf, self.kernel, self.initrd, self.svsm, self.vars_file)
        return [p for p in (*given, self.id_block, self.id_auth) if p]

    def request(self, *, record_identity: bool, log: bool) -> SnpRequest:
        """The request, with zeros standing in for what the files give (the kernel's and
        initrd's digests, the vars size, the ID block and auth), so that a bad option is
        reported before an unreadable file.

        Raises:
            ConfigError: bad text, or options that do not go together.
        """
        from cvmlaunch.layout import SNP_HOST_DATA_SIZE, SNP_ID_AUTH_SIZE, SNP_ID_BLOCK_SIZE
        from cvmlaunch.layout import parse_hex_bytes as hex_
        from cvmlaunch.vcpu_signature import resolve_vcpu_signature

        mode = SevMode(self.mode)
        seed = None if self.snp_ovmf_hash is None else hex_(self.snp_ovmf_hash, 48, "snp_ovmf_hash")
        if self.kernel is not None and self.kernel_sha256 is not None:
            raise ConfigError(
                "give kernel or kernel_sha256, not both", setting="kernel", also=("kernel_sha256",)
            )
        if self.initrd is not None and self.initrd_sha256 is not None:
            raise ConfigError(
                "give initrd or initrd_sha256, not both", setting="initrd", also=("initrd_sha256",)
            )
        k_sha = (
            None if self.kernel_sha256 is None else hex_(self.kernel_sha256, 32, "kernel_sha256")
        )
        i_sha = (
            None if self.initrd_sha256 is None else hex_(self.initrd_sha256, 32, "initrd_sha256")
        )
        cmdline = None
        if self.append is not None:
            from cvmlaunch.plan.sev_hashes import cmdline_bytes

            cmdline = cmdline_bytes(self.append)
        policy = None
        if self.policy is not None:
            from cvmlaunch.snp_policy import GuestPolicy

            policy = GuestPolicy.parse(self.policy)
        vars_given = self.vars_size if self.vars_file is None else 0
        if self.vars_size is not None and self.vars_file is not None and mode is SevMode.SNP_SVSM:
            vars_given = None  # "needs exactly one of vars_size or vars_file"
        host_data = self.host_data
        return SnpRequest(
            mode=mode,
            vcpus=self.vcpus,
            vcpu_sig=resolve_vcpu_signature(
                self.vcpu_type, self.vcpu_sig, self.vcpu_family, self.vcpu_model, self.vcpu_stepping
            ),
            vmm=VmmType(self.vmm_type),
            guest_features=self.guest_features,
            fpu=None if self.fpu_init is None else FpuInit(self.fpu_init),
            kernel_sha256=bytes(32) if self.kernel is not None else k_sha,
            initrd_sha256=bytes(32) if self.initrd is not None else i_sha,
            cmdline=cmdline,
            ovmf_hash=seed,
            svsm=self.svsm is not None,
            vars_size=vars_given,
            policy=policy,
            host_data=None
            if host_data is None
            else hex_(host_data, SNP_HOST_DATA_SIZE, "host_data"),
            id_block=None if self.id_block is None else bytes(SNP_ID_BLOCK_SIZE),
            id_auth=None if self.id_auth is None else bytes(SNP_ID_AUTH_SIZE),
            id_source=f"{self.id_block} / {self.id_auth}",
            record_identity=record_identity,
            log=log,
        )

    def with_files(
        self,
        request: SnpRequest,
        *,
        kernel_sha256: bytes | None,
        initrd_sha256: bytes | None,
        vars_size: int | None,
        id_block: bytes | None,
        id_auth: bytes | None,
    ) -> SnpRequest:
        """``request`` (from :meth:`request`) with what the files gave in place of the
        stand-ins: the digests of :attr:`kernel` and :attr:`initrd` (else the hex ones given),
        the size of :attr:`vars_file`, the ID block and auth."""
        import dataclasses

        return dataclasses.replace(
            request,
            kernel_sha256=request.kernel_sha256 if self.kernel is None else kernel_sha256,
            initrd_sha256=request.initrd_sha256 if self.initrd is None else initrd_sha256,
            vars_size=request.vars_size if self.vars_file is None else vars_size,
            id_block=id_block,
            id_auth=id_auth,
        )
