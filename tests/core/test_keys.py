"""generate_key and hash_value: deterministic, content-based, collision-resistant in structure."""

from __future__ import annotations

import collections
import copy
import dataclasses
import datetime as dt
import enum
import functools
import pickle
import textwrap
import types
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as npst

from tests.support import outputs_under_hash_seeds
from tore_nb.keys import generate_key, hash_value, make_key

SNIPPET = """
import numpy as np, pandas as pd
from tore_nb.keys import generate_key, hash_value
print(generate_key("doc.pdf", {"b": {1, 2, 3}, "a": [1.5, None]}, dpi=150),
      hash_value(np.arange(1000)), hash_value(pd.DataFrame({"x": [1, 2], "s": ["a", "b"]})),
      hash_value(frozenset({"x", "y", "z"})))
"""


def test_deterministic_across_processes_and_hash_seeds() -> None:
    outs = outputs_under_hash_seeds(SNIPPET, ("0", "1", "12345"))
    assert len(outs) == 1


def test_readable_prefix_and_digest() -> None:
    k = generate_key("doc.pdf", dpi=150)
    ns, ver, name, kw, digest = k.split(":")
    assert (ns, ver, name, kw) == ("tore_nb", "v1", "doc.pdf", "dpi=150")
    assert len(digest) == 32


def test_no_structural_collisions() -> None:
    assert generate_key("a:b") != generate_key("a", "b")
    assert generate_key([1, 2]) != generate_key((1, 2))
    assert generate_key(1) != generate_key("1") != generate_key(1.0)
    assert generate_key(True) != generate_key(1)
    assert generate_key(x=1) != generate_key(1)
    assert hash_value(["ab", "c"]) != hash_value(["a", "bc"])


def test_long_keys_become_digests() -> None:
    k = generate_key("x" * 1000)
    assert k.startswith("tore_nb:v1:h:") and len(k) < 60


def test_namespace_and_version() -> None:
    assert make_key(("a",), {}, namespace="ns", version=2).startswith("ns:v2:a:")
    assert make_key(("a",), {}, namespace="ns") != make_key(("a",), {}, namespace="other")


def test_sets_and_keyword_order_do_not_count() -> None:
    assert hash_value({3, 1, 2}) == hash_value({1, 2, 3})
    assert hash_value({1, 2}) != hash_value(frozenset({1, 2}))
    assert generate_key(a=1, b=2) == generate_key(b=2, a=1)
    assert make_key((), {"a": 1, "b": 2}) == make_key((), {"b": 2, "a": 1})


class Attrs:
    def __init__(self, first: str) -> None:
        if first == "a":
            self.a, self.b = 1, 2
        else:
            self.b, self.a = 2, 1


@dataclasses.dataclass
class Columns:
    spec: dict[str, int]


def test_dict_order_counts() -> None:
    """A dict is hashed in insertion order: code sees that order (a DataFrame built from it takes
    its column order from it), so {"a": 1, "b": 2} and {"b": 2, "a": 1} may give different
    results. So for dict subclasses, mapping proxies, an object's __dict__ and dicts in
    dataclass fields."""
    ab, ba = {"a": [1], "b": [2]}, {"b": [2], "a": [1]}
    assert list(pd.DataFrame(ab).columns) != list(pd.DataFrame(ba).columns)
    assert hash_value(ab) != hash_value(ba)
    assert hash_value(ab) == hash_value({"a": [1], "b": [2]})
    assert hash_value(collections.defaultdict(int, ab)) != hash_value(
        collections.defaultdict(int, ba)
    )
    assert hash_value(collections.OrderedDict(ab)) != hash_value(collections.OrderedDict(ba))
    assert hash_value(types.MappingProxyType(ab)) != hash_value(types.MappingProxyType(ba))
    assert hash_value(types.MappingProxyType(ab)) == hash_value(types.MappingProxyType(dict(ab)))
    assert hash_value(Attrs("a")) != hash_value(Attrs("b"))
    assert hash_value(Columns({"a": 1, "b": 2})) != hash_value(Columns({"b": 2, "a": 1}))


def test_numpy_equal_data_equal_keys() -> None:
    a = np.arange(12, dtype="i8").reshape(3, 4)
    assert hash_value(a) == hash_value(a.copy())
    assert hash_value(a) == hash_value(np.ascontiguousarray(a.T).T.copy(order="C"))
    assert hash_value(a.T) == hash_value(np.ascontiguousarray(a.T))  # layout does not matter
    assert hash_value(a) != hash_value(a.astype("i4"))  # dtype does
    assert hash_value(a) != hash_value(a.reshape(4, 3))  # shape does
    b = a.copy()
    b[0, 0] = 99
    assert hash_value(a) != hash_value(b)
    assert hash_value(np.float64(1.5)) == hash_value(np.float64(1.5))
    assert hash_value(np.array(["a", None], dtype=object)) == hash_value(
        np.array(["a", None], dtype=object)
    )


def test_pandas_equal_data_equal_keys() -> None:
    df = pd.DataFrame(
        {
            "x": np.arange(1000),
            "s": [f"r{i}" for i in range(1000)],
            "c": pd.Categorical(["a", "b"] * 500),
        }
    )
    assert hash_value(df) == hash_value(df.copy(deep=True))
    changed = df.copy()
    changed.loc[500, "s"] = "changed"
    assert hash_value(df) != hash_value(changed)
    assert hash_value(df) != hash_value(df.rename(columns={"x": "y"}))
    assert hash_value(df) != hash_value(df.set_index("x"))
    assert hash_value(df["x"]) == hash_value(df["x"].copy())
    assert hash_value(pd.Index([1, 2])) != hash_value(pd.Index([2, 1]))


class Color(enum.Enum):
    RED = 1


@dataclasses.dataclass(frozen=True)
class Params:
    dpi: int
    lang: str


class Plain:
    def __init__(self, x: int) -> None:
        self.x = x


def test_other_types() -> None:
    assert hash_value(Params(150, "en")) == hash_value(Params(150, "en"))
    assert hash_value(Params(150, "en")) != hash_value(Params(300, "en"))
    assert hash_value(Color.RED) == hash_value(Color.RED)
    assert hash_value(Path("/a/b")) == hash_value(Path("/a/b"))
    assert hash_value(dt.date(2026, 1, 1)) != hash_value(dt.date(2026, 1, 2))
    assert hash_value(Plain(1)) == hash_value(Plain(1)) != hash_value(Plain(2))
    cyclic: list[object] = []
    cyclic.append(cyclic)
    assert hash_value(cyclic) == hash_value(cyclic)


class ListState:
    """Pickles to a fresh list each time: a temporary the hasher must not confuse with another."""

    def __init__(self, v: int) -> None:
        self.v = v

    def __getstate__(self) -> list[int]:
        return [self.v]

    def __setstate__(self, state: list[int]) -> None:
        self.v = state[0]


def test_temporaries_made_while_hashing_are_not_back_references() -> None:
    # A temporary freed mid-hash can hand its id() to the next one; were the memo to forget
    # it, the second would hash as a back-reference to the first and differing values collide.
    for _ in range(20):
        assert hash_value([ListState(1), ListState(2)]) != hash_value([ListState(1), ListState(3)])
    df = pd.DataFrame({"a": range(5), "b": list("abcde")})
    assert len({hash_value(df.copy()) for _ in range(50)} | {hash_value(df)}) == 1


def test_unhashable_raises_type_error() -> None:
    import threading

    with pytest.raises(TypeError, match="cannot content-hash"):
        hash_value(threading.Lock())


def test_datetime_data_hashes_by_content() -> None:
    dates = pd.Series(pd.date_range("2020-01-01", periods=3))
    assert hash_value(dates) == hash_value(dates.copy())
    assert hash_value(dates) != hash_value(dates + pd.Timedelta(days=1))
    assert hash_value(np.datetime64("2020-01-01")) != hash_value(np.datetime64("2020-01-02"))
    assert hash_value(pd.DataFrame({"d": dates, "t": dates.diff()})) == hash_value(
        pd.DataFrame({"d": dates.copy(), "t": dates.diff()})
    )
    paris = pd.Timestamp("2020-01-01", tz="Europe/Paris")
    assert hash_value(paris) != hash_value(pd.Timestamp("2020-01-01", tz="Etc/GMT-1"))


class Box:
    def __init__(self, v: int) -> None:
        self.v = v


def test_object_columns_hash_each_element() -> None:
    from decimal import Decimal

    assert hash_value(pd.DataFrame({"c": [[1, 2], [3]]})) != hash_value(
        pd.DataFrame({"c": [[1, 2], [4]]})
    )
    assert hash_value(pd.Series([1, "a"])) != hash_value(pd.Series([Decimal(1), "a"]))
    assert hash_value(pd.Series([b"x", "y"])) != hash_value(pd.Series(["x", b"y"]))
    assert hash_value(pd.Series(["x", "y"])) != hash_value(pd.Series([b"x", b"y"]))
    box = Box(1)
    column = pd.Series([box], dtype=object)
    before = hash_value(column)
    box.v = 2  # the default repr (an address) did not change; the content did
    assert hash_value(column) != before
    assert hash_value(pd.Series([{"b", "a"}])) == hash_value(pd.Series([{"a", "b"}]))
    assert hash_value(pd.Series(["x", None])) == hash_value(pd.Series(["x", None]))


def test_functions_methods_and_modules_are_told_apart() -> None:
    import collections
    import re

    assert hash_value([lambda x: x + 1]) != hash_value([lambda x: x + 2])
    assert hash_value({1: "a"}.get) != hash_value({1: "b"}.get)
    assert hash_value({"lib": np}) != hash_value({"lib": pd})
    assert hash_value(re.compile("a")) != hash_value(re.compile("b"))
    point = collections.namedtuple("point", "x y")
    assert hash_value(point(1, 2)) != hash_value([1, 2]) != hash_value((1, 2))
    assert hash_value(collections.defaultdict(list)) != hash_value(collections.defaultdict(int))
    ab, ba = collections.OrderedDict(a=1, b=2), collections.OrderedDict(b=2, a=1)
    assert hash_value(ab) != hash_value(ba)
    assert hash_value(np.ma.array([1, 2, 3], mask=[0, 1, 0])) != hash_value(np.array([1, 2, 3]))


def test_structured_arrays_ignore_their_padding() -> None:
    aligned = np.dtype([("a", "u1"), ("b", "f8")], align=True)  # 7 padding bytes after "a"
    digests = set()
    for fill in (0x00, 0xFF):
        a = np.full(3, fill, dtype="u1").repeat(aligned.itemsize).view(aligned)
        a["a"], a["b"] = 1, 2.0
        digests.add(hash_value(a))
    assert len(digests) == 1
    b = np.zeros(3, dtype=aligned)
    b["a"], b["b"] = 1, 2.5
    assert hash_value(b) not in digests


@dataclasses.dataclass
class WithLock:
    name: str
    lock: object

    def __tore_hash__(self) -> str:
        return self.name


def test_tore_hash_and_failures_are_type_errors() -> None:
    import threading

    assert hash_value(WithLock("a", threading.Lock())) == hash_value(WithLock("a", object()))
    deep: list[object] = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(TypeError, match="cannot content-hash"):
        hash_value(deep)


def test_set_subclasses_do_not_depend_on_the_hash_seed() -> None:
    code = (
        "from tore_nb.keys import hash_value\n"
        "class Tags(frozenset): pass\n"
        "print(hash_value(Tags(['alpha', 'beta', 'gamma', 'delta'])))"
    )
    outs = outputs_under_hash_seeds(code, ("1", "2", "3"))
    assert len(outs) == 1


# -- functions inside values count by their full fingerprint ---------------------------------------
def run(source: str) -> dict[str, Any]:
    """Runs source as notebook code (module `__main__`: user code) in a fresh namespace."""
    ns: dict[str, Any] = {"__name__": "__main__"}
    exec(textwrap.dedent(source), ns)
    return ns


HELD = """
import dataclasses, functools
RATE = {rate}
def helper(x):
    return x + {n}
def step(x):
    return helper(x) * RATE
@dataclasses.dataclass
class Config:
    fn: object
class Pipe:
    def __init__(self, steps):
        self.steps = steps
    def run(self, x):
        for s in self.steps:
            x = s(x)
        return x
class Model:
    def predict(self, x):
        return helper(x)
config = Config(step)
partial = functools.partial(step, 1)
bound = Model().predict
in_list = [lambda x: helper(x)]
in_dict = {{"f": lambda x: step(x)}}
pipe = Pipe([step])
model = Model()
def with_default(x, f=step):
    return f(x)
def make():
    k = {n}
    def closure(x):
        return x + k
    return closure
closure = [make()]
"""
# name of the value -> whether it reaches `step`, which reads the global RATE
HOLDERS = {
    "config": True,
    "partial": True,
    "in_dict": True,
    "pipe": True,
    "with_default": True,
    "bound": False,
    "in_list": False,
    "model": False,
    "closure": False,
}


@pytest.mark.parametrize(("name", "reads_rate"), HOLDERS.items())
def test_functions_inside_values_count_the_helpers_and_globals_they_read(
    name: str, reads_rate: bool
) -> None:
    """A dataclass config holding a function, a partial, a bound method, a lambda in a list or
    a dict, a pipeline object, a default argument, a closure, an object whose method calls a
    helper: hash_value counted functions by their own bytecode only, so editing the helper they
    call or the global they read gave the same digest, and a cached result of the old code was
    served."""
    base = hash_value(run(HELD.format(n=1, rate=2))[name])
    assert base == hash_value(run(HELD.format(n=1, rate=2))[name])
    assert base != hash_value(run(HELD.format(n=5, rate=2))[name])
    assert (base != hash_value(run(HELD.format(n=1, rate=3))[name])) == reads_rate


def test_sklearn_objects_holding_user_functions_count_their_code() -> None:
    """An sklearn Pipeline or FunctionTransformer(func=helper) held in a variable: the helper's
    callees count."""
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    def build(n: int) -> Any:
        ns = run(f"def inner(x):\n    return x + {n}\ndef helper(x):\n    return inner(x)\n")
        return Pipeline([("f", FunctionTransformer(func=ns["helper"])), ("s", StandardScaler())])

    assert hash_value(build(1)) == hash_value(build(1))
    assert hash_value(build(1)) != hash_value(build(2))


def test_library_callables_count_by_name_and_version(monkeypatch: pytest.MonkeyPatch) -> None:
    import tore_nb.code_origin as origin

    assert hash_value([np.mean, np.add, len]) == hash_value([np.mean, np.add, len])
    assert hash_value(np.mean) != hash_value(np.median)
    assert hash_value(np.add) != hash_value(np.subtract)
    before = hash_value([np.mean, np.add, np.linalg.norm])
    monkeypatch.setitem(origin._versions, "numpy", "0.0-other")
    assert hash_value([np.mean]) != before
    assert hash_value([np.mean, np.add, np.linalg.norm]) != before


def test_values_that_hold_the_function_reading_them_do_not_recurse() -> None:
    """A registry read by a function it holds, an object holding its own bound method, a set
    holding an object that holds the set: cycles across the nested hashers end."""
    src = """
    class Registry:
        def __init__(self):
            self.fns = []
            self.callback = self.size
        def size(self):
            return len(self.fns)
    registry = Registry()
    def f(x):
        return registry.size() + x
    registry.fns.append(f)
    class Node:
        pass
    node = Node()
    node.peers = {{node}}
    node.k = {k}
    """
    a, b = run(src.format(k=1)), run(src.format(k=1))
    for name in ("registry", "f", "node"):
        assert hash_value(a[name]) == hash_value(b[name])
    assert hash_value(a["node"]) != hash_value(run(src.format(k=2))["node"])


IMPORT_ORDER = """
import sys
if sys.argv[1] == "fingerprint-first":
    import tore_nb.fingerprint
from tore_nb.keys import hash_value
ready = "tore_nb.fingerprint" in sys.modules  # before anything is hashed
ns = {"__name__": "__main__"}
exec("LIMIT = 3\\ndef helper(x):\\n    return x + LIMIT\\ndef f(x):\\n    return helper(x)\\n", ns)
print(hash_value([ns["f"], {"step": ns["helper"]}]), ready)
"""


def test_a_function_value_has_one_digest_whatever_was_imported_first() -> None:
    """keys cannot import the fingerprint (the fingerprint hashes values with keys): a process
    that only imports hash_value gets the same digests as one that imported the fingerprint
    first, since importing the package registers it before anything is hashed."""
    first = outputs_under_hash_seeds(IMPORT_ORDER, ("1", "2"), "fingerprint-first")
    only_keys = outputs_under_hash_seeds(IMPORT_ORDER, ("3",), "keys-only")
    assert len(first) == 1 and first == only_keys
    assert first.pop().split()[1] == "True"


def test_keys_never_imports_the_fingerprint() -> None:
    import ast

    import tore_nb.keys

    tree = ast.parse(Path(str(tore_nb.keys.__file__)).read_text(encoding="utf-8"))
    imported = [
        node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
    ] + [a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names]
    assert not [m for m in imported if "fingerprint" in m or m.startswith("tore_nb")]
    assert "from . import" not in Path(str(tore_nb.keys.__file__)).read_text(encoding="utf-8")


def test_without_code_hooks_code_is_not_hashed_some_other_way(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A missing hook is an error, never a weaker digest that would differ by import order."""
    import tore_nb.keys

    monkeypatch.setattr(tore_nb.keys, "_hooks", None)
    assert hash_value([1, "a"]) == hash_value([1, "a"])  # values without code need none
    with pytest.raises(RuntimeError, match="code hooks"):
        hash_value([len])


def test_values_with_code_are_identical_across_hash_seeds() -> None:
    code = (
        "import functools\n"
        "from tore_nb.keys import hash_value\n"
        "ns = {'__name__': '__main__'}\n"
        "exec('''\n"
        "def h(x):\n    return x\n"
        "class Reg:\n    def __init__(self):\n        self.fns = {h, len}\n"
        "        self.cb = self.run\n    def run(self):\n        return 1\n"
        "reg = Reg()\n"
        "def f(x):\n    return reg.run() + h(x)\n"
        "reg.fns.add(f)\n"
        "import enum, dataclasses, collections\n"
        "class Color(enum.Enum):\n    RED = 1\n    BLUE = 2\n"
        "@dataclasses.dataclass\nclass Cfg:\n    fn: object\n    tags: frozenset\n"
        "P = collections.namedtuple('P', 'x y')\n"
        "''', ns)\n"
        "print(hash_value([ns['reg'], functools.partial(ns['f'], 1), {'b': ns['h'], 'a': 1},\n"
        "    ns['Color'].RED, ns['Cfg'](ns['f'], frozenset('abc')), ns['P'](1, 2)]))\n"
    )
    assert len(outputs_under_hash_seeds(code, ("1", "2", "3", "random"))) == 1


# -- round trips keep their digest ----------------------------------------------------------------
def assert_round_trips(value: Any) -> None:
    expected = hash_value(value)
    assert hash_value(pickle.loads(pickle.dumps(value, 5))) == expected
    assert hash_value(copy.deepcopy(value)) == expected


def test_sklearn_bunch_round_trips() -> None:
    """A Bunch from load_digits hashed differently once restored: a fresh one carries an empty
    `_deprecated_key_to_warnings` in its __dict__, which Bunch.__setstate__ drops on load. A
    container subclass that defines __setstate__ but not __getstate__ counts by its items."""
    from sklearn.datasets import load_digits, load_iris

    for bunch in (load_iris(), load_digits()):
        assert_round_trips(bunch)
    assert hash_value(load_iris()) != hash_value(load_digits())


def test_datetime_index_freq_counts_and_round_trips() -> None:
    """The freq of a DatetimeIndex was not hashed, though `shift` and arithmetic follow it."""
    daily = pd.date_range("2020-01-01", periods=4, freq="D")
    assert daily.equals(pd.DatetimeIndex(list(daily)))  # equal values, but no freq
    assert hash_value(daily) != hash_value(pd.DatetimeIndex(list(daily)))
    business = pd.bdate_range("2021-01-01", periods=3, freq="C")
    later_holiday = pd.DatetimeIndex(
        business, freq=pd.offsets.CustomBusinessDay(holidays=["2022-06-01"])
    )
    assert business.freqstr == later_holiday.freqstr  # "C": the calendar is in the offset
    assert hash_value(business) != hash_value(later_holiday)
    frame = pd.DataFrame({"x": range(4)}, index=daily)
    for value in (daily, pd.Series(range(4), index=daily), frame):
        assert_round_trips(value)
    assert_round_trips(pd.timedelta_range("1D", periods=3, freq="h"))


def test_series_attrs_count() -> None:
    s = pd.Series([1, 2])
    t = s.copy()
    t.attrs["unit"] = "m"
    assert hash_value(s) != hash_value(t)
    assert_round_trips(t)


# -- property: a pickle or a deep copy of a value has the value's digest ---------------------------
class Shade(enum.Enum):
    LIGHT = "light"
    DARK = "dark"


@dataclasses.dataclass
class Record:
    name: str
    values: Any


Pair = collections.namedtuple("Pair", "left right")

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.complex_numbers(allow_nan=False),
    st.text(max_size=8),
    st.binary(max_size=8),
    st.decimals(allow_nan=True),
    st.fractions(),
    st.datetimes(timezones=st.sampled_from([None, dt.UTC, dt.timezone(dt.timedelta(hours=5))])),
    st.dates(),
    st.timedeltas(),
    st.sampled_from(Shade),
    st.uuids(),
)
_keys = st.one_of(st.text(max_size=5), st.integers(), st.tuples(st.integers(), st.text(max_size=3)))


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=4),
        st.tuples(children, children),
        st.dictionaries(_keys, children, max_size=4),
        st.dictionaries(_keys, children, max_size=4).map(collections.OrderedDict),
        st.dictionaries(_keys, children, max_size=4).map(
            lambda d: collections.defaultdict(list, d)
        ),
        st.sets(_keys, max_size=4),
        st.frozensets(st.integers(), max_size=4),
        st.builds(Record, st.text(max_size=4), children),
        st.builds(Pair, children, children),
    )


_stdlib = st.recursive(_scalars, _containers, max_leaves=12)

_dtypes = st.one_of(
    npst.integer_dtypes(endianness="="),
    npst.unsigned_integer_dtypes(endianness="="),
    npst.floating_dtypes(endianness="="),
    npst.complex_number_dtypes(endianness="="),
    npst.boolean_dtypes(),
    npst.datetime64_dtypes(endianness="="),
    npst.timedelta64_dtypes(endianness="="),
    npst.unicode_string_dtypes(endianness="=", max_len=4),
    npst.byte_string_dtypes(max_len=4),
    st.just(np.dtype([("a", "u1"), ("b", "f8")], align=True)),
)


@st.composite
def _arrays(draw: st.DrawFn) -> Any:
    if draw(st.booleans()):
        shape = draw(npst.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
        a = draw(npst.arrays(draw(_dtypes), shape))
    else:  # object arrays of mixed Python values
        items = draw(st.lists(st.one_of(st.none(), st.integers(), st.text(max_size=3)), max_size=6))
        a = np.empty(len(items), dtype=object)
        a[:] = items
    if a.ndim >= 1 and draw(st.booleans()):
        a = a[::2]  # not contiguous
    if a.ndim >= 2 and draw(st.booleans()):
        a = a.T
    return a


@st.composite
def _pandas(draw: st.DrawFn) -> Any:
    n = draw(st.integers(0, 5))
    ints = draw(st.lists(st.integers(-(2**40), 2**40), min_size=n, max_size=n))
    labels = draw(st.lists(st.sampled_from(["x", "y", "z"]), min_size=n, max_size=n))
    kind = draw(
        st.sampled_from(["datetime", "tz", "timedelta", "category", "multi", "range", "ints"])
    )
    freq = draw(st.sampled_from(["D", "h", "2min", "W-SUN", "MS"]))
    if kind == "datetime":
        index: Any = pd.date_range("2021-03-01", periods=n, freq=freq)
    elif kind == "tz":
        index = pd.date_range("2021-03-27", periods=n, freq="h", tz="Europe/Paris")
    elif kind == "timedelta":
        index = pd.timedelta_range("1D", periods=n, freq="h")
    elif kind == "category":
        index = pd.CategoricalIndex(labels, categories=["z", "y", "x"], ordered=draw(st.booleans()))
    elif kind == "multi":
        index = pd.MultiIndex.from_arrays([labels, ints], names=["label", None])
    elif kind == "range":
        index = pd.RangeIndex(n)
    else:
        index = pd.Index(ints, name="i")
    masked = [None if i % 3 == 0 else v for i, v in enumerate(ints)]
    columns = {
        "ints": pd.array(ints, dtype="int64"),
        "nullable": pd.array(masked, dtype="Int64"),
        "text": pd.array(labels, dtype=draw(st.sampled_from(["object", "string", "category"]))),
        "flags": pd.array([None if v is None else v > 0 for v in masked], dtype="boolean"),
        "when": pd.to_datetime(ints, unit="s", utc=draw(st.booleans())),
    }
    order = draw(st.permutations(list(columns)))
    frame = pd.DataFrame({c: columns[c] for c in order}, index=index)
    if draw(st.booleans()):
        frame.attrs = {"source": draw(st.text(max_size=4)), "n": n}
    shape = draw(st.sampled_from(["frame", "series", "index"]))
    if shape == "series":
        return frame[order[0]]
    return frame.index if shape == "index" else frame


@functools.cache
def _sklearn_values() -> tuple[Any, ...]:
    from sklearn.datasets import load_digits, load_iris
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    iris = load_iris()
    return (
        iris,
        load_digits(),
        LinearRegression().fit(iris.data, iris.target),
        StandardScaler().fit(iris.data),
        Pipeline([("log", FunctionTransformer(np.log1p)), ("scale", StandardScaler())]).fit(
            iris.data
        ),
    )


_values = st.one_of(
    _stdlib,
    _arrays(),
    _pandas(),
    st.integers(0, 4).map(lambda i: _sklearn_values()[i]),
    st.lists(st.one_of(_stdlib, _arrays(), _pandas()), max_size=3),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_values)
def test_pickle_and_deepcopy_keep_the_digest(value: Any) -> None:
    """A value restored from a pickle (what the cache stores) and a deep copy hash like the
    value: numpy arrays of any dtype and layout, pandas objects with their index, freq and
    attrs, stdlib containers and scalars, sklearn datasets and fitted estimators."""
    assert_round_trips(value)
