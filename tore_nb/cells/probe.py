"""What a state probe is: the protocol, a base class, and the digest helpers probes share.

The registry and the built-in probes are in `probes` and `probes_builtin`; see `probes` for how
the cell runner uses them.

>>> class Counter(BaseProbe):
...     name, kind, state = "doc.counter", "consumed", [0]
...     def available(self): return True
...     def capture(self): return self.state[0]
...     def restore(self, snapshot): self.state[0] = snapshot
>>> c = Counter(); before = c.capture(); c.state[0] = 2
>>> c.changes(before, c.capture()) is not None
True
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any, Literal, Protocol, runtime_checkable

import xxhash

from ..errors import ToreError
from ..keys import hash_value

__all__ = [
    "KINDS",
    "BaseProbe",
    "ProbeKind",
    "StateProbe",
    "StateRestoreError",
    "canon",
    "getcwd",
    "mapping_changes",
    "mapping_digest",
    "same_value",
]

log = logging.getLogger("tore_nb.cells")

ProbeKind = Literal["consumed", "keyed", "observed"]
KINDS = ("consumed", "keyed", "observed")

# the C function behind os.getcwd: observe() patches os.getcwd, and a probe's own capture must
# not count as the cell reading its working directory
getcwd: Callable[[], str] = getattr(sys.modules[os.name], "getcwd")  # noqa: B009


class StateRestoreError(ToreError, OSError):
    """Live state could not be made equal to a snapshot (the directory to return to is gone).

    >>> issubclass(StateRestoreError, OSError)
    True
    """


@runtime_checkable
class StateProbe(Protocol):
    """One piece of hidden global state: how to snapshot, digest, diff and restore it.

    `seeders` names the functions (``"module.attr"``) that reset a ``consumed`` state without
    reading it; `observe()` wraps them to tell seeding from drawing. Snapshots and changes are
    plain picklable data, never aliased to the live state; `changes` is None when nothing
    changed, and `apply` of it is idempotent.

    >>> from tore_nb.cells.probes import get_probe
    >>> isinstance(get_probe("sys.path"), StateProbe)
    True
    """

    @property
    def name(self) -> str:
        """Unique, e.g. ``"numpy.random"``; registering another of that name replaces it."""
        ...

    @property
    def kind(self) -> ProbeKind:
        """``"consumed"``, ``"keyed"`` or ``"observed"`` (see the module's docstring)."""
        ...

    @property
    def seeders(self) -> tuple[str, ...]:
        """``"module.attr"`` names of functions that reset a consumed state (may be empty)."""
        ...

    def available(self) -> bool:
        """Whether the state exists now (its module is imported); never imports it."""
        ...

    def capture(self) -> Any:
        """A snapshot of the live state."""
        ...

    def digest(self, snapshot: Any) -> str:
        """A digest of a snapshot, equal across processes and `PYTHONHASHSEED` values."""
        ...

    def restore(self, snapshot: Any) -> None:
        """Make the live state equal to `snapshot`."""
        ...

    def changes(self, before: Any, after: Any) -> Any:
        """What a run changed between two snapshots; None when nothing."""
        ...

    def apply(self, changes: Any) -> None:
        """Make the live state show `changes` (the result of `changes`), leaving the rest."""
        ...


class BaseProbe:
    """Defaults for a probe whose state changes as a whole (a random generator): `changes` is
    the later snapshot when the digests differ, `apply` restores it.

    >>> BaseProbe().changes((3, (1,), None), (3, (1,), None)) is None
    True
    """

    name: str = ""
    kind: ProbeKind = "consumed"
    seeders: tuple[str, ...] = ()

    def available(self) -> bool:
        raise NotImplementedError

    def capture(self) -> Any:
        raise NotImplementedError

    def digest(self, snapshot: Any) -> str:
        return hash_value(snapshot)

    def restore(self, snapshot: Any) -> None:
        raise NotImplementedError

    def changes(self, before: Any, after: Any) -> Any:
        return None if self.digest(before) == self.digest(after) else after

    def apply(self, changes: Any) -> None:
        if changes is not None:
            self.restore(changes)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} ({self.kind})>"


# -- digests ------------------------------------------------------------------------------------
PLAIN = frozenset({str, int, float, bool, type(None), bytes})


def canon(value: Any) -> str:
    """A canonical text of a setting's value: repr for plain values (fast, and repr of these is
    their definition), the content digest for anything else."""
    kind = type(value)
    if kind in PLAIN:
        return repr(value)
    if kind is list or kind is tuple:
        inner = ",".join(canon(v) for v in value)
        return f"[{inner}]" if kind is list else f"({inner})"
    if callable(getattr(value, "by_key", None)):  # a Cycler: its set of keys hashes unordered
        value = ("cycler", value.by_key())
    try:
        return "#" + hash_value(value)
    except TypeError:  # an unhashable setting counts by its type only
        return f"?{kind.__module__}.{kind.__qualname__}"


def mapping_digest(tag: str, mapping: Mapping[str, Any]) -> str:
    h = xxhash.xxh3_128(tag.encode())
    for key in sorted(mapping):
        h.update(f"\0{key}\x1f{canon(mapping[key])}".encode())
    return h.hexdigest()


def same_value(a: Any, b: Any) -> bool:
    return a is b or (type(a) is type(b) and canon(a) == canon(b))


def mapping_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in after.items() if k not in before or not same_value(before[k], v)}
