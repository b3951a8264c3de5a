"""Explain a miss: which parts of a cell's key differ from those of its stored entry.

Every stored cell leaves a pointer under `LATEST_PREFIX + label` with the parts of its key and
of the key it replaced; `latest_parts` and `previous_parts` read it back, and `explain` compares
two sets of parts, part by part.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .keys import LATEST_PREFIX, KeyPart

if TYPE_CHECKING:
    import pandas as pd

    from ..tiered import MultiLevelCache

__all__ = ["ExplainRow", "Explanation", "explain", "latest_parts", "previous_parts"]


def latest_parts(cache: MultiLevelCache, label: str) -> tuple[KeyPart, ...] | None:
    """The key parts of the entry most recently stored under a cell label, if any."""
    return _pointer_parts(cache, label, "parts")


def previous_parts(cache: MultiLevelCache, label: str) -> tuple[KeyPart, ...] | None:
    """The key parts the latest entry of a label replaced (what changed the last time)."""
    return _pointer_parts(cache, label, "previous")


def _pointer_parts(cache: MultiLevelCache, label: str, field: str) -> tuple[KeyPart, ...] | None:
    pointer = cache.get(LATEST_PREFIX + label)
    if isinstance(pointer, dict) and isinstance(pointer.get(field), tuple):
        return pointer[field]  # type: ignore[no-any-return]
    return None


@dataclass(frozen=True)
class ExplainRow:
    """One key part, stored against current: 'unchanged', 'changed', 'added' or 'removed'."""

    part: str
    name: str
    stored: str | None
    current: str | None
    status: str


@dataclass(frozen=True)
class Explanation:
    """Which parts of a cell's key differ from its stored entry."""

    label: str
    rows: tuple[ExplainRow, ...] = field(default_factory=tuple)
    stored: bool = True

    @property
    def changed(self) -> tuple[ExplainRow, ...]:
        return tuple(r for r in self.rows if r.status != "unchanged")

    def to_frame(self) -> pd.DataFrame:
        """One row per key part: part, name, stored, current, status."""
        import pandas as pd

        cols = ["part", "name", "stored", "current", "status"]
        return pd.DataFrame([[getattr(r, c) for c in cols] for r in self.rows], columns=cols)

    def __str__(self) -> str:
        if not self.stored:
            return f"tcache: no stored entry for {self.label!r}"
        if not self.changed:
            return f"tcache: {self.label}: nothing changed"
        lines = [f"tcache: {self.label}: {len(self.changed)} part(s) changed"]
        lines += [f"  {r.status:8} {r.part} {r.name}" for r in self.changed]
        return "\n".join(lines)


def explain(
    current: Sequence[KeyPart], stored: Sequence[KeyPart] | None, label: str = ""
) -> Explanation:
    """Compare the parts of a cell's key now with those of its stored entry.

    >>> from tore_nb.cells import analyze_cell, cell_key
    >>> a, b = analyze_cell("y = x + 1"), analyze_cell("y = x + 1  # same")
    >>> str(explain(cell_key(b, {"x": 2}).parts, cell_key(a, {"x": 1}).parts, "y"))
    'tcache: y: 1 part(s) changed\\n  changed  input x'
    """
    if stored is None:
        added = tuple(ExplainRow(p.kind, p.name, None, _short(p.digest), "added") for p in current)
        return Explanation(label, added, stored=False)
    old = {(p.kind, p.name): p.digest for p in stored}
    new = {(p.kind, p.name): p.digest for p in current}
    rows = []
    for k in dict.fromkeys([*new, *old]):
        before, after = old.get(k), new.get(k)
        if before is None:
            status = "added"
        elif after is None:
            status = "removed"
        else:
            status = "unchanged" if before == after else "changed"
        rows.append(ExplainRow(k[0], k[1], _short(before), _short(after), status))
    return Explanation(label, tuple(rows))


def _short(digest: str | None) -> str | None:
    return None if digest is None else digest[:12]
