"""Execute the notebooks in place, top to bottom on fresh kernels, and save their outputs.

    python notebooks/execute.py                          # all of them, every cell run
    python notebooks/execute.py quickstart.ipynb         # some
    python notebooks/execute.py --cache build/nb-cache   # cells unchanged since are served

The docs site renders what this saves (mkdocs-jupyter runs nothing). Each notebook runs through
`tore-nb run`'s engine (`tore_nb.notebooks.run_notebook`), isolated as CI's runs are
(tests/integration/test_notebooks_run.py): a temporary disk cache for the notebook's own
tore_nb, no Redis or S3 from the environment, and the tore_nb of this checkout. By default the
run's cache is temporary too, so every cell runs and the outputs are fresh. With `--cache DIR`
the run keeps its cells in DIR/cells, signed with a key kept beside (`DIR/key`, this user's), and
the next run serves each cell whose code and inputs did not change: what a served cell replays
is what a plain run shows, and what the notebook's own tore_nb shows is a fresh run's (its cache
stays temporary). A cell that cannot be served (it starts processes, uses a tore_nb cache
itself, holds live objects) runs again, and a line says why. Prints per notebook how many cells
ran and how many were served.

Saved outputs keep every view's text and HTML forms but not its live-widget form: a widget
needs a running kernel, and without one (GitHub, nbviewer, the docs site, JupyterLab before the
notebook runs) the HTML form is what reads well. Running the notebook brings the widgets back.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
ISOLATE = ("REDIS_URL", "REDIS_HOST", "S3_CACHE_BUCKET", "S3_ENDPOINT_URL", "TORE_NB_TIERS")
SECRET = "notebook-execute-secret-0123456789abcdef"
if str(HERE.parent) not in sys.path:  # this checkout's tore_nb, here as in the kernels
    sys.path.insert(0, str(HERE.parent))


def static_outputs(nb: Any) -> None:
    """Drop live-widget views (and the widget state) from the saved outputs."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            output.get("data", {}).pop(WIDGET_VIEW, None)
        cell.get("metadata", {}).pop("execution", None)


def kernel_env(tmp: Path, cache_dir: Path | None) -> dict[str, str]:
    """The kernel's environment: this one without remote tiers, the notebook's cache and the
    XDG folders under `tmp`, this checkout first on PYTHONPATH. A fixed secret signs a
    temporary cache; a cache kept between runs is signed with a key of its own."""
    env = {k: v for k, v in os.environ.items() if k not in ISOLATE}
    env.update(
        DISK_CACHE_PATH=str(tmp / "cache"),
        XDG_CACHE_HOME=str(tmp / "xdg-cache"),
        XDG_CONFIG_HOME=str(tmp / "xdg-config"),
        PYTHONPATH=os.pathsep.join(filter(None, [str(HERE.parent), env.get("PYTHONPATH")])),
        PYDEVD_DISABLE_FILE_VALIDATION="1",
    )
    if cache_dir is None:
        env["TORE_NB_SECRET"] = SECRET
    else:
        env.pop("TORE_NB_SECRET", None)
        env["TORE_NB_KEY_FILE"] = str(cache_dir / "key")  # made 0600 by tore_nb on first use
    return env


def execute(
    path: Path, cache_dir: Path | None = None, output: Path | None = None, timeout: int = 600
) -> Any:
    """Execute the notebook at `path` and save it with its new outputs (to `output`, default
    in place; live-widget views dropped); return the run (`tore_nb.notebooks.NotebookRun`).
    A notebook whose cell fails is not written. `cache_dir`: where the run keeps its cells
    (default: a temporary folder, so every cell runs)."""
    from tore_nb.notebooks import run_notebook

    with tempfile.TemporaryDirectory(prefix="tore-nb-execute-") as name:
        tmp = Path(name)
        if cache_dir is not None:
            cache_dir = cache_dir.resolve()
            cache_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        return run_notebook(
            path,
            output,
            timeout=timeout,
            kernel_name="python3",
            env=kernel_env(tmp, cache_dir),
            cache_dir=(cache_dir or tmp) / "cells",  # beside the key, not with it
            transform=static_outputs,
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", help="notebooks of notebooks/ (default: all of them)")
    p.add_argument(
        "--cache",
        type=Path,
        metavar="DIR",
        help="keep the run's cells in DIR: a run with unchanged notebooks serves them "
        "(default: a temporary cache, every cell runs)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="a line for every cell")
    args = p.parse_args(argv)
    from tore_nb.notebooks import print_cells

    paths = [HERE / n for n in args.names] if args.names else sorted(HERE.glob("*.ipynb"))
    failed = 0
    for path in paths:
        run = execute(path, args.cache)
        print(run.summary().replace(str(path), path.name, 1), flush=True)
        print_cells(run, args.verbose)
        if run.failure is not None:
            failed += 1
            print(f"{path.name}: {run.failure.headline()}; not saved", file=sys.stderr)
            if run.failure.traceback:
                print(run.failure.traceback, file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
