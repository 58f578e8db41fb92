"""Signing an SEV-SNP ID block for a launch (``cvmlaunch id-block snp``).

Rule 1: one place decides what the ID block of a launch holds. The launch is a
:class:`Launch`: its digest (48 bytes given as hex or base64, :func:`launch_from_text`, or the
footer of a replayed SNP log, :func:`launch_from_log`) and the policy the log records. The
block's policy is the one asked for, which must equal the recorded one (the firmware would
refuse the launch), else the recorded one, else :data:`~cvmlaunch.measure.identity.
DEFAULT_POLICY`; FAMILY_ID and IMAGE_ID are 16 bytes of hex (:func:`sign_launch`).

Rule 2: pure. Parsed logs, texts and key objects in; an :class:`~cvmlaunch.measure.identity.
IdBlock` and its :class:`~cvmlaunch.measure.identity.IdAuth` out. Keys are read and the
blobs written by the caller (:mod:`cvmlaunch.files`). Errors name the setting
(``ConfigError.setting``: ``measurement``, ``policy``, ``family_id``, ``image_id``), which the
CLI spells as its flag.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from cvmlaunch.errors import ConfigError
from cvmlaunch.measure.identity import (
    DEFAULT_POLICY,
    GuestPolicy,
    IdAuth,
    IdBlock,
    parse_hex_bytes,
    sign_id_block,
)
from cvmlaunch.measure.log import MeasurementLog, replay_if_possible
from cvmlaunch.measure.reference import ReferenceValues
from cvmlaunch.technology import Technology

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

__all__ = ["Launch", "launch_from_log", "launch_from_text", "sign_launch"]

#: The size of an SNP launch digest (MEASUREMENT, the ID block's LD).
_LD_SIZE = 48


@dataclass(frozen=True, slots=True)
class Launch:
    """The launch an ID block is for.

    Args:
        digest: the launch digest (48 bytes).
        policy: the guest policy the launch's log records, or None (a digest given alone).
        source: the log's name, for error messages, or None.
    """

    digest: bytes
    policy: GuestPolicy | None = None
    source: str | None = None


def launch_from_text(text: str) -> Launch:
    """A launch digest given as 48 bytes of hex (sev-snp-measure's default output) or of
    base64 (its ``--output-format``); whitespace is ignored.

    Raises:
        ConfigError: neither.
    """
    s = "".join(text.split())
    try:
        return Launch(parse_hex_bytes(s, _LD_SIZE, "measurement"))
    except ConfigError:
        pass
    try:
        raw = base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != _LD_SIZE:
        raise ConfigError(
            f"measurement: {text!r} is neither 48 bytes of hex nor of base64", setting="measurement"
        )
    return Launch(raw)


def launch_from_log(log: MeasurementLog, name: str) -> Launch:
    """The launch an SEV-SNP log describes, after replaying it: its final digest and the
    policy its header records (``name`` names the log in messages).

    Raises:
        ConfigError: not an SEV-SNP log.
        MeasurementMismatch: the log does not replay to its footer, or its ID block is not
            for this digest and policy.
        LogFormatError: a malformed identity setting.
    """
    technology = log.header.technology
    if technology is not Technology.SEV_SNP:
        raise ConfigError(f"{name}: a {technology.value} log; ID blocks are SEV-SNP")
    replay_if_possible(log)
    return Launch(log.footer.digest, ReferenceValues.from_log(log).policy, name)


def sign_launch(
    launch: Launch,
    id_key: ec.EllipticCurvePrivateKey,
    author_key: ec.EllipticCurvePrivateKey | None = None,
    *,
    policy: str | None = None,
    family_id: str = "00" * 16,
    image_id: str = "00" * 16,
    svn: int = 0,
    version: int = 1,
) -> tuple[IdBlock, IdAuth]:
    """The ID block for ``launch`` and its ID auth, signed by ``id_key`` (and ``author_key``,
    which signs the ID key). ``policy`` is hex text (:meth:`~cvmlaunch.measure.identity.
    GuestPolicy.parse`); ``family_id`` and ``image_id`` 16 bytes of hex. Deterministic: the
    same inputs give the same bytes.

    Raises:
        ConfigError: a bad policy or ID, a policy that differs from the launch's recorded one,
            a key that is not P-384, a version or SVN out of range.
    """
    asked = GuestPolicy.parse(policy) if policy is not None else None
    if asked and launch.policy and asked != launch.policy:
        raise ConfigError(
            f"policy {asked.value:#x} differs from the policy {launch.policy.value:#x} "
            f"recorded in {launch.source}: the firmware would refuse the launch",
            setting="policy",
        )
    block = IdBlock(
        ld=launch.digest,
        family_id=parse_hex_bytes(family_id, 16, "family_id"),
        image_id=parse_hex_bytes(image_id, 16, "image_id"),
        guest_svn=svn,
        policy=asked or launch.policy or DEFAULT_POLICY,
        version=version,
    )
    return block, sign_id_block(block, id_key, author_key)
