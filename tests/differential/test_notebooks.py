"""Realistic notebooks (tests/notebooks/differential/) through nbclient in real kernels, four
ways: plain, cold cached, warm cached (a fresh kernel on the same cache: every cell a hit) and
after an edit of one upstream cell (its dependants run, the others hit); each cached run's
cell outputs must equal those of a plain run of the same source."""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .harness import (
    CACHED_MODES,
    REPO,
    Mode,
    bundle,
    cached_source,
    normalise_events,
    setup_lines,
)

NOTEBOOKS = REPO / "tests" / "notebooks" / "differential"


# notebook: (code cell index, old text, new text, the code cells the edit makes run again)
EDITS: dict[str, tuple[int, str, str, set[int]]] = {
    "numpy_basics": (1, "N = 200", "N = 300", {1, 6, 7, 8, 9, 14, 15, 16}),
    "pandas_wine": (7, "THRESHOLD = 13.0", "THRESHOLD = 13.5", {7, 8, 13}),
    "sklearn_digits": (4, "TEST_SIZE = 0.25", "TEST_SIZE = 0.3", {4, 5, 7, 8, 9, 10, 13}),
}


@pytest.fixture
def kernel_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Kernels import this checkout's tore_nb (or DIFFERENTIAL_TORE_NB's) and keep their cache,
    keys and settings under tmp_path."""
    try:
        import nbclient  # noqa: F401
        from jupyter_client.kernelspec import KernelSpecManager
    except ImportError:
        pytest.skip("nbclient is not installed")
    if "python3" not in KernelSpecManager().find_kernel_specs():
        pytest.skip("no python3 kernel")
    for var in ("REDIS_URL", "REDIS_HOST", "S3_CACHE_BUCKET", "S3_ENDPOINT_URL", "TORE_NB_TIERS"):
        monkeypatch.delenv(var, raising=False)
    first = [os.environ["DIFFERENTIAL_TORE_NB"]] if os.environ.get("DIFFERENTIAL_TORE_NB") else []
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([*first, str(REPO), *([path] if path else [])])
    )
    monkeypatch.setenv("DISK_CACHE_PATH", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))
    monkeypatch.setenv("TORE_NB_SECRET", "differential-notebook-secret-0123456789abcdef")
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    (tmp_path / "work").mkdir()
    yield tmp_path


def code_cells(nb: Any) -> list[Any]:
    return [c for c in nb.cells if c.cell_type == "code"]


def run_notebook(nb: Any, mode: Mode, work: Path) -> list[dict[str, Any]]:
    """Run a copy of `nb` in a fresh kernel in `mode`; per code cell: events, error, status."""
    import nbformat
    from nbclient import NotebookClient

    nb = copy.deepcopy(nb)
    cells = code_cells(nb)
    for cell in cells:
        cell.source = cached_source(cell.source, mode)
    new_cell: Any = nbformat.v4.new_code_cell
    lines = setup_lines(mode)
    if mode == "auto":  # store every cell, cheap ones too: each hit is then checked
        lines.insert(-1, "%config TcacheMagics.min_seconds = 0")
    setup = [new_cell(line) for line in lines]
    nb.cells = setup + nb.cells
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=180,
        allow_errors=True,
        resources={"metadata": {"path": str(work)}},
    )
    client.execute()
    return [_cell_result(c) for c in cells]


def _cell_result(cell: Any) -> dict[str, Any]:
    events: list[list[Any]] = []
    error = None
    status = None
    for out in cell.outputs:
        kind = out.output_type
        if kind == "stream":
            events.append([out.name, out.text])
        elif kind in ("display_data", "execute_result"):
            meta = out.get("metadata", {}).get("tore_nb", {})
            if isinstance(meta, dict) and "status" in meta:
                status = meta["status"]
            events.append(["display" if kind == "display_data" else "result", bundle(out.data)])
        elif kind == "error":
            error = [out.ename, out.evalue]
    return {"events": events, "error": error, "status": status}


def compare_runs(name: str, plain: list[dict[str, Any]], cached: list[dict[str, Any]]) -> list[str]:
    diffs = []
    for i, (p, c) in enumerate(zip(plain, cached, strict=True)):
        if p["error"] != c["error"]:
            diffs.append(f"{name}: cell {i}: error: plain {p['error']} != cached {c['error']}")
            continue
        a, b = normalise_events(p["events"]), normalise_events(c["events"])
        if a != b:
            j = next(
                (k for k, (x, y) in enumerate(zip(a, b, strict=False)) if x != y),
                min(len(a), len(b)),
            )
            x = a[j] if j < len(a) else None
            y = b[j] if j < len(b) else None
            diffs.append(
                f"{name}: cell {i}: output {j}: plain {str(x)[:300]} != cached {str(y)[:300]}"
            )
    return diffs


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("mode", CACHED_MODES)
@pytest.mark.parametrize("stem", sorted(EDITS))
def test_notebook_plain_cold_warm_edited(kernel_env: Path, stem: str, mode: Mode) -> None:
    import nbformat

    read: Any = nbformat.read
    nb = read(NOTEBOOKS / f"{stem}.ipynb", as_version=4)
    index, old, new, reruns = EDITS[stem]
    work = kernel_env / "work"
    edited = copy.deepcopy(nb)
    target = code_cells(edited)[index]
    assert old in target.source, f"{stem}: cell {index} does not contain {old!r}"
    target.source = target.source.replace(old, new)

    plain = run_notebook(nb, "plain", work)
    assert not [p for p in plain if p["error"]], f"{stem} fails when run plainly"
    problems = compare_runs(f"{stem} cold", plain, run_notebook(nb, mode, work))
    warm = run_notebook(nb, mode, work)
    problems += compare_runs(f"{stem} warm", plain, warm)
    problems += [
        f"{stem} warm: cell {i}: expected a hit, it ran ({w['status'] or 'no status line'})"
        for i, w in enumerate(warm)
        if w["status"] != "hit"
    ]
    plain_edited = run_notebook(edited, "plain", work)
    after = run_notebook(edited, mode, work)
    problems += compare_runs(f"{stem} edited", plain_edited, after)
    for i, a in enumerate(after):
        if i in reruns and a["status"] == "hit":
            problems.append(
                f"{stem} edited: cell {i}: expected to run (the edit reaches it), was a hit"
            )
        if i not in reruns and a["status"] != "hit":
            ran = a["status"] or "no status line"
            problems.append(f"{stem} edited: cell {i}: expected a hit, it ran ({ran})")
    if problems:
        pytest.fail(
            "\n".join(problems[:12])
            + (f"\n... {len(problems)} in all" if len(problems) > 12 else ""),
            pytrace=False,
        )
