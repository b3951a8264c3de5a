"""Hidden global state a cell reads or changes without naming it, as a registry of probes.

A cell that draws from `np.random` depends on the seed an earlier cell set, and leaves the
generator where its draws ended; `plt.style.use`, `pd.set_option`, `sys.path.append`,
`os.environ[...] = ...` and `os.chdir` change what later cells see. None of this is a variable,
so the cell runner asks each *probe* for a snapshot before and after a run:

- ``consumed`` state changes when it is used (random generators): an input of the cell when it
  changed during the run and the cell did not seed it before its first draw (see
  `observe.Observation.seeded`), an output when it changed;
- ``keyed`` state is read silently by library code (matplotlib's rcParams when drawing, pandas'
  display options when printing): always a key part while its library is loaded;
- ``observed`` state is an input only when the observer saw the cell read it (environment keys,
  the working directory, `sys.path` on imports), an output when it changed.

A hit applies the cell's own `changes(before, after)` with `apply`, not a whole snapshot, so
that what differs between sessions (`JPY_PARENT_PID`, the backend) is never overwritten.

A probe never imports its library: it is `available()` only while the library is in
`sys.modules`, so that `import tore_nb` stays light.

>>> [p.name for p in probes()]  # doctest: +NORMALIZE_WHITESPACE
['numpy.random', 'random', 'matplotlib.rcParams', 'pandas.options', 'os.environ', 'sys.path',
 'cwd', 'warnings.filters', 'decimal.context', 'logging.root', 'sys.recursionlimit']
>>> p = get_probe("random"); before = p.capture()
>>> import random; _ = random.random()
>>> p.digest(before) == p.digest(p.capture())
False
>>> p.restore(before); p.digest(before) == p.digest(p.capture())
True

A third-party generator joins by registering a probe; `BaseProbe` supplies whole-state
`changes` and `apply` (torch shown, not run)::

    class TorchRandom(BaseProbe):
        name = "torch.random"
        kind = "consumed"
        seeders = ("torch.manual_seed", "torch.random.manual_seed", "torch.set_rng_state")

        def available(self) -> bool:
            return "torch" in sys.modules

        def capture(self) -> bytes:
            return sys.modules["torch"].get_rng_state().numpy().tobytes()

        def digest(self, snapshot: bytes) -> str:
            return hash_bytes(snapshot)

        def restore(self, snapshot: bytes) -> None:
            torch = sys.modules["torch"]
            torch.set_rng_state(torch.frombuffer(bytearray(snapshot), dtype=torch.uint8))

    register_probe(TorchRandom())
"""

from __future__ import annotations

import logging
from typing import Any

from .probe import KINDS, BaseProbe, ProbeKind, StateProbe, StateRestoreError
from .probes_builtin import (
    CwdProbe,
    DecimalProbe,
    EnvironProbe,
    LoggingProbe,
    NumpyRandomProbe,
    PandasOptionsProbe,
    PythonRandomProbe,
    RcParamsProbe,
    RecursionLimitProbe,
    SysPathProbe,
    WarningsProbe,
)

__all__ = [
    "BaseProbe",
    "CwdProbe",
    "DecimalProbe",
    "EnvironProbe",
    "LoggingProbe",
    "NumpyRandomProbe",
    "PandasOptionsProbe",
    "ProbeKind",
    "PythonRandomProbe",
    "RcParamsProbe",
    "RecursionLimitProbe",
    "StateProbe",
    "StateRestoreError",
    "SysPathProbe",
    "WarningsProbe",
    "capture_all",
    "get_probe",
    "probes",
    "register_probe",
    "unregister_probe",
]

log = logging.getLogger("tore_nb.cells")


# -- the registry -------------------------------------------------------------------------------
_REGISTRY: dict[str, StateProbe] = {}


def register_probe(probe: StateProbe) -> None:
    """Add a probe, or replace the one of the same name in its place.

    >>> class Counter(BaseProbe):
    ...     name, kind, state = "doc.counter", "consumed", [0]
    ...     def available(self): return True
    ...     def capture(self): return self.state[0]
    ...     def restore(self, snapshot): self.state[0] = snapshot
    >>> register_probe(Counter()); probes()[-1].name
    'doc.counter'
    >>> _ = unregister_probe("doc.counter")
    """
    if not isinstance(getattr(probe, "name", None), str) or not probe.name:
        raise ValueError(f"a probe needs a name: {probe!r}")
    if getattr(probe, "kind", None) not in KINDS:
        raise ValueError(f"probe {probe.name!r}: kind must be one of {KINDS}")
    _REGISTRY[probe.name] = probe


def unregister_probe(name: str) -> StateProbe | None:
    """Remove a probe by name; the removed one, or None.

    >>> unregister_probe("no such probe") is None
    True
    """
    return _REGISTRY.pop(name, None)


def probes() -> tuple[StateProbe, ...]:
    """The registered probes, in registration order.

    >>> probes()[0].name
    'numpy.random'
    """
    return tuple(_REGISTRY.values())


def get_probe(name: str) -> StateProbe:
    """The probe of that name; KeyError when none.

    >>> get_probe("cwd").kind
    'observed'
    """
    return _REGISTRY[name]


def capture_all() -> dict[str, Any]:
    """A snapshot of every available probe, by name; a probe whose capture fails is left out
    (and logged), as if unavailable.

    >>> {"os.environ", "sys.path", "cwd"} <= set(capture_all())
    True
    """
    out: dict[str, Any] = {}
    for probe in tuple(_REGISTRY.values()):
        try:
            if probe.available():
                out[probe.name] = probe.capture()
        except Exception:
            log.warning("state probe %r failed to capture", probe.name, exc_info=True)
    return out


for _probe in (
    NumpyRandomProbe(),
    PythonRandomProbe(),
    RcParamsProbe(),
    PandasOptionsProbe(),
    EnvironProbe(),
    SysPathProbe(),
    CwdProbe(),
    WarningsProbe(),
    DecimalProbe(),
    LoggingProbe(),
    RecursionLimitProbe(),
):
    register_probe(_probe)
del _probe
