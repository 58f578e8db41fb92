"""The launch identity: what a VM is launched with besides its measured contents.

SEV-SNP HOST_DATA and the optional ID block (:class:`SnpLaunchIdentity`), and the TDX
owner-chosen TD_PARAMS values (:class:`TdxLaunchIdentity`). None of them enters the launch
digest. A core value module like :mod:`cvmlaunch.layout` (pure, frozen, validated), kept apart
so that computing a digest does not pay for creating these types; the size constants live in
:mod:`cvmlaunch.constants`.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass

from cvmlaunch.constants import (
    SNP_HOST_DATA_SIZE,
    SNP_ID_AUTH_SIZE,
    SNP_ID_BLOCK_SIZE,
    TDX_MR_SIZE,
)
from cvmlaunch.errors import ConfigError
from cvmlaunch.layout import parse_hex_bytes

__all__ = ["SnpLaunchIdentity", "TdxLaunchIdentity"]

# SNP firmware ABI, "ID Authentication Information Structure": ID_KEY_SIG at 0x680 and
# AUTHOR_KEY at 0x880 (1028 bytes) are all zero when there is no author key.
_SNP_AUTHOR_AREA = slice(0x680, 0x880 + 0x404)


def _exact(value: object, size: int, setting: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != size:
        got = len(value) if isinstance(value, bytes | bytearray | memoryview) else type(value)
        raise ConfigError(f"{setting} must be exactly {size} bytes (got {got})", setting=setting)
    return value


@dataclass(frozen=True, slots=True)
class SnpLaunchIdentity:
    """What SNP_LAUNCH_FINISH takes besides the VMSAs: HOST_DATA and the optional ID block.

    The KVM layer passes these in ``struct kvm_sev_snp_launch_finish`` (``host_data``,
    ``id_block_en``/``id_block_uaddr``, ``id_auth_uaddr``, ``auth_key_en``); the launch log
    header records them; verifiers compare HOST_DATA and the ID key digests in the report.
    None of them enters the launch digest. Build the ID block and auth with
    :mod:`cvmlaunch.measure.identity`.

    Args:
        host_data: 32 bytes, reported verbatim (zero by default).
        id_block: the 96-byte ID block, or None for no ID block (``id_block_en`` = 0).
        id_auth: the 4096-byte ID auth; required exactly when ``id_block`` is given.

    Raises:
        ConfigError: a value of the wrong size, or an ID block without its auth (or the
            reverse).
    """

    host_data: bytes = bytes(SNP_HOST_DATA_SIZE)
    id_block: bytes | None = None
    id_auth: bytes | None = None

    def __post_init__(self) -> None:
        _exact(self.host_data, SNP_HOST_DATA_SIZE, "host_data")
        if (self.id_block is None) != (self.id_auth is None):
            raise ConfigError(
                "an SNP id_block and its id_auth must be given together",
                setting="id_block" if self.id_block is not None else "id_auth",
                also=("id_auth" if self.id_block is not None else "id_block",),
            )
        if self.id_block is not None:
            _exact(self.id_block, SNP_ID_BLOCK_SIZE, "id_block")
        if self.id_auth is not None:
            _exact(self.id_auth, SNP_ID_AUTH_SIZE, "id_auth")

    @classmethod
    def from_hex(cls, host_data: str) -> SnpLaunchIdentity:
        """Host data from hex (exactly 32 bytes), no ID block.

        Raises:
            ConfigError: not hex, or not 32 bytes.
        """
        return cls(parse_hex_bytes(host_data, SNP_HOST_DATA_SIZE, "host_data"))

    @property
    def id_block_en(self) -> bool:
        """LAUNCH_FINISH's ID_BLOCK_EN."""
        return self.id_block is not None

    @property
    def auth_key_en(self) -> bool:
        """LAUNCH_FINISH's AUTH_KEY_EN: an ID auth whose author-key part is not all zero."""
        return self.id_auth is not None and any(self.id_auth[_SNP_AUTHOR_AREA])

    def to_record(self) -> dict[str, str | bool | None]:
        """The launch log header's form: hex for host data and the ID block, base64 for the
        4 KiB ID auth (QEMU's ``id-auth`` form)."""
        return {
            "host_data": self.host_data.hex(),
            "id_block": None if self.id_block is None else self.id_block.hex(),
            "id_auth": None if self.id_auth is None else base64.b64encode(self.id_auth).decode(),
            "auth_key_en": self.auth_key_en,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, object]) -> SnpLaunchIdentity:
        """Inverse of :meth:`to_record`.

        Raises:
            ConfigError: a missing or malformed field.
        """
        host = record.get("host_data")
        block = record.get("id_block")
        auth = record.get("id_auth")
        if not isinstance(host, str):
            raise ConfigError("SNP launch identity: host_data must be a hex string")
        if block is not None and not isinstance(block, str):
            raise ConfigError("SNP launch identity: id_block must be a hex string or null")
        if auth is not None and not isinstance(auth, str):
            raise ConfigError("SNP launch identity: id_auth must be a base64 string or null")
        try:
            auth_raw = None if auth is None else base64.b64decode(auth, validate=True)
        except ValueError as exc:
            raise ConfigError("SNP launch identity: id_auth is not base64") from exc
        return cls(
            parse_hex_bytes(host, SNP_HOST_DATA_SIZE, "host_data"),
            None if block is None else parse_hex_bytes(block, SNP_ID_BLOCK_SIZE, "id_block"),
            auth_raw,
        )


@dataclass(frozen=True, slots=True)
class TdxLaunchIdentity:
    """The owner-chosen TD_PARAMS values KVM_TDX_INIT_VM takes (``struct kvm_tdx_init_vm``
    ``mrconfigid``/``mrowner``/``mrownerconfig``), reported in the TD quote, never measured
    into MRTD and not enforced by the TDX module. All zero by default (as in QEMU).

    Raises:
        ConfigError: a value that is not 48 bytes.
    """

    mrconfigid: bytes = bytes(TDX_MR_SIZE)
    mrowner: bytes = bytes(TDX_MR_SIZE)
    mrownerconfig: bytes = bytes(TDX_MR_SIZE)

    def __post_init__(self) -> None:
        _exact(self.mrconfigid, TDX_MR_SIZE, "mrconfigid")
        _exact(self.mrowner, TDX_MR_SIZE, "mrowner")
        _exact(self.mrownerconfig, TDX_MR_SIZE, "mrownerconfig")

    @classmethod
    def from_hex(
        cls,
        mrconfigid: str | None = None,
        mrowner: str | None = None,
        mrownerconfig: str | None = None,
    ) -> TdxLaunchIdentity:
        """From hex strings of exactly 48 bytes each (None: all zero).

        Raises:
            ConfigError: not hex, or not 48 bytes.
        """
        zero = bytes(TDX_MR_SIZE)
        return cls(
            zero if mrconfigid is None else parse_hex_bytes(mrconfigid, TDX_MR_SIZE, "mrconfigid"),
            zero if mrowner is None else parse_hex_bytes(mrowner, TDX_MR_SIZE, "mrowner"),
            zero
            if mrownerconfig is None
            else parse_hex_bytes(mrownerconfig, TDX_MR_SIZE, "mrownerconfig"),
        )

    def to_record(self) -> dict[str, str]:
        """The launch log header's form (hex)."""
        return {
            "mrconfigid": self.mrconfigid.hex(),
            "mrowner": self.mrowner.hex(),
            "mrownerconfig": self.mrownerconfig.hex(),
        }

    @classmethod
    def from_record(cls, record: Mapping[str, object]) -> TdxLaunchIdentity:
        """Inverse of :meth:`to_record` (absent fields are zero).

        Raises:
            ConfigError: a malformed field.
        """
        values: list[str | None] = []
        for key in ("mrconfigid", "mrowner", "mrownerconfig"):
            v = record.get(key)
            if v is not None and not isinstance(v, str):
                raise ConfigError(f"TDX launch identity: {key} must be a hex string")
            values.append(v)
        return cls.from_hex(*values)
