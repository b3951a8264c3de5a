"""A guarded tier: one tier behind its circuit breaker, with its counters, the keys whose copy
there may be stale, and the journal of clears and invalidations it missed.

Every call to the tier goes through `GuardedTier.call`: it asks the breaker, runs the call, and
on an exception counts the error and tells the breaker, which logs one warning per outage; the
caller gets `FAILED` and goes on. A write or delete the tier missed (down, breaker open) leaves
its keys in `stale`: reads skip the tier's copies of them until a later write or delete lands
there. A clear or invalidation it missed goes into its journal; reads skip what that covers
until the janitor has applied it, once the tier answers again.

>>> from tore_nb.stats import TierStats
>>> from tore_nb.tiers.memory import MemoryTier
>>> g = GuardedTier(MemoryTier(1000, 60), TierStats())
>>> g.call(g.tier.set, "k", b"v", None), g.call(g.tier.get, "k")
(None, b'v')
"""

from __future__ import annotations

import contextlib
import enum
import logging
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, Final, Literal, TypeVar, cast

from ..breaker import Breaker
from ..errors import IntegrityError, SerializationError
from ..stats import TierStats
from .base import LockingTier, NamingTier, Tier, capabilities_of, glob_match
from .janitor import Janitor

__all__ = ["FAILED", "GuardedTier", "Outcome"]

log = logging.getLogger("tore_nb.cache")
T = TypeVar("T")


class Outcome(enum.Enum):
    FAILED = "failed"


#: What `GuardedTier.call` returns when the breaker refused the call or the call raised.
FAILED: Final = Outcome.FAILED

# In `stale`: the tier missed a clear or invalidation (see covered). A lone surrogate cannot be
# a key (keys must encode as UTF-8), so this never collides with one.
_MISSED = "\udfff missed clear"
# A clear or invalidation a tier missed: its glob (None: everything) and a matcher for it
_Missed = tuple[str | None, Callable[[str], object]]


def _match_all(key: str) -> bool:
    return True


class GuardedTier:
    """One tier of a cache and everything the cache keeps about it.

    `breaker` None: the tier lives in this process (the object tier) and is never skipped; its
    failures are still counted.
    """

    __slots__ = (
        "_journal",
        "_lock",
        "_recovering",
        "_warned",
        "breaker",
        "caps",
        "janitor",
        "name",
        "stale",
        "stats",
        "tier",
    )

    def __init__(
        self,
        tier: Tier,
        stats: TierStats,
        breaker: Breaker | None = None,
        janitor: Janitor | None = None,
    ) -> None:
        self.tier = tier
        self.name = tier.name
        self.caps = capabilities_of(tier)
        self.stats = stats
        self.breaker = breaker
        self.janitor = janitor if janitor is not None else Janitor()
        self.stale: set[str] = set()
        self._journal: list[_Missed] = []
        self._recovering = False
        self._warned: set[str] = set()
        self._lock = threading.Lock()  # the journal and _recovering; nothing else

    def __repr__(self) -> str:
        return f"GuardedTier({self.name!r}, {self.state})"

    @property
    def state(self) -> str:
        """The breaker's state: closed, open, half-open, read-only or disabled."""
        return "closed" if self.breaker is None else self.breaker.state

    # -- the guard ----------------------------------------------------------------------------
    def call(
        self, fn: Callable[..., T], *args: Any, write: bool = False, quiet: bool = False
    ) -> T | Literal[Outcome.FAILED]:
        """`fn(*args)` through the breaker (its write circuit too when `write`): the result, or
        FAILED when the breaker refused it or it raised. `quiet`: a failure is not counted as
        an error of the tier (statistics and locks are not cache operations), only reported.
        """
        breaker = self.breaker
        if breaker is not None and breaker.clean:
            breaker = None  # no failure on record: nothing to ask or report (the hot path)
        if breaker is not None and not breaker.allow(write):
            return FAILED
        try:
            got = fn(*args)
        except Exception as exc:
            self.fail(exc, quiet, write)
            return FAILED
        if breaker is not None:
            breaker.success(write)
        return got

    def fail(self, exc: BaseException, quiet: bool = False, write: bool = False) -> None:
        """Count a failure of the tier (unless `quiet`) and tell its breaker (`write`: of a
        write or delete, which a full disk fails while reads go on)."""
        if not quiet:
            self.stats.errors += 1
        if self.breaker is not None:
            self.breaker.failure(exc, write)

    # -- capabilities -------------------------------------------------------------------------
    def key_fits(self, key: str) -> bool:
        """Whether `key` can name an entry in this tier."""
        return not self.caps.limited_keys or cast(NamingTier, self.tier).key_fits(key)

    def lock(self, key: str) -> contextlib.AbstractContextManager[bool]:
        """The tier's lock across processes for `key` (it has `caps.lock`); never raises: a
        lock that cannot be taken is the tier's failure, and the caller goes on without it."""
        return _TierLock(self, key)

    # -- writes and deletes -------------------------------------------------------------------
    def write(
        self, batch: Mapping[str, bytes], ttl: float | None, created: float | None = None
    ) -> bool:
        """Store encoded entries in one batched call; False (and the keys stale) when it failed."""
        tier = self.tier
        if len(batch) == 1:
            [(k, v)] = batch.items()
            got = self.call(tier.set, k, v, ttl, created, write=True)
        else:
            got = self.call(tier.set_many, batch, ttl, created, write=True)
        stale = self.stale
        if got is FAILED:
            stale.update(batch)
            return False
        if stale:
            stale.difference_update(batch)
            if _MISSED in stale:
                self.recover_later()
        st = self.stats
        st.sets += len(batch)
        st.bytes_written += sum(len(v) for v in batch.values())
        return True

    def delete(self, keys: Sequence[str]) -> int:
        """Delete keys; how many the tier held. Keys it could not delete become stale."""
        tier, gone = self.tier, []

        def each() -> None:
            for k in keys:
                gone.append(bool(tier.delete(k)))

        # a write: a full disk or a Redis out of memory refusing it must not stop reads
        failed = self.call(each, write=True) is FAILED
        n = sum(gone)
        stale = self.stale
        if failed:
            stale.update(keys[len(gone) :])
            return n
        if stale:
            stale.difference_update(keys)
        self.stats.deletes += n
        return n

    def discard_later(self, keys: Sequence[str]) -> None:
        """Delete possibly stale copies in the background, off the caller's path; until that
        lands, reads skip these keys here (a miss is always safe, a stale hit is not).
        """
        stale = self.stale
        stale.update(keys)
        # keys rewritten meanwhile left the stale set: their new copy must stay
        self.janitor.submit(lambda: self.delete([k for k in keys if k in stale]))

    def reject(self, key: str, exc: SerializationError) -> None:
        """An entry failed to decode: count it, warn once per kind, and remove it."""
        self.stats.corrupt += 1
        kind = "integrity" if isinstance(exc, IntegrityError) else "corrupt"
        if kind not in self._warned:
            self._warned.add(kind)
            log.warning(
                "cache tier %s: rejected entry %s (%s); it was removed and counted as a "
                "miss (further ones are counted silently)",
                self.name,
                key[:80],
                exc,
            )
        # best effort and outside the breaker: the tier has just answered this key
        with contextlib.suppress(Exception):
            self.tier.delete(key)

    # -- what reads skip ----------------------------------------------------------------------
    def skips(self, key: str) -> bool:
        """Whether reads must skip this tier's copy of `key` (call only when `stale`)."""
        stale = self.stale
        return key in stale or (_MISSED in stale and bool(self.covered((key,))))

    def skipped(self, keys: Sequence[str]) -> set[str]:
        """Those of `keys` whose copy here reads must skip (call only when `stale`)."""
        skip = self.stale.intersection(keys)
        if _MISSED in self.stale:
            skip.update(self.covered(keys))
        return skip

    def visible(self, keys: list[str]) -> list[str]:
        """Listed keys less those whose copy here is not in the cache (stale or cleared)."""
        stale = self.stale
        if not stale:
            return keys
        covered = set(self.covered(keys)) if _MISSED in stale else set()
        return [k for k in keys if k not in stale and k not in covered]

    # -- clears and invalidations the tier missed ---------------------------------------------
    def journal(self) -> list[_Missed]:
        """The clears and invalidations missed so far, oldest first."""
        with self._lock:
            return list(self._journal)

    def record_missed(self, pattern: str | None) -> None:
        """The tier could not be cleared (pattern None) or listed for an invalidation: until that
        is applied here, reads treat what it covers as absent from the tier.
        """
        op: _Missed = (pattern, _match_all if pattern is None else glob_match(pattern))
        with self._lock:
            self._journal.append(op)
            self.stale.add(_MISSED)

    def applied(self, ops: Collection[_Missed]) -> None:
        """These missed ops are now applied here (ones recorded since stay)."""
        with self._lock:
            for op in ops:
                with contextlib.suppress(ValueError):
                    self._journal.remove(op)
            if not self._journal:
                self.stale.discard(_MISSED)

    def covered(self, keys: Collection[str]) -> list[str]:
        """The keys that a missed clear or invalidation covers; schedules applying them."""
        ops = self.journal()
        self.recover_later()
        return [k for k in keys if any(match(k) for _, match in ops)]

    def recover_later(self) -> None:
        """Have the janitor apply the journal, once the tier may answer."""
        with self._lock:
            if self._recovering or not self._journal:
                return
            if self.state not in ("closed", "half-open"):
                return  # a later read or write asks again
            self._recovering = True
        self.janitor.submit(self._recover)

    def _recover(self) -> None:
        try:
            for op in self.journal():
                if self.call(self._apply, op[0], write=True) is FAILED:
                    return
                self.applied([op])
        finally:
            with self._lock:
                self._recovering = False

    def _apply(self, pattern: str | None) -> None:
        tier = self.tier
        if pattern is None:
            tier.clear()
            return
        for k in list(tier.iter_keys(pattern)):
            tier.delete(k)


class _TierLock:
    """A tier's lock across processes that never raises into user code: a failure to take or
    release it is the tier's (its breaker hears of it), and the caller goes on without it.
    """

    __slots__ = ("_cm", "_guarded", "_key")

    def __init__(self, guarded: GuardedTier, key: str) -> None:
        self._guarded, self._key = guarded, key
        self._cm: contextlib.AbstractContextManager[bool] | None = None

    def __enter__(self) -> bool:
        try:
            cm = cast(LockingTier, self._guarded.tier).lock(self._key)
            got = cm.__enter__()
        except Exception as exc:
            # not through `call`: a lock taken reports no success (it may be busy, not failed)
            self._guarded.fail(exc, quiet=True)
            return False
        self._cm = cm
        return bool(got)

    def __exit__(self, *exc: Any) -> None:
        cm, self._cm = self._cm, None
        if cm is not None:
            try:
                cm.__exit__(*exc)
            except Exception as error:
                if error is not exc[1]:  # the caller's own exception goes on as it was
                    self._guarded.fail(error, quiet=True)
