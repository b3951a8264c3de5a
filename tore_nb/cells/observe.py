"""What a running cell touches: files, directories, environment keys, the working directory,
first imports, and whether it seeded a random generator before drawing from it.

`observe()` records, for the thread that entered it and while it is active:

- files opened for reading and for writing (`open`, `os.open`), by the path given, less file
  descriptors, library data (the Python installation, site-packages, the stdlib), ``/proc``,
  ``/dev``, ``/sys``, what the import system reads, and anything that is not a regular file
  after the run; a file the run created or truncated before reading it is not a read;
- directories listed (`os.listdir`, `os.scandir`, so `glob` and `Path.glob` too) and the
  patterns given to `glob.glob`;
- environment keys read (``os.environ[k]``, ``.get``, ``in``, `os.getenv`) before the run set
  them, and whether it iterated the whole environment (``dict(os.environ)``, ``.items()``);
- whether it depends on the working directory: a relative path opened or listed, `os.getcwd()`
  or `Path.cwd()` called, before any ``os.chdir`` to an absolute path;
- modules imported for the first time;
- which ``consumed`` probes (`probes`) it reset through one of their `seeders` before their
  state had changed in the run: those draws do not depend on the state before the cell;
- what it did outside the kernel (`effects`): programs started, processes signalled, a
  tore_nb cache used.

Files come from one process-wide audit hook, installed on first use (`sys.addaudithook` hooks
cannot be removed): with no observation active it returns after one global check. Environment
reads, `os.getcwd`, the seeders and `MultiLevelCache`'s methods are patched only while an
observation is active, and put back when the last one ends, also when the cell raised.
Observations nest; each records everything. Work the cell hands to other threads or
processes, and files C code opens itself (pyarrow, h5py, sqlite), are not seen.

>>> import os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "data.txt")
>>> with open(path, "w") as f:
...     _ = f.write("1")
>>> with observe() as seen:
...     text = open(path).read()
...     home = os.environ.get("TORE_DOC_HOME")
>>> seen.result.files_read == (path,), seen.result.env_read
(True, ('TORE_DOC_HOME',))
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from ..code_origin import library_dirs
from . import effects
from .probes import StateProbe, probes

__all__ = ["Observation", "Observer", "observe"]

# observations in progress, all threads: the audit hook's only test while it is zero
_active = 0
_lock = threading.Lock()
_stacks: dict[int, list[_Recorder]] = {}  # thread id -> its observations, innermost last
_hook_installed = False
_get_ident = threading.get_ident
# the C function behind os.getcwd (posix/nt), which the patch below leaves alone
_real_getcwd: Callable[[], str] = getattr(sys.modules[os.name], "getcwd")  # noqa: B009
_IMPORT_FRAMES = ("<frozen importlib", "<frozen zipimport")
_CODE_SUFFIXES = (".py", ".pyc", ".pyo", ".pyd", ".so")
_SYSTEM_DIRS = ("/proc", "/dev", "/sys")


@dataclass(frozen=True)
class Observation:
    """What one run touched. Paths are as the cell gave them (`absolute` resolves one against
    the working directory of the moment it was used); each tuple is in first-use order.

    >>> Observation().files_read, Observation().cwd_read
    ((), False)
    """

    files_read: tuple[str, ...] = ()
    files_written: tuple[str, ...] = ()
    dirs_listed: tuple[str, ...] = ()
    globs: tuple[str, ...] = ()
    env_read: tuple[str, ...] = ()
    env_all: bool = False
    cwd_read: bool = False
    imported: tuple[str, ...] = ()
    seeded: frozenset[str] = frozenset()
    resolved: tuple[tuple[str, str], ...] = ()  # (path as given, absolute path)
    # files written without being created or truncated (appends), with their size before
    appended: tuple[tuple[str, int], ...] = ()
    # paths whose existence, kind or size the run asked for (os.stat), as given
    stats: tuple[str, ...] = ()
    # outside the kernel: programs started, process ids signalled, a tore_nb cache used
    started: tuple[str, ...] = ()
    signalled: tuple[int, ...] = ()
    used_cache: bool = False

    def absolute(self, path: str) -> str:
        """The absolute path a recorded path stood for when the cell used it.

        >>> Observation(files_read=("a.csv",), resolved=(("a.csv", "/w/a.csv"),)).absolute("a.csv")
        '/w/a.csv'
        """
        for given, absolute in self.resolved:
            if given == path:
                return absolute
        return os.path.abspath(path)


class _Recorder:
    """The mutable record of one observation; touched only by its own thread."""

    __slots__ = (
        "cwd_read",
        "cwd_replaced",
        "dirs",
        "env_all",
        "env_read",
        "env_written",
        "globs",
        "ignore",
        "imported",
        "last_module",
        "produced",
        "reads",
        "signalled",
        "sizes",
        "start",
        "start_digests",
        "started",
        "stats",
        "used_cache",
        "verdicts",
        "writes",
    )

    def __init__(self, ignore: tuple[str, ...]) -> None:
        self.ignore = ignore
        self.reads: dict[str, str] = {}  # absolute -> as given
        self.writes: dict[str, str] = {}
        self.produced: set[str] = set()  # created or truncated by the run
        self.sizes: dict[str, int] = {}  # written without truncating -> size before the run
        self.stats: dict[str, str] = {}  # paths os.stat looked at (exists, isfile, getsize)
        self.dirs: dict[str, str] = {}
        self.globs: dict[str, None] = {}
        self.env_read: dict[str, None] = {}
        self.env_written: set[str] = set()
        self.env_all = False
        self.cwd_read = False
        self.cwd_replaced = False
        self.imported: dict[str, None] = {}
        self.last_module: str | None = None
        self.start: dict[str, Any] = {}  # consumed probe name -> snapshot at the start
        self.start_digests: dict[str, str] = {}
        self.verdicts: dict[str, bool] = {}  # probe name -> seeded before its state changed
        self.started: dict[str, None] = {}  # programs, by name
        self.signalled: dict[int, None] = {}
        self.used_cache = False

    def uses_cwd(self) -> None:
        if not self.cwd_replaced:
            self.cwd_read = True


def _stack() -> list[_Recorder] | None:
    return _stacks.get(_get_ident())


# -- paths -------------------------------------------------------------------------------------
_library_dirs: tuple[str, ...] | None = None


def _library_prefixes() -> tuple[str, ...]:
    """Directories whose files are library data, each ending in a separator."""
    global _library_dirs
    if _library_dirs is None:
        dirs: set[str] = {*_SYSTEM_DIRS, *library_dirs()}
        # a prefix of Python's own (pyenv, conda, a venv) is all installation; a shared one
        # such as /usr holds user data too, and counts only by the library folders above
        for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}:
            if os.path.normpath(prefix) not in ("/", "/usr", "/usr/local", "/opt"):
                dirs.add(prefix)
        found = {os.path.normpath(d) for d in dirs if d}
        found |= {os.path.realpath(d) for d in found}
        _library_dirs = tuple(sorted(d.rstrip(os.sep) + os.sep for d in found))
    return _library_dirs


def _path_of(path: Any) -> str | None:
    if isinstance(path, int):
        return None
    if isinstance(path, bytes):
        return os.fsdecode(path)
    if isinstance(path, str):
        return path
    try:
        return os.fsdecode(os.fspath(path))
    except TypeError:
        return None


def _absolute(given: str) -> str:
    # not os.path.abspath: it calls os.getcwd, which counts as the cell reading it
    return os.path.normpath(given if os.path.isabs(given) else os.path.join(_real_getcwd(), given))


def _counts(absolute: str, ignore: tuple[str, ...]) -> bool:
    """False for library data and for what the caller ignores."""
    probe = absolute + os.sep
    return not (probe.startswith(_library_prefixes()) or (ignore and probe.startswith(ignore)))


def _by_import_system(depth: int) -> bool:
    return sys._getframe(depth).f_code.co_filename.startswith(_IMPORT_FRAMES)


def _recorders(stack: list[_Recorder], given: str, absolute: str) -> Iterator[_Recorder]:
    """The recorders a path counts for (not library data, not ignored), each told when the
    path was relative: the working directory was read too."""
    relative = not os.path.isabs(given)
    for rec in stack:
        if _counts(absolute, rec.ignore):
            if relative:
                rec.uses_cwd()
            yield rec


# -- the audit hook ------------------------------------------------------------------------------
def _on_open(stack: list[_Recorder], args: tuple[Any, ...]) -> None:
    given = _path_of(args[0])
    if given is None or _by_import_system(4):
        return
    flags = args[2] if len(args) > 2 and isinstance(args[2], int) else os.O_RDONLY
    access = flags & os.O_ACCMODE
    reads = access != os.O_WRONLY
    writes = access != os.O_RDONLY
    replaces = writes and bool(flags & os.O_TRUNC or (flags & os.O_CREAT and flags & os.O_EXCL))
    if given.endswith(_CODE_SUFFIXES) and not writes and _in_import():
        return
    absolute = _absolute(given)
    for rec in _recorders(stack, given, absolute):
        if replaces and absolute not in rec.reads:  # "w+" reads only what it wrote
            rec.produced.add(absolute)
        if reads and absolute not in rec.produced:
            rec.reads.setdefault(absolute, given)
        if writes:
            rec.writes.setdefault(absolute, given)
            if not replaces and absolute not in rec.produced and absolute not in rec.sizes:
                rec.sizes[absolute] = _size(absolute)  # what an append adds starts here


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _in_import() -> bool:
    """Whether the import system is running, somewhere up this thread's stack."""
    frame = sys._getframe(3)
    depth = 0
    while frame is not None and depth < 200:
        if frame.f_code.co_filename.startswith(_IMPORT_FRAMES):
            return True
        frame = frame.f_back  # type: ignore[assignment]
        depth += 1
    return False


def _on_listing(stack: list[_Recorder], args: tuple[Any, ...]) -> None:
    target = args[0] if args else None
    given = "." if target is None else _path_of(target)
    if given is None or _by_import_system(4):  # FileFinder lists every sys.path entry
        return
    absolute = _absolute(given)
    for rec in _recorders(stack, given, absolute):
        rec.dirs.setdefault(absolute, given)


def _stat_wrapper(original: Callable[..., Any]) -> Callable[..., Any]:
    """`os.stat` as the cell calls it (`os.path.exists`, `isfile`, `getsize`, `Path.exists`):
    what it learns of a path is an input even when it never opens it."""

    def stat(path: Any, *args: Any, **kwargs: Any) -> Any:
        stack = _stack()
        if stack:
            with contextlib.suppress(Exception):  # never fail the cell's own stat
                _note_stat(stack, path)
        return original(path, *args, **kwargs)

    stat.__name__ = getattr(original, "__name__", "stat")
    stat.__qualname__ = stat.__name__
    stat.__doc__ = original.__doc__
    return stat


def _note_stat(stack: list[_Recorder], path: Any) -> None:
    given = _path_of(path)
    if given is None or _by_import_system(4):
        return
    absolute = _absolute(given)
    for rec in _recorders(stack, given, absolute):
        if absolute not in rec.produced:
            rec.stats.setdefault(absolute, given)


def _on_glob(stack: list[_Recorder], args: tuple[Any, ...]) -> None:
    pattern = _path_of(args[0])
    if pattern is None:
        return
    root = args[2] if len(args) > 2 else None
    relative = not os.path.isabs(pattern) and (
        root is None or not os.path.isabs(_path_of(root) or "")
    )
    for rec in stack:
        if relative:
            rec.uses_cwd()
        rec.globs.setdefault(pattern, None)


def _on_chdir(stack: list[_Recorder], args: tuple[Any, ...]) -> None:
    target = _path_of(args[0]) if args else None
    for rec in stack:
        if target is not None and not os.path.isabs(target):
            rec.uses_cwd()  # where it lands depends on where it started
        rec.cwd_replaced = True


def _on_import(stack: list[_Recorder], args: tuple[Any, ...]) -> None:
    if args and isinstance(args[0], str):
        for rec in stack:
            rec.imported.setdefault(args[0], None)


_HANDLERS: dict[str, Callable[[list[_Recorder], tuple[Any, ...]], None]] = {
    "open": _on_open,
    "os.listdir": _on_listing,
    "os.scandir": _on_listing,
    "glob.glob/2": _on_glob,
    "os.chdir": _on_chdir,
    "import": _on_import,
    **effects.HANDLERS,
}


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _active:  # the whole cost of the hook while nothing is observed
        _dispatch(event, args)


def _dispatch(event: str, args: tuple[Any, ...]) -> None:
    handler = _HANDLERS.get(event)
    if handler is None:
        return
    stack = _stacks.get(_get_ident())
    if stack:
        try:  # noqa: SIM105 (suppress() costs more, on every event)
            handler(stack, args)
        except Exception:  # raised here, it would fail the cell's own open() or import
            pass


# -- patches while observing ----------------------------------------------------------------------
_Environ: Any = type(os.environ)
_ENV_METHODS = ("__getitem__", "__contains__", "__iter__", "__setitem__", "__delitem__")
_saved: list[tuple[Any, str, Any, bool]] = []  # (owner, attribute, original, was own attribute)
_patched_seeders: set[str] = set()


def _note_env_read(key: Any) -> None:
    stack = _stack()
    if stack and isinstance(key, str):
        for rec in stack:
            if key not in rec.env_written:
                rec.env_read.setdefault(key, None)


def _make_env_patches(originals: Mapping[str, Any]) -> dict[str, Any]:
    getitem, contains, iterate = (
        originals["__getitem__"],
        originals["__contains__"],
        originals["__iter__"],
    )
    setitem, delitem = originals["__setitem__"], originals["__delitem__"]

    def __getitem__(self: Any, key: Any) -> Any:
        if self is os.environ:
            _note_env_read(key)
        return getitem(self, key)

    def __contains__(self: Any, key: Any) -> bool:
        if self is os.environ:
            _note_env_read(key)
        return bool(contains(self, key))

    def __iter__(self: Any) -> Iterator[Any]:
        if self is os.environ:
            for rec in _stack() or ():
                rec.env_all = True
        return iter(iterate(self))

    def __setitem__(self: Any, key: Any, value: Any) -> None:
        if self is os.environ:
            for rec in _stack() or ():
                rec.env_written.add(key)
        setitem(self, key, value)

    def __delitem__(self: Any, key: Any) -> None:
        if self is os.environ:
            for rec in _stack() or ():
                rec.env_written.add(key)
        delitem(self, key)

    return {
        "__getitem__": __getitem__,
        "__contains__": __contains__,
        "__iter__": __iter__,
        "__setitem__": __setitem__,
        "__delitem__": __delitem__,
    }


class _Wrapper:
    """A patched module function; pickles (and prints) as the original, so one that a cell bound
    (``from os import getcwd``) and kept beyond the observation stays usable and storable."""

    __slots__ = ("__wrapped__", "_before")

    def __init__(self, original: Callable[..., Any], before: Callable[[], None]) -> None:
        self.__wrapped__ = original
        self._before = before

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if _active:
            self._before()
        return self.__wrapped__(*args, **kwargs)

    def __reduce__(self) -> Any:
        return (_unwrapped, (self.__wrapped__,))

    def __repr__(self) -> str:
        return repr(self.__wrapped__)

    def __getattr__(self, name: str) -> Any:
        if name == "__wrapped__":  # unset slot: no recursion
            raise AttributeError(name)
        return getattr(self.__wrapped__, name)


def _unwrapped(original: Callable[..., Any]) -> Callable[..., Any]:
    return original


def _note_cwd() -> None:
    for rec in _stack() or ():
        rec.uses_cwd()


def _note_cache() -> None:
    stack = _stack()
    if stack and not all(rec.used_cache for rec in stack) and not effects.from_event_hook():
        for rec in stack:
            rec.used_cache = True


def _seed_note(probe: StateProbe) -> Callable[[], None]:
    def before() -> None:
        stack = _stack()
        if not stack:
            return
        name = probe.name
        undecided = [r for r in stack if name in r.start and name not in r.verdicts]
        if not undecided:
            return
        try:
            now = probe.digest(probe.capture())
        except Exception:
            return
        for rec in undecided:
            start = rec.start_digests.get(name)
            if start is None:
                start = rec.start_digests[name] = probe.digest(rec.start[name])
            rec.verdicts[name] = start == now

    return before


def _patch(owner: Any, attribute: str, replacement: Any) -> None:
    original = getattr(owner, attribute)
    own = attribute in vars(owner)
    _saved.append((owner, attribute, original, own))
    setattr(owner, attribute, replacement)


def _install() -> None:
    """Called under _lock when the first observation starts."""
    originals = {name: getattr(_Environ, name) for name in _ENV_METHODS}
    for name, function in _make_env_patches(originals).items():
        _patch(_Environ, name, function)
    _patch(os, "stat", _stat_wrapper(os.stat))
    _patch(os, "getcwd", _Wrapper(os.getcwd, _note_cwd))
    _patch(os, "getcwdb", _Wrapper(os.getcwdb, _note_cwd))
    for cls, name, method in effects.cache_methods():
        _patch(cls, name, effects.noting(method, _note_cache))


def _patch_seeders() -> list[StateProbe]:
    """Wrap the seeders of every available consumed probe not wrapped yet (under _lock); the
    probes whose seeders are wrapped."""
    watched = []
    for probe in probes():
        if probe.kind != "consumed":
            continue
        try:
            if not probe.available():
                continue
        except Exception:
            continue
        wrapped = True
        for dotted in probe.seeders:
            if dotted in _patched_seeders:
                continue
            module_name, _, attribute = dotted.rpartition(".")
            module = sys.modules.get(module_name)
            original = getattr(module, attribute, None)
            if original is None:
                wrapped = False
                continue
            _patch(module, attribute, _Wrapper(original, _seed_note(probe)))
            _patched_seeders.add(dotted)
        if wrapped and probe.seeders:
            watched.append(probe)
    return watched


def _uninstall() -> None:
    """Called under _lock when the last observation ends: newest patch first, and only where
    ours is still in place (someone who patched over us keeps theirs)."""
    while _saved:
        owner, attribute, original, own = _saved.pop()
        current = vars(owner).get(attribute)
        mine = current is not None and (
            isinstance(current, _Wrapper)
            or getattr(current, "__module__", None) in (__name__, effects.__name__)
        )
        if not mine:
            continue
        if own:
            setattr(owner, attribute, original)
        else:
            delattr(owner, attribute)
    _patched_seeders.clear()


# -- the context manager ----------------------------------------------------------------------
class Observer:
    """One observation: a context manager whose `result` is the `Observation` once it exits.

    >>> with observe() as seen:
    ...     pass
    >>> seen.result.files_read
    ()
    """

    __slots__ = ("_ignore", "_rec", "_result", "_snapshots")

    def __init__(self, snapshots: Mapping[str, Any] | None, ignore: Iterable[str]) -> None:
        self._snapshots = snapshots
        self._ignore = tuple(
            sorted({_absolute(os.fspath(p)).rstrip(os.sep) + os.sep for p in ignore})
        )
        self._rec: _Recorder | None = None
        self._result: Observation | None = None

    @property
    def result(self) -> Observation:
        """What the run touched; RuntimeError before the observation ended."""
        if self._result is None:
            raise RuntimeError("the observation has not ended yet")
        return self._result

    def __enter__(self) -> Observer:
        global _active, _hook_installed
        if self._rec is not None or self._result is not None:
            raise RuntimeError("an Observer is entered once")
        rec = _Recorder(self._ignore)
        _library_prefixes()  # here, not in the hook: sysconfig reads the environment
        with _lock:
            if not _hook_installed:
                sys.addaudithook(_audit)
                _hook_installed = True
            if not _active:
                _install()
            watched = _patch_seeders()
            _active += 1
            _stacks.setdefault(_get_ident(), []).append(rec)
        given = self._snapshots or {}
        for probe in watched:
            with contextlib.suppress(Exception):  # unknown start: never counts as seeded
                rec.start[probe.name] = (
                    given[probe.name] if probe.name in given else probe.capture()
                )
        try:
            rec.last_module = next(reversed(sys.modules))
        except (StopIteration, RuntimeError):
            rec.last_module = None
        self._rec = rec
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        global _active
        rec = self._rec
        if rec is None or self._result is not None:
            return
        with _lock:
            # normally this thread's stack; any, when an async context left from another thread
            for ident, stack in list(_stacks.items()):
                if rec in stack:
                    stack.remove(rec)
                    if not stack:
                        del _stacks[ident]
                    break
            _active -= 1
            if not _active:
                _uninstall()
        self._result = _finish(rec)


def observe(snapshots: Mapping[str, Any] | None = None, *, ignore: Iterable[str] = ()) -> Observer:
    """Record what the code run inside touches, in this thread (see the module docstring).

    `snapshots` are the `probes.capture_all()` taken just before, so that the start state of a
    random generator is not captured twice; `ignore` adds folders whose files never count
    (the cache's own directory).

    >>> import random
    >>> with observe() as seen:
    ...     random.seed(3); x = random.random()
    >>> sorted(seen.result.seeded)
    ['random']
    """
    return Observer(snapshots, ignore)


def _new_modules(rec: _Recorder) -> list[str]:
    """Names added to sys.modules since the start: its tail, as dicts keep insertion order."""
    last = rec.last_module
    if last is None or last not in sys.modules:
        return []
    for _ in range(3):  # another thread importing meanwhile changes the dict under the walk
        try:
            tail = []
            for name in reversed(sys.modules):
                if name == last:
                    break
                tail.append(name)
            return tail[::-1]
        except RuntimeError:
            continue
    return []


def _finish(rec: _Recorder) -> Observation:
    imported = dict.fromkeys(_new_modules(rec))
    imported.update((name, None) for name in rec.imported if name in sys.modules)
    reads = {a: g for a, g in rec.reads.items() if os.path.isfile(a)}
    writes = {a: g for a, g in rec.writes.items() if os.path.isfile(a)}
    dirs = {a: g for a, g in rec.dirs.items() if os.path.isdir(a)}
    resolved = {g: a for table in (reads, writes, dirs, rec.stats) for a, g in table.items()}
    return Observation(
        files_read=tuple(dict.fromkeys(reads.values())),
        files_written=tuple(dict.fromkeys(writes.values())),
        dirs_listed=tuple(dict.fromkeys(dirs.values())),
        globs=tuple(rec.globs),
        env_read=tuple(rec.env_read),
        env_all=rec.env_all,
        cwd_read=rec.cwd_read,
        imported=tuple(imported),
        seeded=frozenset(name for name, seeded in rec.verdicts.items() if seeded),
        resolved=tuple(resolved.items()),
        stats=tuple(dict.fromkeys(g for a, g in rec.stats.items() if a not in reads)),
        appended=tuple(
            (g, rec.sizes[a]) for a, g in writes.items() if a in rec.sizes and a not in rec.produced
        ),
        started=tuple(rec.started),
        signalled=tuple(rec.signalled),
        used_cache=rec.used_cache,
    )
