"""The hidden state around one run of a cell: the probes available, snapshots before the run.

Snapshots are taken when first asked for, so a hit pays only for the 'keyed' probes (which are
part of every key) and for those its manifest names; `take_all` takes the rest before a run.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .keys import KeyPart
from .probes import StateProbe, probes

__all__ = ["State", "capture_state"]


class _Snapshots(Mapping[str, Any]):
    """Probe name -> snapshot, captured on first access and then kept."""

    def __init__(self, found: tuple[StateProbe, ...]) -> None:
        self._probes = {p.name: p for p in found}
        self._taken: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self._taken:
            self._taken[name] = self._probes[name].capture()
        return self._taken[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._probes)

    def __len__(self) -> int:
        return len(self._probes)


@dataclass(frozen=True)
class State:
    """The state probes available now, their snapshots before the run, and the digests of the
    'keyed' ones (always part of the key)."""

    probes: tuple[StateProbe, ...]
    snapshots: Mapping[str, Any]
    keyed: tuple[KeyPart, ...]

    def digest(self, name: str) -> str:
        probe = next(p for p in self.probes if p.name == name)
        return probe.digest(self.snapshots[name])

    def take_all(self) -> None:
        """Capture every snapshot not taken yet: the state as it is before a run."""
        for name in self.snapshots:
            self.snapshots[name]


def capture_state() -> State:
    """The probes available now, with the 'keyed' ones digested."""
    found = tuple(p for p in probes() if p.available())
    snapshots = _Snapshots(found)
    keyed = tuple(
        KeyPart("state", p.name, p.digest(snapshots[p.name])) for p in found if p.kind == "keyed"
    )
    return State(found, snapshots, keyed)
