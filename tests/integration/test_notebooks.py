"""Real notebooks on real kernels (nbclient): cached cells across runs, restarts and kernels.

`tests/notebooks/cached_pipeline.ipynb` has three `%%tcache` cells; each appends its name to
the file named by TCACHE_TEST_LOG, and a hit appends it again (what a cell appends to a file is
replayed, as what it prints is), so the log is the same as a plain run's. Which cells really
ran is told by the hit lines (`TcacheMagics.verbose`).
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

import tore_nb
from tests.support import REPO

NOTEBOOK = REPO / "tests" / "notebooks" / "cached_pipeline.ipynb"
SECRET = "tore-nb-test-secret-0123456789abcdef"
# kernels import the tore_nb under test, whatever an editable install elsewhere points to
SOURCE_ROOT = str(Path(tore_nb.__file__).resolve().parents[1])


class Kernels:
    """Runs notebooks on fresh kernels that share (or not) a disk cache and a Redis."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.log = tmp / "runs.log"
        self.log.touch()

    def env(self, disk: str = "disk", redis_url: str | None = None) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("REDIS_URL", "REDIS_HOST", "S3_CACHE_BUCKET", "DISK_CACHE_PATH")
        }
        env.update(
            DISK_CACHE_PATH=str(self.tmp / disk),
            TORE_NB_SECRET=SECRET,
            TCACHE_TEST_LOG=str(self.log),
            IPYTHONDIR=str(self.tmp / "ipython"),
            PYTHONHASHSEED="random",
            PYTHONPATH=os.pathsep.join(filter(None, [SOURCE_ROOT, os.environ.get("PYTHONPATH")])),
        )
        if redis_url:
            env["REDIS_URL"] = redis_url
        return env

    def run(self, nb: Any, **env: Any) -> Any:
        nb = copy.deepcopy(nb)
        self.last = nb  # executed in place: what ran is there even when a cell fails
        client = NotebookClient(
            nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(self.tmp)}}
        )
        client.execute(env=self.env(**env))
        return nb

    def ran(self) -> list[str]:
        """The named cached cells of the last run that ran (executed, no hit line)."""
        names = []
        for cell in self.last.cells:
            found = re.search(r"--name (\w+)", cell.source) if cell.cell_type == "code" else None
            hit = any(" restored from " in line for line in statuses_of(cell))
            if found and cell.get("outputs") is not None and not hit and _executed(cell):
                names.append(found.group(1))
        return names

    def logged(self) -> list[str]:
        """What the cells appended to the log since the last call."""
        names = self.log.read_text().split()
        self.log.write_text("")
        return names


@pytest.fixture
def kernels(tmp_path: Path) -> Kernels:
    return Kernels(tmp_path)


@pytest.fixture
def notebook() -> Any:
    nbf: Any = nbformat
    return nbf.read(NOTEBOOK, as_version=4)


def outputs(nb: Any) -> list[list[dict[str, Any]]]:
    """Every code cell's outputs, without tore_nb's status lines."""
    return [
        [o for o in cell.outputs if "tore_nb" not in o.get("metadata", {})]
        for cell in nb.cells
        if cell.cell_type == "code"
    ]


def outputs_of(nb: Any, marker: str) -> list[dict[str, Any]]:
    """The outputs of the one code cell whose source contains `marker`."""
    [cell] = [c for c in nb.cells if c.cell_type == "code" and marker in c.source]
    return [o for o in cell.outputs if "tore_nb" not in o.get("metadata", {})]


def statuses(nb: Any) -> list[str]:
    return [line for cell in nb.cells if cell.cell_type == "code" for line in statuses_of(cell)]


def statuses_of(cell: Any) -> list[str]:
    return [
        o["data"]["text/plain"]
        for o in cell.get("outputs", [])
        if "tore_nb" in o.get("metadata", {})
    ]


def _executed(cell: Any) -> bool:
    return cell.get("execution_count") is not None


def edit(nb: Any, old: str, new: str) -> Any:
    nb = copy.deepcopy(nb)
    [cell] = [c for c in nb.cells if old in c.source]
    cell.source = cell.source.replace(old, new)
    return nb


def test_second_run_after_restart_is_served_from_disk(kernels: Kernels, notebook: Any) -> None:
    first = kernels.run(notebook)
    assert kernels.ran() == ["squares", "frame", "total"]
    assert statuses(first) == []
    cell = outputs_of(first, "--name squares")
    assert [o["output_type"] for o in cell] == [
        "stream",
        "display_data",
        "stream",
        "execute_result",
    ]
    assert cell[0]["text"] == "squares of range 5\n" and cell[2]["text"] == "sum 30\n"
    assert kernels.logged() == ["squares", "frame", "total"]
    second = kernels.run(notebook)  # a new kernel: memory is gone, disk is not
    assert kernels.ran() == []
    assert kernels.logged() == ["squares", "frame", "total"]  # appends replayed, as a run's
    assert outputs(second) == outputs(first)
    lines = statuses(second)
    assert len(lines) == 3 and all("from disk" in line for line in lines)
    assert "text/html" in outputs_of(second, "--name frame")[0]["data"]  # replayed rich
    assert outputs(second)[-1][0]["text"] == "33 [0, 1, 4, 9, 16] (3, 2)\n"


def test_upstream_edit_invalidates_exactly_the_dependent_cells(
    kernels: Kernels, notebook: Any
) -> None:
    kernels.run(notebook)
    changed = kernels.run(edit(notebook, "n = 5", "n = 6"))
    assert kernels.ran() == ["squares", "total"]
    assert outputs(changed)[-1][0]["text"] == "58 [0, 1, 4, 9, 16, 25] (3, 2)\n"
    commented = edit(notebook, "n = 5", "n = 6  # six now")
    commented = edit(
        commented,
        'print("squares of range", n)',
        '# say what we do\nprint( "squares of range",  n )\n',
    )
    again = kernels.run(commented)
    assert kernels.ran() == []
    assert outputs(again) == outputs(changed)
    helper = edit(commented, "return int(values.sum()) + len(frame)", "return int(values.sum())")
    edited = kernels.run(helper)  # a notebook function edit reruns only the cell calling it
    assert kernels.ran() == ["total"]
    assert outputs(edited)[-1][0]["text"] == "55 [0, 1, 4, 9, 16, 25] (3, 2)\n"


def test_a_failing_cached_cell_fails_the_run_and_is_not_cached(
    kernels: Kernels, notebook: Any
) -> None:
    broken = edit(notebook, "total = combine(arr, df)", "total = 1 / 0")
    with pytest.raises(CellExecutionError, match="ZeroDivisionError"):
        kernels.run(broken)
    assert kernels.ran() == ["squares", "frame", "total"]
    kernels.run(notebook)
    assert kernels.ran() == ["total"]


@pytest.mark.redis
def test_a_second_kernel_gets_the_first_kernels_entries_from_redis(
    kernels: Kernels, notebook: Any, redis_url: str
) -> None:
    first = kernels.run(notebook, disk="disk-a", redis_url=redis_url)
    assert kernels.ran() == ["squares", "frame", "total"]
    second = kernels.run(notebook, disk="disk-b", redis_url=redis_url)  # its own empty disk
    assert kernels.ran() == []
    assert outputs(second) == outputs(first)
    lines = statuses(second)
    assert len(lines) == 3 and all("from redis" in line for line in lines)
