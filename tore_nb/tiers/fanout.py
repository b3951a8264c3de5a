"""Maintenance fan-out: one operation on every tier through its guard, with what a tier missed
remembered for later (see `GuardedTier.record_missed`), and the background clean-up that exit
waits for at most `EXIT_WAIT_S` seconds (`BoundedJanitor`).

>>> from tore_nb.stats import TierStats
>>> from tore_nb.tiers.memory import MemoryTier
>>> g = GuardedTier(MemoryTier(1000, 60), TierStats())
>>> g.tier.set("page:1", b"v", None)
>>> find_keys([g], "page:*", None), clear([g], None), find_keys([g], "*", None)
(['page:1'], 1, [])
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
import weakref
from collections.abc import Callable, Container, Sequence
from typing import TypeVar

from .guarded import FAILED, GuardedTier
from .janitor import Janitor

__all__ = ["EXIT_WAIT_S", "BoundedJanitor", "clear", "each", "find_keys"]

T = TypeVar("T")
log = logging.getLogger("tore_nb.cache")

#: how long the interpreter's exit waits for background clean-up, all caches together; what
#: is left then is abandoned with one log line
EXIT_WAIT_S = 3.0


class BoundedJanitor(Janitor):
    """A `Janitor` whose jobs run in order on a daemon thread, so that exit waits for them at
    most `EXIT_WAIT_S` seconds (a thread pool's worker is joined at exit with its whole queue:
    with a slow store, that was minutes). A forked child starts its own thread.

    >>> j = BoundedJanitor()
    >>> done = []
    >>> j.submit(lambda: done.append(1)); j.flush(), done
    (True, [1])
    """

    __slots__ = ("__weakref__", "_guard", "_jobs", "_owner")

    def __init__(self) -> None:
        super().__init__()
        self._jobs: queue.SimpleQueue[Callable[[], object]] = queue.SimpleQueue()
        self._owner = 0  # the pid whose thread serves `_jobs`
        self._guard = threading.Lock()

    def submit(self, job: Callable[[], object]) -> None:
        with self._guard:
            if self._owner != os.getpid():
                self._jobs = queue.SimpleQueue()  # a fork's copy of the parent's queue
                self._owner = os.getpid()
                jobs = self._jobs
                threading.Thread(
                    target=_serve, args=(jobs,), name="tore-janitor", daemon=True
                ).start()
                _live.add(self)
            self._jobs.put(job)

    def pending(self) -> int:
        """Jobs not started yet (roughly: the one running is not counted)."""
        return self._jobs.qsize() if self._owner == os.getpid() else 0

    def flush(self, timeout: float | None = None) -> bool:  # type: ignore[override]
        """Wait for the jobs submitted so far (at most `timeout` seconds); whether they ran."""
        if self._owner != os.getpid():
            return True
        done = threading.Event()
        self.submit(done.set)
        return done.wait(timeout)


def _serve(jobs: queue.SimpleQueue[Callable[[], object]]) -> None:
    while True:
        job = jobs.get()
        try:
            job()
        except Exception:  # a job is best effort; the tier's guard has counted its failure
            log.debug("background clean-up failed", exc_info=True)


_live: weakref.WeakSet[BoundedJanitor] = weakref.WeakSet()


@atexit.register
def _drain_at_exit() -> None:
    """Give background clean-up `EXIT_WAIT_S` seconds in all, then leave it with one line."""
    deadline = time.monotonic() + EXIT_WAIT_S
    left = 0
    for j in list(_live):
        if not j.flush(max(0.0, deadline - time.monotonic())):
            left += j.pending() + 1
    if left:
        log.warning(
            "exit: abandoned about %d background cache clean-up job(s) after %.0f s (stale "
            "copies they would have deleted may remain; this process no longer reads them)",
            left,
            EXIT_WAIT_S,
        )


def each(
    tiers: Sequence[GuardedTier],
    op: Callable[[GuardedTier], T],
    default: T,
    failed: list[GuardedTier] | None = None,
) -> list[T]:
    """op on every tier through its guard (`default` where it failed); those go to `failed`."""
    out = []
    for g in tiers:
        got = g.call(op, g)
        if got is FAILED:
            out.append(default)
            if failed is not None:
                failed.append(g)
        else:
            out.append(got)
    return out


def clear(tiers: Sequence[GuardedTier], names: Container[str] | None) -> int:
    """Clear the tiers called `names` (None: all); how many entries went. A tier that cannot be
    reached is cleared once it answers again; until then nothing is read from it."""
    n = 0
    for g in tiers:
        if names is not None and g.name not in names:
            continue
        before = g.journal()
        got = g.call(g.tier.clear)
        if got is FAILED:
            g.record_missed(None)
            continue
        n += got
        if before:
            g.applied(before)  # this clear covers what was missed
    return n


def find_keys(
    tiers: Sequence[GuardedTier], pattern: str, failed: list[GuardedTier] | None
) -> list[str]:
    """Keys matching the glob in any tier, sorted; tiers that could not list go to `failed`."""
    found: set[str] = set()
    empty: list[str] = []
    # copies that reads skip in a tier are not in the cache
    for keys in each(tiers, lambda g: g.visible(list(g.tier.iter_keys(pattern))), empty, failed):
        found.update(keys)
    return sorted(found)
