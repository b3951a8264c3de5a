"""Cell keys: pure and inspectable, made of parts so that `explain` can say which one changed.

`cell_key` turns a `CellAnalysis` and a namespace into a key made of parts: a format version,
the normalised code, a digest of every input (modules by name and version, local modules by the
code of the attributes the cell reads from them, user functions and classes by code fingerprint,
other values by content), extra `deps`, and files by content.

An input that cannot be content-hashed (an open file, a lock, a connection) raises
`UnhashableInput`: hashing it by identity would give keys that differ in every process. A user
type can define `__tore_hash__` to say what counts.
"""

from __future__ import annotations

import builtins
import glob
import os
import re
import sys
import types
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import xxhash

from ..code_effects import global_effects
from ..code_origin import find_origin, is_local_module, library_dirs, module_version
from ..fingerprint import dependency_token
from ..keys import hash_value
from .analysis import CellAnalysis
from .probes import probes

__all__ = [
    "CELL_FORMAT",
    "LATEST_PREFIX",
    "PREFIX",
    "CellKey",
    "IndirectRead",
    "KeyPart",
    "UnhashableInput",
    "cell_key",
    "cell_label",
    "file_digest",
]

CELL_FORMAT = 3
PREFIX = "tcache:cell:"
LATEST_PREFIX = "tcache:latest:"
_BUILTIN_NAMES = frozenset(dir(builtins))
_LABEL_SAFE = re.compile(r"[^A-Za-z0-9_.\-+]")


@dataclass(frozen=True)
class KeyPart:
    """One component of a cell's key: kind ('format', 'code', 'input', 'file', 'option'),
    name and digest."""

    kind: str
    name: str
    digest: str


# Pickled into cell entries: keep the class path it has always had, tore_nb.cells.KeyPart,
# so that stored entries stay readable by older and newer versions alike.
KeyPart.__module__ = "tore_nb.cells"


@dataclass(frozen=True)
class CellKey:
    """A cell's cache key and the parts it was made from (kept so `explain` can diff them)."""

    key: str
    label: str
    parts: tuple[KeyPart, ...]
    # inputs the cell's code does not name, changed by the functions it calls (`items` of
    # `def add(v): items.append(v)`)
    changed_by_calls: tuple[str, ...] = ()


class IndirectRead(ValueError):
    """A function the cell calls reads names no code spells out (`globals()[name]`, `eval`),
    or changes a local module's state: the cell cannot be keyed, or restored."""


class UnhashableInput(TypeError):
    """An input of the cell cannot be content-hashed, so the cell cannot be keyed."""

    def __init__(self, name: str, error: BaseException) -> None:
        super().__init__(f"input {name!r} cannot be content-hashed ({error})")
        self.name = name


def cell_label(analysis: CellAnalysis, name: str | None = None) -> str:
    """A readable label for a cell's keys: its `--name`, else the names it assigns."""
    if name:
        return _LABEL_SAFE.sub("_", name)[:80]
    shown = "+".join(n for n in analysis.outputs if n not in analysis.definitions)[:60]
    # a cell that assigns nothing (`df.describe()`) by its code: such cells share no label
    return _LABEL_SAFE.sub("_", shown) or f"cell-{analysis.code_digest[:8]}"


def cell_key(
    analysis: CellAnalysis,
    namespace: Mapping[str, Any],
    *,
    name: str | None = None,
    deps: Iterable[str] = (),
    files: Iterable[str] = (),
    variables: Sequence[str] | None = None,
    skip: Collection[str] = (),
    state: Iterable[KeyPart] | None = None,
) -> CellKey:
    """The key of a cell in a namespace; raises UnhashableInput naming an input it cannot hash.

    >>> from tore_nb.cells import analyze_cell
    >>> a = analyze_cell("y = x * 2")
    >>> cell_key(a, {"x": 1}).key == cell_key(a, {"x": 1}).key != cell_key(a, {"x": 2}).key
    True
    """
    parts = [
        KeyPart("format", "tore_nb.cells", str(CELL_FORMAT)),
        KeyPart("code", "source", analysis.code_digest),
    ]
    names = list(dict.fromkeys([*analysis.inputs, *deps]))
    attributes = dict(analysis.attributes)
    for n in names:
        if n in skip:
            continue
        if n not in namespace:
            if n in _BUILTIN_NAMES:
                continue
            parts.append(KeyPart("input", n, "undefined"))
            continue
        try:
            # a local module counts by the code of the attributes the cell reads from it
            token = dependency_token(namespace[n], strict=True, attributes=attributes.get(n, ()))
        except TypeError as exc:
            raise UnhashableInput(n, exc) from None
        parts.append(KeyPart("input", n, token))
    # globals the functions it calls change (`def add(v): items.append(v)` in another cell):
    # the cell reads and changes them, though its code never names them
    keyed = {p.name for p in parts if p.kind == "input"}
    called = [namespace[n] for n in names if n in namespace and n not in skip]
    called += _module_attributes(namespace, attributes)  # helpers.register(x) calls register
    effects = global_effects(called, namespace)
    if effects.uncacheable is not None:
        raise IndirectRead(effects.uncacheable)
    changed_by_calls = [n for n in effects.state if n not in skip]
    for n in effects.state:
        if n in keyed or n in skip:
            continue
        try:
            parts.append(KeyPart("input", n, dependency_token(namespace[n], strict=True)))
        except TypeError as exc:
            raise UnhashableInput(n, exc) from None
    parts.extend(p for p in map(_module_part, analysis.imports) if p is not None)
    # hidden state any cell reads silently (rcParams, pandas options), as it is now unless given
    parts.extend(keyed_state() if state is None else state)
    for pattern in files:
        parts.extend(_file_parts(pattern))
    if variables is not None:
        parts.append(KeyPart("option", "vars", ",".join(variables)))
    label = cell_label(analysis, name)
    digest = hash_value([(p.kind, p.name, p.digest) for p in parts])
    return CellKey(f"{PREFIX}{label}:{digest}", label, tuple(parts), tuple(changed_by_calls))


def _module_attributes(
    namespace: Mapping[str, Any], attributes: Mapping[str, Sequence[tuple[str, ...]]]
) -> list[Any]:
    """What the cell reads from the local modules among its inputs (`helpers.register`)."""
    found = []
    for name, chains in attributes.items():
        mod = namespace.get(name)
        if not isinstance(mod, types.ModuleType) or not is_local_module(mod.__name__):
            continue
        for chain in chains:
            value: Any = mod
            for attr in chain:
                value = getattr(value, attr, None)
                if value is None or not isinstance(value, types.ModuleType):
                    break
            if value is not None:
                found.append(value)
    return found


def keyed_state() -> tuple[KeyPart, ...]:
    """The key parts of the 'keyed' state probes available now (see `probes`)."""
    return tuple(
        KeyPart("state", p.name, p.digest(p.capture()))
        for p in probes()
        if p.kind == "keyed" and p.available()
    )


def _module_part(name: str) -> KeyPart | None:
    """A module the cell imports, by the code it holds: a library by its version, a local
    module by its source file (its loaded code is checked against the file before any lookup:
    `modules.stale_modules`), one not imported yet by the file an import would load; None for
    a name that is no module (`from m import func`). Never imports anything."""
    mod = sys.modules.get(name)
    if mod is not None:
        if not is_local_module(name):
            return KeyPart("module", name, module_version(name))
        path = getattr(mod, "__file__", None)
        return KeyPart("module", name, file_digest(path) if path else "no-file")
    origin = find_origin(name)
    if origin is None:
        return None
    origin = os.path.realpath(origin)
    if origin.startswith(library_dirs()) or "site-packages" in origin:
        return KeyPart("module", name, module_version(name))
    return KeyPart("module", name, file_digest(origin))


def _file_parts(pattern: str) -> list[KeyPart]:
    paths = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
    if not paths:
        return [KeyPart("file", pattern, "missing")]
    return [KeyPart("file", p, file_digest(p)) for p in paths]


def file_digest(path: str | os.PathLike[str]) -> str:
    """xxh3-128 of a file's bytes, read in 1 MB chunks; 'missing' when it does not exist. A
    directory counts by what it holds, recursively: each entry's relative path and, for a file,
    its digest (at most `MAX_DIRECTORY_ENTRIES` entries: a larger tree raises ValueError)."""
    if os.path.isdir(path):
        return _directory_digest(os.fspath(path))
    h = xxhash.xxh3_128()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    except FileNotFoundError:
        return "missing"
    return h.hexdigest()


MAX_DIRECTORY_ENTRIES = 10_000


def _directory_digest(root: str) -> str:
    h = xxhash.xxh3_128(b"directory\0")
    count = 0
    # sorted walk, relative posix paths: the same tree gives the same digest on any machine
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        rel = os.path.relpath(folder, root).replace(os.sep, "/")
        for name in [*dirs, *sorted(files)]:
            count += 1
            if count > MAX_DIRECTORY_ENTRIES:
                raise ValueError(
                    f"--files {root}: the directory holds more than {MAX_DIRECTORY_ENTRIES} "
                    f"entries; name the files the cell reads, or a glob (dir/*.csv)"
                )
            full = os.path.join(folder, name)
            if name in dirs:
                # os.walk does not follow a link to a directory: it counts by its target
                digest = f"link:{os.readlink(full)}" if os.path.islink(full) else "dir"
            elif os.path.isfile(full) or not os.path.lexists(full):
                digest = file_digest(full)
            else:  # a fifo or a socket, or a dangling link: reading it could block or fail
                digest = "special"
            h.update(f"{rel}/{name}\0{digest}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()
