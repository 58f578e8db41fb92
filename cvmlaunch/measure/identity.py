"""SEV-SNP launch identity: the guest policy, the ID block and the ID authentication structure.

Rule 1: pure values and signatures. Keys come in as PEM ``bytes`` or as ``cryptography`` key
objects, blobs come in as buffers and go out as ``bytes``; this module opens no file.

Rule 2: every layout below is the AMD SEV Secure Nested Paging Firmware ABI Specification
(AMD publication 56860, "SNP ABI") as cited per struct, cross-checked against AMD's own C
declarations of the same structures (struct ``id_block`` / ``id_auth_info`` /
``sev_ecdsa_sig`` / ``sev_ecdsa_pubkey``). All integers are little-endian.

Rule 3: signing is ECDSA P-384 over SHA-384 and deterministic (RFC 6979), so the same key and
the same block always give the same ID auth, byte for byte: artifacts are reproducible.

Bad input raises :class:`~cvmlaunch.errors.ConfigError` (keys, settings) or
:class:`~cvmlaunch.errors.ImageError` (a blob of the wrong size); anything else is a bug.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from cvmlaunch._struct import StructTable
from cvmlaunch.errors import CheckFailed, ConfigError, ImageError, MeasurementMismatch
from cvmlaunch.layout import parse_hex_bytes
from cvmlaunch.snp_policy import DEFAULT_POLICY, GuestPolicy, PolicyFlag

TYPE_CHECKING = False
if TYPE_CHECKING:  # cryptography costs ~20 ms to import: only key and signature code loads it
    from cryptography.hazmat.primitives.asymmetric import ec

__all__ = [
    "AUTHOR_KEY_OFFSET",
    "DEFAULT_POLICY",
    "ECDSA_PUBKEY_FIELDS",
    "ECDSA_PUBKEY_SIZE",
    "ECDSA_SIG_FIELDS",
    "ECDSA_SIG_SIZE",
    "ID_AUTH_FIELDS",
    "ID_AUTH_SIZE",
    "ID_BLOCK_FIELDS",
    "ID_BLOCK_OFFSET_SIG",
    "ID_BLOCK_SIZE",
    "ID_BLOCK_VERSION",
    "ID_KEY_OFFSET",
    "ID_KEY_SIG_OFFSET",
    "Check",
    "EcdsaCurve",
    "EcdsaPublicKey",
    "EcdsaSignature",
    "GuestPolicy",
    "IdAuth",
    "IdBlock",
    "IdVerification",
    "PolicyFlag",
    "SigningAlgorithm",
    "check_launch_id_pair",
    "describe_checks",
    "generate_key",
    "key_digest",
    "load_private_key",
    "parse_hex_bytes",
    "private_key_pem",
    "sign_id_block",
    "sign_message",
    "verify_id_pair",
]

#: SNP ABI, SNP_LAUNCH_FINISH: the ID block is 96 bytes, the ID auth 4096 (KVM's
#: KVM_SEV_SNP_ID_BLOCK_SIZE / KVM_SEV_SNP_ID_AUTH_SIZE say the same).
ID_BLOCK_SIZE = 0x60
ID_AUTH_SIZE = 0x1000
#: The only ID block version the ABI defines.
ID_BLOCK_VERSION = 1
#: SNP ABI chapter "ECDSA signature format" / "ECDSA public key format".
ECDSA_SIG_SIZE = 0x200
ECDSA_PUBKEY_SIZE = 0x404
#: One P-384 coordinate or scalar as the ABI stores it: 576 bits, little-endian, zero padded.
_COMPONENT_SIZE = 72
_P384_BYTES = 48

#: Offsets in the ID auth structure (SNP ABI table "ID Authentication Information Structure").
ID_BLOCK_OFFSET_SIG = 0x040
ID_KEY_OFFSET = 0x240
ID_KEY_SIG_OFFSET = 0x680
AUTHOR_KEY_OFFSET = 0x880


class SigningAlgorithm(enum.IntEnum):
    """SNP ABI "Signature algorithms" (ID_KEY_ALGO, AUTHOR_KEY_ALGO)."""

    INVALID = 0
    ECDSA_P384_SHA384 = 1


class EcdsaCurve(enum.IntEnum):
    """SNP ABI "ECDSA curves" (the CURVE field of a public key)."""

    INVALID = 0
    P384 = 2


def _le(value: int) -> bytes:
    return value.to_bytes(_COMPONENT_SIZE, "little")


#: SNP ABI, SNP_LAUNCH_FINISH, table "ID Block Structure".
ID_BLOCK_FIELDS = StructTable(
    "ID Block Structure",
    (
        ("ld", 0x00, "48s"),
        ("family_id", 0x30, "16s"),
        ("image_id", 0x40, "16s"),
        ("version", 0x50, "I"),
        ("guest_svn", 0x54, "I"),
        ("policy", 0x58, "Q"),
    ),
    end=ID_BLOCK_SIZE,
)


@dataclass(frozen=True, slots=True)
class IdBlock:
    """The SNP ID block (SNP ABI, SNP_LAUNCH_FINISH, table "ID Block Structure", 96 bytes).

    At SNP_LAUNCH_FINISH the firmware refuses the launch unless ``ld`` equals the launch
    digest it computed and ``policy`` equals the launch policy. FAMILY_ID, IMAGE_ID and
    GUEST_SVN are copied into the attestation report.

    Args:
        ld: the expected launch digest (48 bytes).
        family_id: 16 bytes chosen by the guest owner.
        image_id: 16 bytes chosen by the guest owner.
        guest_svn: the guest's security version number (u32).
        policy: the launch policy.
        version: the structure version; only 1 is defined.

    Raises:
        ConfigError: a field of the wrong size or range.
    """

    ld: bytes
    family_id: bytes = bytes(16)
    image_id: bytes = bytes(16)
    guest_svn: int = 0
    policy: GuestPolicy = DEFAULT_POLICY
    version: int = ID_BLOCK_VERSION

    def __post_init__(self) -> None:
        for name, value, size in (
            ("launch digest", self.ld, 48),
            ("family ID", self.family_id, 16),
            ("image ID", self.image_id, 16),
        ):
            if not isinstance(value, bytes) or len(value) != size:
                raise ConfigError(f"ID block: the {name} must be {size} bytes")
        if not 0 <= self.guest_svn < 1 << 32:
            raise ConfigError(f"ID block: guest SVN {self.guest_svn} is not a u32")
        if self.version != ID_BLOCK_VERSION:
            raise ConfigError(f"ID block: version {self.version} (only 1 is defined)")

    def pack(self) -> bytes:
        """The 96 bytes the firmware reads."""
        return ID_BLOCK_FIELDS.pack(
            ld=self.ld,
            family_id=self.family_id,
            image_id=self.image_id,
            version=self.version,
            guest_svn=self.guest_svn,
            policy=self.policy.value,
        )

    @classmethod
    def unpack(cls, data: bytes | memoryview, source: str = "ID block") -> IdBlock:
        """Parse 96 bytes.

        Raises:
            ImageError: not 96 bytes.
            ConfigError: a version other than 1, or an invalid policy.
        """
        if len(data) != ID_BLOCK_SIZE:
            raise ImageError(
                f"an ID block is {ID_BLOCK_SIZE} bytes, not {len(data)}", source=source
            )
        fields = ID_BLOCK_FIELDS.unpack(data)
        try:
            return cls(**fields | {"policy": GuestPolicy(fields["policy"])})
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from exc


#: SNP ABI chapter "ECDSA signature format": R and S are little-endian integers.
ECDSA_SIG_FIELDS = StructTable(
    "ECDSA signature",
    (
        ("r", 0x00, f"{_COMPONENT_SIZE}s"),
        ("s", 0x48, f"{_COMPONENT_SIZE}s"),
        ("reserved", 0x90, f"{ECDSA_SIG_SIZE - 0x90}s"),
    ),
    end=ECDSA_SIG_SIZE,
)


@dataclass(frozen=True, slots=True)
class EcdsaSignature:
    """An ECDSA signature in the SNP ABI format (chapter "ECDSA signature format", 512 bytes).

    Args:
        r: the R component.
        s: the S component.
        reserved: the reserved tail as found (must be zero; kept so a check can say so).
    """

    r: int
    s: int
    reserved: bytes = bytes(ECDSA_SIG_SIZE - 144)

    @classmethod
    def from_der(cls, der: bytes) -> EcdsaSignature:
        """From an X9.62 DER signature (what ``cryptography`` produces)."""
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        r, s = decode_dss_signature(der)
        return cls(r, s)

    def to_der(self) -> bytes:
        """To an X9.62 DER signature (what ``cryptography`` verifies)."""
        from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

        return encode_dss_signature(self.r, self.s)

    def pack(self) -> bytes:
        """The 512 bytes."""
        return ECDSA_SIG_FIELDS.pack(r=_le(self.r), s=_le(self.s), reserved=self.reserved)

    @classmethod
    def unpack(cls, data: bytes | memoryview) -> EcdsaSignature:
        """Parse 512 bytes (no validation: see :func:`verify_id_pair`)."""
        fields = ECDSA_SIG_FIELDS.unpack(data)
        r, s = (int.from_bytes(fields[name], "little") for name in ("r", "s"))
        return cls(r, s, fields["reserved"])

    @property
    def is_zero(self) -> bool:
        """All 512 bytes zero (an absent signature)."""
        return self.r == 0 and self.s == 0 and not any(self.reserved)


#: SNP ABI chapter "ECDSA public key format": QX and QY are little-endian integers.
ECDSA_PUBKEY_FIELDS = StructTable(
    "ECDSA public key",
    (
        ("curve", 0x00, "I"),
        ("qx", 0x04, f"{_COMPONENT_SIZE}s"),
        ("qy", 0x4C, f"{_COMPONENT_SIZE}s"),
        ("reserved", 0x94, f"{ECDSA_PUBKEY_SIZE - 0x94}s"),
    ),
    end=ECDSA_PUBKEY_SIZE,
)


@dataclass(frozen=True, slots=True)
class EcdsaPublicKey:
    """An ECDSA public key in the SNP ABI format (chapter "ECDSA public key format", 1028 bytes).

    The attestation report's ID_KEY_DIGEST and AUTHOR_KEY_DIGEST are the SHA-384 of these
    1028 bytes (:meth:`digest`).

    Args:
        curve: the raw CURVE value (2 = P-384).
        qx: the X coordinate.
        qy: the Y coordinate.
        reserved: the reserved tail as found (must be zero).
    """

    curve: int
    qx: int
    qy: int
    reserved: bytes = bytes(ECDSA_PUBKEY_SIZE - 148)

    @classmethod
    def from_key(cls, key: ec.EllipticCurvePublicKey) -> EcdsaPublicKey:
        """From a P-384 ``cryptography`` public key.

        Raises:
            ConfigError: not a P-384 key.
        """
        _require_p384(key.curve, "public key")
        nums = key.public_numbers()
        return cls(EcdsaCurve.P384, nums.x, nums.y)

    def to_key(self) -> ec.EllipticCurvePublicKey:
        """To a ``cryptography`` key.

        Raises:
            ConfigError: the curve is not P-384 or the point is not on it.
        """
        from cryptography.hazmat.primitives.asymmetric import ec

        if self.curve != EcdsaCurve.P384:
            raise ConfigError(f"public key curve {self.curve} is not P-384 (2)")
        try:
            return ec.EllipticCurvePublicNumbers(self.qx, self.qy, ec.SECP384R1()).public_key()
        except ValueError as exc:
            raise ConfigError("public key: the point is not on the P-384 curve") from exc

    def pack(self) -> bytes:
        """The 1028 bytes."""
        return ECDSA_PUBKEY_FIELDS.pack(
            curve=self.curve, qx=_le(self.qx), qy=_le(self.qy), reserved=self.reserved
        )

    @classmethod
    def unpack(cls, data: bytes | memoryview) -> EcdsaPublicKey:
        """Parse 1028 bytes (no validation: see :func:`verify_id_pair`)."""
        fields = ECDSA_PUBKEY_FIELDS.unpack(data)
        qx, qy = (int.from_bytes(fields[name], "little") for name in ("qx", "qy"))
        return cls(fields["curve"], qx, qy, fields["reserved"])

    def digest(self) -> bytes:
        """SHA-384 of the 1028-byte structure: what the attestation report carries."""
        return hashlib.sha384(self.pack()).digest()

    @property
    def is_zero(self) -> bool:
        """All 1028 bytes zero (an absent key)."""
        return self.curve == 0 and self.qx == 0 and self.qy == 0 and not any(self.reserved)


#: SNP ABI, SNP_LAUNCH_FINISH, table "ID Authentication Information Structure". The reserved
#: ranges are read as bytes (they must be zero; :class:`IdAuth` keeps them so a check can say so).
ID_AUTH_FIELDS = StructTable(
    "ID Authentication Information Structure",
    (
        ("id_key_algo", 0x000, "I"),
        ("author_key_algo", 0x004, "I"),
        ("reserved1", 0x008, f"{ID_BLOCK_OFFSET_SIG - 0x008}s"),
        ("id_block_sig", ID_BLOCK_OFFSET_SIG, f"{ECDSA_SIG_SIZE}s"),  # 0x040
        ("id_key", ID_KEY_OFFSET, f"{ECDSA_PUBKEY_SIZE}s"),  # 0x240
        ("reserved2", 0x644, f"{ID_KEY_SIG_OFFSET - 0x644}s"),
        ("id_key_sig", ID_KEY_SIG_OFFSET, f"{ECDSA_SIG_SIZE}s"),  # 0x680
        ("author_key", AUTHOR_KEY_OFFSET, f"{ECDSA_PUBKEY_SIZE}s"),  # 0x880
        ("reserved3", 0xC84, f"{ID_AUTH_SIZE - 0xC84}s"),
    ),
    end=ID_AUTH_SIZE,
)


@dataclass(frozen=True, slots=True)
class IdAuth:
    """The ID authentication information structure (SNP ABI, SNP_LAUNCH_FINISH, 4096 bytes).

    Args:
        id_key_algo: raw ID_KEY_ALGO (1 = ECDSA P-384 with SHA-384).
        author_key_algo: raw AUTHOR_KEY_ALGO (1, or 0 when there is no author key).
        id_block_sig: the ID key's signature of the 96-byte ID block.
        id_key: the ID public key.
        id_key_sig: the author key's signature of the 1028-byte ID key structure (zero if none).
        author_key: the author public key (zero if none).
        reserved: the three reserved areas as found (must be zero).
    """

    id_key_algo: int
    author_key_algo: int
    id_block_sig: EcdsaSignature
    id_key: EcdsaPublicKey
    id_key_sig: EcdsaSignature
    author_key: EcdsaPublicKey
    reserved: tuple[bytes, bytes, bytes] = (
        bytes(ID_BLOCK_OFFSET_SIG - 8),
        bytes(ID_KEY_SIG_OFFSET - ID_KEY_OFFSET - ECDSA_PUBKEY_SIZE),
        bytes(ID_AUTH_SIZE - AUTHOR_KEY_OFFSET - ECDSA_PUBKEY_SIZE),
    )

    @property
    def has_author_key(self) -> bool:
        """Whether an author key is present: LAUNCH_FINISH's AUTH_KEY_EN must say the same."""
        return not (self.author_key.is_zero and self.id_key_sig.is_zero)

    @property
    def id_key_digest(self) -> bytes:
        """ID_KEY_DIGEST as the attestation report will carry it."""
        return self.id_key.digest()

    @property
    def author_key_digest(self) -> bytes:
        """AUTHOR_KEY_DIGEST as the report will carry it (zero without an author key)."""
        return self.author_key.digest() if self.has_author_key else bytes(48)

    def pack(self) -> bytes:
        """The 4096 bytes."""
        r1, r2, r3 = self.reserved
        return ID_AUTH_FIELDS.pack(
            id_key_algo=self.id_key_algo,
            author_key_algo=self.author_key_algo,
            reserved1=r1,
            id_block_sig=self.id_block_sig.pack(),
            id_key=self.id_key.pack(),
            reserved2=r2,
            id_key_sig=self.id_key_sig.pack(),
            author_key=self.author_key.pack(),
            reserved3=r3,
        )

    @classmethod
    def unpack(cls, data: bytes | memoryview, source: str = "ID auth") -> IdAuth:
        """Parse 4096 bytes (no validation beyond the size: see :func:`verify_id_pair`).

        Raises:
            ImageError: not 4096 bytes.
        """
        if len(data) != ID_AUTH_SIZE:
            raise ImageError(f"an ID auth is {ID_AUTH_SIZE} bytes, not {len(data)}", source=source)
        f = ID_AUTH_FIELDS.unpack(data)
        return cls(
            id_key_algo=f["id_key_algo"],
            author_key_algo=f["author_key_algo"],
            id_block_sig=EcdsaSignature.unpack(f["id_block_sig"]),
            id_key=EcdsaPublicKey.unpack(f["id_key"]),
            id_key_sig=EcdsaSignature.unpack(f["id_key_sig"]),
            author_key=EcdsaPublicKey.unpack(f["author_key"]),
            reserved=(f["reserved1"], f["reserved2"], f["reserved3"]),
        )


def _require_p384(curve: ec.EllipticCurve, what: str) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    if not isinstance(curve, ec.SECP384R1):
        raise ConfigError(
            f"{what}: an EC {curve.name} key; SEV-SNP ID and author keys must be "
            "ECDSA P-384 (secp384r1)"
        )


def load_private_key(pem: bytes, name: str) -> ec.EllipticCurvePrivateKey:
    """Load an unencrypted PEM private key (PKCS#8 or SEC1) and require P-384.

    Args:
        pem: the PEM text.
        name: the key's name for messages (its path). Key material never enters a message.

    Raises:
        ConfigError: not a PEM private key, encrypted, not EC, or not P-384.
    """
    import warnings

    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.utils import CryptographyDeprecationWarning

    try:
        with warnings.catch_warnings():  # a DSA key: refused below in one line, no warning
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            key = serialization.load_pem_private_key(pem, password=None)
    except TypeError as exc:
        raise ConfigError(f"{name}: encrypted private keys are not supported") from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ConfigError(f"{name}: not a PEM private key") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        kind = type(key).__name__.removeprefix("_").replace("PrivateKey", "")
        raise ConfigError(
            f"{name}: a {kind or 'non-EC'} key; SEV-SNP ID and author keys must be "
            "ECDSA P-384 (secp384r1)"
        )
    _require_p384(key.curve, name)
    return key


def generate_key() -> ec.EllipticCurvePrivateKey:
    """A new random P-384 private key."""
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP384R1())


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM of ``key`` (for a key file of mode 0600)."""
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def key_digest(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> bytes:
    """SHA-384 of the key's 1028-byte SNP public key structure (ID_KEY_DIGEST form)."""
    from cryptography.hazmat.primitives.asymmetric import ec

    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    return EcdsaPublicKey.from_key(public).digest()


def sign_message(key: ec.EllipticCurvePrivateKey, message: bytes) -> EcdsaSignature:
    """ECDSA P-384 / SHA-384 of ``message`` with RFC 6979 nonces, in the SNP ABI format.

    Raises:
        ConfigError: a key that is not P-384.
    """
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    _require_p384(key.curve, "signing key")
    deterministic = ec.ECDSA(hashes.SHA384(), deterministic_signing=True)
    return EcdsaSignature.from_der(key.sign(message, deterministic))


def sign_id_block(
    block: IdBlock,
    id_key: ec.EllipticCurvePrivateKey,
    author_key: ec.EllipticCurvePrivateKey | None = None,
) -> IdAuth:
    """Sign an ID block: the ID key signs the 96 bytes, the author key (if any) the ID key.

    The signatures are deterministic (RFC 6979): same keys and block, same bytes.

    Raises:
        ConfigError: a key that is not P-384.
    """
    _require_p384(id_key.curve, "ID key")
    id_public = EcdsaPublicKey.from_key(id_key.public_key())
    block_sig = sign_message(id_key, block.pack())
    if author_key is None:
        return IdAuth(
            SigningAlgorithm.ECDSA_P384_SHA384,
            SigningAlgorithm.INVALID,
            block_sig,
            id_public,
            EcdsaSignature(0, 0),
            EcdsaPublicKey(0, 0, 0),
        )
    _require_p384(author_key.curve, "author key")
    return IdAuth(
        SigningAlgorithm.ECDSA_P384_SHA384,
        SigningAlgorithm.ECDSA_P384_SHA384,
        block_sig,
        id_public,
        sign_message(author_key, id_public.pack()),
        EcdsaPublicKey.from_key(author_key.public_key()),
    )


@dataclass(frozen=True, slots=True)
class Check:
    """One check of :func:`verify_id_pair`: what was checked, whether it held, and why not."""

    name: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class IdVerification:
    """The result of :func:`verify_id_pair`.

    Args:
        checks: every check made, in order.
        block: the parsed ID block, when its fields are valid.
        auth: the parsed ID auth.
    """

    checks: tuple[Check, ...]
    block: IdBlock | None
    auth: IdAuth

    @property
    def ok(self) -> bool:
        """Whether every check held."""
        return all(c.ok for c in self.checks)

    @property
    def failures(self) -> tuple[Check, ...]:
        """The checks that did not hold."""
        return tuple(c for c in self.checks if not c.ok)

    def to_json(self) -> dict[str, object]:
        """The checks, the key digests and (when valid) the block's fields, as JSON values."""
        auth, block = self.auth, self.block
        out: dict[str, object] = {
            "ok": self.ok,
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks],
            "author_key_en": auth.has_author_key,
            "id_key_digest": auth.id_key_digest.hex(),
            "author_key_digest": auth.author_key_digest.hex(),
        }
        if block is not None:
            out |= {
                "measurement": block.ld.hex(),
                "family_id": block.family_id.hex(),
                "image_id": block.image_id.hex(),
                "guest_svn": block.guest_svn,
                "policy": f"{block.policy.value:#x}",
            }
        return out

    def lines(self) -> list[str]:
        """The checks (:func:`describe_checks`), then the block's fields and the key digests,
        one per line."""
        auth, block = self.auth, self.block
        out = describe_checks(self.checks)
        if block is not None:
            out += [
                f"measurement:       {block.ld.hex()}",
                f"family-id:         {block.family_id.hex()}",
                f"image-id:          {block.image_id.hex()}",
                f"guest-svn:         {block.guest_svn}",
                f"policy:            {block.policy.describe()}",
            ]
        return [
            *out,
            f"author-key-en:     {int(auth.has_author_key)}",
            f"id-key-digest:     {auth.id_key_digest.hex()}",
            f"author-key-digest: {auth.author_key_digest.hex()}",
        ]


def _verify_sig(
    public: EcdsaPublicKey, sig: EcdsaSignature, message: bytes, what: str
) -> tuple[bool, str]:
    try:
        key = public.to_key()
    except ConfigError as exc:
        return False, str(exc)
    if sig.r.bit_length() > _P384_BYTES * 8 or sig.s.bit_length() > _P384_BYTES * 8:
        return False, f"{what}: R or S is wider than 384 bits"
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        key.verify(sig.to_der(), message, ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        return False, f"{what} does not verify"
    return True, ""


def verify_id_pair(block_data: bytes | memoryview, auth_data: bytes | memoryview) -> IdVerification:
    """Check an ID block and ID auth pair the way the firmware will at SNP_LAUNCH_FINISH.

    Checks: the block's version and policy; ID_KEY_ALGO; the ID key's curve and point; the
    ID block signature; the reserved areas are zero; and, if an author key is present,
    AUTHOR_KEY_ALGO, its curve and its signature of the ID key.

    Raises:
        ImageError: a blob of the wrong size (the checks need the exact structures).
    """
    auth = IdAuth.unpack(auth_data)
    if len(block_data) != ID_BLOCK_SIZE:
        raise ImageError(f"an ID block is {ID_BLOCK_SIZE} bytes, not {len(block_data)}")
    checks: list[Check] = []
    block: IdBlock | None = None
    try:
        block = IdBlock.unpack(block_data)
        checks.append(Check("ID block fields", True))
    except ConfigError as exc:
        checks.append(Check("ID block fields", False, str(exc)))

    def algo(name: str, value: int) -> None:
        ok = value == SigningAlgorithm.ECDSA_P384_SHA384
        checks.append(Check(name, ok, "" if ok else f"{value} (only 1, ECDSA P-384, is valid)"))

    algo("ID_KEY_ALGO", auth.id_key_algo)
    ok, detail = _verify_sig(auth.id_key, auth.id_block_sig, bytes(block_data), "ID_BLOCK_SIG")
    checks.append(Check("ID_BLOCK_SIG by ID_KEY", ok, detail))
    checks.append(_zero_check("ID_BLOCK_SIG reserved", auth.id_block_sig.reserved))
    checks.append(_zero_check("ID_KEY reserved", auth.id_key.reserved))
    if auth.has_author_key:
        algo("AUTHOR_KEY_ALGO", auth.author_key_algo)
        ok, detail = _verify_sig(auth.author_key, auth.id_key_sig, auth.id_key.pack(), "ID_KEY_SIG")
        checks.append(Check("ID_KEY_SIG by AUTHOR_KEY", ok, detail))
        checks.append(_zero_check("ID_KEY_SIG reserved", auth.id_key_sig.reserved))
        checks.append(_zero_check("AUTHOR_KEY reserved", auth.author_key.reserved))
    else:
        ok = auth.author_key_algo in (SigningAlgorithm.INVALID, SigningAlgorithm.ECDSA_P384_SHA384)
        checks.append(
            Check("AUTHOR_KEY_ALGO", ok, "" if ok else f"{auth.author_key_algo} (not 0 or 1)")
        )
    for i, area in enumerate(auth.reserved, 1):
        checks.append(_zero_check(f"ID auth reserved area {i}", area))
    return IdVerification(tuple(checks), block, auth)


def check_launch_id_pair(
    block_data: bytes | memoryview,
    auth_data: bytes | memoryview,
    *,
    measurement: bytes | None,
    policy: GuestPolicy,
    source: str = "ID block",
) -> IdVerification:
    """Check that an ID block / ID auth pair will be accepted for one launch: every check of
    :func:`verify_id_pair`, then the ID block's launch digest and policy against the launch's
    (SNP ABI, SNP_LAUNCH_FINISH: the firmware compares both and fails the launch otherwise).

    Args:
        block_data: the 96-byte ID block.
        auth_data: the 4096-byte ID auth.
        measurement: the launch digest the launch will have (48 bytes), or None when it is
            not predicted (the firmware still compares it at SNP_LAUNCH_FINISH).
        policy: the policy the launch will be started with (SNP_LAUNCH_START).
        source: names the pair in errors.

    Returns:
        The verification, all checks held.

    Raises:
        ImageError: a blob of the wrong size.
        CheckFailed: a check failed, or the ID block's policy differs from ``policy``.
        MeasurementMismatch: the ID block's launch digest differs from ``measurement``.
    """
    result = verify_id_pair(block_data, auth_data)
    if not result.ok or result.block is None:
        names = ", ".join(c.name for c in result.failures)
        raise CheckFailed(f"{source}: {len(result.failures)} check(s) failed: {names}")
    if measurement is not None and result.block.ld != measurement:
        raise MeasurementMismatch(
            f"{source}: launch digest (LD) vs the computed measurement",
            expected=measurement,
            actual=result.block.ld,
        )
    if result.block.policy != policy:
        raise CheckFailed(
            f"{source}: its policy {result.block.policy.value:#x} differs from the launch "
            f"policy {policy.value:#x} (the firmware would refuse the launch)"
        )
    return result


def _zero_check(name: str, area: bytes) -> Check:
    nonzero = next((i for i, b in enumerate(area) if b), None)
    if nonzero is None:
        return Check(name, True)
    return Check(name, False, f"byte {nonzero:#x} is {area[nonzero]:#04x} (must be zero)")


def describe_checks(checks: Sequence[Check]) -> list[str]:
    """One line per check: ``ok   NAME`` or ``FAIL NAME: detail``."""
    return [
        f"{'ok  ' if c.ok else 'FAIL'} {c.name}" + (f": {c.detail}" if c.detail else "")
        for c in checks
    ]
