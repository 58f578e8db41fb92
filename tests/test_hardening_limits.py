"""Issue 15, items 6, 7, 8 and 12 in the library: sizes beyond what a TD, a guest or QEMU
allows are refused up front with the limit named, and nothing runs for days."""

from __future__ import annotations

import math
import struct
from typing import Any

import pytest

from cvmlaunch.errors import ConfigError, ImageError
from cvmlaunch.image.ovmf import SVSM_INFO_GUID, parse_ovmf
from cvmlaunch.launch_settings import LaunchSettings, parse_size, settings_from_toml
from cvmlaunch.layout import FOUR_GIB, MAX_GPA
from cvmlaunch.measure.tdx import measure_tdvf, mrtd
from cvmlaunch.plan.tdvf import tdvf_plan
from tests.errors_util import raises_cvm
from tests.hardening_util import within
from tests.ovmf_builder import build_ovmf

# ---------------------------------------------------------------- item 6: TEMP_MEM of 240 TiB

SIZE = 0x200000  # a 2 MiB firmware, as in the report
BFV = (0x100000, 0x100000, FOUR_GIB - 0x100000, 0x100000, 0, 1)
HOB = (0, 0, 0x809000, 0x2000, 2, 0)


def _tdvf(temp: tuple[int, int, int, int, int, int]) -> bytes:
    return build_ovmf(SIZE, tdx=[BFV, HOB, temp])


def test_6_huge_temp_mem_refused_up_front() -> None:
    image = _tdvf((0, 0, FOUR_GIB, 0xF00000000000, 3, 0))

    def run() -> bytes:
        return mrtd(tdvf_plan(parse_ovmf(image, name="fw.fd")))

    with pytest.raises(ImageError) as e:
        within(10, run)
    text = str(e.value)
    assert text.startswith("fw.fd: TDVF section 2 (TEMP_MEM) 0x100000000+0xf00000000000 ")
    assert "4 GiB" in text
    assert "\n" not in text
    with pytest.raises(ImageError, match="TEMP_MEM"):
        within(10, lambda: measure_tdvf(image, name="fw.fd"))


def test_6_section_ending_exactly_at_4_gib_accepted() -> None:
    """The boundary: a TEMP_MEM that ends at 4 GiB less the firmware is a TD's to have."""
    image = _tdvf((0, 0, 0x800000, 0x6000, 3, 0))
    plan = tdvf_plan(parse_ovmf(image, name="fw.fd"))
    assert max(r.gpa + r.size for r in plan.regions) == FOUR_GIB
    image = _tdvf((0, 0, FOUR_GIB - 0x101000, 0x1000, 3, 0))
    tdvf_plan(parse_ovmf(image, name="fw.fd"))


def test_6_section_just_past_4_gib_refused() -> None:
    image = _tdvf((0, 0, FOUR_GIB, 0x1000, 3, 0))
    with pytest.raises(ImageError, match=r"0x100000000\+0x1000 ends above 4 GiB"):
        tdvf_plan(parse_ovmf(image, name="fw.fd"))


# ---------------------------------------------------------------- item 8: memory sizes


@pytest.mark.parametrize(
    "value",
    ["18014398509481984", "99999999999999999T", "16E", "16384P", 9223372036854775807],
)
def test_8_12_memory_beyond_the_guest_address_space_refused(value: str | int) -> None:
    with pytest.raises(ConfigError) as e:
        parse_size(value)
    text = str(e.value)
    assert "at most" in text
    assert f"{MAX_GPA - (2 << 30):#x}" in text


def test_8_largest_memory_accepted_and_one_page_more_refused() -> None:
    limit = MAX_GPA - (2 << 30)
    assert parse_size(f"{limit >> 10}K") == limit
    with pytest.raises(ConfigError, match="at most"):
        parse_size(f"{(limit >> 10) + 4}K")
    with pytest.raises(ConfigError, match="at most"):
        LaunchSettings(memory=limit + 4096)


@pytest.mark.parametrize(
    ("toml", "kind"),
    [
        ("memory = 9223372036854775807", None),
        ("memory = 1.5", "float"),
        ("memory = [1]", "array"),
        ("memory = {a = 1}", "table"),
        ("memory = 1979-05-27", "date"),
        ("memory = 1979-05-27T07:32:00Z", "date-time"),
        ("memory = true", "boolean"),
        ("vcpus = 1.5", "float"),
        ("timeout = [1]", "array"),
        ("append = 1", "integer"),
    ],
)
def test_8_toml_types_one_line_naming_the_key(toml: str, kind: str | None) -> None:
    with pytest.raises(ConfigError) as e:
        settings_from_toml(toml, source="vm.toml")
    text = str(e.value)
    key = toml.split(" ")[0]
    assert text.startswith(f"vm.toml: {key}")
    assert "\n" not in text
    if kind is not None:
        assert f"not a TOML {kind}" in text


# ---------------------------------------------------------------- item 12: QEMU's refusals


@pytest.mark.parametrize("timeout", [math.inf, math.nan, -1.0, 0.0, 1e300])
def test_12_timeout_must_be_finite_positive(timeout: float) -> None:
    with raises_cvm(ConfigError, setting="timeout", match="^timeout "):
        LaunchSettings(timeout=timeout)


def test_12_timeout_inf_in_toml() -> None:
    with pytest.raises(ConfigError, match="timeout inf"):
        settings_from_toml("timeout = inf", source="vm.toml")


def test_12_svsm_entry_offset_outside_the_image_refused() -> None:
    image = build_ovmf(0x10000, extra=[(SVSM_INFO_GUID, struct.pack("<I", 0x10000))])
    with pytest.raises(ImageError, match=r"SVSM entry offset 0x10000 .*0x10000-byte image"):
        parse_ovmf(image, name="svsm.bin")
    ok = build_ovmf(0x10000, extra=[(SVSM_INFO_GUID, struct.pack("<I", 0xFFF0))])
    assert parse_ovmf(ok, name="svsm.bin").svsm_entry_offset == 0xFFF0


def _snp_with_hash_table(size: int) -> Any:
    from cvmlaunch.plan.sev_hashes import KernelHashes
    from cvmlaunch.plan.snp import SnpSettings, snp_plan

    sections = [(0x800000, 0x1000, 1), (0x801000, 0x1000, 2), (0x802000, 0x1000, 3)]
    image = build_ovmf(
        0x40000, sev=[*sections, (0x80F000, 0x1000, 0x10)], hash_table=(0x80FC00, size)
    )
    img = parse_ovmf(image, name="amdsev.fd")
    hashes = KernelHashes(kernel=bytes(32))
    return snp_plan(img, SnpSettings(vcpus=1, vcpu_sig=0, kernel_hashes=hashes))


def test_12_sev_hash_table_smaller_than_176_bytes_refused() -> None:
    with pytest.raises(ImageError, match=r"hash table area .*0x80fc00.* 175 bytes.* 176"):
        _snp_with_hash_table(175)
    _snp_with_hash_table(176)


# ---------------------------------------------------------------- item 7: non-UTF-8 --append


def test_7_non_utf8_append_is_the_bytes_typed() -> None:
    """``--append $'\\xff\\xfe'`` arrives as surrogate escapes; QEMU takes the bytes, so do
    we: the SEV hashes table and the PVH command line page hold 0xff 0xfe."""
    import hashlib

    from cvmlaunch.layout import PageType, Provenance, Region, SourceKind
    from cvmlaunch.plan.pvh import CMDLINE_GPA, pvh_launch
    from cvmlaunch.plan.sev_hashes import cmdline_bytes, cmdline_sha256

    typed = b"console=\xff\xfe".decode("utf-8", "surrogateescape")
    assert cmdline_bytes(typed) == b"console=\xff\xfe"
    assert cmdline_sha256(cmdline_bytes(typed)) == hashlib.sha256(b"console=\xff\xfe\0").digest()
    settings = LaunchSettings(append=typed)
    prov = Provenance(SourceKind.ELF_SEGMENT, "k.elf", offset=0x1000, index=0)
    kernel = [Region(0x100000, 0x1000, PageType.NORMAL, True, prov, b"\xf4" * 0x1000)]
    launch = pvh_launch(settings, kernel, 0x100000)
    (page,) = [r for r in launch.plan.regions if r.gpa == CMDLINE_GPA]
    assert bytes(page.data).startswith(b"console=\xff\xfe\0")


def test_7_surrogate_that_is_no_byte_refused_in_one_line() -> None:
    from cvmlaunch.plan.sev_hashes import cmdline_bytes

    with raises_cvm(
        ConfigError, setting="append", match=r"^append: character U\+D800 at 2 is neither"
    ):
        cmdline_bytes("a=\ud800")
    with raises_cvm(ConfigError, setting="append", match="U\\+D800"):
        LaunchSettings(append="\ud800")


# ---------------------------------------------------------------- item 11: empty values


@pytest.mark.parametrize("field", ["kernel", "initrd", "firmware", "id_block", "id_auth"])
def test_11_empty_path_is_an_error_not_none(field: str) -> None:
    given: dict[str, Any] = {field: ""}
    with raises_cvm(ConfigError, setting=field, match=f"^{field}: empty file name$"):
        LaunchSettings(**given)
