"""Dependencies a cell showed only by running: files, folders, env variables, hidden state.

A cell's key is made before it runs, from what its code may read (`keys.cell_key`). What it
read that its code does not spell out (the CSV `pd.read_csv(path)` opened, the `os.environ`
key a library looked up, numpy's global random state it drew from, a variable of an earlier
cell that one of its outputs refers to) is only known once it ran. Such a cell is stored in
two steps, as ccache's manifests do: under its key a `Manifest` lists the dependencies seen by
its runs; its entry lies under a second key that adds their digests as they were before the
run. A lookup reads the manifest, digests those dependencies now, and finds the entry only if
they are unchanged.

>>> import os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "data.csv")
>>> _ = open(path, "w").write("a\\n1\\n")
>>> dep = Dependency("file", path)
>>> current_digest(dep, {}) == current_digest(dep, {})
True
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..fingerprint import dependency_token
from ..keys import hash_value
from .keys import KeyPart, file_digest

__all__ = [
    "MANIFEST_FORMAT",
    "PER_LAUNCH_ENV",
    "Dependency",
    "Manifest",
    "current_digest",
    "dependent_key",
    "merge",
]

MANIFEST_FORMAT = 1
MAX_VARIANTS = 8  # sets of dependencies kept per key: one per path the cell has taken
#: set by jupyter_client in each kernel it starts: the id (Windows: handles) of the process that
#: started it. They name a process, as `os.getpid()` does, which is no input of a cell either;
#: were they, a cell that hands the environment to a program (`subprocess.run`) would miss in
#: every new kernel.
PER_LAUNCH_ENV = frozenset({"JPY_PARENT_PID", "JPY_INTERRUPT_EVENT", "IPY_INTERRUPT_EVENT"})

Kind = Literal["file", "dir", "stat", "env", "cwd", "sys.path", "state", "name"]


@dataclass(frozen=True, order=True)
class Dependency:
    """One thing a run read: a 'file', a 'dir' it listed or a path it 'stat'ed (as the cell
    gave it: a relative path resolves against the working folder of the lookup, as the
    cell's would), an 'env' variable, the 'cwd', 'sys.path' (a new import searched it), a
    'state' probe by name, or a 'name' of the namespace that an output refers to."""

    kind: Kind
    name: str = ""

    def part(self, digest: str) -> KeyPart:
        return KeyPart(self.kind, self.name, digest)


@dataclass(frozen=True)
class Manifest:
    """What lies under a cell's key when its runs read more than its code says: the sets of
    dependencies seen, newest first."""

    format: int
    variants: tuple[tuple[Dependency, ...], ...]


# Pickled into cache entries: a stable class path
Manifest.__module__ = "tore_nb.cells"
Dependency.__module__ = "tore_nb.cells"


def current_digest(
    dep: Dependency,
    namespace: Mapping[str, Any],
    probes: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    """The digest of a dependency now (`probes`: state name -> digest; `env`: a snapshot of
    the environment, default `os.environ`)."""
    kind, name = dep.kind, dep.name
    if kind == "file":
        return file_digest(name) if not os.path.isdir(name) else "directory"
    if kind == "stat":  # os.path.exists / isfile / getsize: the kind and size of the path
        try:
            st = os.stat(name)
        except OSError:
            return "missing"
        return "dir" if stat.S_ISDIR(st.st_mode) else f"file:{st.st_size}"
    if kind == "dir":
        try:
            return hash_value(sorted(os.listdir(name)))
        except OSError as exc:
            return f"unreadable:{type(exc).__name__}"
    if kind == "env":
        environ = os.environ if env is None else env
        if name == "*":  # the whole environment went through: a variable added counts too
            return hash_value(sorted((k, v) for k, v in environ.items() if k not in PER_LAUNCH_ENV))
        value = environ.get(name)
        return "unset" if value is None else hash_value(value)
    if kind == "cwd":
        return hash_value(os.getcwd())
    if kind == "sys.path":
        import sys

        return hash_value(list(sys.path))
    if kind == "state":
        return str(probes.get(name, "unavailable")) if probes is not None else "unavailable"
    if kind == "name":
        if name not in namespace:
            return "undefined"
        try:
            return dependency_token(namespace[name], strict=True)
        except TypeError:
            return "unhashable"
    raise ValueError(f"unknown dependency kind {kind!r}")


def dependent_key(key: str, parts: Sequence[KeyPart]) -> str:
    """The key of the entry stored under `key` with these dependency digests.

    >>> dependent_key("k", [KeyPart("env", "X", "1")]) != dependent_key("k", [])
    True
    """
    return f"{key}:{hash_value([(p.kind, p.name, p.digest) for p in parts])[:24]}"


def merge(manifest: Manifest | None, deps: Iterable[Dependency]) -> Manifest:
    """The manifest with `deps` as its newest variant."""
    new = tuple(sorted(set(deps)))
    old = [v for v in (manifest.variants if manifest is not None else ()) if v != new]
    return Manifest(MANIFEST_FORMAT, (new, *old)[:MAX_VARIANTS])
