"""Every notebook in notebooks/ runs top to bottom on a fresh kernel (nbclient), isolated: its own
disk cache directory, signing secret and XDG directories, no Redis or S3 from the environment;
and its saved outputs are what that fresh run shows, but for what varies from run to run
(timings, temporary paths, addresses, ports: see `normalise`). notebooks/execute.py, which saves
them through `tore-nb run`, saves the same outputs when a cache it kept serves cells."""

from __future__ import annotations

import difflib
import importlib.util
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support import REPO, missing

NOTEBOOKS = REPO / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))
ISOLATE = ("REDIS_URL", "REDIS_HOST", "S3_CACHE_BUCKET", "S3_ENDPOINT_URL", "TORE_NB_TIERS")


def _execute_module() -> Any:
    spec = importlib.util.spec_from_file_location("notebooks_execute", NOTEBOOKS / "execute.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_four_notebooks_are_there() -> None:
    names = {p.name for p in PATHS}
    assert {"quickstart.ipynb", "tiers.ipynb", "incremental.ipynb", "dashboard.ipynb"} <= names


def _kernel_ready() -> None:
    try:
        import nbclient  # noqa: F401
        from jupyter_client.kernelspec import KernelSpecManager
    except ImportError:
        missing("nbclient (pip install -e '.[test]')")
    if "python3" not in KernelSpecManager().find_kernel_specs():
        missing("a python3 kernel (pip install ipykernel)")


@dataclass
class Executed:
    path: Path
    nb: Any  # the notebook as run, live-widget views dropped as notebooks/execute.py saves it
    cache: Path  # the kernel's DISK_CACHE_PATH
    failure: str | None


@pytest.fixture(scope="module", params=PATHS, ids=[p.stem for p in PATHS])
def executed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Executed:
    """The notebook run once on a fresh kernel; the kernel inherits this process's environment,
    with every cache path pointed at a temporary folder."""
    _kernel_ready()
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    path: Path = request.param
    tmp = tmp_path_factory.mktemp(path.stem)
    with pytest.MonkeyPatch.context() as env:
        for var in ISOLATE:
            env.delenv(var, raising=False)
        # the kernel imports the tore_nb of this checkout, whatever else is installed
        pythonpath = os.environ.get("PYTHONPATH")
        env.setenv(
            "PYTHONPATH", os.pathsep.join([str(REPO), *([pythonpath] if pythonpath else [])])
        )
        env.setenv("DISK_CACHE_PATH", str(tmp / "cache"))
        env.setenv("XDG_CACHE_HOME", str(tmp / "xdg-cache"))
        env.setenv("XDG_CONFIG_HOME", str(tmp / "xdg-config"))
        env.setenv("TORE_NB_SECRET", "notebook-test-secret-0123456789abcdef")
        env.setenv("RAY_DISABLE_IMPORT_WARNING", "1")
        env.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")
        nb = nbformat.read(path, as_version=4)
        client = NotebookClient(
            nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(NOTEBOOKS)}}
        )
        failure = None
        try:
            client.execute()
        except CellExecutionError as exc:
            failure = f"{path.name} failed:\n{str(exc)[-3000:]}"
    _execute_module().static_outputs(nb)
    return Executed(path, nb, tmp / "cache", failure)


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_notebook_runs_top_to_bottom(executed: Executed) -> None:
    if executed.failure:
        pytest.fail(executed.failure, pytrace=False)
    nb, path = executed.nb, executed.path
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
        assert any(executed.cache.iterdir())


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_saved_outputs_are_those_of_a_fresh_run(executed: Executed) -> None:
    import nbformat

    if executed.failure:
        pytest.skip("the notebook fails: see test_notebook_runs_top_to_bottom")
    saved = outputs_text(nbformat.read(executed.path, as_version=4), executed.path.name)
    fresh = outputs_text(executed.nb, executed.path.name)
    if saved != fresh:
        diff = difflib.unified_diff(
            saved.splitlines(), fresh.splitlines(), "saved", "fresh run", lineterm="", n=1
        )
        pytest.fail(
            f"{executed.path.name}: the saved outputs are not those of a fresh run "
            f"(normalised; update them with `python notebooks/execute.py {executed.path.name}`):\n"
            + "\n".join(list(diff)[:80]),
            pytrace=False,
        )


# a notebook of what a docs notebook holds besides side effects: cells a kept cache serves
SERVED = [
    "import time\nimport numpy as np\n\ntime.sleep(0.1)\nsquares = np.arange(10) ** 2",
    "time.sleep(0.02)\nprint('sum of squares:', int(squares.sum()))",
    "from IPython.display import HTML\n\ntime.sleep(0.02)\nHTML(f'<b>{len(squares)} squares</b>')",
    "time.sleep(0.02)\nstarted = time.perf_counter()\nmarker = object()\nmarker",
    "import subprocess\n\nprint(subprocess.run(['echo', 'hi'], capture_output=True).stdout)",
]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_second_execute_with_the_same_cache_serves_cells_and_saves_the_same_notebook(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`execute.py --cache DIR` twice: the second run serves every cell it can, says why each
    other one ran, and saves the notebook byte for byte as the first did (times, addresses and
    temporary paths aside), which is what a fresh run shows. The same for a notebook of
    notebooks/ (its outputs compared as the saved ones are)."""
    _kernel_ready()
    import nbformat

    module = _execute_module()
    nb: Any = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nb.cells = [nbformat.v4.new_code_cell(source) for source in SERVED]
    path = tmp_path / "small.ipynb"
    nbformat.write(nb, path)
    real = tmp_path / "quickstart.ipynb"
    shutil.copy(NOTEBOOKS / "quickstart.ipynb", real)
    cache = tmp_path / "kept-cache"

    assert module.main([str(path), str(real), "--cache", str(cache)]) == 0
    first = path.read_text()
    first_real = outputs_text(nbformat.read(real, as_version=4), real.name)
    capsys.readouterr()
    assert module.main([str(path), str(real), "--cache", str(cache)]) == 0
    out = capsys.readouterr().out
    assert "small.ipynb: 5 cells, 4 served from the cache, 1 ran" in out
    assert "  cell 5 ran: not cached: it starts a process (echo)" in out
    # `total` alone may be served, or run as cheaper than its hit: that depends on timing;
    # every other cell of quickstart runs, each saying why
    assert re.search(r"quickstart\.ipynb: 8 cells, [01] served from the cache, [78] ran", out), out
    ran = set(re.findall(r"(?m)^  cell (\d+) ran: ", out.split("quickstart.ipynb")[1]))
    assert {"3", "5", "7", "9", "12", "14", "16"} <= ran, out
    assert "  cell 14 ran: not cached: it uses a tore_nb cache itself" in out  # @cached
    assert normalise(path.read_text()) == normalise(first)
    assert outputs_text(nbformat.read(real, as_version=4), real.name) == first_real
    saved = nbformat.read(path, as_version=4)
    assert "<object at 0x" in json.dumps(saved.cells[3].outputs)  # replayed as it was shown
    assert (cache / "key").stat().st_mode & 0o077 == 0  # the kept cache's key is this user's


# What varies from one run of a notebook to the next, found by running each twice. Each pattern
# becomes its placeholder; after them, runs of spaces become one (aligned tables are padded to
# their widest value).
_TMP = re.escape(tempfile.gettempdir().rstrip("/"))
VARIES: list[tuple[str, str]] = [
    (_TMP + r"/[^\s'\"<>)\]]*", "<tmp>"),  # temporary folders of the run
    (r"\b0x[0-9a-fA-F]{6,}\b", "0x<addr>"),  # object addresses
    (r"\b(127\.0\.0\.1|localhost):\d+", r"\1:<port>"),  # servers on free loopback ports
    (r"\b\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d(\.\d+)?)?\b", "<date>"),  # timestamps
    (r"\bpid[=: ]+\d+", "pid=<pid>"),  # process ids
    (r"-?\b\d+(\.\d+)?\s?(ms|µs|us|s|seconds)\b", "<time>"),  # durations: "0.52 s", "12.3 ms"
    (r"\b\d+\.\d{3,}\b", "<float>"),  # measured floats: seconds, latencies, Redis' memory
    # Ray's notice, printed or not depending on what an earlier Ray left in the home folder
    (r"(?m)^Token authentication is enabled for this Ray cluster\..*$\n?", ""),
]
# In one notebook only: what depends on timing there.
VARIES_IN: dict[str, list[tuple[str, str]]] = {
    # the seconds of a run's summary row, however many decimals they have (0.53, 0.531)
    "incremental.ipynb": [
        (r"(?m)^((?:\d+\s+)?report\.pdf\s+\w+\s+\S+(?:\s+\d+){10}\s+)\d+(\.\d+)?", r"\1<float>")
    ],
    # `%tcache stats`: the p50 and p95 latencies, with as many decimals as pandas gives them
    # (0.01 and 0.016 alike)
    "quickstart.ipynb": [
        (
            r"(?m)^((?:memory|disk)\s+\S+\s+\d+\s+\d+\s+\d+\s+\S+\s+)\S+\s+\S+",
            r"\1<ms> <ms>",
        )
    ],
    # the dashboard's charts: their axes follow the latencies and times measured
    "dashboard.ipynb": [(r'(?s)<svg[^>]*class="tore-nb-chart".*?</svg>', "<chart>")],
    # Redis killed: how many calls probe it before it is back depends on how long cells take
    # (the breaker's pause starts at 0.25 s); so do the errors and size of its dashboard row
    "tiers.ipynb": [
        (r"errors=\d+", "errors=<n>"),
        (
            r"(?m)^(redis\s+\S+\s+\S+\s+\d+\s+\d+\s+\d+\s+)\S+(\s+\S+\s+\S+\s+)\d+",
            r"\1<size>\2<errors>",
        ),
    ],
}


def normalise(text: str, name: str = "") -> str:
    for pattern, placeholder in [*VARIES_IN.get(name, []), *VARIES]:
        text = re.sub(pattern, placeholder, text)
    return "\n".join(re.sub(r"[ \t]+", " ", line).rstrip() for line in text.splitlines())


def outputs_text(nb: Any, name: str = "") -> str:
    """A code cell's outputs as comparable text: each stream (stdout, stderr: their interleaving
    varies) joined, then each rich output by MIME type. HTML and SVG are compared with every
    number masked: their text forms carry the figures, HTML its structure and words."""
    lines = []
    code = [c for c in nb.cells if c.cell_type == "code"]
    for number, cell in enumerate(code, 1):
        streams: dict[str, str] = {}
        rich = []
        for output in cell.get("outputs", []):
            kind = output["output_type"]
            if kind == "stream":
                streams[output["name"]] = streams.get(output["name"], "") + output["text"]
            elif kind == "error":
                rich.append(f"error {output['ename']}: {output['evalue']}")
            else:
                for mime, value in sorted(output.get("data", {}).items()):
                    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
                    text = normalise(text, name)
                    if mime in ("text/html", "image/svg+xml"):  # 0.53 and 0.531 alike
                        text = re.sub(r"\d+(\.\d+)?", "#", text).replace("<float>", "#")
                    rich.append(f"{kind} {mime}:\n{text}")
        lines.append(
            f"--- code cell {number}: {cell.source.splitlines()[0] if cell.source else ''}"
        )
        for stream, text in sorted(streams.items()):
            if normalise(text, name).strip():
                lines.append(f"{stream}:\n{normalise(text, name)}")
        lines += rich
    return "\n".join(lines)


def test_normalised_outputs_ignore_timings_paths_and_ports_but_not_counts() -> None:
    tmp = tempfile.gettempdir()
    one = f"saved 3.11 s in {tmp}/tore-nb-execute-ab12/cache at 0x7f3a2b1c9d40, 127.0.0.1:36759"
    two = f"saved 0.52 s in {tmp}/pytest-of-me/pytest-3/x0/cache at 0x7f00aa11bb22, 127.0.0.1:5"
    assert normalise(one) == normalise(two)
    table = "memory  closed  50.0%  10  10  0.008  0.025"
    assert normalise(table) == normalise("memory  closed  50.0%  10  10  0.012  0.310")
    assert normalise(table) != normalise("memory  closed  40.0%  10  15  0.008  0.025")


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
    "dashboard.ipynb": (
        # 20 calls: memory serves 10 and misses 10; disk serves 5 of those and misses 5
        "20 requests, 15 hits, 5 misses",
        "hits per tier: {'memory': 10, 'disk': 5}",
    ),
}
