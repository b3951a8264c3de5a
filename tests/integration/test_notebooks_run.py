"""Every notebook in notebooks/ runs top to bottom on a fresh kernel (nbclient), isolated: its own
disk cache directory, signing secret and XDG directories, no Redis or S3 from the environment."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import REPO, missing
from tore_nb.testing import RedisServer, free_port

NOTEBOOKS = REPO / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))
ISOLATE = ("REDIS_URL", "REDIS_HOST", "S3_CACHE_BUCKET", "S3_ENDPOINT_URL", "TORE_NB_TIERS")


def test_the_four_notebooks_are_there() -> None:
    names = {p.name for p in PATHS}
    assert {"quickstart.ipynb", "tiers.ipynb", "incremental.ipynb", "dashboard.ipynb"} <= names


@pytest.fixture
def kernel_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The kernel inherits this process's environment: point every cache path at tmp_path."""
    for var in ISOLATE:
        monkeypatch.delenv(var, raising=False)
    # the kernel imports the tore_nb of this checkout, whatever else is installed
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), *([path] if path else [])]))
    monkeypatch.setenv("DISK_CACHE_PATH", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("TORE_NB_SECRET", "notebook-test-secret-0123456789abcdef")
    monkeypatch.setenv("RAY_DISABLE_IMPORT_WARNING", "1")
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    yield tmp_path


def _kernel_ready() -> None:
    try:
        import nbclient  # noqa: F401
        from jupyter_client.kernelspec import KernelSpecManager
    except ImportError:
        missing("nbclient (pip install -e '.[test]')")
    if "python3" not in KernelSpecManager().find_kernel_specs():
        missing("a python3 kernel (pip install ipykernel)")


@pytest.mark.slow
@pytest.mark.timeout(420)
@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_notebook_runs_top_to_bottom(path: Path, kernel_env: Path) -> None:
    _kernel_ready()
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=300,
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    try:
        client.execute()
    except CellExecutionError as exc:
        pytest.fail(f"{path.name} failed:\n{str(exc)[-3000:]}", pytrace=False)
    errors = [
        o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"
    ]
    assert not errors
    text = "\n".join(
        o.get("text", "") or o.get("data", {}).get("text/plain", "")
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
    )
    assert "Traceback" not in text
    for expected in EXPECTED.get(path.name, ()):
        assert expected in text, f"{path.name}: {expected!r} not in its outputs"
    if path.name in USES_DEFAULT_CACHE:  # the kernel's cache went where the test pointed it
        assert any((kernel_env / "cache").iterdir())


USES_DEFAULT_CACHE = {"quickstart.ipynb", "incremental.ipynb", "dashboard.ipynb"}

# What each notebook must show: the point it makes.
EXPECTED = {
    "quickstart.ipynb": (
        "tcache: restored n, total from memory",
        "tcache: restored n, total from disk",  # the fresh kernel got the hit from the disk tier
        "same result: True",
    ),
    "tiers.ipynb": (
        "small is in ['memory', 'disk', 'redis']",
        "large is in ['disk', 'redis', 's3']",
        "first read from redis",
        "same values: True",
        "breaker=open",
        "redis breaker: closed",
    ),
    "incremental.ipynb": (
        "pages: 18/18 done, 0 cached, 0 failed",
        "pages: 3/3 done, 16 cached, 0 failed",
        "changed_pages=[3, 7, 19]",
        "pages: 19/19 done",
        "report.pdf: 19 pages, unchanged; stage results 38 from cache (disk), 19 skipped",
    ),
    "dashboard.ipynb": ("hits per tier: {'memory': 10, 'disk': 5}",),
}


BINDER_RUN = """
import os, nbformat
from nbclient import NotebookClient
print("env:", os.environ.get("REDIS_URL"), os.environ.get("S3_ENDPOINT_URL"),
      os.environ.get("S3_CACHE_BUCKET"))
nb = nbformat.read("dashboard.ipynb", as_version=4)
NotebookClient(nb, kernel_name="python3", timeout=120).execute()
for cell in nb.cells:
    for out in cell.get("outputs", []):
        for line in out.get("text", "").splitlines():
            if line.startswith("hits per tier"):
                print(line)
"""


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_binder_start_gives_the_notebooks_redis_and_s3(kernel_env: Path) -> None:
    """binder/start launches redis-server and moto on loopback and exports their variables;
    the dashboard notebook then runs on all four tiers (as on mybinder.org)."""
    _kernel_ready()
    if not RedisServer.available() or shutil.which("moto_server") is None:
        missing("redis-server and moto_server (moto[server])")
    run_dir = kernel_env / "services"
    env = {
        **os.environ,
        "TORE_NB_REDIS_PORT": str(free_port()),
        "TORE_NB_S3_PORT": str(free_port()),
        "TORE_NB_RUN_DIR": str(run_dir),
    }
    try:
        proc = subprocess.run(
            ["bash", str(REPO / "binder" / "start"), sys.executable, "-c", BINDER_RUN],
            cwd=NOTEBOOKS,
            env=env,
            capture_output=True,
            text=True,
            timeout=170,
        )
    finally:
        for name in ("redis.pid", "moto.pid"):
            pid = run_dir / name
            if pid.exists():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid.read_text().strip()), signal.SIGTERM)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"redis://127.0.0.1:{env['TORE_NB_REDIS_PORT']}/0" in proc.stdout
    assert f"http://127.0.0.1:{env['TORE_NB_S3_PORT']} tore-nb-binder" in proc.stdout
    assert "hits per tier: {'memory': 10, 'disk': 5, 'redis': 5, 's3': 0}" in proc.stdout
