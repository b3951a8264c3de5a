"""Class 2, mutation by any call: a cell changes an object it did not bind (`model.fit`,
`xs.sort()`, `rng.normal()`, `heapq.heappush`, ...), later cells see the change; after a restart
a hit must leave the object as a plain run would."""

# ruff: noqa: E501  (cells are data: one string each, as a notebook shows them)

from __future__ import annotations

from .harness import Scenario, restarts

GROUP = "mutation"


def S(name: str, cells: list[str], *edits: dict[str, object], **kw: object) -> Scenario:
    return restarts(f"mutation-{name}", cells, *edits, group=GROUP, **kw)  # type: ignore[arg-type]


SCENARIOS: list[Scenario] = [
    S(
        "sklearn-fit-then-predict",
        [
            "import numpy as np\nfrom sklearn.linear_model import LinearRegression",
            "X = np.arange(10).reshape(-1, 1)\ny = 2 * X.ravel() + 1",
            "model = LinearRegression()",
            "model.fit(X, y)",
            "pred = model.predict([[20]])\nprint(pred.round(6))",
        ],
        {"cells": {1: "X = np.arange(10).reshape(-1, 1)\ny = 3 * X.ravel() + 1"}},
    ),
    S(
        "sklearn-fit-no-output-then-score",
        [
            "from sklearn.datasets import load_iris\nfrom sklearn.tree import DecisionTreeClassifier",
            "X, y = load_iris(return_X_y=True)\ntree = DecisionTreeClassifier(max_depth=2, random_state=0)",
            "_ = tree.fit(X, y)",
            "print(round(tree.score(X, y), 4), tree.get_depth())",
        ],
    ),
    S(
        "sklearn-scaler-fit-transform-later",
        [
            "import numpy as np\nfrom sklearn.preprocessing import StandardScaler",
            "data = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 60.0]])\nscaler = StandardScaler()",
            "scaler.fit(data)",
            "scaled = scaler.transform(data).round(4)\nscaled",
        ],
        {
            "cells": {
                1: "data = np.array([[1.0, 10.0], [2.0, 20.0], [5.0, 60.0]])\nscaler = StandardScaler()"
            }
        },
    ),
    S(
        "sklearn-pipeline-fit",
        [
            "from sklearn.datasets import load_wine\nfrom sklearn.pipeline import make_pipeline\nfrom sklearn.preprocessing import StandardScaler\nfrom sklearn.linear_model import LogisticRegression",
            "X, y = load_wine(return_X_y=True)\npipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))",
            "pipe.fit(X, y)\nprint('fitted')",
            "print(round(pipe.score(X, y), 4))",
        ],
    ),
    S("list-sort", ["xs = [3, 1, 2]", "xs.sort()", "print(xs)"], {"cells": {0: "xs = [9, 1, 5]"}}),
    S(
        "list-sort-reverse-edit",
        ["xs = [3, 1, 2]", "xs.sort()", "print(xs)"],
        {"cells": {1: "xs.sort(reverse=True)"}},
    ),
    S(
        "list-append-in-loop",
        ["acc = []", "for i in range(3):\n    acc.append(i * i)", "print(acc)"],
        {"cells": {1: "for i in range(4):\n    acc.append(i * i)"}},
    ),
    S(
        "list-extend-via-function",
        [
            "def add_all(target, items):\n    target.extend(items)",
            "bag = [0]",
            "add_all(bag, [1, 2])",
            "print(bag)",
        ],
    ),
    S("list-pop", ["stack = [1, 2, 3]", "top = stack.pop()", "print(top, stack)"]),
    S("list-reverse", ["seq = list('abc')", "seq.reverse()", "''.join(seq)"]),
    S(
        "array-fill",
        ["import numpy as np\narr = np.arange(5)", "arr.fill(0)", "arr"],
        {"cells": {0: "import numpy as np\narr = np.arange(6)"}},
    ),
    S(
        "array-sort-in-place",
        ["import numpy as np\nv = np.array([3, 1, 2])", "v.sort()", "print(v)"],
    ),
    S(
        "array-setitem",
        ["import numpy as np\ngrid = np.zeros((2, 2))", "grid[0, 1] = 5", "grid.sum()"],
    ),
    S(
        "array-shuffle",
        [
            "import numpy as np\nnp.random.seed(3)\ndeck = np.arange(6)",
            "np.random.shuffle(deck)",
            "print(deck)",
        ],
    ),
    S(
        "array-out-param",
        ["import numpy as np\nbuf = np.ones(3)", "np.multiply(buf, 4, out=buf)", "buf"],
    ),
    S(
        "set-difference-update",
        ["s = {1, 2, 3}\nt = {2}", "s.difference_update(t)", "print(sorted(s))"],
        {"cells": {0: "s = {1, 2, 3}\nt = {3}"}},
    ),
    S("set-add", ["seen = set()", "seen.add('x')\nseen.add('y')", "print(sorted(seen))"]),
    S(
        "dict-update",
        ["cfg = {'lr': 0.1}", "cfg.update(epochs=3)", "print(cfg)"],
        {"cells": {1: "cfg.update(epochs=5)"}},
    ),
    S("dict-setitem-in-later-cell", ["cfg = {}", "cfg['lr'] = 0.01", "print(cfg)"]),
    S(
        "dict-setdefault",
        [
            "groups = {}",
            "for w in ['apple', 'avocado', 'bean']:\n    groups.setdefault(w[0], []).append(w)",
            "print(groups)",
        ],
    ),
    S("dict-pop", ["d = {'a': 1, 'b': 2}", "gone = d.pop('a')", "print(gone, d)"]),
    S(
        "numpy-generator-two-cells",
        [
            "import numpy as np\nrng = np.random.default_rng(0)",
            "a = rng.normal()",
            "b = rng.normal()",
            "print(round(a, 6), round(b, 6))",
        ],
        {"cells": {2: "b = rng.normal() * 1"}},
        warm_hits=False,
    ),
    S(
        "numpy-generator-edit-first-draw",
        [
            "import numpy as np\nrng = np.random.default_rng(7)",
            "first = rng.integers(0, 100, 3)",
            "second = rng.integers(0, 100, 3)\nprint(first, second)",
        ],
        {"cells": {1: "first = rng.integers(0, 100, 2)"}},
    ),
    S(
        "random-shuffle",
        ["import random\nrandom.seed(5)\nxs = list(range(8))", "random.shuffle(xs)", "print(xs)"],
        {"cells": {0: "import random\nrandom.seed(6)\nxs = list(range(8))"}},
    ),
    S(
        "random-instance",
        [
            "import random\nr = random.Random(1)",
            "x = r.random()",
            "y = r.random()\nprint(round(x, 6), round(y, 6))",
        ],
    ),
    S(
        "heappush",
        ["import heapq\nh = [5, 9]", "heapq.heappush(h, 1)", "print(h, heapq.heappop(h))"],
        {"cells": {1: "heapq.heappush(h, 7)"}},
    ),
    S("heapify", ["import heapq\nh = [5, 3, 9, 1]", "heapq.heapify(h)", "print(h[0])"]),
    S(
        "setattr",
        ["class Box:\n    pass\nobj = Box()", "setattr(obj, 'a', 1)", "print(obj.a)"],
        {"cells": {1: "setattr(obj, 'a', 2)"}},
    ),
    S(
        "attribute-assignment",
        ["class Cfg:\n    debug = False\ncfg = Cfg()", "cfg.debug = True", "print(cfg.debug)"],
    ),
    S(
        "method-mutates-self",
        [
            "class Counter:\n    def __init__(self):\n        self.n = 0\n    def tick(self):\n        self.n += 1\nc = Counter()",
            "c.tick()\nc.tick()",
            "print(c.n)",
        ],
    ),
    S(
        "next-iterator",
        ["it = iter([1, 2, 3])", "first = next(it)", "rest = list(it)\nprint(first, rest)"],
        warm_hits=False,
    ),
    S(
        "next-generator",
        [
            "def gen():\n    yield from range(5)\ng = gen()",
            "a = next(g)\nb = next(g)",
            "print(a, b, list(g))",
        ],
        warm_hits=False,
    ),
    S(
        "deque-rotate",
        [
            "from collections import deque\ndq = deque([1, 2, 3, 4])",
            "dq.rotate(1)",
            "print(list(dq))",
        ],
    ),
    S(
        "counter-update",
        [
            "from collections import Counter\nc = Counter('aab')",
            "c.update('bbb')",
            "c.most_common()",
        ],
    ),
    S(
        "dataframe-inplace-sort",
        [
            "import pandas as pd\ndf = pd.DataFrame({'a': [3, 1, 2]})",
            "df.sort_values('a', inplace=True)",
            "print(df)",
        ],
    ),
    S(
        "dataframe-inplace-rename",
        [
            "import pandas as pd\ndf = pd.DataFrame({'a': [1]})",
            "df.rename(columns={'a': 'alpha'}, inplace=True)",
            "print(list(df.columns))",
        ],
    ),
    S(
        "dataframe-drop-inplace",
        [
            "import pandas as pd\ndf = pd.DataFrame({'a': [1, 2], 'b': [3, 4]})",
            "df.drop(columns=['b'], inplace=True)",
            "df",
        ],
    ),
    S(
        "dataframe-new-column",
        [
            "import pandas as pd\ndf = pd.DataFrame({'a': [1, 2]})",
            "df['b'] = df['a'] * 10",
            "print(df)",
        ],
        {"cells": {1: "df['b'] = df['a'] * 100"}},
    ),
    S(
        "dataframe-loc-set",
        [
            "import pandas as pd\ndf = pd.DataFrame({'a': [1, 2]})",
            "df.loc[0, 'a'] = 99",
            "print(df)",
        ],
    ),
    S(
        "dataframe-fillna-inplace",
        [
            "import numpy as np\nimport pandas as pd\ndf = pd.DataFrame({'a': [1.0, np.nan]})",
            "df.fillna(0, inplace=True)",
            "df",
        ],
    ),
    S(
        "function-appends-to-global-list",
        [
            "log = []\ndef record(msg):\n    log.append(msg)",
            "record('start')",
            "record('stop')",
            "print(log)",
        ],
    ),
    S(
        "mutation-through-helper-module",
        ["from helpers import normalise\nvals = [2.0, 6.0]", "normalise(vals)", "print(vals)"],
        modules={
            "helpers": "def normalise(xs):\n    total = sum(xs)\n    for i, x in enumerate(xs):\n        xs[i] = x / total\n"
        },
    ),
    S("bytearray-extend", ["buf = bytearray(b'ab')", "buf.extend(b'cd')", "print(bytes(buf))"]),
    S("list-del-item", ["xs = [1, 2, 3]", "del xs[0]", "print(xs)"]),
    S("list-slice-assign", ["xs = [1, 2, 3, 4]", "xs[1:3] = [0]", "print(xs)"]),
    S(
        "array-augmented-in-place-view",
        ["import numpy as np\nm = np.ones((2, 3))", "row = m[0]\nrow += 5", "print(m)"],
    ),
]
