"""SNP ID block / ID auth: ABI layouts, known-answer signatures, the peer, tampering, keys."""

from __future__ import annotations

import base64
import hashlib
import re
import stat
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from hypothesis import given, settings
from hypothesis import strategies as st

from cvmlaunch.errors import ConfigError, ImageError
from cvmlaunch.measure import identity as ident
from tests.cli_runner import run_cli
from tests.errors_util import raises_cvm
from tests.vectors import ecdsa_vector, identity_file

ID_KEY_FILE = identity_file("id_key.pem")
ID_PEM = ID_KEY_FILE.read_bytes()
AUTHOR_PEM = identity_file("author_key.pem").read_bytes()
ID_KEY = ident.load_private_key(ID_PEM, "id_key.pem")
AUTHOR_KEY = ident.load_private_key(AUTHOR_PEM, "author_key.pem")
PEER_LD = hashlib.sha384(b"cvmlaunch identity test vector").digest()
LD = bytes(range(48))


def _block(**kw: object) -> ident.IdBlock:
    fields: dict[str, object] = {
        "ld": LD,
        "family_id": bytes(range(0x10, 0x20)),
        "image_id": bytes(range(0x20, 0x30)),
        "guest_svn": 0x01020304,
        "policy": ident.GuestPolicy(0x0000_0000_0003_1F05),
    }
    fields.update(kw)
    return ident.IdBlock(**fields)  # type: ignore[arg-type]


def _der_from_le(raw: bytes) -> bytes:
    """Independent reading of an SNP signature: R and S are 72-byte little-endian numbers."""
    return encode_dss_signature(
        int.from_bytes(raw[0:72], "little"), int.from_bytes(raw[72:144], "little")
    )


def _amd_pubkey(key: ec.EllipticCurvePrivateKey) -> bytes:
    """Independent encoding of the SNP public key: u32 2, QX and QY as 72-byte LE, zeros."""
    n = key.public_key().public_numbers()
    return (
        (2).to_bytes(4, "little")
        + n.x.to_bytes(72, "little")
        + n.y.to_bytes(72, "little")
        + bytes(0x404 - 148)
    )


# ------------------------------------------------------------------ layouts (SNP ABI tables)


def test_id_block_layout_matches_the_abi_table() -> None:
    raw = _block().pack()
    assert len(raw) == 0x60
    assert raw[0x00:0x30] == LD  # LD
    assert raw[0x30:0x40] == bytes(range(0x10, 0x20))  # FAMILY_ID
    assert raw[0x40:0x50] == bytes(range(0x20, 0x30))  # IMAGE_ID
    assert raw[0x50:0x54] == b"\x01\x00\x00\x00"  # VERSION = 1
    assert raw[0x54:0x58] == b"\x04\x03\x02\x01"  # GUEST_SVN
    assert raw[0x58:0x60] == b"\x05\x1f\x03\x00\x00\x00\x00\x00"  # POLICY
    assert ident.IdBlock.unpack(raw) == _block()


def test_signature_and_public_key_layouts() -> None:
    sig = ident.EcdsaSignature(r=0x0102, s=0x0304).pack()
    assert len(sig) == 0x200
    assert sig[0x00:0x02] == b"\x02\x01"
    assert not any(sig[0x02:0x48])
    assert sig[0x48:0x4A] == b"\x04\x03"
    assert not any(sig[0x4A:0x90])
    assert not any(sig[0x90:0x200])  # reserved
    pub = ident.EcdsaPublicKey.from_key(ID_KEY.public_key()).pack()
    assert len(pub) == 0x404
    assert pub == _amd_pubkey(ID_KEY)  # CURVE 0x00, QX 0x04, QY 0x4C, reserved 0x94-0x403
    assert pub[0:4] == b"\x02\x00\x00\x00"


def test_id_auth_layout_matches_the_abi_table() -> None:
    auth = ident.sign_id_block(_block(), ID_KEY, AUTHOR_KEY)
    raw = auth.pack()
    assert len(raw) == 0x1000
    assert raw[0x000:0x004] == b"\x01\x00\x00\x00"  # ID_KEY_ALGO = ECDSA P-384 SHA-384
    assert raw[0x004:0x008] == b"\x01\x00\x00\x00"  # AUTH_KEY_ALGO
    assert not any(raw[0x008:0x040])  # reserved
    assert raw[0x040:0x240] == auth.id_block_sig.pack()  # ID_BLOCK_SIG
    assert raw[0x240:0x644] == _amd_pubkey(ID_KEY)  # ID_KEY
    assert not any(raw[0x644:0x680])  # reserved
    assert raw[0x680:0x880] == auth.id_key_sig.pack()  # ID_KEY_SIG
    assert raw[0x880:0xC84] == _amd_pubkey(AUTHOR_KEY)  # AUTHOR_KEY
    assert not any(raw[0xC84:0x1000])  # reserved
    assert ident.IdAuth.unpack(raw) == auth
    assert ident.ID_BLOCK_OFFSET_SIG == 0x40
    assert ident.ID_KEY_OFFSET == 0x240
    assert ident.ID_KEY_SIG_OFFSET == 0x680
    assert ident.AUTHOR_KEY_OFFSET == 0x880


# ------------------------------------------------------------------ signatures


def test_rfc6979_p384_sha384_known_answer() -> None:
    """RFC 6979 appendix A.2.6 (ECDSA, P-384), SHA-384, message "sample"."""
    rfc = ecdsa_vector("rfc6979-a.2.6-sha384-sample")
    x = rfc.private_key
    key = ec.derive_private_key(x, ec.SECP384R1())
    sig = ident.sign_message(key, b"sample")
    assert sig.r == rfc.r
    assert sig.s == rfc.s
    assert sig.pack()[0:72] == sig.r.to_bytes(72, "little")


def test_signatures_verify_independently() -> None:
    block = _block()
    raw = ident.sign_id_block(block, ID_KEY, AUTHOR_KEY).pack()
    algo = ec.ECDSA(hashes.SHA384())
    ID_KEY.public_key().verify(_der_from_le(raw[0x40:0x240]), block.pack(), algo)
    AUTHOR_KEY.public_key().verify(_der_from_le(raw[0x680:0x880]), raw[0x240:0x644], algo)
    with pytest.raises(InvalidSignature):  # the check itself can fail
        AUTHOR_KEY.public_key().verify(_der_from_le(raw[0x40:0x240]), block.pack(), algo)


def test_signing_is_deterministic() -> None:
    a = ident.sign_id_block(_block(), ID_KEY, AUTHOR_KEY).pack()
    b = ident.sign_id_block(_block(), ID_KEY, AUTHOR_KEY).pack()
    assert a == b
    c = ident.sign_id_block(_block(guest_svn=5), ID_KEY, AUTHOR_KEY).pack()
    assert a[0x40:0x240] != c[0x40:0x240]
    assert a[0x680:] == c[0x680:]


def test_key_digests_are_sha384_of_the_amd_key() -> None:
    auth = ident.sign_id_block(_block(), ID_KEY, AUTHOR_KEY)
    assert auth.id_key_digest == hashlib.sha384(_amd_pubkey(ID_KEY)).digest()
    assert auth.author_key_digest == hashlib.sha384(_amd_pubkey(AUTHOR_KEY)).digest()
    assert ident.key_digest(ID_KEY) == auth.id_key_digest


def test_without_author_key() -> None:
    auth = ident.sign_id_block(_block(), ID_KEY)
    raw = auth.pack()
    assert raw[4:8] == bytes(4)
    assert not any(raw[0x680:0xC84])
    assert not auth.has_author_key
    assert auth.author_key_digest == bytes(48)
    assert ident.verify_id_pair(_block().pack(), raw).ok


@settings(max_examples=25, deadline=None)
@given(
    ld=st.binary(min_size=48, max_size=48),
    fam=st.binary(min_size=16, max_size=16),
    svn=st.integers(0, 2**32 - 1),
    flags=st.integers(0, 0x3FF),
    abi=st.integers(0, 0xFFFF),
)
def test_sign_then_verify_roundtrip(ld: bytes, fam: bytes, svn: int, flags: int, abi: int) -> None:
    policy = ident.GuestPolicy(abi | (flags << 16) | (1 << 17))
    block = ident.IdBlock(ld, fam, bytes(16), svn, policy)
    raw = block.pack()
    assert ident.IdBlock.unpack(raw) == block
    result = ident.verify_id_pair(raw, ident.sign_id_block(block, ID_KEY).pack())
    assert result.ok, result.failures


# ------------------------------------------------------------------ the peer


def _peer() -> tuple[bytes, bytes, list[str]]:
    lines = identity_file("peer-snp-create-id-block.txt").read_text().splitlines()
    props = dict(p.split("=", 1) for p in lines[0].split(","))
    return base64.b64decode(props["id-block"]), base64.b64decode(props["id-auth"]), lines[1:]


def test_peer_id_block_is_byte_identical() -> None:
    peer_block, _, _ = _peer()
    # The peer's fixed fields: IDs zero, VERSION 1, GUEST_SVN 0, POLICY 0x30000.
    assert ident.IdBlock(PEER_LD).pack() == peer_block


def test_peer_id_auth_verifies_and_matches_outside_the_signatures() -> None:
    peer_block, peer_auth, digests = _peer()
    result = ident.verify_id_pair(peer_block, peer_auth)
    assert result.ok, result.failures
    ours = ident.sign_id_block(ident.IdBlock(PEER_LD), ID_KEY, AUTHOR_KEY).pack()
    for lo, hi in ((0, 0x40), (0x240, 0x680), (0x880, 0x1000)):
        assert ours[lo:hi] == peer_auth[lo:hi], f"{lo:#x}-{hi:#x}"
    assert digests[0] == "id_key_hash: " + base64.b64encode(result.auth.id_key_digest).decode()
    assert digests[1] == "author_key: " + base64.b64encode(result.auth.author_key_digest).decode()


# ------------------------------------------------------------------ tampering


def _flip(raw: bytes, offset: int) -> bytes:
    return raw[:offset] + bytes([raw[offset] ^ 0x01]) + raw[offset + 1 :]


GOOD_BLOCK = _block().pack()
GOOD_AUTH = ident.sign_id_block(_block(), ID_KEY, AUTHOR_KEY).pack()


@pytest.mark.parametrize(
    ("offset", "field"),
    [(0x00, "LD"), (0x30, "FAMILY_ID"), (0x40, "IMAGE_ID"), (0x54, "GUEST_SVN"), (0x58, "POLICY")],
)
def test_tampered_id_block_fails_the_signature(offset: int, field: str) -> None:
    result = ident.verify_id_pair(_flip(GOOD_BLOCK, offset), GOOD_AUTH)
    assert [c.name for c in result.failures] == ["ID_BLOCK_SIG by ID_KEY"], field


def test_tampered_id_block_version_and_policy_bits() -> None:
    bad_version = ident.verify_id_pair(_flip(GOOD_BLOCK, 0x50), GOOD_AUTH)
    assert {c.name for c in bad_version.failures} == {"ID block fields", "ID_BLOCK_SIG by ID_KEY"}
    no_mbo = GOOD_BLOCK[:0x5A] + bytes([GOOD_BLOCK[0x5A] & ~0x02]) + GOOD_BLOCK[0x5B:]
    assert "bit 17" in ident.verify_id_pair(no_mbo, GOOD_AUTH).failures[0].detail


@pytest.mark.parametrize(
    ("offset", "failed"),
    [
        (0x000, {"ID_KEY_ALGO"}),
        (0x004, {"AUTHOR_KEY_ALGO"}),
        (0x010, {"ID auth reserved area 1"}),
        (0x040, {"ID_BLOCK_SIG by ID_KEY"}),  # R
        (0x088, {"ID_BLOCK_SIG by ID_KEY"}),  # S
        (0x100, {"ID_BLOCK_SIG reserved"}),
        (0x240, {"ID_BLOCK_SIG by ID_KEY", "ID_KEY_SIG by AUTHOR_KEY"}),  # curve
        (0x250, {"ID_BLOCK_SIG by ID_KEY", "ID_KEY_SIG by AUTHOR_KEY"}),  # QX
        (0x2A0, {"ID_BLOCK_SIG by ID_KEY", "ID_KEY_SIG by AUTHOR_KEY"}),  # QY
        (0x300, {"ID_KEY reserved", "ID_KEY_SIG by AUTHOR_KEY"}),
        (0x650, {"ID auth reserved area 2"}),
        (0x690, {"ID_KEY_SIG by AUTHOR_KEY"}),
        (0x800, {"ID_KEY_SIG reserved"}),
        (0x880, {"ID_KEY_SIG by AUTHOR_KEY"}),  # author curve
        (0x890, {"ID_KEY_SIG by AUTHOR_KEY"}),  # author QX
        (0xA00, {"AUTHOR_KEY reserved"}),
        (0xF00, {"ID auth reserved area 3"}),
    ],
)
def test_tampered_id_auth_is_rejected(offset: int, failed: set[str]) -> None:
    result = ident.verify_id_pair(GOOD_BLOCK, _flip(GOOD_AUTH, offset))
    assert {c.name for c in result.failures} == failed
    assert not result.ok


def _patch(raw: bytes, offset: int, data: bytes) -> bytes:
    return raw[:offset] + data + raw[offset + len(data) :]


def test_degenerate_signatures_and_keys() -> None:
    def fails(auth: bytes) -> list[str]:
        return ident.describe_checks(ident.verify_id_pair(GOOD_BLOCK, auth).failures)

    assert fails(_patch(GOOD_AUTH, 0x40, bytes(512))) == [
        "FAIL ID_BLOCK_SIG by ID_KEY: ID_BLOCK_SIG does not verify"
    ]
    assert fails(_patch(GOOD_AUTH, 0x40, b"\xff" * 72)) == [
        "FAIL ID_BLOCK_SIG by ID_KEY: ID_BLOCK_SIG: R or S is wider than 384 bits"
    ]
    assert fails(_patch(GOOD_AUTH, 0x240, bytes(0x404))) == [
        "FAIL ID_BLOCK_SIG by ID_KEY: public key curve 0 is not P-384 (2)",
        "FAIL ID_KEY_SIG by AUTHOR_KEY: ID_KEY_SIG does not verify",
    ]
    off_curve = _patch(GOOD_AUTH, 0x244, (1).to_bytes(72, "little"))  # QX = 1, QY unchanged
    assert fails(off_curve)[0] == (
        "FAIL ID_BLOCK_SIG by ID_KEY: public key: the point is not on the P-384 curve"
    )


def test_wrong_sizes_are_bad_input() -> None:
    with pytest.raises(ImageError, match="4096"):
        ident.verify_id_pair(GOOD_BLOCK, GOOD_AUTH[:-1])
    with pytest.raises(ImageError, match="96"):
        ident.verify_id_pair(GOOD_BLOCK + b"\0", GOOD_AUTH)


# ------------------------------------------------------------------ keys


def _pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda: ec.generate_private_key(ec.SECP256R1()), "secp256r1"),
        (lambda: ec.generate_private_key(ec.SECP521R1()), "secp521r1"),
        (lambda: rsa.generate_private_key(65537, 1024), "RSA"),
        (ed25519.Ed25519PrivateKey.generate, "Ed25519"),
    ],
)
def test_wrong_key_types_are_rejected_clearly(make: object, needle: str) -> None:
    pem = _pem(make())  # type: ignore[operator]
    with pytest.raises(ConfigError, match=needle) as info:
        ident.load_private_key(pem, "k.pem")
    assert str(info.value).startswith("k.pem: ")
    assert "P-384" in str(info.value)


def test_wrong_curve_key_object_is_rejected() -> None:
    p256 = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(ConfigError, match="P-384"):
        ident.sign_id_block(_block(), p256)
    with pytest.raises(ConfigError, match="author key"):
        ident.sign_id_block(_block(), ID_KEY, p256)


def test_encrypted_and_garbage_keys() -> None:
    enc = ID_KEY.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    with pytest.raises(ConfigError, match="encrypted"):
        ident.load_private_key(enc, "e.pem")
    with pytest.raises(ConfigError, match="not a PEM private key"):
        ident.load_private_key(b"hello", "g.pem")


# ------------------------------------------------------------------ policy


def test_policy_fields() -> None:
    p = ident.GuestPolicy.parse("0x30000")
    assert p == ident.DEFAULT_POLICY
    assert p.flags == ident.PolicyFlag.SMT | ident.PolicyFlag.RESERVED_MBO
    assert (p.abi_major, p.abi_minor) == (0, 0)
    q = ident.GuestPolicy.build(
        abi_major=1, abi_minor=55, flags=ident.PolicyFlag.DEBUG | ident.PolicyFlag.SINGLE_SOCKET
    )
    assert q.value == 0x1A0137
    assert q.describe() == "0x1a0137 (ABI >= 1.55, RESERVED_MBO, DEBUG, SINGLE_SOCKET)"
    assert ident.GuestPolicy.parse("1a0137") == q
    assert ident.GuestPolicy.parse("0d1704247") == q


@pytest.mark.parametrize(
    ("text", "needle"),
    [("0x10000", "bit 17"), ("0x4030000", "reserved bits 0x4000000"), ("zz", "hexadecimal")],
)
def test_bad_policies(text: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        ident.GuestPolicy.parse(text)


# ------------------------------------------------------------------ CLI


def test_cli_sign_write_and_verify(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli(
        [
            "id-block",
            "snp",
            "--measurement",
            LD.hex(),
            "--id-key",
            str(ID_KEY_FILE),
            "--author-key",
            str(identity_file("author_key.pem")),
            "--policy",
            "0x31f05",
            "--family-id",
            bytes(range(0x10, 0x20)).hex(),
            "--image-id",
            bytes(range(0x20, 0x30)).hex(),
            "--svn",
            str(0x01020304),
            "--out-dir",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    line, id_digest, author_digest = result.output.splitlines()
    props = dict(p.split("=", 1) for p in line.split(","))
    assert props["author-key-enabled"] == "on"
    assert base64.b64decode(props["id-block"]) == (out / "id-block.bin").read_bytes() == GOOD_BLOCK
    assert base64.b64decode(props["id-auth"]) == (out / "id-auth.bin").read_bytes() == GOOD_AUTH
    assert id_digest == f"id-key-digest: {hashlib.sha384(_amd_pubkey(ID_KEY)).hexdigest()}"
    assert author_digest.endswith(hashlib.sha384(_amd_pubkey(AUTHOR_KEY)).hexdigest())
    assert "PRIVATE" not in result.output

    ok = run_cli(["id-block", "verify", str(out / "id-block.bin"), str(out / "id-auth.bin")])
    assert ok.exit_code == 0, ok.output
    assert f"id-key-digest:     {hashlib.sha384(_amd_pubkey(ID_KEY)).hexdigest()}" in ok.output

    b64 = tmp_path / "auth.b64"  # QEMU-style base64 files are accepted too
    b64.write_text(props["id-auth"] + "\n")
    (tmp_path / "bad.bin").write_bytes(_flip(GOOD_BLOCK, 0))
    bad = run_cli(["id-block", "verify", str(tmp_path / "bad.bin"), str(b64)])
    assert bad.exit_code == 1
    assert "FAIL ID_BLOCK_SIG by ID_KEY: ID_BLOCK_SIG does not verify" in bad.output


def test_cli_peer_measurement_base64_and_json(tmp_path: Path) -> None:
    result = run_cli(
        [
            "id-block",
            "snp",
            "--measurement",
            base64.b64encode(PEER_LD).decode(),
            "--id-key",
            str(ID_KEY_FILE),
            "--output-format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert '"author_key_en": false' in result.output
    peer_block, _, _ = _peer()
    assert base64.b64encode(peer_block).decode() in result.output


def test_cli_bad_input_exit_2(tmp_path: Path) -> None:
    (tmp_path / "short").write_bytes(b"x" * 95)
    r = run_cli(["id-block", "verify", str(tmp_path / "short"), str(tmp_path / "short")])
    assert r.exit_code == 2
    p256 = tmp_path / "p256.pem"
    p256.write_bytes(_pem(ec.generate_private_key(ec.SECP256R1())))
    r = run_cli(["id-block", "snp", "--measurement", LD.hex(), "--id-key", str(p256)])
    assert r.exit_code == 2
    assert "secp256r1 key; SEV-SNP ID and author keys must be ECDSA P-384" in r.output
    r = run_cli(["id-block", "snp", "--measurement", "ab" * 47, "--id-key", str(ID_KEY_FILE)])
    assert r.exit_code == 2
    assert "neither 48 bytes" in r.output


def test_generate_key_mode_0600_and_no_overwrite(tmp_path: Path) -> None:
    key = tmp_path / "new.pem"
    r = run_cli(["id-block", "snp", "--generate-key", str(key)])
    assert r.exit_code == 0, r.output
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    loaded = ident.load_private_key(key.read_bytes(), str(key))
    assert ident.key_digest(loaded).hex() in r.output
    scalar = loaded.private_numbers().private_value
    assert f"{scalar:x}" not in r.output
    assert "PRIVATE" not in r.output
    before = key.read_bytes()
    again = run_cli(["id-block", "snp", "--generate-key", str(key)])
    assert again.exit_code == 2
    assert "already exists" in again.output
    assert key.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["new.pem"]  # no temporary left behind
    forced = run_cli(["id-block", "snp", "--generate-key", str(key), "--force"])
    assert forced.exit_code == 0
    assert key.read_bytes() != before
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    # --generate-key with a measurement signs with the new key.
    key2 = tmp_path / "k2.pem"
    signed = run_cli(
        ["id-block", "snp", "--generate-key", str(key2), "--measurement", LD.hex()],
    )
    assert signed.exit_code == 0, signed.output
    digest = ident.key_digest(ident.load_private_key(key2.read_bytes(), "k2")).hex()
    assert f"id-key-digest: {digest}" in signed.output


def test_cli_svn_is_a_u32_in_any_base(tmp_path: Path) -> None:
    base = ["id-block", "snp", "--measurement", LD.hex(), "--id-key", str(ID_KEY_FILE)]
    for text, value in (("0xffffffff", 0xFFFFFFFF), ("4294967295", 0xFFFFFFFF), ("7", 7)):
        out = tmp_path / text
        r = run_cli([*base, "--svn", text, "--out-dir", str(out)])
        assert r.exit_code == 0, r.output
        assert ident.IdBlock.unpack((out / "id-block.bin").read_bytes()).guest_svn == value
    for text in ("0x100000000", "-1", "many"):
        r = run_cli([*base, "--svn", text])
        assert r.exit_code == 2, text
        assert r.stdout == ""
        assert r.stderr.startswith("cvmlaunch: error: Invalid value for '--svn': ")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--generate-key", "new.pem"], "give --id-key or --generate-key, not both"),
        ([], "give the launch digest: --measurement HEX or --from-log LOG"),
        (
            ["--measurement", LD.hex(), "--out-dir", "d", "--id-block", "b.bin"],
            "give --out-dir or --id-block/--id-auth, not both",
        ),
        (
            ["--measurement", LD.hex(), "--out-dir", "file"],
            "file: cannot create directory: File exists",
        ),
        (
            ["--measurement", LD.hex(), "--id-auth", "missing/a.bin"],
            "missing/a.bin: cannot write: No such file or directory",
        ),
    ],
)
def test_cli_option_conflicts_are_one_line_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: list[str], message: str
) -> None:
    """What click reported as usage errors (or a traceback) is one line and exit 2."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file").write_bytes(b"")
    r = run_cli(["id-block", "snp", "--id-key", str(ID_KEY_FILE), *extra])
    assert r.exit_code == 2
    assert r.stdout == ""
    assert r.stderr.splitlines() == [f"cvmlaunch: error: {message}"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # nothing written


# ---------------------------------------------------------------- the launch an ID block is for


def test_launch_from_text_takes_hex_or_base64_of_48_bytes() -> None:
    from cvmlaunch.measure.id_sign import Launch, launch_from_text

    ld = bytes(range(48))
    assert launch_from_text(ld.hex()) == Launch(ld)
    assert launch_from_text(" " + ld.hex()[:40] + "\n" + ld.hex()[40:]) == Launch(ld)
    assert launch_from_text(base64.b64encode(ld).decode()) == Launch(ld)
    for bad in (ld.hex()[:-2], base64.b64encode(ld[:47]).decode(), "zz"):
        with raises_cvm(setting="measurement", match="neither 48 bytes of hex nor of base64"):
            launch_from_text(bad)


def test_launch_from_log_replays_and_takes_the_recorded_policy() -> None:
    import dataclasses

    from cvmlaunch.errors import MeasurementMismatch
    from cvmlaunch.measure.id_sign import launch_from_log
    from cvmlaunch.measure.log import Technology
    from tests.test_log import make_log

    log = make_log(policy="0x30001")
    launch = launch_from_log(log, "l.jsonl")
    assert launch.digest == log.footer.digest
    assert launch.policy == ident.GuestPolicy(0x30001)
    assert launch.source == "l.jsonl"
    assert launch_from_log(make_log(), "l.jsonl").policy is None
    broken = dataclasses.replace(log, footer=dataclasses.replace(log.footer, digest=bytes(48)))
    with pytest.raises(MeasurementMismatch, match="footer digest"):
        launch_from_log(broken, "l.jsonl")
    tdx = dataclasses.replace(
        log, header=dataclasses.replace(log.header, technology=Technology.TDX)
    )
    with pytest.raises(ConfigError, match=r"^l\.jsonl: a tdx log; ID blocks are SEV-SNP$"):
        launch_from_log(tdx, "l.jsonl")


def test_sign_launch_fills_the_block_and_reconciles_the_policy() -> None:
    from cvmlaunch.measure.id_sign import Launch, sign_launch

    ld = bytes(range(48))
    block, auth = sign_launch(Launch(ld), ID_KEY)
    assert block == ident.IdBlock(ld=ld, policy=ident.DEFAULT_POLICY)
    assert auth == ident.sign_id_block(block, ID_KEY)
    assert ident.verify_id_pair(block.pack(), auth.pack()).ok

    recorded = Launch(ld, ident.GuestPolicy(0x30001), "l.jsonl")
    block, auth = sign_launch(
        recorded, ID_KEY, AUTHOR_KEY, family_id="11" * 16, image_id="0x" + "22" * 16, svn=7
    )
    assert (block.policy, block.family_id, block.image_id) == (
        ident.GuestPolicy(0x30001),
        b"\x11" * 16,
        b"\x22" * 16,
    )
    assert (block.guest_svn, auth.has_author_key) == (7, True)
    assert sign_launch(recorded, ID_KEY, policy="30001")[0].policy == ident.GuestPolicy(0x30001)
    differs = "policy 0x30000 differs from the policy 0x30001 recorded in l.jsonl: the firmware"
    with raises_cvm(setting="policy", match=re.escape(differs + " would refuse the launch")):
        sign_launch(recorded, ID_KEY, policy="0x30000")
    with raises_cvm(setting="family_id", match="^family_id: 15 bytes given, exactly 16"):
        sign_launch(recorded, ID_KEY, family_id="11" * 15)
