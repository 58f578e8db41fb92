"""The launch identity as launch settings (flags and TOML keys) and in the plan: SNP policy,
HOST_DATA and ID block pair; TDX MRCONFIGID / MROWNER / MROWNERCONFIG (pure, no KVM)."""

from __future__ import annotations

import base64

import pytest

from cvmlaunch.errors import CheckFailed, ConfigError
from cvmlaunch.launch_identity import SnpLaunchIdentity, TdxLaunchIdentity
from cvmlaunch.launch_settings import DEFAULT_SNP_POLICY, LaunchSettings, settings_from_toml
from cvmlaunch.measure import identity as ident
from cvmlaunch.measure.reference import ReferenceValues, launch_identity_settings
from cvmlaunch.plan.pvh import PvhLaunch, pvh_launch
from cvmlaunch.technology import Technology
from tests.errors_util import raises_cvm
from tests.test_identity import AUTHOR_KEY, ID_KEY
from tests.test_launch_plan import kernel

BLOCK = ident.IdBlock(
    ld=bytes(range(48)),
    family_id=b"f" * 16,
    image_id=b"i" * 16,
    guest_svn=3,
    policy=ident.GuestPolicy(0x30000),
)
BLOCK_RAW = BLOCK.pack()
AUTH_RAW = ident.sign_id_block(BLOCK, ID_KEY, AUTHOR_KEY).pack()


def test_toml_keys_follow_qemu_and_paths_resolve() -> None:
    doc = (
        'tech = "snp"\npolicy = "0x30000"\nhost-data = "' + "ab" * 32 + '"\n'
        'id-block = "id/block.bin"\nid-auth = "/abs/auth.b64"\n'
    )
    s = settings_from_toml(doc, base="/cfg", overrides={"host_data": None, "policy": "0x70000"})
    assert s == LaunchSettings(
        tech=Technology.SEV_SNP,
        policy=0x70000,  # the flag overrides the file
        host_data=b"\xab" * 32,
        id_block="/cfg/id/block.bin",
        id_auth="/abs/auth.b64",
    )
    t = settings_from_toml(
        'tech = "tdx"\nmrconfigid = "' + "11" * 48 + '"\nmrowner = "0x' + "22" * 48 + '"\n',
        overrides={"mrownerconfig": "33" * 48},
    )
    assert t.tdx_identity == TdxLaunchIdentity(b"\x11" * 48, b"\x22" * 48, b"\x33" * 48)
    assert settings_from_toml('tech = "snp"\npolicy = 196608').snp_policy == 0x30000
    assert LaunchSettings(tech=Technology.SEV_SNP).snp_policy == DEFAULT_SNP_POLICY == 0x30000


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (
            'host-data = "' + "00" * 32 + '"',
            "config: host-data is a snp launch setting (tech snp)",
        ),
        ('tech = "snp"\nmrowner = "' + "00" * 48 + '"', "config: mrowner is a tdx launch setting"),
        ('tech = "tdx"\npolicy = "0x30000"', "config: policy is a snp launch setting"),
        ('tech = "snp"\nid-block = "b"', "config: id-block and id-auth go together"),
        (
            'tech = "snp"\npolicy = "0x10000"',
            "config: policy: SNP policy 0x10000: bit 17 (reserved, must be one) is clear",
        ),
        ('tech = "snp"\npolicy = 1.5', "config: policy must be hex"),
        (
            'tech = "snp"\nhost-data = "' + "00" * 31 + '"',
            "config: host-data: 31 bytes given, exactly 32",
        ),
        ('tech = "tdx"\nmrconfigid = 5', "config: mrconfigid must be a hex string"),
        ('tech = "tdx"\nmrownerconfig = "xy"', "config: mrownerconfig: 'xy' is not hexadecimal"),
        ('tech = "snp"\nid-block = 3\nid-auth = "a"', "config: id-block must be a string path"),
    ],
)
def test_identity_settings_errors(doc: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        settings_from_toml(doc)


def test_the_snp_plan_carries_the_identity_and_records_it() -> None:
    settings = LaunchSettings(
        tech=Technology.SEV_SNP, host_data=b"\x5a" * 32, id_block="b.bin", id_auth="a.bin"
    )
    launch = pvh_launch(settings, kernel(), 0x100000, id_block=BLOCK_RAW, id_auth=AUTH_RAW)
    assert launch.snp == SnpLaunchIdentity(b"\x5a" * 32, BLOCK_RAW, AUTH_RAW)
    assert launch.snp.auth_key_en
    assert launch.tdx is None
    recorded = launch_identity_settings(launch)
    assert recorded == {
        "policy": "0x30000",
        "host_data": "5a" * 32,
        "id_block": BLOCK_RAW.hex(),
        "id_auth": base64.b64encode(AUTH_RAW).decode(),
    }
    # what a verifier is told: the ID key digests of the signing keys
    values = ReferenceValues.from_settings("sev-snp", BLOCK.ld, recorded)
    assert values.id_key_digest == ident.key_digest(ID_KEY)
    assert values.author_key_digest == ident.key_digest(AUTHOR_KEY)
    # the identity changes nothing the guest or a measurement sees
    bare = pvh_launch(LaunchSettings(tech=Technology.SEV_SNP), kernel(), 0x100000)

    def shape(p: PvhLaunch) -> list[tuple[object, ...]]:
        return [(r.gpa, r.size, r.page_type, r.provenance) for r in p.plan.regions]

    assert shape(bare) == shape(launch)
    assert bare.predicted() == launch.predicted()
    assert bare.snp == SnpLaunchIdentity()
    assert launch_identity_settings(bare)["host_data"] == "00" * 32


def test_the_tdx_plan_carries_the_mr_values() -> None:
    settings = LaunchSettings(tech=Technology.TDX, mrowner=b"\x22" * 48)
    launch = pvh_launch(settings, kernel(), 0x100000)
    assert launch.tdx == TdxLaunchIdentity(mrowner=b"\x22" * 48)
    assert launch.snp is None
    assert launch_identity_settings(launch) == {
        "mrconfigid": "00" * 48,
        "mrowner": "22" * 48,
        "mrownerconfig": "00" * 48,
    }
    assert launch_identity_settings(pvh_launch(LaunchSettings(), kernel(), 0x100000)) == {}


def test_an_id_pair_the_firmware_would_refuse_stops_the_launch() -> None:
    """The launcher checks the pair before it builds the plan (the plan imports no verifier)."""
    from cvmlaunch.launcher.pvh import check_snp_id_pair

    settings = LaunchSettings(tech=Technology.SEV_SNP, id_block="b", id_auth="a")
    tampered = bytearray(AUTH_RAW)
    tampered[ident.ID_BLOCK_OFFSET_SIG] ^= 1
    with pytest.raises(CheckFailed, match=r"b / a: 1 check\(s\) failed: ID_BLOCK_SIG by ID_KEY"):
        check_snp_id_pair(settings, BLOCK_RAW, bytes(tampered))
    other = LaunchSettings(tech=Technology.SEV_SNP, policy=0x20000, id_block="b", id_auth="a")
    with pytest.raises(
        CheckFailed, match="its policy 0x30000 differs from the launch policy 0x20000"
    ):
        check_snp_id_pair(other, BLOCK_RAW, AUTH_RAW)
    check_snp_id_pair(settings, BLOCK_RAW, AUTH_RAW)  # the pair the key signed passes
    with raises_cvm(ConfigError, setting="id_block", match="must come with id_block/id_auth"):
        pvh_launch(settings, kernel(), 0x100000)
