"""MultiLevelCache: read fast to slow with promotion, write routed by size, never raise.

Tiers are composed in order (memory, disk, redis, s3), each behind its own guard (`GuardedTier`:
circuit breaker, counters, stale keys, missed clears). A read that hits a slower tier promotes
the value into the faster enabled tiers. A write encodes once and goes to the tiers its size
routes it to (by what tiers declare: under 1 MB memory, disk, redis; under 100 MB disk, redis,
s3; larger s3), and removes the key from the others so that no stale copy can surface later. A
failing tier is skipped with one warning per outage and probed again later. Cache failures are
counted, logged misses: nothing here raises into user code. Caller errors do: a key that is not
a str (or does not encode as UTF-8) and a TTL that is not a number of seconds raise TypeError or
ValueError before any tier is touched. `get_cache()` is the process-wide default cache.

>>> import tempfile
>>> cache = MultiLevelCache(CacheConfig.embedded(tempfile.mkdtemp()))
>>> key = cache.generate_key("report.pdf", dpi=150)
>>> cache.set(key, {"pages": 10})
True
>>> cache.get(key)
{'pages': 10}
>>> cache.local_tiers, cache.shared_tiers
(('memory', 'disk'), ())
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from time import perf_counter_ns
from typing import Any, NamedTuple, TypeVar, cast

from . import clock
from .breaker import Breaker
from .codec import Codec, load_secret
from .config import CacheConfig
from .errors import ConfigError
from .keys import make_key
from .stats import CacheMetrics, MetricsSnapshot
from .tiers import Tier, build_tiers, capabilities_of, fanout
from .tiers.base import MISSING, ObjectTier
from .tiers.checks import check_key, check_keys, check_ttl, plain_key
from .tiers.fanout import EXIT_WAIT_S, BoundedJanitor
from .tiers.flight import Flights
from .tiers.guarded import FAILED, GuardedTier
from .tiers.reads import Reader, Versions
from .tiers.routing import ReadPlan, SizeRoutes, plan_reads
from .tiers.stamps import WriteStamps
from .tiers.writes import Placed, plan_writes

__all__ = [
    "CacheManager",
    "Hit",
    "MultiLevelCache",
    "default_cache",
    "get_cache",
    "set_default_cache",
]

log = logging.getLogger("tore_nb.cache")
T = TypeVar("T")
MB = 1_000_000


class Hit(NamedTuple):
    """A value found in the cache, the tier that served it, and how long the lookup took.

    Immutable like the frozen records elsewhere, but a tuple: it is built on every hit.
    """

    value: Any
    tier: str
    seconds: float
    created: float | None = None


class MultiLevelCache:
    """A read-through, write-routed cache over memory, disk, Redis and S3 tiers.

    Build it from a `CacheConfig` (default: `CacheConfig.from_env()`), or pass `tiers`
    explicitly. The signing secret comes from `TORE_NB_SECRET` or the per-user key file.
    `local_tiers` and `shared_tiers` name the tiers that this machine alone sees and those that
    other machines see too; `object_tier` names the tier that hands out stored objects
    themselves (None when there is none).
    """

    def __init__(
        self,
        config: CacheConfig | None = None,
        *,
        tiers: Sequence[Tier] | None = None,
        secret: bytes | None = None,
    ) -> None:
        self.config = config if config is not None else CacheConfig.from_env()
        cfg = self.config
        self._tiers: list[Tier] = list(tiers) if tiers is not None else build_tiers(cfg)
        self._by_name = {t.name: t for t in self._tiers}
        self.tier_names: tuple[str, ...] = tuple(self._by_name)
        self._secret = secret
        self._signing = secret if secret is not None else load_secret()
        self.codec = Codec(
            self._signing,
            namespace=cfg.namespace,
            compression=cfg.compression,
            compression_min_bytes=cfg.compression_min_bytes,
        )
        self.metrics = CacheMetrics(list(self.tier_names))
        first = self._tiers[0] if self._tiers else None
        # a first tier that keeps decoded objects is read without decoding; it lives in this
        # process, so it has no breaker
        self._mem: ObjectTier | None = None
        if first is not None and capabilities_of(first).holds_objects:
            self._mem = cast(ObjectTier, first)
        self._janitor = BoundedJanitor()
        self._guarded = [
            GuardedTier(
                t,
                self.metrics.tier(t.name),
                None
                if t is self._mem
                else Breaker(t.name, cfg.breaker_failures, cfg.breaker_reset_seconds),
                self._janitor,
            )
            for t in self._tiers
        ]
        self._guard = {g.name: g for g in self._guarded}
        self._gmem = self._guarded[0] if self._mem is not None else None
        self._mst = None if self._gmem is None else self._gmem.stats
        self._remote = [g for g in self._guarded if g is not self._gmem]
        self.object_tier: str | None = None if self._gmem is None else self._gmem.name
        self.local_tiers = tuple(n for n, g in self._guard.items() if not g.caps.shared)
        self.shared_tiers = tuple(n for n, g in self._guard.items() if g.caps.shared)
        self._routes = SizeRoutes(self._guarded, cfg)
        self._stamps = WriteStamps()
        # tiers that take no small entries (S3): looking there for a stale copy of every small
        # write would be a billed request each, so this process deletes one only where it knows
        # the key may be (it wrote or read it there); older copies others left are superseded
        self._placed = {g.name: Placed() for g in self._remote if "small" not in g.caps.sizes}
        self._versions = Versions()
        self._reader = Reader(self.codec, self._stamps, self._gmem, self._versions, self._placed)
        self._flights = Flights()
        # reads planned once per selection of tiers (see _plan)
        self._plans: dict[tuple[str, ...] | None, ReadPlan] = {}

    def __repr__(self) -> str:
        return (
            f"MultiLevelCache(tiers={list(self.tier_names)}, namespace={self.config.namespace!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # a cache travels to other processes (Ray, multiprocessing) as its config; each process
        # opens its own clients. The secret travels only when it was given explicitly.
        return (_rebuild, (self.config, self._secret))

    def secret_env(self) -> dict[str, str]:
        """The environment that makes another process sign as this cache does (for Ray
        workers: `runtime_env={"env_vars": cache.secret_env()}`); it carries the secret.

        >>> import tempfile
        >>> c = MultiLevelCache(CacheConfig.embedded(tempfile.mkdtemp()), secret=b"s" * 32)
        >>> list(c.secret_env())
        ['TORE_NB_SECRET']
        """
        try:
            return {"TORE_NB_SECRET": self._signing.decode()}
        except UnicodeDecodeError:
            raise ConfigError(
                "this cache's secret is not text, so it cannot travel as TORE_NB_SECRET: set "
                "TORE_NB_SECRET on every node instead"
            ) from None

    # -- keys -------------------------------------------------------------------------------------
    def generate_key(self, *args: Any, **kwargs: Any) -> str:
        """A deterministic key in this cache's namespace; see `tore_nb.keys.generate_key`."""
        return make_key(args, kwargs, namespace=self.config.namespace)

    # -- reads ------------------------------------------------------------------------------------
    def get(self, key: str, default: Any = None, tiers: Iterable[str] | None = None) -> Any:
        """The cached value, or `default` on a miss. Never raises for cache failures."""
        if type(key) is not str:  # UTF-8 is checked past memory, which never encodes keys
            key = plain_key(key)
        m = self.metrics
        m.requests += 1
        memory, lanes = self._plan(tiers)
        if memory:
            t0 = perf_counter_ns()
            value = self._mem.lookup(key)  # type: ignore[union-attr]
            st = self._mst
            assert st is not None
            if value is not MISSING:
                st.hit(perf_counter_ns() - t0)
                m.hits += 1
                return value
            st.miss(perf_counter_ns() - t0)
        found = self._reader.fetch(key, lanes)
        if found is None:
            m.misses += 1
            return default
        m.hits += 1
        return found[0]

    def fetch(self, key: str, tiers: Iterable[str] | None = None) -> Hit | None:
        """Like `get`, but says which tier served the value; None on a miss."""
        hit = self._find(check_key(key), tiers)
        self._count(hit is not None)
        return hit

    def _count(self, hit: bool) -> None:
        m = self.metrics
        m.requests += 1
        if hit:
            m.hits += 1
        else:
            m.misses += 1

    def _find(self, key: str, tiers: Iterable[str] | None, quiet: bool = False) -> Hit | None:
        """Look a key up fast to slow (per-tier stats only; requests are counted by callers).

        `quiet`: a second look for the same request, whose misses were counted already.
        """
        memory, lanes = self._plan(tiers)
        if memory:
            t1 = perf_counter_ns()
            value = self._mem.lookup(key)  # type: ignore[union-attr]
            st = self._mst
            assert st is not None
            dt = perf_counter_ns() - t1
            if value is not MISSING:
                st.hit(dt)
                return Hit(value, self._gmem.name, dt / 1e9)  # type: ignore[union-attr]
            if not quiet:
                st.miss(dt)
        t0 = perf_counter_ns()
        found = self._reader.fetch(key, lanes, quiet)
        if found is None:
            return None
        return Hit(found[0], found[1], (perf_counter_ns() - t0) / 1e9, found[2])

    def _plan(self, tiers: Iterable[str] | None) -> ReadPlan:
        """How a read over `tiers` (None: all) goes; planned once per selection, so that the
        hot path of a hit does no set-up of its own."""
        sel = tiers if tiers is None or type(tiers) is tuple else tuple(tiers)
        plan = self._plans.get(sel)
        if plan is None:
            plan = plan_reads(self._gmem, self._remote, sel)
            if len(self._plans) < 256:  # selections are few; a caller making up new ones is not
                self._plans[sel] = plan
        return plan

    def contains(self, key: str) -> bool:
        """Whether a valid (verified, unexpired) entry exists in any tier; nothing is unpickled."""
        return self._reader.contains(check_key(key), self._plan(None)[1])

    __contains__ = contains

    def get_many(self, keys: Iterable[str], tiers: Iterable[str] | None = None) -> dict[str, Any]:
        """Values of the keys that hit; one round trip per remote tier (MGET, parallel S3)."""
        return self._lookup_many(keys, tiers, None)

    def fetch_many(self, keys: Iterable[str], tiers: Iterable[str] | None = None) -> dict[str, Hit]:
        """Like `get_many`, but each hit says which tier served it."""
        t0 = perf_counter_ns()
        served: dict[str, tuple[str, float | None]] = {}
        values = self._lookup_many(keys, tiers, served)
        elapsed = (perf_counter_ns() - t0) / 1e9
        return {k: Hit(v, served[k][0], elapsed, served[k][1]) for k, v in values.items()}

    def _lookup_many(
        self,
        keys: Iterable[str],
        tiers: Iterable[str] | None,
        served: dict[str, tuple[str, float | None]] | None,
    ) -> dict[str, Any]:
        """key -> value for the keys that hit, fast tiers first; `served` gets (tier, created)."""
        todo = list(dict.fromkeys(check_keys(keys)))
        m = self.metrics
        m.requests += len(todo)
        found, missed = self._reader.lookup_many(todo, self._plan(tiers), served)
        m.hits += len(found)
        m.misses += len(missed)
        return found

    # -- writes -----------------------------------------------------------------------------------
    def route(self, size: int) -> tuple[str, ...]:
        """The tiers an entry of `size` encoded bytes goes to, among those enabled."""
        return self._routes(size)

    def set(
        self, key: str, value: Any, ttl: float | None = None, tiers: Iterable[str] | None = None
    ) -> bool:
        """Store a value; True when at least one tier holds it. Never raises for cache failures."""
        return self.set_many({key: value}, ttl, tiers) == 1

    def set_many(
        self,
        items: Mapping[str, Any],
        ttl: float | None = None,
        tiers: Iterable[str] | None = None,
        *,
        within: Iterable[str] | None = None,
    ) -> int:
        """Store several values with batched writes per tier; returns how many were stored.

        `ttl` in seconds (default: the config's `cache_ttl`); None or inf: no expiry. `tiers`
        places every entry in those tiers whatever its size; `within` routes each by its size
        as usual, but only among those tiers, and leaves the others alone (a worker writing
        the shared tiers: a small result to Redis, a large one to Redis and S3).

        >>> import tempfile
        >>> c = MultiLevelCache(CacheConfig.embedded(tempfile.mkdtemp()))
        >>> c.set_many({"a": 1, "b": 2}, within=["disk"]), c.tier("memory").get("a")
        (2, None)
        """
        keys = check_keys(items)
        ttl = check_ttl(self.config.cache_ttl if ttl is None else ttl)
        explicit = None if tiers is None else tuple(tiers)
        scope = None if within is None else frozenset(within)
        if scope is not None:
            routes = self._routes
            explicit = None

            def route(size: int) -> tuple[str, ...]:
                return tuple(n for n in routes(size) if n in scope)

        else:
            route = self._routes
        # explicit `tiers` place entries deliberately: tiers slower than every target are left
        # alone, but a copy in a faster one would shadow the new value, so it goes
        last = max(
            (i for i, g in enumerate(self._remote) if g.name in (explicit or ())), default=-1
        )
        created: dict[str, float] = {}
        plan, encoded, dropped = plan_writes(
            keys, items.values(), ttl, self.codec, self._guarded, route, explicit, created
        )
        stored: set[str] = set()
        self._stamps.begin(keys)
        try:
            mem, gmem = self._mem, self._gmem
            if mem is not None and gmem is not None and (scope is None or gmem.name in scope):
                in_memory = plan[gmem.name]
                expired = ttl is not None and ttl <= 0  # the memory tier would keep the old one
                for key, value, size in encoded:
                    if key in in_memory and not expired and mem.put(key, value, size, ttl):
                        stored.add(key)
                        gmem.stats.sets += 1
                    else:  # not routed there, or too big: an old copy must not stay behind
                        mem.delete(key)
                for key in dropped:
                    mem.delete(key)
            for i, g in enumerate(self._remote):
                if scope is not None and g.name not in scope:
                    continue
                batch = plan[g.name]
                placed = self._placed.get(g.name)
                if batch:
                    if placed is not None:  # even when it failed: part of it may have landed
                        placed.add(batch)
                    if g.write(batch, ttl):
                        stored.update(batch)
                # a stale copy in a tier that routing skipped could surface once faster tiers
                # evict: delete it (in the background; reads skip it meanwhile)
                if explicit is None or i <= last:
                    stale = [k for k, _, _ in encoded if k not in batch]
                    if stale and placed is not None:
                        stale = placed.take(stale)
                    if stale:
                        g.discard_later(stale)
                gone = dropped if placed is None or not dropped else placed.take(dropped)
                if gone:
                    g.delete(gone)
        finally:
            # once the write has landed (a read overlapping it may still get the old value),
            # entries older than this one are superseded for this process
            self._versions.wrote_many(created)
            self._stamps.finish(keys)
        return len(stored)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait for background clean-up (stale copies being deleted) to finish, at most
        `timeout` seconds; whether it did."""
        return self._janitor.flush(timeout)

    def delete(self, key: str) -> bool:
        """Remove a key from every tier; True when some tier held it."""
        keys = [check_key(key)]
        self._stamps.begin(keys)
        try:
            return sum(g.delete(keys) for g in self._guarded) > 0
        finally:
            self._stamps.finish(keys)

    # -- single flight ----------------------------------------------------------------------------
    def get_or_compute(
        self,
        key: str,
        compute: Callable[[], T],
        ttl: float | None = None,
        tiers: Iterable[str] | None = None,
    ) -> T:
        """The cached value, or compute it once even when many threads miss together.

        Threads of one process wait on a per-key lock; processes that share Redis or a disk
        tier wait on the tier's lock where it offers one. A miss reads each tier once; once
        the locks are taken, a second look goes only where a value may have come meanwhile:
        everywhere when a thread of this process wrote the key since the first look; else,
        under a shared lock, the tiers up to the lock's (where the process that held it wrote
        an entry of every size but the huge ones, which only S3 takes: those may be computed
        twice). Slower tiers missed a moment ago and are not read again.
        """
        key = check_key(key)
        check_ttl(ttl)  # a bad ttl raises before computing, not after
        tiers = None if tiers is None else tuple(tiers)
        tick = self._stamps.tick  # before looking: a write of this process since shows there
        hit = self._find(key, tiers)
        if hit is None:
            with self._flights.lock(key):
                locking = self._lock_tier(tiers)
                with contextlib.nullcontext() if locking is None else locking.lock(key):
                    hit = self._second_look(key, tiers, tick, locking)
                    if hit is None:
                        self._count(False)
                        value = compute()
                        self.set(key, value, ttl, tiers)
                        return value
        self._count(True)
        return hit.value  # type: ignore[no-any-return]

    def _lock_tier(self, names: tuple[str, ...] | None) -> GuardedTier | None:
        """The tier whose lock single flight takes across processes: the most widely shared
        one in use that offers a lock and is closed (as `flight.shared_lock` picks it)."""
        for g in reversed(self._remote):
            if g.caps.lock and (names is None or g.name in names) and g.state == "closed":
                return g
        return None

    def _second_look(
        self, key: str, tiers: tuple[str, ...] | None, tick: int, locking: GuardedTier | None
    ) -> Hit | None:
        """`get_or_compute`'s look once its locks are taken (see there); None: compute."""
        with self._stamps.lock:
            ours = not self._stamps.fresh(key, tick)
        if ours:
            return self._find(key, tiers, quiet=True)
        if locking is None:
            return None
        upto: list[str] = [] if self._gmem is None else [self._gmem.name]
        for g in self._remote:
            upto.append(g.name)
            if g is locking:
                break
        return self._find(key, tuple(n for n in upto if tiers is None or n in tiers), quiet=True)

    # -- maintenance ------------------------------------------------------------------------------
    def clear(self, tiers: Iterable[str] | None = None) -> int:
        """Remove every entry of this namespace from the given (default: all) tiers; a count.

        A tier that cannot be reached is cleared once it answers again; until then nothing is
        read from it.
        """
        names = None if tiers is None else set(tiers)
        self._stamps.begin(None)
        try:
            return fanout.clear(self._guarded, names)
        finally:
            self._stamps.finish(None)

    def find_keys(self, pattern: str = "*") -> list[str]:
        """Keys matching a shell-style glob in any tier, sorted.

        >>> import tempfile
        >>> c = MultiLevelCache(CacheConfig.embedded(tempfile.mkdtemp()))
        >>> c.set("page:doc1:3", 1); c.find_keys("page:doc1:*")
        True
        ['page:doc1:3']
        """
        return fanout.find_keys(self._guarded, check_key(pattern), None)

    def invalidate(self, pattern: str) -> int:
        """Delete every key matching the glob from every tier; returns the number of keys.

        A tier that cannot be listed is invalidated once it answers again; until then keys
        matching the glob are not read from it.
        """
        pattern = check_key(pattern)
        failed: list[GuardedTier] = []
        keys = fanout.find_keys(self._guarded, pattern, failed)
        for g in failed:
            g.record_missed(pattern)
        self._stamps.begin(keys)
        try:
            for g in self._guarded:
                g.delete(keys)
        finally:
            self._stamps.finish(keys)
        return len(keys)

    def expire_older_than(self, age: float | _dt.timedelta | _dt.datetime) -> int:
        """Remove entries written before a cutoff: an age in seconds, a timedelta or a datetime."""
        if isinstance(age, _dt.datetime):
            cutoff = age.timestamp()
        elif isinstance(age, _dt.timedelta):
            cutoff = clock.now() - age.total_seconds()
        else:
            cutoff = clock.now() - float(age)
        self._stamps.begin(None)  # a read racing it must not promote what it removes
        try:
            return sum(fanout.each(self._guarded, lambda g: g.tier.expire_older_than(cutoff), 0))
        finally:
            self._stamps.finish(None)

    # -- stats ------------------------------------------------------------------------------------
    def snapshot(self, usage: bool = True) -> MetricsSnapshot:
        """Frozen figures of every tier; `usage` adds entries and size (a call to each tier)."""
        extra: dict[str, dict[str, Any]] = {}
        for g in self._guarded:
            info: dict[str, Any] = {"state": g.state}
            # quiet: a statistics call that fails is no cache error, but the breaker hears of it
            u = g.call(g.tier.usage, quiet=True) if usage else FAILED
            if u is not FAILED:
                info["entries"] = u.entries
                info["size_mb"] = None if u.size_bytes is None else u.size_bytes / MB
            extra[g.name] = info
        return self.metrics.snapshot(extra)

    def get_stats(self) -> dict[str, Any]:
        """The seed's statistics: total_requests, overall_hit_rate, hit_rates, tiers."""
        return self.snapshot().as_dict()

    def to_frame(self) -> Any:
        """Per-tier statistics as a pandas DataFrame, one row per tier."""
        return self.snapshot().to_frame()

    def tier(self, name: str) -> Tier:
        """The tier object by name (memory, disk, redis, s3)."""
        return self._by_name[name]

    def breaker_state(self, name: str) -> str:
        """closed, open, half-open, read-only (writes refused) or disabled."""
        g = self._guard.get(name)
        return "closed" if g is None else g.state

    def outages(self, name: str) -> int:
        """How many outages of the tier its breaker has seen: an outage is said once by
        whoever keys on (tier, this number)."""
        g = self._guard.get(name)
        return 0 if g is None or g.breaker is None else g.breaker.outages

    def reset_tier(self, name: str) -> None:
        """Use a tier again at once, after its breaker opened or it was disabled."""
        g = self._guard.get(name)
        if g is not None and g.breaker is not None:
            g.breaker.reset()

    def close(self) -> None:
        """Close every tier, after waiting for background clean-up (at most `EXIT_WAIT_S`)."""
        self.flush(EXIT_WAIT_S)
        for tier in self._tiers:
            with contextlib.suppress(Exception):
                tier.close()

    def __enter__(self) -> MultiLevelCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _rebuild(config: CacheConfig, secret: bytes | None) -> MultiLevelCache:
    return MultiLevelCache(config, secret=secret)


CacheManager = MultiLevelCache

# -- the process-wide default cache -----------------------------------------------------------
_default: MultiLevelCache | None = None


def get_cache(config: CacheConfig | None = None) -> MultiLevelCache:
    """The process-wide default cache (built from the environment on first use).

    Passing a config replaces it.

    >>> import tempfile
    >>> before = default_cache()
    >>> cache = get_cache(CacheConfig.embedded(tempfile.mkdtemp()))
    >>> get_cache() is cache
    True
    >>> set_default_cache(before)
    """
    global _default
    if config is not None or _default is None:
        _default = MultiLevelCache(config)
    return _default


def default_cache() -> MultiLevelCache | None:
    """The process-wide cache if one was made, else None; builds nothing.

    >>> default_cache() is None or isinstance(default_cache(), MultiLevelCache)
    True
    """
    return _default


def set_default_cache(cache: MultiLevelCache | None) -> None:
    """Make `cache` the one `get_cache()` returns (None: build one anew on the next call).

    >>> before = default_cache(); set_default_cache(None); default_cache() is None
    True
    >>> set_default_cache(before)
    """
    global _default
    _default = cache
