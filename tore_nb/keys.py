"""Deterministic cache keys and content hashing of values. Pure: no I/O.

Keys are equal across processes, machines and `PYTHONHASHSEED` values because values are hashed
from their content with xxh3-128: numpy arrays and pandas objects from their buffers, containers
item by item, other objects through their `__reduce_ex__` state. Never `hash()`, `str()` or raw
pickle bytes.

Mappings (dicts and their subclasses, `MappingProxyType`, an object's `__dict__`) are hashed in
insertion order, since code sees that order (`pd.DataFrame({"a": .., "b": ..})` takes its column
order from it); sets are hashed independently of their order. Keyword arguments of
`generate_key` are sorted by name, so their order does not count.

Functions, classes and methods reached anywhere inside a value (a pipeline's steps, a config
dataclass holding a function, a `functools.partial`) count by their full code fingerprint
(`tore_nb.fingerprint.fingerprint`: the helpers they call and the globals they read), library
ones by name and version. This module cannot import the fingerprint (the fingerprint hashes
values with it): `tore_nb.fingerprint` registers it here (`set_code_hooks`), and the package
imports `tore_nb.fingerprint` first thing, so that a digest never depends on import order. A
value and its pickle or deep copy have the same digest.

>>> generate_key("document.pdf", dpi=150) == generate_key("document.pdf", dpi=150)
True
>>> generate_key("document.pdf", dpi=150).startswith("tore_nb:v1:document.pdf:dpi=150:")
True
>>> generate_key("doc", a=1, b=2) == generate_key("doc", b=2, a=1)
True
>>> hash_value({"a": 1, "b": 2}) == hash_value({"b": 2, "a": 1})
False
>>> hash_value({3, 1, 2}) == hash_value({1, 2, 3})
True
"""

from __future__ import annotations

import collections
import copyreg
import dataclasses
import datetime as _dt
import decimal
import enum
import io
import pickle
import re
import struct
import sys
import threading
import types
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import PurePath
from typing import Any

import xxhash

__all__ = [
    "KEY_VERSION",
    "CodeHooks",
    "ContentHasher",
    "code_digest",
    "generate_key",
    "hash_bytes",
    "hash_value",
    "make_key",
    "plain_items_pickle",
    "qualname",
    "set_code_hooks",
]

KEY_VERSION = 1
MAX_READABLE = 120
_SAFE = re.compile(r"[^A-Za-z0-9_.\-/=@+]")
_pack_q = struct.Struct("<q").pack
_pack_d = struct.Struct("<d").pack


@dataclasses.dataclass(frozen=True, slots=True)
class CodeHooks:
    """How `hash_value` hashes code: `digest(obj)` for a function, class, method or module (its
    full fingerprint), `is_user(cls)` for whether a class is user code, whose instances then
    add the class's fingerprint. `tore_nb.fingerprint` registers them when imported.

    >>> hooks = CodeHooks(digest=lambda obj: "d", is_user=lambda cls: False)
    >>> hooks.digest(len)
    'd'
    """

    digest: Callable[[Any], str]
    is_user: Callable[[type], bool]


_hooks: CodeHooks | None = None


def set_code_hooks(hooks: CodeHooks | None) -> None:
    """Register how code is hashed (see `CodeHooks`); `tore_nb.fingerprint` calls it at import,
    and `import tore_nb` imports it, so the hooks are in place before any value is hashed.

    >>> _code_hooks() is not None
    True
    """
    global _hooks
    _hooks = hooks


class _NoCodeHooks(RuntimeError):
    """Raised as it is, never turned into the TypeError that callers answer with a weaker digest."""


def _code_hooks() -> CodeHooks:
    hooks = _hooks
    if hooks is None:
        # no fallback digest: a key must never depend on what happened to be imported first
        raise _NoCodeHooks(
            "tore_nb.keys has no code hooks: import tore_nb (it imports tore_nb.fingerprint, "
            "which registers them) before hashing a value"
        )
    return hooks


def qualname(obj: Any) -> str:
    """The dotted name of a function, class or module (`module.Qualified.name`); an object
    without a name of its own is named by its type.

    >>> qualname(PurePath), qualname(len)
    ('pathlib.PurePath', 'builtins.len')
    """
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    if name is None:
        name = type(obj).__qualname__
    return f"{getattr(obj, '__module__', '?')}.{name}"


def code_digest(code: types.CodeType) -> str:
    """Digest of a code object's bytecode, constants and names (line numbers excluded), nested
    code objects (inner functions, comprehensions) included.

    >>> code_digest(compile("x = 1", "a", "exec")) == code_digest(compile("x=1", "b", "exec"))
    True
    """
    h = ContentHasher()
    _feed_code(h, code)
    return h.hexdigest()


_CODE_FIELDS: tuple[str, ...] = ("co_name", "co_argcount", "co_posonlyargcount")
_CODE_FIELDS += ("co_kwonlyargcount", "co_flags", "co_code", "co_names", "co_varnames")
_CODE_FIELDS += ("co_freevars", "co_cellvars")


def _feed_code(h: ContentHasher, code: types.CodeType) -> None:
    h.update(tuple(getattr(code, field) for field in _CODE_FIELDS))
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _feed_code(h, const)
        else:
            try:
                h.update(const)
            except TypeError:
                h.update(repr(type(const)))


class _Scope(threading.local):
    """Per thread: the memos of the hashers that called out to a nested one (the fingerprint
    of a function met inside a value, a set's items). An object one of them holds is hashed as
    a reference to it: a bound method's object, or a value a function reads that holds the
    function, would otherwise recurse without end across the nested hashers."""

    outer: tuple[dict[int, int], ...] = ()


_scope = _Scope()


def hash_bytes(data: bytes | bytearray | memoryview) -> str:
    """xxh3-128 hex digest of a buffer (about 10 GB/s here).

    >>> hash_bytes(b"abc")
    '06b05ab6733a618578af5f94892f3950'
    """
    return xxhash.xxh3_128_hexdigest(data)


class ContentHasher:
    """Feeds values into one xxh3-128 state, each with a type tag and length prefixes.

    >>> h = ContentHasher(); h.update([1, "a"]); len(h.hexdigest())
    32
    """

    __slots__ = ("_h", "_keep", "_memo", "_outer", "_user")

    def __init__(self) -> None:
        self._h = xxhash.xxh3_128()
        self._memo: dict[int, int] = {}
        self._outer = _scope.outer
        self._user: dict[type, bool] = {}  # whether a class is user code, per class
        # Holds every memoised object until the digest is done: a temporary made while hashing
        # (a state list, `list(index.names)`) could otherwise be freed and its id() reused by
        # the next one, which would then hash as a back-reference and differing values collide.
        self._keep: list[Any] = []

    def hexdigest(self) -> str:
        return self._h.hexdigest()

    def _tag(self, tag: bytes, n: int = 0) -> None:
        self._h.update(tag + _pack_q(n))

    def _raw(self, tag: bytes, data: bytes | bytearray | memoryview) -> None:
        self._h.update(tag + _pack_q(len(data)))
        self._h.update(data)

    def update(self, obj: Any) -> None:
        """Add one value to the digest."""
        handler = _HANDLERS.get(type(obj))
        if handler is not None:
            handler(self, obj)
            return
        self._complex(obj)

    def _seen(self, obj: Any) -> bool:
        """Record an object; True (and a back-reference) when this or an outer hasher has it."""
        oid = id(obj)
        if oid in self._memo:  # cycles and shared references
            self._tag(b"R", self._memo[oid])
            return True
        for depth, memo in enumerate(self._outer):
            if oid in memo:
                self._tag(b"Q", depth << 32 | memo[oid])
                return True
        self._memo[oid] = len(self._memo)
        self._keep.append(obj)
        return False

    def _nested(self) -> _Nested:
        """Context for nested hashers (see `_Scope`)."""
        return _Nested(self._memo)

    def _user_class(self, obj: Any) -> None:
        """Add the fingerprint of a user-defined class of an instance: its methods are code
        the value brings along (a pipeline's `transform`)."""
        cls = type(obj)
        user = self._user.get(cls)
        if user is None:
            user = self._user[cls] = _code_hooks().is_user(cls)
        if user:
            self.update(cls)

    # -- slow path: everything but the builtin scalars and containers ---------------------------
    def _complex(self, obj: Any) -> None:
        if self._seen(obj):
            return
        if callable(getattr(type(obj), "__tore_hash__", None)):  # the owner's word wins
            self._raw(b"H", qualname(type(obj)).encode())
            self.update(obj.__tore_hash__())
            return
        for check, handler in _SLOW_HANDLERS:
            if check(obj):
                handler(self, obj)
                return
        self._reduce(obj)

    def _reduce(self, obj: Any) -> None:
        try:
            # copyreg first, as pickle does: re.Pattern and friends reduce only through it
            reducer = copyreg.dispatch_table.get(type(obj))
            rv = reducer(obj) if reducer is not None else obj.__reduce_ex__(5)
        except Exception as exc:
            raise TypeError(f"cannot content-hash {type(obj).__qualname__}: {exc}") from None
        if isinstance(rv, str):  # a global, e.g. a module-level singleton
            self._raw(b"G", f"{qualname(type(obj))}:{rv}".encode())
            if callable(obj):  # a ufunc, numpy's dispatchers: by name and version
                self._raw(b"F", _code_hooks().digest(obj).encode())
            return
        self._raw(b"O", qualname(type(obj)).encode())
        self._user_class(obj)
        func, args, *rest = (*rv, None, None, None)[:5]
        self._raw(b"f", qualname(func).encode())
        self.update(args)
        state = rest[0]
        if isinstance(state, dict) and not isinstance(obj, dict):
            self._mapping(state)
        else:
            self.update(state)
        for extra in rest[1:3]:
            self.update(None if extra is None else list(extra))

    def _mapping(self, m: Mapping[Any, Any]) -> None:
        # in insertion order: code iterating the mapping (DataFrame(d), json.dumps) sees it
        self._tag(b"d", len(m))
        for k, v in m.items():
            self.update(k)
            self.update(v)

    def _seq(self, tag: bytes, items: Iterable[Any], n: int) -> None:
        self._tag(tag, n)
        for item in items:
            self.update(item)


def _h_str(h: ContentHasher, s: str) -> None:
    h._raw(b"s", s.encode("utf-8", "surrogatepass"))


def _h_int(h: ContentHasher, i: int) -> None:
    if -(2**63) <= i < 2**63:
        h._tag(b"i", i)
    else:
        h._raw(b"I", str(i).encode())


def _h_float(h: ContentHasher, f: float) -> None:
    h._h.update(b"f" + _pack_d(f))


def _h_bool(h: ContentHasher, b: bool) -> None:
    h._tag(b"b", int(b))


def _h_none(h: ContentHasher, _: None) -> None:
    h._tag(b"N")


def _h_bytes(h: ContentHasher, b: bytes | bytearray | memoryview) -> None:
    h._raw(b"y", b)


def _h_complex(h: ContentHasher, c: complex) -> None:
    h._h.update(b"c" + _pack_d(c.real) + _pack_d(c.imag))


class _Nested:
    """Makes a hasher's memo visible to the hashers made inside it (see `_Scope`)."""

    __slots__ = ("_memo", "_prev")

    def __init__(self, memo: dict[int, int]) -> None:
        self._memo = memo
        self._prev: tuple[dict[int, int], ...] = ()

    def __enter__(self) -> None:
        self._prev = _scope.outer
        _scope.outer = (*self._prev, self._memo)

    def __exit__(self, *exc: object) -> None:
        _scope.outer = self._prev


def _enter(h: ContentHasher, obj: Any) -> bool:
    """Record a mutable container; False (and a back-reference) when it was seen already."""
    return not h._seen(obj)


def _h_list(h: ContentHasher, seq: list[Any]) -> None:
    if _enter(h, seq):
        h._seq(b"l", seq, len(seq))


def _h_tuple(h: ContentHasher, seq: tuple[Any, ...]) -> None:
    h._seq(b"t", seq, len(seq))


def _h_dict(h: ContentHasher, m: dict[Any, Any]) -> None:
    if _enter(h, m):
        h._mapping(m)


def _h_set(h: ContentHasher, s: set[Any] | frozenset[Any]) -> None:
    # each item on its own, so that the digests can be sorted: a set's order follows hash()
    with h._nested():
        digests = sorted(hash_value(x) for x in s)
    # equal as values, but a function keyed by its argument may hand either type back
    h._tag(b"Z" if isinstance(s, frozenset) else b"S", len(digests))
    for d in digests:
        h._h.update(d.encode())


_HANDLERS: dict[type, Callable[[ContentHasher, Any], None]] = {
    str: _h_str,
    int: _h_int,
    float: _h_float,
    bool: _h_bool,
    type(None): _h_none,
    bytes: _h_bytes,
    bytearray: _h_bytes,
    complex: _h_complex,
    list: _h_list,
    tuple: _h_tuple,
    dict: _h_dict,
    set: _h_set,
    frozenset: _h_set,
}


# -- numpy and pandas, without importing either: they are only touched when already loaded ----
def _is_ndarray(obj: Any) -> bool:
    np = sys.modules.get("numpy")
    return np is not None and isinstance(obj, np.ndarray | np.generic)


def _h_ndarray(h: ContentHasher, a: Any) -> None:
    import numpy as np

    if isinstance(a, np.ma.MaskedArray):
        h._raw(b"M", b"masked")
        _h_ndarray(h, np.ma.getmaskarray(a))
        h.update(np.asarray(a.fill_value))
    a = np.asarray(a)
    h._raw(b"A", f"{a.dtype.str}|{a.dtype.descr}|{a.shape}".encode())
    if a.dtype.hasobject:
        h._seq(b"o", a.ravel(order="C").tolist(), a.size)
        return
    if a.dtype.names is not None:  # field by field: padding bytes between fields are garbage
        for name in a.dtype.names:
            h._raw(b"f", name.encode())
            _h_ndarray(h, a[name])
        return
    if not a.flags.c_contiguous:
        a = np.ascontiguousarray(a)
    # a byte view, not memoryview(a): the buffer protocol refuses datetime64 and timedelta64
    h._raw(b"B", memoryview(a.reshape(-1).view(np.uint8)))


def _is_pandas(obj: Any) -> bool:
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(obj, pd.DataFrame | pd.Series | pd.Index)


def _h_pandas(h: ContentHasher, obj: Any) -> None:
    import pandas as pd

    if isinstance(obj, pd.DataFrame):
        h._raw(b"P", b"DataFrame")
        _h_pandas(h, obj.columns)
        _h_pandas(h, obj.index)
        h._tag(b"c", obj.shape[1])
        for i in range(obj.shape[1]):
            _h_series_values(h, obj.iloc[:, i])
        h.update(dict(obj.attrs))
        return
    if isinstance(obj, pd.Series):
        h._raw(b"P", b"Series")
        h.update(obj.name)
        _h_pandas(h, obj.index)
        _h_series_values(h, obj)
        h.update(dict(obj.attrs))
        return
    h._raw(b"P", type(obj).__name__.encode())
    h.update(list(obj.names))
    if isinstance(obj, pd.DatetimeIndex | pd.TimedeltaIndex):
        # part of the value, not a cache: `shift`, `+ 1` and resampling follow it; the offset
        # itself, not its freqstr ("C" for any holiday calendar)
        h.update(obj.freq)
    if isinstance(obj, pd.RangeIndex):
        h.update((obj.start, obj.stop, obj.step))
        return
    if isinstance(obj, pd.MultiIndex):
        for level in range(obj.nlevels):
            _h_series_values(h, pd.Series(obj.get_level_values(level)))
        return
    _h_series_values(h, pd.Series(obj))


def _h_series_values(h: ContentHasher, s: Any) -> None:
    import numpy as np
    import pandas as pd

    dtype = s.dtype
    h._raw(b"D", str(dtype).encode())
    if isinstance(dtype, pd.CategoricalDtype):
        _h_pandas(h, dtype.categories)
        h.update(dtype.ordered)
        _h_ndarray(h, np.asarray(s.cat.codes))
        return
    if isinstance(dtype, np.dtype) and not dtype.hasobject:
        _h_ndarray(h, s.to_numpy(copy=False))
        return
    if isinstance(dtype, pd.StringDtype):  # pandas 3's default for text: str items or its null
        h._raw(b"T", plain_items_pickle(s.to_numpy(dtype=object).tolist()))
        return
    if isinstance(dtype, np.dtype):
        # pandas' element hash goes through str() for anything but str, bytes and nulls (so
        # 1 == Decimal(1), and a default repr holds an address): only all-str or all-bytes
        # columns take it; any other object column is hashed element by element.
        kind = pd.api.types.infer_dtype(s, skipna=True)
        if kind not in ("string", "bytes", "empty"):
            _h_ndarray(h, s.to_numpy(dtype=object))
            return
        h._raw(b"I", kind.encode())
        h._raw(b"T", plain_items_pickle(s.to_numpy(dtype=object).tolist()))
        return
    try:  # pandas' own vectorised, seed-fixed element hash
        hashed = pd.util.hash_pandas_object(s, index=False, categorize=False)
    except Exception:  # an extension type it cannot hash: element by element instead
        _h_ndarray(h, s.to_numpy(dtype=object))
        return
    h._tag(b"x", len(s))
    _h_ndarray(h, hashed.to_numpy())
    h.update(s.isna().to_numpy())


def plain_items_pickle(items: list[Any]) -> bytes:
    """A list of immutable scalars (str, bytes, numbers, nulls) as pickle writes it without its
    memo: the same items give the same bytes whatever objects they share, at C speed (4x
    pandas' own element hash plus its null mask on a text column). Keys hash it; cell
    snapshots store text columns with it.

    >>> plain_items_pickle(["a", "a"]) == plain_items_pickle(["a", "".join("a")])
    True
    """
    f = io.BytesIO()
    p = pickle.Pickler(f, protocol=5)
    p.fast = True  # no memo: a repeated object is written again, not referred back to
    p.dump(items)
    return f.getvalue()


def _is_dataclass_instance(obj: Any) -> bool:
    return dataclasses.is_dataclass(obj) and not isinstance(obj, type)


def _h_dataclass(h: ContentHasher, obj: Any) -> None:
    h._raw(b"C", qualname(type(obj)).encode())
    h._user_class(obj)
    for f in dataclasses.fields(obj):
        h._raw(b"k", f.name.encode())
        h.update(getattr(obj, f.name))


def _h_enum(h: ContentHasher, e: enum.Enum) -> None:
    h._raw(b"E", f"{qualname(type(e))}.{e.name}".encode())
    h._user_class(e)  # its values and methods are the class's code


def _h_scalar_like(h: ContentHasher, obj: Any) -> None:
    # canonical textual forms of value types whose str() is their definition
    text = obj.isoformat() if hasattr(obj, "isoformat") else str(obj)
    tz = getattr(obj, "tzinfo", None)
    if tz is not None:  # isoformat keeps only the offset: Europe/Paris is not Etc/GMT-1
        text += f"|{tz}"
    h._raw(b"V", f"{qualname(type(obj))}:{text}".encode())


def _h_path(h: ContentHasher, p: PurePath) -> None:
    h._raw(b"p", p.as_posix().encode())


def _h_callable(h: ContentHasher, fn: Any) -> None:
    # the full fingerprint, as a plain function gets it: the helpers it calls and the globals
    # it reads count, not only its own bytecode; library code by name and version; a bound
    # method with its object ({1: "a"}.get is not {1: "b"}.get)
    h._raw(b"N" if isinstance(fn, types.ModuleType) else b"F", qualname(fn).encode())
    hooks = _code_hooks()
    with h._nested():
        digest = hooks.digest(fn)
    h._raw(b"c", digest.encode())


def _h_container_subclass(h: ContentHasher, obj: Any) -> None:
    # a namedtuple is not the list [1, 2], nor defaultdict(list) defaultdict(int)
    h._raw(b"T", qualname(type(obj)).encode())
    h._user_class(obj)
    if isinstance(obj, dict):
        h._mapping(obj)
    elif isinstance(obj, set | frozenset):
        _h_set(h, obj)
    else:
        h._seq(b"t" if isinstance(obj, tuple) else b"l", obj, len(obj))
    if isinstance(obj, collections.defaultdict):
        h.update(obj.default_factory)
    state = _subclass_state(obj)
    if isinstance(state, dict):
        if state:
            h._mapping(state)
    elif state is not None:
        h.update(state)


def _subclass_state(obj: Any) -> Any:
    """The attributes of a container subclass that a pickle or a copy keeps.

    Pickle and `copy` restore the instance `__dict__` through the class's `__setstate__` when it
    has one. A class that defines `__setstate__` but keeps the default `__getstate__` says that
    its `__dict__` is not state: sklearn's Bunch drops it on load (its fresh instances carry an
    empty `_deprecated_key_to_warnings`, restored ones nothing), so only the items count.
    """
    cls = type(obj)
    if getattr(cls, "__getstate__", None) is not object.__getstate__:
        return obj.__getstate__()  # the class's own word on its state
    if getattr(cls, "__setstate__", None) is not None:
        return None
    return getattr(obj, "__dict__", None)


def _h_mappingproxy(h: ContentHasher, m: types.MappingProxyType[Any, Any]) -> None:
    h._raw(b"T", b"mappingproxy")  # a class's namespace: cannot be pickled, hashed as a mapping
    h._mapping(m)


def _h_memoryview(h: ContentHasher, mv: memoryview) -> None:
    h._raw(b"m", f"{mv.format}|{mv.shape}".encode())
    h._raw(b"B", mv.tobytes() if not mv.c_contiguous else mv.cast("B"))


_SLOW_HANDLERS: tuple[tuple[Callable[[Any], bool], Callable[[ContentHasher, Any], None]], ...] = (
    (_is_ndarray, _h_ndarray),
    (_is_pandas, _h_pandas),
    (lambda o: isinstance(o, memoryview), _h_memoryview),
    (lambda o: isinstance(o, enum.Enum), _h_enum),
    (_is_dataclass_instance, _h_dataclass),
    (lambda o: isinstance(o, PurePath), _h_path),
    (lambda o: isinstance(o, types.MappingProxyType), _h_mappingproxy),
    (
        lambda o: isinstance(o, _dt.date | _dt.time | _dt.timedelta | decimal.Decimal | uuid.UUID),
        _h_scalar_like,
    ),
    (lambda o: isinstance(o, dict | list | tuple | set | frozenset), _h_container_subclass),
    (lambda o: isinstance(o, str), lambda h, o: _h_str(h, str(o))),
    (lambda o: isinstance(o, int), lambda h, o: _h_int(h, int(o))),
    (lambda o: isinstance(o, float), lambda h, o: _h_float(h, float(o))),
    (
        lambda o: isinstance(
            o,
            types.FunctionType
            | types.BuiltinFunctionType
            | types.MethodType
            | types.ModuleType
            | type,
        ),
        _h_callable,
    ),
)


def hash_value(obj: Any) -> str:
    """Content digest (xxh3-128, hex) of any value; equal data gives equal digests.

    >>> import numpy as np
    >>> hash_value(np.arange(3)) == hash_value(np.array([0, 1, 2]))
    True
    """
    h = ContentHasher()
    _feed(h, obj)
    return h.hexdigest()


def _feed(h: ContentHasher, obj: Any) -> None:
    try:
        h.update(obj)
    except (TypeError, _NoCodeHooks):
        raise
    except Exception as exc:  # RecursionError, an unset dataclass field, a failing property...
        raise TypeError(f"cannot content-hash {type(obj).__qualname__}: {exc!r}") from exc


def _readable(obj: Any) -> str | None:
    if isinstance(obj, bool) or obj is None:
        return str(obj)
    if isinstance(obj, int | str):
        text = str(obj)
        return text if len(text) <= 64 else None
    if isinstance(obj, float):
        return repr(obj)
    if isinstance(obj, PurePath):
        return obj.name
    return None


def make_key(
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    *,
    namespace: str = "tore_nb",
    version: int = KEY_VERSION,
) -> str:
    """Build a key from positional and keyword parts; see `generate_key`."""
    h = ContentHasher()
    h._raw(b"K", f"{namespace}:{version}".encode())
    _feed(h, args)
    _feed(h, dict(sorted(kwargs.items())))  # keyword order never changes what a call does
    digest = h.hexdigest()
    readable = [_readable(a) for a in args] + [
        None if (r := _readable(v)) is None else f"{k}={r}" for k, v in sorted(kwargs.items())
    ]
    shown = ":".join(_SAFE.sub("_", r) for r in readable if r is not None)
    if shown and len(shown) <= MAX_READABLE:
        return f"{namespace}:v{version}:{shown}:{digest}"
    return f"{namespace}:v{version}:h:{digest}"


def generate_key(*args: Any, **kwargs: Any) -> str:
    """A deterministic, namespaced, versioned key; short readable parts stay visible.

    The readable prefix is for people (and `find_keys`); the trailing digest over the full
    content makes the key unique, so `("a:b",)` and `("a", "b")` never collide.

    >>> k = generate_key("doc.pdf", dpi=150)
    >>> k.split(":")[:4]
    ['tore_nb', 'v1', 'doc.pdf', 'dpi=150']
    """
    return make_key(args, kwargs)
