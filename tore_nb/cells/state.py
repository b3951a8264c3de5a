"""The hidden state around one run of a cell: the probes available, snapshots before the run."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .keys import KeyPart
from .probes import StateProbe, probes

__all__ = ["State", "capture_state"]


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


def capture_state() -> State:
    found = tuple(p for p in probes() if p.available())
    snapshots = {p.name: p.capture() for p in found}
    keyed = tuple(
        KeyPart("state", p.name, p.digest(snapshots[p.name])) for p in found if p.kind == "keyed"
    )
    return State(found, snapshots, keyed)
