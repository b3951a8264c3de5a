"""MultiLevelCache: read fast to slow with promotion, write routed by size, never raise.

Tiers are composed in order (memory, disk, redis, s3). A read that hits a slower tier promotes
the value into the faster enabled tiers. A write encodes once and goes to the tiers its size
routes it to (under 1 MB: memory, disk, redis; under 100 MB: disk, redis, s3; larger: s3), and
removes the key from the others so that no stale copy can surface later. Every tier has a
circuit breaker; a failing tier is skipped with one warning per outage and probed again later.
Cache failures are counted, logged misses: nothing here raises into user code. Caller errors do:
a key that is not a str (or does not encode as UTF-8) and a TTL that is not a number of seconds
raise TypeError or ValueError before any tier is touched.

>>> import tempfile
>>> cache = MultiLevelCache(CacheConfig.embedded(tempfile.mkdtemp()))
>>> key = cache.generate_key("report.pdf", dpi=150)
>>> cache.set(key, {"pages": 10})
True
>>> cache.get(key)
{'pages': 10}
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import numbers
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from time import perf_counter_ns
from typing import Any, NamedTuple, TypeVar

from . import clock
from .breaker import Breaker
from .codec import Blob, Codec, load_secret
from .config import CacheConfig
from .errors import IntegrityError, SerializationError, UnpicklableError
from .keys import make_key
from .stats import CacheMetrics, MetricsSnapshot, TierStats
from .tiers import Tier, build_tiers
from .tiers.base import glob_match
from .tiers.memory import MISSING, MemoryTier

__all__ = ["CacheManager", "Hit", "MultiLevelCache"]

log = logging.getLogger("tore_nb.cache")
T = TypeVar("T")
MB = 1_000_000

# what a read needs of one remote tier: the tier, its name, breaker, stats, stale keys, and the
# faster tiers that a hit there is promoted into
_Lane = tuple[Tier, str, Breaker, TierStats, set[str], list[Tier]]
# In a tier's stale set: it missed a clear or invalidation (see _covered). A lone surrogate
# cannot be a key (keys must encode as UTF-8), so this never collides with one.
_MISSED = "\udfff missed clear"
# A clear or invalidation a tier missed: its glob (None: everything) and a matcher for it
_Missed = tuple[str | None, Callable[[str], object]]
# Per-key write stamps kept for the promotion check; older writes fold into one floor stamp
_RECENT_WRITES = 4096
# TTLs from here up mean no expiry: inf, and spans that stores cannot represent (Redis PX)
_FOREVER = 100 * 365.25 * 86400


def _plain_key(key: object) -> str:
    """`key` as a plain str, or TypeError; str subclasses (StrEnum) become their str value."""
    if not isinstance(key, str):
        raise TypeError(f"cache keys are str, not {type(key).__name__}: {key!r:.80}")
    return str.__str__(key)


def _utf8(key: str) -> None:
    if not key.isascii():
        try:
            key.encode()
        except UnicodeEncodeError as exc:
            raise ValueError(
                f"cache key {key!r:.80} does not encode as UTF-8 ({exc.reason})"
            ) from None


def _check_key(key: object) -> str:
    """A valid key: a str that encodes as UTF-8 (so every tier can store it), else raise."""
    k = key if type(key) is str else _plain_key(key)
    _utf8(k)
    return k


def _check_keys(keys: Iterable[object]) -> list[str]:
    """Valid keys, checked in one pass over their concatenation for the usual case."""
    if isinstance(keys, str):
        raise TypeError("expected an iterable of keys, not one str")
    out = list(keys)
    if out and {*map(type, out)} != {str}:
        out = [_plain_key(k) for k in out]
    try:
        "".join(out).encode()  # type: ignore[arg-type]
    except UnicodeEncodeError:
        for k in out:
            _utf8(k)  # type: ignore[arg-type]
    return out  # type: ignore[return-value]


def _check_ttl(ttl: object) -> float | None:
    """A TTL in seconds, or None for no expiry (which inf also means); else raise.

    A TTL of zero or less stores an entry that is already expired.
    """
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, numbers.Real):
        raise TypeError(f"ttl is a number of seconds or None, not {type(ttl).__name__}")
    seconds = float(ttl)
    if seconds != seconds:
        raise ValueError("ttl is NaN; pass None or float('inf') for no expiry")
    if seconds >= _FOREVER:
        return None
    return max(seconds, -1.0)  # -inf too: already expired, in a range every tier accepts


def _match_all(key: str) -> bool:
    return True


def _key_fits(tier: Tier, key: str) -> bool:
    fits = getattr(tier, "key_fits", None)
    return fits is None or bool(fits(key))


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
        first = self._tiers[0] if self._tiers else None
        self._mem: MemoryTier | None = first if isinstance(first, MemoryTier) else None
        self._remote: list[Tier] = [t for t in self._tiers if t is not self._mem]
        self._secret = secret
        self.codec = Codec(
            secret if secret is not None else load_secret(),
            namespace=cfg.namespace,
            compression=cfg.compression,
            compression_min_bytes=cfg.compression_min_bytes,
        )
        self.metrics = CacheMetrics(list(self.tier_names))
        self._mst: TierStats | None = self.metrics.tier("memory") if self._mem else None
        self._breakers = {
            t.name: Breaker(t.name, cfg.breaker_failures, cfg.breaker_reset_seconds)
            for t in self._remote
        }
        self._warned: set[tuple[str, str]] = set()
        # keys whose write or delete a tier missed (down, breaker open): its copy may be stale,
        # so reads skip it there until a later write or delete reaches that tier
        self._stale: dict[str, set[str]] = {t.name: set() for t in self._remote}
        # clears and invalidations a tier missed while down: reads skip what they cover there
        # (marked by _MISSED in its stale set) until the janitor has applied them
        self._missed: dict[str, list[_Missed]] = {t.name: [] for t in self._remote}
        self._recovering: set[str] = set()
        # Write stamps, so that a read racing a write never promotes what it read before the
        # write: writes mark their keys busy, and on finishing stamp them with a new tick. A read
        # notes the tick before it looks, and promotes only keys neither busy nor stamped since
        # (_fresh). Stamps of keys written long ago fold into _floor: a miss is always safe.
        self._gen_lock = threading.Lock()
        self._tick = 0
        self._floor = 0
        self._written: OrderedDict[str, int] = OrderedDict()  # key -> stamp, oldest first
        self._busy: dict[str, int] = {}  # key -> writes under way
        self._busy_all = 0  # clears and expiries under way: every key is busy
        # reads planned once per selection of tiers (see _plan)
        self._plans: dict[tuple[str, ...] | None, tuple[bool, tuple[_Lane, ...]]] = {}
        self._flights: dict[str, threading.Lock] = {}
        self._janitor: ThreadPoolExecutor | None = None
        self._janitor_pid = 0
        self._flights_lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"MultiLevelCache(tiers={list(self.tier_names)}, namespace={self.config.namespace!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # a cache travels to other processes (Ray, multiprocessing) as its config; each process
        # opens its own clients. The secret travels only when it was given explicitly.
        return (_rebuild, (self.config, self._secret))

    # -- keys -------------------------------------------------------------------------------------
    def generate_key(self, *args: Any, **kwargs: Any) -> str:
        """A deterministic key in this cache's namespace; see `tore_nb.keys.generate_key`."""
        return make_key(args, kwargs, namespace=self.config.namespace)

    # -- reads ------------------------------------------------------------------------------------
    def get(self, key: str, default: Any = None, tiers: Iterable[str] | None = None) -> Any:
        """The cached value, or `default` on a miss. Never raises for cache failures."""
        if type(key) is not str:  # UTF-8 is checked past memory, which never encodes keys
            key = _plain_key(key)
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
        found = self._fetch_remote(key, lanes)
        if found is None:
            m.misses += 1
            return default
        m.hits += 1
        return found[0]

    def fetch(self, key: str, tiers: Iterable[str] | None = None) -> Hit | None:
        """Like `get`, but says which tier served the value; None on a miss."""
        hit = self._find(_check_key(key), tiers)
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
                return Hit(value, "memory", dt / 1e9)
            if not quiet:
                st.miss(dt)
        t0 = perf_counter_ns()
        found = self._fetch_remote(key, lanes, quiet)
        if found is None:
            return None
        return Hit(found[0], found[1], (perf_counter_ns() - t0) / 1e9, found[2])

    def _plan(self, tiers: Iterable[str] | None) -> tuple[bool, tuple[_Lane, ...]]:
        """How a read over `tiers` (None: all) goes: whether it looks in memory, then its lanes.

        Planned once per selection, so that the hot path of a hit does no set-up of its own.
        """
        sel = tiers if tiers is None or type(tiers) is tuple else tuple(tiers)
        plan = self._plans.get(sel)
        if plan is None:
            wanted = None if sel is None else set(sel)
            faster: list[Tier] = []
            if self._mem is not None and (wanted is None or "memory" in wanted):
                faster.append(self._mem)
            lanes = []
            for t in self._remote:
                if wanted is None or t.name in wanted:
                    lane = (t, t.name, self._breakers[t.name], self.metrics.tier(t.name))
                    lanes.append((*lane, self._stale[t.name], list(faster)))
                    faster.append(t)
            plan = (bool(faster) and faster[0] is self._mem, tuple(lanes))
            if len(self._plans) < 256:  # selections are few; a caller making up new ones is not
                self._plans[sel] = plan
        return plan

    def _fetch_remote(
        self, key: str, lanes: tuple[_Lane, ...], quiet: bool = False
    ) -> tuple[Any, str, float] | None:
        """(value, tier, created) from the first lane's tier that has the key, else None."""
        if not key.isascii():
            _utf8(key)  # a bad key is the caller's error, never a tier outage
        tick = self._tick  # before looking: see _fresh
        decode = self.codec.decode_fast
        for tier, name, breaker, st, stale, faster in lanes:
            if stale and (key in stale or (_MISSED in stale and self._covered(tier, [key]))):
                continue
            if not breaker.allow():
                continue
            t1 = perf_counter_ns()
            try:
                data = tier.get(key)
            except Exception as exc:
                st.errors += 1
                breaker.failure(exc)
                continue
            breaker.success()
            if data is None:
                if not quiet:
                    st.miss(perf_counter_ns() - t1)
                continue
            try:
                value, created, expires = decode(key, data)
            except SerializationError as exc:
                self._reject(tier, key, exc)
                st.miss(perf_counter_ns() - t1)
                continue
            if expires and expires <= clock.now():
                if not quiet:
                    st.miss(perf_counter_ns() - t1)
                continue
            st.hit(perf_counter_ns() - t1, len(data))
            if faster:
                self._promote_many([(key, value, data, expires, created)], faster, tick)
            return value, name, created
        return None

    def _reject(self, tier: Tier, key: str, exc: SerializationError) -> None:
        st = self.metrics.tier(tier.name)
        st.corrupt += 1
        kind = "integrity" if isinstance(exc, IntegrityError) else "corrupt"
        if (tier.name, kind) not in self._warned:
            self._warned.add((tier.name, kind))
            log.warning(
                "cache tier %s: rejected entry %s (%s); it was removed and counted as a "
                "miss (further ones are counted silently)",
                tier.name,
                key[:80],
                exc,
            )
        with contextlib.suppress(Exception):  # best effort; the tier may be down
            tier.delete(key)

    def contains(self, key: str) -> bool:
        """Whether a valid (verified, unexpired) entry exists in any tier; nothing is unpickled."""
        key = _check_key(key)
        if self._mem is not None and self._mem.lookup(key) is not MISSING:
            return True
        for tier, _, breaker, st, stale, _ in self._plan(None)[1]:
            if stale and (key in stale or (_MISSED in stale and self._covered(tier, [key]))):
                continue
            if not breaker.allow():
                continue
            try:
                data = tier.get(key)
            except Exception as exc:
                st.errors += 1
                breaker.failure(exc)
                continue
            breaker.success()
            if data is None:
                continue
            try:
                info = self.codec.verify(key, data)
            except SerializationError as exc:
                self._reject(tier, key, exc)
                continue
            remaining = info.remaining(clock.now())
            if remaining is None or remaining > 0:
                return True
        return False

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
        todo = list(dict.fromkeys(_check_keys(keys)))
        t0 = perf_counter_ns()
        memory, lanes = self._plan(tiers)
        tick = self._tick  # before looking: see _fresh
        found: dict[str, Any] = {}
        self.metrics.requests += len(todo)
        mem = self._mem
        if mem is not None and todo and memory:
            rest = []
            for k in todo:
                value = mem.lookup(k)
                if value is MISSING:
                    rest.append(k)
                else:
                    found[k] = value
                    if served is not None:
                        served[k] = ("memory", None)
            self.metrics.tier("memory").batch(
                len(todo) - len(rest), len(rest), perf_counter_ns() - t0
            )
            todo = rest
        for tier, name, breaker, st, stale, faster in lanes:
            if not todo:
                break
            skipped: list[str] = []
            if stale:
                skip = stale.intersection(todo)
                if _MISSED in stale:
                    skip.update(self._covered(tier, todo))
                if skip:
                    skipped = [k for k in todo if k in skip]
                    todo = [k for k in todo if k not in skip]
            if not todo or not breaker.allow():
                todo += skipped
                continue
            t1 = perf_counter_ns()
            try:
                blobs = tier.get_many(todo)
            except Exception as exc:
                st.errors += 1
                breaker.failure(exc)
                todo += skipped
                continue
            breaker.success()
            live, bad, nbytes = self.codec.decode_many(todo, blobs, clock.now())
            for k, error in bad:
                self._reject(tier, k, error)
            if served is None:
                for k, got in live.items():
                    found[k] = got[0]
            else:
                for k, got in live.items():
                    found[k] = got[0]
                    served[k] = (name, got[1])
            rest = [k for k in todo if k not in live] if len(live) < len(todo) else []
            st.batch(len(live), len(rest), perf_counter_ns() - t1, nbytes)
            if live and faster:
                entry = {k: d for k, d in zip(todo, blobs, strict=True) if d is not None}
                promote = [(k, v, entry[k], e, c) for k, (v, c, e) in live.items()]
                self._promote_many(promote, faster, tick)
            todo = rest + skipped
        self.metrics.hits += len(found)
        self.metrics.misses += len(todo)
        return found

    def _promote_many(
        self,
        items: list[tuple[str, Any, Blob, float, float]],
        targets: list[Tier],
        tick: int,
    ) -> None:
        """Back-fill faster tiers; items are (key, value, entry bytes, expires or 0, created),
        read after `tick`. Keys written since (or being written) are left alone: their value may
        be old. Copies keep the entry's creation time, so `expire_older_than` still finds them.
        """
        if not items or not targets:
            return
        now = clock.now()
        for tier in targets:
            st = self.metrics.tier(tier.name)
            fits = [it for it in items if len(it[2]) <= tier.max_item_bytes]
            if tier is self._mem:
                mem = self._mem
                # checked and put under the lock that writes take to finish (_finish_write)
                with self._gen_lock:
                    for k, v, data, expires, created in fits:
                        if self._fresh(k, tick):
                            st.promotions += mem.put(
                                k, v, len(data), expires - now if expires else None, created
                            )
                continue
            with self._gen_lock:
                fits = [it for it in fits if self._fresh(it[0], tick)]
            # group by remaining TTL and creation second so that each group is one batched
            # write (rounding creation down: an age-based sweep may take a copy early, never late)
            groups: dict[tuple[float | None, float], dict[str, bytes]] = {}
            for k, _, data, expires, created in fits:
                group = (round(expires - now) if expires else None, float(int(created)))
                groups.setdefault(group, {})[k] = bytes(data)
            for (ttl_group, created_group), batch in groups.items():
                if self._write(tier, batch, ttl_group, created_group):
                    st.promotions += len(batch)
                    # a write that began meanwhile may have landed first and been overwritten
                    # by this older value: drop the copy (a miss is safe, a stale hit is not)
                    with self._gen_lock:
                        raced = [k for k in batch if not self._fresh(k, tick)]
                    if raced:
                        self._delete_in(tier, raced)

    # -- write stamps (see __init__) -----------------------------------------------------------
    def _fresh(self, key: str, tick: int) -> bool:
        """Whether no write of `key` is under way or finished since `tick` (hold _gen_lock)."""
        return (
            not self._busy_all
            and key not in self._busy
            and self._written.get(key, self._floor) <= tick
        )

    def _begin_write(self, keys: Sequence[str] | None) -> None:
        """Mark keys (None: all) busy before a write touches any tier."""
        with self._gen_lock:
            if keys is None:
                self._busy_all += 1
                return
            busy = self._busy
            for k in keys:
                busy[k] = busy.get(k, 0) + 1

    def _finish_write(self, keys: Sequence[str] | None) -> None:
        """Stamp keys (None: all) written once the write has left every tier."""
        with self._gen_lock:
            self._tick += 1
            tick = self._tick
            if keys is None:
                self._busy_all -= 1
                self._floor = tick
                self._written.clear()
                return
            busy, written = self._busy, self._written
            for k in keys:
                n = busy.pop(k, 1) - 1
                if n:
                    busy[k] = n
                written[k] = tick
                written.move_to_end(k)  # so that the oldest stamp is always first
            while len(written) > _RECENT_WRITES:
                self._floor = written.popitem(last=False)[1]

    # -- writes -----------------------------------------------------------------------------------
    def route(self, size: int) -> tuple[str, ...]:
        """The tiers an entry of `size` encoded bytes goes to, among those enabled."""
        cfg = self.config
        if size < cfg.small_item_mb * MB:
            wanted: tuple[str, ...] = ("memory", "disk", "redis")
        elif size < cfg.large_item_mb * MB:
            wanted = ("disk", "redis", "s3")
        else:
            wanted = ("s3",)
        return tuple(n for n in wanted if n in self._by_name)

    def set(
        self, key: str, value: Any, ttl: float | None = None, tiers: Iterable[str] | None = None
    ) -> bool:
        """Store a value; True when at least one tier holds it. Never raises for cache failures."""
        return self.set_many({key: value}, ttl, tiers) == 1

    def set_many(
        self, items: Mapping[str, Any], ttl: float | None = None, tiers: Iterable[str] | None = None
    ) -> int:
        """Store several values with batched writes per tier; returns how many were stored.

        `ttl` in seconds (default: the config's `cache_ttl`); None or inf: no expiry.
        """
        keys = _check_keys(items)
        ttl = _check_ttl(self.config.cache_ttl if ttl is None else ttl)
        explicit = None if tiers is None else tuple(tiers)
        # explicit `tiers` place entries deliberately: tiers slower than every target are left
        # alone, but a copy in a faster one would shadow the new value, so it goes
        last = max(
            (i for i, t in enumerate(self._remote) if t.name in (explicit or ())), default=-1
        )
        plan: dict[str, dict[str, bytes]] = {t.name: {} for t in self._tiers}
        sizes: dict[str, int] = {}
        encoded: list[tuple[str, Any, int]] = []
        dropped: list[str] = []
        for key, value in zip(keys, items.values(), strict=True):  # keys: items' own order
            try:
                data = self.codec.encode(key, value, ttl)
            except UnpicklableError as exc:
                log.warning("not cached: %s", exc)
                dropped.append(key)  # the old value must not be served for this set
                continue
            sizes[key] = len(data)
            encoded.append((key, value, len(data)))
            targets = explicit if explicit is not None else self.route(len(data))
            for tier in self._tiers:
                if tier.name not in targets:
                    continue
                if len(data) <= tier.max_item_bytes and (len(key) < 256 or _key_fits(tier, key)):
                    plan[tier.name][key] = data
                else:  # too large, or a key the store cannot name (S3: 1024 bytes)
                    self.metrics.tier(tier.name).rejected += 1
        stored: set[str] = set()
        self._begin_write(keys)
        try:
            mem = self._mem
            if mem is not None:
                in_memory = plan["memory"]
                expired = ttl is not None and ttl <= 0  # the memory tier would keep the old one
                for key, value, size in encoded:
                    if key in in_memory and not expired and mem.put(key, value, size, ttl):
                        stored.add(key)
                        self.metrics.tier("memory").sets += 1
                    else:  # not routed there, or too big: an old copy must not stay behind
                        mem.delete(key)
                for key in dropped:
                    mem.delete(key)
            for i, tier in enumerate(self._remote):
                batch = plan[tier.name]
                if batch and self._write(tier, batch, ttl):
                    stored.update(batch)
                # a stale copy in a tier that routing skipped could surface once faster tiers
                # evict: delete it (in the background; reads skip it meanwhile)
                if explicit is None or i <= last:
                    stale = [k for k in sizes if k not in batch]
                    if stale:
                        self._discard_later(tier, stale)
                if dropped:
                    self._delete_in(tier, dropped)
        finally:
            self._finish_write(keys)
        return len(stored)

    def _write(
        self, tier: Tier, batch: dict[str, bytes], ttl: float | None, created: float | None = None
    ) -> bool:
        breaker = self._breakers[tier.name]
        stale = self._stale[tier.name]
        if not breaker.allow(write=True):
            stale.update(batch)
            return False
        st = self.metrics.tier(tier.name)
        try:
            if len(batch) == 1:
                [(k, v)] = batch.items()
                tier.set(k, v, ttl, created)
            else:
                tier.set_many(batch, ttl, created)
        except Exception as exc:
            st.errors += 1
            breaker.failure(exc)
            stale.update(batch)
            return False
        breaker.success(write=True)
        if stale:
            stale.difference_update(batch)
            if _MISSED in stale:
                self._recover_later(tier)
        st.sets += len(batch)
        st.bytes_written += sum(len(v) for v in batch.values())
        return True

    def _discard_later(self, tier: Tier, keys: list[str]) -> None:
        """Delete possibly stale copies in the background, off the caller's path; until that
        lands, reads skip these keys in this tier (a miss is always safe, a stale hit is not).
        """
        stale = self._stale[tier.name]
        stale.update(keys)

        def job() -> None:
            # keys rewritten meanwhile left the stale set: their new copy must stay
            self._delete_in(tier, [k for k in keys if k in stale])

        with self._flights_lock:
            janitor = self._janitor_here()
        janitor.submit(job)

    def _janitor_here(self) -> ThreadPoolExecutor:
        """The background worker of this process (hold _flights_lock)."""
        if self._janitor is None or self._janitor_pid != os.getpid():
            self._janitor = ThreadPoolExecutor(1, thread_name_prefix="tore-janitor")
            self._janitor_pid = os.getpid()
        return self._janitor

    # -- clears and invalidations a tier missed ---------------------------------------------------
    def _record_missed(self, tier: Tier, pattern: str | None) -> None:
        """`tier` could not be cleared (pattern None) or listed for an invalidation: until that
        is applied there, reads treat what it covers as absent from the tier.
        """
        op: _Missed = (pattern, _match_all if pattern is None else glob_match(pattern))
        with self._flights_lock:
            self._missed[tier.name].append(op)
            self._stale[tier.name].add(_MISSED)

    def _covered(self, tier: Tier, keys: Sequence[str]) -> list[str]:
        """The keys that a clear or invalidation `tier` missed covers; schedules applying it."""
        with self._flights_lock:
            ops = list(self._missed[tier.name])
        self._recover_later(tier)
        return [k for k in keys if any(match(k) for _, match in ops)]

    def _recover_later(self, tier: Tier) -> None:
        name = tier.name
        with self._flights_lock:
            if name in self._recovering or not self._missed[name]:
                return
            if self._breakers[name].state not in ("closed", "half-open"):
                return  # a later read or write asks again once the tier may answer
            self._recovering.add(name)
            janitor = self._janitor_here()
        janitor.submit(self._recover, tier)

    def _recover(self, tier: Tier) -> None:
        """Apply, in order, the clears and invalidations that `tier` missed (janitor)."""
        name, breaker = tier.name, self._breakers[tier.name]
        try:
            with self._flights_lock:
                ops = list(self._missed[name])
            for op in ops:
                if not breaker.allow():
                    return
                try:
                    if op[0] is None:
                        tier.clear()
                    else:
                        for k in list(tier.iter_keys(op[0])):
                            tier.delete(k)
                except Exception as exc:
                    self.metrics.tier(name).errors += 1
                    breaker.failure(exc)
                    return
                breaker.success()
                self._applied(name, [op])
        finally:
            with self._flights_lock:
                self._recovering.discard(name)

    def _applied(self, name: str, ops: list[_Missed]) -> None:
        """These missed ops are now applied in tier `name` (ones recorded since stay)."""
        with self._flights_lock:
            missed = self._missed[name]
            for op in ops:
                with contextlib.suppress(ValueError):
                    missed.remove(op)
            if not missed:
                self._stale[name].discard(_MISSED)

    def flush(self) -> None:
        """Wait for background clean-up (stale copies being deleted) to finish."""
        with self._flights_lock:
            janitor = self._janitor if self._janitor_pid == os.getpid() else None
        if janitor is not None:
            janitor.submit(lambda: None).result()

    def _delete_in(self, tier: Tier, keys: Sequence[str]) -> int:
        breaker = self._breakers.get(tier.name)
        stale = self._stale.get(tier.name)
        if breaker is not None and not breaker.allow():
            if stale is not None:
                stale.update(keys)
            return 0
        n = 0
        done = 0
        try:
            for k in keys:
                n += bool(tier.delete(k))
                done += 1
        except Exception as exc:
            self.metrics.tier(tier.name).errors += 1
            if breaker is not None:
                breaker.failure(exc)
            if stale is not None:
                stale.update(keys[done:])
            return n
        if breaker is not None:
            breaker.success()
        if stale:
            stale.difference_update(keys)
        self.metrics.tier(tier.name).deletes += n
        return n

    def delete(self, key: str) -> bool:
        """Remove a key from every tier; True when some tier held it."""
        keys = [_check_key(key)]
        self._begin_write(keys)
        try:
            return sum(self._delete_in(t, keys) for t in self._tiers) > 0
        finally:
            self._finish_write(keys)

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
        tier wait on the tier's lock where it offers one.
        """
        key = _check_key(key)
        _check_ttl(ttl)  # a bad ttl raises before computing, not after
        tiers = None if tiers is None else tuple(tiers)
        hit = self._find(key, tiers)
        if hit is None:
            # a second look once this key's lock is ours: another caller may have filled it
            with self._flight(key), self._shared_lock(key, tiers):
                hit = self._find(key, tiers, quiet=True)
                if hit is None:
                    self._count(False)
                    value = compute()
                    self.set(key, value, ttl, tiers)
                    return value
        self._count(True)
        return hit.value  # type: ignore[no-any-return]

    def _flight(self, key: str) -> threading.Lock:
        with self._flights_lock:
            lock = self._flights.get(key)
            if lock is None:
                if len(self._flights) > 4096:
                    self._flights = {k: v for k, v in self._flights.items() if v.locked()}
                lock = self._flights[key] = threading.Lock()
            return lock

    def _shared_lock(self, key: str, tiers: tuple[str, ...] | None) -> AbstractContextManager[Any]:
        # the most widely shared tier in use that offers a lock: Redis before the local disk
        for tier in reversed(self._remote):
            make = getattr(tier, "lock", None)
            if make is None or (tiers is not None and tier.name not in tiers):
                continue
            breaker = self._breakers[tier.name]
            # the state, not allow(): allow() may hand out the half-open probe, and a lock
            # cannot report back on it (a lock not taken may be busy, not failed), which would
            # leave the breaker half-open for good. Reads and writes probe instead.
            if breaker.state == "closed":
                return _TierLock(make, key, breaker)
        return nullcontext()

    # -- maintenance ------------------------------------------------------------------------------
    def _guarded(self, tier: Tier, op: Callable[[Tier], T], default: T) -> tuple[bool, T]:
        """(whether it ran, its result or `default`): op on one tier through its breaker."""
        breaker = self._breakers.get(tier.name)
        if breaker is not None and not breaker.allow():
            return False, default
        try:
            got = op(tier)
        except Exception as exc:
            self.metrics.tier(tier.name).errors += 1
            if breaker is not None:
                breaker.failure(exc)
            return False, default
        if breaker is not None:
            breaker.success()
        return True, got

    def _each(
        self, op: Callable[[Tier], T], default: T, failed: list[Tier] | None = None
    ) -> list[T]:
        """op on every tier through its breaker; tiers it could not reach go to `failed`."""
        out = []
        for tier in self._tiers:
            ok, got = self._guarded(tier, op, default)
            out.append(got)
            if not ok and failed is not None:
                failed.append(tier)
        return out

    def clear(self, tiers: Iterable[str] | None = None) -> int:
        """Remove every entry of this namespace from the given (default: all) tiers; a count.

        A tier that cannot be reached is cleared once it answers again; until then nothing is
        read from it.
        """
        wanted = None if tiers is None else set(tiers)
        self._begin_write(None)
        try:
            n = 0
            for tier in self._tiers:
                if wanted is not None and tier.name not in wanted:
                    continue
                remote = tier.name in self._missed
                with self._flights_lock:
                    before = list(self._missed[tier.name]) if remote else []
                ok, got = self._guarded(tier, lambda t: t.clear(), 0)
                n += got
                if not ok and remote:
                    self._record_missed(tier, None)
                elif before:
                    self._applied(tier.name, before)  # this clear covers what was missed
            return n
        finally:
            self._finish_write(None)

    def find_keys(self, pattern: str = "*") -> list[str]:
        """Keys matching a shell-style glob in any tier, sorted.

        >>> import tempfile
        >>> c = MultiLevelCache(CacheConfig.embedded(tempfile.mkdtemp()))
        >>> c.set("page:doc1:3", 1); c.find_keys("page:doc1:*")
        True
        ['page:doc1:3']
        """
        return self._find_keys(_check_key(pattern), None)

    def _find_keys(self, pattern: str, failed: list[Tier] | None) -> list[str]:
        found: set[str] = set()

        def listing(tier: Tier) -> list[str]:
            keys = list(tier.iter_keys(pattern))
            stale = self._stale.get(tier.name)
            if stale:  # copies that reads skip there are not in the cache
                covered = set(self._covered(tier, keys)) if _MISSED in stale else set()
                keys = [k for k in keys if k not in stale and k not in covered]
            return keys

        empty: list[str] = []
        for keys in self._each(listing, empty, failed):
            found.update(keys)
        return sorted(found)

    def invalidate(self, pattern: str) -> int:
        """Delete every key matching the glob from every tier; returns the number of keys.

        A tier that cannot be listed is invalidated once it answers again; until then keys
        matching the glob are not read from it.
        """
        pattern = _check_key(pattern)
        failed: list[Tier] = []
        keys = self._find_keys(pattern, failed)
        for tier in failed:
            if tier.name in self._missed:  # remote tiers; memory cannot fail
                self._record_missed(tier, pattern)
        self._begin_write(keys)
        try:
            for tier in self._tiers:
                self._delete_in(tier, keys)
        finally:
            self._finish_write(keys)
        return len(keys)

    def expire_older_than(self, age: float | _dt.timedelta | _dt.datetime) -> int:
        """Remove entries written before a cutoff: an age in seconds, a timedelta or a datetime."""
        if isinstance(age, _dt.datetime):
            cutoff = age.timestamp()
        elif isinstance(age, _dt.timedelta):
            cutoff = clock.now() - age.total_seconds()
        else:
            cutoff = clock.now() - float(age)
        self._begin_write(None)  # a read racing it must not promote what it removes
        try:
            return sum(self._each(lambda t: t.expire_older_than(cutoff), 0))
        finally:
            self._finish_write(None)

    # -- stats ------------------------------------------------------------------------------------
    def snapshot(self, usage: bool = True) -> MetricsSnapshot:
        """Frozen figures of every tier; `usage` adds entries and size (a call to each tier)."""
        extra: dict[str, dict[str, Any]] = {}
        for tier in self._tiers:
            breaker = self._breakers.get(tier.name)
            info: dict[str, Any] = {"state": breaker.state if breaker else "closed"}
            if usage and (breaker is None or breaker.allow()):
                try:
                    u = tier.usage()
                    info["entries"] = u.entries
                    info["size_mb"] = None if u.size_bytes is None else u.size_bytes / MB
                    if breaker is not None:
                        breaker.success()
                except Exception as exc:
                    if breaker is not None:
                        breaker.failure(exc)
            extra[tier.name] = info
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
        b = self._breakers.get(name)
        return b.state if b else "closed"

    def reset_tier(self, name: str) -> None:
        """Use a tier again at once, after its breaker opened or it was disabled."""
        b = self._breakers.get(name)
        if b is not None:
            b.reset()

    def close(self) -> None:
        self.flush()
        for tier in self._tiers:
            with contextlib.suppress(Exception):
                tier.close()

    def __enter__(self) -> MultiLevelCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _TierLock:
    """A tier's single-flight lock that never raises into user code: a failure to take it is
    the tier's (its breaker hears of it), and the caller goes on without the lock.
    """

    __slots__ = ("_breaker", "_cm", "_key", "_make")

    def __init__(
        self, make: Callable[[str], AbstractContextManager[Any]], key: str, breaker: Breaker
    ) -> None:
        self._make, self._key, self._breaker = make, key, breaker
        self._cm: AbstractContextManager[Any] | None = None

    def __enter__(self) -> bool:
        try:
            cm = self._make(self._key)
            got = cm.__enter__()
        except Exception as exc:
            self._breaker.failure(exc)
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
                    self._breaker.failure(error)


def _rebuild(config: CacheConfig, secret: bytes | None) -> MultiLevelCache:
    return MultiLevelCache(config, secret=secret)


CacheManager = MultiLevelCache
