"""Reference values from a log's footer digest and header settings, in each verifier's words."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from cvmlaunch.errors import ConfigError, LogFormatError, MeasurementMismatch
from cvmlaunch.launch_identity import SnpLaunchIdentity, TdxLaunchIdentity
from cvmlaunch.measure import identity as ident
from cvmlaunch.measure.reference import ReferenceValues, identity_settings
from tests.errors_util import raises_cvm
from tests.test_identity import AUTHOR_KEY, ID_KEY, _amd_pubkey

LD = hashlib.sha384(b"reference").digest()
POLICY = ident.GuestPolicy(0x30000)
BLOCK = ident.IdBlock(LD, b"\x0f" * 16, b"\x1e" * 16, 7, POLICY)
AUTH = ident.sign_id_block(BLOCK, ID_KEY, AUTHOR_KEY)
SNP = SnpLaunchIdentity(b"\xaa" * 32, BLOCK.pack(), AUTH.pack())
ID_DIGEST = hashlib.sha384(_amd_pubkey(ID_KEY)).hexdigest()
AUTHOR_DIGEST = hashlib.sha384(_amd_pubkey(AUTHOR_KEY)).hexdigest()


def _tp(value: bytes) -> str:
    """A textproto string literal, written here from the text-format spec: each byte \\xNN."""
    return '"' + "".join(f"\\x{b:02x}" for b in value) + '"'


def _snp_values() -> ReferenceValues:
    return ReferenceValues.from_settings("sev-snp", LD, identity_settings(snp=SNP, policy=POLICY))


def test_settings_are_scalars_named_as_documented() -> None:
    s = identity_settings(snp=SNP, policy=POLICY)
    assert s == {
        "policy": "0x30000",
        "host_data": "aa" * 32,
        "id_block": BLOCK.pack().hex(),
        "id_auth": base64.b64encode(AUTH.pack()).decode(),
    }
    assert identity_settings(tdx=TdxLaunchIdentity.from_hex(mrowner="01" * 48))["mrowner"] == (
        "01" * 48
    )


def test_snp_json() -> None:
    assert json.loads(_snp_values().render("json")) == {
        "technology": "sev-snp",
        "measurement": LD.hex(),
        "policy": "0x30000",
        "host_data": "aa" * 32,
        "id_key_digest": ID_DIGEST,
        "author_key_digest": AUTHOR_DIGEST,
        "family_id": "0f" * 16,
        "image_id": "1e" * 16,
        "guest_svn": 7,
    }


def test_snp_verifier_spellings() -> None:
    v = _snp_values()
    assert json.loads(v.render("trustee")) == {
        "snp_launch_measurement": [LD.hex()],
        "snp_host_data": ["aa" * 32],
        "snp_policy": ["0x30000"],
        "snp_id_key_digest": [ID_DIGEST],
        "snp_author_key_digest": [AUTHOR_DIGEST],
    }
    assert v.render("snpguest") == (
        f"--measurement {LD.hex()} --host-data {'aa' * 32} "
        f"--id-key-digest {ID_DIGEST} --author-key-digest {AUTHOR_DIGEST}"
    )
    assert v.render("go-sev-guest").splitlines()[1:] == [
        "policy {",
        "  minimum_guest_svn: 7",
        f"  policy: {0x30000}",
        f"  family_id: {_tp(bytes([0x0F] * 16))}",
        f"  image_id: {_tp(bytes([0x1E] * 16))}",
        "  require_author_key: true",
        f"  measurement: {_tp(LD)}",
        f"  host_data: {_tp(bytes([0xAA] * 32))}",
        "  require_id_block: true",
        f"  trusted_author_key_hashes: {_tp(bytes.fromhex(AUTHOR_DIGEST))}",
        f"  trusted_id_key_hashes: {_tp(bytes.fromhex(ID_DIGEST))}",
        "}",
    ]
    with raises_cvm(ConfigError, setting="format", match="^format go-tdx-guest is for TDX logs"):
        v.render("go-tdx-guest")


def test_snp_without_identity() -> None:
    v = ReferenceValues.from_settings("sev-snp", LD, {"vcpus": 1})
    assert v.render("snpguest") == f"--measurement {LD.hex()}"
    assert json.loads(v.render("json"))["id_key_digest"] is None


def test_id_block_must_match_the_log() -> None:
    with pytest.raises(MeasurementMismatch, match="ID block launch digest"):
        ReferenceValues.from_settings("sev-snp", bytes(48), identity_settings(snp=SNP))
    other = identity_settings(snp=SNP, policy=ident.GuestPolicy(0x70000))
    with pytest.raises(LogFormatError, match="differs from the launch policy 0x70000"):
        ReferenceValues.from_settings("sev-snp", LD, other)
    with pytest.raises(LogFormatError, match="host_data is 31 bytes"):
        ReferenceValues.from_settings("sev-snp", LD, {"host_data": "00" * 31})


def test_tdx_values() -> None:
    mrtd = hashlib.sha384(b"mrtd").digest()
    tdx = TdxLaunchIdentity.from_hex("11" * 48, "22" * 48, "33" * 48)
    v = ReferenceValues.from_settings("tdx", mrtd, identity_settings(tdx=tdx))
    assert json.loads(v.render("json")) == {
        "technology": "tdx",
        "mr_td": mrtd.hex(),
        "mr_config_id": "11" * 48,
        "mr_owner": "22" * 48,
        "mr_owner_config": "33" * 48,
    }
    assert v.render("go-tdx-guest").splitlines()[1:] == [
        "policy {",
        "  td_quote_body_policy {",
        f"    mr_td: {_tp(mrtd)}",
        f"    mr_config_id: {_tp(bytes([0x11] * 48))}",
        f"    mr_owner: {_tp(bytes([0x22] * 48))}",
        f"    mr_owner_config: {_tp(bytes([0x33] * 48))}",
        "  }",
        "}",
    ]
    assert json.loads(v.render("trustee"))["mr_td"] == [mrtd.hex()]
    with raises_cvm(ConfigError, setting="format", match="^format snpguest is for SEV-SNP logs"):
        v.render("snpguest")
