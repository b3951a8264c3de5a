"""`%%tcache` and `%tcache`: the IPython face of tore_nb's cached cells.

Thin by design: parse the arguments with `magic_arguments`, call `tore_nb.cells`, display.
Defaults are traitlets configuration, so `%config TcacheMagics.ttl = 3600` works, and so does
`c.TcacheMagics.tiers = ["memory", "disk"]` in an IPython profile.

`start_run` is how `tore-nb run` starts a kernel: every cell cached, in a cache of the run's
own, each with a note for the run, and nothing of it visible to the notebook (its `%load_ext
tore_nb`, `%tcache config`, default cache and figures are those of a plain run).

>>> from IPython.testing.globalipapp import get_ipython  # doctest: +SKIP
>>> ip = get_ipython(); ip.run_line_magic("load_ext", "tore_nb")  # doctest: +SKIP
>>> ip.run_cell("%%tcache\\nx = 1")  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import sys
from collections.abc import Callable
from typing import Any, TypeVar, cast

from IPython.core import magic as _magic
from IPython.core import magic_arguments as _magic_arguments
from IPython.core.error import UsageError
from IPython.core.magic import Magics, magics_class
from traitlets import Bool, Dict, Float, List, Unicode, observe

from . import cells
from .cells import CellError, CellKey, CellOptions, CellOutcome, KeyPart
from .keys import hash_bytes

__all__ = [
    "RUN_NOTE",
    "TcacheMagics",
    "load_ipython_extension",
    "parse_ttl",
    "start_run",
    "unload_ipython_extension",
]

#: the key, under a note's `tore_nb` metadata, that marks the notes of `tore-nb run`
RUN_NOTE = "run"

F = TypeVar("F", bound=Callable[..., Any])
# IPython's magic decorators are untyped: thin typed wrappers keep mypy --strict meaningful here
_ma: Any = _magic_arguments
_mg: Any = _magic


def cell_magic(name: str) -> Callable[[F], F]:
    return cast("Callable[[F], F]", _mg.cell_magic(name))


def line_magic(name: str) -> Callable[[F], F]:
    return cast("Callable[[F], F]", _mg.line_magic(name))


def magic_arguments(name: str) -> Callable[[F], F]:
    return cast("Callable[[F], F]", _ma.magic_arguments(name))


def argument(*args: Any, **kwargs: Any) -> Callable[[F], F]:
    return cast("Callable[[F], F]", _ma.argument(*args, **kwargs))


def parse_argstring(magic: Callable[..., Any], line: str) -> argparse.Namespace:
    return cast(argparse.Namespace, _ma.parse_argstring(magic, line))


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_ttl(text: str) -> float:
    """Seconds from '90', '90s', '15m', '2h', '7d' or '1w'.

    >>> parse_ttl("2h"), parse_ttl("90")
    (7200.0, 90.0)
    """
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    if not m or float(m.group(1)) <= 0:
        raise argparse.ArgumentTypeError(
            f"invalid TTL {text!r}: use seconds or a number with s, m, h, d or w (e.g. 2h)"
        )
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


def _names(values: list[str] | None) -> tuple[str, ...] | None:
    """Names given as `a b` or `a,b`."""
    if values is None:
        return None
    out = tuple(n for v in values for n in v.split(",") if n)
    for n in out:
        if not n.isidentifier():
            raise UsageError(f"not a variable name: {n!r}")
    return out


@magics_class
class TcacheMagics(Magics):
    """The `%%tcache` cell magic and the `%tcache` line magic."""

    enabled = Bool(True, help="Cache cells; when False, %%tcache cells simply run.").tag(
        config=True
    )
    ttl = Float(None, allow_none=True, help="Default time to live of cell entries, seconds.").tag(
        config=True
    )
    tiers = List(
        Unicode(),
        default_value=None,
        allow_none=True,
        help="Default tiers cells are stored in (default: routed by size).",
    ).tag(config=True)
    min_seconds = Float(
        0.005,
        help="With `%tcache auto`, a cell that runs faster than this (seconds) is not stored: "
        "its hit would cost about as much as running it.",
    ).tag(config=True)
    verbose = Bool(
        False,
        help="Show the full line under every cached cell (hit, stored, off); by default a "
        "line shows only on a real saving, when a cell re-runs because something changed, "
        "or when it cannot be cached.",
    ).tag(config=True)
    auto = Bool(
        False,
        help="Cache every cell without a %%tcache line (`%tcache auto`); cells cheaper than "
        "their own hit run plainly.",
    ).tag(config=True)
    cache_config = Dict(
        help="CacheConfig fields overriding the environment for the default "
        "cache, e.g. {'disk_cache_path': '/data/cache'}."
    ).tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)  # type: ignore[no-untyped-call]
        # label -> (key, its parts now, the parts of the entry stored before it)
        self.history: dict[
            str, tuple[CellKey, tuple[KeyPart, ...], tuple[KeyPart, ...] | None]
        ] = {}
        self.last_label: str | None = None
        self._depth = 0  # inside a cached run: auto leaves the nested cell alone
        self._cheap: set[str] = set()  # digests of auto cells cheaper than their own hit
        self._cheap_file: str | None = None  # where they are listed, once read
        self._noted: set[str] = set()  # auto cells whose note was shown
        self._run_cache: Any = None  # `tore-nb run`'s own cache, once `start_run` was called
        self._unwrapped: str | None = None  # run: why auto left the cell running now alone
        if self.cache_config:
            self._apply_cache_config()

    @observe("cache_config")
    def _cache_config_changed(self, change: dict[str, Any]) -> None:
        self._apply_cache_config()

    def _apply_cache_config(self) -> None:
        from tore_nb.config import CacheConfig
        from tore_nb.tiered import get_cache

        try:
            config = CacheConfig.from_env(**self.cache_config)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"TcacheMagics.cache_config: {exc}") from None
        get_cache(config)

    @property
    def ip(self) -> Any:
        """The IPython shell these magics belong to."""
        assert self.shell is not None
        return self.shell

    @property
    def cache(self) -> Any:
        """The process-wide cache (`tore_nb.get_cache()`), shared with `@cached` functions."""
        from tore_nb.tiered import get_cache

        return get_cache()

    # -- %%tcache ---------------------------------------------------------------------------------
    @magic_arguments("%tcache")
    @argument("--name", "-n", help="a stable name for the cell: labels its keys, for explain")
    @argument("--ttl", type=parse_ttl, help="time to live: seconds, or 15m, 2h, 7d")
    @argument("--tiers", nargs="+", help="tiers to use: memory disk redis s3 (or a,b)")
    @argument("--force", "-f", action="store_true", help="run the cell and overwrite its entry")
    @argument("--off", action="store_true", help="run the cell without any caching")
    @argument("--vars", nargs="+", help="variables to store (default: all the cell assigns)")
    @argument("--deps", nargs="+", help="extra input variables the key should depend on")
    @argument("--files", nargs="+", help="files (or globs) the key depends on, by content")
    @argument(
        "--explain",
        action="store_true",
        help="show which parts of the key changed since the stored entry",
    )
    @argument("--auto", action="store_true", help="how `%%tcache auto` runs a cell (quiet notes)")
    @cell_magic("tcache")
    def tcache_cell(self, line: str, cell: str) -> None:
        """Cache a whole cell: its variables and everything it prints or displays.

        The key is the cell's code (through ast: comments and layout do not count), the
        content of every variable it reads, the code of the functions it calls, the modules it
        imports, and --deps and --files; what the run itself reads (files, environment
        variables, random state) is added once it has run. A hit restores what the run changed
        and replays the outputs in order. A cell with top-level `await` cannot be run by
        %%tcache inside Jupyter's running event loop.
        """
        args = parse_argstring(self.tcache_cell, line)
        tiers = _names(args.tiers) if args.tiers else self.tiers
        if tiers is not None:
            unknown = [t for t in tiers if t not in self.cache.tier_names]
            if unknown:
                raise UsageError(
                    f"--tiers: {', '.join(unknown)} not enabled; this cache has "
                    f"{', '.join(self.cache.tier_names) or 'no tiers'}"
                )
        options = CellOptions(
            name=args.name,
            ttl=args.ttl if args.ttl is not None else self.ttl,
            tiers=None if tiers is None else tuple(tiers),
            force=args.force,
            off=args.off or not self.enabled,
            variables=_names(args.vars),
            deps=_names(args.deps) or (),
            files=tuple(args.files or ()),
            warn=not args.auto,
            min_seconds=self.min_seconds if args.auto else 0.0,
            rerun_effects=args.auto,  # nobody chose to cache it: what acts outside runs
        )
        run = args.auto and self._run_cache is not None
        outcome = self._run(cell, options, args.explain, self._run_cache if run else self.cache)
        if run:
            self._publish(_run_note(outcome), outcome.status, run=True)
        if args.auto and outcome.cheap:
            self._mark_cheap(cell)

    def _run(self, cell: str, options: CellOptions, explain: bool, cache: Any) -> CellOutcome:
        self._depth += 1  # the cell's own transforms and run: not wrapped again by auto
        try:
            return self._run_inner(cell, options, explain, cache)
        finally:
            self._depth -= 1

    def _run_inner(self, cell: str, options: CellOptions, explain: bool, cache: Any) -> CellOutcome:
        shell = self.ip
        source = shell.transform_cell(cell)
        _refuse_top_level_await(shell, cell, source)
        on_key = None
        if explain:

            def on_key(key: CellKey, parts: tuple[KeyPart, ...]) -> None:
                stored = cells.latest_parts(cache, key.label)
                self._show(cells.explain(parts, stored, key.label))

        outcome = cells.run_cached_cell(
            source,
            shell.user_ns,
            cache,
            self._runner(cell),
            options=options,
            shell=shell,
            on_key=on_key,
        )
        if outcome.key is not None:
            self.history[outcome.key.label] = (outcome.key, outcome.parts, outcome.previous)
            self.last_label = outcome.key.label
        if self._run_cache is not None and not options.warn:
            return outcome  # tore-nb run's cell: its caller says it for the run
        # a note on a cell not cached: once per cell in auto mode, else the CacheWarning says it
        if outcome.status != "not-cached" or (not options.warn and self._first_note(cell)):
            self._publish(outcome.message(self.verbose), outcome.status)
        return outcome

    # -- %tcache auto -----------------------------------------------------------------------------
    @observe("auto")
    def _auto_changed(self, change: dict[str, Any]) -> None:
        self._transform(change["new"] or self._run_cache is not None)

    def _transform(self, on: bool) -> None:
        transformers = self.ip.input_transformers_cleanup
        if on and self._auto_transform not in transformers:
            self._is_cheap("")  # reads the list of cheap cells now, not in the first cell
            transformers.append(self._auto_transform)
        elif not on and self._auto_transform in transformers:
            transformers.remove(self._auto_transform)

    def start_run(self, cache_dir: str | None = None) -> None:
        """Cache every following cell in a cache of the run's own (its disk tier in
        `cache_dir`, else the environment's), whatever `auto` says; the notebook's default cache
        is left to the notebook. After each cell one note tagged `{"tore_nb": {"run": True}}`
        says whether it was served, and if not, why it ran."""
        from tore_nb.config import CacheConfig
        from tore_nb.tiered import MultiLevelCache

        overrides: dict[str, Any] = {"disk_cache_path": cache_dir} if cache_dir else {}
        config = CacheConfig.from_env(**overrides)
        self._run_cache = MultiLevelCache(config)
        self._cheap_file = None  # the list of cheap cells beside the run's cache, not the default
        self._transform(True)
        self.ip.events.register("post_run_cell", self._after_run_cell)
        self.ip.register_magic_function(self._run_status, "line", "tcache_run")

    def _run_status(self, line: str = "") -> None:
        """`%tcache_run`, in a kernel `tore-nb run` started: the run's cache."""
        print(f"cache: {self._run_cache!r}")

    def _after_run_cell(self, *args: Any) -> None:
        """Says why auto left a cell alone (a note published after the cell, as its own)."""
        if self._depth == 0 and self._unwrapped is not None:
            why, self._unwrapped = self._unwrapped, None
            self._publish(f"tcache: not cached: {why}", "not-cached", run=True)

    def _auto_transform(self, lines: list[str]) -> list[str]:
        """Wrap a cell in `%%tcache --auto` unless it is a magic's, only magics or shell
        commands, or known to be cheaper than its own hit."""
        # cheapest tests first, on plain attributes: this runs before every cell of the notebook
        if self._depth or not lines:
            return lines
        cheap = self._is_cheap("".join(lines))  # a digest and a set lookup
        if (cheap or not self.enabled) and self._run_cache is None:
            return lines
        if not _transforming_a_cell():
            return lines
        code = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
        why = None
        if cheap:
            why = "it runs faster than its own hit would (timed on an earlier run)"
        elif not self.enabled:
            why = "caching is off (TcacheMagics.enabled)"
        elif not code:
            why = "it holds comments only"
        elif code[0].startswith("%%tcache"):
            why = "it has its own %%tcache line: the notebook caches it, in the notebook's cache"
        elif code[0].startswith("%%"):
            why = f"a cell magic ({code[0].split()[0]}) runs as it is"
        elif all(c[0] in "%!" for c in code):
            why = "magics and shell commands run as they are"
        self._unwrapped = why
        return lines if why else ["%%tcache --auto\n", *lines]

    def _is_cheap(self, cell: str) -> bool:
        digest = hash_bytes(cell.encode("utf-8", "surrogatepass"))
        if self._cheap_file is None:
            self._cheap.update(_read_cheap(self._cheap_path()))
            self._cheap_file = self._cheap_path()
        return digest in self._cheap

    def _mark_cheap(self, cell: str) -> None:
        digest = hash_bytes(cell.encode("utf-8", "surrogatepass"))
        if digest in self._cheap:
            return
        self._cheap.add(digest)
        path = self._cheap_path()
        if path:
            with contextlib.suppress(OSError), open(path, "a", encoding="ascii") as f:
                f.write(digest + "\n")  # lost, it is only a cell timed again

    def _cheap_path(self) -> str:
        """The list of cells known cheap, beside the disk tier: read once per session, it
        spares a cheap cell even a cache lookup. Not signed: all a forged line can do is run a
        cell plainly."""
        from tore_nb.config import CacheConfig
        from tore_nb.tiered import default_cache

        try:
            # the config alone: opening the cache costs more than a cheap cell runs
            made = self._run_cache or default_cache()
            config = made.config if made is not None else CacheConfig.from_env(**self.cache_config)
        except Exception:  # a bad setting is the cache's to report
            return ""
        folder = config.disk_cache_path if config.disk_enabled else ""
        return os.path.join(folder, "tcache-cheap.txt") if folder else ""

    def _first_note(self, cell: str) -> bool:
        """Whether an auto cell's note has not been shown for this code yet."""
        digest = hash_bytes(cell.encode("utf-8", "surrogatepass"))
        if digest in self._noted:
            return False
        self._noted.add(digest)
        return True

    def _runner(self, cell: str) -> Callable[[], None]:
        shell = self.ip

        def run() -> None:
            hook: Any = getattr(shell, "displayhook", None)
            outer = getattr(hook, "exec_result", None)
            quiet = _quiet_hook(hook, cell)
            try:
                result = shell.run_cell(cell, store_history=False)
            finally:
                quiet()
            if outer is not None:  # the nested run detached the %%tcache cell's own result
                hook.exec_result = outer
                if result.result is not None:
                    outer.result = result.result
            if not result.success:
                error = result.error_in_exec or result.error_before_exec
                _quiet(error)
                raise error if error is not None else CellError(None)

        return run

    def _publish(self, text: str | None, status: str, *, run: bool = False) -> None:
        """Show a note under the cell, tagged so that a run can tell notes from outputs."""
        if text is None:
            return
        tag: dict[str, Any] = {"status": status, **({RUN_NOTE: True} if run else {})}
        self.ip.display_pub.publish({"text/plain": text}, {"tore_nb": tag})

    def _show(self, explanation: cells.Explanation) -> None:
        from IPython import display

        print(explanation)
        if explanation.rows:
            show: Any = display.display
            show(explanation.to_frame())

    # -- %tcache ----------------------------------------------------------------------------------
    @magic_arguments("tcache")
    @argument(
        "action",
        choices=["stats", "explain", "clear", "keys", "config", "dashboard", "auto"],
        help="stats [--all]: per tier figures, rounded (--all: every one); "
        "dashboard: live per tier widget; "
        "explain [name]: what changed in a cell's key; "
        "clear [pattern]: remove entries (default: every cell and @cached entry); "
        "keys [pattern]: list keys; config: settings in force; "
        "auto [off]: cache every following cell without a %%tcache line",
    )
    @argument("target", nargs="?", default=None, help="a cell name, a key glob pattern, or on/off")
    @argument(
        "--all",
        action="store_true",
        dest="everything",
        help="stats: every figure (p99, failed verification, refused writes, promoted, writes, "
        "deletes, MB read and written), not only the ones read first",
    )
    @line_magic("tcache")
    def tcache_line(self, line: str) -> Any:
        """Inspect and manage the notebook cache: stats, dashboard, explain, clear, keys, config."""
        args = parse_argstring(self.tcache_line, line)
        cache = self.cache
        if args.action == "stats":
            from .widgets.figures import stats_frame

            # the dashboard's names and rounding: one word per figure wherever it shows
            return stats_frame(cache.snapshot(), everything=args.everything)
        if args.action == "dashboard":
            from .widgets import CacheDashboard

            return CacheDashboard(cache)  # displays itself as the live widget
        if args.action == "keys":
            pattern = args.target or "tcache:*"
            return [k for k in cache.find_keys(pattern) if not k.startswith(cells.LATEST_PREFIX)]
        if args.action == "clear":
            pattern = args.target or "tcache:*"
            n = cache.invalidate(pattern)
            print(f"tcache: removed {n} entr{'y' if n == 1 else 'ies'} matching {pattern!r}")
            return None
        if args.action == "config":
            print(self._config_text())
            return None
        if args.action == "auto":
            target = (args.target or "on").lower()
            if target not in ("on", "off"):
                raise UsageError("tcache auto: use `%tcache auto` or `%tcache auto off`")
            self.auto = target == "on"
            return None
        return self.explain(args.target).to_frame()

    def explain(self, name: str | None = None) -> cells.Explanation:
        """What changed in a cell's key: its latest run here against the entry it was compared
        with, or (after a restart) the latest stored entry against the one it replaced."""
        label = name or self.last_label
        if label is None:
            raise UsageError("tcache explain: no %%tcache cell has run yet; name one")
        if label in self.history:
            _, parts, previous = self.history[label]
            return cells.explain(parts, previous, label)
        latest = cells.latest_parts(self.cache, label)
        if latest is None:
            known = sorted(self.history)
            raise UsageError(
                f"tcache explain: no cell named {label!r}"
                + (f"; known: {', '.join(known)}" if known else "")
            )
        return cells.explain(latest, cells.previous_parts(self.cache, label), label)

    def _config_text(self) -> str:
        from tore_nb.redaction import redact_setting

        lines = []
        for name in sorted(self.class_trait_names(config=True)):
            value = getattr(self, name)
            if name == "cache_config":
                value = {k: redact_setting(k, v) for k, v in value.items()}
            lines.append(f"TcacheMagics.{name} = {value!r}")
        lines.append(f"cache: {self.cache!r}")
        lines.append(f"config: {self.cache.config!r}")
        return "\n".join(lines)


def _run_note(outcome: CellOutcome) -> str:
    """The note `tore-nb run` shows for an auto cell: served, stored, or why it ran.

    >>> _run_note(CellOutcome("stored"))
    'tcache: stored'
    """
    if outcome.status == "stored":  # an edited cell too: its label's entry is no news then
        return outcome.message() or "tcache: stored"
    if outcome.status == "not-cached":
        return f"tcache: not cached: {outcome.reason}"
    return outcome.message(verbose=True) or f"tcache: {outcome.status}"


def _refuse_top_level_await(shell: Any, cell: str, source: str) -> None:
    """A cell with top-level `await` runs only as a coroutine; %%tcache runs it from synchronous
    code, which inside an event loop already running (Jupyter's kernel) cannot wait for one."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return  # a terminal: IPython runs the coroutine in its own loop
    should_run_async = getattr(shell, "should_run_async", None)
    if should_run_async is None or not should_run_async(
        cell, transformed_cell=source, preprocessing_exc_tuple=None
    ):
        return
    raise UsageError(
        "%%tcache cannot run a cell with top-level `await` in a running event loop (as in "
        "Jupyter): the cell was not run. Await in a cell of its own, without %%tcache, and "
        "cache the cells that use the result; or make the cell synchronous."
    )


# who asks IPython to transform the code of a cell about to run (the shell itself, ipykernel);
# `%timeit`, `%time` and `%prun` transform the code they time too: that is no cell
_CELL_RUNNERS = frozenset({"_run_cell", "run_cell", "run_cell_async", "do_execute"})


def _read_cheap(path: str) -> set[str]:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return {line.strip() for line in f if len(line.strip()) == 32}
    except OSError:
        return set()


def _transforming_a_cell() -> bool:
    """Whether `InteractiveShell.transform_cell` was called to run a cell."""
    frame = sys._getframe(2)
    for _ in range(12):
        if frame is None:
            return False
        if frame.f_code.co_name == "transform_cell":  # TransformerManager's, then the shell's
            caller = frame.f_back
            while caller is not None and caller.f_code.co_name == "transform_cell":
                caller = caller.f_back
            return caller is not None and caller.f_code.co_name in _CELL_RUNNERS
        frame = frame.f_back  # type: ignore[assignment]
    return False


def _quiet_hook(hook: Any, cell: str) -> Callable[[], None]:
    """Make the display hook see this cell's own `;`: IPython looks for it at the end of the
    last input in history, which is the `%%tcache` cell (or nothing), not this one. Returns
    the undo."""
    check = getattr(hook, "semicolon_at_end_of_expression", None)
    if hook is None or check is None:
        return lambda: None
    had = "quiet" in vars(hook)
    old = vars(hook).get("quiet")

    def quiet() -> bool:
        try:
            return bool(check(cell))
        except Exception:  # tokenize errors: show, as IPython does
            return False

    hook.quiet = quiet

    def undo() -> None:
        if had:
            hook.quiet = old
        else:
            with contextlib.suppress(AttributeError):
                del hook.quiet

    return undo


def _quiet(error: BaseException | None) -> None:
    """The nested run already showed this error's traceback: make the re-raise show one line."""
    if error is None:
        return
    note = f"tcache: the cell raised {type(error).__name__}; nothing was cached"
    with contextlib.suppress(AttributeError, TypeError):
        error._render_traceback_ = lambda: [note]  # type: ignore[attr-defined]


_loaded: dict[int, TcacheMagics] = {}


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext tore_nb`: register %%tcache and %tcache (idempotent)."""
    if id(ipython) in _loaded:
        return
    from .fingerprint import track_imports

    track_imports()  # the code of local modules as imported, to tell when a file changed
    magics = TcacheMagics(shell=ipython)
    ipython.register_magics(magics)
    _loaded[id(ipython)] = magics


def start_run(ipython: Any, cache_dir: str | None = None) -> None:
    """What `tore-nb run` starts a kernel with (see `TcacheMagics.start_run`): the magics,
    registered without marking the extension loaded, so that the notebook's own `%load_ext
    tore_nb` is as silent as in a plain run."""
    load_ipython_extension(ipython)
    _loaded[id(ipython)].start_run(cache_dir)


def unload_ipython_extension(ipython: Any) -> None:
    """`%unload_ext tore_nb`: remove the magics again."""
    magics = _loaded.pop(id(ipython), None)
    if magics is None:
        return
    table = ipython.magics_manager.magics
    for kind in ("line", "cell"):
        if getattr(table[kind].get("tcache"), "__self__", None) is magics:
            del table[kind]["tcache"]
    ipython.magics_manager.registry.pop(type(magics).__name__, None)
    if magics in getattr(ipython, "configurables", []):
        ipython.configurables.remove(magics)
