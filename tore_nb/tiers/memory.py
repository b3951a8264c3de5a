"""L1: an in-process LRU with TTL (cachetools), bounded by the encoded size of what it holds.

It keeps decoded values, as functools.lru_cache does, so a hit costs microseconds. Treat
values you get from the cache as read-only: a mutated object is mutated in L1 too.

>>> m = MemoryTier(max_bytes=1000, ttl=60)
>>> m.put("k", {"a": 1}, 10, None)
True
>>> m.lookup("k")
{'a': 1}
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from cachetools import TLRUCache

from .. import clock
from .base import MISSING, TierCapabilities, TierUsage, glob_match

__all__ = ["MISSING", "MemoryTier"]


class _Item:
    __slots__ = ("created", "expires", "size", "value")

    def __init__(self, value: Any, size: int, expires: float, created: float) -> None:
        self.value, self.size, self.expires, self.created = value, size, expires, created


def _ttu(_key: str, item: _Item, now: float) -> float:
    return item.expires


def _sizeof(item: _Item) -> int:
    return item.size


class MemoryTier:
    """Thread-safe LRU of decoded values with a per-entry TTL and a byte budget."""

    name = "memory"
    # in-process objects: only entries under the small-item threshold are routed here
    capabilities = TierCapabilities(holds_objects=True, sizes=frozenset({"small"}))

    def __init__(self, max_bytes: int, ttl: float, max_item_bytes: int | None = None) -> None:
        self.max_bytes = max_bytes
        self.default_ttl = ttl
        self.max_item_bytes = max_item_bytes if max_item_bytes is not None else max_bytes
        self._cache: TLRUCache[str, _Item] = TLRUCache(
            maxsize=max_bytes, ttu=_ttu, timer=clock.monotonic, getsizeof=_sizeof
        )
        self._lock = threading.Lock()

    # -- object interface (what the tiered cache uses) -------------------------------------------
    def lookup(self, key: str) -> Any:
        """The stored value, or MISSING."""
        # one indexed lookup (Cache.get would do `in` and then `[]`, twice the expiry work)
        with self._lock:
            try:
                return self._cache[key].value
            except KeyError:
                return MISSING

    def put(
        self, key: str, value: Any, size: int, ttl: float | None, created: float | None = None
    ) -> bool:
        """Store a decoded value whose encoded size is `size`; False when it does not fit (and
        then any older value of `key` is dropped: it must not be served in place of this one).
        """
        if size > self.max_item_bytes or size > self.max_bytes:
            with self._lock:
                self._cache.pop(key, None)
            return False
        if ttl is not None and ttl != ttl:  # NaN: min() would keep it, and nothing would expire
            raise ValueError("ttl is NaN")
        span = self.default_ttl if ttl is None else min(ttl, self.default_ttl)
        item = _Item(
            value, size, clock.monotonic() + span, clock.now() if created is None else created
        )
        with self._lock:
            self._cache[key] = item
        return True

    # -- the bytes Tier protocol, so the contract suite covers this tier too -------------------
    def get(self, key: str) -> bytes | None:
        value = self.lookup(key)
        return None if value is MISSING else value  # type: ignore[no-any-return]

    def set(self, key: str, value: bytes, ttl: float | None, created: float | None = None) -> None:
        self.put(key, value, len(value), ttl, created)

    def delete(self, key: str) -> bool:
        with self._lock:
            return self._cache.pop(key, None) is not None

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return [self.get(k) for k in keys]

    def set_many(
        self, items: Mapping[str, bytes], ttl: float | None, created: float | None = None
    ) -> None:
        for k, v in items.items():
            self.set(k, v, ttl, created)

    def iter_keys(self, pattern: str = "*") -> Iterator[str]:
        match = glob_match(pattern)
        with self._lock:
            self._cache.expire()
            keys = list(self._cache.keys())
        return iter([k for k in keys if match(k)])

    def expire_older_than(self, cutoff: float) -> int:
        with self._lock:
            old = [k for k, item in self._cache.items() if item.created < cutoff]
            for k in old:
                del self._cache[k]
        return len(old)

    def clear(self) -> int:
        with self._lock:
            self._cache.expire()
            n = len(self._cache)
            self._cache.clear()
        return n

    def usage(self) -> TierUsage:
        with self._lock:
            self._cache.expire()
            return TierUsage(len(self._cache), int(self._cache.currsize))

    def close(self) -> None:
        return None
