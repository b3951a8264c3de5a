"""The probes tore_nb ships: random generators, library settings, the process's own state.

Each one is `available()` only while its library is in `sys.modules`; none imports it.

>>> PythonRandomProbe().kind, CwdProbe().kind, RcParamsProbe().kind
('consumed', 'observed', 'keyed')
"""

from __future__ import annotations

import logging
import os
import struct
import sys
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import xxhash

from ..keys import hash_value
from ..keys import qualname as _qualname
from .probe import BaseProbe, ProbeKind, StateRestoreError, getcwd, mapping_changes, mapping_digest

__all__ = [
    "CwdProbe",
    "DecimalProbe",
    "EnvironProbe",
    "LoggingProbe",
    "NumpyRandomProbe",
    "PandasOptionsProbe",
    "PythonRandomProbe",
    "RcParamsProbe",
    "RecursionLimitProbe",
    "SysPathProbe",
    "WarningsProbe",
]

log = logging.getLogger("tore_nb.cells")


# -- random generators --------------------------------------------------------------------------
class NumpyRandomProbe(BaseProbe):
    """numpy's legacy global generator (`np.random.seed`, `np.random.rand`, ...), the
    RandomState `np.random.mtrand._rand`; a snapshot is its `get_state(legacy=False)` dict.

    >>> import numpy as np
    >>> p = NumpyRandomProbe(); np.random.seed(1); s = p.capture(); a = np.random.rand()
    >>> p.restore(s); a == np.random.rand()
    True
    """

    name = "numpy.random"
    kind: ProbeKind = "consumed"
    seeders: tuple[str, ...] = ("numpy.random.seed", "numpy.random.set_state")

    @staticmethod
    def _rand() -> Any:
        return sys.modules["numpy.random.mtrand"]._rand

    def available(self) -> bool:
        mtrand = sys.modules.get("numpy.random.mtrand")
        return mtrand is not None and hasattr(mtrand, "_rand")

    def capture(self) -> Any:
        return self._rand().get_state(legacy=False)

    def restore(self, snapshot: Any) -> None:
        rand = self._rand()
        wanted = snapshot["bit_generator"]
        if type(rand._bit_generator).__name__ != wanted:  # set_bit_generator() ran meanwhile
            random_module = sys.modules["numpy.random"]
            random_module.set_bit_generator(getattr(random_module, wanted)())
        rand.set_state(snapshot)


class PythonRandomProbe(BaseProbe):
    """The `random` module's shared generator; a snapshot is `random.getstate()`.

    >>> import random
    >>> p = PythonRandomProbe(); s = p.capture(); a = random.random()
    >>> p.restore(s); a == random.random()
    True
    """

    name = "random"
    kind: ProbeKind = "consumed"
    seeders: tuple[str, ...] = ("random.seed", "random.setstate")

    def available(self) -> bool:
        return "random" in sys.modules

    def capture(self) -> Any:
        return sys.modules["random"].getstate()

    def digest(self, snapshot: Any) -> str:
        version, words, gauss = snapshot
        try:  # 625 ints: packing is ~20x faster than hash_value's per-item walk
            packed = struct.pack(f"<{len(words)}Q", *words)
        except (struct.error, TypeError):
            return hash_value(snapshot)
        return xxhash.xxh3_128_hexdigest(f"random:{version}:{gauss!r}:".encode() + packed)

    def restore(self, snapshot: Any) -> None:
        sys.modules["random"].setstate(snapshot)


# -- library settings ---------------------------------------------------------------------------
# what differs between a terminal and a kernel running the same notebook, or is GUI session
# state: never a key part, never restored
_RC_SESSION = frozenset(
    {
        "backend",
        "backend_fallback",
        "interactive",
        "toolbar",
        "tk.window_focus",
        "macosx.window_mode",
        "savefig.directory",
    }
)


def _rc_session(key: str) -> bool:
    return key in _RC_SESSION or key.startswith("webagg.")


class _SettingsProbe:
    """A probe of named settings (rcParams, pandas options): digested as a mapping, changed
    and restored key by key, through `apply` (which each subclass writes)."""

    name = ""
    kind: ProbeKind = "keyed"
    seeders: tuple[str, ...] = ()

    def capture(self) -> dict[str, Any]:
        raise NotImplementedError

    def apply(self, changes: dict[str, Any] | None) -> None:
        raise NotImplementedError

    _last: tuple[dict[str, Any], str] | None = None

    def digest(self, snapshot: dict[str, Any]) -> str:
        # settings rarely change between cells: an equal snapshot (a C-speed comparison) has
        # the digest of the last one
        last = self._last
        if last is not None and last[0] == snapshot:
            return last[1]
        digest = mapping_digest(self.name, snapshot)
        self._last = (snapshot, digest)
        return digest

    def restore(self, snapshot: dict[str, Any]) -> None:
        self.apply(self.changes(self.capture(), snapshot))

    def changes(self, before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any] | None:
        return mapping_changes(before, after) or None


class RcParamsProbe(_SettingsProbe):
    """matplotlib's `rcParams`, less the backend and other per-session keys; restoring sets
    only the keys that differ, through `rcParams[key] = value` (validated, no backend switch).

    >>> import matplotlib as mpl
    >>> p = RcParamsProbe(); s = p.capture(); mpl.rcParams["lines.linewidth"] = 7.0
    >>> p.changes(s, p.capture())
    {'lines.linewidth': 7.0}
    >>> p.restore(s); mpl.rcParams["lines.linewidth"] == s["lines.linewidth"]
    True
    """

    name = "matplotlib.rcParams"
    kind: ProbeKind = "keyed"
    seeders: tuple[str, ...] = ()

    def available(self) -> bool:
        return hasattr(sys.modules.get("matplotlib"), "rcParams")

    def capture(self) -> dict[str, Any]:
        rc = sys.modules["matplotlib"].rcParams
        # dict.items: RcParams.__getitem__ would resolve an automatic backend (import pyplot)
        session = _RC_SESSION  # inlined _rc_session: this runs for ~340 keys
        return {
            k: (list(v) if type(v) is list else v)
            for k, v in dict.items(rc)
            if k not in session and not k.startswith("webagg.")
        }

    def apply(self, changes: dict[str, Any] | None) -> None:
        if not changes:
            return
        rc = sys.modules["matplotlib"].rcParams
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a deprecated key warns on every set
            for key, value in changes.items():
                if _rc_session(key):
                    continue
                try:
                    rc[key] = list(value) if type(value) is list else value
                except (KeyError, ValueError, TypeError):  # a key this version no longer has
                    log.debug("rcParams[%r] not restored", key)


def _pandas_config() -> Any:
    return sys.modules.get("pandas._config.config")


def _flatten(tree: Mapping[str, Any], prefix: str, out: dict[str, Any]) -> None:
    for key, value in tree.items():
        if isinstance(value, dict):
            _flatten(value, f"{prefix}{key}.", out)
        else:
            out[prefix + key] = value


class PandasOptionsProbe(_SettingsProbe):
    """Every pandas option (`pd.options`) as a flat dict, less deprecated ones; restoring calls
    `pd.set_option` for the keys that differ, skipping any that now fail.

    >>> import pandas as pd
    >>> p = PandasOptionsProbe(); s = p.capture(); pd.set_option("display.max_rows", 7)
    >>> p.changes(s, p.capture())
    {'display.max_rows': 7}
    >>> p.restore(s); pd.get_option("display.max_rows") == s["display.max_rows"]
    True
    """

    name = "pandas.options"
    kind: ProbeKind = "keyed"
    seeders: tuple[str, ...] = ()

    def available(self) -> bool:
        return "pandas" in sys.modules and _pandas_config() is not None

    def capture(self) -> dict[str, Any]:
        config = _pandas_config()
        out: dict[str, Any] = {}
        tree = getattr(config, "_global_config", None)
        deprecated = getattr(config, "_deprecated_options", None)
        if isinstance(tree, dict) and isinstance(deprecated, dict):
            # pandas' own store: 15 us, where get_option per key takes 100 us
            _flatten(tree, "", out)
            for key in deprecated:
                out.pop(key, None)
            return out
        return self._capture_public()

    @staticmethod
    def _capture_public() -> dict[str, Any]:
        pd = sys.modules["pandas"]
        out: dict[str, Any] = {}

        def walk(node: Any, prefix: str) -> None:
            for key in dir(node):
                value = getattr(node, key)
                if type(value) is type(pd.options):
                    walk(value, f"{prefix}{key}.")
                else:
                    out[prefix + key] = value

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            walk(pd.options, "")
        return out

    def apply(self, changes: dict[str, Any] | None) -> None:
        if not changes:
            return
        set_option = sys.modules["pandas"].set_option
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecated options warn when set
            for key, value in changes.items():
                try:
                    set_option(key, value)
                except Exception:  # removed or now-invalid option: the rest still applies
                    log.debug("pandas option %r not restored", key)


# -- the process ---------------------------------------------------------------------------------
class EnvironProbe:
    """`os.environ` as a dict; changes are ``{key: value}`` with None for a removed key, applied
    through `os.environ` (so `putenv` runs) and only for those keys.

    >>> p = EnvironProbe(); s = p.capture()
    >>> p.changes(s, {**s, "TORE_DOC": "1"})
    {'TORE_DOC': '1'}
    >>> p.digest_keys(s, ["TORE_DOC"]) == p.digest_keys({"TORE_DOC": ""}, ["TORE_DOC"])
    False
    """

    name = "os.environ"
    kind: ProbeKind = "observed"
    seeders: tuple[str, ...] = ()

    def available(self) -> bool:
        return True

    def capture(self) -> dict[str, str]:
        env: Any = os.environ
        data = getattr(env, "_data", None)
        if isinstance(data, dict):
            # the raw store: iterating os.environ itself would count as the cell reading all
            # of it while observe() watches
            dk, dv = env.decodekey, env.decodevalue
            return {dk(k): dv(v) for k, v in data.items()}
        return dict(os.environ)

    def digest(self, snapshot: Mapping[str, str]) -> str:
        return mapping_digest("environ", snapshot)

    def digest_keys(self, snapshot: Mapping[str, str], keys: Iterable[str]) -> str:
        """Digest of the values of `keys` only (an unset key differs from an empty one)."""
        return mapping_digest("environ-keys", {k: snapshot.get(k) for k in set(keys)})

    def restore(self, snapshot: Mapping[str, str]) -> None:
        self.apply(self.changes(self.capture(), snapshot))

    def changes(
        self, before: Mapping[str, str], after: Mapping[str, str]
    ) -> dict[str, str | None] | None:
        delta: dict[str, str | None] = {k: v for k, v in after.items() if before.get(k) != v}
        delta.update({k: None for k in before if k not in after})
        return delta or None

    def apply(self, changes: Mapping[str, str | None] | None) -> None:
        for key, value in (changes or {}).items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class SysPathProbe:
    """`sys.path` as a list. Its changes keep where an entry went: before every kept entry
    (``sys.path.insert(0, ...)``) or after a given one (``append``); `apply` adds only what is
    missing and removes what the run removed, so it is idempotent.

    >>> p = SysPathProbe()
    >>> c = p.changes(["/a", "/b"], ["/x", "/a", "/b", "/y"]); c
    {'front': ['/x'], 'after': [['/b', '/y']], 'removed': []}
    """

    name = "sys.path"
    kind: ProbeKind = "observed"
    seeders: tuple[str, ...] = ()

    def available(self) -> bool:
        return True

    def capture(self) -> list[str]:
        return list(sys.path)

    def digest(self, snapshot: list[str]) -> str:
        return xxhash.xxh3_128_hexdigest(("sys.path\0" + "\0".join(map(str, snapshot))).encode())

    def restore(self, snapshot: list[str]) -> None:
        sys.path[:] = snapshot  # in place: importers hold a reference to the list

    def changes(self, before: list[str], after: list[str]) -> dict[str, list[Any]] | None:
        kept = set(before)
        now = set(after)
        front: list[str] = []
        placed: list[list[str]] = []
        anchor: str | None = None
        for entry in after:
            if entry in kept:
                anchor = entry
            elif anchor is None:
                front.append(entry)
            else:
                placed.append([anchor, entry])
        removed = [e for e in before if e not in now]
        if not (front or placed or removed):
            return None
        return {"front": front, "after": placed, "removed": removed}

    def apply(self, changes: Mapping[str, list[Any]] | None) -> None:
        if not changes:
            return
        path = [e for e in sys.path if e not in set(changes["removed"])]
        for anchor, entry in changes["after"]:
            if entry not in path:
                path.insert(path.index(anchor) + 1 if anchor in path else len(path), entry)
        front = [e for e in changes["front"] if e not in path]
        sys.path[:] = front + path


class CwdProbe:
    """The working directory; None when it no longer exists. Restoring to a directory that is
    gone raises `StateRestoreError`.

    >>> p = CwdProbe(); p.changes("/a", "/a") is None, p.changes("/a", "/b")
    (True, '/b')
    """

    name = "cwd"
    kind: ProbeKind = "observed"
    seeders: tuple[str, ...] = ()

    def available(self) -> bool:
        return True

    def capture(self) -> str | None:
        try:
            return getcwd()
        except OSError:  # deleted under us
            return None

    def digest(self, snapshot: str | None) -> str:
        return xxhash.xxh3_128_hexdigest(f"cwd\0{snapshot}".encode())

    def restore(self, snapshot: str | None) -> None:
        if snapshot is None:
            return
        try:
            os.chdir(snapshot)
        except OSError as exc:
            raise StateRestoreError(
                f"cannot change the working directory back to {snapshot!r}: {exc.strerror}"
            ) from exc

    def changes(self, before: str | None, after: str | None) -> str | None:
        return None if before == after else after

    def apply(self, changes: str | None) -> None:
        self.restore(changes)


class WarningsProbe(BaseProbe):
    """`warnings.filters`: which warnings show (`warnings.simplefilter("ignore")`). Read silently
    whenever code warns."""

    name = "warnings.filters"
    kind: ProbeKind = "keyed"

    def available(self) -> bool:
        return True

    def capture(self) -> tuple[Any, ...]:
        return tuple(warnings.filters)

    def digest(self, snapshot: tuple[Any, ...]) -> str:
        return hash_value(
            [
                (
                    action,
                    getattr(msg, "pattern", msg),
                    _qualname(cat),
                    getattr(mod, "pattern", mod),
                    n,
                )
                for action, msg, cat, mod, n in snapshot
            ]
        )

    def restore(self, snapshot: tuple[Any, ...]) -> None:
        filters: Any = warnings.filters
        filters[:] = list(snapshot)
        mutated = getattr(warnings, "_filters_mutated", None)
        if callable(mutated):  # drop the per-module "already warned" caches, as filterwarnings does
            mutated()


class DecimalProbe(BaseProbe):
    """The `decimal` module's context of this thread: precision, rounding, traps."""

    name = "decimal.context"
    kind: ProbeKind = "keyed"

    def available(self) -> bool:
        return "decimal" in sys.modules

    def capture(self) -> tuple[Any, ...]:
        c = sys.modules["decimal"].getcontext()
        traps = tuple(sorted(t.__name__ for t, on in c.traps.items() if on))
        return (c.prec, c.rounding, c.Emin, c.Emax, c.capitals, c.clamp, traps)

    def restore(self, snapshot: tuple[Any, ...]) -> None:
        decimal = sys.modules["decimal"]
        c = decimal.getcontext()
        c.prec, c.rounding, c.Emin, c.Emax, c.capitals, c.clamp, traps = snapshot
        for signal in list(c.traps):
            c.traps[signal] = signal.__name__ in traps


class LoggingProbe(BaseProbe):
    """The root logger's level and handlers (`logging.basicConfig`). Handlers hold streams and
    files: a hit cannot make them again, so a cell that changes them runs uncached
    (`restorable` is False)."""

    name = "logging.root"
    kind: ProbeKind = "keyed"
    restorable = False

    def available(self) -> bool:
        return "logging" in sys.modules

    def capture(self) -> tuple[Any, ...]:
        root = sys.modules["logging"].getLogger()
        return (root.level, tuple(_handler_text(h) for h in root.handlers))

    def restore(self, snapshot: tuple[Any, ...]) -> None:
        raise StateRestoreError("the root logger's handlers cannot be made again")


def _handler_text(handler: Any) -> str:
    formatter = getattr(handler, "formatter", None)
    fmt = getattr(formatter, "_fmt", None)
    stream = getattr(handler, "stream", None)
    target = getattr(handler, "baseFilename", None) or type(stream).__name__
    return f"{type(handler).__qualname__}:{handler.level}:{fmt}:{target}"


class RecursionLimitProbe(BaseProbe):
    """`sys.setrecursionlimit`."""

    name = "sys.recursionlimit"
    kind: ProbeKind = "keyed"

    def available(self) -> bool:
        return True

    def capture(self) -> int:
        return sys.getrecursionlimit()

    def digest(self, snapshot: int) -> str:
        return str(snapshot)

    def restore(self, snapshot: int) -> None:
        sys.setrecursionlimit(snapshot)
