"""The Tier protocol: a key/value store of bytes with TTLs. A miss is None.

Tiers translate their client's errors into `TierUnavailable` (the store cannot be reached) and
otherwise stay dumb: they neither encode, sign nor count. The tiered cache does that once.

>>> t = NullTier()
>>> t.set("k", b"v", None); t.get("k") is None
True
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["NullTier", "Tier", "TierUsage", "glob_match"]


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
