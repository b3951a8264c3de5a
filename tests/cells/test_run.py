"""Cell analysis, keys, run/restore and explain, without IPython (tore_nb.cells)."""

from __future__ import annotations

import doctest
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import tore_nb.cells
from tests.support import SOURCE_ROOT, outputs_under_hash_seeds
from tore_nb.cells import (
    CacheWarning,
    CellEntry,
    CellOptions,
    OutputEvent,
    OutputRecorder,
    analyze_cell,
    cell_key,
    explain,
    run_cached_cell,
)
from tore_nb.config import CacheConfig
from tore_nb.tiered import MultiLevelCache


@pytest.fixture
def cache(tmp_path: Path) -> MultiLevelCache:
    return MultiLevelCache(CacheConfig.embedded(tmp_path / "cache"), secret=b"s" * 32)


def run(source: str, ns: dict[str, Any], cache: MultiLevelCache, **opts: Any) -> str:
    return run_cached_cell(source, ns, cache, options=CellOptions(**opts)).status


# -- analysis -------------------------------------------------------------------------------------
def test_inputs_are_names_read_before_the_cell_binds_them() -> None:
    a = analyze_cell("y = x + 1\nz = y * k\nx = 3\nw = print(len(z))")
    assert a.inputs == ("x", "k", "print", "len")  # y is bound before it is read
    assert a.outputs == ("y", "z", "x", "w")
    # builtins count only when the namespace shadows them
    parts = cell_key(a, {"x": 1, "k": 2}).parts
    assert [p.name for p in parts if p.kind == "input"] == ["x", "k"]
    parts = cell_key(a, {"x": 1, "k": 2, "len": lambda v: 0}).parts
    assert [p.name for p in parts if p.kind == "input"] == ["x", "k", "len"]


def test_augassign_reads_its_target() -> None:
    assert analyze_cell("total += 1").inputs == ("total",)


def test_functions_lambdas_classes_and_comprehensions() -> None:
    src = """
import numpy as np
from os import path as p
def f(a, b=default):
    return a + offset + helper(b)
def helper(v):
    return v
g = lambda q: q * scale
class C(Base):
    attr = class_level
    def m(self):
        return method_global
rows = [r * factor for r in data if r > cut]
"""
    a = analyze_cell(src)
    # read now: defaults, bases, a class body (and, conservatively, its methods), comprehensions;
    # read later: function and lambda bodies
    assert a.inputs[:3] == ("default", "Base", "class_level")
    assert set(a.inputs) == {
        "default",
        "Base",
        "class_level",
        "method_global",
        "factor",
        "data",
        "cut",
        "offset",
        "scale",
    }
    assert a.inputs[-2:] == ("offset", "scale")
    assert a.definitions == ("np", "p", "f", "helper", "C")
    assert "g" in a.outputs and "rows" in a.outputs and "g" not in a.definitions


def test_global_writes_and_mutation_are_outputs() -> None:
    a = analyze_cell("def bump():\n    global counter\n    counter += 1\nbump()\ndf['b'] = 1")
    assert "counter" in a.outputs and "df" in a.outputs and "df" in a.inputs


def test_walrus_with_except_match_and_deletes() -> None:
    src = """
if (n := len(items)) > 0:
    pass
with open_thing() as fh:
    pass
try:
    pass
except ValueError as err:
    pass
match point:
    case (px, *rest):
        pass
    case {"k": kv, **others}:
        pass
del old
"""
    a = analyze_cell(src)
    assert set(a.inputs) == {"items", "open_thing", "point", "len", "ValueError"}
    assert {"n", "err", "px", "rest", "kv", "others"} <= set(a.outputs)
    assert "fh" not in a.outputs  # a `with ... as` target is a resource, not a result
    assert a.deleted == ("old",)


def test_rebinding_a_def_name_makes_it_a_value() -> None:
    a = analyze_cell("def f():\n    return 1\nf = wrap(f)")
    assert a.definitions == ()
    assert analyze_cell("f = 1\ndef f():\n    return 1").definitions == ("f",)


def test_comments_and_layout_do_not_change_the_code_digest() -> None:
    a = analyze_cell("x = f(1, 2)\ny = x")
    b = analyze_cell("# setup\nx = f( 1,\n       2 )  # call\n\n\ny = x\n")
    c = analyze_cell("x = f(1, 3)\ny = x")
    assert a.code_digest == b.code_digest != c.code_digest


# -- keys -----------------------------------------------------------------------------------------
def test_key_follows_input_values_by_content() -> None:
    a = analyze_cell("y = arr.sum() + len(df)")
    arr = np.arange(1000.0)
    df = pd.DataFrame({"a": range(5), "b": list("abcde")})
    k1 = cell_key(a, {"arr": arr, "df": df})
    k2 = cell_key(a, {"arr": arr.copy(), "df": df.copy()})
    arr2 = arr.copy()
    arr2[7] = -1
    assert k1 == k2
    assert k1.key != cell_key(a, {"arr": arr2, "df": df}).key
    assert k1.key.startswith("tcache:cell:y:")


def test_key_follows_user_function_code_and_helpers() -> None:
    ns: dict[str, Any] = {}
    exec("def helper(x):\n    return x + 1\ndef f(x):\n    return helper(x)", ns)
    a = analyze_cell("y = f(2)")
    k1 = cell_key(a, ns)
    exec("def helper(x):\n    return x + 2", ns)
    k2 = cell_key(a, ns)
    assert k1.key != k2.key
    [changed] = explain(k2.parts, k1.parts).changed
    assert (changed.part, changed.name) == ("input", "f")


def test_modules_key_by_name_and_version() -> None:
    a = analyze_cell("y = np.zeros(3)")
    [part] = [p for p in cell_key(a, {"np": np}).parts if p.kind == "input"]
    assert part.name == "np"
    assert cell_key(a, {"np": np}) == cell_key(a, {"np": np})


def test_undefined_inputs_and_builtins() -> None:
    a = analyze_cell("y = undefined_thing + len([])")
    parts = cell_key(a, {}).parts
    assert [(p.name, p.digest) for p in parts if p.kind == "input"] == [
        ("undefined_thing", "undefined")
    ]


def test_files_deps_and_vars_are_key_parts(tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    data.write_text("a,b\n1,2\n")
    a = analyze_cell("y = 1")
    k1 = cell_key(a, {"extra": 1}, files=[str(data)], deps=["extra"])
    data.write_text("a,b\n1,3\n")
    k2 = cell_key(a, {"extra": 1}, files=[str(data)], deps=["extra"])
    k3 = cell_key(a, {"extra": 2}, files=[str(data)], deps=["extra"])
    assert len({k1.key, k2.key, k3.key}) == 3
    globbed = cell_key(a, {}, files=[str(tmp_path / "*.csv")])
    assert [p.name for p in globbed.parts if p.kind == "file"] == [str(data)]
    missing = cell_key(a, {}, files=[str(tmp_path / "nope.txt")])
    assert [p.digest for p in missing.parts if p.kind == "file"] == ["missing"]
    assert cell_key(a, {}, variables=["y"]).key != cell_key(a, {}).key


def test_keys_are_identical_across_hash_seeds() -> None:
    code = (
        "import numpy as np, pandas as pd\n"
        "from tore_nb.cells import analyze_cell, cell_key\n"
        "ns = {'d': {'b': {1, 2, 3}, 'a': [1.5, 'x']}, 'arr': np.arange(10),\n"
        "      'df': pd.DataFrame({'s': ['p', 'q']}), 'np': np}\n"
        "exec('def f(v):\\n    return sorted(v)', ns)\n"
        "print(cell_key(analyze_cell('y = f(d[\"b\"]) + [arr.sum(), len(df)]'), ns).key)\n"
    )
    keys = outputs_under_hash_seeds(code, ("1", "2", "random"))
    assert len(keys) == 1


# -- run and restore ------------------------------------------------------------------------------
def test_miss_then_hit_restores_variables_and_replays_stdout(
    cache: MultiLevelCache, capsys: pytest.CaptureFixture[str]
) -> None:
    src = "import math\nr = math.sqrt(n)\nprint('computed', r)\ndef twice(v):\n    return 2 * v"
    ns: dict[str, Any] = {"n": 16}
    assert run(src, ns, cache) == "stored"
    assert capsys.readouterr().out == "computed 4.0\n"
    fresh: dict[str, Any] = {"n": 16}
    outcome = run_cached_cell(src, fresh, cache)
    assert outcome.status == "hit" and outcome.tier == "memory"
    assert outcome.variables == ("r",)
    assert capsys.readouterr().out == "computed 4.0\n"
    assert fresh["r"] == 4.0 and fresh["math"].sqrt(9) == 3.0 and fresh["twice"](2) == 4


def test_restored_values_are_private_copies(cache: MultiLevelCache) -> None:
    src = "arr = np.zeros(5)\ndf = pd.DataFrame({'a': arr})"
    ns: dict[str, Any] = {"np": np, "pd": pd}
    run(src, ns, cache)
    ns["arr"][0] = 99  # mutate the original after the store
    first: dict[str, Any] = {"np": np, "pd": pd}
    run(src, first, cache)
    assert first["arr"][0] == 0
    first["arr"][:] = 7
    first["df"].loc[0, "a"] = 7
    second: dict[str, Any] = {"np": np, "pd": pd}
    assert run(src, second, cache) == "hit"
    assert second["arr"].sum() == 0 and second["df"]["a"].sum() == 0
    assert second["arr"].flags.writeable


def test_restore_from_disk_after_memory_is_gone(tmp_path: Path) -> None:
    cfg = CacheConfig.embedded(tmp_path / "c")
    src = "arr = np.arange(n)"
    ns: dict[str, Any] = {"np": np, "n": 10}
    run(src, ns, MultiLevelCache(cfg, secret=b"s" * 32))
    other = MultiLevelCache(cfg, secret=b"s" * 32)  # a new process, in effect
    fresh: dict[str, Any] = {"np": np, "n": 10}
    outcome = run_cached_cell(src, fresh, other)
    assert (outcome.status, outcome.tier) == ("hit", "disk")
    np.testing.assert_array_equal(fresh["arr"], np.arange(10))


def test_upstream_change_reruns_and_comment_edit_does_not(cache: MultiLevelCache) -> None:
    ns: dict[str, Any] = {"n": 3}
    assert run("y = n * 2", ns, cache) == "stored"
    assert run("y = n * 2  # doubled", ns, cache) == "hit"
    ns["n"] = 4
    assert run("y = n * 2", ns, cache) == "stored"
    assert ns["y"] == 8


def test_instances_of_classes_defined_in_the_cell(cache: MultiLevelCache) -> None:
    import types

    main = types.ModuleType("tcache_test_main")
    sys.modules[main.__name__] = main
    try:
        src = "class Point:\n    def __init__(self, x):\n        self.x = x\np = Point(3)"
        run(src, main.__dict__, cache)
        fresh = types.ModuleType("tcache_test_main")
        sys.modules[main.__name__] = fresh
        assert run(src, fresh.__dict__, cache) == "hit"
        assert fresh.__dict__["p"].x == 3
        assert type(fresh.__dict__["p"]) is fresh.__dict__["Point"]
    finally:
        del sys.modules[main.__name__]


def test_definitions_that_use_cell_variables(cache: MultiLevelCache) -> None:
    src = "k = 3\ndef add(v, k=k):\n    return v + k\nout = add(1)"
    run(src, {}, cache)
    fresh: dict[str, Any] = {}
    assert run(src, fresh, cache) == "hit"
    assert fresh["out"] == 4 and fresh["add"](0) == 3


def test_a_failed_restore_leaves_the_namespace_alone_and_runs(cache: MultiLevelCache) -> None:
    src = "y = x + 1"
    run(src, {"x": 1}, cache)
    key = cell_key(analyze_cell(src), {"x": 1}).key
    entry = cache.get(key)
    assert isinstance(entry, CellEntry)
    broken = CellEntry(**{**entry.__dict__, "stream": b"not a pickle"})
    cache.set(key, broken)
    ns: dict[str, Any] = {"x": 1, "y": "before"}
    outcome = run_cached_cell(src, ns, cache)
    assert outcome.status == "stored" and ns["y"] == 2


def test_deleted_names_are_deleted_on_a_hit(cache: MultiLevelCache) -> None:
    run("y = 1\ndel tmp", {"tmp": 0}, cache)
    ns = {"tmp": 0}
    assert run("y = 1\ndel tmp", ns, cache) == "hit"
    assert "tmp" not in ns and ns["y"] == 1


def test_a_cell_that_raises_is_not_cached(cache: MultiLevelCache) -> None:
    with pytest.raises(ZeroDivisionError):
        run_cached_cell("y = 1 / 0", {}, cache)
    assert cache.find_keys("tcache:*") == []


def test_unpicklable_variable_is_named_and_the_cell_not_cached(cache: MultiLevelCache) -> None:
    ns: dict[str, Any] = {}
    with pytest.warns(CacheWarning, match="variable 'lock' cannot be pickled"):
        outcome = run_cached_cell("import threading\nlock = threading.Lock()\nn = 1", ns, cache)
    assert outcome.status == "not-cached"
    assert ns["n"] == 1 and "lock" in ns
    assert cache.find_keys("tcache:cell:*") == []


def test_generators_are_named_too(cache: MultiLevelCache) -> None:
    with pytest.warns(CacheWarning, match="'gen'"):
        run_cached_cell("gen = (i for i in range(3))", {}, cache)


def test_too_large_for_every_tier(tmp_path: Path) -> None:
    cfg = CacheConfig.embedded(
        tmp_path / "c", memory_max_item_mb=0.01, disk_max_item_mb=0.01, small_item_mb=0.01
    )
    cache = MultiLevelCache(cfg, secret=b"s" * 32)
    ns: dict[str, Any] = {"np": np}
    with pytest.warns(CacheWarning, match=r"larger than every enabled tier.*'big'"):
        outcome = run_cached_cell("big = np.random.default_rng(0).random(100_000)", ns, cache)
    assert outcome.status == "not-cached" and ns["big"].shape == (100_000,)


def test_unhashable_input_runs_uncached_with_a_warning(cache: MultiLevelCache) -> None:
    ns: dict[str, Any] = {"lock": threading.Lock()}
    with pytest.warns(CacheWarning, match="input 'lock'"):
        outcome = run_cached_cell("y = lock.locked()", ns, cache)
    assert outcome.status == "not-cached" and ns["y"] is False


def test_vars_option_stores_only_those(cache: MultiLevelCache) -> None:
    run("a = 1\nb = 2", {}, cache, variables=("b",))
    ns: dict[str, Any] = {}
    assert run("a = 1\nb = 2", ns, cache, variables=("b",)) == "hit"
    assert ns == {"b": 2}
    with pytest.warns(CacheWarning, match="--vars names c"):
        run("a = 1", {}, cache, variables=("c",))


def test_force_recomputes_and_off_does_not_cache(cache: MultiLevelCache) -> None:
    calls: list[int] = []
    ns: dict[str, Any] = {"calls": calls}
    run("calls.append(1)\ny = 1", ns, cache)
    run("calls.append(1)\ny = 1", ns, cache)  # calls changed: a miss
    assert run("calls.append(1)\ny = 1", {"calls": [1]}, cache) == "hit"
    assert run("y = 5", ns, cache, force=True) == "stored"
    assert run("y = 5", ns, cache, force=True) == "stored"
    assert run("z = 5", ns, cache, off=True) == "off"
    assert cache.find_keys("tcache:cell:z:*") == []


def test_modules_inside_values_are_reimported(cache: MultiLevelCache) -> None:
    run("import json\nholder = {'mod': json}", {}, cache)
    ns: dict[str, Any] = {}
    assert run("import json\nholder = {'mod': json}", ns, cache) == "hit"
    assert ns["holder"]["mod"] is sys.modules["json"]


def test_ttl_and_tiers_options(cache: MultiLevelCache) -> None:
    run("y = 1", {}, cache, tiers=("disk",), ttl=60)
    assert cache.tier("memory").get(cache.find_keys("tcache:cell:y:*")[0]) is None
    outcome = run_cached_cell("y = 1", {}, cache, options=CellOptions(tiers=("disk",)))
    assert (outcome.status, outcome.tier) == ("hit", "disk")


def test_explain_names_the_changed_parts(cache: MultiLevelCache) -> None:
    ns: dict[str, Any] = {"x": 1, "k": 5}
    run("y = x + k", ns, cache, name="sum")
    ns["x"] = 2
    outcome = run_cached_cell(
        "y = x + k  # edited comment", ns, cache, options=CellOptions(name="sum")
    )
    assert outcome.key is not None and outcome.status == "stored"
    expl = explain(outcome.key.parts, outcome.previous, "sum")
    assert [(r.part, r.name, r.status) for r in expl.changed] == [("input", "x", "changed")]
    frame = expl.to_frame()
    assert list(frame.columns) == ["part", "name", "stored", "current", "status"]
    assert "1 part(s) changed" in str(expl)
    assert tore_nb.cells.latest_parts(cache, "sum") == outcome.key.parts
    assert tore_nb.cells.previous_parts(cache, "sum") == outcome.previous
    assert not explain(outcome.key.parts, None, "new").stored


def test_saved_time_is_counted(cache: MultiLevelCache) -> None:
    src = "import time\ntime.sleep(0.05)\ny = 1"
    run(src, {}, cache)
    outcome = run_cached_cell(src, {}, cache)
    assert outcome.saved_seconds > 0.03
    assert cache.metrics.saved_seconds >= outcome.saved_seconds
    assert "restored from memory" in (outcome.message(verbose=True) or "")
    assert outcome.message() is None  # 50 ms saved: not worth a line unless verbose


# -- output recording -----------------------------------------------------------------------------
def test_recorder_keeps_order_merges_and_collapses_progress(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with OutputRecorder() as rec:
        print("a", end="")
        print("b")
        print("oops", file=sys.stderr)
        sys.stdout.write("10%\r50%\r100%\n")
    events = rec.events()
    assert [(e.kind, e.text) for e in events] == [
        ("stdout", "ab\n"),
        ("stderr", "oops\n"),
        ("stdout", "100%\n"),
    ]
    assert capsys.readouterr().out == "ab\n10%\r50%\r100%\n"


class _Pub:
    def __init__(self) -> None:
        self.seen: list[Any] = []

    def publish(self, data: Any, metadata: Any = None, **kw: Any) -> None:
        self.seen.append(("display", data, kw))

    def clear_output(self, wait: bool = False) -> None:
        self.seen.append(("clear", wait))


class _Shell:
    def __init__(self) -> None:
        self.display_pub = _Pub()


def test_recorder_with_a_shell_records_display_calls_and_drops_widgets() -> None:
    shell = _Shell()
    widget = {"text/plain": "W", "application/vnd.jupyter.widget-view+json": {"model_id": "x"}}
    with OutputRecorder(shell) as rec:
        print("first")
        shell.display_pub.publish({"text/html": "<b>x</b>"}, {}, transient={"display_id": "d"})
        shell.display_pub.clear_output(True)
        shell.display_pub.publish({"application/vnd.jupyter.widget-view+json": {}})
        shell.display_pub.publish(widget)
        print("last")
    assert "publish" not in vars(shell.display_pub)  # unpatched again
    events = rec.events()
    assert [e.kind for e in events] == ["stdout", "display", "clear", "display", "stdout"]
    assert events[1].transient == {"display_id": "d"}
    assert events[3].data == {"text/plain": "W"}
    replayed = _Shell()
    tore_nb.cells.replay(events, replayed)
    assert [s[0] for s in replayed.display_pub.seen] == ["display", "clear", "display"]


def test_replay_without_a_shell_prints_text() -> None:
    out = subprocess.run(
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": SOURCE_ROOT},
        args=[
            sys.executable,
            "-c",
            "from tore_nb.cells import replay, OutputEvent as E\n"
            "replay([E('stdout', 'a\\n'), E('display', data={'text/plain': 'T'}),"
            " E('stdout', 'b')])",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout == "a\nT\nb"
    assert OutputEvent("stdout", "x").kind == "stdout"


def test_doctests() -> None:
    assert doctest.testmod(tore_nb.cells).failed == 0


# -- observed, not guessed: what a run changed and read -------------------------------------------
def restart(cache: MultiLevelCache) -> MultiLevelCache:
    """The same cache as a fresh process sees it (no memory tier contents)."""
    return MultiLevelCache(cache.config, secret=b"s" * 32)


def plain_and_cached(setup: str, cell: str, after: str, cache: MultiLevelCache) -> None:
    """Run setup, cell, after plainly and with the cell cached (stored, then a hit in a
    'fresh process'); the namespaces must hold equal values."""
    import random as random_module

    def fresh() -> dict[str, Any]:
        np.random.seed(0)
        random_module.seed(0)
        ns: dict[str, Any] = {}
        exec(setup, ns)
        return ns

    plain = fresh()
    exec(cell, plain)
    exec(after, plain)
    first = fresh()
    assert run_cached_cell(cell, first, cache).status == "stored"
    cached = fresh()
    assert run_cached_cell(cell, cached, restart(cache)).status == "hit"
    exec(after, cached)
    for name in plain:
        if name.startswith("__") or name in ("np", "random", "heapq", "pd", "os", "sys"):
            continue
        assert name in cached, name
        assert same(plain[name], cached[name]), name


def same(a: Any, b: Any) -> bool:
    import re

    from tore_nb.keys import hash_value

    try:
        return hash_value(a) == hash_value(b)
    except TypeError:  # no content to compare (an iterator): its text, addresses aside
        address = re.compile(r" at 0x[0-9a-fA-F]+")
        return address.sub("", repr(a)) == address.sub("", repr(b))


@pytest.mark.parametrize(
    ("setup", "cell", "after"),
    [
        ("xs = [3, 1, 2]", "xs.sort()\nn = 1", "m = xs[0]"),
        ("import numpy as np\narr = np.arange(4)", "arr.fill(0)\nn = 1", "m = arr.sum()"),
        ("s = {1, 2, 3}\nt = {1}", "s.difference_update(t)\nn = 1", "m = sorted(s)"),
        ("import random\nxs = list(range(9))", "random.shuffle(xs)\nn = 1", "m = list(xs)"),
        ("import heapq\nh = [3]", "heapq.heappush(h, 1)\nn = 1", "m = list(h)"),
        ("class O: pass\no = O()", "setattr(o, 'a', 1)\nn = 1", "m = o.a"),
        ("it = iter(range(5))", "first = next(it)", "m = next(it)"),
        (
            "import numpy as np\nrng = np.random.default_rng(3)",
            "a = rng.normal()",
            "b = rng.normal()",
        ),
        (
            "def add(v):\n    items.append(v)\nitems = []",
            "add(3)\nn = 1",
            "m = list(items)",
        ),
        ("def setdf():\n    global df\n    df = 5", "setdf()\nn = 1", "m = df"),
        ("x = 'old'\nflag = False", "if flag:\n    x = 'new'\ny = 1", "m = x"),
        ("raw = {'a': 1}", "clean = raw\nclean['x2'] = 2", "raw['z'] = 3\nm = dict(clean)"),
        (
            "import numpy as np\nx2 = np.arange(9).reshape(3, 3)",
            "x2_sub = x2[:2, :2]",
            "x2_sub[0, 0] = 99\nm = x2.tolist()",
        ),
        ("import numpy as np\nnp.random.seed(1)", "a = np.random.rand()", "b = np.random.rand()"),
        ("import random\nrandom.seed(1)", "a = random.random()", "b = random.random()"),
    ],
)
def test_a_hit_leaves_what_a_plain_run_leaves(
    setup: str, cell: str, after: str, cache: MultiLevelCache
) -> None:
    """Mutation by any call, names bound by functions of other cells or not bound on the path
    taken, aliases, views, random generators: a hit in a fresh process, then the next cell,
    gives what the plain run gives."""
    plain_and_cached(setup, cell, after, cache)


def test_a_function_that_changes_a_global_keys_it_by_content(cache: MultiLevelCache) -> None:
    """`def add(v): items.append(v)` in another cell: `items` is read and changed by the cell,
    so a different `items` upstream is a miss, not the old list."""
    setup = "def add(v):\n    items.append(v)\n"
    ns: dict[str, Any] = {}
    exec(setup + "items = []", ns)
    run_cached_cell("add(3)\nn = 1", ns, cache)
    ns = {}
    exec(setup + "items = [1]", ns)
    assert run_cached_cell("add(3)\nn = 1", ns, cache).status == "stored"
    assert ns["items"] == [1, 3]


def test_numpy_seed_upstream_is_part_of_the_key(cache: MultiLevelCache) -> None:
    cell = "import numpy as np\na = np.random.rand()"
    np.random.seed(0)
    run_cached_cell(cell, {}, cache)
    np.random.seed(1)
    ns: dict[str, Any] = {}
    outcome = run_cached_cell(cell, ns, restart(cache))
    assert outcome.status == "stored" and "numpy.random state" in outcome.changed()
    np.random.seed(1)
    assert ns["a"] == np.random.rand()


def test_a_cell_that_seeds_first_does_not_depend_on_the_state_before(
    cache: MultiLevelCache,
) -> None:
    cell = "import numpy as np\nnp.random.seed(5)\na = np.random.rand()"
    np.random.seed(0)
    run_cached_cell(cell, {}, cache)
    np.random.seed(1)  # another state before the cell: it does not read it
    ns: dict[str, Any] = {}
    assert run_cached_cell(cell, ns, restart(cache)).status == "hit"
    after_hit = np.random.rand()  # continues from where the cell's draws ended
    np.random.seed(5)
    assert ns["a"] == np.random.rand() and after_hit == np.random.rand()


def test_files_the_cell_reads_are_keyed_without_files(
    cache: MultiLevelCache, tmp_path: Path
) -> None:
    data = tmp_path / "data.csv"
    data.write_text("a\n1\n")
    cell = "import pandas as pd\ndf = pd.read_csv(path)\ntotal = int(df.a.sum())"
    ns: dict[str, Any] = {"path": str(data)}
    assert run_cached_cell(cell, ns, cache).status == "stored"
    assert run_cached_cell(cell, {"path": str(data)}, restart(cache)).status == "hit"
    data.write_text("a\n2\n")
    ns = {"path": str(data)}
    outcome = run_cached_cell(cell, ns, restart(cache))
    assert outcome.status == "stored" and ns["total"] == 2
    assert f"file {data}" in outcome.changed()


def test_env_reads_are_keyed_and_env_writes_restored(
    cache: MultiLevelCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    monkeypatch.setenv("TORE_TEST_IN", "1")
    cell = "import os\nv = os.environ.get('TORE_TEST_IN')\nos.environ['TORE_TEST_OUT'] = v"
    run_cached_cell(cell, {}, cache)
    monkeypatch.delenv("TORE_TEST_OUT")
    assert run_cached_cell(cell, {}, restart(cache)).status == "hit"
    assert os.environ["TORE_TEST_OUT"] == "1"
    monkeypatch.setenv("TORE_TEST_IN", "2")
    ns: dict[str, Any] = {}
    assert run_cached_cell(cell, ns, restart(cache)).status == "stored" and ns["v"] == "2"
    monkeypatch.delenv("TORE_TEST_OUT")


def test_a_cell_that_hands_the_environment_on_is_served_in_another_kernel(
    cache: MultiLevelCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`tore-nb run` re-ran such cells on every run: each kernel is given the id of the
    process that started it (JPY_PARENT_PID), and a cell that passes the whole environment on
    (`subprocess.run`, `dict(os.environ)`) read it. It names a process, as `os.getpid()` does:
    no input, so the cell is served in the next kernel."""
    monkeypatch.setenv("JPY_PARENT_PID", "4711")
    cell = "import os\nenv = dict(os.environ)\nhome = env.get('HOME')"
    assert run_cached_cell(cell, {}, cache).status == "stored"
    monkeypatch.setenv("JPY_PARENT_PID", "4712")  # the next kernel
    assert run_cached_cell(cell, {}, restart(cache)).status == "hit"


def test_a_variable_added_to_the_environment_reruns_a_cell_that_read_it_all(
    cache: MultiLevelCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cell that went through the whole environment was keyed by the variables there at its
    run, not by the set of them: one added later (that a program it starts may read) was
    missed."""
    monkeypatch.delenv("TORE_TEST_ADDED", raising=False)
    cell = "import os\nn = sum(1 for _ in os.environ.items())"
    assert run_cached_cell(cell, {}, cache).status == "stored"
    assert run_cached_cell(cell, {}, restart(cache)).status == "hit"
    monkeypatch.setenv("TORE_TEST_ADDED", "1")
    ns: dict[str, Any] = {}
    assert run_cached_cell(cell, ns, restart(cache)).status == "stored"


@pytest.mark.parametrize(
    ("cell", "why"),
    [
        (
            "import subprocess\ncode = subprocess.run(['true']).returncode",
            "it starts a process (true)",
        ),
        ("import os\nstatus = os.system('true')", "it starts a process (true)"),
        ("got = other.get('k')", "it uses a tore_nb cache itself"),
    ],
)
def test_auto_runs_a_cell_that_acts_outside_the_kernel_every_time_saying_why(
    cell: str, why: str, cache: MultiLevelCache, tmp_path: Path
) -> None:
    """A replay restores variables and outputs: it would not start the program again, nor
    read or write the cache the cell used (a later cell may show that cache's figures). A
    cell nobody chose to cache (`%tcache auto`, `tore-nb run`) runs every time; a `%%tcache`
    line is the user's word, and caches it."""
    other = MultiLevelCache(CacheConfig.embedded(tmp_path / "other"), secret=b"s" * 32)

    def ns() -> dict[str, Any]:
        return {"other": other}

    auto = CellOptions(rerun_effects=True, warn=False)
    outcome = run_cached_cell(cell, ns(), cache, options=auto)
    assert outcome.status == "not-cached"
    assert outcome.reason == f"{why}, which a replay would not do again"
    assert run_cached_cell(cell, ns(), cache, options=auto).status == "not-cached"
    assert run_cached_cell(cell, ns(), cache).status == "stored"
    assert run_cached_cell(cell, ns(), cache).status == "hit"


def test_asking_whether_a_process_is_alive_is_no_effect(cache: MultiLevelCache) -> None:
    cell = "import os\nalive = os.kill(os.getpid(), 0) is None"
    auto = CellOptions(rerun_effects=True, warn=False)
    assert run_cached_cell(cell, {}, cache, options=auto).status == "stored"
    assert run_cached_cell(cell, {}, cache, options=auto).status == "hit"


def test_a_file_the_cell_wrote_must_still_be_there(cache: MultiLevelCache, tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    cell = "open(path, 'w').write('x')\nn = 1"
    run_cached_cell(cell, {"path": str(out)}, cache)
    assert run_cached_cell(cell, {"path": str(out)}, cache).status == "hit"
    out.unlink()
    assert run_cached_cell(cell, {"path": str(out)}, cache).status == "stored"
    assert out.read_text() == "x"


@pytest.mark.parametrize(
    "cell",
    [
        "y = globals()['x']",
        "y = eval(expr)",
        "q = 'a > 1'\nr = df.query(q)",
        "y = '{x}'.format(**globals())",
    ],
)
def test_indirect_reads_run_uncached_saying_why(cell: str, cache: MultiLevelCache) -> None:
    assert analyze_cell(cell).uncacheable is not None


def test_literal_query_and_eval_strings_name_their_inputs() -> None:
    assert set(analyze_cell("r = df.query('a > @cut')").inputs) == {"df", "cut"}
    assert set(analyze_cell("r = df.eval('@w * a')").inputs) == {"df", "w"}
    assert "x" in analyze_cell("y = eval('x + 1')").inputs


def test_dict_order_counts(cache: MultiLevelCache) -> None:
    """`pd.DataFrame(cols)` follows the dict's order: a reordered dict is another input."""
    cell = "import pandas as pd\nframe = pd.DataFrame(cols)"
    run_cached_cell(cell, {"cols": {"a": [1], "b": [2]}}, cache)
    ns: dict[str, Any] = {"cols": {"b": [2], "a": [1]}}
    assert run_cached_cell(cell, ns, cache).status == "stored"
    assert list(ns["frame"].columns) == ["b", "a"]


def test_a_module_edited_but_not_reloaded_is_never_keyed_by_its_file(
    cache: MultiLevelCache, local_modules: Path
) -> None:
    """The kernel runs the code it imported; a key made from the edited file would file the
    old code's results under the new code, for every later session: run uncached, say why."""
    import importlib
    import time as time_module

    from tests.support import write_module

    write_module(local_modules, "helpers_stale", "def f():\n    return 1\n")
    cell = "from helpers_stale import f\ny = f()"
    assert run_cached_cell(cell, {}, cache).status == "stored"
    time_module.sleep(0.01)
    (local_modules / "helpers_stale.py").write_text("def f():\n    return 2\n")
    ns: dict[str, Any] = {}
    with pytest.warns(CacheWarning, match="helpers_stale"):
        outcome = run_cached_cell(cell, ns, cache)
    assert outcome.status == "not-cached" and ns["y"] == 1  # the loaded code ran
    importlib.reload(sys.modules["helpers_stale"])
    ns = {}
    outcome = run_cached_cell(cell, ns, cache)
    assert outcome.status == "stored" and ns["y"] == 2


def test_a_module_imported_by_the_cell_is_keyed_by_its_code(
    cache: MultiLevelCache, local_modules: Path
) -> None:
    """`from helpers import f` in the cell: an edit of helpers.py between sessions misses."""
    from tests.support import write_module

    write_module(local_modules, "helpers_keyed", "def f():\n    return 1\n")
    del sys.modules["helpers_keyed"]  # a new session: not imported yet
    cell = "from helpers_keyed import f\ny = f()"
    assert run_cached_cell(cell, {}, cache).status == "stored"
    del sys.modules["helpers_keyed"]
    assert run_cached_cell(cell, {}, restart(cache)).status == "hit"
    (local_modules / "helpers_keyed.py").write_text("def f():\n    return 2\n")
    del sys.modules["helpers_keyed"]
    ns: dict[str, Any] = {}
    assert run_cached_cell(cell, ns, restart(cache)).status == "stored" and ns["y"] == 2


def test_a_called_function_that_reads_names_indirectly_makes_the_cell_uncached(
    cache: MultiLevelCache,
) -> None:
    """`def get(k): return globals()[k]` in another cell: what `get('x')` reads is no input
    tore_nb can see, so the cell runs uncached and says which function."""
    ns: dict[str, Any] = {"x": 1}
    exec("def get(k):\n    return globals()[k]", ns)
    with pytest.warns(CacheWarning, match=r"get\(\) calls globals\(\)"):
        outcome = run_cached_cell("y = get('x')", ns, cache)
    assert outcome.status == "not-cached" and ns["y"] == 1


def test_a_failing_state_probe_never_breaks_the_cell(cache: MultiLevelCache) -> None:
    """A third-party probe that raises: the cell runs as it is, with one note, and nothing
    is lost."""
    from tore_nb.cells import register_probe, unregister_probe
    from tore_nb.cells.probes import BaseProbe

    class Broken(BaseProbe):
        name, kind = "test.broken", "keyed"

        def available(self) -> bool:
            return True

        def capture(self) -> Any:
            raise RuntimeError("boom")

    register_probe(Broken())
    try:
        ns: dict[str, Any] = {}
        with pytest.warns(CacheWarning, match="failed keying it"):
            outcome = run_cached_cell("y = 1", ns, cache)
        assert outcome.status == "not-cached" and ns["y"] == 1
    finally:
        unregister_probe("test.broken")


def test_an_outage_is_said_once_not_by_every_cell(
    tmp_path: Path, private_redis: Any, recwarn: pytest.WarningsRecorder
) -> None:
    """Regression: while the Redis breaker was open every `%%tcache --tiers redis` cell printed
    its own warning (43, 21 and 165 in three runs); one per outage now, and the next outage is
    said again once a cell was stored."""
    config = CacheConfig.from_env(
        {"REDIS_URL": private_redis.url, "DISK_CACHE_PATH": str(tmp_path / "disk")}
    )
    cache = MultiLevelCache(config, secret=b"s" * 32)
    try:
        assert run("a = 1", {}, cache, tiers=("redis",)) == "stored"
        private_redis.kill()
        statuses = [run(f"b = {i}", {}, cache, tiers=("redis",)) for i in range(20)]
        assert set(statuses) == {"not-cached"}
        said = [str(w.message) for w in recwarn if "cell not cached" in str(w.message)]
        assert len(said) == 1 and "redis down" in said[0], said
        private_redis.start()
        recwarn.clear()
        stored = False
        for i in range(200):  # until the breaker lets a write through again
            stored = run(f"c = {i}", {}, cache, tiers=("redis",)) == "stored"
            if stored:
                break
            time.sleep(0.05)
        assert stored
        private_redis.kill()
        for i in range(5):
            run(f"d = {i}", {}, cache, tiers=("redis",))
        said = [str(w.message) for w in recwarn if "cell not cached" in str(w.message)]
        assert len(said) == 1, said
    finally:
        cache.close()
