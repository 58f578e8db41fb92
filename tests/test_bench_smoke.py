"""``python -m bench --quick`` runs (a smoke run of a few seconds; no timing is asserted)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.kvm
def test_quick_bench_runs_every_benchmark_and_writes_markdown(tmp_path: Path) -> None:
    out_md = tmp_path / "results.md"
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))  # no peer installed there
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--markdown", str(out_md)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = proc.stdout
    assert text.startswith("| benchmark | cvmlaunch | reference | ratio | goal | met |")
    # every benchmark contributed rows, or (the peer, absent from this cache) a note
    for needle in (
        "snp-cli: skipped: sev-snp-measure not installed",
        "snp-set: skipped: sev-snp-measure not installed",
        "| SNP digest, 16 MiB of NORMAL pages, ",
        "| TDX MRTD, 16 MiB measured, per-page |",
        "| log verify, SNP ZERO record of 1024 pages (no inputs) |",
        "| log verify --firmware, TDX log with a 16 MiB TEMP_MEM (zero marker) (",
        "| populate_plain on KVM, 16 MiB, ",
        "| measure snp, kernel + initrd: peak RSS, ",
        "| MRTD of a file-backed region, mmap windows: peak RSS, ",
    ):
        assert needle in text
    # the populate rows name the memory backend this host offers
    assert re.search(r"\| populate_plain on KVM, 16 MiB, (guest-memfd|anonymous) memory, ", text)
    assert "DIFFER" not in text
    assert "FAILED" not in text
    assert "- Python: " in text
    assert "- OpenSSL (hashlib): " in text
    written = out_md.read_text()
    assert written.startswith("# cvmlaunch benchmark results\n")
    assert "| benchmark | cvmlaunch | reference | ratio | goal | met |" in written


def test_bench_options_are_checked() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--only", "no-such-bench"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "invalid choice: 'no-such-bench'" in proc.stderr


def test_markdown_rewrite_keeps_the_analysis(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO))
    try:
        from bench.__main__ import KEEP_MARKER, _write_markdown
    finally:
        sys.path.remove(str(REPO))
    path = tmp_path / "RESULTS.md"
    path.write_text(f"# old\n\n| old table |\n\n{KEEP_MARKER}\n## Analysis\nwhy\n")
    _write_markdown(path, "| new table |\n", repeat=5)
    text = path.read_text()
    assert "| old table |" not in text
    assert "| new table |" in text
    assert text.endswith(f"{KEEP_MARKER}\n## Analysis\nwhy\n")
    assert "`python -m bench --repeat 5 --markdown RESULTS.md`" in text
