"""generate_key and hash_value: deterministic, content-based, collision-resistant in structure."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tore_nb.keys import generate_key, hash_value, make_key

from .conftest import outputs_under_hash_seeds

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


def test_order_independent_containers() -> None:
    assert hash_value({"a": 1, "b": 2}) == hash_value({"b": 2, "a": 1})
    assert hash_value({3, 1, 2}) == hash_value({1, 2, 3})
    assert hash_value({1, 2}) != hash_value(frozenset({1, 2}))
    assert generate_key(a=1, b=2) == generate_key(b=2, a=1)


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
