"""The Tier protocol (a key/value store of bytes with TTLs; a miss is None) and what a tier may
declare beyond it: its `TierCapabilities`.

Tiers translate their client's errors into `TierUnavailable` (the store cannot be reached) and
otherwise stay dumb: they neither encode, sign nor count. The tiered cache does that once, and
learns what else a tier offers only from `capabilities_of(tier)`, never from its name or class.

>>> t = NullTier()
>>> t.set("k", b"v", None); t.get("k") is None
True
>>> capabilities_of(t).shared
False
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

__all__ = [
    "MISSING",
    "PLAIN",
    "SIZE_CLASSES",
    "LockingTier",
    "NamingTier",
    "NullTier",
    "ObjectTier",
    "SizeClass",
    "Tier",
    "TierCapabilities",
    "TierUsage",
    "capabilities_of",
    "glob_match",
]

#: What `ObjectTier.lookup` returns on a miss (None is a value that can be cached).
MISSING: Any = object()

#: Entry sizes as write routing sees them: under `CacheConfig.small_item_mb` (small), under
#: `large_item_mb` (large), or larger (huge).
SizeClass = Literal["small", "large", "huge"]
SIZE_CLASSES: tuple[SizeClass, ...] = ("small", "large", "huge")


@dataclass(frozen=True)
class TierUsage:
    """How much a tier holds: entry count and bytes (None when the store cannot tell cheaply)."""

    entries: int | None
    size_bytes: int | None


@runtime_checkable
class Tier(Protocol):
    """What every cache tier implements. Values are bytes (the memory tier also keeps objects).

    `get` may return fresh writable memory that nobody else holds (a `bytearray`, or a
    `memoryview` of one): the codec then restores arrays in place instead of copying them.
    `created` (Unix time, default now) is when an entry was first written: a copy promoted from
    a slower tier keeps it, so that `expire_older_than` sees the entry's true age.
    """

    name: str
    max_item_bytes: int

    def get(self, key: str) -> bytes | bytearray | memoryview | None: ...
    def set(
        self, key: str, value: bytes, ttl: float | None, created: float | None = None
    ) -> None: ...
    def delete(self, key: str) -> bool: ...
    def get_many(self, keys: Sequence[str]) -> Sequence[bytes | bytearray | memoryview | None]: ...
    def set_many(
        self, items: Mapping[str, bytes], ttl: float | None, created: float | None = None
    ) -> None: ...
    def iter_keys(self, pattern: str = "*") -> Iterator[str]: ...
    def expire_older_than(self, cutoff: float) -> int: ...
    def clear(self) -> int: ...
    def usage(self) -> TierUsage: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class TierCapabilities:
    """What a tier offers beyond the `Tier` protocol; a tier declares it as `capabilities`.

    - `holds_objects`: it keeps decoded objects in this process and is an `ObjectTier`
      (`lookup`, `put`): a hit skips decoding and returns the stored object itself. Only a
      cache's first tier is used this way; anywhere else it is a store of bytes like any other.
    - `shared`: other machines see the same store (what one worker writes, all can read).
    - `lock`: it is a `LockingTier`, whose `lock(key)` is held across processes (single flight).
    - `limited_keys`: some str keys cannot name an entry there; it is a `NamingTier`, whose
      `key_fits(key)` says which (a read of such a key misses, a write skips the tier).
    - `sizes`: the size classes that write routing sends to it (see `SizeClass`).

    >>> TierCapabilities(shared=True, sizes=frozenset({"small"})).lock
    False
    """

    holds_objects: bool = False
    shared: bool = False
    lock: bool = False
    limited_keys: bool = False
    sizes: frozenset[SizeClass] = frozenset()


#: A tier that declares nothing: local, unlocked, any key, and never chosen by size routing
#: (explicit `tiers=` still reach it).
PLAIN = TierCapabilities()


def capabilities_of(tier: object) -> TierCapabilities:
    """What `tier` declares in its `capabilities` attribute, or `PLAIN` when it declares none.

    The one place that looks: third-party tiers need implement only the `Tier` protocol.
    """
    caps = getattr(tier, "capabilities", None)
    return caps if isinstance(caps, TierCapabilities) else PLAIN


class ObjectTier(Tier, Protocol):
    """A tier of decoded objects (`TierCapabilities.holds_objects`)."""

    def lookup(self, key: str) -> Any:
        """The stored object, or `MISSING`."""
        ...

    def put(
        self, key: str, value: Any, size: int, ttl: float | None, created: float | None = None
    ) -> bool:
        """Store an object whose encoded size is `size`; False when it does not fit (and then
        an older value of `key` is dropped)."""
        ...


class LockingTier(Tier, Protocol):
    """A tier with a lock across processes (`TierCapabilities.lock`)."""

    def lock(self, key: str) -> AbstractContextManager[bool]:
        """Held while the block runs; yields whether it was acquired (it may time out)."""
        ...


class NamingTier(Tier, Protocol):
    """A tier that cannot name every key (`TierCapabilities.limited_keys`)."""

    def key_fits(self, key: str) -> bool:
        """Whether `key` can name an entry in this tier."""
        ...


def glob_match(pattern: str) -> Callable[[str], object]:
    """A matcher for a shell-style glob (the syntax of Redis KEYS and find_keys)."""
    return re.compile(fnmatch.translate(pattern)).match


class NullTier:
    """A tier that stores nothing: off is just another object."""

    name = "null"
    max_item_bytes = 0

    def get(self, key: str) -> bytes | None:
        return None

    def set(self, key: str, value: bytes, ttl: float | None, created: float | None = None) -> None:
        return None

    def delete(self, key: str) -> bool:
        return False

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return [None] * len(keys)

    def set_many(
        self, items: Mapping[str, bytes], ttl: float | None, created: float | None = None
    ) -> None:
        return None

    def iter_keys(self, pattern: str = "*") -> Iterator[str]:
        return iter(())

    def expire_older_than(self, cutoff: float) -> int:
        return 0

    def clear(self) -> int:
        return 0

    def usage(self) -> TierUsage:
        return TierUsage(0, 0)

    def close(self) -> None:
        return None
