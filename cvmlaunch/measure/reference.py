"""Reference values: what a verifier compares, taken from a launch log, in its own words.

Rule 1: a launch log's footer holds the final digest (SNP MEASUREMENT, TDX MRTD) and its
header ``settings`` hold the launch identity (SNP policy, HOST_DATA, ID block and ID auth;
TDX MRCONFIGID, MROWNER, MROWNERCONFIG) under the names in :data:`SNP_SETTINGS` and
:data:`TDX_SETTINGS`. :func:`identity_settings` writes them, :class:`ReferenceValues` reads
them back.

Rule 2: each exporter spells the values as its verifier takes them (ecosystem survey §2.4):
Trustee RVPS reference-value names (the ``sample`` extractor's name -> list of values),
snpguest ``verify attestation`` options, and for go-sev-guest and go-tdx-guest the
``check.Config`` textproto their ``check -config FILE.textproto`` reads (proto/check.proto and
proto/checkconfig.proto of each project): flags cannot carry go-sev-guest's
``minimum_guest_svn`` nor go-tdx-guest's ``any_mr_td`` set. Digests are lowercase hex in
JSON and options; textproto ``bytes`` fields are quoted, every byte escaped as backslash-x-hex.

Rule 3: reference values come only from launch measurements: a log of the firmware pages
alone (``snp:ovmf-hash``) holds a seed no attestation report carries, and is refused.

Pure: no I/O.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass

from cvmlaunch.errors import ConfigError, ImageError, LogFormatError, MeasurementMismatch
from cvmlaunch.launch_identity import SnpLaunchIdentity, TdxLaunchIdentity

TYPE_CHECKING = False
if TYPE_CHECKING:  # the ID block model is imported when a log's identity is read (start-up)
    from cvmlaunch.measure.identity import GuestPolicy, IdAuth, IdBlock
    from cvmlaunch.measure.log import MeasurementLog, SettingValue
    from cvmlaunch.plan.pvh import PvhLaunch

__all__ = [
    "FORMATS",
    "SNP_SETTINGS",
    "TDX_SETTINGS",
    "ReferenceValues",
    "identity_settings",
    "launch_identity_settings",
    "textproto_bytes",
]

#: Header setting names for the SNP launch identity (none of them enters the digest).
SNP_SETTINGS = ("policy", "host_data", "id_block", "id_auth")
#: Header setting names for the TDX launch identity (none of them enters MRTD).
TDX_SETTINGS = ("mrconfigid", "mrowner", "mrownerconfig")
#: The output formats of :meth:`ReferenceValues.render`.
FORMATS = ("json", "trustee", "snpguest", "go-sev-guest", "go-tdx-guest")

_SNP_TECHNOLOGIES = ("sev-snp",)
_TDX_TECHNOLOGIES = ("tdx",)


def identity_settings(
    *,
    snp: SnpLaunchIdentity | None = None,
    policy: GuestPolicy | None = None,
    tdx: TdxLaunchIdentity | None = None,
) -> dict[str, str | None]:
    """The header settings that record a launch identity (merge them into the log header).

    SNP: ``policy`` as ``0x…`` hex, ``host_data`` and ``id_block`` as hex, ``id_auth`` as
    base64 (null without an ID block). TDX: the three 48-byte values as hex.
    """
    out: dict[str, str | None] = {}
    if policy is not None:
        out["policy"] = f"{policy.value:#x}"
    if snp is not None:
        out["host_data"] = snp.host_data.hex()
        out["id_block"] = None if snp.id_block is None else snp.id_block.hex()
        out["id_auth"] = None if snp.id_auth is None else base64.b64encode(snp.id_auth).decode()
    if tdx is not None:
        out |= tdx.to_record()
    return out


def launch_identity_settings(launch: PvhLaunch) -> dict[str, SettingValue]:
    """The launch identity of a PVH launch as launch log header settings (docs/log-format.md,
    "Launch identity settings"): the SNP policy, host data and ID block pair, or the TDX MR
    values; empty for a plain launch."""
    if launch.snp is None and launch.tdx is None:
        return {}
    from cvmlaunch.measure.identity import GuestPolicy

    if launch.snp is not None:
        policy = GuestPolicy(launch.settings.snp_policy)
        return dict(identity_settings(snp=launch.snp, policy=policy))
    return dict(identity_settings(tdx=launch.tdx))


def _hex_setting(settings: Mapping[str, object], key: str, size: int) -> bytes | None:
    value = settings.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise LogFormatError(f"log header: setting {key} must be a hex string")
    try:
        raw = bytes.fromhex(value)
    except ValueError as exc:
        raise LogFormatError(f"log header: setting {key} is not hex") from exc
    if len(raw) != size:
        raise LogFormatError(f"log header: setting {key} is {len(raw)} bytes, not {size}")
    return raw


@dataclass(frozen=True, slots=True)
class ReferenceValues:
    """The values a verifier compares for one launch.

    Args:
        technology: the log's technology (``sev-snp``, ``tdx``, ...).
        measurement: SNP MEASUREMENT or TDX MRTD (the log footer's digest).
        policy: the SNP guest policy, if recorded.
        host_data: SNP HOST_DATA, if recorded.
        id_block: the SNP ID block, if the launch had one.
        id_auth: its ID auth.
        tdx: TDX MRCONFIGID / MROWNER / MROWNERCONFIG, if recorded.
        rtmrs: TDX RTMR0-3 from an RTMR event log (:meth:`with_rtmrs`); None per register
            that is not predicted (not checked), or None for no event log.
    """

    technology: str
    measurement: bytes
    policy: GuestPolicy | None = None
    host_data: bytes | None = None
    id_block: IdBlock | None = None
    id_auth: IdAuth | None = None
    tdx: TdxLaunchIdentity | None = None
    rtmrs: tuple[bytes | None, ...] | None = None

    def with_rtmrs(self, rtmrs: tuple[bytes | None, ...]) -> ReferenceValues:
        """These values with TDX RTMR0-3 (four values, None for a register not predicted).

        Raises:
            ConfigError: not TDX values, or not four 48-byte values.
        """
        if self.technology not in _TDX_TECHNOLOGIES:
            raise ConfigError(f"RTMRs are TDX registers; these are {self.technology} values")
        if len(rtmrs) != 4 or any(r is not None and len(r) != 48 for r in rtmrs):
            raise ConfigError("RTMR0-3 are four 48-byte values")
        return dataclasses.replace(self, rtmrs=tuple(rtmrs))

    @classmethod
    def from_log(cls, log: MeasurementLog) -> ReferenceValues:
        """The values a launch log records: its footer's digest and its header's identity
        settings (:meth:`from_settings`). The log is taken as it is: replay it first
        (:func:`cvmlaunch.measure.log.replay_if_possible`) to trust the digest.

        Raises:
            As :meth:`from_settings`.
        """
        return cls.from_settings(
            log.header.technology.value, log.footer.digest, log.header.settings
        )

    @classmethod
    def from_settings(
        cls, technology: str, digest: bytes, settings: Mapping[str, object]
    ) -> ReferenceValues:
        """Read the identity settings of a log header (see :data:`SNP_SETTINGS`).

        Raises:
            LogFormatError: a malformed setting.
            MeasurementMismatch: an ID block whose launch digest or policy differs from the
                log's (the firmware would refuse that launch).
        """
        if settings.get("mode") == "snp:ovmf-hash":
            raise ConfigError(
                "this log measures the firmware pages alone (mode snp:ovmf-hash): its digest "
                "seeds a launch digest and no attestation report carries it; predict the launch "
                "digest of the same firmware with mode snp (this digest can seed it as ovmf_hash)",
                setting="mode",
                also=("ovmf_hash",),
            )
        if technology in _TDX_TECHNOLOGIES:
            values = [_hex_setting(settings, k, 48) for k in TDX_SETTINGS]
            tdx = TdxLaunchIdentity(*(v if v is not None else bytes(48) for v in values))
            return cls(technology, digest, tdx=tdx)
        from cvmlaunch.measure.identity import GuestPolicy, IdAuth, IdBlock

        policy: GuestPolicy | None = None
        raw_policy = settings.get("policy")
        try:
            if isinstance(raw_policy, str):
                policy = GuestPolicy.parse(raw_policy)
            elif isinstance(raw_policy, int) and not isinstance(raw_policy, bool):
                policy = GuestPolicy(raw_policy)
            elif raw_policy is not None:
                raise LogFormatError("log header: setting policy must be hex or an integer")
        except ConfigError as exc:
            raise LogFormatError(f"log header: setting policy: {exc}") from exc
        host_data = _hex_setting(settings, "host_data", 32)
        block_raw = _hex_setting(settings, "id_block", 96)
        auth_text = settings.get("id_auth")
        if (block_raw is None) != (auth_text is None):
            raise LogFormatError("log header: settings id_block and id_auth go together")
        block = auth = None
        if block_raw is not None:
            if not isinstance(auth_text, str):
                raise LogFormatError("log header: setting id_auth must be base64")
            try:
                auth_raw = base64.b64decode(auth_text, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise LogFormatError("log header: setting id_auth is not base64") from exc
            try:
                block = IdBlock.unpack(block_raw, "log header id_block")
                auth = IdAuth.unpack(auth_raw, "log header id_auth")
            except ConfigError as exc:
                raise LogFormatError(str(exc)) from exc
            except ImageError as exc:
                raise LogFormatError(f"log header: {exc}") from exc
            if block.ld != digest:
                raise MeasurementMismatch(
                    "ID block launch digest vs the log's measurement",
                    expected=digest,
                    actual=block.ld,
                )
            if policy is not None and block.policy != policy:
                raise LogFormatError(
                    f"log header: the ID block's policy {block.policy.value:#x} differs from "
                    f"the launch policy {policy.value:#x}"
                )
            policy = policy or block.policy
        return cls(technology, digest, policy, host_data, block, auth)

    @property
    def is_snp(self) -> bool:
        """Whether these are SEV-SNP values."""
        return self.technology in _SNP_TECHNOLOGIES

    @property
    def id_key_digest(self) -> bytes | None:
        """ID_KEY_DIGEST as the report will carry it (None without an ID block)."""
        return None if self.id_auth is None else self.id_auth.id_key_digest

    @property
    def author_key_digest(self) -> bytes | None:
        """AUTHOR_KEY_DIGEST (None without an author key)."""
        if self.id_auth is None or not self.id_auth.has_author_key:
            return None
        return self.id_auth.author_key_digest

    def as_dict(self) -> dict[str, object]:
        """Our own JSON form: report field names, hex values, null when not recorded."""
        if not self.is_snp:
            out: dict[str, object] = {"technology": self.technology}
            if self.technology in _TDX_TECHNOLOGIES:
                tdx = self.tdx or TdxLaunchIdentity()
                out |= {
                    "mr_td": self.measurement.hex(),
                    "mr_config_id": tdx.mrconfigid.hex(),
                    "mr_owner": tdx.mrowner.hex(),
                    "mr_owner_config": tdx.mrownerconfig.hex(),
                }
                if self.rtmrs is not None:
                    out |= {f"rtmr{i}": _hex(r) for i, r in enumerate(self.rtmrs)}
            else:
                out["measurement"] = self.measurement.hex()
            return out
        block = self.id_block
        return {
            "technology": self.technology,
            "measurement": self.measurement.hex(),
            "policy": None if self.policy is None else f"{self.policy.value:#x}",
            "host_data": None if self.host_data is None else self.host_data.hex(),
            "id_key_digest": _hex(self.id_key_digest),
            "author_key_digest": _hex(self.author_key_digest),
            "family_id": None if block is None else block.family_id.hex(),
            "image_id": None if block is None else block.image_id.hex(),
            "guest_svn": None if block is None else block.guest_svn,
        }

    def render(self, fmt: str) -> str:
        """The values in ``fmt`` (one of :data:`FORMATS`).

        Raises:
            ConfigError: an unknown format, or one that does not fit the technology
                (``go-tdx-guest`` for an SNP log, for example).
        """
        if fmt == "json":
            return json.dumps(self.as_dict(), indent=2)
        if fmt == "trustee":
            return json.dumps(self._trustee(), indent=2)
        if fmt in ("snpguest", "go-sev-guest"):
            if not self.is_snp:
                raise ConfigError(
                    f"format {fmt} is for SEV-SNP logs, this is {self.technology}", setting="format"
                )
            if fmt == "snpguest":
                return " ".join(self._snpguest())
            return go_sev_guest_config(self._go_sev_guest_policy())
        if fmt == "go-tdx-guest":
            if self.technology not in _TDX_TECHNOLOGIES:
                raise ConfigError(
                    f"format {fmt} is for TDX logs, this is {self.technology}", setting="format"
                )
            return go_tdx_guest_config(self._go_tdx_guest_policy())
        raise ConfigError(
            f"unknown reference-value format {fmt!r} (one of {', '.join(FORMATS)})",
            setting="format",
        )

    def _trustee(self) -> dict[str, list[str]]:
        """Trustee RVPS "sample" reference values: name -> list of accepted hex values.

        ``snp_launch_measurement`` and ``mr_td`` are the names Trustee's default policy
        queries; the others are for policies that check the identity too.
        """
        out: dict[str, list[str]] = {}
        if self.is_snp:
            out["snp_launch_measurement"] = [self.measurement.hex()]
            if self.host_data is not None:
                out["snp_host_data"] = [self.host_data.hex()]
            if self.policy is not None:
                out["snp_policy"] = [f"{self.policy.value:#x}"]
            if self.id_key_digest is not None:
                out["snp_id_key_digest"] = [self.id_key_digest.hex()]
            if self.author_key_digest is not None:
                out["snp_author_key_digest"] = [self.author_key_digest.hex()]
        elif self.technology in _TDX_TECHNOLOGIES:
            tdx = self.tdx or TdxLaunchIdentity()
            out["mr_td"] = [self.measurement.hex()]
            out["mr_config_id"] = [tdx.mrconfigid.hex()]
            out["mr_owner"] = [tdx.mrowner.hex()]
            out["mr_owner_config"] = [tdx.mrownerconfig.hex()]
        else:
            raise ConfigError(
                f"format trustee has no names for {self.technology} logs", setting="format"
            )
        return out

    def _snpguest(self) -> list[str]:
        """Options of ``snpguest verify attestation`` (hex)."""
        args = ["--measurement", self.measurement.hex()]
        if self.host_data is not None:
            args += ["--host-data", self.host_data.hex()]
        if self.id_key_digest is not None:
            args += ["--id-key-digest", self.id_key_digest.hex()]
        if self.author_key_digest is not None:
            args += ["--author-key-digest", self.author_key_digest.hex()]
        return args

    def _go_sev_guest_policy(self) -> list[tuple[str, bytes | int | bool]]:
        """go-sev-guest ``check.Policy`` fields (proto/check.proto), in field-number order.

        ``policy`` is the most permissive guest policy go-sev-guest accepts (the launch's own);
        ``minimum_guest_svn`` the ID block's guest SVN (the report's GUEST_SVN).
        """
        out: list[tuple[str, bytes | int | bool]] = []
        block = self.id_block
        if block is not None:
            out.append(("minimum_guest_svn", block.guest_svn))
        if self.policy is not None:
            out.append(("policy", self.policy.value))
        if block is not None:
            out += [("family_id", block.family_id), ("image_id", block.image_id)]
        if self.author_key_digest is not None:
            out.append(("require_author_key", True))
        out.append(("measurement", self.measurement))
        if self.host_data is not None:
            out.append(("host_data", self.host_data))
        if block is not None:
            out.append(("require_id_block", True))
        if self.author_key_digest is not None:
            out.append(("trusted_author_key_hashes", self.author_key_digest))
        if self.id_key_digest is not None:
            out.append(("trusted_id_key_hashes", self.id_key_digest))
        return out

    def _go_tdx_guest_policy(self) -> list[tuple[str, bytes | int | bool]]:
        """go-tdx-guest ``TDQuoteBodyPolicy`` fields (proto/checkconfig.proto)."""
        tdx = self.tdx or TdxLaunchIdentity()
        body: list[tuple[str, bytes | int | bool]] = [
            ("mr_td", self.measurement),
            ("mr_config_id", tdx.mrconfigid),
            ("mr_owner", tdx.mrowner),
            ("mr_owner_config", tdx.mrownerconfig),
        ]
        if self.rtmrs is not None:
            # Four entries, an empty one for a register not checked (go-tdx-guest's -rtmrs).
            body += [("rtmrs", r or b"") for r in self.rtmrs]
        return body


def textproto_bytes(value: bytes) -> str:
    """A protobuf text-format string literal holding ``value``, every byte a hex escape."""
    return '"' + "".join(f"\\x{b:02x}" for b in value) + '"'


def _textproto_value(value: bytes | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return textproto_bytes(value)


def _textproto_fields(fields: list[tuple[str, bytes | int | bool]], indent: str) -> str:
    return "".join(f"{indent}{name}: {_textproto_value(v)}\n" for name, v in fields)


def go_sev_guest_config(policy: list[tuple[str, bytes | int | bool]]) -> str:
    """A go-sev-guest ``check.Config`` textproto holding ``policy`` (for ``check -config``)."""
    return (
        "# go-sev-guest: check -config THIS.textproto (check.Config, proto/check.proto)\n"
        "policy {\n" + _textproto_fields(policy, "  ") + "}"
    )


def go_tdx_guest_config(body: list[tuple[str, bytes | int | bool]]) -> str:
    """A go-tdx-guest ``checkconfig.Config`` textproto whose ``td_quote_body_policy`` holds
    ``body`` (``check -config F.textproto``)."""
    return (
        "# go-tdx-guest: check -config THIS.textproto (checkconfig.Config, "
        "proto/checkconfig.proto)\n"
        "policy {\n  td_quote_body_policy {\n" + _textproto_fields(body, "    ") + "  }\n}"
    )


def _hex(value: bytes | None) -> str | None:
    return None if value is None else value.hex()
