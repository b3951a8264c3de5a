"""@cached functions: keys from code fingerprints and arguments, single flight, info and clear."""

from __future__ import annotations

import doctest
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import tore_nb
import tore_nb.fingerprint
import tore_nb.memo
import tore_nb.tiered
from tests.support import SOURCE_ROOT, outputs_under_hash_seeds, write_module
from tore_nb.cells import CacheWarning
from tore_nb.config import CacheConfig
from tore_nb.memo import CachedFunction, cached
from tore_nb.tiered import MultiLevelCache

SECRET = "tore-nb-test-secret-0123456789abcdef"


@pytest.fixture
def cache(tmp_path: Path) -> MultiLevelCache:
    return MultiLevelCache(CacheConfig.embedded(tmp_path / "cache"), secret=SECRET.encode())


def test_hit_miss_info_and_clear(cache: MultiLevelCache) -> None:
    calls: list[int] = []

    @cached(cache=cache)
    def slow_square(x: int) -> int:
        calls.append(x)
        time.sleep(0.02)
        return x * x

    assert [slow_square(3), slow_square(3), slow_square(4)] == [9, 9, 16]
    assert calls == [3, 4]
    info = slow_square.cache_info()
    assert (info.hits, info.misses, info.entries) == (1, 2, 2)
    assert info.saved_seconds > 0.01
    assert slow_square.cache_clear() == 2
    assert slow_square.cache_info() == (0, 0, 0, 0.0)
    slow_square(3)
    assert calls == [3, 4, 3]


def test_bare_decorator_uses_the_default_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tore_nb.tiered, "_default", None)
    tore_nb.get_cache(CacheConfig.embedded(tmp_path / "default"))

    @cached
    def inc(x: int) -> int:
        return x + 1

    assert isinstance(inc, CachedFunction)
    assert inc(1) == inc(1) == 2
    assert inc.cache is tore_nb.get_cache()
    assert inc.cache_info().hits == 1


def test_key_normalises_arguments_and_ignores(cache: MultiLevelCache) -> None:
    @cached(cache=cache, ignore=["log"])
    def f(a: int, b: int = 2, *, log: Any = None) -> int:
        return a + b

    k = f.__cache_key__
    assert k(1) == k(1, 2) == k(a=1, b=2) == k(1, log=print)
    assert k(1) != k(1, 3)
    assert k(1).startswith("tcache:fn:")
    with pytest.raises(ValueError, match="nope"):
        cached(ignore=["nope"])(lambda a: a)


def test_array_arguments_key_by_content(cache: MultiLevelCache) -> None:
    @cached(cache=cache)
    def total(a: np.ndarray) -> float:
        return float(a.sum())

    a = np.arange(1000.0)
    assert total.__cache_key__(a) == total.__cache_key__(a.copy())
    b = a.copy()
    b[3] = 0
    assert total.__cache_key__(a) != total.__cache_key__(b)
    assert total(a) == total(a.copy())
    assert total.cache_info().hits == 1


def test_code_edits_invalidate_and_comment_edits_do_not(
    cache: MultiLevelCache, local_modules: Path
) -> None:
    v1 = """
        from tore_nb.memo import cached
        def helper(x):
            return x + 1
        @cached
        def f(x):
            return helper(x) * 2
    """
    mod = write_module(local_modules, "memo_mod_a", v1)
    key1 = mod.f.__cache_key__(1)
    mod = write_module(
        local_modules, "memo_mod_a", v1.replace("return x + 1", "return x + 1  # one")
    )
    assert mod.f.__cache_key__(1) == key1
    mod = write_module(local_modules, "memo_mod_a", v1.replace("return x + 1", "return x + 2"))
    assert mod.f.__cache_key__(1) != key1


def test_helpers_in_other_local_modules_count(local_modules: Path) -> None:
    write_module(local_modules, "memo_helpers_b", "def scale(v):\n    return v * 10\n")
    mod = write_module(
        local_modules,
        "memo_user_b",
        """
        import memo_helpers_b
        from tore_nb.memo import cached
        @cached
        def f(x):
            return memo_helpers_b.scale(x)
    """,
    )
    key1 = mod.f.__cache_key__(1)
    write_module(local_modules, "memo_helpers_b", "def scale(v):\n    return v * 11\n")
    assert mod.f.__cache_key__(1) != key1
    assert tore_nb.fingerprint.is_local_module("memo_helpers_b")
    assert not tore_nb.fingerprint.is_local_module("numpy")


def test_global_constants_count(cache: MultiLevelCache) -> None:
    ns: dict[str, Any] = {"cached": cached, "cache": cache, "__name__": "memo_ns"}
    exec("RATE = 2\n@cached(cache=cache)\ndef f(x):\n    return x * RATE", ns)
    k1 = ns["f"].__cache_key__(1)
    ns["RATE"] = 3
    assert ns["f"].__cache_key__(1) != k1
    assert ns["f"](1) == 3


def test_calling_another_cached_function_folds_in_its_code(cache: MultiLevelCache) -> None:
    ns: dict[str, Any] = {"cached": cached, "cache": cache}
    exec(
        "@cached(cache=cache)\ndef inner(x):\n    return x\n"
        "@cached(cache=cache)\ndef outer(x):\n    return inner(x)",
        ns,
    )
    k1 = ns["outer"].__cache_key__(1)
    exec("@cached(cache=cache)\ndef inner(x):\n    return -x", ns)
    assert ns["outer"].__cache_key__(1) != k1
    assert ns["outer"](1) == -1


def test_exceptions_are_not_cached(cache: MultiLevelCache) -> None:
    calls: list[int] = []

    @cached(cache=cache)
    def boom(x: int) -> int:
        calls.append(x)
        raise ValueError(x)

    for _ in range(2):
        with pytest.raises(ValueError):
            boom(1)
    assert calls == [1, 1]


def test_unpicklable_results_are_returned_and_not_cached(
    cache: MultiLevelCache, caplog: pytest.LogCaptureFixture
) -> None:
    @cached(cache=cache)
    def make_lock(n: int) -> Any:
        return threading.Lock()

    a, b = make_lock(1), make_lock(1)
    assert a is not b
    assert make_lock.cache_info().misses == 2
    assert "not cached" in caplog.text


def test_unhashable_arguments_run_uncached_with_one_warning(cache: MultiLevelCache) -> None:
    @cached(cache=cache)
    def locked(lock: Any) -> bool:
        return bool(lock.locked())

    with pytest.warns(CacheWarning, match="locked called uncached"):
        assert locked(threading.Lock()) is False
    assert locked(threading.Lock()) is False  # the warning is shown once
    assert locked.cache_info().misses == 0


def test_wrong_arguments_raise_the_functions_own_error(cache: MultiLevelCache) -> None:
    @cached(cache=cache)
    def one(x: int) -> int:
        return x

    with pytest.raises(TypeError, match="unexpected keyword"):
        one(y=1)  # type: ignore[call-arg]


def test_methods_and_copies(cache: MultiLevelCache) -> None:
    class Model:
        def __init__(self, k: int) -> None:
            self.k = k

        @cached(cache=cache)  # copies by default: appending to a result is harmless
        def predict(self, x: int) -> list[int]:
            return [x * self.k]

    m = Model(3)
    first = m.predict(2)
    first.append(99)
    assert m.predict(2) == [6]
    assert Model(4).predict(2) == [8]


def test_threads_compute_once(cache: MultiLevelCache) -> None:
    calls: list[int] = []

    @cached(cache=cache)
    def slow(x: int) -> int:
        calls.append(x)
        time.sleep(0.2)
        return x

    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(slow(7))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [7] * 8 and calls == [7]
    info = slow.cache_info()
    assert (info.hits, info.misses) == (7, 1)


def test_keys_are_identical_across_hash_seeds_and_processes(local_modules: Path) -> None:
    # (the key does not touch the cache, so no default cache is built here)
    write_module(
        local_modules,
        "memo_seed_c",
        """
        from tore_nb.memo import cached
        TABLE = {"b": {1, 2}, "a": (1.5, "x")}
        @cached
        def f(x, opts=None):
            return sorted(TABLE) + [x]
    """,
    )
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import memo_seed_c\n"
        "print(memo_seed_c.f.__cache_key__({'k': {3, 1}}, opts=[1.0, None]))"
    )
    keys = outputs_under_hash_seeds(code, ("0", "1", "random"), str(local_modules))
    assert len(keys) == 1 and keys.pop().startswith("tcache:fn:memo_seed_c.f:")


def test_cached_functions_pickle_by_reference(local_modules: Path) -> None:
    import pickle

    mod = write_module(
        local_modules,
        "memo_pickle_d",
        "from tore_nb.memo import cached\n@cached\ndef f(x):\n    return x\n",
    )
    assert pickle.loads(pickle.dumps(mod.f)) is mod.f


_WORKER = """
import os, sys, time
sys.path.insert(0, sys.argv[1])
from pathlib import Path
import tore_nb
from tore_nb.config import CacheConfig
tore_nb.get_cache(CacheConfig(disk_cache_path=sys.argv[2], redis_url=sys.argv[3]))
import memo_flight_e
start = float(sys.argv[4])
time.sleep(max(0.0, start - time.time()))
print(memo_flight_e.slow(5))
"""


@pytest.mark.redis
def test_processes_sharing_redis_compute_once(
    local_modules: Path, redis_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "calls.log"
    write_module(
        local_modules,
        "memo_flight_e",
        f"""
        import time
        from tore_nb.memo import cached
        @cached
        def slow(x):
            with open({str(log)!r}, "a") as f:
                f.write("call\\n")
            time.sleep(1.0)
            return x * 2
    """,
    )
    start = time.time() + 2.5
    env = {
        "TORE_NB_SECRET": SECRET,
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": SOURCE_ROOT,
        "HOME": str(tmp_path),
    }
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _WORKER,
                str(local_modules),
                str(tmp_path / f"disk{i}"),
                redis_url,
                str(start),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert [o[0].strip() for o in outs] == ["10", "10"]
    assert log.read_text().count("call") == 1


def test_doctests() -> None:
    assert doctest.testmod(tore_nb.memo).failed == 0
    assert doctest.testmod(tore_nb.fingerprint).failed == 0


def test_lazy_results_are_returned_but_never_stored(cache: MultiLevelCache) -> None:
    @cached(cache=cache)
    def pairs(n: int) -> Any:
        return zip(range(n), range(n), strict=True)

    @cached(cache=cache)
    def numbers(n: int) -> Any:
        yield from range(n)

    assert list(pairs(3)) == list(pairs(3)) == [(0, 0), (1, 1), (2, 2)]
    assert list(numbers(2)) == list(numbers(2)) == [0, 1]
    assert pairs.cache_info().entries == numbers.cache_info().entries == 0
    assert pairs.cache_info().misses == 2


def test_set_and_frozenset_arguments_have_their_own_keys(cache: MultiLevelCache) -> None:
    @cached(cache=cache)
    def ident(x: Any) -> Any:
        return x

    assert type(ident(frozenset({1}))) is frozenset
    assert type(ident({1})) is set


# -- private copies --------------------------------------------------------------------------------


def _rows() -> list[int]:
    return [1, 2, 3]


def _table() -> dict[str, Any]:
    return {"a": [1, 2], "b": {"c": 3}}


def _array() -> np.ndarray:
    return np.arange(125_000.0)  # 1 MB


def _frame() -> pd.DataFrame:
    return pd.DataFrame({"i": np.arange(5), "x": np.linspace(0, 1, 5), "s": list("abcde")})


def _frame_of_lists() -> pd.DataFrame:
    return pd.DataFrame({"tags": [["a"], ["b"]], "n": [1, 2]})


def _set_column(df: pd.DataFrame) -> None:
    df["b"] = 1
    df.loc[0, "x"] = -1.0


def _write_array(a: np.ndarray) -> None:
    a[:10] = -1
    a.resize(0, refcheck=False)  # an in-place change of shape too


MUTABLE_RESULTS: list[tuple[Callable[[], Any], Callable[[Any], Any]]] = [
    (_rows, lambda v: v.append(99)),
    (_table, lambda v: (v["a"].append(99), v["b"].clear(), v.update(z=0))),
    (_array, _write_array),
    (_frame, _set_column),
    (_frame_of_lists, lambda v: v.loc[0, "tags"].append("leak")),
]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray):
        return type(b) is np.ndarray and np.array_equal(a, b) and a.dtype == b.dtype
    if isinstance(a, pd.DataFrame):
        return isinstance(b, pd.DataFrame) and a.equals(b) and a.columns.equals(b.columns)
    return bool(a == b)


@pytest.mark.parametrize(
    ("make", "mutate"), MUTABLE_RESULTS, ids=[m.__name__.strip("_") for m, _ in MUTABLE_RESULTS]
)
def test_mutating_a_result_never_changes_later_calls(
    cache: MultiLevelCache, make: Callable[[], Any], mutate: Callable[[Any], Any]
) -> None:
    """A notebook mutates what a cached loader returned (`df = load(); df["b"] = 1`), on the
    first call (a miss) and on later ones (hits from memory): each later call still returns
    exactly what a plain call of the function returns, as without the cache."""
    load = cached(cache=cache)(make)
    first = load()
    assert _same(first, make())
    mutate(first)
    hit = load()
    assert _same(hit, make())  # the miss's result was not what the memory tier kept
    mutate(hit)
    assert _same(load(), make())  # nor was the first hit's
    assert load.cache_info().hits == 2 and load.cache_info().misses == 1


def test_each_hit_is_a_new_object(cache: MultiLevelCache) -> None:
    """Two hits hand out two objects, neither of them the first call's result."""

    @cached(cache=cache)
    def load() -> dict[str, list[int]]:
        return {"a": [1]}

    first, second, third = load(), load(), load()
    assert first == second == third
    assert first is not second and second is not third and second["a"] is not third["a"]


def test_references_shared_inside_a_result_stay_shared(cache: MultiLevelCache) -> None:
    """A result that refers to one object twice (a list in two places of a dict, one array
    under two names) comes back from a hit the same way: still one object, not two copies."""

    @cached(cache=cache)
    def build() -> dict[str, Any]:
        shared, arr = [1, 2], np.arange(4.0)
        return {"a": shared, "b": [shared, shared], "x": arr, "y": arr}

    build()
    hit = build()
    assert hit["a"] is hit["b"][0] is hit["b"][1]
    assert hit["x"] is hit["y"]
    hit["a"].append(3)
    assert hit["b"] == [[1, 2, 3], [1, 2, 3]]  # as a mutation of a plain result would


def test_copies_keep_layout_and_flags(cache: MultiLevelCache) -> None:
    """A copy looks like the plain result: a Fortran-ordered array stays so, a read-only one
    stays read-only, a DataFrame keeps its dtypes, index and attrs."""

    @cached(cache=cache)
    def arrays() -> tuple[np.ndarray, np.ndarray]:
        return np.asfortranarray(np.ones((3, 4))), np.frombuffer(b"\x01\x02", dtype=np.uint8)

    @cached(cache=cache)
    def frame() -> pd.DataFrame:
        df = pd.DataFrame({"c": pd.Categorical(["a", "b"]), "s": ["x", "y"]}, index=[10, 20])
        df.attrs["source"] = {"file": "a.csv"}
        return df

    for _ in range(2):
        fortran, readonly = arrays()
        assert fortran.flags.f_contiguous and not readonly.flags.writeable
    frame()
    df = frame()
    assert df.equals(frame.__wrapped__()) and list(df.index) == [10, 20]
    assert df.dtypes.to_dict() == frame.__wrapped__().dtypes.to_dict()
    df.attrs["source"]["file"] = "b.csv"
    assert frame().attrs == {"source": {"file": "a.csv"}}


def test_copy_false_returns_the_stored_object(cache: MultiLevelCache) -> None:
    """With copy=False a hit from memory is the stored object itself (as with
    functools.lru_cache): fast, and a mutation shows in later calls, hence 'read-only'."""

    @cached(cache=cache, copy=False)
    def load() -> list[int]:
        return [1, 2]

    first = load()
    assert load() is first
    first.append(3)
    assert load() == [1, 2, 3]


@pytest.mark.parametrize(
    "value",
    [7, 2.5, "text" * 100, b"bytes", None, (1, "a", (2.0, None)), frozenset({1, 2}), np.float64(1)],
    ids=repr,
)
def test_immutable_results_are_not_copied(cache: MultiLevelCache, value: Any) -> None:
    """Atoms (numbers, strings, bytes, None, numpy scalars) and tuples or frozensets of them
    cannot be mutated, so every call hands out the same object: no copy, no cost."""

    @cached(cache=cache)
    def const() -> Any:
        return value

    assert const() is value and const() is value
    assert const.cache_info().hits == 1


def test_a_tuple_holding_a_list_is_copied(cache: MultiLevelCache) -> None:
    """A tuple is immutable only when what it holds is: one with a list inside is copied."""

    @cached(cache=cache)
    def pair() -> tuple[int, list[int]]:
        return 1, [2]

    pair()[1].append(3)
    assert pair() == (1, [2])


class Unrebuildable(Exception):
    """Pickles (so it can be stored) but cannot be rebuilt: __init__ wants two arguments."""

    def __init__(self, code: int, why: str) -> None:
        super().__init__(f"{code}: {why}")


def test_an_uncopyable_result_is_returned_with_one_warning(cache: MultiLevelCache) -> None:
    """A result that can be stored but not copied is still returned, the stored object itself,
    and the function warns once, saying why, so the caller knows to treat it as read-only."""

    @cached(cache=cache)
    def fail() -> Unrebuildable:
        return Unrebuildable(1, "bad")

    with pytest.warns(CacheWarning, match=r"fail returns its stored Unrebuildable.*TypeError"):
        first = fail()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fail() is first  # a hit: the stored object, and no second warning
    assert str(first) == "1: bad" and fail.cache_info().hits == 1


def test_without_a_memory_tier_results_are_fresh_without_a_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Disk, Redis and S3 decode a new object on every read, so where no memory tier is in
    play (disabled, or left out with `tiers`) results are private without copying them."""
    copies: list[Any] = []
    monkeypatch.setattr(tore_nb.memo, "_private", copies.append)
    no_memory = MultiLevelCache(
        CacheConfig.embedded(tmp_path / "c", memory_enabled=False), secret=SECRET.encode()
    )
    with_memory = MultiLevelCache(CacheConfig.embedded(tmp_path / "d"), secret=SECRET.encode())
    for fn in (cached(cache=no_memory)(_rows), cached(cache=with_memory, tiers=["disk"])(_rows)):
        fn().append(99)
        hit = fn()
        hit.append(99)
        assert fn() == [1, 2, 3] and fn.cache_info().hits == 2
    assert copies == []


def test_a_hit_promoted_from_disk_into_memory_is_private(cache: MultiLevelCache) -> None:
    """A disk hit puts the object it decoded into the memory tier: the caller gets a copy, so
    mutating it does not change the next hit, served from memory."""

    @cached(cache=cache)
    def load() -> list[int]:
        return [1, 2]

    load()
    cache.tier("memory").clear()
    load().append(3)  # read from disk, promoted into memory
    assert load() == [1, 2]
    assert cache.metrics.tier("memory").hits >= 1


def test_concurrent_callers_each_get_their_own_result(cache: MultiLevelCache) -> None:
    """Threads that wait on one computation (single flight) each get a private result."""

    @cached(cache=cache)
    def slow() -> list[int]:
        time.sleep(0.2)
        return [7]

    results: list[list[int]] = []
    threads = [threading.Thread(target=lambda: results.append(slow())) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [[7]] * 4 and len({id(r) for r in results}) == 4
    assert slow.cache_info().misses == 1


def test_a_file_the_function_reads_is_an_input(tmp_path: Path) -> None:
    """`def load(path): return open(path).read()`: editing the file makes the next call run
    again, without naming the file anywhere (the call's reads are observed)."""
    cache = MultiLevelCache(CacheConfig.embedded(tmp_path / "cache"), secret=b"s" * 32)
    data = tmp_path / "data.txt"
    data.write_text("old")

    @cached(cache=cache)
    def load(path: str) -> str:
        with open(path) as f:
            return f.read()

    assert load(str(data)) == "old" and load(str(data)) == "old"
    assert load.cache_info().hits == 1
    data.write_text("new")
    assert load(str(data)) == "new" and load(str(data)) == "new"
    assert load.cache_info().hits == 2


def test_a_call_that_changes_its_argument_is_not_cached(tmp_path: Path) -> None:
    """`def add(xs): xs.append(3)`: a hit would leave the caller's list alone, a plain call
    changes it. Such calls run every time, with one warning."""
    cache = MultiLevelCache(CacheConfig.embedded(tmp_path / "cache"), secret=b"s" * 32)

    @cached(cache=cache)
    def add(xs: list[int]) -> int:
        xs.append(3)
        return len(xs)

    first, second = [1], [1]
    with pytest.warns(CacheWarning, match="changes its argument 'xs' in place"):
        assert add(first) == 2
    assert add(second) == 2 and second == [1, 3]
    assert add.cache_info().hits == 0


def test_a_call_that_draws_from_the_global_random_state_is_not_cached(tmp_path: Path) -> None:
    cache = MultiLevelCache(CacheConfig.embedded(tmp_path / "cache"), secret=b"s" * 32)

    @cached(cache=cache)
    def noise(n: int) -> float:
        return float(np.random.rand(n).sum())

    @cached(cache=cache)
    def seeded(n: int) -> float:
        np.random.seed(n)
        return float(np.random.rand())

    with pytest.warns(CacheWarning, match="numpy.random global random state"):
        a = noise(3)
    assert noise(3) != a and noise.cache_info().hits == 0
    assert seeded(1) == seeded(1) and seeded.cache_info().hits == 1
