"""`@cached`: memoise a function in the tiered cache, keyed by its code and its arguments.

The key is the function's code fingerprint (its ast-normalised source and that of the user
helpers it calls, in the notebook or in local modules; see `tore_nb.fingerprint`) and the
content digests of its bound arguments (defaults applied, `ignore`d names left out). Editing
the function or a helper it calls gives new keys; a comment-only edit does not.

Concurrent misses on one key compute once: threads of a process wait on a per-key lock, and
processes that share a tier with locks (Redis) wait on that tier's lock. A value that cannot be
stored (unpicklable, too large) is still returned; an argument that cannot be content-hashed
makes that call run uncached, with one warning. A lazy result (an iterator such as a generator
or `zip`, a coroutine) is returned but never stored: a stored one would be handed out spent. As
with `functools.lru_cache`, a value served from the memory tier is the very object stored:
treat it as read-only, or pass `copy=True`.

>>> import tempfile, tore_nb
>>> cache = tore_nb.MultiLevelCache(tore_nb.CacheConfig.embedded(tempfile.mkdtemp()))
>>> @cached(cache=cache)
... def square(x):
...     return x * x
>>> square(4), square(4), square.cache_info().hits
(16, 16, 1)
"""

from __future__ import annotations

import collections.abc
import copy as _copy
import functools
import inspect
import re
import threading
import time
import types
import warnings
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, ParamSpec, TypeVar, overload

from .fingerprint import dependency_token, fingerprint
from .keys import hash_value

if TYPE_CHECKING:
    from .tiered import MultiLevelCache

__all__ = ["MEMO_FORMAT", "CacheInfo", "CachedFunction", "cached"]

P = ParamSpec("P")
R = TypeVar("R")
MEMO_FORMAT = 1
PREFIX = "tcache:fn:"
_SAFE = re.compile(r"[^A-Za-z0-9_.\-<>]")


class CacheInfo(NamedTuple):
    """Counters of one cached function (this process) and its entries in the cache."""

    hits: int
    misses: int
    entries: int
    saved_seconds: float


# results that are spent by using them: never stored, always computed
_LAZY = (collections.abc.Iterator, collections.abc.Coroutine, collections.abc.AsyncIterator)


class _Lazy(Exception):  # carries a lazy result out of get_or_compute, unstored
    def __init__(self, value: Any) -> None:
        self.value = value


class CachedFunction(Generic[P, R]):
    """A function whose results live in the tiered cache; made by `cached`."""

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        ttl: float | None = None,
        tiers: Iterable[str] | None = None,
        ignore: Iterable[str] = (),
        cache: MultiLevelCache | None = None,
        copy: bool = False,
    ) -> None:
        functools.update_wrapper(self, fn)
        self.__wrapped__: Callable[P, R] = fn
        self._sig = inspect.signature(fn)
        self._ignore = frozenset(ignore)
        unknown = self._ignore - set(self._sig.parameters)
        if unknown:
            raise ValueError(
                f"cached(ignore=...) names no parameter of {fn.__qualname__}: "
                f"{', '.join(sorted(unknown))}"
            )
        self.ttl = ttl
        self.tiers = None if tiers is None else tuple(tiers)
        self.copy = copy
        self._cache = cache
        self._qualname: str = getattr(fn, "__qualname__", repr(fn))
        label = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', '?')}"
        self._prefix = f"{PREFIX}{_SAFE.sub('_', label)}:"
        self._lock = threading.Lock()
        self._hits = self._misses = 0
        self._saved = 0.0
        self._warned = False

    def __repr__(self) -> str:
        return f"<cached {self.__wrapped__!r}>"

    def __reduce__(self) -> str:
        return self._qualname  # pickled by reference, like the function it wraps

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        return self if obj is None else types.MethodType(self, obj)

    @property
    def cache(self) -> MultiLevelCache:
        """The cache in use: the one given to `cached`, else `tore_nb.get_cache()`."""
        if self._cache is not None:
            return self._cache
        from . import get_cache

        return get_cache()

    def __tore_fingerprint__(self) -> str:
        """The code fingerprint of the wrapped function and its helpers."""
        return fingerprint(self.__wrapped__)

    def __cache_key__(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The key a call with these arguments reads and writes.

        Raises TypeError when the arguments do not fit the signature or cannot be hashed.
        """
        return self._key(self._sig.bind(*args, **kwargs))

    def _key(self, bound: inspect.BoundArguments) -> str:
        bound.apply_defaults()
        parts: list[Any] = [MEMO_FORMAT, fingerprint(self.__wrapped__)]
        for name, value in bound.arguments.items():
            if name not in self._ignore:
                parts.append((name, dependency_token(value, strict=True)))
        return self._prefix + hash_value(parts)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        fn = self.__wrapped__
        try:
            bound = self._sig.bind(*args, **kwargs)
        except TypeError:
            return fn(*args, **kwargs)  # let the function raise its own argument error
        try:
            key = self._key(bound)
        except TypeError as exc:
            if not self._warned:
                self._warned = True
                from .cells import CacheWarning

                warnings.warn(
                    f"tcache: {self._qualname} called uncached: {exc}", CacheWarning, stacklevel=2
                )
            return fn(*args, **kwargs)
        computed = False

        def compute() -> tuple[int, R, float]:
            nonlocal computed
            computed = True
            t0 = time.perf_counter()
            value = fn(*args, **kwargs)
            if isinstance(value, _LAZY):
                raise _Lazy(value)  # out of get_or_compute before anything is stored
            return MEMO_FORMAT, value, time.perf_counter() - t0

        t0 = time.perf_counter()
        cache = self.cache
        try:
            stored = cache.get_or_compute(key, compute, self.ttl, self.tiers)
        except _Lazy as lazy:
            with self._lock:
                self._misses += 1
            return lazy.value  # type: ignore[no-any-return]
        if not (isinstance(stored, tuple) and len(stored) == 3 and stored[0] == MEMO_FORMAT):
            stored = compute()  # not an entry of ours: recompute (and do not trust it)
        if computed:
            with self._lock:
                self._misses += 1
        else:
            saved = max(0.0, stored[2] - (time.perf_counter() - t0))
            cache.metrics.record_saved(saved)
            with self._lock:
                self._hits += 1
                self._saved += saved
        # the memory tier holds this very object: with copy, the caller gets its own too
        return _copy.deepcopy(stored[1]) if self.copy else stored[1]

    def cache_info(self) -> CacheInfo:
        """Hits and misses in this process, entries in the cache, and compute time saved."""
        with self._lock:
            hits, misses, saved = self._hits, self._misses, self._saved
        return CacheInfo(hits, misses, len(self.cache.find_keys(self._prefix + "*")), saved)

    def cache_clear(self) -> int:
        """Remove every entry of this function from every tier; returns how many."""
        with self._lock:
            self._hits = self._misses = 0
            self._saved = 0.0
        return self.cache.invalidate(self._prefix + "*")


@overload
def cached(fn: Callable[P, R], /) -> CachedFunction[P, R]: ...


@overload
def cached(
    *,
    ttl: float | None = None,
    tiers: Iterable[str] | None = None,
    ignore: Iterable[str] = (),
    cache: MultiLevelCache | None = None,
    copy: bool = False,
) -> Callable[[Callable[P, R]], CachedFunction[P, R]]: ...


def cached(
    fn: Callable[P, R] | None = None,
    /,
    *,
    ttl: float | None = None,
    tiers: Iterable[str] | None = None,
    ignore: Iterable[str] = (),
    cache: MultiLevelCache | None = None,
    copy: bool = False,
) -> CachedFunction[P, R] | Callable[[Callable[P, R]], CachedFunction[P, R]]:
    """Cache a function's results: `@cached` or `@cached(ttl=..., tiers=..., ignore=[...])`.

    `ttl` in seconds, `tiers` a subset of the cache's tiers, `ignore` parameter names that do
    not change the result (a logger, a progress callback), `cache` a MultiLevelCache (default:
    `tore_nb.get_cache()`), `copy` deep-copies each hit.

    >>> import tempfile, tore_nb
    >>> cache = tore_nb.MultiLevelCache(tore_nb.CacheConfig.embedded(tempfile.mkdtemp()))
    >>> @cached(cache=cache, ignore=["verbose"])
    ... def add(a, b=1, verbose=False):
    ...     return a + b
    >>> add(1) == add(1, verbose=True) == 2, add.__cache_key__(1) == add.__cache_key__(1, b=1)
    (True, True)
    """

    def wrap(f: Callable[P, R]) -> CachedFunction[P, R]:
        return CachedFunction(f, ttl=ttl, tiers=tiers, ignore=ignore, cache=cache, copy=copy)

    return wrap if fn is None else wrap(fn)
