"""Fingerprints and dependency tokens (tore_nb.fingerprint): what they must notice, what they
must not, and whether a local module's loaded code still matches its file."""

from __future__ import annotations

import doctest
import functools
import importlib
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tore_nb.code_modules as modules
import tore_nb.code_origin as origin
from tests.support import outputs_under_hash_seeds, write_module
from tore_nb.cells import analyze_cell, cell_key, explain
from tore_nb.code_modules import local_module_digest, module_is_stale, stale_modules, track_imports
from tore_nb.fingerprint import dependency_token, fingerprint
from tore_nb.keys import hash_value


def run(source: str, **names: Any) -> dict[str, Any]:
    """Runs source as notebook code (module `__main__`: user code) in a fresh namespace."""
    ns: dict[str, Any] = {"__name__": "__main__", **names}
    exec(textwrap.dedent(source), ns)
    return ns


def edit(folder: Path, name: str, source: str) -> Path:
    """Rewrite `name.py` WITHOUT reloading the module (an edit in the editor); its mtime moves
    on by a second, so that no file-stat memo can miss the edit."""
    path = folder / f"{name}.py"
    before = path.stat().st_mtime_ns
    path.write_text(textwrap.dedent(source))
    os.utime(path, ns=(before + 10**9, before + 10**9))
    return path


# -- functions reached through plain containers -------------------------------------------------
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
    """A helper reached through a dispatch table (a dict, a list, a nested tuple, a set) was
    hashed by hash_value as data: its code did not count."""
    a, b = run(CONTAINERS.format(n=1)), run(CONTAINERS.format(n=2))
    assert fingerprint(a[fn]) == fingerprint(run(CONTAINERS.format(n=1))[fn])
    assert fingerprint(a[fn]) != fingerprint(b[fn])


def test_containers_of_plain_data_still_count_by_content() -> None:
    """Containers without code still count by content; a set of functions does not depend on
    the set's (id-based) order."""
    assert dependency_token({"a": [1, 2]}) == dependency_token({"a": [1, 2]})
    assert dependency_token({"a": [1, 2]}) != dependency_token({"a": [1, 3]})
    ns = run("def f():\n    return 1\n")
    assert dependency_token({ns["f"], len}) == dependency_token({len, ns["f"]})


def test_dict_order_counts_in_walked_containers() -> None:
    """The walker sorted a dict of functions by key digest, so a dispatch table iterated in
    order (`for name, f in STEPS.items()`) gave the same fingerprint in either order."""
    src = """
    def a(x):
        return x + 1
    def b(x):
        return x * 2
    STEPS = {order}
    def pipeline(x):
        for step in STEPS.values():
            x = step(x)
        return x
    """
    ab = run(src.format(order='{"a": a, "b": b}'))
    ba = run(src.format(order='{"b": b, "a": a}'))
    assert ab["pipeline"](1) != ba["pipeline"](1)
    assert fingerprint(ab["pipeline"]) != fingerprint(ba["pipeline"])
    assert dependency_token(ab["STEPS"]) != dependency_token(ba["STEPS"])
    assert fingerprint(ab["pipeline"]) == fingerprint(
        run(src.format(order='{"a": a, "b": b}'))["pipeline"]
    )


def test_dispatch_table_as_cell_input() -> None:
    """A cell reading a dispatch table: the helper's code is part of the cell's key."""
    a = analyze_cell('y = fns["a"](x)')
    ns = run("def helper(x):\n    return x + 1\nfns = {'a': helper}\nx = 1")
    k1 = cell_key(a, ns)
    ns = run("def helper(x):\n    return x + 100\nfns = {'a': helper}\nx = 1")
    assert cell_key(a, ns).key != k1.key


# -- bound methods count with their object ------------------------------------------------------
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
    """`model.predict` depends on the model's weights, `{1: "a"}.get` on the dict."""
    assert dependency_token({1: "a"}.get) != dependency_token({1: "b"}.get)
    assert dependency_token({1: "a"}.get) == dependency_token({1: "a"}.get)
    a, b = run(MODEL.format(w=2)), run(MODEL.format(w=3))
    assert dependency_token(a["predict"]) != dependency_token(b["predict"])
    assert fingerprint(a["f"]) != fingerprint(b["f"])
    assert fingerprint(a["f"]) == fingerprint(run(MODEL.format(w=2))["f"])
    assert dependency_token(len) == dependency_token(len)  # bound to the builtins module


def test_mutator_names_on_modules_and_classes_are_code(local_modules: Path) -> None:
    """Calling a mutator-named function of a module or class (`utils.update(x)`,
    `Vec.add(a, b)`) is code, not state; a list the function appends to is still state."""
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
    log = run("LOG = []\ndef g(x):\n    LOG.append(x)\n    return x")
    before = fingerprint(log["g"])
    log["LOG"].append(1)
    assert fingerprint(log["g"]) == before


def test_unhashable_user_object_counts_its_class() -> None:
    """An object that cannot be content-hashed (it holds a lock) still brings its class's code."""
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


def test_local_module_input_counts_the_attributes_the_cell_reads(local_modules: Path) -> None:
    """A local module input of a cell counts by the code of the attributes the cell reads."""
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


def test_callable_wrapper_counts_its_class_and_state() -> None:
    """A callable wrapper object counts by its class's code (`__call__`), its state and the
    function it wraps."""
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


def test_values_read_by_a_function_count_functions_they_hold_by_their_full_code() -> None:
    """A global config object holding a function: the function's helpers count (hash_value of
    the object used to see only the function's own bytecode)."""
    src = """
    import dataclasses
    def inner(x):
        return x + {n}
    def step(x):
        return inner(x)
    @dataclasses.dataclass
    class Config:
        fn: object
    CONFIG = Config(step)
    def f(x):
        return CONFIG.fn(x)
    """
    assert fingerprint(run(src.format(n=1))["f"]) != fingerprint(run(src.format(n=2))["f"])
    assert fingerprint(run(src.format(n=1))["f"]) == fingerprint(run(src.format(n=1))["f"])


# -- imports in function bodies -----------------------------------------------------------------
HELPERS = """
def inner(x):
    return x + {n}
def f(x):
    return inner(x)
def unrelated():
    return {u}
"""


@pytest.mark.parametrize(
    "body",
    [
        "import fp_imp\n    return fp_imp.f(x)",
        "from fp_imp import f\n    return f(x)",
        "from fp_imp import f as g\n    return g(x)",
        "import fp_imp as h\n    return h.f(x)",
    ],
    ids=["import", "from-import", "from-import-as", "import-as"],
)
def test_imports_in_a_function_body_count_the_code_used(local_modules: Path, body: str) -> None:
    """`def g(): import helpers; return helpers.f()`: the imported module was not part of the
    fingerprint, so editing helpers.f (or what it calls) and reloading kept the key."""
    write_module(local_modules, "fp_imp", HELPERS.format(n=1, u=1))
    ns = run(f"def g(x):\n    {body}\n")
    before = fingerprint(ns["g"])
    write_module(local_modules, "fp_imp", HELPERS.format(n=1, u=2))
    assert fingerprint(ns["g"]) == before  # by the attributes used, not the whole module
    write_module(local_modules, "fp_imp", HELPERS.format(n=2, u=2))
    assert fingerprint(ns["g"]) != before


def test_relative_and_dotted_imports_in_a_function_body(local_modules: Path) -> None:
    """`from . import sub`, `from .sub import f` and `import pkg.sub as s` in a package."""
    pkg = local_modules / "fp_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    user = (
        "def rel(x):\n    from . import sub\n    return sub.f(x)\n"
        "def rel_from(x):\n    from .sub import f\n    return f(x)\n"
        "def dotted(x):\n    import fp_pkg.sub as s\n    return s.f(x)\n"
        "def plain(x):\n    import fp_pkg.sub\n    return fp_pkg.sub.f(x)\n"
    )
    (pkg / "user.py").write_text(user)
    (pkg / "sub.py").write_text("def f(x):\n    return x + 1\n")
    importlib.invalidate_caches()
    mod = importlib.import_module("fp_pkg.user")
    sub = importlib.import_module("fp_pkg.sub")
    names = ("rel", "rel_from", "dotted", "plain")
    before = {n: fingerprint(getattr(mod, n)) for n in names}
    edit(pkg, "sub", "def f(x):\n    return x + 20\n")
    importlib.reload(sub)
    assert all(fingerprint(getattr(mod, n)) != before[n] for n in names)


def test_library_imports_in_a_function_body_count_name_and_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ns = run("def g(x):\n    import numpy as np\n    return np.mean(x)\n")
    before = fingerprint(ns["g"])
    assert before == fingerprint(ns["g"])
    monkeypatch.setitem(origin._versions, "numpy", "0.0-other")
    assert fingerprint(ns["g"]) != before


def test_a_module_not_imported_yet_counts_by_its_file(local_modules: Path) -> None:
    """Before the function first runs, its imported module is not loaded: it counts by its
    source file, found without importing it."""
    (local_modules / "fp_later.py").write_text(HELPERS.format(n=1, u=1))
    importlib.invalidate_caches()
    ns = run("def g(x):\n    import fp_later\n    return fp_later.f(x)\n")
    before = fingerprint(ns["g"])
    assert "fp_later" not in sys.modules
    edit(local_modules, "fp_later", HELPERS.format(n=2, u=1))
    assert fingerprint(ns["g"]) != before
    assert "fp_later" not in sys.modules


def test_a_module_used_as_a_value_counts_whole(local_modules: Path) -> None:
    """`getattr(helpers, name)`: which attributes are used is not known, so all of it counts."""
    write_module(local_modules, "fp_whole", HELPERS.format(n=1, u=1))
    ns = run("import fp_whole\ndef g(name):\n    return getattr(fp_whole, name)(1)\n")
    before = fingerprint(ns["g"])
    write_module(local_modules, "fp_whole", HELPERS.format(n=1, u=2))
    assert fingerprint(ns["g"]) != before


def test_dependency_token_of_modules(local_modules: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A library module counts by name and version, a local one by the attributes read."""
    before = dependency_token(np)
    monkeypatch.setitem(origin._versions, "numpy", "0.0-other")
    assert dependency_token(np) != before
    mod = write_module(local_modules, "fp_dep", HELPERS.format(n=1, u=1))
    token = dependency_token(mod, attributes=[("f",)])
    mod = write_module(local_modules, "fp_dep", HELPERS.format(n=1, u=2))
    assert dependency_token(mod, attributes=[("f",)]) == token
    mod = write_module(local_modules, "fp_dep", HELPERS.format(n=2, u=2))
    assert dependency_token(mod, attributes=[("f",)]) != token


def test_local_modules_inside_values_count_by_their_code(local_modules: Path) -> None:
    mod = write_module(local_modules, "fp_val", HELPERS.format(n=1, u=1))
    before = hash_value({"lib": mod})
    assert hash_value({"lib": mod}) == before
    mod = write_module(local_modules, "fp_val", HELPERS.format(n=2, u=1))
    assert hash_value({"lib": mod}) != before
    assert hash_value({"lib": np}) != hash_value({"lib": importlib.import_module("json")})


# -- stale modules: edited on disk, not reloaded ------------------------------------------------
class _NoRecord(dict[str, Any]):
    """Stands for the record of `track_imports` where a test checks modules imported before
    it: `%load_ext tore_nb` in another test of the session turned tracking on for good."""

    def __setitem__(self, key: str, value: Any) -> None:
        pass


@pytest.fixture
def untracked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(modules, "_exec_codes", _NoRecord())


@pytest.mark.usefixtures("untracked")
def test_an_edited_module_is_stale_until_reloaded(local_modules: Path) -> None:
    """Fingerprints read function source from disk: once a module is edited but not reloaded,
    keys describe code that is not running. module_is_stale says so, until a reload."""
    mod = write_module(local_modules, "fp_stale", HELPERS.format(n=1, u=1))
    assert module_is_stale(mod) is None
    edit(local_modules, "fp_stale", HELPERS.format(n=2, u=1))
    reason = module_is_stale(mod)
    assert reason is not None and reason.startswith("fp_stale:") and "inner" in reason
    assert stale_modules(["fp_stale", "json", "no.such.module"]) == [reason]
    assert reason in stale_modules()
    importlib.reload(mod)
    assert module_is_stale(mod) is None


STALE_SOURCE = HELPERS.format(n=1, u=1) + "RATE = 1\n"


@pytest.mark.parametrize(
    ("edited", "why"),
    [
        (STALE_SOURCE + "def added():\n    return 0\n", "added"),
        ("\n\n" + STALE_SOURCE, "inner"),  # the same code, further down the file
        (STALE_SOURCE.replace("RATE = 1", "RATE = 2"), "RATE"),
        (STALE_SOURCE + "syntax error(\n", "compile"),
    ],
    ids=["function-added", "code-moved", "constant-changed", "syntax-error"],
)
@pytest.mark.usefixtures("untracked")
def test_what_makes_a_module_stale(local_modules: Path, edited: str, why: str) -> None:
    """A function added, code moved (getsource reads the file at the line the loaded code
    starts on), a constant changed, a file that no longer compiles."""
    mod = write_module(local_modules, "fp_what", STALE_SOURCE)
    edit(local_modules, "fp_what", edited)
    reason = module_is_stale(mod)
    assert reason is not None and why in reason


def test_edits_that_do_not_change_code_are_not_stale(local_modules: Path) -> None:
    mod = write_module(local_modules, "fp_same", HELPERS.format(n=1, u=1))
    edit(local_modules, "fp_same", HELPERS.format(n=1, u=1) + "# a comment at the end\n\n")
    assert module_is_stale(mod) is None
    mod.counter = 5  # state set at run time is not code
    assert module_is_stale(mod) is None


def test_tracked_imports_compare_the_code_as_imported(local_modules: Path) -> None:
    """After track_imports, the module's code is recorded as it is imported: any code change
    on disk (here a module-level statement no function shows) makes it stale."""
    track_imports()
    mod = write_module(local_modules, "fp_tracked", HELPERS.format(n=1, u=1) + "x = [1]\n")
    path = str(local_modules / "fp_tracked.py")
    assert path in modules._exec_codes
    assert module_is_stale(mod) is None
    edit(local_modules, "fp_tracked", HELPERS.format(n=1, u=1) + "x = [2]\n")
    reason = module_is_stale(mod)
    assert reason is not None and "fp_tracked" in reason
    importlib.reload(mod)
    assert module_is_stale(mod) is None


def test_the_module_digest_is_the_same_tracked_or_not(
    local_modules: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    track_imports()
    mod = write_module(local_modules, "fp_digest", HELPERS.format(n=1, u=1))
    tracked = local_module_digest(mod)
    monkeypatch.delitem(modules._exec_codes, mod.__file__)
    assert local_module_digest(mod) == tracked
    other = write_module(local_modules, "fp_digest", HELPERS.format(n=2, u=1))
    assert local_module_digest(other) != tracked


def test_staleness_checks_are_memoised(local_modules: Path) -> None:
    mod = write_module(local_modules, "fp_memo", HELPERS.format(n=1, u=1))
    assert module_is_stale(mod) is None
    disk = modules._disk[mod.__file__]
    memo = modules._stale_memo["fp_memo"]
    assert module_is_stale(mod) is None
    assert modules._disk[mod.__file__] is disk and modules._stale_memo["fp_memo"] is memo


def test_library_and_notebook_modules_are_never_stale() -> None:
    assert module_is_stale(np) is None
    assert module_is_stale("__main__") is None
    assert module_is_stale("no.such.module") is None


def test_the_audit_hook_does_nothing_for_other_events() -> None:
    track_imports()
    before = dict(modules._exec_codes)
    exec(compile("y = 1", "<cell>", "exec"), {})
    modules._audit("open", ("/x", "r", 0))
    modules._audit("exec", ("not a code object",))
    assert modules._exec_codes == before


# -- determinism ----------------------------------------------------------------------------------
def test_new_parts_are_identical_across_hash_seeds() -> None:
    """Sets of functions, dicts, bound methods and objects with sets inside give the same
    digest under every PYTHONHASHSEED."""
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
        "def f(x):\n    import json\n    return [g(x) for g in S], D, bound(x), {'p': 1}.get\n"
        "''', ns)\n"
        "print(fingerprint(ns['f']))\n"
    )
    digests = outputs_under_hash_seeds(code, ("1", "2", "3", "random"))
    assert len(digests) == 1


def test_a_module_imported_in_an_enclosing_function_counts(local_modules: Path) -> None:
    """`def make(): import helpers; def inner(): return helpers.f()`: inner reads the module from
    a closure cell, where a module counted by name only when local."""
    write_module(local_modules, "fp_outer", HELPERS.format(n=1, u=1))
    ns = run(
        "def make():\n    import fp_outer\n"
        "    def inner(x):\n        return fp_outer.f(x)\n    return inner\n"
    )
    inner = ns["make"]()
    before = fingerprint(inner)
    write_module(local_modules, "fp_outer", HELPERS.format(n=1, u=2))
    assert fingerprint(inner) == before
    write_module(local_modules, "fp_outer", HELPERS.format(n=2, u=2))
    assert fingerprint(inner) != before


# -- callable objects ---------------------------------------------------------------------------
def test_library_callable_objects_count_by_their_state() -> None:
    """A library's code counts by its version, but a callable object of its is configured by
    its attributes: np.poly1d([1, 2]) is not np.poly1d([1, 3]), as a stage or in a partial."""
    assert fingerprint(np.poly1d([1, 2])) == fingerprint(np.poly1d([1, 2]))
    assert fingerprint(np.poly1d([1, 2])) != fingerprint(np.poly1d([1, 3]))
    part = functools.partial
    assert fingerprint(part(np.poly1d([1, 2]))) != fingerprint(part(np.poly1d([1, 3])))
    ns = run("def a(x):\n    return x + 1\ndef b(x):\n    return x + 2\n")
    assert fingerprint(np.vectorize(ns["a"])) != fingerprint(np.vectorize(ns["b"]))


class _Singleton:
    """A library's callable singleton (pickled by name) without attributes of its own."""

    __slots__ = ()
    __module__ = "json"  # a library's

    def __call__(self, x: Any) -> Any:
        return x

    def __reduce__(self) -> str:
        return "singleton"


def test_a_library_callable_hashed_by_name_does_not_recurse() -> None:
    assert fingerprint(_Singleton()) == fingerprint(_Singleton())
    assert hash_value([_Singleton()]) == hash_value([_Singleton()])


def test_a_custom_fingerprint_string_is_the_owners_word() -> None:
    ns = run(
        "class Model:\n    def __init__(self, tag):\n        self.__tore_fingerprint__ = tag\n"
        "    def __call__(self, x):\n        return x\n"
    )
    assert fingerprint(ns["Model"]("v1")) == fingerprint(ns["Model"]("v1"))
    assert fingerprint(ns["Model"]("v1")) != fingerprint(ns["Model"]("v2"))


@pytest.mark.parametrize(
    "module", ["fingerprint", "code_origin", "code_reads", "code_modules", "code_effects"]
)
def test_doctests(module: str) -> None:
    found = importlib.import_module(f"tore_nb.{module}")
    result = doctest.testmod(found, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
