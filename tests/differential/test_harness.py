"""The harness itself: normalisation, cell rewriting, and that it sees differences (a plain run
compared with another plain run agrees; a doctored result does not)."""

from __future__ import annotations

import copy
from typing import Any

from .harness import (
    ForkServer,
    Scenario,
    Session,
    cached_source,
    compare,
    describe_namespace,
    normalise_events,
    restarts,
)


def test_cached_source_is_the_one_rewrite() -> None:
    assert cached_source("x = 1\n", "tcache") == "%%tcache\nx = 1\n"
    assert cached_source("x = 1\n", "plain") == "x = 1\n"
    assert cached_source("x = 1\n", "auto") == "x = 1\n"
    own = "%%tcache --files a.csv\nx = 1\n"
    assert cached_source(own, "tcache") == own and cached_source(own, "plain") == "x = 1\n"


def test_normalisation_drops_only_tore_nb_lines_and_blurs_timings() -> None:
    dropped: list[str] = []
    events: list[list[Any]] = [
        ["stdout", "a\ntcache: x restored from disk in 1 ms\n"],
        ["display", {"text/plain": "tcache: x restored from memory"}],
        ["stdout", "b\n"],
        ["stderr", "tcache:1: CacheWarning: cell not cached: lock\n  warnings.warn(x)\nreal\n"],
        ["stdout", "CPU times: user 1.2 ms, sys: 30 µs, total: 1.23 ms\nWall time: 2 s\n"],
        ["stdout", "\r1\r2\n<object at 0x7f00deadbeef>\n"],
    ]
    assert normalise_events(events, dropped) == [
        ["stdout", "a\nb\n"],
        ["stderr", "real\n"],
        ["stdout", "CPU times: user N, sys: N, total: N\nWall time: N\n2\n<object at 0x?>\n"],
    ]
    assert len(dropped) == 4


def test_namespace_description_is_order_and_alias_sensitive() -> None:
    a = [1]
    one = describe_namespace({"d": {"x": 1, "y": 2}, "a": a, "b": a})
    two = describe_namespace({"d": {"y": 2, "x": 1}, "a": a, "b": list(a)})
    assert one["d"] != two["d"] and one["b"] == "<same as a>" and two["b"] == "list[1]"


def test_plain_runs_are_reproducible_and_differences_are_seen(server: ForkServer) -> None:
    scenario = restarts(
        "harness-self-check",
        [
            "import numpy as np\nimport random\nimport matplotlib.pyplot as plt",
            "noise = np.random.rand(3)\npick = random.random()\nprint(noise, pick)",
            "plt.figure(figsize=(2, 2))\nplt.plot(noise)\nplt.show()",
            "1 / 0",
        ],
        warm=False,
    )
    first, second = server.run_many([(scenario, "plain"), (scenario, "plain")])
    assert compare(scenario, first, second) == []
    doctored = copy.deepcopy(second)
    doctored[0]["cells"][1]["events"][0][1] = "something else\n"
    doctored[0]["namespace"]["pick"] = "0.5"
    diffs = compare(scenario, first, doctored)
    assert [d.where for d in diffs] == ["cell 1", "namespace"]
    assert "harness-self-check: session 0, cell 1: output 0: plain" in str(diffs[0])


def test_sessions_share_files_and_env_and_see_edits(server: ForkServer) -> None:
    cells = ["import os\nprint(open('f.txt').read(), os.environ.get('V'))"]
    scenario = Scenario(
        "harness-files-env",
        [
            Session(cells, files={"f.txt": "one"}, env={"V": "1"}),
            Session(cells),
            Session(cells, files={"f.txt": "two"}, env={"V": None}),
        ],
    )
    [runs] = server.run_many([(scenario, "plain")])
    printed = [r["cells"][0]["events"][0][1] for r in runs]
    assert printed == ["one 1\n", "one 1\n", "two None\n"]
