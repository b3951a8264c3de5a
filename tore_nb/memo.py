"""`@cached`: memoise a function in the tiered cache, keyed by its code and its arguments.

The key is the function's code fingerprint (its ast-normalised source and that of the user
helpers it calls, in the notebook or in local modules; see `tore_nb.fingerprint`) and the
content digests of its bound arguments (defaults applied, `ignore`d names left out). Editing
the function or a helper it calls gives new keys; a comment-only edit does not. The files a call
reads (opens, or checks with `os.path.exists`) are observed and stored with its result: a hit
is served only while they are unchanged. A call a hit could not stand for is returned but not
stored, with one warning per function: one that changes an argument in place (`xs.append(3)`)
or draws from a global random generator it did not seed (`np.random.rand()`).

Concurrent misses on one key compute once: threads of a process wait on a per-key lock, and
processes that share a tier with locks (Redis) wait on that tier's lock. A value that cannot be
stored (unpicklable, too large) is still returned; an argument that cannot be content-hashed
makes that call run uncached, with one warning. A lazy result (an iterator such as a generator
or `zip`, a coroutine) is returned but never stored: a stored one would be handed out spent.

Every call returns a private copy, as a `%%tcache` hit restores private variables: mutating a
result never changes what a later call returns, so a cached run behaves as a plain one. The
memory tier keeps live objects, so the first call stores a copy and returns its own result, and
each hit copies what is stored (immutable atoms such as ints, strings and tuples of them are
returned as they are). `copy=False` hands out the stored object itself, as
`functools.lru_cache` does: faster for large results, but treat them as read-only. A result
that cannot be copied is returned as stored, with one warning per function.

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
import datetime
import functools
import inspect
import pickle
import re
import sys
import threading
import time
import types
import warnings
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, ParamSpec, TypeVar, overload

from .errors import CacheWarning
from .fingerprint import dependency_token, fingerprint
from .keys import hash_value

if TYPE_CHECKING:
    from .tiered import MultiLevelCache

__all__ = ["MEMO_FORMAT", "CacheInfo", "CachedFunction", "cached"]

P = ParamSpec("P")
R = TypeVar("R")
MEMO_FORMAT = 2  # 2: entries carry the files the call read
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
    def __init__(self, value: Any, why: str | None = None) -> None:
        self.value = value
        self.why = why  # said once, when the call is not stored for a reason worth saying


class _Unpicklable(Exception):  # the value cannot be pickled, so no tier can store it either
    pass


# exact types whose values cannot change: never copied (a subclass may add mutable state)
_ATOMS = frozenset(
    {int, float, complex, bool, str, bytes, type(None), range, type(Ellipsis)}
    | {datetime.date, datetime.datetime, datetime.time, datetime.timedelta}
)
# how a value of a given exact type is copied; see _kind
_ATOM, _TUPLE, _ARRAY, _FRAME, _PICKLE = range(5)
_KINDS: dict[type, int] = {}


def _kind(tp: type) -> int:
    """How values of the exact type `tp` are copied, worked out once per type."""
    kind = _KINDS.get(tp)
    if kind is None:
        kind = _classify(tp)
        if len(_KINDS) < 1024:  # types made on the fly (classes in a loop) must not pile up
            _KINDS[tp] = kind
    return kind


def _classify(tp: type) -> int:
    if tp is tuple or tp is frozenset:
        return _TUPLE
    # numpy and pandas are looked up, never imported: a type of theirs exists only once they are
    np = sys.modules.get("numpy")
    if np is not None:
        if tp is np.ndarray:
            return _ARRAY
        if issubclass(tp, np.generic) and not issubclass(tp, np.void):  # void: a mutable view
            return _ATOM
    pd = sys.modules.get("pandas")
    if pd is not None and (tp is pd.DataFrame or tp is pd.Series):
        return _FRAME
    return _PICKLE


def _immutable(value: Any, depth: int = 0) -> bool:
    """Whether `value` is an atom, or a tuple or frozenset of immutable values.

    Bounded work: past 8 levels or 64 non-atom items a value counts as mutable (and is copied).

    >>> _immutable((1, "a", (2.0, None))), _immutable((1, [2]))
    (True, False)
    """
    tp = type(value)
    if tp in _ATOMS:
        return True
    kind = _kind(tp)
    if kind != _TUPLE:
        return kind == _ATOM
    if set(map(type, value)) <= _ATOMS:  # the common flat case, in C: 30 ms for 1e6 ints
        return True
    nested = [v for v in value if type(v) not in _ATOMS]
    return depth < 8 and len(nested) <= 64 and all(_immutable(v, depth + 1) for v in nested)


def _holds_objects(frame: Any) -> bool:
    """Whether a DataFrame or Series has object columns, whose (maybe mutable) elements a deep
    `copy` shares rather than copies."""
    if frame.ndim == 1:
        dtypes = [frame.dtype]
    else:
        # the block manager is internal, but reading its dtypes takes 0.4 us where the public
        # `frame.dtypes` builds a Series (14 us, a third of copying a 10k-row frame)
        blocks = getattr(getattr(frame, "_mgr", None), "blocks", None)
        dtypes = frame.dtypes if blocks is None else [b.dtype for b in blocks]
    # numpy dtypes only: pandas' own (str, category, Int64) hold immutable elements
    return any(getattr(dt, "hasobject", False) for dt in dtypes)


def _private(value: Any) -> Any:
    """A copy of `value` that shares nothing mutable with it; immutable values come back as is.

    Shared references inside the value stay shared in the copy, as in the original. Arrays
    (without objects) and DataFrames copy their buffers directly; anything else makes a pickle
    round trip (protocol 5, buffers out of band), several times faster than `copy.deepcopy`
    for containers of small objects. Raises `_Unpicklable` when the value cannot be pickled.

    >>> inner, word = [1], "text"
    >>> value = {"a": inner, "b": inner}
    >>> out = _private(value)
    >>> out == value, out["a"] is inner, out["a"] is out["b"], _private(word) is word
    (True, False, True, True)
    """
    tp = type(value)
    if tp in _ATOMS:
        return value
    kind = _kind(tp)
    if kind == _ATOM or (kind == _TUPLE and _immutable(value)):
        return value
    if kind == _ARRAY and not value.dtype.hasobject:
        out = value.copy(order="K")
        out.flags.writeable = value.flags.writeable  # a read-only result stays read-only
        return out
    if kind == _FRAME and not _holds_objects(value):
        return value.copy(deep=True)
    buffers: list[pickle.PickleBuffer] = []
    try:
        stream = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    except Exception as exc:
        raise _Unpicklable(f"cannot pickle {tp.__qualname__}: {exc}") from exc
    try:
        # fresh, writable memory for each buffer: restored arrays own it, sharing nothing
        raws = [bytearray(b.raw()) for b in buffers]
    except BufferError:  # a buffer that is not contiguous: everything in band
        stream, raws = pickle.dumps(value, protocol=5), []
    try:
        return pickle.loads(stream, buffers=raws)
    except Exception:
        # some objects pickle but do not unpickle (an exception whose __init__ takes other
        # arguments than its args); a __deepcopy__ of theirs may still manage
        return _copy.deepcopy(value)


class CachedFunction(Generic[P, R]):
    """A function whose results live in the tiered cache; made by `cached`.

    Each call returns its own copy of the result (see `cached`), so mutating one is harmless:

    >>> import tempfile, tore_nb
    >>> cache = tore_nb.MultiLevelCache(tore_nb.CacheConfig.embedded(tempfile.mkdtemp()))
    >>> @cached(cache=cache)
    ... def table(n):
    ...     return {"rows": list(range(n))}
    >>> first = table(3)
    >>> first["rows"].append(99)
    >>> table(3), table(3) is table(3)
    ({'rows': [0, 1, 2]}, False)
    """

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        ttl: float | None = None,
        tiers: Iterable[str] | None = None,
        ignore: Iterable[str] = (),
        cache: MultiLevelCache | None = None,
        copy: bool = True,
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
        self._warned_copy = False
        self._warned_impure = False

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
        from .tiered import get_cache

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
        return self._key_and_digests(bound)[0]

    def _key_and_digests(self, bound: inspect.BoundArguments) -> tuple[str, dict[str, str]]:
        """The key, and the digest of each argument it holds (to tell one the call changed)."""
        bound.apply_defaults()
        parts: list[Any] = [MEMO_FORMAT, fingerprint(self.__wrapped__)]
        digests = {}
        for name, value in bound.arguments.items():
            if name not in self._ignore:
                digests[name] = dependency_token(value, strict=True)
                parts.append((name, digests[name]))
        return self._prefix + hash_value(parts), digests

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        fn = self.__wrapped__
        try:
            bound = self._sig.bind(*args, **kwargs)
        except TypeError:
            return fn(*args, **kwargs)  # let the function raise its own argument error
        try:
            key, digests = self._key_and_digests(bound)
        except TypeError as exc:
            if not self._warned:
                self._warned = True
                warnings.warn(
                    f"tcache: {self._qualname} called uncached: {exc}", CacheWarning, stacklevel=2
                )
            return fn(*args, **kwargs)
        cache = self.cache
        computed = False
        result: Any = None  # what this call computed, returned as is: the store gets a copy
        failure: Exception | None = None

        def compute() -> tuple[int, Any, float, tuple[tuple[str, str, str], ...]]:
            nonlocal computed, result, failure
            computed = True
            t0 = time.perf_counter()
            randoms = _random_states()
            with _observe(cache, randoms) as seen:  # the files it reads are inputs too
                value = fn(*args, **kwargs)
            if isinstance(value, _LAZY):
                raise _Lazy(value)  # out of get_or_compute before anything is stored
            why = _impure(bound, digests, randoms, seen.result)
            if why is not None:  # a hit would not do what the call did: never stored
                raise _Lazy(value, f"{self._qualname} {why}: its calls are not cached")
            elapsed = time.perf_counter() - t0
            result = kept = value
            if self.copy and self._keeps_objects(cache):
                try:
                    kept = _private(value)
                except _Unpicklable:
                    pass  # no tier can store it (set logs "not cached"): nothing to alias
                except Exception as exc:
                    failure = exc  # warned about once out of the cache's locks
            return MEMO_FORMAT, kept, elapsed, _files_read(seen.result)

        t0 = time.perf_counter()
        try:
            stored = cache.get_or_compute(key, compute, self.ttl, self.tiers)
        except _Lazy as lazy:
            with self._lock:
                self._misses += 1
                warn = lazy.why is not None and not self._warned_impure
                self._warned_impure = self._warned_impure or warn
            if warn:
                warnings.warn(f"tcache: {lazy.why}", CacheWarning, stacklevel=2)
            return lazy.value  # type: ignore[no-any-return]
        if not (isinstance(stored, tuple) and len(stored) == 4 and stored[0] == MEMO_FORMAT):
            stored = compute()  # not an entry of ours: recompute (and do not trust it)
        elif not computed and not _files_unchanged(stored[3]):
            stored = compute()  # a file it read changed since: a miss, stored anew
            cache.set(key, stored, self.ttl, self.tiers)
        if computed:
            with self._lock:
                self._misses += 1
            if failure is not None:
                self._warn_copy(result, failure)
            return result  # type: ignore[no-any-return]
        saved = max(0.0, stored[2] - (time.perf_counter() - t0))
        cache.metrics.record_saved(saved)
        with self._lock:
            self._hits += 1
            self._saved += saved
        value = stored[1]
        # atoms first: a small result's hit must not pay for the tier check
        if not self.copy or type(value) in _ATOMS or not self._keeps_objects(cache):
            return value  # type: ignore[no-any-return]
        try:
            return _private(value)  # type: ignore[no-any-return]
        except Exception as exc:
            self._warn_copy(value, exc)
            return value  # type: ignore[no-any-return]

    def _keeps_objects(self, cache: MultiLevelCache) -> bool:
        """Whether a call can meet a stored object: only the memory tier keeps live ones; the
        others store bytes and decode a fresh object on every read, a private copy already."""
        name = cache.object_tier
        return name is not None and (self.tiers is None or name in self.tiers)

    def _warn_copy(self, value: Any, exc: Exception) -> None:
        with self._lock:
            if self._warned_copy:
                return
            self._warned_copy = True
        warnings.warn(
            f"tcache: {self._qualname} returns its stored {type(value).__qualname__} itself, "
            f"which cannot be copied ({type(exc).__name__}: {exc}): treat it as read-only",
            CacheWarning,
            stacklevel=3,
        )

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
    copy: bool = True,
) -> Callable[[Callable[P, R]], CachedFunction[P, R]]: ...


def cached(
    fn: Callable[P, R] | None = None,
    /,
    *,
    ttl: float | None = None,
    tiers: Iterable[str] | None = None,
    ignore: Iterable[str] = (),
    cache: MultiLevelCache | None = None,
    copy: bool = True,
) -> CachedFunction[P, R] | Callable[[Callable[P, R]], CachedFunction[P, R]]:
    """Cache a function's results: `@cached` or `@cached(ttl=..., tiers=..., ignore=[...])`.

    `ttl` in seconds, `tiers` a subset of the cache's tiers, `ignore` parameter names that do
    not change the result (a logger, a progress callback), `cache` a MultiLevelCache (default:
    `tore_nb.get_cache()`). Each call returns a private copy (immutable results excepted);
    `copy=False` returns the stored object itself, faster for large results: treat it as
    read-only.

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


def _observe(cache: MultiLevelCache, randoms: dict[str, Any]) -> Any:
    from .cells.observe import observe

    return observe(randoms, ignore=[cache.config.disk_cache_path])


def _random_states() -> dict[str, Any]:
    """Snapshots of the global random generators loaded now (numpy's, Python's...)."""
    from .cells.probes import probes

    return {p.name: p.capture() for p in probes() if p.kind == "consumed" and p.available()}


def _impure(
    bound: inspect.BoundArguments,
    digests: dict[str, str],
    randoms: dict[str, Any],
    seen: Any,
) -> str | None:
    """Why a hit of this call would not do what the call did: it changed an argument in place
    (`xs.append(3)`), or drew from a global random generator it did not seed. None if not."""
    for name, digest in digests.items():
        try:
            changed = dependency_token(bound.arguments[name], strict=True) != digest
        except TypeError:
            changed = True
        if changed:
            return f"changes its argument {name!r} in place"
    from .cells.probes import get_probe

    for name, before in randoms.items():
        probe = get_probe(name)
        if name not in seen.seeded and probe.digest(probe.capture()) != probe.digest(before):
            return f"draws from the {name} global random state"
    return None


def _files_read(seen: Any) -> tuple[tuple[str, str, str], ...]:
    """What a call read from the file system, by absolute path, with digests as they are now
    (after the call): files it opened, paths it stat'ed (`os.path.exists`)."""
    from .cells.deps import Dependency, Kind, current_digest

    written = set(seen.files_written)
    found: list[tuple[str, str, str]] = []
    kinds: tuple[tuple[Kind, tuple[str, ...]], ...] = (
        ("file", seen.files_read),
        ("stat", seen.stats),
    )
    for kind, paths in kinds:
        for p in paths:
            if p not in written:
                path = seen.absolute(p)
                found.append((kind, path, current_digest(Dependency(kind, path), {})))
    return tuple(found)


def _files_unchanged(files: tuple[tuple[Any, str, str], ...]) -> bool:
    if not files:
        return True
    from .cells.deps import Dependency, current_digest

    return all(current_digest(Dependency(k, p), {}) == d for k, p, d in files)
