"""Deterministic benchmark inputs: large files made from a fixed-seed PRNG stream.

The bytes only need to be incompressible-looking, identical from run to run, and cheap to make:
a 16 MiB block from :class:`random.Random` with a fixed seed, repeated, with every 1 MiB chunk
stamped with its index in its first 8 bytes so no two chunks of a file are equal.
"""

from __future__ import annotations

import functools
import random
from pathlib import Path

__all__ = ["write_input"]

_POOL = 16 << 20
_CHUNK = 1 << 20


@functools.cache
def _pool(seed: int) -> bytes:
    return random.Random(seed).randbytes(_POOL)


def write_input(path: Path, size: int, seed: int) -> Path:
    """Write ``size`` deterministic bytes (for ``seed``) to ``path``; return ``path``."""
    pool = memoryview(_pool(seed))
    chunk = bytearray(_CHUNK)
    with path.open("wb") as f:
        for index, off in enumerate(range(0, size, _CHUNK)):
            n = min(_CHUNK, size - off)
            start = off % _POOL
            chunk[:n] = pool[start : start + n]
            chunk[:8] = index.to_bytes(8, "little")
            f.write(memoryview(chunk)[:n])
    return path
