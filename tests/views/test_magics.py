"""%%tcache and %tcache against a real IPython InteractiveShell."""

from __future__ import annotations

import doctest
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import tore_nb
import tore_nb.magics
from tests.support import out, run, status_lines
from tore_nb.cells import CacheWarning
from tore_nb.config import CacheConfig
from tore_nb.magics import TcacheMagics, parse_ttl

CELL = """%%tcache
import math
from IPython.display import display, HTML
print("first", n)
display(HTML("<b>middle</b>"))
root = math.sqrt(n)
print("last")
root * 2
"""


def test_extension_registers_and_unregisters(ip: Any) -> None:
    assert ip.find_cell_magic("tcache") is not None
    assert ip.find_line_magic("tcache") is not None
    ip.run_line_magic("unload_ext", "tore_nb")
    assert ip.find_cell_magic("tcache") is None and ip.find_line_magic("tcache") is None
    ip.run_line_magic("load_ext", "tore_nb")
    assert ip.find_cell_magic("tcache") is not None
    assert sum(isinstance(c, TcacheMagics) for c in ip.configurables) == 1


def test_miss_then_hit_replays_outputs_in_order(
    ip: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    run(ip, "n = 16")
    capsys.readouterr()
    run(ip, CELL)
    first = out(capsys)
    assert first == ["first 16", "<IPython.core.display.HTML object>", "last", "Out[1]: 8.0"]
    ip.user_ns.pop("root")
    ip.user_ns.pop("math")
    run(ip, CELL)
    second = out(capsys)
    assert second[:-1] == first
    [line] = status_lines(second)
    assert "root restored from memory" in line and "saved" in line
    assert ip.user_ns["root"] == 4.0 and ip.user_ns["math"].pi > 3


def test_kernel_restart_is_served_from_disk(
    ip: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    run(ip, "n = 4")
    run(ip, CELL)
    tore_nb.get_cache(CacheConfig.embedded(tmp_path / "cache"))  # a fresh process's cache
    ip.reset(new_session=False)
    run(ip, "n = 4")
    capsys.readouterr()
    run(ip, CELL)
    [line] = status_lines(out(capsys))
    assert "from disk" in line and ip.user_ns["root"] == 2.0


def test_upstream_values_and_functions_invalidate_comments_do_not(
    ip: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    run(ip, "def scale(v):\n    return v * 10\nn = 2")
    cell = "%%tcache\ny = scale(n)"
    run(ip, cell)
    run(ip, cell.replace("scale(n)", "scale( n )  # comment"))
    run(ip, "def scale(v):\n    # a comment-only edit of a helper\n    return v * 10")
    run(ip, cell)
    assert len(status_lines(out(capsys))) == 2  # two hits
    run(ip, "n = 3")
    run(ip, cell)
    assert status_lines(out(capsys)) == [] and ip.user_ns["y"] == 30
    run(ip, "def scale(v):\n    return v * 100")
    run(ip, cell)
    assert status_lines(out(capsys)) == [] and ip.user_ns["y"] == 300


def test_options_force_off_vars_deps_files_name(
    ip: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = tmp_path / "data.txt"
    data.write_text("1")
    run(ip, f"path = {str(data)!r}\nextra = 1")
    cell = (
        f"%%tcache --name loader --files {data} --deps extra --vars value --ttl 1h\n"
        "value = int(open(path).read())\nscratch = 5"
    )
    run(ip, cell)
    ip.user_ns.pop("value")
    ip.user_ns.pop("scratch")
    capsys.readouterr()
    run(ip, cell)
    assert len(status_lines(out(capsys))) == 1
    assert ip.user_ns["value"] == 1 and "scratch" not in ip.user_ns
    assert all(k.startswith("tcache:cell:loader:") for k in run(ip, "%tcache keys"))
    data.write_text("2")
    run(ip, cell)
    assert status_lines(out(capsys)) == [] and ip.user_ns["value"] == 2
    run(ip, "extra = 2")
    run(ip, cell)
    run(ip, cell.replace("--ttl 1h", "--force"))
    assert status_lines(out(capsys)) == []
    run(ip, "%%tcache --off\nfree = 1")
    run(ip, "%%tcache --off\nfree = 1")
    assert status_lines(out(capsys)) == []
    assert run(ip, "%tcache keys tcache:cell:free*") == []


def test_tiers_option_and_bad_arguments(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    run(ip, "%%tcache --tiers disk\nz = 1")
    run(ip, "%%tcache --tiers disk\nz = 1")
    assert "from disk" in status_lines(out(capsys))[0]
    for bad, message in [
        ("--tiers redis", "redis not enabled"),
        ("--ttl soon", "invalid TTL 'soon'"),
        ("--bogus", "unrecognized arguments: --bogus"),
        ("--vars 1x", "not a variable name"),
    ]:
        result = ip.run_cell(f"%%tcache {bad}\nz = 1")
        assert not result.success
        assert type(result.error_in_exec).__name__ == "UsageError"
        assert message in str(result.error_in_exec)
    assert parse_ttl("15m") == 900.0


def test_help_is_generated_from_the_arguments(ip: Any) -> None:
    doc = ip.find_cell_magic("tcache").__doc__
    assert doc is not None
    assert "%%tcache [--name NAME]" in doc
    for option in (
        "--ttl",
        "--tiers",
        "--force",
        "--off",
        "--vars",
        "--deps",
        "--files",
        "--explain",
    ):
        assert option in doc
    line_doc = ip.find_line_magic("tcache").__doc__
    assert line_doc is not None and "{stats,explain,clear,keys,config,dashboard,auto}" in line_doc


def test_line_magic_stats_keys_clear_config(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    run(ip, "%%tcache\na = 1")
    run(ip, "%%tcache\na = 1")
    stats = run(ip, "%tcache stats")
    assert isinstance(stats, pd.DataFrame) and stats["hits"].to_dict()["memory"] >= 1
    # the columns read first, rounded; every figure with --all, each with one plain name
    assert list(stats.columns) == [
        "hit rate %",
        "hits",
        "misses",
        "entries",
        "size MB",
        "p50 ms",
        "p95 ms",
        "errors",
        "breaker",
    ]
    hits, misses = stats.loc["memory", "hits"], stats.loc["memory", "misses"]
    assert stats.loc["memory", "hit rate %"] == round(100 * hits / (hits + misses), 1)
    assert stats.loc["memory", "p50 ms"] == round(stats.loc["memory", "p50 ms"], 3)
    everything = run(ip, "%tcache stats --all")
    assert len(everything.columns) == 17 and list(everything.columns[:9]) == list(stats.columns)
    assert {"failed verification", "refused writes", "promoted", "writes"} <= set(everything)
    assert "rejected" not in everything.columns and "corrupt" not in everything.columns
    keys = run(ip, "%tcache keys")
    assert len(keys) == 1 and keys[0].startswith("tcache:cell:a:")
    capsys.readouterr()
    run(ip, "%tcache clear")
    assert "removed" in capsys.readouterr().out
    assert run(ip, "%tcache keys") == []
    run(ip, "%tcache config")
    text = capsys.readouterr().out
    assert "TcacheMagics.ttl = None" in text and "CacheConfig(" in text
    assert not ip.run_cell("%tcache nonsense").success


def test_line_magic_dashboard(ip: Any) -> None:
    from tore_nb.widgets import CacheDashboard

    run(ip, "%%tcache\nb = 2")
    dash = run(ip, "%tcache dashboard")
    assert isinstance(dash, CacheDashboard)
    assert "memory" in dash._repr_html_()


def test_config_traits(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    run(ip, "%config TcacheMagics.verbose = False")
    run(ip, "%%tcache\nq = 1")
    run(ip, "%%tcache\nq = 1")
    assert status_lines(out(capsys)) == []
    run(ip, "%config TcacheMagics.enabled = False")
    run(ip, "%%tcache\nr = 1")
    assert run(ip, "%tcache keys tcache:cell:r:*") == []
    run(ip, "%config TcacheMagics.enabled = True")
    run(ip, "%config TcacheMagics.ttl = 0.2")
    run(ip, "%config TcacheMagics.tiers = ['disk']")
    run(ip, "%%tcache\nr = 1")
    assert len(run(ip, "%tcache keys tcache:cell:r:*")) == 1
    magics = tore_nb.magics._loaded[id(ip)]
    run(ip, "%config TcacheMagics.ttl = 'x'")  # IPython logs the trait error
    assert magics.ttl == 0.2 and magics.tiers == ["disk"]


def test_cache_config_trait_replaces_the_default_cache(ip: Any, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    run(ip, f"%config TcacheMagics.cache_config = {{'disk_cache_path': {str(target)!r}}}")
    assert tore_nb.get_cache().config.disk_cache_path == str(target)
    magics = tore_nb.magics._loaded[id(ip)]
    magics.cache_config = {}


def test_config_shows_no_password(
    ip: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = {
        "disk_cache_path": str(tmp_path / "c"),
        "redis_url": "redis://:CANARY1@127.0.0.1:1/0",
        "redis_password": "CANARY2",
    }
    magics = tore_nb.magics._loaded[id(ip)]
    magics.cache_config = settings
    try:
        capsys.readouterr()
        run(ip, "%tcache config")
        text = capsys.readouterr().out
        assert "redis://:***@127.0.0.1:1/0" in text and "CANARY" not in text
    finally:
        magics.cache_config = {}


def test_explain(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    run(ip, "x = 1\nk = 2")
    run(ip, "%%tcache --name total\ny = x + k")
    run(ip, "x = 5")
    capsys.readouterr()
    run(ip, "%%tcache --name total --explain\ny = x + k")
    assert "1 part(s) changed" in capsys.readouterr().out
    frame = run(ip, "%tcache explain total")
    changed = frame[frame.status != "unchanged"]
    assert list(changed.name) == ["x"] and list(changed.part) == ["input"]
    assert run(ip, "%tcache explain").equals(frame)
    # after a restart the stored pointer still tells what changed last time
    tore_nb.magics._loaded[id(ip)].history.clear()
    assert run(ip, "%tcache explain total").equals(frame)
    result = ip.run_cell("%tcache explain nothing_here")
    assert not result.success and "no cell named" in str(result.error_in_exec)


def test_a_failing_cell_fails_and_is_not_cached(
    ip: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    result = ip.run_cell("%%tcache\nw = 1\n1 / 0")
    assert not result.success and isinstance(result.error_in_exec, ZeroDivisionError)
    text = capsys.readouterr().out
    assert text.count("ZeroDivisionError: division by zero") == 1
    assert "nothing was cached" in text
    assert run(ip, "%tcache keys") == []


def test_unpicklable_variable_warns_and_is_not_cached(ip: Any) -> None:
    with pytest.warns(CacheWarning, match="variable 'lock' cannot be pickled"):
        run(ip, "%%tcache\nimport threading\nlock = threading.Lock()\ncount = 3")
    assert ip.user_ns["count"] == 3 and "lock" in ip.user_ns
    assert run(ip, "%tcache keys") == []


def test_cached_functions_in_the_notebook(ip: Any) -> None:
    run(
        ip,
        "from tore_nb import cached\ncalls = []\n"
        "@cached\ndef area(r):\n    calls.append(r)\n    return 3 * r * r",
    )
    assert run(ip, "area(2)") == run(ip, "area(2)") == 12
    assert ip.user_ns["calls"] == [2]
    key = run(ip, "area.__cache_key__(2)")
    run(ip, "@cached\ndef area(r):\n    # comment\n    calls.append(r)\n    return 3 * r * r")
    assert run(ip, "area.__cache_key__(2)") == key
    run(ip, "@cached\ndef area(r):\n    calls.append(r)\n    return 3.14 * r * r")
    assert run(ip, "area.__cache_key__(2)") != key
    assert run(ip, "area.cache_info().entries") == 1  # the first version's entry


def test_display_updates_and_clear_output_replay(
    ip: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    cell = (
        "%%tcache\nfrom IPython.display import display, clear_output\n"
        "h = display('one', display_id='d1')\nh.update('two')\nclear_output()\nv = 1"
    )
    run(ip, cell)
    first = out(capsys)
    run(ip, cell)
    second = out(capsys)
    assert second[:-1] == first and "v restored" in second[-1]


def test_doctests() -> None:
    assert doctest.testmod(tore_nb.magics).failed == 0


# -- the hit line and auto mode -------------------------------------------------------------------
def test_the_default_line_is_quiet_unless_it_matters(
    ip: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Trivial hits say nothing, a real saving one short line, a re-run what changed."""
    magics = tore_nb.magics._loaded[id(ip)]
    magics.verbose = False
    run(ip, "n = 1")
    run(ip, "%%tcache\nm = n + 1")
    run(ip, "%%tcache\nm = n + 1")
    assert [ln for ln in out(capsys) if ln.startswith("tcache:")] == []
    run(ip, "n = 2")
    run(ip, "%%tcache\nm = n + 1")
    assert out(capsys) == ["tcache: re-ran: n changed"]
    run(ip, "%%tcache\nimport time\ntime.sleep(0.3)\nslow = 1")
    run(ip, "%%tcache\nimport time\ntime.sleep(0.3)\nslow = 1")
    [line] = out(capsys)
    assert line.startswith("tcache: restored slow from memory (saved ")


def test_a_trailing_semicolon_hides_the_value(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    run(ip, "%%tcache\nxs = [1, 2]\nxs;")
    run(ip, "%%tcache\nxs = [1, 2]\nxs;")
    assert not any(ln.startswith("Out[") for ln in out(capsys))
    run(ip, "%%tcache\nys = [3]\nys")
    assert "Out[" in out(capsys)[-1]


def test_auto_caches_every_cell_and_leaves_cheap_ones_plain(
    ip: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    run(ip, "%tcache auto")
    slow = "import time\ntime.sleep(0.05)\nslow = [1]"
    run(ip, slow)
    run(ip, "cheap = 1")
    keys = run(ip, "%tcache keys tcache:cell:*")
    assert any(":slow:" in k for k in keys) and not any(":cheap:" in k for k in keys)
    capsys.readouterr()
    ip.user_ns.pop("slow")
    run(ip, slow)
    assert len(status_lines(out(capsys))) == 1 and ip.user_ns["slow"] == [1]

    def run_cell(code: str) -> str:  # named as IPython's caller of transform_cell is
        return str(ip.transform_cell(code))

    assert "tcache" not in run_cell("cheap = 1\n")  # known cheap: runs plainly
    assert "run_cell_magic('tcache', '--auto'" in run_cell("other = 2\n")
    for untouched in ("%%time\nx = 1\n", "%matplotlib inline\n", "!ls\n", "# note\n"):
        assert "'tcache'" not in run_cell(untouched)
    assert "tcache" not in ip.transform_cell("other = 2\n")  # %timeit's own transforms
    run(ip, "%tcache auto off")
    assert "tcache" not in run_cell("other = 2\n")


def test_auto_leaves_the_code_timing_magics_time_alone(
    ip: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """`%timeit f(x)` transforms `f(x)` through the shell: that is no cell to cache."""
    run(ip, "%tcache auto")
    run(ip, "%timeit -n 2 -r 1 sum(range(50))")
    assert "Out[" not in capsys.readouterr().out
    run(ip, "%tcache auto off")


def test_auto_notes_an_uncacheable_cell_once(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    run(ip, "%tcache auto")
    run(ip, "import time\ny = globals()['__name__']\ntime.sleep(0.01)")
    run(ip, "import time\ny = globals()['__name__']\ntime.sleep(0.01)")
    notes = [ln for ln in out(capsys) if ln.startswith("tcache: not cached")]
    assert len(notes) == 1 and "globals()" in notes[0]
    run(ip, "%tcache auto off")


def test_a_cell_that_raises_in_auto_mode_fails_as_plainly(ip: Any) -> None:
    run(ip, "%tcache auto")
    result = ip.run_cell("raise ValueError('boom')")
    assert not result.success and isinstance(result.error_in_exec, ValueError)
    run(ip, "%tcache auto off")
