"""What happened to a cached cell, and the one line that says so.

`CellOutcome.message` is quiet where nothing worth saying happened: a hit that saved little, a
cell stored for the first time. It says what a real saving was, what changed when a cached
cell re-ran (`tcache: re-ran: seed changed`), and why a cell could not be cached.

>>> CellOutcome("hit", tier="disk", saved_seconds=3.0, variables=("df",)).message()
'tcache: restored df from disk (saved 3.00 s)'
>>> CellOutcome("hit", saved_seconds=0.001).message() is None
True
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

from ..errors import CacheWarning
from .explanation import explain
from .keys import CellKey, KeyPart

__all__ = [
    "WORTH_SAYING",
    "CacheWarning",
    "CellError",
    "CellOptions",
    "CellOutcome",
    "Status",
    "format_bytes",
    "format_seconds",
    "warn_uncached",
]

# A hit that saved less than this is not worth a line (unless verbose)
WORTH_SAYING = 0.25


class CellError(Exception):
    """Raised by a `run` callable when the cell failed; wraps the cell's own exception."""

    def __init__(self, error: BaseException | None) -> None:
        super().__init__(f"the cell raised {type(error).__name__}: {error}")
        self.error = error


Status = Literal["hit", "stored", "not-cached", "off"]


@dataclass(frozen=True)
class CellOptions:
    """The options of one `%%tcache` run (see the magic's help)."""

    name: str | None = None
    ttl: float | None = None
    tiers: tuple[str, ...] | None = None
    force: bool = False
    off: bool = False
    variables: tuple[str, ...] | None = None
    deps: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    # warn through `warnings` when the cell is not cached (the magics show a note instead)
    warn: bool = True
    # a run faster than this is not stored: its hit would cost as much (`%tcache auto`)
    min_seconds: float = 0.0
    # a run that acted outside the kernel (`effects`) is not stored: a hit would not act again
    # (`%tcache auto`, which caches cells nobody chose; a `%%tcache` line is the user's word)
    rerun_effects: bool = False


@dataclass(frozen=True)
class CellOutcome:
    """What happened to a cell: served ('hit'), run and 'stored', run but 'not-cached' (with a
    reason), or run with caching 'off'. `parts` are the key parts of this run (dependencies
    included), `previous` those of the entry stored before under the same label."""

    status: Status
    key: CellKey | None = None
    tier: str | None = None
    seconds: float = 0.0
    compute_seconds: float = 0.0
    saved_seconds: float = 0.0
    variables: tuple[str, ...] = ()
    reason: str | None = None
    previous: tuple[KeyPart, ...] | None = None
    nbytes: int = 0
    parts: tuple[KeyPart, ...] = ()
    cheap: bool = False  # not stored: cheaper than its own hit

    def changed(self) -> tuple[str, ...]:
        """What differs from the entry stored before: 'x', 'code', 'file data.csv'..."""
        if self.previous is None:
            return ()
        rows = explain(self.parts, self.previous).changed
        if any(r.part == "code" for r in rows):
            return ()  # an edited cell, or another cell binding the same names: no news
        # a part added or removed follows from another change (new code reads other names)
        shown = [r for r in rows if r.status == "changed"] or rows
        return tuple(_describe(r.part, r.name) for r in shown)

    def message(self, verbose: bool = False) -> str | None:
        """The one short line shown under a cell, or None when nothing is worth saying."""
        if self.status == "hit":
            if not verbose and self.saved_seconds < WORTH_SAYING:
                return None
            names = ", ".join(self.variables) or "outputs"
            if verbose:
                return (
                    f"tcache: {names} restored from {self.tier} in {format_seconds(self.seconds)}"
                    f" (saved {format_seconds(self.saved_seconds)})"
                )
            return (
                f"tcache: restored {_clip(names)} from {self.tier}"
                f" (saved {format_seconds(self.saved_seconds)})"
            )
        if self.status == "stored":
            changed = self.changed()
            return f"tcache: re-ran: {_clip(', '.join(changed))} changed" if changed else None
        if self.status == "not-cached":
            return None if self.cheap else f"tcache: not cached: {self.reason}"
        return "tcache: off" if verbose else None


def _describe(kind: str, name: str) -> str:
    if kind == "input":
        return name
    if kind in ("code", "format"):
        return kind
    if kind == "state":
        return f"{name} state"
    if kind in ("cwd", "sys.path"):
        return kind
    return f"{kind} {name}"


def _clip(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def format_seconds(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    if seconds < 120:
        return f"{seconds:.2f} s"
    return f"{seconds / 60:.1f} min"


def format_bytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.1f} kB"


def warn_uncached(message: str) -> None:
    """Say through `warnings` that a cell ran uncached, and why."""
    # shown as "tcache:1: CacheWarning: ..." rather than pointing into this module
    warnings.warn_explicit(message, CacheWarning, "tcache", 1, module="tore_nb.cells")
