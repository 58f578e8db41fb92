"""``python -m bench``: run the benchmarks and print a Markdown table of ratios.

Options: ``--quick`` (a smoke run in seconds: small sizes, one repetition, no peer install),
``--repeat N`` (repetitions per measurement, default 5; medians are reported),
``--only NAME`` (repeatable; one of the names below), ``--markdown FILE`` (also write the
table with the machine's description to FILE, e.g. bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.common import Context
from bench.harness import Row, format_table, machine_description

#: Benchmark name -> module with ``rows(ctx) -> list[Row]``, in table order.
BENCHMARKS: dict[str, str] = {
    "snp-cli": "bench.snp_cli",
    "snp-fold": "bench.snp_fold",
    "snp-set": "bench.snp_set",
    "tdx-mrtd": "bench.tdx_mrtd",
    "log-replay": "bench.log_replay",
    "populate": "bench.populate",
    "memory": "bench.memory",
}

LEGEND = (
    "Ratios: (time) rows are our time / the reference's time (lower is better); (speed) rows "
    "are the reference's time / ours, i.e. our speed as a fraction of the reference's (higher "
    "is better); RSS rows are ours / the reference's peak RSS. Every ratio is measured side by "
    "side in the same run (interleaved repetitions, medians)."
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: small sizes, one repetition")
    p.add_argument("--repeat", type=int, default=None, help="repetitions (default 5; quick: 1)")
    p.add_argument(
        "--only",
        action="append",
        choices=list(BENCHMARKS),
        help="run only this benchmark (repeatable)",
    )
    p.add_argument("--markdown", type=Path, help="also write the results to this Markdown file")
    return p


#: Text from this line on in an existing ``--markdown`` file is kept (hand-written analysis).
KEEP_MARKER = "<!-- analysis: kept when the bench rewrites this file -->"


def _write_markdown(path: Path, text: str, repeat: int) -> None:
    kept = ""
    if path.exists():
        old = path.read_text()
        if KEEP_MARKER in old:
            kept = "\n" + old[old.index(KEEP_MARKER) :]
    path.write_text(
        "# cvmlaunch benchmark results\n\n"
        f"Made by `python -m bench --repeat {repeat} --markdown {path.name}` (see bench/).\n\n"
        f"{text}{kept}"
    )


def _runner(name: str) -> Callable[[Context], list[Row]]:
    module = importlib.import_module(BENCHMARKS[name])
    fn: Callable[[Context], list[Row]] = module.rows
    return fn


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected benchmarks and print the table.

    Returns:
        0, or 1 if a benchmark failed to run (goals are reported, never enforced).
    """
    args = _parser().parse_args(argv)
    repeat = args.repeat if args.repeat is not None else (1 if args.quick else 5)
    if repeat < 1:
        _parser().error("--repeat must be at least 1")
    names = args.only or list(BENCHMARKS)
    header = machine_description()
    rows: list[Row] = []
    failed: list[str] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cvmlaunch-bench-") as scratch:
        ctx = Context(quick=args.quick, repeat=repeat, scratch=Path(scratch))
        for name in names:
            t0 = time.monotonic()
            print(f"running {name} ...", file=sys.stderr, flush=True)
            try:
                new = _runner(name)(ctx)
            except Exception as exc:  # one broken benchmark must not hide the others
                failed.append(name)
                ctx.notes.append(f"{name}: FAILED: {type(exc).__name__}: {exc}")
                new = []
            rows += new
            print(f"  {len(new)} rows in {time.monotonic() - t0:.1f} s", file=sys.stderr)
    table = format_table(rows)
    notes = "\n".join(f"- {n}" for n in ctx.notes)
    mode = "quick smoke run" if args.quick else f"{repeat} repetitions"
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = (
        f"{table}\n\n{LEGEND}\n"
        + (f"\nNotes:\n{notes}\n" if notes else "")
        + f"\nMachine ({when}, {mode}, {time.monotonic() - started:.0f} s):\n{header}\n"
    )
    print(text)
    if args.markdown is not None:
        _write_markdown(args.markdown, text, repeat)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
