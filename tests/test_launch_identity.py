"""SNP HOST_DATA / ID block and TDX MRCONFIGID / MROWNER / MROWNERCONFIG launch settings."""

from __future__ import annotations

import pytest

from cvmlaunch.errors import ConfigError
from cvmlaunch.kvm_map import SnpFinish, Vm, VmType
from cvmlaunch.launch_identity import SnpLaunchIdentity, TdxLaunchIdentity
from cvmlaunch.measure import identity as ident
from tests.errors_util import raises_cvm
from tests.fakekvm import FakeKernel
from tests.test_identity import GOOD_AUTH, GOOD_BLOCK, ID_KEY, _block


def test_snp_defaults_match_launch_finish_without_id_block() -> None:
    s = SnpLaunchIdentity()
    assert s.host_data == bytes(32)
    assert not s.id_block_en
    assert not s.auth_key_en


def test_snp_host_data_hex_exact_length() -> None:
    s = SnpLaunchIdentity.from_hex("0x" + "5a" * 32)
    assert s.host_data == b"\x5a" * 32
    for bad in ("5a" * 31, "5a" * 33, "zz" * 32):
        with raises_cvm(ConfigError, setting="host_data", match="^host_data: "):
            SnpLaunchIdentity.from_hex(bad)


def test_snp_auth_key_en_follows_the_id_auth() -> None:
    with_author = SnpLaunchIdentity(bytes(32), GOOD_BLOCK, GOOD_AUTH)
    assert with_author.id_block_en
    assert with_author.auth_key_en
    only_id = ident.sign_id_block(_block(), ID_KEY).pack()
    assert not SnpLaunchIdentity(bytes(32), GOOD_BLOCK, only_id).auth_key_en
    assert ident.IdAuth.unpack(GOOD_AUTH).has_author_key


def test_snp_invalid_combinations() -> None:
    with raises_cvm(ConfigError, setting="id_block", match="together"):
        SnpLaunchIdentity(bytes(32), GOOD_BLOCK, None)
    with raises_cvm(ConfigError, setting="id_auth", match="id_auth must be exactly 4096"):
        SnpLaunchIdentity(bytes(32), GOOD_BLOCK, GOOD_AUTH[:-1])
    with raises_cvm(ConfigError, setting="host_data", match="host_data must be exactly 32"):
        SnpLaunchIdentity(bytes(31))


def test_snp_record_roundtrip() -> None:
    s = SnpLaunchIdentity(b"\x01" * 32, GOOD_BLOCK, GOOD_AUTH)
    record = s.to_record()
    assert record["host_data"] == "01" * 32
    assert record["id_block"] == GOOD_BLOCK.hex()
    assert record["auth_key_en"] is True
    assert SnpLaunchIdentity.from_record(record) == s
    assert SnpLaunchIdentity.from_record(SnpLaunchIdentity().to_record()) == SnpLaunchIdentity()
    with pytest.raises(ConfigError, match="base64"):
        SnpLaunchIdentity.from_record({**record, "id_auth": "!!"})


def test_tdx_values() -> None:
    t = TdxLaunchIdentity.from_hex(mrconfigid="11" * 48, mrownerconfig="33" * 48)
    assert t.mrconfigid == b"\x11" * 48
    assert t.mrowner == bytes(48)
    assert TdxLaunchIdentity.from_record(t.to_record()) == t
    assert TdxLaunchIdentity.from_record({}) == TdxLaunchIdentity()
    with raises_cvm(
        ConfigError, setting="mrowner", match="^mrowner: 47 bytes given, exactly 48 needed"
    ):
        TdxLaunchIdentity.from_hex(mrowner="22" * 47)
    with raises_cvm(ConfigError, setting="mrconfigid", match="mrconfigid must be exactly 48"):
        TdxLaunchIdentity(mrconfigid=bytes(32))


def test_snp_identity_fits_launch_finish() -> None:
    """The settings go through kvm_map's LAUNCH_FINISH wrapper unchanged (fake kernel)."""
    s = SnpLaunchIdentity(b"\x5a" * 32, GOOD_BLOCK, GOOD_AUTH)
    finish = SnpFinish.of(s)
    assert finish == SnpFinish(
        id_block=s.id_block, id_auth=s.id_auth, auth_key_en=s.auth_key_en, host_data=s.host_data
    )
    kernel = FakeKernel()
    with Vm.open(VmType.SNP, kernel=kernel) as vm:
        vm.sev_init2()
        vm.snp_launch_start(ident.DEFAULT_POLICY.value)
        vm.snp_launch_finish(finish)
    assert kernel.journal[-1] == ("SNP_LAUNCH_FINISH", b"\x5a" * 32, 1)
    assert kernel.launch_params == {
        "policy": 0x30000,
        "host_data": b"\x5a" * 32,
        "id_block": GOOD_BLOCK,
        "id_auth": GOOD_AUTH,
        "auth_key_en": True,
    }


def test_launch_finish_checks_sizes_as_the_identity_does() -> None:
    """One rule, one message: SnpFinish's values are checked by SnpLaunchIdentity."""
    with raises_cvm(ConfigError, setting="host_data", match="host_data must be exactly 32"):
        SnpFinish(host_data=bytes(31))
    with raises_cvm(ConfigError, setting="id_block", match="together"):
        SnpFinish(id_block=GOOD_BLOCK)
    with pytest.raises(ValueError, match="auth_key_en without an ID block"):
        SnpFinish(auth_key_en=True)


def test_tdx_identity_fits_init_vm() -> None:
    t = TdxLaunchIdentity.from_hex("11" * 48, "22" * 48, "33" * 48)
    kernel = FakeKernel()
    with Vm.open(VmType.TDX, kernel=kernel) as vm:
        vm.tdx_init_vm(attributes=0, xfam=0x3, cpuid=(), identity=t)
    assert ("TDX_INIT_VM",) in kernel.journal
    assert kernel.launch_params == {
        "attributes": 0,
        "xfam": 0x3,
        "mrconfigid": b"\x11" * 48,
        "mrowner": b"\x22" * 48,
        "mrownerconfig": b"\x33" * 48,
    }


def test_one_hex_parser_serves_layout_and_identity() -> None:
    """identity.parse_hex_bytes is layout's parser: one set of rules (0x, ':' and spaces)."""
    from cvmlaunch import layout
    from cvmlaunch.measure import identity

    assert identity.parse_hex_bytes is layout.parse_hex_bytes
    assert layout.parse_hex_bytes("0xAB:cd 01", 3, "x") == b"\xab\xcd\x01"
    assert TdxLaunchIdentity.from_hex(mrowner=":".join(["5a"] * 48)).mrowner == b"\x5a" * 48
    with raises_cvm(
        ConfigError, setting="expect", match=r"^expect: 2 bytes given, exactly 3 needed$"
    ):
        layout.parse_hex_bytes("abcd", 3, "expect")
