"""The differential harness: a scenario runs plainly and cached; every cell must agree.

A `Scenario` is data: a sequence of `Session`s, each a fresh process sharing one cache directory
(and one working folder) with the sessions before it. Before a session starts its `files`,
`modules` and `env` are applied on top of what the sessions before it left (a value of None
removes the file, module or variable): an edit between sessions is a different value in the next
session. A session's `cells` are run in order; a step may also be `Rerun(k)` (cell k of this
session again: notebooks are re-run out of order) or `Write(...)` (an edit on disk while the
session runs, e.g. a module edited but not reloaded).

The same scenario runs in mode "plain" (IPython only; `tore_nb.cached` is a pass-through) and in
a cached mode: "tcache" (`%load_ext tore_nb`, then every cell prefixed with `%%tcache`) or "auto"
(`%load_ext tore_nb` and `%tcache auto`, cells as they are). Every cell's normalised outputs, its
error, its `Out` value and, at the end of each session, every user variable must be equal; the
first difference fails the test, naming scenario, session and cell. A session may also expect
hits: `expect="all-hits"` (a warm, unchanged re-run costs nothing) or `misses={...}` / `hits=
{...}` (after an edit only the dependants re-run).

What the comparison ignores (`normalise_events`, one place): the lines tore_nb writes itself,
memory addresses in reprs, the numbers and units of `%time`/`%timeit` reports, text overwritten
by a carriage return (as a terminal or Jupyter shows it) and widget views (compared by their
text/plain fallback: their model id is a fresh uuid); and
(in the child, as it writes its results) the run's own folder, shown as "<root>": the plain and
the cached run of a scenario work in different folders.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import re
import select
import subprocess
import sys
import tempfile
import textwrap
import time
import types
from collections.abc import Iterable, Iterator, Mapping, Sequence, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

REPO = Path(__file__).resolve().parents[2]

Mode = Literal["plain", "tcache", "auto"]
CACHED_MODES: tuple[Mode, ...] = tuple(
    m  # type: ignore[misc]
    for m in os.environ.get("DIFFERENTIAL_MODES", "tcache,auto").split(",")
    if m in ("tcache", "auto")
)
"""The cached modes the suites run: DIFFERENTIAL_MODES=tcache,auto adds `%tcache auto` (once it
exists: until then auto mode is not expected to work)."""


# -- the model ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rerun:
    """Run cell `index` of the current session again (its text in this session)."""

    index: int


@dataclass(frozen=True)
class Write:
    """Write (or with None remove) files and modules while the session runs; not a cell."""

    files: Mapping[str, str | None] = field(default_factory=dict)
    modules: Mapping[str, str | None] = field(default_factory=dict)


Step = str | Rerun | Write


@dataclass(frozen=True)
class Session:
    """One fresh process: files, modules and env applied before it starts, then its cells."""

    cells: Sequence[Step]
    files: Mapping[str, str | None] = field(default_factory=dict)
    modules: Mapping[str, str | None] = field(default_factory=dict)
    env: Mapping[str, str | None] = field(default_factory=dict)
    expect: Literal["all-hits"] | None = None
    hits: frozenset[int] = frozenset()
    """Cell indexes (into `cells`) that must be served from the cache in cached modes."""
    misses: frozenset[int] = frozenset()
    """Cell indexes that must run (not be hits) in cached modes."""


@dataclass(frozen=True)
class Scenario:
    name: str
    sessions: Sequence[Session]
    group: str = ""
    note: str = ""


def uncached(scenarios: Sequence[Scenario], names: Sequence[str], why: str) -> list[Scenario]:
    """The scenarios with the named ones expecting no hits: tore_nb runs those cells uncached
    by design (it says why in one note), so only the outputs must equal the plain run's."""
    wanted = set(names)
    out = []
    for s in scenarios:
        if s.name in wanted:
            wanted.discard(s.name)
            sessions = [dataclasses.replace(x, expect=None, hits=frozenset()) for x in s.sessions]
            s = dataclasses.replace(s, sessions=sessions, note=f"{s.note} uncached: {why}".strip())
        out.append(s)
    assert not wanted, f"no such scenarios: {sorted(wanted)}"
    return out


def dedent(text: str) -> str:
    return textwrap.dedent(text).strip("\n") + "\n"


def restarts(
    name: str,
    cells: Sequence[str],
    *edits: Mapping[str, Any],
    files: Mapping[str, str | None] | None = None,
    modules: Mapping[str, str | None] | None = None,
    env: Mapping[str, str | None] | None = None,
    warm: bool = True,
    warm_hits: bool = True,
    group: str = "",
    note: str = "",
) -> Scenario:
    """The common shape: a cold session, a warm unchanged one (all hits: `warm`), then one
    session per edit. An edit is a dict with any of `cells` ({index: new text}), `files`,
    `modules`, `env`, `append` (cells added at the end), `steps` (extra steps after the cells),
    `hits`, `misses`, `expect`; cell edits carry over to the later sessions."""
    current = [dedent(c) for c in cells]
    sessions = [Session(list(current), dict(files or {}), dict(modules or {}), dict(env or {}))]
    if warm:
        sessions.append(Session(list(current), expect="all-hits" if warm_hits else None))
    for edit in edits:
        unknown = set(edit) - {
            "cells",
            "files",
            "modules",
            "env",
            "append",
            "steps",
            "hits",
            "misses",
            "expect",
        }
        assert not unknown, f"{name}: unknown edit keys {unknown}"
        for i, text in dict(edit.get("cells", {})).items():
            current[i] = dedent(text)
        current.extend(dedent(c) for c in edit.get("append", ()))
        steps: list[Step] = [*current, *edit.get("steps", ())]
        sessions.append(
            Session(
                steps,
                dict(edit.get("files", {})),
                dict(edit.get("modules", {})),
                dict(edit.get("env", {})),
                expect=edit.get("expect"),
                hits=frozenset(edit.get("hits", ())),
                misses=frozenset(edit.get("misses", ())),
            )
        )
    return Scenario(name, sessions, group, note)


def cached_source(cell: str, mode: Mode) -> str:
    """The text a cell runs as in `mode`: the ONE place where cached mode changes cells. A cell
    written with its own `%%tcache ...` line (to test an option) keeps it when cached and runs
    without it when plain."""
    own = cell.startswith("%%tcache")
    if mode == "plain":
        return cell.split("\n", 1)[1] if own else cell
    if mode == "tcache" and not own:
        return "%%tcache\n" + cell
    return cell  # "auto": `%tcache auto` makes every cell cached


def setup_lines(mode: Mode) -> list[str]:
    """Lines run once at the start of a session, before the cells (not compared)."""
    if mode == "plain":
        return []
    # verbose: a line under every hit, which the notebook suite reads to tell hits (dropped
    # from the comparison like every tcache line)
    verbose = "%config TcacheMagics.verbose = True"
    if mode == "auto":
        return ["%load_ext tore_nb", verbose, "%tcache auto"]
    return ["%load_ext tore_nb", verbose]


# -- JSON form (the fork server reads scenarios from a pipe) ------------------------------------
def _step_json(step: Step) -> Any:
    if isinstance(step, str):
        return {"cell": step}
    if isinstance(step, Rerun):
        return {"rerun": step.index}
    return {"write": {"files": dict(step.files), "modules": dict(step.modules)}}


def _step_from(obj: Mapping[str, Any]) -> Step:
    if "cell" in obj:
        return str(obj["cell"])
    if "rerun" in obj:
        return Rerun(int(obj["rerun"]))
    return Write(dict(obj["write"]["files"]), dict(obj["write"]["modules"]))


def scenario_json(s: Scenario) -> dict[str, Any]:
    return {
        "name": s.name,
        "sessions": [
            {
                "cells": [_step_json(c) for c in x.cells],
                "files": dict(x.files),
                "modules": dict(x.modules),
                "env": dict(x.env),
            }
            for x in s.sessions
        ],
    }


def scenario_from(obj: Mapping[str, Any]) -> Scenario:
    return Scenario(
        obj["name"],
        [
            Session(
                [_step_from(c) for c in x["cells"]],
                dict(x["files"]),
                dict(x["modules"]),
                dict(x["env"]),
            )
            for x in obj["sessions"]
        ],
    )


# -- describing values: what counts as "the same value" -----------------------------------------
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{6,}")
_IMMUTABLE = (type(None), bool, int, float, complex, str, bytes, range, type(Ellipsis))


def _digest(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()[:16]


def _short(text: str, limit: int = 400) -> str:
    if len(text) <= limit:
        return text
    return f"{text[: limit - 40]}...<{len(text)} chars #{_digest(text)}>"


def _code_digest(code: types.CodeType) -> str:
    parts: list[str] = [code.co_code.hex(), repr(code.co_names), repr(code.co_varnames)]
    parts.append(repr(code.co_freevars))
    for const in code.co_consts:
        parts.append(_code_digest(const) if isinstance(const, types.CodeType) else repr(const))
    return _digest("|".join(parts))


def _is_user_module(name: str | None) -> bool:
    """Code of the notebook or of its local modules, not of libraries."""
    if not name or name == "__main__":
        return True
    module = sys.modules.get(name.split(".")[0])
    path = getattr(module, "__file__", None) or ""
    return bool(path) and "site-packages" not in path and not path.startswith(sys.base_prefix)


class Describer:
    """Order-sensitive, content-based description of values. Mutable objects met twice (across
    all the variables described by one Describer) are shown as "<same as NAME>": aliasing is
    part of what a variable is."""

    def __init__(self) -> None:
        self.seen: dict[int, str] = {}
        self._keep: list[Any] = []

    def __call__(self, value: Any, path: str = "") -> str:
        try:
            return _short(self._d(value, path, 0))
        except Exception as exc:  # describing must never break a session
            return f"<undescribable {type(value).__qualname__}: {type(exc).__name__}>"

    def _d(self, v: Any, path: str, depth: int) -> str:
        if depth > 8:
            return "..."
        t = type(v)
        if isinstance(v, _IMMUTABLE):
            if isinstance(v, float) and math.isnan(v):
                return "nan"
            return _short(repr(v), 200)
        if isinstance(v, types.ModuleType):
            return f"<module {v.__name__}>"
        if id(v) in self.seen:
            return f"<same as {self.seen[id(v)]}>"
        if not isinstance(v, tuple | frozenset):
            self.seen[id(v)] = path or "?"
            self._keep.append(v)
        return self._typed(v, t, path, depth)

    def _items(self, items: Iterable[tuple[str, Any]], path: str, depth: int) -> str:
        out = []
        for n, (k, x) in enumerate(items):
            if n >= 60:
                out.append("...")
                break
            out.append(f"{k}: {self._d(x, f'{path}[{k}]', depth + 1)}")
        return ", ".join(out)

    def _typed(self, v: Any, t: type, path: str, depth: int) -> str:
        name = t.__qualname__
        if isinstance(v, list | tuple) and not hasattr(v, "_fields"):
            inner = ", ".join(
                self._d(x, f"{path}[{i}]", depth + 1) for i, x in enumerate(list(v)[:60])
            )
            more = ", ..." if len(v) > 60 else ""
            return f"{name}[{inner}{more}]"
        if isinstance(v, tuple):  # a namedtuple
            fields = v._fields  # type: ignore[attr-defined]
            return f"{name}({self._items(zip(fields, v, strict=False), path, depth)})"
        if isinstance(v, dict):
            items = ((repr(k), x) for k, x in v.items())
            extra = ""
            if hasattr(v, "default_factory"):
                extra = f" default={self._d(v.default_factory, path + '.default', depth + 1)}"
            return f"{name}{{{self._items(items, path, depth)}}}{extra}"
        if isinstance(v, set | frozenset):
            return f"{name}{{{', '.join(sorted(self._d(x, path, depth + 1) for x in v))}}}"
        if isinstance(v, bytearray):
            return f"bytearray({_short(repr(bytes(v)), 200)})"
        np = sys.modules.get("numpy")
        pd = sys.modules.get("pandas")
        if np is not None and isinstance(v, np.ndarray):
            return self._array(v, path, depth)
        if np is not None and isinstance(v, np.generic):
            return f"np.{name}({v!r})"
        if pd is not None and isinstance(v, pd.DataFrame | pd.Series | pd.Index):
            return self._pandas(v, pd)
        if getattr(v, "__tore_plain_cached__", False) or (
            name == "CachedFunction" and t.__module__.startswith("tore_nb")
        ):  # a @tore_nb.cached function, and its plain-run stand-in
            return f"<cached {self._d(v.__wrapped__, path + '.wrapped', depth + 1)}>"
        if getattr(v, "__tore_plain_decorator__", False) or (
            v is getattr(sys.modules.get("tore_nb.memo"), "cached", None)
        ):
            return "<the tore_nb.cached decorator>"
        if name == "TimeitResult":  # %timeit -o: its timings differ in every run
            return f"<TimeitResult loops={v.loops} repeat={v.repeat}>"
        if isinstance(v, types.FunctionType):
            return self._function(v, path, depth)
        if isinstance(v, types.MethodType):
            owner = self._d(v.__self__, path + ".__self__", depth + 1)
            return f"<method {v.__func__.__qualname__} of {owner}>"
        if isinstance(v, types.BuiltinFunctionType | types.BuiltinMethodType):
            bound = getattr(v, "__self__", None)
            if bound is not None and not isinstance(bound, types.ModuleType):
                return f"<builtin method {v.__qualname__} of {self._d(bound, path, depth + 1)}>"
            return f"<builtin {getattr(v, '__module__', '?')}.{v.__qualname__}>"
        if isinstance(v, type):
            return self._class(v, path, depth)
        if isinstance(v, types.GeneratorType):
            state = "done" if v.gi_frame is None else f"at {v.gi_frame.f_lasti}"
            return f"<generator {v.__qualname__} {state}>"
        return self._object(v, t, path, depth)

    def _array(self, a: Any, path: str, depth: int) -> str:
        head = f"ndarray({a.dtype}, shape={a.shape}"
        if a.dtype.hasobject:
            flat = a.ravel().tolist()
            body = ", ".join(self._d(x, path, depth + 1) for x in flat[:60])
            return f"{head}, [{body}])"
        if a.size <= 24:
            return f"{head}, {a.tolist()!r})"
        import numpy as np

        return f"{head}, #{_digest(np.ascontiguousarray(a).tobytes())})"

    def _pandas(self, v: Any, pd: Any) -> str:
        name = type(v).__qualname__
        if isinstance(v, pd.Index):
            extra = f", freq={v.freq!r}" if hasattr(v, "freq") else ""
            values = _short(repr(list(v)), 300)
            return f"{name}({v.dtype}, name={v.names!r}{extra}, {values})"
        index = self._pandas(v.index, pd)
        attrs = f", attrs={v.attrs!r}" if v.attrs else ""
        if isinstance(v, pd.Series):
            values = _short(repr(v.tolist()), 300)
            return f"Series(name={v.name!r}, {v.dtype}, index={index}, {values}{attrs})"
        cols = ", ".join(f"{c!r}:{v[c].dtype}" for c in list(v.columns)[:60])
        body = _short(repr(v.to_dict("list")), 300)
        return f"DataFrame([{cols}], index={index}, {body}{attrs})"

    def _function(self, f: types.FunctionType, path: str, depth: int) -> str:
        defaults = self._d(f.__defaults__, path + ".defaults", depth + 1)
        kw = self._d(f.__kwdefaults__, path + ".kwdefaults", depth + 1)
        closure = ""
        if f.__closure__:
            cells = []
            for cell in f.__closure__:
                try:
                    cells.append(self._d(cell.cell_contents, path + ".closure", depth + 1))
                except ValueError:
                    cells.append("<empty>")
            closure = f" closure=[{', '.join(cells)}]"
        wrapped = getattr(f, "__wrapped__", None)
        extra = f" wraps={self._d(wrapped, path + '.wrapped', depth + 1)}" if wrapped else ""
        return (
            f"<function {f.__module__}.{f.__qualname__} code#{_code_digest(f.__code__)}"
            f" defaults={defaults} kwdefaults={kw}{closure}{extra}>"
        )

    def _class(self, c: type, path: str, depth: int) -> str:
        if not _is_user_module(c.__module__):
            return f"<class {c.__module__}.{c.__qualname__}>"
        # __slotnames__: copyreg's cache, written into a class by pickling one of its instances
        skip = {"__dict__", "__weakref__", "__module__", "__doc__", "__qualname__", "__slotnames__"}
        body = self._items(
            ((k, x) for k, x in vars(c).items() if k not in skip), path + "." + c.__name__, depth
        )
        bases = ", ".join(b.__qualname__ for b in c.__bases__)
        return f"<class {c.__module__}.{c.__qualname__}({bases}) {{{body}}}>"

    def _object(self, v: Any, t: type, path: str, depth: int) -> str:
        name = f"{t.__module__}.{t.__qualname__}"
        artist = sys.modules.get("matplotlib.artist")
        if artist is not None and isinstance(v, artist.Artist):
            return f"<{name} {self._artist(v)}>"
        widgets = sys.modules.get("ipywidgets")
        if widgets is not None and isinstance(v, widgets.Widget):
            return f"<widget {name} value={getattr(v, 'value', None)!r}>"
        functools = sys.modules["functools"]
        if isinstance(v, functools.partial):
            func = self._d(v.func, path + ".func", depth + 1)
            args = self._d(v.args, path + ".args", depth + 1)
            return f"partial({func}, {args}, {self._d(v.keywords, path + '.kw', depth + 1)})"
        if hasattr(v, "__dict__") and not isinstance(v, types.SimpleNamespace | type):
            attrs = sorted(vars(v).items())
            slots = [(s, getattr(v, s)) for s in getattr(t, "__slots__", ()) or () if hasattr(v, s)]
            return f"{name}({self._items([*slots, *attrs], path, depth)})"
        if isinstance(v, types.SimpleNamespace):
            return f"namespace({self._items(vars(v).items(), path, depth)})"
        try:
            rv = v.__reduce_ex__(4)
        except Exception:
            rv = None
        if type(v).__name__.endswith("_iterator") and isinstance(rv, tuple) and len(rv) >= 2:
            # an exhausted iterator reduces to an empty one, or to its items at their end
            items = rv[1][0] if rv[1] and isinstance(rv[1][0], Sized) else ()
            left = len(items) - rv[2] if len(rv) > 2 and isinstance(rv[2], int) else len(items)
            if left <= 0:
                return f"{name}(exhausted)"
        if isinstance(rv, tuple) and len(rv) >= 2:
            args = self._d(rv[1], path + ".args", depth + 1)
            state = self._d(rv[2], path + ".state", depth + 1) if len(rv) > 2 else "None"
            return f"{name}(args={args}, state={state})"
        return _ADDRESS.sub("0x?", _short(repr(v), 300))

    def _artist(self, a: Any) -> str:
        """Matplotlib artists by what they draw (their state holds caches and ids)."""
        mpl_figure = sys.modules.get("matplotlib.figure")
        mpl_axes = sys.modules.get("matplotlib.axes")
        if mpl_figure is not None and isinstance(a, mpl_figure.Figure):
            size = tuple(float(x) for x in a.get_size_inches())
            return f"size={size} axes=[{', '.join(self._artist(ax) for ax in a.axes)}]"
        if mpl_axes is not None and isinstance(a, mpl_axes.Axes):
            lines = [self._artist(line) for line in a.get_lines()]
            return (
                f"axes(title={a.get_title()!r}, xlabel={a.get_xlabel()!r}, "
                f"ylabel={a.get_ylabel()!r}, lines={lines}, patches={len(a.patches)}, "
                f"collections={len(a.collections)})"
            )
        if hasattr(a, "get_xydata"):
            return f"line #{_digest(repr(a.get_xydata().tolist()))} color={a.get_color()!r}"
        if hasattr(a, "get_text"):
            return f"text {a.get_text()!r}"
        return f"label={a.get_label()!r}"


IPYTHON_OWN = frozenset(
    {
        "In",
        "Out",
        "_",
        "__",
        "___",
        "_i",
        "_ii",
        "_iii",
        "_ih",
        "_oh",
        "_dh",
        "_sh",
        "exit",
        "quit",
        "get_ipython",
        "__builtin__",
        "__builtins__",
        "__name__",
        "__doc__",
        "__package__",
        "__loader__",
        "__spec__",
        "_exit_code",
        "__warningregistry__",  # Python's record of the warnings shown, not a user variable
    }
)
_NUMBERED = re.compile(r"_i?\d+|_i{1,3}")


def user_names(ns: Mapping[str, Any], hidden: Iterable[str] = ()) -> list[str]:
    """The user's variables: not IPython's own (In, Out, _, _i3, get_ipython, ...)."""
    skip = IPYTHON_OWN | set(hidden)
    return sorted(n for n in ns if n not in skip and not _NUMBERED.fullmatch(n))


def describe_namespace(ns: Mapping[str, Any], hidden: Iterable[str] = ()) -> dict[str, str]:
    describe = Describer()
    names = user_names(ns, hidden)
    out = {n: describe(ns[n], n) for n in names}
    np = sys.modules.get("numpy")
    if np is not None:  # views: x_sub = x[:2] shares x's memory, a copy does not
        arrays = [n for n in names if isinstance(ns[n], np.ndarray) and ns[n].size]
        shared = [
            f"{a}~{b}"
            for i, a in enumerate(arrays)
            for b in arrays[i + 1 :]
            if ns[a] is not ns[b] and np.shares_memory(ns[a], ns[b], max_work=1000)
        ]
        if shared:
            out["<memory shared between arrays>"] = ", ".join(shared)
    return out


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def bundle(data: Mapping[str, Any]) -> dict[str, Any]:
    """The comparable form of a mimebundle: images by digest, widget views left out (a widget
    is compared by its text/plain fallback)."""
    out: dict[str, Any] = {}
    for mime, value in data.items():
        if mime.startswith("image/") and mime != "image/svg+xml":
            out[mime] = f"<{mime} #{_digest(str(value))}>"
        elif mime == WIDGET_VIEW:
            continue  # compared by its text/plain fallback: the view's model_id is a fresh uuid
        elif isinstance(value, str):
            out[mime] = value
        else:
            out[mime] = json.loads(json.dumps(value, default=repr, sort_keys=True))
    return out


# -- normalisation: THE one place listing what the comparison ignores ---------------------------
TIMING = re.compile(
    r"^(CPU times:|Wall time:|.* per loop \(mean ± std\. dev\. of|The slowest run took"
    r"|\d[\d,.]* (ns|µs|us|ms|s) ± )"
)
SLOWEST = re.compile(r"^The slowest run took .* times longer than the fastest")
_NUMBER = re.compile(r"\d[\d,]*(\.\d+)?(e[-+]?\d+)?( ?(ns|µs|us|ms|min|s)\b)?")
_CR = re.compile(r"[^\n]*\r(?!\n)")


def _tore_line(kind: str, line: str) -> bool:
    """A line tore_nb itself writes in cached mode (dropped): in stdout and text/plain displays
    the lines starting with `tcache:`; in stderr those too (its log messages, e.g. "tcache:
    could not restore cell ...") and CacheWarning warnings (their line and the source line
    Python shows under them)."""
    if kind in ("stdout", "display"):
        return line.startswith("tcache:")
    return line.startswith("tcache:") or "CacheWarning" in line


def _clean_text(kind: str, text: str, dropped: list[str]) -> str:
    out: list[str] = []
    skip_source = False
    for line in text.splitlines(keepends=True):
        if skip_source and line.startswith("  "):
            skip_source = False
            dropped.append(line.rstrip("\n"))
            continue
        skip_source = False
        if _tore_line(kind, line):
            dropped.append(line.rstrip("\n"))
            skip_source = kind == "stderr"
            continue
        if SLOWEST.match(line):  # %timeit's note on an outlier run: a timing accident
            continue
        if TIMING.match(line):  # %time and %timeit: same shape, numbers and units vary
            line = _NUMBER.sub("N", line)
        out.append(_ADDRESS.sub("0x?", line))
    return "".join(out)


def normalise_events(
    events: Sequence[Sequence[Any]], dropped: list[str] | None = None
) -> list[Any]:
    """Events as compared: tore_nb's own lines dropped (listed in `dropped`), addresses and
    timings blurred, adjacent writes to one stream merged, empty writes left out."""
    dropped = [] if dropped is None else dropped
    out: list[list[Any]] = []
    for kind, payload in events:
        if kind in ("stdout", "stderr"):
            # what a terminal or Jupyter shows of "\r" progress updates: the last one
            text = _clean_text(kind, _CR.sub("", payload), dropped)
            if not text:
                continue
            if out and out[-1][0] == kind:
                out[-1][1] += text
            else:
                out.append([kind, text])
            continue
        if kind in ("display", "result"):
            plain = payload.get("text/plain")
            if kind == "display" and isinstance(plain, str) and plain.startswith("tcache:"):
                dropped.append(plain)
                continue
            payload = {
                k: _clean_text("result", v, dropped) if k == "text/plain" else v
                for k, v in payload.items()
            }
        out.append([kind, payload])
    return out


# -- comparison ---------------------------------------------------------------------------------
@dataclass
class Difference:
    scenario: str
    session: int
    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.scenario}: session {self.session}, {self.where}: {self.what}"


def _first_event_difference(a: list[Any], b: list[Any]) -> str | None:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return f"output {i}: plain {_show(x)} != cached {_show(y)}"
    if len(a) != len(b):
        extra = a[len(b)] if len(a) > len(b) else b[len(a)]
        who = "plain" if len(a) > len(b) else "cached"
        return f"output {min(len(a), len(b))} only in the {who} run: {_show(extra)}"
    return None


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=repr)
    return _short(text, 600)


def _first_text_difference(a: str, b: str) -> str:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            lo, hi = max(0, i - 60), i + 80
            return f"at char {i}: ...{a[lo:hi]!r} vs ...{b[lo:hi]!r}"
    return f"lengths {len(a)} vs {len(b)}"


def compare(
    scenario: Scenario, plain: list[dict[str, Any]], cached: list[dict[str, Any]]
) -> list[Difference]:
    """Every difference between the plain and the cached run (the first one per cell and per
    session namespace), and every unmet hit expectation."""
    diffs: list[Difference] = []
    name = scenario.name
    for s, (p, c) in enumerate(zip(plain, cached, strict=True)):
        for run, label in ((p, "plain"), (c, "cached")):
            if run.get("crashed"):
                diffs.append(Difference(name, s, "session", f"{label} run: {run['crashed']}"))
            if run.get("setup_error"):
                diffs.append(Difference(name, s, "setup", f"{label} run: {run['setup_error']}"))
        if len(p["cells"]) != len(c["cells"]):
            diffs.append(Difference(name, s, "session", "a different number of cells ran"))
        for pc, cc in zip(p["cells"], c["cells"], strict=False):
            where = pc["label"]
            if pc["error"] != cc["error"]:
                diffs.append(
                    Difference(
                        name, s, where, f"error: plain {pc['error']} != cached {cc['error']}"
                    )
                )
                continue
            d = _first_event_difference(
                normalise_events(pc["events"]), normalise_events(cc["events"])
            )
            if d is not None:
                diffs.append(Difference(name, s, where, d))
                continue
            if pc["out"] != cc["out"]:
                diffs.append(
                    Difference(
                        name, s, where, f"Out value: plain {pc['out']} != cached {cc['out']}"
                    )
                )
        if p.get("crashed") or c.get("crashed"):
            continue
        pn, cn = p["namespace"], c["namespace"]
        for var in sorted(set(pn) | set(cn)):
            if var not in cn:
                diffs.append(
                    Difference(name, s, "namespace", f"{var} only in the plain run: {pn[var]}")
                )
                break
            if var not in pn:
                diffs.append(
                    Difference(name, s, "namespace", f"{var} only in the cached run: {cn[var]}")
                )
                break
            if pn[var] != cn[var]:
                d = _first_text_difference(pn[var], cn[var])
                diffs.append(
                    Difference(
                        name,
                        s,
                        "namespace",
                        f"{var}: plain {_short(pn[var], 300)} != "
                        f"cached {_short(cn[var], 300)} ({d})",
                    )
                )
                break
        diffs.extend(_expectations(scenario, s, p, c))
    return diffs


def _expectations(
    scenario: Scenario, s: int, p: dict[str, Any], c: dict[str, Any]
) -> list[Difference]:
    session = scenario.sessions[s]
    by_index = {
        cell["index"]: (pc, cell)
        for pc, cell in zip(p["cells"], c["cells"], strict=False)
        if cell.get("index") is not None
    }
    out: list[Difference] = []
    want_hits = set(session.hits)
    if session.expect == "all-hits":  # but cells that fail, and those that must run
        want_hits |= {
            i for i, (pc, _) in by_index.items() if pc["error"] is None and i not in session.misses
        }
    # `%tcache auto` runs a cell cheaper than its own hit plainly (no status once it knows,
    # 'not-cached' the first time): as good as a hit, and its outputs are compared anyway
    plainly_ok = {None, "not-cached"} if c.get("mode") == "auto" else set()
    for i in sorted(want_hits):
        if (
            i in by_index
            and by_index[i][1]["status"] != "hit"
            and (by_index[i][1]["status"] not in plainly_ok)
        ):
            out.append(
                Difference(
                    scenario.name,
                    s,
                    f"cell {i}",
                    f"expected a hit, got {by_index[i][1]['status']!r}",
                )
            )
    for i in sorted(session.misses):
        if i in by_index and by_index[i][1]["status"] == "hit":
            out.append(
                Difference(
                    scenario.name, s, f"cell {i}", "expected to run (its inputs changed), was a hit"
                )
            )
    return out


# -- the fork server client ---------------------------------------------------------------------
class ServerError(RuntimeError):
    pass


class ForkServer:
    """A `python -m tests.differential.forkserver` process: imports the heavy libraries once,
    then runs each requested (scenario, mode) as sessions in forked children."""

    def __init__(self, root: Path, session_timeout: float = 90.0, jobs: int | None = None) -> None:
        self.root = root
        self.session_timeout = session_timeout
        self.jobs = jobs or int(os.environ.get("DIFFERENTIAL_JOBS", "2"))
        self.log = root / "forkserver.log"
        self._n = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ForkServer:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("PYTEST", "COV_", "PYTHONWARNINGS"))
        }
        path = env.get("PYTHONPATH")
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), *([path] if path else [])])
        env.update(
            {
                "PYTHONDONTWRITEBYTECODE": "1",
                "OPENBLAS_NUM_THREADS": "1",
                "OMP_NUM_THREADS": "1",
                "MKL_NUM_THREADS": "1",
                "MPLBACKEND": "Agg",
                "PYTHONHASHSEED": "0",
                "XDG_CACHE_HOME": str(self.root / "xdg-cache"),
                "XDG_CONFIG_HOME": str(self.root / "xdg-config"),
                "TORE_NB_SECRET": "differential-test-secret-0123456789abcdef",
                "MPLCONFIGDIR": str(self.root / "mplconfig"),
            }
        )
        for var in (
            "REDIS_URL",
            "REDIS_HOST",
            "S3_CACHE_BUCKET",
            "DISK_CACHE_PATH",
            "TORE_NB_TIERS",
        ):
            env.pop(var, None)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.differential.forkserver"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                cwd=REPO,
                env=env,
            )
        ready = self._read_line(120.0)
        if ready.strip() != b"ready":
            raise ServerError(f"fork server did not start: {ready!r}; see {self.log}")
        return self

    def _read_line(self, timeout: float) -> bytes:
        assert self.proc is not None and self.proc.stdout is not None
        out = self.proc.stdout
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ServerError(f"fork server gave no answer in {timeout:.0f} s; see {self.log}")
            ready, _, _ = select.select([out], [], [], left)
            if ready:
                line = out.readline()
                if not line:
                    raise ServerError(f"fork server exited; see {self.log}:\n{self.tail()}")
                return line

    def tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-3000:]
        return ""

    def run(self, scenario: Scenario, mode: Mode) -> list[dict[str, Any]]:
        """Run every session of `scenario` in `mode`; one result per session."""
        return self.run_many([(scenario, mode)])[0]

    def run_many(self, runs: Sequence[tuple[Scenario, Mode]]) -> list[list[dict[str, Any]]]:
        """Several (scenario, mode) runs, `jobs` of them at a time (each in its own folders)."""
        assert self.proc is not None and self.proc.stdin is not None
        requests = []
        for scenario, mode in runs:
            self._n += 1
            root = Path(tempfile.mkdtemp(prefix=f"{self._n:05d}-{mode}-", dir=self.root))
            requests.append({"scenario": scenario_json(scenario), "mode": mode, "root": str(root)})
        message = {"runs": requests, "jobs": self.jobs}
        self.proc.stdin.write(json.dumps(message).encode() + b"\n")
        self.proc.stdin.flush()
        sessions = sum(len(s.sessions) for s, _ in runs)
        answer = json.loads(self._read_line(self.session_timeout * sessions + 30))
        if isinstance(answer, dict):
            raise ServerError(answer["error"])
        out = []
        for one in answer:
            if "error" in one:
                raise ServerError(one["error"])
            out.append(one["sessions"])
        return out

    def close(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(OSError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


@contextlib.contextmanager
def fork_server(root: Path) -> Iterator[ForkServer]:
    server = ForkServer(root).start()
    try:
        yield server
    finally:
        server.close()


def check(server: ForkServer, scenario: Scenario, mode: Mode) -> list[Difference]:
    """Run `scenario` plainly and in `mode`; the differences (empty: they agree)."""
    plain, cached = server.run_many([(scenario, "plain"), (scenario, mode)])
    return compare(scenario, plain, cached)


def report(diffs: Sequence[Difference], limit: int = 5) -> str:
    shown = [str(d) for d in diffs[:limit]]
    if len(diffs) > limit:
        shown.append(f"... and {len(diffs) - limit} more")
    return "\n".join(shown)
