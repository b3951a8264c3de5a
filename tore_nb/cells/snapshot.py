"""What a run changed in the namespace, and how to put it back exactly on a hit.

A cell's outputs are not guessed from its text: `namespace_changes` compares the namespace
before and after the run (names added, bound to another object, deleted) and re-hashes the
inputs the key hashed, so that an object the cell changed in place through any call
(`model.fit(X)`, `random.shuffle(xs)`, `next(it)`) is an output too.

Restoring must give what a plain run gives, identity included. `dumps` pickles the outputs
with every object that existed before the run (a variable, or an item or attribute of one, a
few levels down) written as a reference to where it lives, and a numpy view of such an array
as a view; `loads` resolves those references in the namespace of the hit, so `clean = raw`
restores `clean` as the very object `raw` is, and `x2_sub = x2[:2, :2]` as a view of `x2`. An
object changed in place is restored in place (`restore_into`), so every other reference to it
sees the change, as after a plain run; where that is impossible, the cell is not stored.

>>> ns = {"raw": [1, 2]}
>>> before = dict(ns)
>>> ns["clean"] = ns["raw"]; ns["raw"].append(3)
>>> changes = namespace_changes(before, ns, {"raw": "old digest"}, lambda v: str(v))
>>> changes.rebound, changes.mutated
(('clean',), ('raw',))
"""

from __future__ import annotations

import collections
import copyreg
import gc
import importlib
import io
import os
import pickle
import random
import sys
import types
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..keys import plain_items_pickle

__all__ = [
    "Changes",
    "ObjectIndex",
    "RestoreError",
    "dumps",
    "inplace_state",
    "loads",
    "namespace_changes",
    "restore_into",
]

# values whose identity no code can observe meaningfully: copied, never referenced
_ATOMS = (int, float, complex, str, bytes, bool, type(None), range, slice)
# pickled by reference or re-import anyway
_NAMED = (types.ModuleType, type, types.FunctionType, types.BuiltinFunctionType)
_MAX_INDEXED = 20_000
_MAX_DEPTH = 3


class RestoreError(Exception):
    """An entry cannot be restored into this namespace as a plain run would leave it."""


@dataclass(frozen=True)
class Changes:
    """Names a run bound to new objects (added or rebound), names whose object before the run
    changed content (still bound to it or not), and names it deleted."""

    rebound: tuple[str, ...]
    mutated: tuple[str, ...]
    deleted: tuple[str, ...]


def namespace_changes(
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    digests: Mapping[str, str],
    digest: Callable[[Any], str],
    skip: Callable[[str], bool] = lambda name: False,
) -> Changes:
    """The names a run changed: compare bindings by identity, and the objects of `digests`
    (name -> digest before the run) by content. `digest` may raise TypeError: the name then
    counts as changed."""
    rebound = [
        n for n, v in after.items() if not skip(n) and (n not in before or before[n] is not v)
    ]
    deleted = [n for n in before if n not in after and not skip(n)]
    mutated = []
    for name, old in digests.items():
        if name not in before:
            continue
        try:
            changed = digest(before[name]) != old
        except TypeError:
            changed = True
        if changed:
            mutated.append(name)
    return Changes(tuple(rebound), tuple(mutated), tuple(deleted))


# -- references to objects that existed before the run -----------------------------------------
Path = tuple[str, tuple[tuple[str, Any], ...]]  # a variable, then ("item", key) / ("attr", name)


class ObjectIndex:
    """Where each object that existed before a run lives: its variable and a short path of items
    and attributes (`("cfg", (("item", "model"),))`). It holds every object it indexes, so that
    no id is reused by an object made during the run. `aliases[name]` are the other variables
    whose objects `name` holds inside it (`table = [row, row]`: row), which a change made through
    `name` changes too."""

    def __init__(
        self,
        namespace: Mapping[str, Any],
        deep: Collection[str] = (),
        skip: Callable[[str], bool] = lambda name: False,
    ) -> None:
        self.paths: dict[int, Path] = {}
        # arrays by the object that owns their memory: a view made by the cell is a view of
        # one of them when they share that owner
        self.arrays: dict[int, list[tuple[Path, Any]]] = {}
        self.aliases: dict[str, set[str]] = {}
        self._keep: list[Any] = []
        for name, value in namespace.items():
            if not skip(name):  # `_` and `Out` hold what other names hold: never refer by them
                self._add(value, (name, ()))
        for name in deep:  # the inputs: their parts may be handed out by the cell (`m = cfg[k]`)
            if name in namespace:
                self._walk(namespace[name], (name, ()), 0)

    def holders(self) -> list[Any]:
        """What the index holds alive (a referrer to ignore)."""
        return self._keep

    def forget_inside(self, name: str) -> None:
        """Refer no more to objects found inside `name`'s object: it changed in place, so what
        it holds is stored as it is now (the variables it holds stay references)."""
        for key, path in list(self.paths.items()):
            if path[0] == name and path[1]:
                del self.paths[key]
        for arrays in self.arrays.values():
            arrays[:] = [(path, a) for path, a in arrays if not (path[0] == name and path[1])]

    def _add(self, value: Any, path: Path) -> bool:
        if isinstance(value, _ATOMS + _NAMED):
            return False
        if id(value) in self.paths or len(self.paths) >= _MAX_INDEXED:
            return False
        self.paths[id(value)] = path
        self._keep.append(value)
        np = sys.modules.get("numpy")
        if np is not None and isinstance(value, np.ndarray):
            self.arrays.setdefault(id(_owner(value)), []).append((path, value))
        return True

    def _walk(self, value: Any, path: Path, depth: int) -> None:
        if depth >= _MAX_DEPTH:
            return
        name, steps = path
        children: Iterable[tuple[tuple[str, Any], Any]]
        if isinstance(value, dict):
            children = (
                (("item", k), v) for k, v in list(value.items())[:1000] if isinstance(k, str | int)
            )
        elif isinstance(value, list | tuple):
            children = ((("item", i), v) for i, v in enumerate(value[:1000]))
        elif isinstance(getattr(value, "__dict__", None), dict) and not isinstance(
            value, types.ModuleType | type
        ):
            children = ((("attr", k), v) for k, v in list(vars(value).items())[:1000])
        else:
            return
        for step, child in children:
            child_path = (name, (*steps, step))
            if self._add(child, child_path):
                self._walk(child, child_path, depth + 1)
                continue
            found = self.paths.get(id(child))
            if found is not None and not found[1] and found[0] != name:
                self.aliases.setdefault(name, set()).add(found[0])  # another variable's object


def _reduce_module(mod: types.ModuleType) -> tuple[Any, tuple[str]]:
    return importlib.import_module, (mod.__name__,)


class _Pickler(pickle.Pickler):
    """Pickles modules as a re-import, objects of the index as references, numpy views of them
    as views. `persistent_id` runs for every object pickled (strings of an object column
    included): it does one dict lookup in the common case."""

    def __init__(
        self,
        file: io.BytesIO,
        index: ObjectIndex | None,
        buffer_callback: Callable[[pickle.PickleBuffer], Any] | None,
    ) -> None:
        super().__init__(file, protocol=5, buffer_callback=buffer_callback)
        # a C-level lookup by type, where a reducer_override would be a Python call per object
        table: dict[Any, Any] = {**copyreg.dispatch_table, types.ModuleType: _reduce_module}
        self.index = index
        self.used: set[str] = set()  # variables referred to
        self.by_value: set[int] = set()  # objects of the index pickled as they are now
        paths: dict[int, Path] = index.paths if index is not None else {}
        self._path: Callable[[int], Path | None] = paths.get
        np = sys.modules.get("numpy")
        self._ndarray = np.ndarray if np is not None and index and index.arrays else None
        if np is not None:
            table[np.ndarray] = _reduce_array
        for kind in _FILE_TYPES:
            table[kind] = _reduce_file
        self.dispatch_table = table

    def persistent_id(self, obj: Any) -> Any:
        path = self._path(id(obj))
        if path is None:
            if type(obj) is not self._ndarray or self.index is None:
                return None
            view = _view_of(obj, self.index)
            if view is not None:
                self.used.add(view[1][0])
            return view
        if id(obj) in self.by_value:
            return None
        self.used.add(path[0])
        return ("ref", path)


_FILE_TYPES = (io.TextIOWrapper, io.BufferedReader, io.BufferedWriter, io.BufferedRandom, io.FileIO)


def _reduce_file(f: Any) -> Any:
    """A closed file (`with open(path) as f` leaves one) as a closed stand-in with its name
    and mode: all a closed file can still do is say them. An open file cannot be pickled."""
    if not f.closed:
        return f.__reduce_ex__(5)  # raises: an open handle is no value
    text = isinstance(f, io.TextIOWrapper)
    return _closed_file, (
        type(f).__name__,
        getattr(f, "name", None),
        getattr(f, "mode", None),
        getattr(f, "encoding", None) if text else None,
    )


def _closed_file(kind: str, name: Any, mode: Any, encoding: str | None) -> Any:
    raw = io.FileIO(os.devnull, "r")
    if name is not None:
        raw.name = name
    f: Any = raw
    if kind != "FileIO":
        f = io.BufferedReader(raw)
    if kind == "TextIOWrapper":
        f = io.TextIOWrapper(f, encoding=encoding or "utf-8")
    if mode is not None and kind == "TextIOWrapper":
        f.mode = mode
    f.close()
    return f


_PLAIN_ITEMS = frozenset({str, int, float, bool, type(None), bytes})


def _reduce_array(array: Any) -> Any:
    """An array as numpy pickles it; a large 1-D object array of plain items (a text column)
    as a pickle of its items' list, which runs at C speed: `persistent_id` would be called once
    per item, and no immutable scalar can be an object whose identity the run must keep."""
    if array.dtype.hasobject and array.ndim == 1 and array.size > 1000:
        items = array.tolist()
        if set(map(type, items)) <= _PLAIN_ITEMS:
            return _load_plain, (plain_items_pickle(items),)
    return array.__reduce_ex__(5)


def _load_plain(data: bytes) -> Any:
    import numpy as np

    items = pickle.loads(data)
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array


def _owner(array: Any) -> Any:
    """The object at the end of an array's `.base` chain: what owns its memory."""
    while getattr(array, "base", None) is not None:
        array = array.base
    return array


def _view_of(obj: Any, index: ObjectIndex) -> tuple[Any, ...] | None:
    """A reference to `obj` as a view of an indexed array, when it is one."""
    np = sys.modules.get("numpy")
    if np is None or type(obj) is not np.ndarray or obj.base is None or not index.arrays:
        return None
    candidates = index.arrays.get(id(_owner(obj)))
    if not candidates:
        return None
    bounds = np.lib.array_utils.byte_bounds
    start, end = bounds(obj)
    for path, array in candidates:
        low, high = bounds(array)
        if low <= start and end <= high and array.flags.c_contiguous:
            offset = obj.__array_interface__["data"][0] - array.__array_interface__["data"][0]
            return ("view", path, offset, obj.shape, obj.strides, obj.dtype.str)
    return None


def dumps(
    values: Any, index: ObjectIndex | None = None, by_value: Iterable[Any] = ()
) -> tuple[bytes, tuple[Any, ...], set[str]]:
    """Pickle `values` (protocol 5, buffers copied out of band): the stream, the buffers and the
    variables it refers to through `index` (not for `by_value`: objects of the index changed
    in a way only a new object can give again)."""
    buffers: list[pickle.PickleBuffer] = []
    f = io.BytesIO()
    p = _Pickler(f, index, buffers.append)
    p.by_value = {id(v) for v in by_value}
    p.dump(values)
    try:
        # copies: a later change of the values cannot leak into the entry
        frozen = tuple(pickle.PickleBuffer(bytes(b.raw())) for b in buffers)
    except BufferError:  # not contiguous: an in-band pickle of everything
        f = io.BytesIO()
        p = _Pickler(f, index, None)
        p.by_value = {id(v) for v in by_value}
        p.dump(values)
        return f.getvalue(), (), p.used
    return f.getvalue(), frozen, p.used


class _Unpickler(pickle.Unpickler):
    """Resolves references in `namespace`; notes each global (module, name) it loads."""

    def __init__(
        self,
        stream: bytes,
        buffers: Iterable[Any],
        namespace: Mapping[str, Any],
        seen: set[tuple[str, str]] | None,
    ) -> None:
        super().__init__(io.BytesIO(stream), buffers=buffers)
        self.namespace = namespace
        self.seen = seen

    def find_class(self, module: str, name: str) -> Any:
        if self.seen is not None:
            self.seen.add((module, name))
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        kind, path = pid[0], pid[1]
        obj = _resolve(path, self.namespace)
        if kind == "ref":
            return obj
        import numpy as np

        _, _, offset, shape, strides, dtype = pid
        if not isinstance(obj, np.ndarray):
            raise RestoreError(f"{path[0]!r} is no longer an array to view")
        return np.ndarray(shape, np.dtype(dtype), buffer=obj, offset=offset, strides=strides)


def _resolve(path: Path, namespace: Mapping[str, Any]) -> Any:
    name, steps = path
    if name not in namespace:
        raise RestoreError(f"{name!r} is not defined")
    obj = namespace[name]
    try:
        for kind, key in steps:
            obj = obj[key] if kind == "item" else getattr(obj, key)
    except (LookupError, AttributeError, TypeError) as exc:
        raise RestoreError(f"{name!r} no longer holds what the cell referred to") from exc
    return obj


def loads(
    stream: bytes,
    buffers: Iterable[Any],
    namespace: Mapping[str, Any],
    seen: set[tuple[str, str]] | None = None,
) -> Any:
    """Unpickle what `dumps` wrote, into fresh, writable copies (references resolved in
    `namespace`); `seen` collects the globals (classes, functions) it loads."""
    copies = [bytearray(b) for b in buffers]  # restored arrays never alias the cached entry
    return _Unpickler(stream, copies, namespace, seen).load()


# -- changing an object in place ----------------------------------------------------------------
def inplace_state(obj: Any) -> tuple[str, Any] | None:
    """What it takes to give another object of the same kind `obj`'s content in place: (kind,
    content), None when there is no way (the cell is then stored only if nothing else holds
    the object). The content holds `obj`'s parts, not `obj` itself."""
    np = sys.modules.get("numpy")
    pd = sys.modules.get("pandas")
    if isinstance(obj, types.FunctionType):
        # what a call can change of a function: a mutable default (`def f(acc=[])`), a
        # `nonlocal` counter in its closure, an attribute
        cells = []
        for cell in obj.__closure__ or ():
            try:
                cells.append((True, cell.cell_contents))
            except ValueError:  # an empty cell
                cells.append((False, None))
        return "function", (obj.__defaults__, obj.__kwdefaults__, dict(vars(obj)), cells)
    if isinstance(obj, list):
        return "list", list(obj)
    if isinstance(obj, dict):
        return "dict", (list(obj.items()), _plain_attrs(obj))
    if isinstance(obj, set):
        return "set", list(obj)
    if isinstance(obj, bytearray):
        return "bytearray", bytes(obj)
    if isinstance(obj, collections.deque):
        return "deque", list(obj)
    if isinstance(obj, random.Random):
        return "random", obj.getstate()
    if np is not None:
        if isinstance(obj, np.ndarray):
            return ("ndarray", obj.copy()) if obj.flags.writeable else None
        if isinstance(obj, np.random.Generator):
            return "generator", obj.bit_generator.state
        if isinstance(obj, np.random.RandomState):
            return "randomstate", obj.get_state()
    if pd is not None and isinstance(obj, pd.DataFrame | pd.Series):
        return "pandas", obj.copy(deep=True)
    if isinstance(getattr(obj, "__dict__", None), dict) and not isinstance(obj, _NAMED):
        if getattr(type(obj), "__slots__", None):
            return None
        return "object", dict(vars(obj))
    return None


def _plain_attrs(obj: Any) -> dict[str, Any]:
    # a defaultdict's factory; a dict subclass's own attributes are left as they are (a hit
    # restores its items: an attribute outside them, such as a Bunch's bookkeeping, need not
    # survive a round trip)
    if isinstance(obj, collections.defaultdict):
        return {"default_factory": obj.default_factory}
    return {}


def restore_into(live: Any, kind: str, content: Any) -> None:
    """Give `live` the content `inplace_state` took (raises RestoreError when it cannot)."""
    try:
        if kind == "list":
            live[:] = content
        elif kind == "dict":
            items, attrs = content
            live.clear()
            for key, value in items:  # not update(): a Counter's update adds counts
                live[key] = value
            for name, value in attrs.items():
                setattr(live, name, value)
        elif kind in ("set", "deque"):
            live.clear()
            live.update(content) if kind == "set" else live.extend(content)
        elif kind == "bytearray":
            live[:] = content
        elif kind == "random":
            live.setstate(content)
        elif kind == "ndarray":
            if live.shape != content.shape or live.dtype != content.dtype:
                raise RestoreError("the array's shape or dtype differs")
            live[...] = content
        elif kind == "generator":
            live.bit_generator.state = content
        elif kind == "randomstate":
            live.set_state(content)
        elif kind == "pandas":
            if type(live) is not type(content):
                raise RestoreError("the pandas object's type differs")
            from pandas.core.flags import Flags

            for name, value in vars(content).items():
                object.__setattr__(live, name, value)
            # the flags point back at their frame: make them this one's
            flags = Flags(live, allows_duplicate_labels=content.flags.allows_duplicate_labels)
            object.__setattr__(live, "_flags", flags)
        elif kind == "function":
            defaults, kwdefaults, attrs, cells = content
            if len(cells) != len(live.__closure__ or ()):
                raise RestoreError("the function's closure differs")
            live.__defaults__, live.__kwdefaults__ = defaults, kwdefaults
            vars(live).clear()
            vars(live).update(attrs)
            for cell, (full, value) in zip(live.__closure__ or (), cells, strict=True):
                if full:
                    cell.cell_contents = value
        elif kind == "object":
            attrs = vars(live)
            attrs.clear()
            attrs.update(content)
        else:
            raise RestoreError(f"unknown kind {kind!r}")
    except RestoreError:
        raise
    except Exception as exc:
        raise RestoreError(f"{type(exc).__name__}: {exc}") from exc


def held_elsewhere(obj: Any, namespace: Mapping[str, Any], ignore: Iterable[Any]) -> bool:
    """Whether anything but one variable of `namespace` refers to `obj` (`ignore`: snapshots
    of the namespace, indexes): then a new object in its place would not be what a plain run
    leaves."""
    bound = 0
    for value in namespace.values():  # a loop, not a generator: its closure would refer to obj
        bound += value is obj
    if bound > 1:
        return True
    skip = {id(x) for x in ignore} | {id(namespace)}
    for referrer in gc.get_referrers(obj):
        if id(referrer) in skip or isinstance(referrer, types.FrameType):
            continue
        return True
    return False
