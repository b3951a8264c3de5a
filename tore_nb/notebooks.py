"""Run whole notebooks headless with every cell cached: the engine of `tore-nb run`.

Each notebook runs top to bottom in a fresh kernel (nbclient), started with an IPython start-up
line (`tore_nb.magics.start_run`), so nothing is added to the notebook: every cell is keyed by
what it reads and served from the cache when that has not changed. Only the cells an edit
reaches run again. The kernel reports each cell's fate itself, in a note tagged
`{"tore_nb": {"status": ..., "run": true}}`: served, or why it ran (stored for the first time,
what changed, or why it cannot be served: it starts processes, uses a tore_nb cache itself,
holds live objects...). These notes are counted and then dropped, with tcache's one-line re-raise
of a failing cell, so the notebook written holds the outputs a plain nbclient run would have
written: the run caches in an object of its own, so the notebook's own `%load_ext tore_nb`,
`%%tcache` cells, `@cached` functions and cache figures show what they show in a plain run. A
last cell, `%tcache_run`, added for the run and removed after, checks that tore_nb did load.

The run's cache is the one the library reads from the kernel's environment (DISK_CACHE_PATH,
REDIS_URL, S3_CACHE_BUCKET, ...), or with `cache_dir` a disk cache of its own (the notebook's
default cache then stays as the environment makes it): a fresh kernel's memory tier is empty,
so hits come from disk or a shared tier.

>>> result = run_notebook("analysis.ipynb")  # doctest: +SKIP
>>> print(result.summary())  # doctest: +SKIP
analysis.ipynb: 12 cells, 10 served from the cache, 2 ran (3.1 s)
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "CellFailure",
    "CellRun",
    "NotebookRun",
    "ToreNotLoaded",
    "kernel_arguments",
    "kernel_env",
    "output_paths",
    "run_command",
    "run_notebook",
    "strip_run_notes",
]

#: the metadata key of the notes `%tcache` shows under a cached cell
NOTE_KEY = "tore_nb"
#: under it, the mark of the notes of the run (the notebook's own `%%tcache` notes stay)
RUN_KEY = "run"
#: the cell added at the end of a cached run: its output says tore_nb is loaded, and the cache
CHECK_SOURCE = "%tcache_run"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def kernel_arguments(cache: bool = True, cache_dir: str | None = None) -> list[str]:
    """The IPython kernel's command-line arguments that cache every cell of the notebook (in
    `cache_dir`, else in the cache the kernel's environment configures).

    A start-up line runs before the first cell and outside history, so execution counts stay
    those of a plain run; it binds no name in the notebook's namespace.

    >>> kernel_arguments()
    ["--IPKernelApp.exec_lines=__import__('tore_nb.magics').magics.start_run(get_ipython(), None)"]
    >>> kernel_arguments(cache=False)
    []
    """
    if not cache:
        return []
    line = f"__import__('tore_nb.magics').magics.start_run(get_ipython(), {cache_dir!r})"
    return [f"--IPKernelApp.exec_lines={line}"]


CellState = Literal["served", "ran", "failed"]
#: the note of a cell run and stored for the first time: no news
STORED = "stored"


@dataclass(frozen=True)
class CellRun:
    """One executed code cell: `index` counts every cell from 1, markdown too (as a notebook
    shows them); `note` is tcache's line about it, if it said one.

    >>> CellRun(3, "served", "total restored from disk").describe()
    'cell 3: served (total restored from disk)'
    >>> CellRun(4, "ran", "not cached: it starts a process (tesseract)").why()
    'not cached: it starts a process (tesseract)'
    """

    index: int
    state: CellState
    note: str | None = None

    def describe(self) -> str:
        return f"cell {self.index}: {self.state}" + (f" ({self.note})" if self.note else "")

    def why(self) -> str | None:
        """Why a cell that ran was not served, when there is more to say than that it ran for
        the first time."""
        if self.state == "served" or self.note in (None, STORED):
            return None
        return self.note


@dataclass(frozen=True)
class CellFailure:
    """The cell that stopped a run (an exception, a timeout, a dead kernel).

    >>> CellFailure(4, "1/0", "ZeroDivisionError", "division by zero").headline()
    'cell 4 failed: ZeroDivisionError: division by zero'
    """

    index: int
    source: str
    ename: str
    evalue: str
    traceback: str = ""

    def headline(self) -> str:
        return f"cell {self.index} failed: {self.ename}: {self.evalue}"


class ToreNotLoaded(RuntimeError):
    """The kernel could not load tore_nb: it is not installed in the kernel's environment."""


@dataclass
class NotebookRun:
    """What running one notebook did: its cells, where it was written, how long it took.

    >>> run = NotebookRun(Path("a.ipynb"), cells=[CellRun(1, "served"), CellRun(2, "ran")])
    >>> run.summary(), run.served, run.ran
    ('a.ipynb: 2 cells, 1 served from the cache, 1 ran (0.0 s)', 1, 1)
    """

    path: Path
    written: Path | None = None
    cells: list[CellRun] = field(default_factory=list)
    seconds: float = 0.0
    cached: bool = True
    failure: CellFailure | None = None
    cache: str = ""  # the kernel's cache, as `%tcache config` put it

    @property
    def served(self) -> int:
        """Cells served from the cache."""
        return sum(c.state == "served" for c in self.cells)

    @property
    def ran(self) -> int:
        """Cells the kernel executed (the failed one included)."""
        return sum(c.state != "served" for c in self.cells)

    @property
    def ok(self) -> bool:
        return self.failure is None

    def summary(self) -> str:
        """The line `tore-nb run` prints for this notebook."""
        n = len(self.cells)
        what = f"{n} cell{'' if n == 1 else 's'}"
        if self.cached:
            what += f", {self.served} served from the cache, {self.ran} ran"
        else:
            what += " ran (no cache)"
        if self.failure is not None:
            what += f", stopped at cell {self.failure.index}"
        line = f"{self.path}: {what} ({self.seconds:.1f} s)"
        if self.written is not None and self.written.resolve() != self.path.resolve():
            line += f" -> {self.written}"
        return line


def strip_run_notes(cell: Any) -> list[tuple[str, str]]:
    """Remove from a cell's outputs the run's notes and, unless the cell has its own
    `%%tcache` line, tcache's one-line re-raise of a failing cell; return the notes as
    (status, text) pairs, `tcache: ` dropped. The notebook's own `%%tcache` notes stay: a
    plain run shows them.

    >>> note = {"output_type": "display_data", "data": {"text/plain": "tcache: x from disk"}}
    >>> cell = {"outputs": [{**note, "metadata": {"tore_nb": {"status": "hit", "run": True}}}]}
    >>> strip_run_notes(cell), cell["outputs"]
    ([('hit', 'x from disk')], [])
    """
    kept: list[Any] = []
    notes: list[tuple[str, str]] = []
    own = _first_code_line(cell.get("source", "")).startswith("%%tcache")
    for out in cell.get("outputs", []):
        tag = out.get("metadata", {}).get(NOTE_KEY)
        if isinstance(tag, Mapping) and "status" in tag and tag.get(RUN_KEY):
            text = "".join(out.get("data", {}).get("text/plain", ""))
            notes.append((str(tag["status"]), text.removeprefix("tcache: ").strip()))
            continue
        if not own and _is_reraise(out, kept[-1] if kept else None):
            continue
        kept.append(out)
    cell["outputs"] = kept
    return notes


def _first_code_line(source: Any) -> str:
    text = "".join(source) if isinstance(source, list) else str(source)
    lines = (ln.strip() for ln in text.splitlines())
    return next((ln for ln in lines if ln and not ln.startswith("#")), "")


def _is_reraise(out: Any, before: Any) -> bool:
    """Whether `out` is %%tcache's one-line error repeating the cell's own error just shown."""
    if out.get("output_type") != "error" or before is None:
        return False
    if before.get("output_type") != "error" or before.get("ename") != out.get("ename"):
        return False
    tb = out.get("traceback", [])
    return len(tb) == 1 and tb[0].startswith("tcache: ")


def _executes(cell: Any, skip_tag: str) -> bool:
    """Whether nbclient runs this cell (the same test as its own)."""
    return (
        cell.get("cell_type") == "code"
        and bool(cell.get("source", "").strip())
        and skip_tag not in cell.get("metadata", {}).get("tags", [])
    )


def run_notebook(
    path: str | Path,
    output: str | Path | None = None,
    *,
    cache: bool = True,
    timeout: int | None = None,
    kernel_name: str | None = None,
    allow_errors: bool = False,
    env: Mapping[str, str] | None = None,
    write_failed: bool = False,
    cache_dir: str | Path | None = None,
    transform: Callable[[Any], None] | None = None,
) -> NotebookRun:
    """Execute a notebook in a fresh kernel, every cell cached (unless `cache=False`), and
    write it to `output` (default: in place). A failing cell stops the run (unless
    `allow_errors`) and the notebook is not written (unless `write_failed`): its previous
    outputs stay. `timeout` is per cell, in seconds; `env` is the kernel's environment
    (default: this process's); the kernel runs in the notebook's folder. `cache_dir` is a disk
    cache of the run's own (default: the cache the kernel's environment configures, which the
    notebook's own tore_nb shares). `transform(nb)` changes the executed notebook before it
    is written (`nb` is an nbformat node).

    Raises `ToreNotLoaded` when the kernel has no tore_nb (install it there, or use
    `cache=False`).

    >>> run = run_notebook("report.ipynb", "out/report.ipynb", timeout=600)  # doctest: +SKIP
    >>> run.ok, run.served, run.ran  # doctest: +SKIP
    (True, 11, 1)
    """
    import importlib

    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    nbformat: Any = importlib.import_module("nbformat")  # untyped: Any keeps mypy quiet here
    source = Path(path)
    target = Path(output) if output is not None else source
    nb = nbformat.read(source, as_version=4)
    check = None
    if cache:
        check = nbformat.v4.new_code_cell(CHECK_SOURCE, metadata={"tags": ["raises-exception"]})
        nb.cells.append(check)
    current = {"index": -1}

    def on_start(cell: Any, cell_index: int) -> None:
        current["index"] = cell_index

    options: dict[str, Any] = {"kernel_name": kernel_name} if kernel_name else {}
    client = NotebookClient(
        nb,
        timeout=timeout,
        allow_errors=allow_errors,
        extra_arguments=kernel_arguments(
            cache, None if cache_dir is None else os.path.abspath(cache_dir)
        ),
        resources={"metadata": {"path": str(source.resolve().parent)}},
        on_cell_start=on_start,
        **options,  # else the notebook's own kernelspec
    )
    run = NotebookRun(source, cached=cache)
    started = time.perf_counter()
    try:
        client.execute(env=dict(os.environ if env is None else env))
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as exc:
        run.failure = _failure(nb, current["index"], exc)
    finally:
        run.seconds = time.perf_counter() - started
    if check is not None and nb.cells and nb.cells[-1] is check:
        nb.cells.pop()
        if run.failure is None:
            kernel = client.kernel_name or nb.metadata.get("kernelspec", {}).get("name", "")
            run.cache = _check_loaded(check, kernel)
    last = current["index"] if run.failure is not None else len(nb.cells) - 1
    for i, cell in enumerate(nb.cells[: last + 1]):
        if not _executes(cell, client.skip_cells_with_tag):
            continue
        notes = strip_run_notes(cell)
        failed = run.failure is not None and i == run.failure.index - 1
        served = any(status == "hit" for status, _ in notes) and not failed
        state: CellState = "failed" if failed else "served" if served else "ran"
        run.cells.append(CellRun(i + 1, state, "; ".join(t for _, t in notes if t) or None))
    if transform is not None:
        transform(nb)
    if run.failure is None or write_failed:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.tore-nb-run")
        nbformat.write(nb, partial)
        os.replace(partial, target)  # a run stopped half-way never leaves half a notebook
        run.written = target
    return run


def _check_loaded(check: Any, kernel: str) -> str:
    """The cache line of `%tcache config`'s output; raise when the magic was not there."""
    text = "".join(
        "".join(out.get("text", "")) for out in check.get("outputs", []) if "text" in out
    )
    for out in check.get("outputs", []):
        if out.get("output_type") == "error":
            raise ToreNotLoaded(
                f"tore_nb did not load in kernel {kernel!r} ({out.get('ename')}: "
                f"{out.get('evalue')}): install tore_nb in that kernel's environment, or run "
                "without the cache (--no-cache)"
            )
    return next(
        (ln.removeprefix("cache: ") for ln in text.splitlines() if ln.startswith("cache:")), ""
    )


def _failure(nb: Any, index: int, exc: BaseException) -> CellFailure:
    """The failure of cell `index` (0-based), its traceback taken from the cell's own error
    output when it has one: the exception's text is tcache's one-line re-raise."""
    from nbclient.exceptions import CellExecutionError

    cell = nb.cells[index] if 0 <= index < len(nb.cells) else {}
    source = cell.get("source", "")
    errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    if errors and isinstance(exc, CellExecutionError):  # not a timeout's interrupt
        first = errors[0]
        tb = _ANSI.sub("", "\n".join(first.get("traceback", [])))
        return CellFailure(index + 1, source, first.get("ename", ""), first.get("evalue", ""), tb)
    lines = str(exc).strip().splitlines()
    ename = getattr(exc, "ename", None) or type(exc).__name__
    evalue = getattr(exc, "evalue", None) or (lines[0] if lines else "")
    return CellFailure(index + 1, source, ename, str(evalue))


# the remote tiers' settings, dropped from the kernels' environment by --local
REMOTE_VARIABLES = ("REDIS_URL", "REDIS_HOST", "S3_CACHE_BUCKET", "TORE_NB_TIERS")


def kernel_env(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, str]:
    """The kernels' environment: this one, with --local and --cache-dir applied and the disk
    path made absolute (a kernel runs in its notebook's folder). A bad setting is a usage
    error here rather than one failure per kernel."""
    from .config import CacheConfig
    from .errors import ConfigError

    env = dict(os.environ)
    if args.local:
        for var in REMOTE_VARIABLES:
            env.pop(var, None)
    if args.cache_dir:
        env["DISK_CACHE_PATH"] = args.cache_dir
    if env.get("DISK_CACHE_PATH"):
        env["DISK_CACHE_PATH"] = os.path.abspath(env["DISK_CACHE_PATH"])
    if args.no_cache:
        return env
    try:
        cfg = CacheConfig.from_env(env)
    except ConfigError as exc:
        parser.error(str(exc))
    if not (cfg.disk_enabled or cfg.redis_enabled or cfg.s3_enabled):
        print(
            "tore-nb: warning: no disk, Redis or S3 tier: a fresh kernel finds nothing cached",
            file=sys.stderr,
        )
    return env


def output_paths(
    notebooks: Sequence[str], output: str | None, parser: argparse.ArgumentParser
) -> list[Path]:
    """Where each notebook is written: in place, into the folder `output`, or (one notebook)
    to the file `output`.

    >>> [str(p) for p in output_paths(["a/x.ipynb"], "out", argparse.ArgumentParser())]
    ['out/x.ipynb']
    """
    if output is None:
        return [Path(n) for n in notebooks]
    if output.endswith(".ipynb") and not os.path.isdir(output):
        if len(notebooks) != 1:
            parser.error(f"--output {output}: a file takes one notebook, not {len(notebooks)}")
        return [Path(output)]
    targets = [Path(output) / Path(n).name for n in notebooks]
    twice = sorted({str(t) for t in targets if targets.count(t) > 1})
    if twice:
        parser.error(f"--output {output}: two notebooks would both be written to {twice[0]}")
    return targets


def print_cells(run: NotebookRun, verbose: bool = False) -> None:
    """One line per cell that ran when it could have been served, saying why (every cell
    when `verbose`).

    >>> print_cells(NotebookRun(Path("a.ipynb"), cells=[
    ...     CellRun(2, "served", "x restored from disk"), CellRun(3, "ran", "stored"),
    ...     CellRun(4, "ran", "not cached: it starts a process (tesseract)")]))
      cell 4 ran: not cached: it starts a process (tesseract)
    """
    for cell in run.cells:
        if verbose:
            print(f"  {cell.describe()}")
        elif cell.why() is not None:
            print(f"  cell {cell.index} ran: {cell.why()}")


def run_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """`tore-nb run NOTEBOOK.ipynb...`: run each, print its line; 1 when one failed."""
    for name in args.notebooks:
        if not name.endswith(".ipynb"):
            parser.error(f"not a notebook (.ipynb): {name}")
        if not os.path.isfile(name):
            parser.error(f"no such notebook: {name}")
    targets = output_paths(args.notebooks, args.output, parser)
    try:
        from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    except ImportError as exc:
        parser.error(
            f"run needs nbclient, nbformat and ipykernel: pip install 'tore_nb[run]' ({exc})"
        )
    if args.kernel:
        try:
            KernelSpecManager().get_kernel_spec(args.kernel)
        except NoSuchKernel:
            parser.error(f"--kernel: no kernel named {args.kernel!r} (see jupyter kernelspec list)")
    env = kernel_env(args, parser)
    failed = 0
    runs = []
    for name, target in zip(args.notebooks, targets, strict=True):
        try:
            run = run_notebook(
                name,
                target,
                cache=not args.no_cache,
                timeout=args.timeout,
                kernel_name=args.kernel,
                allow_errors=args.allow_errors,
                env=env,
            )
        except ToreNotLoaded as exc:
            print(f"tore-nb: {name}: {exc}", file=sys.stderr)
            failed += 1
            continue
        except Exception as exc:  # an unreadable notebook, a kernel that would not start
            print(f"tore-nb: {name}: could not run: {type(exc).__name__}: {exc}", file=sys.stderr)
            failed += 1
            continue
        runs.append(run)
        print(run.summary(), flush=True)
        print_cells(run, args.verbose)
        if run.failure is not None:
            failed += 1
            first = run.failure.source.strip().splitlines()[:1]
            print(
                f"tore-nb: {name}: {run.failure.headline()}"
                + (f" (in `{first[0][:80]}`)" if first else ""),
                file=sys.stderr,
            )
            if run.failure.traceback:
                print(run.failure.traceback, file=sys.stderr)
            print(f"tore-nb: {name}: not written; its earlier outputs are kept", file=sys.stderr)
    if len(args.notebooks) > 1:
        served, ran = sum(r.served for r in runs), sum(r.ran for r in runs)
        seconds = sum(r.seconds for r in runs)
        line = f"{len(args.notebooks)} notebooks: {served + ran} cells, "
        line += f"{served} served from the cache, {ran} ran" if not args.no_cache else "no cache"
        print(line + f" ({seconds:.1f} s)" + (f"; {failed} failed" if failed else ""))
    return 1 if failed else 0
