"""measure.tdx_predict: TdxRequest's defaults checked against their sources (td-shim's MRTDs,
read through tests.vectors.tdx_firmware; QEMU's zero owner values) and the log it builds."""

from __future__ import annotations

import hashlib

import pytest

from cvmlaunch.launch_identity import TdxLaunchIdentity
from cvmlaunch.measure.tdx import PageOrder
from cvmlaunch.measure.tdx_predict import PROFILE, TdxRequest, predict
from tests.vectors import tdx_firmware


@pytest.fixture(scope="module")
def inteltdx() -> bytes:
    from tests.conftest import find_firmware

    path = find_firmware("OVMF.inteltdx.ms.fd")
    if path is None:
        pytest.skip("OVMF.inteltdx.ms.fd not found")
    return path.read_bytes()


def test_the_default_order_is_per_page(inteltdx: bytes) -> None:
    """PER_PAGE (Linux >= 6.16, QEMU >= 10.1) by default, TWO_PASS on request: td-shim's
    values for both orders."""
    vector = tdx_firmware("OVMF.inteltdx.ms.fd")
    default = predict(inteltdx, TdxRequest(), name="OVMF.inteltdx.ms.fd")
    assert TdxRequest().order is PageOrder.PER_PAGE
    assert default.measurement.mrtd.hex() == vector.mrtd_per_page
    assert (default.measurement.page_adds, default.measurement.mr_extends) == (
        vector.page_add,
        vector.mr_extend,
    )
    two_pass = predict(inteltdx, TdxRequest(order=PageOrder.TWO_PASS))
    assert two_pass.measurement.mrtd.hex() == vector.mrtd_two_pass
    assert default.firmware_sha256.hex() == vector.sha256
    assert default.rtmrs is None
    assert default.log is None


def test_owner_values_default_to_zero_and_are_recorded_not_measured(inteltdx: bytes) -> None:
    zero = predict(inteltdx, TdxRequest())
    assert zero.settings == {
        "order": "per-page",
        "profile": PROFILE,
        "mrconfigid": "00" * 48,
        "mrowner": "00" * 48,
        "mrownerconfig": "00" * 48,
    }
    owner = TdxLaunchIdentity(mrconfigid=b"\x01" * 48, mrowner=b"\x02" * 48)
    given = predict(inteltdx, TdxRequest(owner=owner))
    assert given.measurement.mrtd == zero.measurement.mrtd
    assert given.settings["mrconfigid"] == "01" * 48
    assert given.settings["mrownerconfig"] == "00" * 48


def test_the_log_records_the_firmware_and_replays(inteltdx: bytes) -> None:
    from cvmlaunch.image.ovmf import parse_ovmf
    from cvmlaunch.measure.log import dumps_log, parse_log, verify_log
    from cvmlaunch.measure.tdx import tdvf_contents

    result = predict(inteltdx, TdxRequest(log=True), name="fw/OVMF.fd")
    log = result.log
    assert log is not None
    assert [(i.role, i.name) for i in log.header.inputs] == [("firmware", "OVMF.fd")]
    assert log.header.inputs[0].sha384 == hashlib.sha384(inteltdx).digest()
    assert log.header.settings["profile"] == PROFILE
    assert log.header.settings["order"] == "per-page"
    assert log.footer.digest == result.measurement.mrtd
    assert log.footer.digest.hex() == tdx_firmware("OVMF.inteltdx.ms.fd").mrtd_per_page
    parsed = parse_log(dumps_log(log))
    contents = tdvf_contents(parsed.header, parse_ovmf(inteltdx, name="fw/OVMF.fd"))
    assert verify_log(parsed, contents) == result.measurement.mrtd


def test_a_guest_needs_its_memory_size() -> None:
    """The RTMR half's defaults are predict_tdx_rtmrs's (tests/test_tdx_rtmr.py); the guest's
    RAM size has none: TdxGuest takes it as a required value."""
    import dataclasses

    from cvmlaunch.measure.tdx_predict import TdxGuest

    memory = next(f for f in dataclasses.fields(TdxGuest) if f.name == "memory")
    assert memory.default is dataclasses.MISSING
