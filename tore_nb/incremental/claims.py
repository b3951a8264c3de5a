"""Page work claimed cluster-wide, so that every page is computed once however many kernels and
Ray workers process the same documents.

Before computing a batch of pages, a worker claims (page identity, stage fingerprints) of each
in Redis, all in one command (see `tiers.redis_claims`). A claim names its holder: a worker of
a process whose heartbeat lives `CLAIM_LEASE` seconds and is renewed by a thread while any of
its workers holds claims, so renewing costs one command per process, not one per claim. A
page claimed by someone else is put aside and its results awaited from the shared tiers; when
its holder's heartbeat lapses without results (the process died), the claim is cleared and
taken over. Claims are released (one DEL) once their pages' results are stored. Without
Redis, or while it is down, nothing is claimed and pages are computed as before (maybe twice,
never wrong).

>>> import tempfile
>>> from tore_nb.config import CacheConfig
>>> from tore_nb.tiered import MultiLevelCache
>>> Claims(MultiLevelCache(CacheConfig.embedded(tempfile.mkdtemp())), ()).active
False
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..keys import hash_value

if TYPE_CHECKING:
    from ..tiered import MultiLevelCache
    from ..tiers.redis import RedisTier
    from .stages import Pipeline

__all__ = ["CLAIM_LEASE", "Claims", "claim_key", "claim_lease"]

log = logging.getLogger("tore_nb.incremental")

CLAIM_LEASE = 15.0


def claim_lease(env: Mapping[str, str] | None = None) -> float:
    """Seconds a holder's heartbeat lives unless renewed: TORE_NB_CLAIM_LEASE, else
    `CLAIM_LEASE`.

    >>> claim_lease({}), claim_lease({"TORE_NB_CLAIM_LEASE": "2.5"})
    (15.0, 2.5)
    """
    raw = (os.environ if env is None else env).get("TORE_NB_CLAIM_LEASE")
    if raw is None:
        return CLAIM_LEASE
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0.1 <= value <= 3600:  # also rejects NaN
        raise ConfigError(
            f"environment variable TORE_NB_CLAIM_LEASE={raw!r} must be seconds from 0.1 to 3600"
        )
    return value


def claim_key(pipeline: Pipeline, identity: str, stages: Sequence[str]) -> str:
    """The claim on computing `stages` of the page `identity` (their fingerprints, not names).

    >>> from tore_nb.incremental.stages import Pipeline, Stage
    >>> len(claim_key(Pipeline([Stage("a", len)]), "ident", ["a"]))
    32
    """
    return hash_value((identity, tuple(pipeline.fingerprints[s] for s in stages)))[:32]


class _Heartbeat:
    """This process's heartbeat on one Redis: renewed every third of a lease while any worker
    holds claims, left to lapse when none does. Each restart is a new epoch (a new name), so
    claims a worker failed to release are dead once it lapsed, even if the process lives on."""

    def __init__(self, tier: RedisTier, lease: float) -> None:
        self.tier, self.lease = tier, lease
        self.epoch = ""
        self.lapses = 0  # renewals that found the heartbeat gone while claims were held
        self._holding: set[str] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def hold(self, worker: str) -> str:
        """`worker` is about to claim: the epoch its claims are held under (the heartbeat is
        alive when this returns; a Redis failure raises)."""
        from ..tiers.redis_claims import beat

        with self._lock:
            if self._thread is None:
                epoch = os.urandom(8).hex()
                beat(self.tier, epoch, self.lease)  # before any claim names it
                self.epoch = epoch
                self._thread = threading.Thread(
                    target=self._renew, name="tore_nb-claims", daemon=True
                )
                self._thread.start()
            self._holding.add(worker)
            return self.epoch

    def release(self, worker: str) -> None:
        with self._lock:
            self._holding.discard(worker)

    def _renew(self) -> None:
        from ..tiers.redis_claims import beat

        stop = threading.Event()
        while not stop.wait(self.lease / 3):
            with self._lock:
                if not self._holding:
                    self._thread = None  # the next hold() starts a new epoch
                    return
                epoch = self.epoch
            try:
                alive = beat(self.tier, epoch, self.lease)
            except Exception as exc:  # a lapse may follow: work done twice, never wrong
                log.debug("claims: heartbeat failed: %s", exc)
                continue
            if not alive:  # claims under this epoch may have been taken over meanwhile
                with self._lock:
                    self.lapses += 1


_BEATS: dict[tuple[int, str, str, float], _Heartbeat] = {}
_BEATS_LOCK = threading.Lock()


def _heartbeat(tier: RedisTier, lease: float) -> _Heartbeat:
    """The heartbeat of this process (a fork gets its own) on `tier`'s Redis."""
    key = (os.getpid(), repr(tier), tier.lock_prefix, lease)
    with _BEATS_LOCK:
        hb = _BEATS.get(key)
        if hb is None:
            hb = _BEATS[key] = _Heartbeat(tier, lease)
        return hb


class Claims:
    """The claims one worker holds on the first shared tier that offers them (Redis)."""

    def __init__(
        self, cache: MultiLevelCache, tiers: Iterable[str], lease: float | None = None
    ) -> None:
        from ..tiers.redis import RedisTier

        self.tier: RedisTier | None = None
        for name in tiers:
            tier = cache.tier(name)
            if isinstance(tier, RedisTier) and cache.breaker_state(name) == "closed":
                self.tier = tier
                break
        self.lease = lease if lease is not None else claim_lease()
        self.worker = os.urandom(6).hex()
        self.unclaimed = 0  # pages computed without a claim (Redis failed): maybe twice
        self._beat = _heartbeat(self.tier, self.lease) if self.tier is not None else None
        self._held: dict[str, tuple[str, int]] = {}  # key -> (holder, heartbeat lapses then)
        self._lock = threading.Lock()
        # held when Redis failed: released at close if it is back (else they die with the epoch)
        self._orphans: list[tuple[str, str]] = []  # (key, holder)
        self._home = self.tier

    @property
    def active(self) -> bool:
        return self.tier is not None

    def take(self, keys: Sequence[str]) -> set[str]:
        """Claim `keys`: those now held by this worker (all of them without Redis)."""
        tier, hb = self.tier, self._beat
        if tier is None or hb is None or not keys:
            if self.tier is None and self._beat is not None:  # Redis failed earlier
                self.unclaimed += len(keys)
            return set(keys)
        from ..tiers.redis_claims import claim_many

        holder = ""
        try:
            holder = f"{hb.hold(self.worker)}:{self.worker}"
            got = claim_many(tier, keys, holder)
        except Exception as exc:  # Redis failing: compute unclaimed rather than wait
            log.debug("claims: %s; computing without them", exc)
            if holder:  # the claims may have been made before the reply was lost
                with self._lock:
                    self._orphans.extend((k, holder) for k in keys)
            self._give_up()
            self.unclaimed += len(keys)
            return set(keys)
        held = {k for k, ok in zip(keys, got, strict=True) if ok}
        with self._lock:
            mark = hb.lapses
            for k in held:
                self._held[k] = (holder, mark)
            if not self._held:
                hb.release(self.worker)
        return held

    def done(self, keys: Iterable[str]) -> set[str]:
        """Release the claims on `keys` (their results are stored, or their pages failed and
        another may try): those that had been lost meanwhile, the work done twice."""
        tier, hb = self.tier, self._beat
        with self._lock:
            mine = [(k, self._held.pop(k)) for k in keys if k in self._held]
            if not self._held and hb is not None:
                hb.release(self.worker)
        if tier is None or hb is None or not mine:
            return set()
        from ..tiers.redis_claims import clear_dead, release_many

        names = [k for k, _ in mine]
        try:
            if all(mark == hb.lapses for _, (_, mark) in mine):
                release_many(tier, names)  # nobody can have taken them: one DEL
                return set()
            # the heartbeat lapsed while they were held: delete only those still this worker's
            ours = clear_dead(tier, names, [holder for _, (holder, _) in mine])
            return {k for k, ok in zip(names, ours, strict=True) if not ok}
        except Exception as exc:  # they stay until the heartbeat lapses: waiters clear them
            log.debug("claims: release failed: %s", exc)
            return set()

    def lapsed(self, keys: Sequence[str]) -> list[str]:
        """Those of `keys` that nobody holds any more: their holder released them, or its
        process's heartbeat lapsed (it died), in which case the claim is cleared here."""
        tier = self.tier
        if tier is None or not keys:
            return list(keys)
        from ..tiers.redis_claims import clear_dead, holders, living

        try:
            who = holders(tier, keys)
            present = {k: h for k, h in zip(keys, who, strict=True) if h is not None}
            alive = living(tier, list(present.values()))
            dead = [(k, h) for k, h in present.items() if h not in alive]
            cleared: set[str] = set()
            if dead:
                ok = clear_dead(tier, [k for k, _ in dead], [h for _, h in dead])
                cleared = {k for (k, _), c in zip(dead, ok, strict=True) if c}
        except Exception:
            return list(keys)
        return [k for k in keys if k not in present or k in cleared]

    def close(self) -> None:
        """Release whatever this worker still holds (a run that stopped half way)."""
        with self._lock:
            left = list(self._held)
            orphans, self._orphans = self._orphans, []
        if left:
            self.done(left)
        if orphans and self._home is not None:
            from ..tiers.redis_claims import clear_dead

            try:  # another worker of this process may keep the epoch alive: do not leave them
                clear_dead(self._home, [k for k, _ in orphans], [h for _, h in orphans])
            except Exception as exc:
                log.debug("claims: release after a failure failed: %s", exc)

    def _give_up(self) -> None:
        with self._lock:
            self._orphans.extend((k, holder) for k, (holder, _) in self._held.items())
            self._held.clear()
        if self._beat is not None:
            self._beat.release(self.worker)
        self.tier = None
