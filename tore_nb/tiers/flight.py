"""Single flight: one computation of a key at a time, across threads and, where a tier offers a
lock (`TierCapabilities.lock`), across processes.

>>> f = Flights()
>>> with f.lock("k"), shared_lock((), "k", None) as got:
...     f.lock("k").locked(), got
(True, None)
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from .guarded import GuardedTier

__all__ = ["Flights", "shared_lock"]

_MAX_IDLE = 4096  # per-key locks kept before the idle ones are dropped


class Flights:
    """Per-key locks for the threads of one process."""

    __slots__ = ("_lock", "_locks")

    def __init__(self) -> None:
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def lock(self, key: str) -> threading.Lock:
        with self._lock:
            lock = self._locks.get(key)
            if lock is None:
                if len(self._locks) > _MAX_IDLE:
                    self._locks = {k: v for k, v in self._locks.items() if v.locked()}
                lock = self._locks[key] = threading.Lock()
            return lock


def shared_lock(
    tiers: Sequence[GuardedTier], key: str, names: tuple[str, ...] | None
) -> AbstractContextManager[Any]:
    """The lock of the most widely shared tier among `tiers` (fastest first; `names`: those in
    use, None: all) that offers one, e.g. Redis before the local disk; else no lock.
    """
    for g in reversed(tiers):
        if not g.caps.lock or (names is not None and g.name not in names):
            continue
        # the state, not allow(): allow() may hand out the half-open probe, and a lock cannot
        # report back on it (a lock not taken may be busy, not failed), which would leave the
        # breaker half-open for good. Reads and writes probe instead.
        if g.state == "closed":
            return g.lock(key)
    return nullcontext()
