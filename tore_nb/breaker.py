"""Circuit breakers: skip a failing tier, warn once per outage, probe it again after a pause.

Each tier has one `Breaker` made of two circuits. Any failure opens the main circuit, which
stops every call to the tier. A `TierWriteError` (disk full, read-only, Redis out of memory)
opens only the write circuit: writes stop, reads go on. A permanent failure (S3 AccessDenied)
disables the tier until `reset()`.

>>> b = Breaker("redis", threshold=1, reset=60)
>>> b.failure(ConnectionError("down")); b.allow(), b.state
(False, 'open')
"""

from __future__ import annotations

import logging
import threading
import time

from .errors import TierWriteError

__all__ = ["Breaker"]

log = logging.getLogger("tore_nb.cache")


class _Circuit:
    __slots__ = ("fails", "open_until", "probing")

    def __init__(self) -> None:
        self.fails = 0
        self.open_until = 0.0
        self.probing = False


class Breaker:
    """The circuit breaker of one tier; thread-safe, and free when closed."""

    __slots__ = ("_all", "_lock", "_writes", "clean", "name", "reset_after", "threshold")

    def __init__(self, name: str, threshold: int, reset: float) -> None:
        self.name, self.threshold, self.reset_after = name, threshold, reset
        self._all = _Circuit()
        self._writes = _Circuit()
        self._lock = threading.Lock()
        # no failure on record: allow() passes every call and success() has nothing to reset,
        # so a caller may skip both (the hot path of a healthy tier)
        self.clean = True

    @property
    def state(self) -> str:
        """closed, open, half-open (a probe is due), disabled, or read-only."""
        c = self._all
        if c.open_until == float("inf"):
            return "disabled"
        if c.open_until:
            return "half-open" if time.monotonic() >= c.open_until else "open"
        return "read-only" if self._writes.open_until else "closed"

    def allow(self, write: bool = False) -> bool:
        """Whether a call may go to the tier now (the first call after a pause is the probe)."""
        if not self._all.open_until and not (write and self._writes.open_until):
            return True
        with self._lock:
            if write and not self._pass(self._writes):
                return False
            return self._pass(self._all)

    @staticmethod
    def _pass(c: _Circuit) -> bool:
        if not c.open_until:
            return True
        if c.probing or time.monotonic() < c.open_until:
            return False
        c.probing = True
        return True

    def success(self, write: bool = False) -> None:
        if not (self._all.fails or (write and self._writes.fails)):
            return
        with self._lock:
            for c, what in ((self._all, "is back"), (self._writes, "accepts writes again")):
                if c is self._writes and not write:
                    continue
                if c.open_until:
                    log.warning("cache tier %s %s; using it again", self.name, what)
                c.fails, c.open_until, c.probing = 0, 0.0, False
            self.clean = not (self._all.fails or self._writes.fails)

    def failure(self, exc: BaseException) -> None:
        writes_only = isinstance(exc, TierWriteError)
        c = self._writes if writes_only else self._all
        with self._lock:
            self.clean = False
            c.fails += 1
            was_open = bool(c.open_until)
            if getattr(exc, "permanent", False):
                c.open_until, c.probing = float("inf"), False
                if not was_open:
                    log.warning(
                        "cache tier %s disabled (%s); fix the cause and call reset_tier(%r)",
                        self.name,
                        exc,
                        self.name,
                    )
            elif c.probing or c.fails >= self.threshold:
                c.open_until, c.probing = time.monotonic() + self.reset_after, False
                if not was_open:
                    what = "refuses writes" if writes_only else "unavailable"
                    rest = "reads go on" if writes_only else "skipping it"
                    log.warning(
                        "cache tier %s %s (%s); %s, next probe in %.0fs",
                        self.name,
                        what,
                        exc,
                        rest,
                        self.reset_after,
                    )

    def reset(self) -> None:
        with self._lock:
            for c in (self._all, self._writes):
                c.fails, c.open_until, c.probing = 0, 0.0, False
            self.clean = True
