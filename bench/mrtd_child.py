"""Child process of benchmark 5: MRTD of one file-backed measured region, streamed via mmap.

``python bench/mrtd_child.py FILE [--window MIB] [--whole]`` prints the MRTD (hex) of the file
laid out as one measured region at 4 GiB, in the default per-page order. The file is mapped a
window at a time (each window unmapped before the next), so the file pages this process has
mapped, which count in its RSS, stay at one window; ``--whole`` maps the file in one piece
instead (its RSS then includes every page of the file, all of it page cache). Splitting a
range does not change a per-page-order MRTD (every page's PAGE.ADD and MR.EXTENDs stay
together and in order).
"""

from __future__ import annotations

import argparse
import mmap
import os
import sys
from collections.abc import Sequence

from cvmlaunch.files import map_file
from cvmlaunch.layout import FOUR_GIB
from cvmlaunch.measure import MrtdFold

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Print the MRTD of the file given on the command line."""
    p = argparse.ArgumentParser(prog="mrtd_child.py")
    p.add_argument("file")
    p.add_argument("--window", type=int, default=8, help="MiB mapped at a time")
    p.add_argument("--whole", action="store_true", help="map the whole file at once")
    args = p.parse_args(argv)
    fold = MrtdFold()
    size = os.path.getsize(args.file)
    if args.whole:
        with map_file(args.file) as view:
            fold.add_range(FOUR_GIB, size, view, measure=True)
    else:
        window = args.window << 20
        with open(args.file, "rb") as f:
            for off in range(0, size, window):
                n = min(window, size - off)
                with mmap.mmap(f.fileno(), n, prot=mmap.PROT_READ, offset=off) as m:
                    view = memoryview(m)
                    fold.add_range(FOUR_GIB + off, n, view, measure=True)
                    view.release()
    print(fold.digest().hex())
    return 0


if __name__ == "__main__":
    sys.exit(main())
