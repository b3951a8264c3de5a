"""Benchmark of the notebook layer: %%tcache hits, @cached hits, key computation.

Run: python benchmarks/bench_notebook.py [--repeat N] [--markdown]

Prints medians and ratios for
- a %%tcache hit restoring a 10 MB numpy array and a 1e6-row DataFrame, from L1 (memory) and
  from L2 (disk), beside IPython's own run_cell of `pass` and pickle.loads of the same variables;
- a @cached hit on a function with a 10 MB array argument, beside joblib.Memory on the same
  function (target: at least 8x faster);
- key computation over a 100 MB array (target: at least 3 GB/s).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import pickle
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import tore_nb
from tore_nb.cells import analyze_cell, cell_key
from tore_nb.config import CacheConfig
from tore_nb.memo import cached
from tore_nb.tiered import MultiLevelCache

MB = 1_000_000


def median_seconds(fn: Callable[[], Any], repeat: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def fmt(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms" if seconds < 1 else f"{seconds:.2f} s"


CELL = """%%tcache --name bench
arr = np.random.default_rng(0).random(1_250_000)
df = pd.DataFrame({"i": np.arange(1_000_000), "x": np.random.default_rng(1).random(1_000_000)})
"""


def bench_cells(repeat: int, tmp: Path) -> list[tuple[str, float]]:
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    cfg = Config()
    cfg.HistoryManager.hist_file = ":memory:"
    shell: Any = InteractiveShell
    ip = shell.instance(config=cfg, ipython_dir=str(tmp / "ipython"))
    ip.run_line_magic("load_ext", "tore_nb")
    ip.run_cell("import numpy as np, pandas as pd")
    rows: list[tuple[str, float]] = []
    sink = io.StringIO()

    def run(code: str) -> None:
        with contextlib.redirect_stdout(sink):
            result = ip.run_cell(code, store_history=False)
        assert result.success
        sink.seek(0)
        sink.truncate()

    # L1: let the 26 MB entry live in the memory tier
    big = dict(memory_max_item_mb=200.0, small_item_mb=200.0, large_item_mb=500.0)
    tore_nb.get_cache(CacheConfig.embedded(tmp / "l1", **big))
    run(CELL)
    hit_l1 = median_seconds(lambda: run(CELL), repeat)
    assert tore_nb.get_cache().metrics.tier("memory").hits >= repeat
    # L2: no memory tier, every hit reads, verifies and decodes from disk
    tore_nb.get_cache(CacheConfig.embedded(tmp / "l2", memory_enabled=False))
    run(CELL)
    hit_l2 = median_seconds(lambda: run(CELL), repeat)
    assert tore_nb.get_cache().metrics.tier("disk").hits >= repeat
    baseline = median_seconds(lambda: run("pass"), repeat)
    blob = pickle.dumps({"arr": ip.user_ns["arr"], "df": ip.user_ns["df"]}, protocol=5)
    loads = median_seconds(lambda: pickle.loads(blob), repeat)
    rows += [
        ("%%tcache hit, L1 memory (10 MB array + 1e6-row DataFrame)", hit_l1),
        ("%%tcache hit, L2 disk (same cell)", hit_l2),
        ("IPython run_cell('pass')", baseline),
        (f"pickle.loads of the same variables ({len(blob) / MB:.0f} MB)", loads),
    ]
    return rows


def bench_cached(repeat: int, tmp: Path) -> list[tuple[str, float]]:
    import joblib

    arr = np.random.default_rng(0).random(1_250_000)  # 10 MB

    def summary(a: np.ndarray) -> float:
        return float(a.mean())

    cache = MultiLevelCache(CacheConfig.embedded(tmp / "memo"))
    ours = cached(cache=cache)(summary)
    theirs = joblib.Memory(location=str(tmp / "joblib"), verbose=0).cache(summary)
    ours(arr)
    theirs(arr)
    t_ours = median_seconds(lambda: ours(arr), repeat)
    t_joblib = median_seconds(lambda: theirs(arr), repeat)
    assert ours.cache_info().misses == 1
    return [("@cached hit, 10 MB array argument", t_ours), ("joblib.Memory hit, same", t_joblib)]


def bench_keys(repeat: int) -> list[tuple[str, float]]:
    big = np.random.default_rng(0).random(12_500_000)  # 100 MB

    @cached
    def consume(a: np.ndarray) -> int:
        return 0

    analysis = analyze_cell("y = big.sum()")
    t_fn = median_seconds(lambda: consume.__cache_key__(big), repeat)
    t_cell = median_seconds(lambda: cell_key(analysis, {"big": big}), repeat)
    return [("@cached key over a 100 MB array", t_fn), ("%%tcache key over a 100 MB input", t_cell)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        cells = bench_cells(args.repeat, tmp)
        memo = bench_cached(args.repeat * 4, tmp)
        keys = bench_keys(args.repeat)
    rows = cells + memo + keys
    width = max(len(name) for name, _ in rows)
    print(f"{'case':<{width}}  median")
    for name, t in rows:
        print(f"{name:<{width}}  {fmt(t)}")
    l1, l2, base, loads = (t for _, t in cells)
    ours, joblib_t = (t for _, t in memo)
    gbps = [100 * MB / t / 1e9 for _, t in keys]
    print()
    print(f"%%tcache L1 hit / run_cell('pass'):   {l1 / base:.1f}x")
    print(f"%%tcache L1 hit / pickle.loads:        {l1 / loads:.2f}x")
    print(f"%%tcache L2 hit / pickle.loads:        {l2 / loads:.2f}x")
    print(f"joblib.Memory hit / @cached hit:       {joblib_t / ours:.1f}x (target >= 8x)")
    print(
        f"key throughput over 100 MB:            {gbps[0]:.1f} GB/s @cached, "
        f"{gbps[1]:.1f} GB/s %%tcache (target >= 3 GB/s)"
    )
    if args.markdown:
        print("\n| case | median |\n| --- | --- |")
        for name, t in rows:
            print(f"| {name} | {fmt(t)} |")
    ok = joblib_t / ours >= 8 and min(gbps) >= 3
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
