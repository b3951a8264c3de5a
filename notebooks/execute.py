"""Execute the notebooks in place, top to bottom on fresh kernels, and save their outputs.

    python notebooks/execute.py                    # all of them
    python notebooks/execute.py quickstart.ipynb   # some

Each run is isolated like CI's (tests/integration/test_notebooks_run.py): a temporary disk
cache, its own signing secret, no Redis or S3 from the environment, and the tore_nb of this
checkout. tests/integration/test_notebook_outputs.py executes them again with `run` and checks
that the saved outputs are what a fresh run shows.

Saved outputs keep every view's text and HTML forms but not its live-widget form: a widget
needs a running kernel, and without one (GitHub, nbviewer, the docs site, JupyterLab before the
notebook runs) the HTML form is what reads well. Running the notebook brings the widgets back.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
ISOLATE = ("REDIS_URL", "REDIS_HOST", "S3_CACHE_BUCKET", "S3_ENDPOINT_URL", "TORE_NB_TIERS")


def static_outputs(nb: nbformat.NotebookNode) -> None:
    """Drop live-widget views (and the widget state) from the saved outputs."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            output.get("data", {}).pop(WIDGET_VIEW, None)
        cell.get("metadata", {}).pop("execution", None)


def run(path: Path, timeout: int = 600) -> tuple[nbformat.NotebookNode, float]:
    """Execute the notebook at `path` on a fresh, isolated kernel; return it and the seconds taken.

    Its outputs are the ones saved by `execute` (live-widget views dropped); the file is not
    written.
    """
    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory(prefix="tore-nb-execute-") as tmp:
        env = {k: v for k, v in os.environ.items() if k not in ISOLATE}
        env.update(
            DISK_CACHE_PATH=f"{tmp}/cache",
            XDG_CACHE_HOME=f"{tmp}/xdg-cache",
            XDG_CONFIG_HOME=f"{tmp}/xdg-config",
            TORE_NB_SECRET="notebook-execute-secret-0123456789abcdef",
            PYTHONPATH=os.pathsep.join(filter(None, [str(HERE.parent), env.get("PYTHONPATH")])),
        )
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(env)  # the kernel inherits this process's environment
        try:
            start = time.perf_counter()
            NotebookClient(
                nb,
                kernel_name="python3",
                timeout=timeout,
                resources={"metadata": {"path": str(path.parent)}},
            ).execute()
            seconds = time.perf_counter() - start
        finally:
            os.environ.clear()
            os.environ.update(saved)
    static_outputs(nb)
    return nb, seconds


def execute(path: Path) -> float:
    """Execute the notebook at `path` and save it with its new outputs; return the seconds taken."""
    nb, seconds = run(path)
    nbformat.write(nb, path)
    return seconds


def main(names: list[str]) -> int:
    paths = [HERE / n for n in names] if names else sorted(HERE.glob("*.ipynb"))
    for path in paths:
        print(f"{path.name}: executed in {execute(path):.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
