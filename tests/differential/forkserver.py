"""The fork server: `python -m tests.differential.forkserver`.

Imports IPython, numpy, pandas, matplotlib (Agg, IPython's inline backend), scikit-learn and
tore_nb once, builds one pristine InteractiveShell (no user code ever runs in this process), then
reads requests from stdin, one JSON line each: {"scenario": ..., "mode": ..., "root": folder}.
For each session of the scenario it applies the files, modules and env, forks a child that runs
the session's cells and writes what it saw to a JSON file, and waits for it. The answer is one
JSON line on stdout: {"sessions": [...]}. Children never write to the protocol pipe: fd 1 of
this process is pointed at stderr (a log file) before anything else runs.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import importlib
import io
import json
import os
import random
import select
import signal
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

# the protocol channel: the original stdout; fd 1 then goes to the log (stray C-level writes)
_PROTO = os.fdopen(os.dup(1), "w", buffering=1)
os.dup2(2, 1)
sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", buffering=0), write_through=True)

# DIFFERENTIAL_TORE_NB: a folder holding another tore_nb to test (e.g. a `git archive` of HEAD)
if os.environ.get("DIFFERENTIAL_TORE_NB"):
    sys.path.insert(0, os.environ["DIFFERENTIAL_TORE_NB"])

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import IPython  # noqa: E402, F401
import ipywidgets  # noqa: E402, F401
import matplotlib.pyplot  # noqa: E402
import numpy as np  # noqa: E402
import pandas  # noqa: E402, F401
import sklearn.datasets  # noqa: E402
import sklearn.linear_model  # noqa: E402
import sklearn.pipeline  # noqa: E402
import sklearn.preprocessing  # noqa: E402, F401
from IPython.core.displayhook import DisplayHook  # noqa: E402
from IPython.core.displaypub import DisplayPublisher  # noqa: E402
from IPython.core.interactiveshell import InteractiveShell  # noqa: E402
from traitlets import Type  # noqa: E402
from traitlets.config import Config  # noqa: E402

import tore_nb  # noqa: E402
import tore_nb.cells  # noqa: E402
import tore_nb.magics  # noqa: E402
import tore_nb.memo  # noqa: E402
from tore_nb.config import CacheConfig  # noqa: E402

for _name in ("tore_nb.tiered", "tore_nb.tiers.disk", "tore_nb.tiers.memory", "diskcache"):
    with contextlib.suppress(ImportError):  # imported, never called: children start warm
        importlib.import_module(_name)

from .harness import Describer as _Describer  # noqa: E402
from .harness import (  # noqa: E402
    Mode,
    Rerun,
    Write,
    bundle,
    cached_source,
    describe_namespace,
    scenario_from,
    setup_lines,
)

SESSION_TIMEOUT = float(os.environ.get("DIFFERENTIAL_SESSION_TIMEOUT", "90"))


# -- recording what a cell shows ----------------------------------------------------------------
class Recorder:
    """The events of the cell running now: stream text, displays, results, clears, in order."""

    def __init__(self) -> None:
        self.events: list[list[Any]] = []
        self.statuses: list[Any] = []  # tore_nb outcomes seen while the cell ran

    def write(self, kind: str, text: str) -> None:
        if not text:
            return
        if self.events and self.events[-1][0] == kind:
            self.events[-1][1] += text
        else:
            self.events.append([kind, text])

    def add(self, kind: str, payload: Any) -> None:
        self.events.append([kind, payload])


RECORDER = Recorder()


class Stream(io.TextIOBase):
    def __init__(self, kind: str) -> None:
        self.kind = kind

    def write(self, text: str) -> int:
        RECORDER.write(self.kind, str(text))
        return len(text)

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"


class RecordingPublisher(DisplayPublisher):  # type: ignore[misc]
    def publish(  # type: ignore[override]
        self,
        data: Mapping[str, Any],
        metadata: Mapping[str, Any] | None = None,
        source: Any = None,
        *,
        transient: Any = None,
        update: bool = False,
        **kwargs: Any,
    ) -> None:
        status = (metadata or {}).get("tore_nb", {})
        if isinstance(status, dict) and "status" in status:
            RECORDER.statuses.append(("display", status["status"]))
        RECORDER.add("display", bundle(data))

    def clear_output(self, wait: bool = False) -> None:
        RECORDER.add("clear", bool(wait))


class RecordingHook(DisplayHook):  # type: ignore[misc]
    def write_output_prompt(self) -> None:
        pass

    def write_format_data(self, format_dict: Mapping[str, Any], md_dict: Any = None) -> None:
        RECORDER.add("result", bundle(format_dict))

    def finish_displayhook(self) -> None:
        pass


class Shell(InteractiveShell):  # type: ignore[misc]
    displayhook_class = Type(RecordingHook)
    display_pub_class = Type(RecordingPublisher)

    def enable_gui(self, gui: Any = None) -> None:
        pass

    def _showtraceback(self, etype: Any, evalue: Any, stb: Any) -> None:
        pass  # the error is compared by type and message, not by its (mode-specific) frames


def make_shell(ipdir: Path) -> Any:
    cfg = Config()
    cfg.HistoryManager.hist_file = ":memory:"
    cfg.InteractiveShell.colors = "NoColor"
    cfg.InteractiveShell.autocall = 0
    cfg.InteractiveShell.xmode = "Plain"
    ipdir.mkdir(parents=True, exist_ok=True)
    shell = Shell.instance(config=cfg, ipython_dir=str(ipdir))
    shell.enable_matplotlib("inline")  # type: ignore[no-untyped-call]  # as in Jupyter: figures shown at the end of a cell
    return shell


# -- tore_nb's verdict per cell -----------------------------------------------------------------
def install_probe() -> None:
    """Record the status of every cached-cell outcome (hit, stored, not-cached, off)."""
    modules: list[Any] = [tore_nb.cells, tore_nb.magics, sys.modules.get("tore_nb.cells.run")]
    for module in modules:
        original = getattr(module, "run_cached_cell", None)
        if module is None or original is None or getattr(original, "_probe", False):
            continue

        def probe(*args: Any, _original: Callable[..., Any] = original, **kwargs: Any) -> Any:
            outcome = _original(*args, **kwargs)
            RECORDER.statuses.append(("probe", getattr(outcome, "status", None)))
            return outcome

        probe._probe = True  # type: ignore[attr-defined]
        module.run_cached_cell = probe


def cell_status(statuses: list[Any], events: list[list[Any]]) -> str | None:
    probed = [s for how, s in statuses if how == "probe"]
    if probed:
        return str(probed[-1])
    shown = [s for how, s in statuses if how == "display"]
    if shown:
        return str(shown[-1])
    for kind, payload in events:  # the status line, as a user sees it
        text = payload if isinstance(payload, str) else ""
        if isinstance(payload, dict):
            text = payload.get("text/plain", "")
        if kind in ("stdout", "display") and isinstance(text, str):
            for line in text.splitlines():
                if line.startswith("tcache:") and "restored from" in line:
                    return "hit"
    return None


def plain_cached(fn: Any = None, /, **options: Any) -> Any:
    """`tore_nb.cached` in plain runs: the function itself, nothing cached."""

    def wrap(f: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(f)
        def call(*args: Any, **kwargs: Any) -> Any:
            return f(*args, **kwargs)

        call.__tore_plain_cached__ = True  # type: ignore[attr-defined]
        return call

    return wrap if fn is None else wrap(fn)


plain_cached.__tore_plain_decorator__ = True  # type: ignore[attr-defined]


# -- files --------------------------------------------------------------------------------------
def apply_files(
    work: Path, files: Mapping[str, str | None], modules: Mapping[str, str | None]
) -> None:
    """Write (None: remove) files and modules, only where the content changes; each write gets
    an mtime later than the file had, as a real edit would."""
    items = [(work / p, t) for p, t in files.items()]
    items += [(work / (m.replace(".", "/") + ".py"), t) for m, t in modules.items()]
    for path, text in items:
        if text is None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            continue
        old_mtime = None
        if path.exists():
            if path.read_text() == text:
                continue
            old_mtime = path.stat().st_mtime
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        now = time.time()
        mtime = max(now, old_mtime + 1.0) if old_mtime is not None else now
        os.utime(path, (mtime, mtime))
    importlib.invalidate_caches()


# -- one session, in the child ------------------------------------------------------------------
def run_session(
    shell: Any,
    session: Any,
    mode: Mode,
    work: Path,
    cache_dir: Path,
    env: Mapping[str, str | None],
    out: Path,
) -> None:
    t0 = time.monotonic()
    result: dict[str, Any] = {"cells": [], "setup_error": None, "crashed": None}
    for k, v in env.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    os.chdir(work)
    sys.path.insert(0, str(work))
    sys.dont_write_bytecode = True
    random.seed(20240601)
    np.random.seed(20240601)
    stdout, stderr = Stream("stdout"), Stream("stderr")
    sys.stdout, sys.stderr = stdout, stderr
    tore_nb.tiered.set_default_cache(None)
    os.environ["DISK_CACHE_PATH"] = str(cache_dir)
    if mode == "plain":
        tore_nb.__dict__["cached"] = plain_cached
        tore_nb.memo.cached = plain_cached  # type: ignore[assignment]
    else:
        tore_nb.get_cache(CacheConfig.embedded(cache_dir))
        install_probe()
    for line in setup_lines(mode):
        r = shell.run_cell(line, store_history=False)
        if not r.success:
            error = r.error_in_exec or r.error_before_exec
            result["setup_error"] = f"{line!r}: {type(error).__name__}: {error}"
    RECORDER.events.clear()
    RECORDER.statuses.clear()
    texts: list[str] = [c for c in session.cells if isinstance(c, str)]
    index_of = {}
    n = 0
    for j, step in enumerate(session.cells):
        if isinstance(step, str):
            index_of[j] = n
            n += 1
    for j, step in enumerate(session.cells):
        if isinstance(step, Write):
            apply_files(work, step.files, step.modules)
            continue
        if isinstance(step, Rerun):
            text, index, label = texts[step.index], None, f"step {j}: rerun of cell {step.index}"
        else:
            text, index, label = step, index_of[j], f"cell {index_of[j]}"
        RECORDER.events, RECORDER.statuses = [], []
        sys.stdout, sys.stderr = stdout, stderr
        r = shell.run_cell(cached_source(text, mode), store_history=True)
        error = r.error_in_exec or r.error_before_exec
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        events = RECORDER.events
        value = r.result
        result["cells"].append(
            {
                "label": label,
                "index": index,
                "events": events,
                "error": None
                if error is None
                else [type(error).__name__, _clean_message(str(error))],
                "out": None if value is None else _Describer()(value, "Out"),
                "status": cell_status(RECORDER.statuses, events) if mode != "plain" else None,
            }
        )
    sys.stdout, sys.stderr = stdout, stderr
    result["namespace"] = describe_namespace(shell.user_ns, shell.user_ns_hidden)
    statuses = [c["status"] for c in result["cells"]]
    result["hits"] = statuses.count("hit")
    result["stores"] = statuses.count("stored")
    try:
        result["stats"] = tore_nb.get_cache().get_stats() if mode != "plain" else {}
    except Exception as exc:
        result["stats"] = repr(exc)
    result["seconds"] = time.monotonic() - t0
    text = json.dumps(result, default=repr)
    # the plain and the cached run work in different folders: name this run's "<root>"
    out.write_text(text.replace(json.dumps(str(work.parent))[1:-1], "<root>"))


def _clean_message(text: str) -> str:
    import re

    return re.sub(r"0x[0-9a-fA-F]{6,}", "0x?", text)[:2000]


# -- the server loop ----------------------------------------------------------------------------
def run_request(shell: Any, request: Mapping[str, Any]) -> dict[str, Any]:
    scenario = scenario_from(request["scenario"])
    mode: Mode = request["mode"]
    root = Path(request["root"])
    work, cache_dir = root / "work", root / "cache"
    work.mkdir(parents=True, exist_ok=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    env: dict[str, str | None] = {}
    sessions = []
    for i, session in enumerate(scenario.sessions):
        apply_files(work, session.files, session.modules)
        env.update(session.env)
        out = root / f"session-{i}.json"
        pid = os.fork()
        if pid == 0:  # the child: a fresh process as far as user code can tell
            code = 0
            try:
                run_session(shell, session, mode, work, cache_dir, env, out)
            except BaseException:
                code = 1
                with contextlib.suppress(Exception):
                    out.write_text(json.dumps({"crashed": traceback.format_exc()[-3000:]}))
            finally:
                os._exit(code)
        status = _wait(pid, SESSION_TIMEOUT)
        try:
            data = json.loads(out.read_text())
        except (OSError, ValueError):
            data = {"crashed": f"the session's process ended ({status}) without a result"}
        data["mode"] = mode
        data.setdefault("cells", [])
        data.setdefault("namespace", {})
        data.setdefault("crashed", None)
        if status != "exit 0" and not data["crashed"]:
            data["crashed"] = f"the session's process ended: {status}"
        sessions.append(data)
    return {"sessions": sessions}


def _wait(pid: int, timeout: float) -> str:
    """Wait for a session's process, killing it after `timeout` seconds."""
    fd = os.pidfd_open(pid)
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
    finally:
        os.close(fd)
    if not ready:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return f"killed after {timeout:.0f} s"
    _, status = os.waitpid(pid, 0)
    if os.WIFEXITED(status):
        return f"exit {os.WEXITSTATUS(status)}"
    return f"signal {os.WTERMSIG(status)}"


def run_requests(shell: Any, requests: list[Mapping[str, Any]], jobs: int) -> list[Any]:
    """Each request (a scenario in one mode) in a runner process of its own, `jobs` at a time;
    a runner forks one child per session, in order."""
    answers: list[Any] = [None] * len(requests)
    running: dict[int, int] = {}
    pending = list(enumerate(requests))
    while pending or running:
        while pending and len(running) < jobs:
            i, request = pending.pop(0)
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    answer = run_request(shell, request)
                except BaseException:
                    answer = {"error": traceback.format_exc()}
                    code = 1
                finally:
                    with contextlib.suppress(BaseException):
                        out = Path(request["root"]) / "answer.json"
                        out.write_text(json.dumps(answer, default=repr))
                    os._exit(code)
            running[pid] = i
        pid, _ = os.wait()
        i = running.pop(pid, -1)
        if i < 0:
            continue
        try:
            answers[i] = json.loads((Path(requests[i]["root"]) / "answer.json").read_text())
        except (OSError, ValueError):
            answers[i] = {"error": "the runner process ended without an answer"}
    return answers


def main() -> None:
    root = Path(os.environ.get("XDG_CACHE_HOME", "/tmp")).parent
    shell = make_shell(root / "ipython")
    gc.collect()
    gc.freeze()  # forked children then do not copy the whole heap when their collector runs
    _PROTO.write("ready\n")
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            message = json.loads(line)
            answer: Any = run_requests(shell, message["runs"], int(message.get("jobs", 1)))
        except Exception:
            answer = {"error": traceback.format_exc()}
        _PROTO.write(json.dumps(answer, default=repr) + "\n")


if __name__ == "__main__":
    main()
