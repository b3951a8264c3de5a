"""Stored entries: what the cache holds for one cell, and the pickling of its variables.

A `CellEntry` is an immutable snapshot: the variables are pickled (protocol 5, buffers copied
out of band) when the cell is stored, and unpickled into fresh, writable copies on every
restore, so mutating a restored value never corrupts the cache. Modules are pickled as a
re-import.
"""

from __future__ import annotations

import importlib
import io
import pickle
import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .capture import OutputEvent
from .keys import KeyPart

__all__ = ["CellEntry"]


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


def _loads(entry: CellEntry) -> dict[str, Any]:
    # fresh, writable copies of every buffer: restored arrays never alias the cached entry
    buffers = [bytearray(b) for b in entry.buffers]
    values = pickle.loads(entry.stream, buffers=buffers)
    if not isinstance(values, dict):
        raise TypeError("a cell entry holds a dict of variables")
    return values


def _unpicklable(values: Mapping[str, Any]) -> list[tuple[str, str]]:
    bad = []
    for name, value in values.items():
        try:
            _Pickler(io.BytesIO(), protocol=5, buffer_callback=lambda b: None).dump(value)
        except Exception as exc:
            bad.append((name, f"{type(value).__qualname__}: {exc}"))
    return bad
