"""How %%tcache restores and replays a cell, against a real InteractiveShell."""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tore_nb
import tore_nb.cells.run as cell_run
from tests.support import out, run, status_lines
from tore_nb.cells import CacheWarning, CellAnalysis, OutputRecorder
from tore_nb.config import CacheConfig


@pytest.fixture(autouse=True)
def _no_builtin_underscore(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """IPython leaves _ alone while builtins has one (a doctest's displayhook sets it)."""
    monkeypatch.delattr(builtins, "_", raising=False)
    yield


def cell(ip: Any, code: str) -> Any:
    """Run a cell as a notebook does: counted, so that it has an Out[n]."""
    result = ip.run_cell(code, store_history=True)
    assert result.success, result.error_in_exec or result.error_before_exec
    return result


# -- definitions see the cell's values on a hit ---------------------------------------------------
DEFS = """%%tcache
scale = 3
def f(x, s=scale):
    return x * s
class K:
    factor = scale
@tag(scale)
def g():
    pass
k = K()
r = f(1)
"""


def test_definitions_bind_to_the_cells_values_not_the_notebooks(
    ip: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    run(
        ip, "def tag(v):\n    def deco(fn):\n        fn.tag = v\n        return fn\n    return deco"
    )
    run(ip, DEFS)
    run(ip, "scale = 100")
    capsys.readouterr()
    run(ip, DEFS)
    assert len(status_lines(out(capsys))) == 1  # a hit
    ns = ip.user_ns
    assert ns["scale"] == 3 and ns["r"] == 3
    assert ns["f"](1) == 3 and ns["K"].factor == 3 and ns["g"].tag == 3
    assert type(ns["k"]) is ns["K"]  # instances bind to the class the hit defined


def test_definitions_and_instances_after_a_restart(
    ip: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = "%%tcache\nn_layers = 3\nclass Model:\n    depth = n_layers\nm = Model()"
    run(ip, code)
    tore_nb.get_cache(CacheConfig.embedded(tmp_path / "cache"))  # a fresh process's cache
    ip.reset(new_session=False)
    run(ip, "n_layers = 10")
    capsys.readouterr()
    run(ip, code)
    [line] = status_lines(out(capsys))
    assert "from disk" in line
    ns = ip.user_ns
    assert ns["Model"].depth == 3 and ns["n_layers"] == 3
    assert type(ns["m"]) is ns["Model"] and ns["m"].depth == 3


# -- top-level await ------------------------------------------------------------------------------
AWAIT = "%%tcache\nimport asyncio\nawait asyncio.sleep(0)\nav = 1"


def test_top_level_await_in_a_running_loop_is_refused_up_front(
    ip: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    async def in_a_kernel() -> Any:  # Jupyter runs cells inside its event loop
        return ip.run_cell(AWAIT)

    result = asyncio.run(in_a_kernel())
    assert not result.success
    assert type(result.error_in_exec).__name__ == "UsageError"
    assert "top-level `await`" in str(result.error_in_exec)
    assert "av" not in ip.user_ns
    # outside a running loop (a terminal) IPython runs the coroutine itself: cached as usual
    run(ip, AWAIT)
    ip.user_ns.pop("av")
    capsys.readouterr()
    run(ip, AWAIT)
    assert len(status_lines(out(capsys))) == 1 and ip.user_ns["av"] == 1


# -- outputs shown through _ipython_display_ ------------------------------------------------------
FIG = """from IPython.display import display, HTML
class Fig:
    def _ipython_display_(self):
        print("drawing")
        display(HTML("<b>figure</b>"), metadata={"k": 1})
"""


def test_a_last_expression_shown_by_ipython_display_is_replayed(
    ip: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    shown: list[tuple[dict[str, Any], dict[str, Any]]] = []

    def publish(data: Any, metadata: Any = None, **kwargs: Any) -> None:
        shown.append((dict(data), dict(metadata or {})))

    monkeypatch.setattr(ip.display_pub, "publish", publish)
    run(ip, FIG)
    code = "%%tcache\nfig = Fig()\nfig"
    for _ in range(2):
        capsys.readouterr()
        shown.clear()
        cell(ip, code)
        html = [(d["text/html"], m) for d, m in shown if "text/html" in d]
        assert html == [("<b>figure</b>", {"k": 1})]
        assert any(line.endswith("drawing") for line in out(capsys))  # after a terminal's Out[n]
    assert type(ip.user_ns["_"]).__name__ == "Fig"  # Out holds the figure, as a run would
    assert any("fig restored" in str(d.get("text/plain")) for d, _ in shown)


def test_a_normal_result_is_recorded_once(ip: Any) -> None:
    with OutputRecorder(ip) as rec:
        ip.run_cell("6 * 7")
    events = rec.events()
    assert [e.kind for e in events] == ["result"]
    assert events[0].data == {"text/plain": "42"}
    assert rec.result == 42


# -- Out[n] and _ on a hit ------------------------------------------------------------------------
def test_a_hit_updates_out_and_underscores(ip: Any) -> None:
    code = "%%tcache\ny = 21\ny * 2"
    assert cell(ip, code).result == 42
    cell(ip, "'z'")
    result = cell(ip, code)
    n = ip.execution_count - 1
    ns = ip.user_ns
    assert result.result == 42
    assert ns["Out"][n] == 42 and ns[f"_{n}"] == 42
    assert ns["_"] == 42 and ns["__"] == "z"
    assert ip.history_manager.output_hist_reprs[n] == "42"


def test_a_result_that_is_a_variable_is_that_variable(ip: Any) -> None:
    code = "%%tcache\nd = {'a': [1]}\nd"
    cell(ip, code)
    cell(ip, "'other'")
    cell(ip, code)
    assert ip.user_ns["_"] is ip.user_ns["d"]


def test_an_unpicklable_result_still_hits(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code = "%%tcache\nimport threading\nv = 1\nthreading.Lock()"
    cell(ip, code)
    first = out(capsys)
    cell(ip, "'before'")
    capsys.readouterr()
    cell(ip, code)
    second = out(capsys)
    assert len(status_lines(second)) == 1 and ip.user_ns["v"] == 1
    assert "unlocked _thread.lock" in first[-1] and "unlocked _thread.lock" in second[0]


# -- --explain over a cell that cannot be keyed ---------------------------------------------------
def test_explain_over_an_unhashable_input_says_why_and_runs(
    ip: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    run(ip, "import threading\nlk = threading.Lock()")
    capsys.readouterr()
    with pytest.warns(CacheWarning, match="input 'lk'"):
        result = ip.run_cell("%%tcache --explain\nwith lk:\n    done = 1\nprint('ran')")
    assert result.success and ip.user_ns["done"] == 1
    text = capsys.readouterr().out
    assert "ran" in text
    assert run(ip, "%tcache keys") == []


def test_explain_over_a_syntax_error_shows_the_cells_own_error(ip: Any) -> None:
    result = ip.run_cell("%%tcache --explain\ny = (")
    assert not result.success and isinstance(result.error_in_exec, SyntaxError)


# -- cells the analysis marks uncacheable ---------------------------------------------------------
class _Marked:
    """A CellAnalysis with `uncacheable` set, whether or not CellAnalysis has the field yet."""

    def __init__(self, analysis: CellAnalysis) -> None:
        self._analysis = analysis
        self.uncacheable = "it reads the clock"

    def __getattr__(self, name: str) -> Any:
        return getattr(self._analysis, name)


def test_an_uncacheable_cell_runs_uncached_naming_why(
    ip: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = cell_run.analyze_cell
    monkeypatch.setattr(cell_run, "analyze_cell", lambda source: _Marked(real(source)))
    for i in range(2):
        run(ip, "calls = []")
        with pytest.warns(CacheWarning, match="reads the clock"):
            run(ip, "%%tcache\ncalls.append(1)\nu = 1")
        assert ip.user_ns["calls"] == [1], i
    assert run(ip, "%tcache keys") == []


def test_settings_magics_run_again_on_a_hit(ip: Any) -> None:
    formatter = ip.display_formatter.formatters["text/plain"]
    code = "%%tcache\n%precision 3\nx = 1.0"
    run(ip, code)
    assert formatter.float_format == "%.3f"
    run(ip, "%precision")  # back to the default, as in a fresh kernel
    assert formatter.float_format != "%.3f"
    run(ip, code)  # a hit: no variable carries the setting, the magic runs again
    assert formatter.float_format == "%.3f"
    run(ip, "%precision")
