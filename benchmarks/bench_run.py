"""Benchmark of `tore-nb run`: re-executing this project's notebooks unchanged, against nbclient.

Run: python benchmarks/bench_run.py [--rounds N (2)] [--markdown] [NAME.ipynb ...]

The notebooks of notebooks/ (or those named) are copied, with their data, to a temporary
folder: the repository's are never touched. Each round runs every notebook in a fresh kernel
three ways, one after the other, so that load drifts hit all alike:
- plain: nbclient alone (`NotebookClient(nb).execute()`), as papermill or nbconvert do;
- cold: `tore-nb run` on an empty cache (every cell runs and is stored);
- warm: `tore-nb run` again, the notebook unchanged (what a docs build or CI re-run does).
Every time includes starting the kernel; plain runs first in even rounds and last in odd ones
(the first kernel of a sequence pays the disk's cold reads of what the notebook imports). The
runs are isolated as notebooks/execute.py's: a signing secret, no Redis or S3 from the
environment, the tore_nb of this checkout, the run's cache kept between the cold and the warm
run of a round (`execute.py --cache`), and the notebook's own tore_nb on an empty disk cache in
every run, as in the plain one. Prints per notebook the medians over rounds, the ratio of each
to plain, and how many cells the warm run served.
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from tore_nb.notebooks import run_notebook

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
ISOLATE = ("REDIS_URL", "REDIS_HOST", "S3_CACHE_BUCKET", "S3_ENDPOINT_URL", "TORE_NB_TIERS")
BLAS_THREADS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def kernel_env(tmp: Path, cache: str) -> dict[str, str]:
    """The kernels' environment: this checkout's tore_nb, everything else under `tmp`."""
    env = {k: v for k, v in os.environ.items() if k not in ISOLATE}
    env.update(
        DISK_CACHE_PATH=str(tmp / cache),
        XDG_CACHE_HOME=str(tmp / "xdg-cache"),
        XDG_CONFIG_HOME=str(tmp / "xdg-config"),
        MPLCONFIGDIR=str(tmp / "mpl"),
        TORE_NB_SECRET="bench-run-secret-0123456789abcdef",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        PYDEVD_DISABLE_FILE_VALIDATION="1",
    )
    # one BLAS thread: spinning BLAS threads on a loaded machine swing a cell's time by 10x
    env.update({v: os.environ.get(v, "1") for v in BLAS_THREADS})
    return env


def plain(path: Path, env: dict[str, str]) -> float:
    """nbclient alone, kernel start included; the notebook is executed, not written."""
    import nbformat
    from nbclient import NotebookClient

    nb = copy.deepcopy(nbformat.read(path, as_version=4))
    start = time.perf_counter()
    NotebookClient(nb, timeout=600, resources={"metadata": {"path": str(path.parent)}}).execute(
        env=env
    )
    return time.perf_counter() - start


def warm_up(tmp: Path, env: dict[str, str]) -> None:
    """Start one kernel first, so that the first timed run does not pay the disk's cold reads
    of Python, IPython and numpy alone."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import numpy, pandas, tore_nb.magics")]
    nbformat.write(nb, tmp / "warm-up.ipynb")
    plain(tmp / "warm-up.ipynb", env)


def cached(path: Path, env: dict[str, str], run_cache: Path) -> tuple[float, Any]:
    """`tore-nb run` with its cache in `run_cache`; the notebook's own cache starts empty."""
    shutil.rmtree(env["DISK_CACHE_PATH"], ignore_errors=True)
    start = time.perf_counter()
    run = run_notebook(
        path, path.with_name(f"out-{path.name}"), timeout=600, env=env, cache_dir=run_cache
    )
    seconds = time.perf_counter() - start
    if not run.ok:
        raise RuntimeError(f"{path.name}: {run.failure and run.failure.headline()}")
    return seconds, run


def fmt(seconds: float) -> str:
    return f"{seconds:.2f} s"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", help="notebooks of notebooks/ (default: all)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--markdown", action="store_true", help="also print a markdown table")
    args = p.parse_args(argv)
    names = args.names or sorted(n.name for n in NOTEBOOKS.glob("*.ipynb"))
    times: dict[tuple[str, str], list[float]] = defaultdict(list)
    served: dict[str, tuple[int, int]] = {}
    with tempfile.TemporaryDirectory(prefix="tore-nb-bench-run-") as tmp_name:
        tmp = Path(tmp_name)
        for r in range(args.rounds):
            base = tmp / f"round{r}"
            work = base / "notebooks"
            shutil.copytree(NOTEBOOKS, work, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
            # plain runs get a cache of their own: the notebooks' own %%tcache cells store
            # entries, which would otherwise serve the cold run
            plain_env, env = kernel_env(base, "plain-cache"), kernel_env(base, "notebook-cache")
            run_cache = base / "run-cache"
            if r == 0:
                warm_up(base, plain_env)
            for name in list(names):
                path = work / name
                try:
                    # plain first in even rounds, last in odd ones: the first kernel of a
                    # sequence pays the disk's cold reads of what the notebook imports
                    plain_seconds = plain(path, plain_env) if r % 2 == 0 else 0.0
                    cold, _ = cached(path, env, run_cache)
                    warm, run = cached(path, env, run_cache)
                    plain_seconds = plain_seconds or plain(path, plain_env)
                except Exception as exc:  # e.g. Ray's start timing out on a loaded machine
                    print(f"{name}: left out, a run failed: {exc}", file=sys.stderr)
                    names.remove(name)
                    continue
                times[(name, "plain")].append(plain_seconds)
                times[(name, "cold")].append(cold)
                times[(name, "warm")].append(warm)
                served[name] = (run.served, len(run.cells))
                print(f"round {r + 1}/{args.rounds}: {name} done", file=sys.stderr)
    rows: list[tuple[str, str, str, str, str]] = []
    print(f"tore-nb run against nbclient, kernel start included, medians of {args.rounds}:")
    totals = {mode: 0.0 for mode in ("plain", "cold", "warm")}
    for name in [*names, "all"]:
        if name == "all":
            t = totals
        else:
            t = {mode: statistics.median(times[(name, mode)]) for mode in totals}
            for mode in totals:
                totals[mode] += t[mode]
        cold_ratio, warm_ratio = t["cold"] / t["plain"], t["warm"] / t["plain"]
        n_served, n_cells = served.get(name) or tuple(map(sum, zip(*served.values(), strict=True)))
        note = f"{n_served} of {n_cells} cells served"
        print(
            f"  {name:<20} plain {fmt(t['plain'])}, tore-nb run cold {fmt(t['cold'])} "
            f"({cold_ratio:.2f}x), warm {fmt(t['warm'])} ({warm_ratio:.2f}x; {note})"
        )
        rows.append(
            (
                name,
                fmt(t["plain"]),
                f"{fmt(t['cold'])} ({cold_ratio:.2f}x)",
                f"{fmt(t['warm'])} ({warm_ratio:.2f}x)",
                note,
            )
        )
    if args.markdown:
        print("\n| notebook | nbclient | tore-nb run, cold | tore-nb run, unchanged | cells |")
        print("|---|---|---|---|---|")
        for row in rows:
            print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
