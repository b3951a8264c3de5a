"""Class 3, names bound elsewhere: a function defined in another cell binds globals (`global`,
`globals()[k] = v`, `exec`), called from a cached cell; a name bound only on a path not taken
(if, try, empty for, match, while, walrus in an empty comprehension) with an earlier value."""

# ruff: noqa: E501  (cells are data: one string each, as a notebook shows them)

from __future__ import annotations

from .harness import Scenario, restarts, uncached

GROUP = "bindings"


def S(name: str, cells: list[str], *edits: dict[str, object], **kw: object) -> Scenario:
    return restarts(f"bindings-{name}", cells, *edits, group=GROUP, **kw)  # type: ignore[arg-type]


SCENARIOS: list[Scenario] = [
    S(
        "global-statement-in-function",
        [
            "import pandas as pd\ndef load():\n    global df\n    df = pd.DataFrame({'a': [1, 2]})",
            "load()",
            "print(df)",
        ],
        {
            "cells": {
                0: "import pandas as pd\ndef load():\n    global df\n    df = pd.DataFrame({'a': [3, 4]})"
            }
        },
    ),
    S(
        "global-counter",
        [
            "count = 0\ndef bump():\n    global count\n    count += 1",
            "bump()\nbump()",
            "print(count)",
        ],
    ),
    S(
        "globals-setitem-in-function",
        ["def define(k, v):\n    globals()[k] = v", "define('threshold', 0.5)", "print(threshold)"],
        {"cells": {1: "define('threshold', 0.75)"}},
    ),
    S(
        "globals-setitem-in-cell",
        ["globals()['alpha'] = 3", "print(alpha * 2)"],
        {"cells": {0: "globals()['alpha'] = 4"}},
    ),
    S("globals-update", ["globals().update({'p': 1, 'q': 2})", "print(p + q)"]),
    S("exec-in-cell", ["exec('z = 3')", "print(z)"], {"cells": {0: "exec('z = 4')"}}),
    S(
        "exec-in-function",
        [
            "def make(name, value):\n    exec(f'{name} = {value!r}', globals())",
            "make('w', 10)",
            "print(w)",
        ],
    ),
    S("setattr-main-module", ["import sys\nsetattr(sys.modules['__main__'], 'k', 7)", "print(k)"]),
    S("vars-setitem", ["vars()['m'] = 'mm'", "print(m)"]),
    S(
        "if-not-taken",
        ["x = 1", "flag = False", "if flag:\n    x = 2", "print(x)"],
        {"cells": {0: "x = 5"}},
    ),
    S(
        "if-not-taken-else-prints",
        [
            "value = 'old'",
            "if len('abc') > 5:\n    value = 'new'\nelse:\n    print('kept')",
            "print(value)",
        ],
        {"cells": {0: "value = 'older'"}},
    ),
    S(
        "try-bind-fails",
        [
            "x = 'start'",
            "try:\n    x = int('not a number')\nexcept ValueError:\n    pass",
            "print(x)",
        ],
        {"cells": {0: "x = 'begin'"}},
    ),
    S(
        "try-except-binds-only-on-error",
        [
            "status = 'ok'",
            "try:\n    n = int('12')\nexcept ValueError:\n    status = 'bad'",
            "print(status, n)",
        ],
        {"cells": {0: "status = 'fine'"}},
    ),
    S(
        "empty-for",
        ["item = 'none yet'", "for item in []:\n    pass", "print(item)"],
        {"cells": {0: "item = 'still none'"}},
    ),
    S(
        "for-over-empty-filter",
        [
            "last = -1\ndata = [1, 3, 5]",
            "for last in [d for d in data if d % 2 == 0]:\n    pass",
            "print(last)",
        ],
        {"cells": {0: "last = -2\ndata = [1, 3, 5]"}},
    ),
    S(
        "while-not-entered",
        ["y = 10", "while False:\n    y = 0", "print(y)"],
        {"cells": {0: "y = 11"}},
    ),
    S(
        "match-case-not-taken",
        [
            "mode = 'fast'\nspeed = 1",
            "match mode:\n    case 'slow':\n        speed = 0\n    case _:\n        pass",
            "print(speed)",
        ],
        {"cells": {0: "mode = 'fast'\nspeed = 2"}},
    ),
    S(
        "walrus-in-empty-comprehension",
        ["last = 'initial'", "_ = [(last := v) for v in []]", "print(last)"],
        {"cells": {0: "last = 'changed'"}},
    ),
    S(
        "walrus-in-comprehension-taken",
        ["last = 'initial'", "_ = [(last := v) for v in [1, 2]]", "print(last)"],
    ),
    S(
        "with-as-not-reached",
        [
            "import contextlib\nhandle = 'before'",
            "if False:\n    with contextlib.nullcontext(5) as handle:\n        pass",
            "print(handle)",
        ],
        {"cells": {0: "import contextlib\nhandle = 'before, edited'"}},
    ),
    S(
        "del-on-path-not-taken",
        ["tmp = 1", "if False:\n    del tmp", "print(tmp)"],
        {"cells": {0: "tmp = 2"}},
    ),
    S(
        "import-on-path-not-taken",
        ["json = 'a string'", "if False:\n    import json", "print(json)"],
        {"cells": {0: "json = 'another string'"}},
    ),
    S(
        "def-on-path-not-taken",
        [
            "def f():\n    return 'first'",
            "if False:\n    def f():\n        return 'second'",
            "print(f())",
        ],
        {"cells": {0: "def f():\n    return 'first, edited'"}},
    ),
    S(
        "conditional-on-upstream-flag",
        ["flag = True\nx = 0", "if flag:\n    x = 1", "print(x)"],
        {"cells": {0: "flag = False\nx = 3"}},
    ),
    S(
        "for-break-before-bind",
        [
            "found = None\nitems = [1, 2, 3]",
            "for v in items:\n    if v > 5:\n        found = v\n        break",
            "print(found)",
        ],
        {"cells": {0: "found = 'nothing'\nitems = [1, 2, 3]"}},
    ),
]

# names bound through globals(), vars() or exec: tore_nb cannot see what such a cell reads
SCENARIOS = uncached(
    SCENARIOS,
    [
        "bindings-globals-setitem-in-function",
        "bindings-globals-setitem-in-cell",
        "bindings-globals-update",
        "bindings-exec-in-function",
        "bindings-vars-setitem",
        "bindings-setattr-main-module",
    ],
    "reads names through globals()/vars()/exec",
)
