"""Reference-value sets: the launch digest of every configuration a deployment may use.

Rule 1: one digest per distinct configuration, with the shared work done once. SNP: per
firmware (and VMM, kernel hashes) the prefix of the plan is folded once and the VMSAs of every
(vCPU type, vCPU count) continue from that state (:func:`cvmlaunch.measure.snp.snp_digest_set`);
TDX: per firmware build, one MRTD per page order.

Rule 2: the order is stable and says what it is: firmware as given, vCPU types as given, vCPU
counts ascending (SNP); firmware as given, page orders as given (TDX). Every configuration's
settings are named as in launch logs, and JSON is written with sorted keys.

Rule 3: the set renders in our JSON (which ``cvmlaunch report check --reference-values``
reads back) and in each verifier's words, holding the whole set where the verifier takes a set
(Trustee's lists, go-tdx-guest's ``any_mr_td``) and one entry per configuration, each after a
comment line naming it, where it takes one value (snpguest options, go-sev-guest's
``check.Config``).

Pure: buffers in, digests out; no I/O.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from cvmlaunch.errors import ConfigError, ImageError
from cvmlaunch.measure.reference import (
    FORMATS,
    go_sev_guest_config,
    go_tdx_guest_config,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from cvmlaunch.layout import Buffer
    from cvmlaunch.measure.identity import GuestPolicy
    from cvmlaunch.measure.tdx import PageOrder
    from cvmlaunch.plan.sev_hashes import KernelHashes
    from cvmlaunch.plan.vmsa import VmmType

__all__ = [
    "SET_FORMAT",
    "SET_VERSION",
    "Configuration",
    "ReferenceSet",
    "parse_page_orders",
    "parse_vcpu_ranges",
    "snp_reference_set",
    "tdx_reference_set",
]

#: The ``format`` of a reference-value set document.
SET_FORMAT = "cvmlaunch-reference-set"
#: Its version.
SET_VERSION = 1
#: A set document's size limit in configurations (a typo like 1-4096 x 20 types is 81920).
MAX_CONFIGURATIONS = 1 << 20

Scalar = str | int | bool | None


def parse_vcpu_ranges(text: str) -> tuple[int, ...]:
    """vCPU counts from ``1-16,32,64`` (ranges inclusive), ascending and without repeats.

    Raises:
        ConfigError: an empty item, a reversed range or a count outside 1..MAX_VCPUS (4096).
    """
    from cvmlaunch.plan.snp import MAX_VCPUS

    counts: set[int] = set()
    for item in text.split(","):
        low, sep, high = item.strip().partition("-")
        try:
            first = int(low, 10)
            last = int(high, 10) if sep else first
        except ValueError:
            raise ConfigError(
                f"vcpus: vCPU range {item.strip()!r} is not N or N-M (e.g. 1-16,32,64)",
                setting="vcpus",
            ) from None
        if first > last:
            raise ConfigError(f"vcpus: vCPU range {item.strip()!r} runs backwards", setting="vcpus")
        if first < 1 or last > MAX_VCPUS:
            raise ConfigError(
                f"vcpus: vCPU range {item.strip()!r} is out of range (1..{MAX_VCPUS})",
                setting="vcpus",
            )
        counts.update(range(first, last + 1))
    return tuple(sorted(counts))


def parse_page_orders(names: Sequence[str]) -> list[PageOrder]:
    """TDX page orders by name (``per-page``, ``two-pass``), in the order given; none: every
    order (a fleet mid-upgrade has both).

    Raises:
        ConfigError: a name that is no page order (setting ``order``).
    """
    from cvmlaunch.measure.tdx import PageOrder

    if not names:
        return list(PageOrder)
    try:
        return [PageOrder(n) for n in names]
    except ValueError:
        known = ", ".join(o.value for o in PageOrder)
        raise ConfigError(
            f"order {','.join(names)}: each must be one of {known}", setting="order"
        ) from None


@dataclass(frozen=True, slots=True)
class Configuration:
    """One configuration of a set and its launch digest.

    Args:
        settings: what distinguishes it, by log-header names (sorted by name).
        measurement: the SNP MEASUREMENT or TDX MRTD it predicts (48 bytes).
    """

    settings: tuple[tuple[str, Scalar], ...]
    measurement: bytes

    @classmethod
    def of(cls, measurement: bytes, **settings: Scalar) -> Configuration:
        """A configuration from keyword settings."""
        return cls(tuple(sorted(settings.items())), measurement)

    def as_dict(self) -> dict[str, Scalar]:
        """Settings and ``measurement`` (hex) in one mapping."""
        return {**dict(self.settings), "measurement": self.measurement.hex()}

    def describe(self) -> str:
        """A one-line name: ``firmware=… vcpu_type=… vcpus=…`` (the distinguishing settings)."""
        keys = ("firmware", "vcpu_type", "vcpus", "order", "vmm_type", "guest_features")
        values = dict(self.settings)
        return " ".join(f"{k}={values[k]}" for k in keys if k in values)


@dataclass(frozen=True, slots=True)
class ReferenceSet:
    """A set of accepted launch digests, with the launch identity they share.

    Args:
        technology: ``sev-snp`` or ``tdx``.
        configurations: in the set's order (see the module rules).
        policy: the SNP guest policy every configuration is launched with, if given.
    """

    technology: str
    configurations: tuple[Configuration, ...]
    policy: GuestPolicy | None = None

    @property
    def measurements(self) -> tuple[bytes, ...]:
        """The distinct digests, in set order."""
        return tuple(dict.fromkeys(c.measurement for c in self.configurations))

    def matching(self, measurement: bytes) -> tuple[Configuration, ...]:
        """The configurations whose digest is ``measurement``."""
        return tuple(c for c in self.configurations if c.measurement == measurement)

    def as_dict(self) -> dict[str, object]:
        """Our JSON form (:data:`SET_FORMAT`)."""
        return {
            "format": SET_FORMAT,
            "version": SET_VERSION,
            "technology": self.technology,
            "policy": None if self.policy is None else f"{self.policy.value:#x}",
            "configurations": [c.as_dict() for c in self.configurations],
        }

    def render(self, fmt: str) -> str:
        """The set in ``fmt`` (one of :data:`cvmlaunch.measure.reference.FORMATS`).

        Raises:
            ConfigError: an unknown format or one for the other technology.
        """
        snp = self.technology == "sev-snp"
        if fmt == "json":
            return json.dumps(self.as_dict(), indent=2, sort_keys=True)
        if fmt == "trustee":
            return json.dumps(self._trustee(), indent=2, sort_keys=True)
        if fmt in ("snpguest", "go-sev-guest") and not snp:
            raise ConfigError(
                f"format {fmt} is for SEV-SNP sets, this is {self.technology}", setting="format"
            )
        if fmt == "go-tdx-guest" and snp:
            raise ConfigError(
                f"format {fmt} is for TDX sets, this is {self.technology}", setting="format"
            )
        if fmt == "snpguest":
            return "\n".join(
                f"# {c.describe()}\n--measurement {c.measurement.hex()}"
                for c in self.configurations
            )
        if fmt == "go-sev-guest":
            policy: list[tuple[str, bytes | int | bool]] = []
            if self.policy is not None:
                policy.append(("policy", self.policy.value))
            return "\n\n".join(
                f"# {c.describe()}\n"
                + go_sev_guest_config([*policy, ("measurement", c.measurement)])
                for c in self.configurations
            )
        if fmt == "go-tdx-guest":
            return go_tdx_guest_config([("any_mr_td", m) for m in self.measurements])
        raise ConfigError(
            f"unknown reference-value format {fmt!r} (one of {', '.join(FORMATS)})",
            setting="format",
        )

    def _trustee(self) -> dict[str, list[str]]:
        if self.technology == "sev-snp":
            out = {"snp_launch_measurement": [m.hex() for m in self.measurements]}
            if self.policy is not None:
                out["snp_policy"] = [f"{self.policy.value:#x}"]
            return out
        return {"mr_td": [m.hex() for m in self.measurements]}

    @classmethod
    def parse(cls, text: str, *, name: str = "reference set") -> ReferenceSet:
        """Read :meth:`as_dict`'s JSON back.

        Raises:
            ImageError: not JSON, not a set of a known version, or a malformed entry.
        """
        try:
            doc = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise ImageError(f"not a JSON document ({type(exc).__name__})", source=name) from None
        return cls.from_dict(doc, name=name)

    @classmethod
    def from_dict(cls, doc: object, *, name: str = "reference set") -> ReferenceSet:
        """Read an already decoded set document (see :meth:`parse`)."""
        from cvmlaunch.measure.identity import GuestPolicy

        if not isinstance(doc, dict) or doc.get("format") != SET_FORMAT:
            raise ImageError(f"not a {SET_FORMAT} document", source=name)
        if doc.get("version") != SET_VERSION:
            raise ImageError(f"unknown {SET_FORMAT} version {doc.get('version')!r}", source=name)
        technology = doc.get("technology")
        if technology not in ("sev-snp", "tdx"):
            raise ImageError(f"unknown technology {technology!r}", source=name)
        policy = None
        if doc.get("policy") is not None:
            raw = doc["policy"]
            try:
                policy = GuestPolicy.parse(raw) if isinstance(raw, str) else None
            except ConfigError as exc:
                raise ImageError(f"policy: {exc}", source=name) from None
            if policy is None:
                raise ImageError("policy must be a hex string", source=name)
        items = doc.get("configurations")
        if not isinstance(items, list) or not items or len(items) > MAX_CONFIGURATIONS:
            raise ImageError(
                f"configurations must be a list of 1..{MAX_CONFIGURATIONS} entries", source=name
            )
        configurations = []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise ImageError(f"configuration {i} is not an object", source=name)
            settings = {k: v for k, v in item.items() if k != "measurement"}
            if not all(v is None or isinstance(v, str | int) for v in settings.values()):
                raise ImageError(f"configuration {i}: settings must be scalars", source=name)
            value = item.get("measurement")
            try:
                digest = bytes.fromhex(value) if isinstance(value, str) else b""
            except ValueError:
                digest = b""
            if len(digest) != 48:
                raise ImageError(
                    f"configuration {i}: measurement must be 96 hex digits", source=name
                )
            configurations.append(Configuration(tuple(sorted(settings.items())), digest))
        return cls(str(technology), tuple(configurations), policy)


def _sha256(data: Buffer) -> str:
    return hashlib.sha256(data).hexdigest()


def snp_reference_set(
    firmwares: Sequence[tuple[str, Buffer]],
    *,
    vcpus: Sequence[int],
    vcpu_types: Sequence[str],
    vmm: VmmType | None = None,
    guest_features: int = 1,
    kernel_hashes: KernelHashes | None = None,
    policy: GuestPolicy | None = None,
    workers: int | None = None,
) -> ReferenceSet:
    """The SNP launch digest of every firmware x vCPU type x vCPU count.

    Args:
        firmwares: (name, image bytes) of each OVMF build; the name is recorded as given.
        vcpus: the vCPU counts (see :func:`parse_vcpu_ranges`).
        vcpu_types: QEMU CPU model names (:data:`cvmlaunch.vcpu_signature.VCPU_TYPES`).
        vmm: the VMM flavour (default QEMU).
        guest_features: SEV_FEATURES.
        kernel_hashes: the hashes table of measured direct boot, if any.
        policy: the guest policy every launch uses (recorded; it does not enter the digest).
        workers: content-hashing threads for the firmware pages.

    Raises:
        ConfigError: an unknown vCPU type, a count out of range, no firmware.
        ImageError: a firmware that cannot be parsed or measured this way.
    """
    from cvmlaunch.image.ovmf import parse_ovmf
    from cvmlaunch.measure.snp import snp_digest_set
    from cvmlaunch.plan.snp import SnpSettings
    from cvmlaunch.plan.vmsa import VmmType
    from cvmlaunch.vcpu_signature import vcpu_type_signature

    if not firmwares or not vcpus or not vcpu_types:
        raise ConfigError("a reference set needs at least one firmware, vCPU count and vCPU type")
    vmm = VmmType.QEMU if vmm is None else vmm
    types = list(dict.fromkeys(vcpu_types))
    sigs = {t: vcpu_type_signature(t) for t in types}
    counts = sorted(set(vcpus))
    base = SnpSettings(
        vcpus=counts[0],
        vcpu_sig=0,
        vmm=vmm,
        guest_features=guest_features,
        kernel_hashes=kernel_hashes,
    )
    common: dict[str, Scalar] = {
        "vmm_type": vmm.value,
        "guest_features": f"{guest_features:#x}",
        "kernel_hashes": kernel_hashes is not None,
    }
    if kernel_hashes is not None:
        common |= {
            "kernel_sha256": kernel_hashes.kernel.hex(),
            "initrd_sha256": kernel_hashes.initrd.hex(),
            "cmdline_sha256": kernel_hashes.cmdline.hex(),
        }
    configurations: list[Configuration] = []
    for fw_name, data in firmwares:
        image = parse_ovmf(data, name=fw_name)
        digests = snp_digest_set(image, base, list(sigs.values()), counts, workers=workers)
        fw = {"firmware": fw_name, "firmware_sha256": _sha256(data)}
        for t in types:
            for n in counts:
                configurations.append(
                    Configuration.of(
                        digests[(sigs[t], n)],
                        **fw,
                        **common,
                        vcpu_type=t,
                        vcpu_sig=f"{sigs[t]:#x}",
                        vcpus=n,
                    )
                )
    return ReferenceSet("sev-snp", tuple(configurations), policy)


def tdx_reference_set(
    firmwares: Sequence[tuple[str, Buffer]], *, orders: Sequence[PageOrder]
) -> ReferenceSet:
    """The MRTD of every TDVF build x page order (upstream QEMU's plan).

    Raises:
        ConfigError: no firmware or no page order.
        ImageError: a firmware that is not a TDVF image QEMU accepts.
    """
    from cvmlaunch.image.ovmf import parse_ovmf
    from cvmlaunch.measure.tdx import mrtd
    from cvmlaunch.plan.tdvf import tdvf_plan

    if not firmwares or not orders:
        raise ConfigError("a reference set needs at least one firmware and page order")
    configurations: list[Configuration] = []
    for fw_name, data in firmwares:
        plan = tdvf_plan(parse_ovmf(data, name=fw_name))
        fw = {"firmware": fw_name, "firmware_sha256": _sha256(data)}
        for order in dict.fromkeys(orders):
            configurations.append(
                Configuration.of(mrtd(plan, order=order), **fw, order=order.value)
            )
    return ReferenceSet("tdx", tuple(configurations))
