"""Page work claimed cluster-wide, so that every page is computed once however many kernels and
Ray workers process the same documents.

Before computing a page's stages, a worker claims (page identity, stage fingerprints) in Redis:
set if absent, with a lease of `CLAIM_LEASE` seconds that a thread renews while the work runs.
A page claimed by someone else is put aside and its results awaited from the shared tiers; when
its claim lapses without results (the holder died), it is taken over. Without Redis, or while
it is down, nothing is claimed and pages are computed as before (maybe twice, never wrong).

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
    """Seconds a claim lives unless renewed: TORE_NB_CLAIM_LEASE, else `CLAIM_LEASE`.

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
        self.owner = os.urandom(8).hex()
        self.unclaimed = 0  # pages computed without a claim (Redis failed): maybe twice
        self._failed = False
        self._held: set[str] = set()
        self._lost: set[str] = set()  # claims taken over by another while this worker worked
        self._lock = threading.Lock()
        self._renewer: threading.Thread | None = None
        self._wake = threading.Event()

    @property
    def active(self) -> bool:
        return self.tier is not None

    def take(self, keys: Sequence[str]) -> set[str]:
        """Claim `keys`: those now held by this worker (all of them without Redis)."""
        tier = self.tier
        if tier is None or not keys:
            if self._failed:
                self.unclaimed += len(keys)
            return set(keys)
        from ..tiers.redis_claims import claim_many

        try:
            got = claim_many(tier, keys, self.lease, self.owner)
        except Exception as exc:  # Redis failing: compute unclaimed rather than wait
            log.debug("claims: %s; computing without them", exc)
            self.tier, self._failed = None, True
            self.unclaimed += len(keys)
            return set(keys)
        held = {k for k, ok in zip(keys, got, strict=True) if ok}
        if held:
            with self._lock:
                self._held |= held
            self._start_renewing()
        return held

    def done(self, keys: Iterable[str], *, failed: bool = False) -> bool:
        """Stop renewing `keys`; after a failure give them up, so another may take over.
        Whether a claim had been lost meanwhile (so the work was done twice)."""
        keys = list(keys)
        with self._lock:
            self._held.difference_update(keys)
            lost = bool(self._lost.intersection(keys))
            self._lost.difference_update(keys)
        if failed and self.tier is not None and keys:
            from ..tiers.redis_claims import release_many

            try:
                release_many(self.tier, keys, self.owner)
            except Exception as exc:
                log.debug("claims: release failed: %s", exc)
        return lost

    def lapsed(self, keys: Sequence[str]) -> list[str]:
        """Those of `keys` that nobody holds any more (their holder finished or died)."""
        if self.tier is None or not keys:
            return list(keys)
        from ..tiers.redis_claims import held_by_anyone

        try:
            held = held_by_anyone(self.tier, keys)
        except Exception:
            return list(keys)
        return [k for k, h in zip(keys, held, strict=True) if not h]

    def close(self) -> None:
        with self._lock:
            self._held.clear()
        self._wake.set()

    def _start_renewing(self) -> None:
        if self._renewer is not None and self._renewer.is_alive():
            return
        self._wake.clear()
        self._renewer = threading.Thread(target=self._renew, name="tore_nb-claims", daemon=True)
        self._renewer.start()

    def _renew(self) -> None:
        from ..tiers.redis_claims import renew_many

        while not self._wake.wait(self.lease / 3):
            with self._lock:
                held = sorted(self._held)
            if not held:
                return
            tier = self.tier
            if tier is None:
                return
            try:
                still = renew_many(tier, held, self.lease, self.owner)
            except Exception as exc:  # a lapsed claim may be taken over: work done twice
                log.debug("claims: renewal failed: %s", exc)
                continue
            lost = {k for k, ok in zip(held, still, strict=True) if not ok}
            if lost:
                with self._lock:
                    self._lost |= lost & self._held
