"""``cvmlaunch measure snp`` with the SNP launch identity (--policy, --host-data, --id-block,
--id-auth): recorded in the log header, never in the digest, checked against the digest, and
read back by ``cvmlaunch reference-values`` (real firmware, peer key digests)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from cvmlaunch.measure import identity as ident
from cvmlaunch.measure.log import parse_log
from tests.cli_runner import CliResult, run_cli
from tests.test_identity import AUTHOR_KEY, ID_KEY
from tests.vectors import identity_file, snp_case, tdx_firmware

#: OVMF.amdsev.fd, 2 x EPYC-v4, QEMU: sev-snp-measure 0.0.13 prints this digest (see
#: tests/test_reference_cli.py).
REAL_DIGEST = bytes.fromhex(snp_case("amdsev-2-epyc").expected)
HOST_DATA = bytes(range(0xA0, 0xC0))


def _peer_key_digests() -> tuple[bytes, bytes]:
    """ID and author key digests as virtee/sev-snp-measure printed them (base64 SHA-384)."""
    lines = identity_file("peer-snp-create-id-block.txt").read_text().splitlines()
    return (
        base64.b64decode(lines[1].split(": ", 1)[1]),
        base64.b64decode(lines[2].split(": ", 1)[1]),
    )


@pytest.fixture
def amdsev(firmware: Callable[[str], Path]) -> Path:
    return firmware("OVMF.amdsev.fd")


def _measure(fw: Path, *extra: str) -> CliResult:
    args = ["measure", "snp", "--ovmf", str(fw), "--vcpus", "2", "--vcpu-type", "EPYC-v4"]
    return run_cli([*args, *extra])


def _pair(tmp_path: Path, ld: bytes, policy: int = 0x30000, *, b64: bool = False) -> list[str]:
    """--id-block/--id-auth options for an ID block of ``ld`` signed by the test keys."""
    block = ident.IdBlock(
        ld=ld,
        family_id=b"F" * 16,
        image_id=b"I" * 16,
        guest_svn=7,
        policy=ident.GuestPolicy(policy),
    )
    auth = ident.sign_id_block(block, ID_KEY, AUTHOR_KEY)
    paths = []
    for name, data in (("id-block", block.pack()), ("id-auth", auth.pack())):
        p = tmp_path / (name + (".b64" if b64 else ".bin"))
        p.write_bytes(base64.b64encode(data) + b"\n" if b64 else data)
        paths += [f"--{name}", str(p)]
    return paths


def _header_settings(log: Path) -> dict[str, object]:
    return dict(parse_log(log.read_text(), name=str(log)).header.settings)


def test_identity_is_recorded_and_read_back_by_reference_values(
    tmp_path: Path, amdsev: Path
) -> None:
    """End to end on the real firmware: the digest is the peer's, the header carries the
    identity, reference-values reports the key digests the peer computed for the same keys."""
    log = tmp_path / "launch.jsonl"
    res = _measure(
        amdsev,
        "--host-data",
        HOST_DATA.hex(),
        "--policy",
        "0x30000",
        *_pair(tmp_path, REAL_DIGEST, b64=True),
        "--log",
        str(log),
    )
    assert res.exit_code == 0, res.output
    assert res.output.strip() == REAL_DIGEST.hex()
    settings = _header_settings(log)
    assert settings["policy"] == "0x30000"
    assert settings["host_data"] == HOST_DATA.hex()
    block = ident.IdBlock.unpack(bytes.fromhex(str(settings["id_block"])))
    assert block.ld == REAL_DIGEST
    assert len(base64.b64decode(str(settings["id_auth"]))) == ident.ID_AUTH_SIZE

    id_digest, author_digest = _peer_key_digests()
    out = run_cli(["reference-values", str(log)])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout) == {
        "technology": "sev-snp",
        "measurement": REAL_DIGEST.hex(),
        "policy": "0x30000",
        "host_data": HOST_DATA.hex(),
        "id_key_digest": id_digest.hex(),
        "author_key_digest": author_digest.hex(),
        "family_id": (b"F" * 16).hex(),
        "image_id": (b"I" * 16).hex(),
        "guest_svn": 7,
    }
    snpguest = run_cli(["reference-values", str(log), "--format", "snpguest"])
    assert snpguest.stdout.split() == [
        "--measurement",
        REAL_DIGEST.hex(),
        "--host-data",
        HOST_DATA.hex(),
        "--id-key-digest",
        id_digest.hex(),
        "--author-key-digest",
        author_digest.hex(),
    ]


def test_no_identity_setting_enters_the_digest(tmp_path: Path, amdsev: Path) -> None:
    """The same launch with and without identity: same digest, same range records; only the
    header's identity settings differ."""
    plain, ided = tmp_path / "plain.jsonl", tmp_path / "ided.jsonl"
    a = _measure(amdsev, "--log", str(plain))
    b = _measure(
        amdsev,
        "--policy",
        "0x20000",
        "--host-data",
        "ff" * 32,
        *_pair(tmp_path, REAL_DIGEST, 0x20000),
        "--log",
        str(ided),
    )
    assert a.exit_code == b.exit_code == 0, (a.output, b.output)
    assert a.output == b.output == REAL_DIGEST.hex() + "\n"
    la, lb = plain.read_text().splitlines(), ided.read_text().splitlines()
    assert la[1:] == lb[1:]
    sa, sb = _header_settings(plain), _header_settings(ided)
    changed = {k for k in sa.keys() | sb.keys() if sa.get(k) != sb.get(k)}
    assert changed == {"policy", "host_data", "id_block", "id_auth"}
    # defaults: QEMU's policy, zero host data, no ID block
    assert (sa["policy"], sa["host_data"], sa["id_block"], sa["id_auth"]) == (
        "0x30000",
        "00" * 32,
        None,
        None,
    )


def test_json_output_carries_the_identity(tmp_path: Path, amdsev: Path) -> None:
    res = _measure(
        amdsev,
        "--host-data",
        HOST_DATA.hex(),
        "--output-format",
        "json",
        *_pair(tmp_path, REAL_DIGEST),
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["digest"] == REAL_DIGEST.hex()
    assert out["settings"]["host_data"] == HOST_DATA.hex()
    assert out["settings"]["policy"] == "0x30000"
    assert ident.IdBlock.unpack(bytes.fromhex(out["settings"]["id_block"])).guest_svn == 7


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        # an ID block signed for another launch digest: both digests are printed
        (
            lambda d: _pair(d, bytes(48)),
            "launch digest (LD) vs the computed measurement mismatch: expected "
            f"{REAL_DIGEST.hex()}, got {bytes(48).hex()}",
        ),
        # an ID block whose policy is not the launch's (default 0x30000)
        (
            lambda d: _pair(d, REAL_DIGEST, 0x20000),
            "its policy 0x20000 differs from the launch policy 0x30000",
        ),
    ],
)
def test_an_id_block_that_does_not_fit_the_launch_exits_1(
    tmp_path: Path, amdsev: Path, extra: Callable[[Path], Sequence[str]], message: str
) -> None:
    log = tmp_path / "launch.jsonl"
    res = _measure(amdsev, *extra(tmp_path), "--log", str(log))
    assert res.exit_code == 1, res.output
    assert message in res.output
    assert not log.exists()  # the log of a launch the firmware would refuse is not written


def test_a_tampered_id_auth_exits_1(tmp_path: Path, amdsev: Path) -> None:
    opts = _pair(tmp_path, REAL_DIGEST)
    auth = Path(opts[3])
    raw = bytearray(auth.read_bytes())
    raw[ident.ID_BLOCK_OFFSET_SIG] ^= 1  # R of the ID block signature
    auth.write_bytes(bytes(raw))
    res = _measure(amdsev, *opts)
    assert res.exit_code == 1, res.output
    assert "1 check(s) failed: ID_BLOCK_SIG by ID_KEY" in res.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--host-data", "ab" * 31], "--host-data: 31 bytes given, exactly 32 needed"),
        (["--host-data", "zz" * 32], "--host-data: 'zz"),
        (["--policy", "0x10000"], "bit 17 (reserved, must be one) is clear"),
        (["--id-block", "x.bin"], "--id-block and --id-auth go together"),
        (["--mode", "sev", "--host-data", "00" * 32], "--host-data is an SNP launch setting"),
        (["--mode", "snp:ovmf-hash", "--policy", "0x30000"], "--policy is an SNP launch setting"),
    ],
)
def test_bad_identity_options_exit_2(amdsev: Path, args: list[str], message: str) -> None:
    res = run_cli(
        ["measure", "snp", "--ovmf", str(amdsev), "--vcpus", "1", "--vcpu-sig", "0", *args]
    )
    assert res.exit_code == 2, res.output
    assert message in res.output


def test_an_id_block_file_of_the_wrong_size_exits_2(tmp_path: Path, amdsev: Path) -> None:
    block, auth = tmp_path / "b", tmp_path / "a"
    block.write_bytes(bytes(95))
    auth.write_bytes(bytes(ident.ID_AUTH_SIZE))
    res = _measure(amdsev, "--id-block", str(block), "--id-auth", str(auth))
    assert res.exit_code == 2, res.output
    assert "ID block: 95 bytes; expected 96 raw bytes or their base64" in res.output


# ------------------------------------------------------------------ TDX: measure tdx

#: OVMF.inteltdx.ms.fd's MRTD (per-page order) as td-shim's td_shim_tee_info_hash.py
#: computed it (tests/vectors/tdx/mrtd.json).
TDX_MRTD = bytes.fromhex(tdx_firmware("OVMF.inteltdx.ms.fd").mrtd_per_page)
MRS = {"mrconfigid": b"\x11" * 48, "mrowner": bytes(range(48)), "mrownerconfig": b"\xee" * 48}


def test_tdx_owner_values_are_recorded_not_measured(
    tmp_path: Path, firmware: Callable[[str], Path]
) -> None:
    """Real TDVF: MRTD is td-shim's with or without the owner values; the header records
    them; reference-values prints them; log verify still replays the log."""
    fw = firmware("OVMF.inteltdx.ms.fd")
    plain, owned = tmp_path / "plain.jsonl", tmp_path / "owned.jsonl"
    a = run_cli(["measure", "tdx", "--firmware", str(fw), "--log", str(plain)])
    opts = [x for name, v in MRS.items() for x in (f"--{name}", "0x" + v.hex().upper())]
    b = run_cli(["measure", "tdx", "--firmware", str(fw), *opts, "--log", str(owned)])
    assert a.exit_code == b.exit_code == 0, (a.output, b.output)
    assert a.stdout == b.stdout == TDX_MRTD.hex() + "\n"
    la, lb = plain.read_text().splitlines(), owned.read_text().splitlines()
    assert la[1:] == lb[1:]
    settings = _header_settings(owned)
    assert {k: settings[k] for k in MRS} == {k: v.hex() for k, v in MRS.items()}
    assert {k: _header_settings(plain)[k] for k in MRS} == dict.fromkeys(MRS, "00" * 48)

    out = run_cli(["reference-values", str(owned)])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout) == {
        "technology": "tdx",
        "mr_td": TDX_MRTD.hex(),
        "mr_config_id": MRS["mrconfigid"].hex(),
        "mr_owner": MRS["mrowner"].hex(),
        "mr_owner_config": MRS["mrownerconfig"].hex(),
    }
    go = run_cli(["reference-values", str(owned), "--format", "go-tdx-guest"])
    # go-tdx-guest's check.Config textproto (proto/checkconfig.proto), bytes as \\xNN escapes
    body = [line.split(": ") for line in go.stdout.splitlines() if line.startswith("    ")]
    assert [(k.strip(), bytes.fromhex(v.strip('"').replace("\\x", ""))) for k, v in body] == [
        ("mr_td", TDX_MRTD),
        ("mr_config_id", MRS["mrconfigid"]),
        ("mr_owner", MRS["mrowner"]),
        ("mr_owner_config", MRS["mrownerconfig"]),
    ]
    verified = run_cli(["log", "verify", str(owned), "--firmware", str(fw)])
    assert verified.exit_code == 0, verified.output

    js = run_cli(["measure", "tdx", "--firmware", str(fw), *opts, "--output-format", "json"])
    assert json.loads(js.stdout)["settings"]["mrowner"] == MRS["mrowner"].hex()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mrowner", "ab" * 47], "--mrowner: 47 bytes given, exactly 48 needed"),
        (["--mrconfigid", "ab" * 49], "--mrconfigid: 49 bytes given, exactly 48 needed"),
        (["--mrownerconfig", "nothex"], "--mrownerconfig: 'nothex' is not hexadecimal"),
    ],
)
def test_bad_tdx_owner_values_exit_2(
    firmware: Callable[[str], Path], args: list[str], message: str
) -> None:
    fw = firmware("OVMF.inteltdx.ms.fd")
    res = run_cli(["measure", "tdx", "--firmware", str(fw), *args])
    assert res.exit_code == 2, res.output
    assert message in res.output
