"""The clock that entry expiry is decided by: wall time plus an offset that tests can move.

Only expiry decisions read it (the codec's created/expires stamps, the tiered cache's checks,
the memory tier's TTL), so a test can jump hours ahead without sleeping.

>>> before = now(); advance(3600); round(now() - before) >= 3600
True
>>> reset()
"""

from __future__ import annotations

import time

__all__ = ["advance", "monotonic", "now", "reset"]

_offset = 0.0


def now() -> float:
    """Unix time, as the cache sees it."""
    return time.time() + _offset


def monotonic() -> float:
    """A monotonic clock for in-process TTLs, moved by the same offset."""
    return time.monotonic() + _offset


def advance(seconds: float) -> None:
    """Move the cache's clock forward (tests only)."""
    global _offset
    _offset += seconds


def reset() -> None:
    global _offset
    _offset = 0.0
