"""What ``cvmlaunch launch --dry-run`` prints: the plan, the launch identity and the
predicted measurement, as text lines.

Rule 1: rendering only. The plans come from :mod:`cvmlaunch.launcher`; each prediction is
one call into :mod:`cvmlaunch.measure` (the digest ``measure snp|tdx`` prints for the same
plan).
"""

from __future__ import annotations

from collections.abc import Iterator

from cvmlaunch.launch_identity import SnpLaunchIdentity, TdxLaunchIdentity
from cvmlaunch.layout import Plan
from cvmlaunch.plan.pvh import PvhLaunch
from cvmlaunch.technology import Technology

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cvmlaunch.measure.tdx import PageOrder
    from cvmlaunch.plan.snp import SnpLaunch
    from cvmlaunch.plan.tdvf import TdxLaunch

__all__ = [
    "describe_firmware_launch",
    "describe_launch",
    "describe_snp",
    "describe_tdx",
    "identity_lines",
    "td_hob_lines",
]


def _mib(size: int) -> str:
    return f"{size / (1 << 20):g} MiB" if size >= 1 << 20 else f"{size / 1024:g} KiB"


def _table(rows: list[tuple[str, ...]], right: frozenset[int]) -> Iterator[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        cells = (
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        yield ("  " + "  ".join(cells)).rstrip()


def describe_launch(launch: PvhLaunch) -> Iterator[str]:
    """The plan and the predicted measurement, as text lines (``--dry-run``).

    For ``--tech none`` the prediction is the transcript digest of the plain launch log
    (:mod:`cvmlaunch.measure.plain`), the value the real launch's log must end with.
    """
    s = launch.settings
    yield (
        f"plan: tech {launch.tech.label}, memory {_mib(s.memory)}, {launch.vcpus} vCPU"
        f"{'s' if launch.vcpus != 1 else ''}, PVH entry {launch.entry:#x}, "
        f"start_info {launch.start_info_gpa:#x}"
    )
    if s.append:
        yield f"cmdline: {s.append}"
    memory_map = launch.plan.memory
    if memory_map is not None:
        yield "memslots:"
        for slot in memory_map.memslots:
            yield (
                f"  {slot.slot}  [{slot.gpa:#014x}-{slot.end:#014x})  {slot.kind.value:<9}"
                f"{_mib(slot.size)}"
            )
    yield "ranges (populate order = range table order); sha384: what the guest must report:"
    rows: list[tuple[str, ...]] = [("#", "GPA range", "pages", "type", "measured", "provenance")]
    for i, region in enumerate(launch.hashed):
        rows.append(
            (
                str(i),
                f"[{region.gpa:#010x}-{region.end:#010x})",
                str(region.npages),
                region.page_type.name,
                "yes" if region.measured else "no",
                region.provenance.describe(),
            )
        )
    lines = list(_table(rows, frozenset({0, 2})))
    yield lines[0]
    for line, digest in zip(lines[1:], launch.predicted(), strict=True):
        yield line
        yield f"      sha384 {digest.hex()}"
    yield from _identity_lines(launch)
    yield from _prediction(launch)


def _identity_lines(launch: PvhLaunch) -> Iterator[str]:
    """The launch identity the VM is started with (reported beside the digest, not in it)."""
    yield from identity_lines(launch.settings.snp_policy, launch.snp, launch.tdx)


def identity_lines(
    policy: int, snp: SnpLaunchIdentity | None, tdx: TdxLaunchIdentity | None
) -> Iterator[str]:
    """The launch identity lines of a dry run: the SNP policy, host data and ID key digests,
    or the TDX MR values (nothing for a plain launch)."""
    if snp is None and tdx is None:
        return
    yield "launch identity (reported beside the launch digest, never measured):"
    if snp is not None:
        from cvmlaunch.measure.identity import GuestPolicy, IdAuth

        yield f"  policy         {GuestPolicy(policy).describe()}"
        yield f"  host_data      {snp.host_data.hex()}"
        if snp.id_auth is None:
            yield "  id_block       none"
        else:
            auth = IdAuth.unpack(snp.id_auth)
            yield f"  id_key_digest  {auth.id_key_digest.hex()}"
            if auth.has_author_key:
                yield f"  author_key_digest {auth.author_key_digest.hex()}"
    else:
        from cvmlaunch.measure.reference import identity_settings

        for key, value in identity_settings(tdx=tdx).items():
            yield f"  {key:<14} {value}"


def _prediction(launch: PvhLaunch) -> Iterator[str]:
    if launch.tech is Technology.PLAIN:
        from cvmlaunch.measure.plain import PLAIN_ALGORITHM, plain_header, plain_log

        log = plain_log(launch.plan, plain_header({}, tool_version=""))
        yield (
            f"predicted launch log digest (plain, {PLAIN_ALGORITHM}; informational, no hardware "
            f"measures a plain launch): {log.digest.hex()}"
        )
    elif launch.tech is Technology.SEV_SNP:
        yield (
            "predicted SNP launch digest: not predicted. It covers one VMSA per vCPU, and "
            "cvmlaunch defines no SNP VMSA for a PVH entry (SNP launches of this plan are not "
            "implemented), so no digest of this plan would be the one a launch reports."
        )
        if launch.settings.firmware is not None:
            yield (
                "  QEMU's SNP launch of this firmware (OVMF, kernel hashes) is predicted by: "
                f"cvmlaunch measure snp --ovmf {launch.settings.firmware} --vcpus {launch.vcpus}"
            )
    else:
        from cvmlaunch.measure.tdx import PageOrder, mrtd

        order = PageOrder.PER_PAGE
        yield (
            f"predicted MRTD (TDX fold over the plan: every range PAGE.ADDed, measured ranges "
            f"MR.EXTENDed, page order {order.value}): {mrtd(launch.plan, order=order).hex()}"
        )
        yield (
            "  covers the plan's ranges as populated; a TD starts at its firmware's reset "
            "vector, not at a PVH entry (launching this plan as a TD is not implemented)"
        )
        if launch.settings.firmware is not None:
            yield (
                "  a TDVF firmware measures by its own metadata: QEMU's launch of it is "
                f"predicted by: cvmlaunch measure tdx --firmware {launch.settings.firmware}"
            )


def _ranges(plan: Plan) -> Iterator[str]:
    memory = plan.memory
    if memory is not None:
        yield "memslots (guest_memfd, set PRIVATE before anything is populated):"
        for slot in memory.memslots:
            yield (
                f"  {slot.slot}  [{slot.gpa:#014x}-{slot.end:#014x})  {slot.kind.value:<9}"
                f"{_mib(slot.size)}"
            )
    yield "ranges (populate order = measurement order):"
    for i, r in enumerate(plan.regions):
        yield (
            f"  {i:>3}  [{r.gpa:#014x}-{r.end:#014x})  {r.npages:>5} pages  "
            f"{r.page_type.name:<10} {'measured' if r.measured else 'not measured':<12}  "
            f"{r.provenance.describe()}"
        )


def describe_snp(launch: SnpLaunch, policy: int) -> Iterator[str]:
    """The SNP plan and the launch digest to expect, as text lines (``launch --dry-run``).

    The digest is the fold of the plan (:func:`cvmlaunch.measure.snp_chain.fold_plan`): the
    value ``measure snp`` prints for the same firmware, vCPUs, signature and kernel hashes.
    """
    from cvmlaunch.measure.identity import GuestPolicy
    from cvmlaunch.measure.snp_chain import fold_plan

    s = launch.settings
    yield (
        f"plan: tech snp, {s.vcpus} vCPU{'s' if s.vcpus != 1 else ''}, vCPU signature "
        f"{s.vcpu_sig:#x}, SEV_FEATURES {s.guest_features:#x}, kernel hashes "
        f"{'on' if s.kernel_hashes is not None else 'off'}"
    )
    yield f"policy: {GuestPolicy(policy).describe()}"
    yield from _ranges(launch.plan)
    yield (
        "vCPUs (KVM builds each VMSA from these at SNP_LAUNCH_FINISH): "
        + ", ".join(
            f"{i}: CS base {st.segments['cs'].base:#x} IP {st.regs['rip']:#x}"
            for i, st in enumerate(launch.states[:4])
        )
        + (" ..." if len(launch.states) > 4 else "")
    )
    yield f"predicted SNP launch digest: {fold_plan(launch.plan).hex()}"


def describe_tdx(launch: TdxLaunch, order: PageOrder) -> Iterator[str]:
    """The TDX plan, its TD HOB and the MRTD to expect, as text lines (``launch --dry-run``).

    The MRTD is the fold of the plan (:func:`cvmlaunch.measure.tdx.mrtd`): the value
    ``measure tdx`` prints for the same firmware and page order.
    """
    from cvmlaunch.measure.tdx import mrtd

    yield (
        f"plan: tech tdx, {launch.vcpus} vCPU{'s' if launch.vcpus != 1 else ''}, TD HOB at "
        f"{launch.hob_gpa:#x} (every vCPU's RCX), page order {order.value}"
    )
    yield from _ranges(launch.plan)
    yield from td_hob_lines(launch)
    yield f"predicted MRTD: {mrtd(launch.plan, order=order).hex()}"


def td_hob_lines(launch: TdxLaunch) -> Iterator[str]:
    """The TD HOB as text: where it is, its size, what TDVF hashes into RTMR0, its RAM."""
    from cvmlaunch.image.td_hob import td_hob_event_sha384

    measured = td_hob_event_sha384(launch.hob).hex()
    yield (
        f"TD HOB (QEMU's; PAGE.ADDed, not MR.EXTENDed): {len(launch.hob)} bytes at "
        f"{launch.hob_gpa:#x}, PHIT + {len(launch.ram)} resource descriptors + END; "
        f"RTMR0 event sha384 {measured}"
    )
    for e in launch.ram:
        kind = "accepted by the VMM (SYSTEM_MEMORY)" if e.accepted else "unaccepted"
        yield f"  [{e.address:#014x}-{e.end:#014x})  {_mib(e.length):>10}  {kind}"


def describe_firmware_launch(launch: SnpLaunch | TdxLaunch, policy: int) -> Iterator[str]:
    """A firmware launch's plan (:func:`cvmlaunch.launcher.load_firmware_launch`) as text lines:
    :func:`describe_snp` with ``policy``, or :func:`describe_tdx` in the per-page order."""
    from cvmlaunch.measure.tdx import PageOrder
    from cvmlaunch.plan.snp import SnpLaunch

    if isinstance(launch, SnpLaunch):
        return describe_snp(launch, policy)
    return describe_tdx(launch, PageOrder.PER_PAGE)
