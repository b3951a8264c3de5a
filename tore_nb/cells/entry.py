"""Stored entries: what the cache holds for one cell.

A `CellEntry` is an immutable snapshot of what one run changed and showed: the variables it
bound and the objects it changed in place, pickled together (`snapshot.dumps`: objects that
existed before the run are references, restored as themselves), its outputs in order, the
hidden state it changed (per state probe), and the files it wrote (a hit is served only while
they still hold what it wrote). Every restore unpickles fresh, writable copies, so mutating a
restored value never corrupts the cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .capture import OutputEvent
from .keys import KeyPart

__all__ = ["CellEntry"]


@dataclass(frozen=True)
class CellEntry:
    """What the cache holds for one cell: what its run changed (pickled), the outputs to
    replay and the key parts it was stored under."""

    format: int
    label: str
    parts: tuple[KeyPart, ...]
    names: tuple[str, ...]  # variables bound to new objects
    deleted: tuple[str, ...]
    stream: bytes  # {"values": {name: value}, "inplace": {name: (kind, content)}, "result": v}
    buffers: tuple[Any, ...]
    events: tuple[OutputEvent, ...]
    compute_seconds: float
    created: float
    nbytes: int = 0
    mutated: tuple[str, ...] = ()  # variables whose object the cell changed in place
    state: tuple[tuple[str, Any], ...] = ()  # (state probe, what the cell changed of it)
    written: tuple[tuple[str, str], ...] = ()  # (file, digest) the cell created or replaced
    appended: tuple[tuple[str, bytes], ...] = ()  # (file, bytes) it appended: a hit appends
    imported: tuple[str, ...] = ()  # local modules it imported first: a hit imports them


# Pickled into cell entries: keep the class path it has always had, tore_nb.cells.CellEntry,
# so that stored entries stay readable by older and newer versions alike.
CellEntry.__module__ = "tore_nb.cells"
