"""`tore-nb run`: whole notebooks in fresh kernels, every cell cached.

The notebook written by a cached run must hold what a plain nbclient run writes (outputs
compared without execution counts and timings); a second run serves every cell; an edit re-runs
that cell and the cells that read what it changed, and no other.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.support import REPO
from tore_nb.cli import main

# every cell takes longer than `%tcache auto`'s floor (5 ms): cells cheaper than their own hit
# are run, not cached, and would blur the counts tested here
CELLS = [
    ("markdown", "# A small analysis"),
    ("code", "import time\ntime.sleep(0.03)\ndata = list(range(10))\nscale = 2"),
    (
        "code",
        "def slow(xs):\n    time.sleep(0.2)\n    return [x * x for x in xs]\n\n"
        "squares = slow(data)",
    ),
    ("code", 'time.sleep(0.03)\nprint("sum of squares:", sum(squares))'),
    (
        "code",
        "from IPython.display import HTML, display\n\ntime.sleep(0.03)\n"
        'display(HTML(f"<b>{scale * len(data)} points</b>"))\nscale * 10',
    ),
]
SUMMARY = re.compile(r"(\d+) cells, (\d+) served from the cache, (\d+) ran")


@pytest.fixture
def kernels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Kernels import this checkout's tore_nb; their settings stay under tmp_path."""
    pytest.importorskip("nbclient")
    from jupyter_client.kernelspec import KernelSpecManager

    if "python3" not in KernelSpecManager().find_kernel_specs():
        pytest.skip("no python3 kernel")
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), *([path] if path else [])]))
    monkeypatch.setenv("TORE_NB_SECRET", "run-notebooks-secret-0123456789abcdef")
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    for var in ("S3_ENDPOINT_URL", "TORE_NB_TIERS"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def write_notebook(path: Path, cells: list[tuple[str, str]]) -> Path:
    import nbformat

    nb: Any = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    new = {"code": nbformat.v4.new_code_cell, "markdown": nbformat.v4.new_markdown_cell}
    nb.cells = [new[kind](source) for kind, source in cells]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def outputs(nb: Any) -> list[list[tuple[Any, ...]]]:
    """Each code cell's outputs, without execution counts and timing metadata."""
    return [
        [
            (
                o.get("output_type"),
                o.get("name"),
                o.get("text"),
                o.get("data"),
                o.get("ename"),
                o.get("evalue"),
            )
            for o in cell.get("outputs", [])
        ]
        for cell in nb.cells
        if cell.cell_type == "code"
    ]


def read(path: Path) -> Any:
    import nbformat

    return nbformat.read(path, as_version=4)


def plain_run(path: Path) -> Any:
    """The notebook executed by nbclient alone, as papermill or nbconvert would."""
    from nbclient import NotebookClient

    nb = copy.deepcopy(read(path))
    NotebookClient(nb, timeout=120, resources={"metadata": {"path": str(path.parent)}}).execute()
    return nb


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def counts(out: str) -> tuple[int, int, int]:
    m = SUMMARY.search(out)
    assert m, out
    return int(m[1]), int(m[2]), int(m[3])


def states(out: str) -> dict[int, str]:
    """cell number -> served/ran, from the -v lines."""
    return {int(n): s for n, s in re.findall(r"^  cell (\d+): (\w+)", out, re.M)}


def test_run_serves_unchanged_cells_and_reruns_what_an_edit_reaches(
    kernels: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nb_path = write_notebook(kernels / "work" / "analysis.ipynb", CELLS)
    source_bytes = nb_path.read_bytes()
    plain = outputs(plain_run(nb_path))
    assert plain[2][0][2] == "sum of squares: 285\n"  # the test notebook shows what it should
    cache = ["--cache-dir", str(kernels / "cache")]

    # first run, to --output: every cell runs, the source is left as it was
    code, out, _ = run([*cache, "run", str(nb_path), "--output", str(kernels / "out")], capsys)
    assert code == 0
    assert counts(out) == (4, 0, 4)
    assert nb_path.read_bytes() == source_bytes
    first = read(kernels / "out" / "analysis.ipynb")
    assert outputs(first) == plain
    assert len(first.cells) == len(CELLS)  # the check cell added for the run is gone
    assert [c.get("execution_count") for c in first.cells[1:]] == [1, 2, 3, 4]

    # second run, in place: every cell served, the same outputs as plain nbclient's
    code, out, _ = run([*cache, "run", str(nb_path), "-v"], capsys)
    assert code == 0
    assert counts(out) == (4, 4, 0)
    assert states(out) == {2: "served", 3: "served", 4: "served", 5: "served"}
    assert outputs(read(nb_path)) == plain
    assert "tore_nb" not in nb_path.read_text()  # no tcache note left in the outputs

    # an edit of the slow cell: it and the cell printing its result run, the others are served
    edited = list(CELLS)
    edited[2] = ("code", CELLS[2][1].replace("x * x", "x * x + 1"))
    write_notebook(nb_path, edited)
    code, out, _ = run([*cache, "run", str(nb_path), "-v"], capsys)
    assert code == 0
    assert counts(out) == (4, 2, 2)
    assert states(out) == {2: "served", 3: "ran", 4: "ran", 5: "served"}
    assert outputs(read(nb_path)) == outputs(plain_run(nb_path))
    assert outputs(read(nb_path))[2][0][2] == "sum of squares: 295\n"


# a notebook that shows tore_nb itself: its outputs are those of the kernel's own cache
OWN_TORE_NB = [
    ("code", "%load_ext tore_nb"),
    ("code", "%tcache config"),
    ("code", "%%tcache\nimport time\ntime.sleep(0.3)\nslow = 42"),
    ("code", "%%tcache\nimport time\ntime.sleep(0.3)\nslow = 42"),
    (
        "code",
        "import tore_nb\n\n@tore_nb.cached\ndef square(x):\n    time.sleep(0.02)\n"
        "    return x * x\n\nprint([square(x) for x in range(3)], square.cache_info().hits)",
    ),
    ("code", "hits = tore_nb.get_cache().snapshot().tiers['memory'].hits\nprint('hits', hits)"),
    ("code", "time.sleep(0.03)\ndoubled = slow * 2\nprint(doubled)"),
]
_TIMES = re.compile(r"\d+(\.\d+)? ?(s|ms|µs)\b")


def same_text(nb_outputs: list[list[tuple[Any, ...]]]) -> str:
    return _TIMES.sub("<time>", repr(nb_outputs))


def test_the_notebooks_own_tore_nb_shows_what_it_shows_in_a_plain_run(
    kernels: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The run caches in a cache of its own and loads its magics without marking the
    extension loaded: the notebook's `%load_ext tore_nb` is silent, `%tcache config` shows the
    notebook's settings, its `%%tcache` notes stay, its `@cached` calls and cache figures are
    a plain run's. Before, the run's own lookups showed in the figures, its notes replaced the
    notebook's, and a served cell that called a `@cached` function left the cache untouched."""
    from tore_nb.notebooks import run_notebook

    nb_path = write_notebook(kernels / "own.ipynb", OWN_TORE_NB)
    own_cache = kernels / "notebook-cache"
    monkeypatch.setenv("DISK_CACHE_PATH", str(own_cache))
    plain = outputs(plain_run(nb_path))
    assert "restored slow from memory" in repr(plain[3])  # the notebook's own %%tcache note
    for run_number in (1, 2):
        shutil.rmtree(own_cache)  # the notebook's own cache starts empty, as the plain run's
        done = run_notebook(nb_path, kernels / f"run{run_number}.ipynb", cache_dir=kernels / "c")
        assert done.ok, done.failure
        assert same_text(outputs(read(kernels / f"run{run_number}.ipynb"))) == same_text(plain)
    states = {c.index: (c.state, c.why()) for c in done.cells}
    assert states[7] == ("served", None)  # reads `slow`, which the %%tcache cells bound
    assert states[3][1] is not None and "%%tcache" in states[3][1]
    assert states[5] == (
        "ran",
        "not cached: it uses a tore_nb cache itself, which a replay would not do again",
    )
    # without -v, tore-nb run says why each cell that could not be served ran
    code, out, _ = run(["--cache-dir", str(kernels / "c2"), "run", str(nb_path)], capsys)
    assert code == 0
    assert "  cell 5 ran: not cached: it uses a tore_nb cache itself" in out
    assert "  cell 1 ran: not cached: magics and shell commands run as they are" in out


def test_failing_cell_exits_1_names_the_cell_and_keeps_the_notebook(
    kernels: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cells = [*CELLS[:2], ("code", "time.sleep(0.03)\nratio = 1 / 0"), CELLS[3]]
    nb_path = write_notebook(kernels / "broken.ipynb", cells)
    before = nb_path.read_bytes()
    cache = ["--cache-dir", str(kernels / "cache")]
    code, out, err = run([*cache, "run", str(nb_path)], capsys)
    assert code == 1
    assert "stopped at cell 3" in out
    assert "cell 3 failed: ZeroDivisionError: division by zero (in `time.sleep(0.03)`)" in err
    assert "ratio = 1 / 0" in err  # the cell's own traceback, not tcache's one-line re-raise
    assert nb_path.read_bytes() == before

    # --allow-errors: the run goes on and the notebook holds what plain nbclient's would
    code, out, _ = run([*cache, "run", str(nb_path), "--allow-errors"], capsys)
    assert code == 0, out
    assert counts(out) == (3, 1, 2)
    errors = [o for o in read(nb_path).cells[2].outputs if o.output_type == "error"]
    assert [(e.ename, e.evalue) for e in errors] == [("ZeroDivisionError", "division by zero")]


def test_no_cache_runs_plainly(kernels: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nb_path = write_notebook(kernels / "plain.ipynb", CELLS[:2])
    code, out, _ = run(
        ["--cache-dir", str(kernels / "c"), "run", "--no-cache", str(nb_path)], capsys
    )
    assert code == 0
    assert "1 cell ran (no cache)" in out
    assert not (kernels / "c").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["run", "no-such.ipynb"],
        ["run", "notes.txt"],
        ["run", "a.ipynb", "b.ipynb", "--output", "one.ipynb"],
        ["run", "a.ipynb", "--timeout", "0"],
    ],
)
def test_usage_errors_exit_2(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("a.ipynb", "b.ipynb", "notes.txt"):
        (tmp_path / name).write_text("{}")
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2


def test_the_runs_notes_are_counted_then_dropped_and_the_notebooks_own_stay() -> None:
    """The run's notes and its one-line re-raise leave the outputs; the cell's own error stays,
    and so do the notes and re-raise of a cell with its own %%tcache line (a plain run shows
    them)."""
    from tore_nb.notebooks import strip_run_notes

    error = {"output_type": "error", "ename": "ValueError", "evalue": "bad", "traceback": ["tb"]}
    reraise = {**error, "traceback": ["tcache: the cell raised ValueError; nothing was cached"]}
    note = {
        "output_type": "display_data",
        "metadata": {"tore_nb": {"status": "not-cached", "run": True}},
        "data": {"text/plain": "tcache: not cached: it shows interactive widgets"},
    }
    own = {
        "output_type": "display_data",
        "metadata": {"tore_nb": {"status": "hit"}},
        "data": {"text/plain": "tcache: restored n from memory (saved 2.00 s)"},
    }
    shown = {"output_type": "stream", "name": "stdout", "text": "hello\n"}
    cell = {"source": "x = 1", "outputs": [shown, error, reraise, note]}
    assert strip_run_notes(cell) == [("not-cached", "not cached: it shows interactive widgets")]
    assert cell["outputs"] == [shown, error]
    cell = {"source": "%%tcache\nx = 1", "outputs": [own, error, reraise]}
    assert strip_run_notes(cell) == []
    assert cell["outputs"] == [own, error, reraise]
