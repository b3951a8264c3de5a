"""Regressions: what fingerprints, dependency tokens and cell keys must notice
(tore_nb.fingerprint, tore_nb.cells.analysis, tore_nb.cells.keys)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from tore_nb.cells import analyze_cell, cell_key, explain
from tore_nb.fingerprint import dependency_token, fingerprint

from .conftest import outputs_under_hash_seeds, write_module


def run(source: str, **names: Any) -> dict[str, Any]:
    """Runs source as notebook code (module `__main__`: user code) in a fresh namespace."""
    ns: dict[str, Any] = {"__name__": "__main__", **names}
    exec(textwrap.dedent(source), ns)
    return ns


# -- 1. functions reached through plain containers -------------------------------------------------
CONTAINERS = """
def helper(x):
    return x + {n}
D = {{"h": helper}}
L = [lambda x: x * {n}]
T = (("nested", {{"h": helper}}),)
S = {{helper}}
def by_dict(x):
    return D["h"](x)
def by_list(x):
    return L[0](x)
def by_nested(x):
    return T[0][1]["h"](x)
def by_set(x):
    return next(iter(S))(x)
"""


@pytest.mark.parametrize("fn", ["by_dict", "by_list", "by_nested", "by_set"])
def test_functions_reached_through_containers_count_by_code(fn: str) -> None:
    a, b = run(CONTAINERS.format(n=1)), run(CONTAINERS.format(n=2))
    assert fingerprint(a[fn]) == fingerprint(run(CONTAINERS.format(n=1))[fn])
    assert fingerprint(a[fn]) != fingerprint(b[fn])


def test_containers_of_plain_data_still_count_by_content() -> None:
    assert dependency_token({"a": [1, 2]}) == dependency_token({"a": [1, 2]})
    assert dependency_token({"a": [1, 2]}) != dependency_token({"a": [1, 3]})
    ns = run("def f():\n    return 1\n")
    # a set of functions: the digest does not depend on the set's (id-based) order
    assert dependency_token({ns["f"], len}) == dependency_token({len, ns["f"]})


def test_dispatch_table_as_cell_input() -> None:
    a = analyze_cell('y = fns["a"](x)')
    ns = run("def helper(x):\n    return x + 1\nfns = {'a': helper}\nx = 1")
    k1 = cell_key(a, ns)
    ns = run("def helper(x):\n    return x + 100\nfns = {'a': helper}\nx = 1")
    assert cell_key(a, ns).key != k1.key


# -- 2. bound methods count with their object ------------------------------------------------------
MODEL = """
class Model:
    def __init__(self, w):
        self.w = w
    def predict(self, x):
        return x * self.w
model = Model({w})
predict = model.predict
def f(x):
    return predict(x)
"""


def test_bound_methods_count_their_object() -> None:
    assert dependency_token({1: "a"}.get) != dependency_token({1: "b"}.get)
    assert dependency_token({1: "a"}.get) == dependency_token({1: "a"}.get)
    a, b = run(MODEL.format(w=2)), run(MODEL.format(w=3))
    assert dependency_token(a["predict"]) != dependency_token(b["predict"])
    assert fingerprint(a["f"]) != fingerprint(b["f"])
    assert fingerprint(a["f"]) == fingerprint(run(MODEL.format(w=2))["f"])
    assert dependency_token(len) == dependency_token(len)  # bound to the builtins module


# -- 3. calling a mutator-named function of a module or class is code, not state -------------------
def test_mutator_names_on_modules_and_classes_are_code(local_modules: Path) -> None:
    utils = "def update(x):\n    return x\ndef compute(x):\n    return {k} * x\n"
    write_module(local_modules, "fp_mututils", utils.format(k=2))
    ns = run("import fp_mututils\ndef m(x):\n    return fp_mututils.update(fp_mututils.compute(x))")
    before = fingerprint(ns["m"])
    write_module(local_modules, "fp_mututils", utils.format(k=3))
    assert fingerprint(ns["m"]) != before

    vec = "class Vec:\n    @staticmethod\n    def add(a, b):\n        return a {op} b\n"
    use = "def v(x):\n    return Vec.add(x, 1)\n"
    assert fingerprint(run(vec.format(op="+") + use)["v"]) != fingerprint(
        run(vec.format(op="-") + use)["v"]
    )
    # a list the function appends to is still state, not an input
    log = run("LOG = []\ndef g(x):\n    LOG.append(x)\n    return x")
    before = fingerprint(log["g"])
    log["LOG"].append(1)
    assert fingerprint(log["g"]) == before


# -- 4. an unhashable user object still brings its class's code ------------------------------------
def test_unhashable_user_object_counts_its_class() -> None:
    src = """
    import threading
    class Model:
        def __init__(self):
            self.lock = threading.Lock()
        def predict(self, x):
            return x + {n}
    model = Model()
    def f(x):
        return model.predict(x)
    """
    assert fingerprint(run(src.format(n=1))["f"]) != fingerprint(run(src.format(n=2))["f"])
    assert fingerprint(run(src.format(n=1))["f"]) == fingerprint(run(src.format(n=1))["f"])


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
    a = analyze_cell(source)
    assert "y" not in a.inputs and "C" not in a.inputs
    assert "y" in a.outputs


def test_walrus_in_a_comprehension_binds_in_the_cell() -> None:
    a = analyze_cell("r = [(y := v) for v in xs]")
    assert a.inputs == ("xs",)
    assert set(a.outputs) == {"r", "y"}
    inner = analyze_cell("def f():\n    r = [(y := v) for v in xs]\n    return y\nq = f()")
    assert inner.inputs == ("xs",)


# -- 6. a local module input counts by the code the cell reads from it -----------------------------
def test_local_module_input_counts_the_attributes_the_cell_reads(local_modules: Path) -> None:
    mod = write_module(
        local_modules, "fp_cellutils", "def compute(x):\n    return x * 2\nOTHER = 1\n"
    )
    a = analyze_cell("y = fp_cellutils.compute(x)")
    assert a.attributes == (("fp_cellutils", (("compute",),)),)
    ns = {"fp_cellutils": mod, "x": 1}
    k1 = cell_key(a, ns)
    mod.OTHER = 2  # not read by the cell
    assert cell_key(a, ns).key == k1.key
    write_module(local_modules, "fp_cellutils", "def compute(x):\n    return x * 3\nOTHER = 1\n")
    k2 = cell_key(a, ns)
    assert k2.key != k1.key
    [changed] = explain(k2.parts, k1.parts).changed
    assert (changed.part, changed.name) == ("input", "fp_cellutils")


# -- 7. a callable wrapper object counts by its class's code and its state -------------------------
def test_callable_wrapper_counts_its_class_and_state() -> None:
    src = """
    import functools
    class scaled:
        def __init__(self, fn, k):
            functools.update_wrapper(self, fn)
            self.k = k
        def __call__(self, x):
            return self.__wrapped__(x) * self.k
    def base(x):
        return x
    g = scaled(base, 2)
    def f(x):
        return g(x)
    """
    a = fingerprint(run(src)["f"])
    assert a == fingerprint(run(src)["f"])
    assert a != fingerprint(run(src.replace("scaled(base, 2)", "scaled(base, 3)"))["f"])
    assert a != fingerprint(run(src.replace("* self.k", "+ self.k"))["f"])
    assert a != fingerprint(run(src.replace("return x\n", "return -x\n"))["f"])


# -- determinism -----------------------------------------------------------------------------------
def test_new_parts_are_identical_across_hash_seeds() -> None:
    code = (
        "from tore_nb.fingerprint import fingerprint\n"
        "ns = {'__name__': '__main__'}\n"
        "exec('''\n"
        "def h1(x):\n    return x\n"
        "def h2(x):\n    return -x\n"
        "S = {h1, h2, lambda x: x * 2}\n"
        "D = {'b': h2, 'a': (h1, {'k': {1, 2}})}\n"
        "class M:\n    def __init__(self):\n        self.t = {'x', 'y'}\n"
        "    def run(self, x):\n        return x\n"
        "bound = M().run\n"
        "def f(x):\n    return [g(x) for g in S], D, bound(x), {'p': 1}.get\n"
        "''', ns)\n"
        "print(fingerprint(ns['f']))\n"
    )
    digests = outputs_under_hash_seeds(code, ("1", "2", "3", "random"))
    assert len(digests) == 1
