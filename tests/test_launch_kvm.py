"""``cvmlaunch launch`` on this machine's real /dev/kvm (marker ``kvm``: runs here, never skipped).

Each launch boots the bundled example guest, which hashes every range of the range table with
its own SHA-384 and reports on COM1; the launcher compares each digest with the launch log.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from cvmlaunch.cli._launch import example_config
from cvmlaunch.errors import MeasurementMismatch
from cvmlaunch.kvm_map import Kvm, KvmCaps
from cvmlaunch.launch_settings import LaunchSettings, settings_from_toml
from cvmlaunch.launcher import execute, load_pvh_launch
from cvmlaunch.log_entry import LogOp
from cvmlaunch.measure.log import Technology, parse_log, verify_log
from tests.cli_runner import run_cli

pytestmark = pytest.mark.kvm

DATA = example_config().parent


def example_settings(**overrides: object) -> LaunchSettings:
    return settings_from_toml(
        example_config().read_text(), base=str(DATA), source="example", overrides=overrides
    )


def guest_ranges(output: str) -> list[tuple[int, int, str]]:
    return [
        (int(g, 16), int(s, 16), d)
        for g, s, d in re.findall(r"^range \d+ 0x(\w+)\+0x(\w+) sha384 (\w+)$", output, re.M)
    ]


def _host_caps() -> KvmCaps:
    with Kvm.open() as kvm:
        return kvm.caps()


def test_launch_example_reports_the_log(memory_backend: str) -> None:
    result = run_cli(["launch", "--example", "--memory-backend", memory_backend])
    assert result.exit_code == 0, result.output
    assert "memory backend" not in result.stderr  # asked for: nothing to explain
    assert "guest digests match the launch log for all 6 ranges" in result.stderr
    assert 'cvmlaunch-guest cmdline "console=ttyS0 cvmlaunch.example=1"' in result.stdout
    with load_pvh_launch(example_settings()) as launch:
        expected = [
            (r.gpa, r.size, hashlib.sha384(r.contents()).hexdigest()) for r in launch.hashed
        ]
    # the guest's own SHA-384 of each range equals hashlib's of what the plan put there
    assert guest_ranges(result.stdout) == expected
    assert result.stdout.rstrip().endswith("end 6")


def _plain_missing(caps: KvmCaps) -> list[str]:
    """What a plain VM's guest_memfd needs and this host lacks, from issue 12's rules (not from
    the code): KVM_CAP_GUEST_MEMFD, then its MMAP (bit 0) and INIT_SHARED (bit 1) flags, then
    KVM_CAP_USER_MEMORY2 to bind it."""
    missing = []
    if not caps.guest_memfd:
        missing.append("KVM_CAP_GUEST_MEMFD")
    else:
        if not caps.guest_memfd_flags & 1:
            missing.append("GUEST_MEMFD_FLAG_MMAP")
        if not caps.guest_memfd_flags & 2:
            missing.append("GUEST_MEMFD_FLAG_INIT_SHARED")
    if not caps.user_memory2:
        missing.append("KVM_CAP_USER_MEMORY2")
    return missing


def test_auto_backend_says_which_and_why() -> None:
    """``auto`` takes guest_memfd where the host offers it with the mmap flag; elsewhere it
    takes anonymous memory and says so on stderr, naming what is missing."""
    caps = _host_caps()
    result = run_cli(["launch", "--example"])
    assert result.exit_code == 0, result.output
    assert "guest digests match the launch log for all 6 ranges" in result.stderr
    notes = [line for line in result.stderr.splitlines() if "memory backend" in line]
    missing = _plain_missing(caps)
    if not missing:
        assert notes == []
    else:
        assert notes == [
            "cvmlaunch: note: memory backend: anonymous memory, as this host's KVM does not "
            f"offer {' or '.join(missing)} (guest_memfd for a plain VM needs it)"
        ]


def test_explicit_guest_memfd_on_a_host_without_it_exits_2() -> None:
    caps = _host_caps()
    result = run_cli(["launch", "--example", "--memory-backend", "guest-memfd"])
    missing = _plain_missing(caps)
    if not missing:
        assert result.exit_code == 0, result.output
    else:
        assert result.exit_code == 2
        (line,) = result.stderr.splitlines()
        assert line.startswith(f"cvmlaunch: error: this host's KVM does not offer {missing[0]}")
        if missing[0].startswith("GUEST_MEMFD_FLAG_"):
            assert line.endswith(f"(KVM_CAP_GUEST_MEMFD_FLAGS is {caps.guest_memfd_flags:#x})")
        assert result.stdout == ""


def test_changed_byte_fails_naming_the_range(memory_backend: str) -> None:
    with load_pvh_launch(example_settings(memory_backend=memory_backend)) as launch:
        initrd = next(r for r in launch.hashed if r.provenance.name == "example-initrd.img")
        target = initrd.gpa + 0x10

        def corrupt(vm: object) -> None:
            mem = vm.memory_at(target)  # type: ignore[attr-defined]
            old = mem.read(target, 1)
            mem.write(target, bytes([old[0] ^ 0x01]))

        original = initrd.contents()
        written: list[str] = []
        with pytest.raises(MeasurementMismatch) as info:
            execute(
                launch,
                timeout=60,
                after_populate=corrupt,
                on_log=lambda log, text: written.append(text),
            )
    # the log was handed out (for --log) before the check, and it is what the guest was held to
    (text,) = written
    log = parse_log(text)
    assert verify_log(log) == log.digest
    record = next(e for e in log.entries if e.gpa == initrd.gpa)
    assert record.content_sha384 == info.value.expected
    message = str(info.value)
    assert f"range [{initrd.gpa:#x}-{initrd.end:#x}) (example-initrd.img+0x0)" in message
    assert info.value.expected == hashlib.sha384(original).digest()
    changed = bytearray(original)
    changed[0x10] ^= 1
    assert info.value.actual == hashlib.sha384(changed).digest()
    assert info.value.exit_code == 1


def test_two_vcpus_and_memory_above_4g(memory_backend: str) -> None:
    settings = example_settings(memory="5G", vcpus=2, memory_backend=memory_backend)
    with load_pvh_launch(settings) as launch:
        result = execute(launch, timeout=60)
    assert result.checked == 6
    assert result.exit_status == 0
    # RAM split q35-style: 2 GiB low, 3 GiB from 4 GiB; both memslots are in the guest's map
    assert "cvmlaunch-guest memory 0x0+0x80000000 type 1" in result.serial
    assert "cvmlaunch-guest memory 0x100000000+0xc0000000 type 1" in result.serial
    # the initrd sits at the top of low RAM below Linux's initrd_addr_max
    assert "cvmlaunch-guest module 0 0x37e00000+0x220" in result.serial


def test_guest_that_loops_is_stopped_after_timeout(tmp_path: Path) -> None:
    elf = bytearray((DATA / "example-guest.elf").read_bytes())
    assert elf[0x1000] == 0xFA  # cli, the first instruction at the PVH entry (file offset)
    elf[0x1000:0x1002] = b"\xeb\xfe"  # jmp . : never halts, never exits to the launcher
    looping = tmp_path / "loop.elf"
    looping.write_bytes(bytes(elf))
    logs = tmp_path / "logs"
    logs.mkdir()
    old = logs / "old.jsonl"
    old.write_text("the previous launch's log\n")
    for target in (old, logs / "new.jsonl"):
        result = run_cli(
            ["launch", "--kernel", str(looping), "--timeout", "1", "--log", str(target)]
        )
        assert result.exit_code == 2
        assert result.stderr.strip().splitlines()[-1] == (
            "cvmlaunch: error: vCPU 0: the guest did not halt within 1 s (--timeout); stopped it"
        )
    # --log is written only once the guest halts: the old log is untouched, no new or
    # temporary file appeared
    assert sorted(p.name for p in logs.iterdir()) == ["old.jsonl"]
    assert old.read_text() == "the previous launch's log\n"


@pytest.mark.parametrize(("tech", "bit"), [("snp", 4), ("tdx", 5)])
def test_tech_snp_tdx_stop_before_creating_anything(tmp_path: Path, tech: str, bit: int) -> None:
    log = tmp_path / "launch.jsonl"
    result = run_cli(["launch", "--example", "--tech", tech, "--log", str(log)])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"cvmlaunch: error: this host's KVM does not offer KVM_X86_{tech.upper()}_VM "
        f"(KVM_CAP_VM_TYPES is 0x1, bit {bit} is clear)"
    )
    assert result.stdout == ""
    assert not log.exists()


def _predicted_digest(args: list[str]) -> str:
    dry = run_cli(["launch", *args, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    last = dry.stdout.splitlines()[-1]
    assert last.startswith("predicted launch log digest (plain, cvmlaunch-transcript-sha384;")
    return last.rsplit(" ", 1)[1]


@pytest.mark.parametrize("args", [["--example"], ["--example", "--memory", "5G", "--vcpus", "2"]])
def test_launch_log_verifies_and_ends_with_the_dry_run_prediction(
    tmp_path: Path, args: list[str], memory_backend: str
) -> None:
    predicted = _predicted_digest(args)
    path = tmp_path / "launch.jsonl"
    result = run_cli(["launch", *args, "--memory-backend", memory_backend, "--log", str(path)])
    assert result.exit_code == 0, result.output
    assert (
        f"cvmlaunch: launch log written to {path}: 6 records, plain digest {predicted}"
        in result.stderr
    )
    text = path.read_text()
    log = parse_log(text)
    assert log.digest.hex() == predicted
    assert log.header.technology is Technology.PLAIN
    assert log.header.settings["memory_backend"] == memory_backend
    copies = [e for e in log.entries if e.op is LogOp.PLAIN_COPY]
    assert len(copies) == 6
    if _host_caps().pre_fault_memory:
        assert log.header.settings["pre_fault_memory"] is True
        assert {(e.gpa, e.size) for e in log.entries if e.op is LogOp.PRE_FAULT}
    else:
        # no KVM_PRE_FAULT_MEMORY: kvm_map made one plain.copy record per range
        assert [e.op for e in log.entries] == [LogOp.PLAIN_COPY] * 6
        assert log.header.settings["pre_fault_memory"] is False
        assert "cvmlaunch: note: KVM_PRE_FAULT_MEMORY: not offered by this host" in result.stderr
    kernel = DATA / "example-guest.elf"
    item = log.header.input("kernel")
    assert item is not None
    assert item.sha256 == hashlib.sha256(kernel.read_bytes()).digest()
    # each record's content hash is what the guest itself reported for that range (a range
    # with the zero marker: the guest's SHA-384 of its zeros)
    assert [
        (e.gpa, e.size, (e.content_sha384 or hashlib.sha384(bytes(e.size)).digest()).hex())
        for e in copies
    ] == guest_ranges(result.stdout)
    # log verify with the inputs (found by SHA-256 beside the example's settings) checks
    # every record against the plan they rebuild, and the transcript
    append = "console=ttyS0 cvmlaunch.example=1"
    verify = run_cli(
        ["log", "verify", str(path), "--inputs", str(DATA), "--append", append, "--require-inputs"]
    )
    assert verify.exit_code == 0, verify.output
    assert verify.stdout == f"{path}: OK 6 records, digest {predicted}\n"


@pytest.mark.guest_memfd(mmap=True)
def test_both_backends_give_the_same_records_and_digest(tmp_path: Path) -> None:
    """Where the host offers both backends: the same records and digest on each; the
    headers differ only in the host detail ``memory_backend``, and ``log diff`` says the
    two logs describe the same launch."""
    logs = {}
    for backend in ("guest-memfd", "anonymous"):
        path = tmp_path / f"{backend}.jsonl"
        result = run_cli(["launch", "--example", "--memory-backend", backend, "--log", str(path)])
        assert result.exit_code == 0, result.output
        logs[backend] = parse_log(path.read_text())
    a, b = logs["guest-memfd"], logs["anonymous"]
    assert a.entries == b.entries
    assert a.digest == b.digest
    assert {k: v for k, v in a.header.settings.items() if k != "memory_backend"} == {
        k: v for k, v in b.header.settings.items() if k != "memory_backend"
    }
    diff = run_cli(
        ["log", "diff", str(tmp_path / "guest-memfd.jsonl"), str(tmp_path / "anonymous.jsonl")]
    )
    assert diff.exit_code == 0, diff.output


def test_changed_byte_in_the_written_log_fails_verify(tmp_path: Path) -> None:
    path = tmp_path / "launch.jsonl"
    result = run_cli(["launch", "--example", "--log", str(path)])
    assert result.exit_code == 0, result.output
    text = path.read_text()
    log = parse_log(text)
    hashed = log.entries[2].content_sha384
    assert hashed is not None
    content = hashed.hex()
    gpa = f'"gpa":{log.entries[4].gpa},'
    footer = f'"digest":"{log.digest.hex()}"'
    for old, new, where in [
        (content, ("1" if content[0] == "0" else "0") + content[1:], "record 2"),
        (gpa, f'"gpa":{log.entries[4].gpa + 1},', "record 4"),
        (footer, footer[:-2] + ("1" if footer[-2] == "0" else "0") + '"', "footer: digest"),
    ]:
        assert text.count(old) == 1
        changed = tmp_path / "changed.jsonl"
        changed.write_text(text.replace(old, new))
        verify = run_cli(["log", "verify", str(changed)])
        assert verify.exit_code == 1, (where, verify.output)
        assert where in verify.stdout


def test_populate_is_one_call_whose_records_drive_the_progress_bar(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cvmlaunch import kvm_map

    calls: list[object] = []
    real_populate = kvm_map.populate

    def spy(vm: object, plan: object, **kwargs: object) -> object:
        calls.append(plan)
        assert callable(kwargs["on_record"])
        return real_populate(vm, plan, **kwargs)  # type: ignore[arg-type]

    bars: list[tuple[int, list[int]]] = []

    class Bar:
        def __init__(self, total: int, label: str) -> None:
            self.done: list[int] = []
            bars.append((total, self.done))

        def __call__(self, done: int) -> None:
            self.done.append(done)

        def close(self) -> None:
            pass

    monkeypatch.setattr(kvm_map, "populate", spy)
    with load_pvh_launch(example_settings()) as launch:
        result = execute(launch, timeout=60, progress=Bar)
        assert calls == [launch.plan]  # the whole plan, in one call
        sizes = [r.size for r in launch.hashed]
        spans = [(r.gpa, r.size) for r in launch.hashed]
    ((total, done),) = bars
    assert total == sum(sizes)
    assert done == [sum(sizes[: i + 1]) for i in range(len(sizes))]
    assert [(e.seq, e.gpa, e.size) for e in result.log.entries] == [
        (i, g, s) for i, (g, s) in enumerate(spans)
    ]
