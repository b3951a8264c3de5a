"""Stored entries: what the cache holds for one cell, and the pickling of its variables.

A `CellEntry` is an immutable snapshot: the variables are pickled (protocol 5, buffers copied
out of band) when the cell is stored, and unpickled into fresh, writable copies on every
restore, so mutating a restored value never corrupts the cache. Modules are pickled as a
re-import. The value of the cell's last expression (what `Out[n]` and `_` hold) is kept beside
the variables: by name when it is one of them, else pickled on its own, or not at all when it
cannot be pickled.
"""

from __future__ import annotations

import importlib
import io
import logging
import pickle
import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .capture import NO_RESULT, OutputEvent
from .keys import KeyPart

__all__ = ["CellEntry"]

log = logging.getLogger("tore_nb.cells")


@dataclass(frozen=True)
class CellEntry:
    """What the cache holds for one cell: pickled variables (an immutable snapshot), the outputs
    to replay and the key parts it was stored under."""

    format: int
    label: str
    parts: tuple[KeyPart, ...]
    names: tuple[str, ...]
    deleted: tuple[str, ...]
    stream: bytes
    buffers: tuple[Any, ...]
    events: tuple[OutputEvent, ...]
    compute_seconds: float
    created: float
    nbytes: int = 0
    # the last expression's value: the stored variable it is, or its own pickle (added later:
    # entries stored without them read as "no value")
    result_name: str | None = None
    result: bytes | None = None


# Pickled into cell entries: keep the class path it has always had, tore_nb.cells.CellEntry,
# so that stored entries stay readable by older and newer versions alike.
CellEntry.__module__ = "tore_nb.cells"


class _Pickler(pickle.Pickler):
    """Pickles modules as a re-import; everything else as usual (protocol 5)."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, types.ModuleType):
            return importlib.import_module, (obj.__name__,)
        return NotImplemented


def _dumps(values: Mapping[str, Any]) -> tuple[bytes, tuple[Any, ...]]:
    buffers: list[pickle.PickleBuffer] = []
    f = io.BytesIO()
    _Pickler(f, protocol=5, buffer_callback=buffers.append).dump(dict(values))
    frozen: list[Any] = []
    for buf in buffers:
        try:
            raw = buf.raw()
        except BufferError:  # not contiguous: fall back to an in-band pickle of everything
            f = io.BytesIO()
            _Pickler(f, protocol=5).dump(dict(values))
            return f.getvalue(), ()
        frozen.append(pickle.PickleBuffer(bytes(raw)))  # a copy: later mutation cannot leak in
    return f.getvalue(), tuple(frozen)


class _Unpickler(pickle.Unpickler):
    """Notes each global (module, qualified name) the stream refers to."""

    def __init__(self, file: io.BytesIO, buffers: list[bytearray], seen: set[tuple[str, str]]):
        super().__init__(file, buffers=buffers)
        self._seen = seen

    def find_class(self, module: str, name: str) -> Any:
        self._seen.add((module, name))
        return super().find_class(module, name)


def _loads(entry: CellEntry, seen: set[tuple[str, str]] | None = None) -> dict[str, Any]:
    """The stored variables; `seen` collects the globals (classes, functions) they refer to."""
    # fresh, writable copies of every buffer: restored arrays never alias the cached entry
    buffers = [bytearray(b) for b in entry.buffers]
    if seen is None:
        values = pickle.loads(entry.stream, buffers=buffers)
    else:
        values = _Unpickler(io.BytesIO(entry.stream), buffers, seen).load()
    if not isinstance(values, dict):
        raise TypeError("a cell entry holds a dict of variables")
    return values


def _dump_result(value: Any, values: Mapping[str, Any]) -> tuple[str | None, bytes | None]:
    """How to keep the last expression's value: (name of the variable it is, None), or
    (None, its pickle); (None, None) when there is none or it cannot be pickled."""
    if value is NO_RESULT:
        return None, None
    for name, v in values.items():
        if v is value:  # the same object as a variable: restored as that variable, not a copy
            return name, None
    f = io.BytesIO()
    try:
        _Pickler(f, protocol=5).dump(value)
    except Exception:  # Out[n] cannot be restored; the variables and outputs still can
        log.debug("the last expression's value cannot be pickled", exc_info=True)
        return None, None
    return None, f.getvalue()


def _load_result(entry: CellEntry, namespace: Mapping[str, Any]) -> Any:
    """The last expression's value of a restored cell, or NO_RESULT."""
    if entry.result_name is not None:
        return namespace.get(entry.result_name, NO_RESULT)
    if entry.result is None:
        return NO_RESULT
    try:
        return pickle.loads(entry.result)
    except Exception:
        log.debug("could not unpickle the last expression's value", exc_info=True)
        return NO_RESULT


def _unpicklable(values: Mapping[str, Any]) -> list[tuple[str, str]]:
    bad = []
    for name, value in values.items():
        try:
            _Pickler(io.BytesIO(), protocol=5, buffer_callback=lambda b: None).dump(value)
        except Exception as exc:
            bad.append((name, f"{type(value).__qualname__}: {exc}"))
    return bad
