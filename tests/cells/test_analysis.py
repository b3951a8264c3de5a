"""What a cell's code may read (tore_nb.cells.analysis, tore_nb.cells.keys): magics, IPython's
history variables, deleted names, --files directories, globals written by subscript, names
bound later or on some paths. Each test's story is in its docstring or its comments."""

from __future__ import annotations

import ast
import builtins
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from IPython.core.inputtransformer2 import TransformerManager

import tore_nb
import tore_nb.cells.keys
import tore_nb.magics
from tests.support import write_module
from tore_nb.cells import (
    IPYTHON_NAMES,
    CacheWarning,
    analyze_cell,
    cell_key,
    file_digest,
    run_cached_cell,
)
from tore_nb.cells.analysis import is_setup_magic
from tore_nb.config import CacheConfig
from tore_nb.fingerprint import fingerprint
from tore_nb.memo import cached
from tore_nb.tiered import MultiLevelCache


@pytest.fixture
def cache(tmp_path: Path) -> MultiLevelCache:
    return MultiLevelCache(CacheConfig.embedded(tmp_path / "cache"), secret=b"s" * 32)


def run_cell(ip: Any, code: str) -> None:
    result = ip.run_cell(code, store_history=True)
    assert result.success, result.error_in_exec or result.error_before_exec


def ipython(cell: str) -> Any:
    """A cell with IPython syntax as %%tcache analyses it: transformed to plain Python."""
    return analyze_cell(TransformerManager().transform_cell(textwrap.dedent(cell)))


# -- 1. changes made through method calls ---------------------------------------------------------
@pytest.mark.parametrize(
    ("source", "name"),
    [
        ("lst.append(3)\nn = len(lst)", "lst"),
        ("d.update(other)", "d"),
        ("s.add(1)", "s"),
        ("df.drop(columns=['a'], inplace=True)", "df"),
        ("df.a.fillna(0, inplace=True)", "df"),
        ("grid[0].extend(row)", "grid"),
        ("if flag:\n    q.pop()", "q"),
        ("[seen.add(v) for v in xs]", "seen"),
    ],
)
def test_a_mutating_method_call_makes_its_name_an_output(source: str, name: str) -> None:
    a = analyze_cell(source)
    assert name in a.outputs and name in a.inputs and name not in a.definitions


@pytest.mark.parametrize(
    ("source", "name"),
    [
        ("sys.path.append(p)", "sys"),  # through an attribute: not a value of the cell's
        ("df.drop(columns=['a'], inplace=False)", "df"),
        ("random.shuffle(xs)", "xs"),  # a name passed to a function: a documented limit
        ("ys = sorted(xs)", "xs"),
    ],
)
def test_other_calls_change_nothing(source: str, name: str) -> None:
    assert name not in analyze_cell(source).outputs


def test_a_list_appended_to_is_restored_on_a_hit(cache: MultiLevelCache) -> None:
    src = "lst.append(3)\nn = len(lst)"
    assert run_cached_cell(src, {"lst": [1, 2]}, cache).status == "stored"
    ns: dict[str, Any] = {"lst": [1, 2]}
    assert run_cached_cell(src, ns, cache).status == "hit"
    assert ns["lst"] == [1, 2, 3] and ns["n"] == 3


def test_a_frame_changed_inplace_is_restored_on_a_hit(cache: MultiLevelCache) -> None:
    src = "df.drop(columns=['a'], inplace=True)\ncols = list(df.columns)"
    assert (
        run_cached_cell(src, {"df": pd.DataFrame({"a": [1], "b": [2]})}, cache).status == "stored"
    )
    ns: dict[str, Any] = {"df": pd.DataFrame({"a": [1], "b": [2]})}
    assert run_cached_cell(src, ns, cache).status == "hit"
    assert list(ns["df"].columns) == ["b"] == ns["cols"]


# -- 2. magics in a cached cell -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cell", "inputs", "outputs"),
    [
        ("%%capture cap --no-stderr\nprint(v)\nw = v * 2", {"print", "v"}, {"cap", "w"}),
        ("%%capture\nb = a\n!ls {folder}", {"a", "folder"}, {"b"}),  # IPython syntax inside
        ("files = !ls $folder", {"folder"}, {"files"}),
        ("get_ipython().system(cmd)", {"cmd"}, set()),
    ],
)
def test_the_code_a_magic_runs_is_analysed(cell: str, inputs: set[str], outputs: set[str]) -> None:
    a = ipython(cell)
    assert (set(a.inputs), set(a.outputs), a.uncacheable) == (inputs, outputs, None)


def test_a_module_read_in_a_magic_counts_by_the_attributes_read() -> None:
    cell = "%%capture\nr = utils.compute(1)"
    assert ipython(cell).attributes == (("utils", (("compute",),)),)


@pytest.mark.parametrize(
    "cell",
    ["%time b = a + 1", "%timeit f(a)", "%%time\nb = a", "%prun g(z)", "def f():\n    %time a"],
)
def test_a_cell_that_times_itself_runs_normally(cell: str) -> None:
    """Timings are measured when the cell runs: a replayed one would be an old measurement
    shown as new, so a cell that times anything is never stored."""
    found = ipython(cell).uncacheable
    assert found is not None and "timings are measured on every run" in found


@pytest.mark.parametrize(
    ("cell", "reason"),
    [
        ("%cd /tmp\nx = 1", "%cd"),
        ("x?", "%pinfo"),
        ("%pip install foo", "%pip"),
        ("%%writefile out.py\nx = 1", "%%writefile"),
        ("%%capture a b\nx = 1", "options of %%capture"),
        ("%%capture\nx = (", "code %%capture runs"),
        ("def f():\n    %env A=1", "%env"),
        ("%%capture\n%who", "%who"),
        ("get_ipython().run_line_magic(name, 'x')", "arguments"),
        ("get_ipython().run_cell('x = 1')", "run_cell"),
    ],
)
def test_any_other_magic_makes_the_cell_uncacheable(cell: str, reason: str) -> None:
    found = ipython(cell).uncacheable
    assert found is not None and reason in found


@pytest.mark.parametrize(
    "cell",
    [
        "%matplotlib inline\nx = 1",
        "%load_ext autoreload\n%autoreload 2",
        "%config InlineBackend.figure_format = 'retina'",
        "%precision 3",
        "%%html\n<b>{x}</b>",
        "!ls -la",
    ],
)
def test_settings_display_and_shell_commands_stay_cacheable(cell: str) -> None:
    assert ipython(cell).uncacheable is None


def test_settings_magics_are_told_apart_for_the_replay() -> None:
    code = TransformerManager().transform_cell("%matplotlib inline\n%time x = 1\nimport os\n")
    assert [is_setup_magic(s) for s in ast.parse(code).body] == [True, False, False]


def test_a_time_magic_runs_every_time(ip: Any) -> None:
    cell = "%%tcache\n%time b = a + 1\nc = 0\n"
    run_cell(ip, "a = 1")
    with pytest.warns(CacheWarning, match="timings are measured on every run"):
        run_cell(ip, cell)
    run_cell(ip, "a = 100")
    with pytest.warns(CacheWarning):
        run_cell(ip, cell)
    assert ip.user_ns["b"] == 101 and run_cell_keys(ip) == []


def run_cell_keys(ip: Any) -> list[str]:
    return list(ip.run_line_magic("tcache", "keys"))


# -- 3. IPython's history variables ---------------------------------------------------------------
@pytest.mark.parametrize("name", ["_", "__", "___", "_7", "_i", "_ii", "_iii", "_i7", "_dh"])
def test_history_variables_read_explicitly_are_inputs(name: str) -> None:
    a = analyze_cell(f"y = {name}")
    assert a.inputs == (name,) and a.uncacheable is None
    before = cell_key(a, {name: 5}, skip=IPYTHON_NAMES)  # as run_cached_cell keys it
    assert before.key != cell_key(a, {name: 7}, skip=IPYTHON_NAMES).key


def test_a_name_the_cell_binds_is_no_history() -> None:
    assert analyze_cell("_ = f()\ny = _").inputs == ("f",)
    assert analyze_cell("for _ in range(3):\n    pass\nz = _").inputs == ("range",)


@pytest.mark.parametrize(
    "source", ["y = Out[3]", "y = In[-1]", "y = len(_oh)", "def f():\n    return _ih\n"]
)
def test_a_cell_that_reads_in_or_out_is_uncacheable(source: str) -> None:
    reason = analyze_cell(source).uncacheable
    assert reason is not None and "changes on every execution" in reason
    assert analyze_cell("Out = {}\ny = Out").uncacheable is None  # its own Out


def test_the_last_output_is_an_input(ip: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # IPython leaves `_` alone while builtins has one (Python's own displayhook sets it)
    monkeypatch.delattr(builtins, "_", raising=False)
    cell = "%%tcache\ny = _ * 2\n"
    run_cell(ip, "5")
    run_cell(ip, cell)
    assert ip.user_ns["y"] == 10
    run_cell(ip, "7")
    run_cell(ip, cell)
    assert ip.user_ns["y"] == 14


# -- 4. names the cell deletes --------------------------------------------------------------------
def test_a_name_assigned_then_deleted_is_deleted() -> None:
    assert analyze_cell("tmp = [1, 2, 3]\ntotal = sum(tmp)\ndel tmp").deleted == ("tmp",)


def test_a_name_assigned_then_deleted_is_deleted_on_a_hit(cache: MultiLevelCache) -> None:
    src = "tmp = [1, 2, 3]\ntotal = sum(tmp)\ndel tmp"
    assert run_cached_cell(src, {}, cache).status == "stored"
    ns: dict[str, Any] = {"tmp": "user value"}
    assert run_cached_cell(src, ns, cache).status == "hit"
    assert "tmp" not in ns and ns["total"] == 6


def test_a_name_deleted_and_bound_again_on_some_path(cache: MultiLevelCache) -> None:
    src = "x = 1\ndel x\nif flag:\n    x = 2\ny = 0"
    assert run_cached_cell(src, {"flag": False}, cache).status == "stored"
    ns: dict[str, Any] = {"flag": False, "x": "old"}
    assert run_cached_cell(src, ns, cache).status == "hit"
    assert "x" not in ns
    ns = {"flag": True}
    run_cached_cell(src, ns, cache)
    ns = {"flag": True, "x": "old"}
    assert run_cached_cell(src, ns, cache).status == "hit" and ns["x"] == 2


# -- 5. --files with a directory ------------------------------------------------------------------
def make_tree(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "a.csv").write_text("1")
    (root / "sub" / "b.csv").write_text("2")
    return root


def test_a_directory_counts_by_what_it_holds(tmp_path: Path) -> None:
    d = make_tree(tmp_path / "d")
    first = file_digest(d)
    assert first == file_digest(make_tree(tmp_path / "elsewhere"))  # relative paths
    (d / "sub" / "b.csv").write_text("3")
    second = file_digest(d)
    (d / "sub" / "c.csv").write_text("")
    third = file_digest(d)
    (d / "sub" / "c.csv").rename(d / "sub" / "e.csv")
    (d / "empty").mkdir()
    assert len({first, second, third, file_digest(d)}) == 4
    assert file_digest(tmp_path / "nothing") == "missing"


def test_a_directory_in_files_invalidates_the_cell(tmp_path: Path) -> None:
    d = make_tree(tmp_path / "d")
    a = analyze_cell("n = 1")
    before = cell_key(a, {}, files=[str(d)]).key
    (d / "sub" / "b.csv").write_text("changed")
    assert cell_key(a, {}, files=[str(d)]).key != before


def test_a_directory_too_large_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = make_tree(tmp_path / "d")
    monkeypatch.setattr(tore_nb.cells.keys, "MAX_DIRECTORY_ENTRIES", 2)
    with pytest.raises(ValueError, match="more than 2 entries"):
        file_digest(d)


# -- 6. @cached functions that write a global by subscript ----------------------------------------
WRITERS = """
seen = {}
cnt = [0]
memo = {"k": 1, "j": 2}
class Box:
    pass
box = Box()
def mark(x):
    seen[x] = True
    return x
def count(x):
    cnt[0] += 1
    return x
def forget(k):
    del memo[k]
    return k
def keep(x):
    box.last = x
    return x
"""


def run_writers(ns: dict[str, Any], calls: int = 1) -> dict[str, list[str]]:
    prints: dict[str, list[str]] = {}
    for name, arg in (("mark", 1), ("count", 1), ("forget", "k"), ("keep", 1)):
        fn = ns[name]
        prints[name] = [fingerprint(fn)]
        fn(arg)
        prints[name].append(fingerprint(fn))
    return prints


def test_a_global_written_by_subscript_is_state(local_modules: Path) -> None:
    mod = write_module(local_modules, "fp_subscript_writers", WRITERS)
    for name, (before, after) in run_writers(vars(mod)).items():
        assert before == after, name


def test_a_global_written_by_subscript_is_state_without_source() -> None:
    ns: dict[str, Any] = {"__name__": "__main__"}
    exec(WRITERS, ns)  # no source to read: the bytecode says it
    for name, (before, after) in run_writers(ns).items():
        assert before == after, name


def test_a_cached_function_that_writes_a_global_by_subscript_hits(
    cache: MultiLevelCache, local_modules: Path
) -> None:
    mod = write_module(local_modules, "fp_subscript_cached", WRITERS)
    mark = cached(cache=cache)(mod.mark)
    assert mark(1) == mark(1) == 1
    assert mark.cache_info().hits == 1


# -- 5. cell analysis: conditional binds, calls before binds, walrus, self-reference ---------------
@pytest.mark.parametrize(
    ("source", "name"),
    [
        ("if flag:\n    y = 0\nz = y", "y"),
        ("try:\n    y = f()\nexcept Exception:\n    pass\nz = y", "y"),
        ("match cmd:\n    case 1:\n        y = 1\nz = y", "y"),
        ("a = b and (y := 1)\nz = y", "y"),
        ("def g():\n    return x\ny = g()\nx = 5", "x"),
        ("def g():\n    return x\ndef f():\n    return g()\ny = f()\nx = 5", "x"),
        ("r = sorted(xs, key=lambda e: e[idx])\nidx = 0", "idx"),
        ("@register\ndef f():\n    return later\nlater = 1", "later"),
    ],
)
def test_names_bound_later_or_on_some_paths_are_inputs(source: str, name: str) -> None:
    """A name bound only on some paths (if, try, match, walrus in a short-circuit) or only
    after a call that reads it is an input of the cell."""
    a = analyze_cell(source)
    assert name in a.inputs
    key = cell_key(a, {"flag": False, "xs": [], "cmd": 0, "b": 0, name: 1})
    assert key.key != cell_key(a, {"flag": False, "xs": [], "cmd": 0, "b": 0, name: 2}).key


@pytest.mark.parametrize(
    "source",
    [
        "if flag:\n    y = 0\nelse:\n    y = 1\nz = y",
        "if flag:\n    raise ValueError\ny = 1\nz = y",
        "try:\n    import y\nexcept ImportError:\n    y = None\nz = y",
        "match cmd:\n    case 1:\n        y = 1\n    case _:\n        y = 2\nz = y",
        "for i in xs:\n    y = i\n    z = y",
        "for i in xs:\n    y = i\nz = y",  # a loop body is taken to run: re-runs hit
        "while more():\n    y = 1\nz = y",
        "def g():\n    return y\ny = 5\nz = g()",
        "def g():\n    return y\ny = 1",
        "class C:\n    def m(self):\n        return C.y\ny = 1",
        "with open(p) as f:\n    y = f.read()\nz = y",
    ],
)
def test_names_bound_on_every_path_first_are_not_inputs(source: str) -> None:
    """A name bound on every path before it is read is an output, not an input."""
    a = analyze_cell(source)
    assert "y" not in a.inputs and "C" not in a.inputs
    assert "y" in a.outputs


def test_walrus_in_a_comprehension_binds_in_the_cell() -> None:
    """A walrus in a comprehension binds in the enclosing scope: an output, not an input."""
    a = analyze_cell("r = [(y := v) for v in xs]")
    assert a.inputs == ("xs",)
    assert set(a.outputs) == {"r", "y"}
    inner = analyze_cell("def f():\n    r = [(y := v) for v in xs]\n    return y\nq = f()")
    assert inner.inputs == ("xs",)
