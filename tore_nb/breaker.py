"""Circuit breakers: skip a failing tier, warn once per outage, probe it again after a pause.

Each tier has one `Breaker` made of two circuits. A failed read, or a tier that cannot be
reached at all, opens the main circuit, which stops every call to the tier. A write or delete
the tier refuses while it still answers (`TierWriteError`; or, from a write, a full disk, a
read-only file or database, a quota) opens only the write circuit: writes stop, reads go on.
A permanent failure (S3 AccessDenied) disables the tier until `reset()`.

The pause before the next probe starts short (`FIRST_PROBE`) and doubles with each failed
probe up to `reset`: a blip of a second costs about a second, a long outage a probe per
`reset` seconds. A success starts the backoff over.

>>> b = Breaker("redis", threshold=1, reset=60)
>>> b.failure(ConnectionError("down")); b.allow(), b.state
(False, 'open')
"""

from __future__ import annotations

import errno
import logging
import threading
import time

from .errors import TierWriteError
from .redaction import redact_url

__all__ = ["FIRST_PROBE", "Breaker", "refuses_writes"]

log = logging.getLogger("tore_nb.cache")

#: Seconds before the first probe of an outage (at most the breaker's `reset`).
FIRST_PROBE = 0.25

# errors of a write that say the tier refuses writes, not that it cannot be read
_WRITE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}
)
_WRITE_TEXTS = ("disk is full", "readonly database", "read-only", "maxmemory", "OOM ")


def refuses_writes(exc: BaseException) -> bool:
    """Whether `exc`, raised by a write or delete, means "no more writes" rather than "down":
    a `TierWriteError`, or one caused by a full disk, a quota, a read-only file or database.

    >>> refuses_writes(OSError(errno.ENOSPC, "No space left")), refuses_writes(TimeoutError())
    (True, False)
    """
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:  # the tier's error wraps the cause
        seen.add(id(e))
        if isinstance(e, TierWriteError):
            return True
        if isinstance(e, OSError) and e.errno in _WRITE_ERRNOS:
            return True
        text = str(e)
        if any(t in text for t in _WRITE_TEXTS):
            return True
        e = e.__cause__ or e.__context__
    return False


class _Circuit:
    __slots__ = ("fails", "open_until", "opened", "probing")

    def __init__(self) -> None:
        self.fails = 0
        self.open_until = 0.0
        self.opened = 0  # pauses since the last success: the backoff's exponent
        self.probing = False

    def close(self) -> None:
        self.fails, self.open_until, self.opened, self.probing = 0, 0.0, 0, False


class Breaker:
    """The circuit breaker of one tier; thread-safe, and free when closed."""

    __slots__ = (
        "_all",
        "_lock",
        "_writes",
        "clean",
        "name",
        "outages",
        "reset_after",
        "threshold",
    )

    def __init__(self, name: str, threshold: int, reset: float) -> None:
        self.name, self.threshold, self.reset_after = name, threshold, reset
        self._all = _Circuit()
        self._writes = _Circuit()
        self._lock = threading.Lock()
        # no failure on record: allow() passes every call and success() has nothing to reset,
        # so a caller may skip both (the hot path of a healthy tier)
        self.clean = True
        # outages begun so far (a circuit opened from closed): who reports an outage per cell
        # or call can say it once per outage, as the breaker's own log does
        self.outages = 0

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
                c.close()
            self.clean = not (self._all.fails or self._writes.fails)

    def failure(self, exc: BaseException, write: bool = False) -> None:
        """Record a failed call; `write`: it was a write or delete, which may fail for want of
        room or permission while reads go on (see `refuses_writes`)."""
        writes_only = isinstance(exc, TierWriteError) or (write and refuses_writes(exc))
        c = self._writes if writes_only else self._all
        with self._lock:
            self.clean = False
            c.fails += 1
            was_open = bool(c.open_until)
            if getattr(exc, "permanent", False):
                c.open_until, c.probing = float("inf"), False
                if not was_open:
                    self.outages += 1
                    log.warning(
                        "cache tier %s disabled (%s); fix the cause and call reset_tier(%r)",
                        self.name,
                        redact_url(str(exc)),  # a client's error may quote its URL
                        self.name,
                    )
            elif c.probing or c.fails >= self.threshold:
                # a short pause first, doubled with each failed probe: a blip costs little,
                # a long outage is probed every `reset_after` seconds
                pause = min(self.reset_after, FIRST_PROBE * 2.0 ** min(c.opened, 60))
                c.opened += 1
                c.open_until, c.probing = time.monotonic() + pause, False
                if not was_open:
                    self.outages += 1
                    what = "refuses writes" if writes_only else "unavailable"
                    rest = "reads go on" if writes_only else "skipping it"
                    log.warning(
                        "cache tier %s %s (%s); %s, probing again in %.2g s, then backing off "
                        "up to %.0f s",
                        self.name,
                        what,
                        redact_url(str(exc)),
                        rest,
                        pause,
                        self.reset_after,
                    )

    def reset(self) -> None:
        with self._lock:
            for c in (self._all, self._writes):
                c.close()
            self.clean = True
