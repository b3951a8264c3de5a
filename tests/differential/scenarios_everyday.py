"""Everyday notebooks: must agree with plain runs AND be all hits on a warm, unchanged session;
after an edit only the cells that depend on it run again."""

# ruff: noqa: E501  (cells are data: one string each, as a notebook shows them)

from __future__ import annotations

from .harness import Rerun, Scenario, Session, dedent, restarts

GROUP = "everyday"


def S(name: str, cells: list[str], *edits: dict[str, object], **kw: object) -> Scenario:
    return restarts(f"everyday-{name}", cells, *edits, group=GROUP, **kw)  # type: ignore[arg-type]


SCENARIOS: list[Scenario] = [
    S(
        "assignments",
        ["a = 1\nb = 2", "c = a + b\nprint(c)", "d = c * 10\nd"],
        {"cells": {0: "a = 5\nb = 2"}, "misses": {0, 1, 2}},
    ),
    S(
        "edit-one-cell-only-dependants-rerun",
        ["a = 1", "b = 10", "c = a + 1\nprint('c', c)", "d = b + 1\nprint('d', d)"],
        {"cells": {0: "a = 2"}, "misses": {0, 2}, "hits": {1, 3}},
        {"cells": {1: "b = 20"}, "misses": {1, 3}, "hits": {0, 2}},
    ),
    S(
        "comment-edit-is-a-hit",
        ["n = 7", "sq = n * n\nprint(sq)"],
        {"cells": {1: "sq = n * n  # the square\nprint(sq)"}, "hits": {0, 1}},
    ),
    S(
        "loop-then-use",
        ["total = 0\nfor i in range(10):\n    total += i", "print(total, i)"],
        {"cells": {0: "total = 0\nfor i in range(20):\n    total += i"}, "misses": {0, 1}},
    ),
    S(
        "while-loop",
        [
            "n = 27\nsteps = 0\nwhile n != 1:\n    n = n // 2 if n % 2 == 0 else 3 * n + 1\n    steps += 1",
            "print(steps)",
        ],
        {
            "cells": {
                0: "n = 9\nsteps = 0\nwhile n != 1:\n    n = n // 2 if n % 2 == 0 else 3 * n + 1\n    steps += 1"
            }
        },
    ),
    S(
        "function-defined-used-later",
        ["def sq(x):\n    return x * x", "ys = [sq(i) for i in range(5)]\nys", "print(sum(ys))"],
        {"cells": {0: "def sq(x):\n    return x * x * x"}, "misses": {0, 1, 2}},
    ),
    S(
        "function-with-default-argument",
        ["def scale(v, k=2):\n    return v * k", "out = scale(21)\nout"],
        {"cells": {0: "def scale(v, k=3):\n    return v * k"}, "misses": {1}},
    ),
    S(
        "class-defined-used-later",
        [
            """
            class Point:
                def __init__(self, x, y):
                    self.x, self.y = x, y
                def norm(self):
                    return (self.x ** 2 + self.y ** 2) ** 0.5
            """,
            "p = Point(3, 4)",
            "p.norm()",
        ],
        {
            "cells": {
                0: """
                class Point:
                    def __init__(self, x, y):
                        self.x, self.y = x, y
                    def norm(self):
                        return abs(self.x) + abs(self.y)
                """
            },
            "misses": {2},
        },
    ),
    S(
        "dataclass-instances",
        [
            "from dataclasses import dataclass\n\n@dataclass\nclass Item:\n    name: str\n    price: float",
            "items = [Item('apple', 1.5), Item('pear', 2.0)]",
            "total = sum(i.price for i in items)\nprint(f'{total:.2f}')",
            "items",
        ],
        {
            "cells": {1: "items = [Item('apple', 1.5), Item('plum', 3.0)]"},
            "misses": {1, 2, 3},
            "hits": {0},
        },
    ),
    S(
        "imports",
        [
            "import math",
            "r = math.sqrt(16)\nprint(r)",
            "import json\ntext = json.dumps({'r': r})\ntext",
        ],
    ),
    S(
        "from-imports",
        [
            "from collections import Counter, defaultdict",
            "words = 'a b a c b a'.split()\ncounts = Counter(words)\ncounts.most_common(2)",
        ],
    ),
    S(
        "printing",
        [
            "print('hello')\nprint('world', 1, 2, sep='-')",
            "for i in range(3):\n    print(i, end=' ')\nprint()",
        ],
    ),
    S(
        "stderr-writes",
        ["import sys\nprint('out')\nsys.stderr.write('err line\\n')\nprint('out again')"],
    ),
    S(
        "dataframe-display",
        [
            "import pandas as pd",
            "df = pd.DataFrame({'a': [1, 2, 3], 'b': [4.0, 5.5, 6.25], 'c': list('xyz')})",
            "df",
            "df.describe()",
            "print(df.dtypes)",
        ],
        {
            "cells": {
                1: "df = pd.DataFrame({'a': [1, 2, 30], 'b': [4.0, 5.5, 6.25], 'c': list('xyz')})"
            },
            "misses": {1, 2, 3},
        },
    ),
    S(
        "dataframe-groupby",
        [
            "import numpy as np\nimport pandas as pd",
            "rng = np.random.default_rng(0)\nsales = pd.DataFrame({'region': rng.choice(['n', 's', 'e'], 30), 'amount': rng.integers(1, 100, 30)})",
            "summary = sales.groupby('region')['amount'].agg(['sum', 'mean']).round(2)\nsummary",
            "best = summary['sum'].idxmax()\nprint('best region:', best)",
        ],
        {
            "cells": {
                1: "rng = np.random.default_rng(1)\nsales = pd.DataFrame({'region': rng.choice(['n', 's', 'e'], 30), 'amount': rng.integers(1, 100, 30)})"
            },
            "misses": {1, 2, 3},
            "hits": {0},
        },
    ),
    S(
        "series-ops",
        [
            "import pandas as pd\ns = pd.Series([3, 1, 2], index=list('abc'), name='v')",
            "s.sort_values()",
            "s2 = s * 2\ns2.to_dict()",
        ],
    ),
    S(
        "numpy-basics",
        [
            "import numpy as np",
            "a = np.arange(12).reshape(3, 4)\na",
            "col_means = a.mean(axis=0)\ncol_means",
            "b = a.T @ a\nprint(b.shape, b.sum())",
        ],
        {"cells": {1: "a = np.arange(12).reshape(4, 3)\na"}, "misses": {1, 2, 3}},
    ),
    S(
        "numpy-random-generator-local",
        [
            "import numpy as np",
            "x = np.random.default_rng(42).normal(size=5).round(3)\nx",
            "print(x.max())",
        ],
    ),
    S(
        "matplotlib-figure",
        [
            "import matplotlib.pyplot as plt\nimport numpy as np",
            "x = np.linspace(0, 1, 20)\ny = x ** 2",
            "fig, ax = plt.subplots(figsize=(3, 2))\nax.plot(x, y)\nax.set_title('square')\nplt.show()",
        ],
        {"cells": {1: "x = np.linspace(0, 1, 20)\ny = x ** 3"}, "misses": {1, 2}},
    ),
    S(
        "matplotlib-hist",
        [
            "import matplotlib.pyplot as plt\nimport numpy as np\nvals = np.random.default_rng(3).normal(size=200)",
            "plt.figure(figsize=(3, 2))\nplt.hist(vals, bins=10)\nplt.title('hist')\nplt.show()",
        ],
    ),
    S(
        "cell-raises",
        ["x = 1", "y = x / 0", "z = x + 1\nprint(z)"],
        {"cells": {1: "y = x / 2"}, "misses": {1}},
    ),
    S(
        "cell-raises-after-print",
        ["print('before')\nraise ValueError('bad value 42')", "ok = True\nok"],
    ),
    S("name-error", ["print(undefined_name)", "a = 1"]),
    S("syntax-error", ["x = (1,", "y = 2\ny"]),
    S("key-error", ["d = {'a': 1}", "d['b']", "d.get('b', 0)"]),
    S(
        "deleting-names",
        ["a = 1\nb = 2", "del a", "print('a' in dir(), 'b' in dir())"],
    ),
    S(
        "delete-then-rebind",
        ["tmp = [1, 2]\nkeep = len(tmp)", "del tmp", "tmp = 'new'\nprint(tmp, keep)"],
    ),
    S(
        "string-processing",
        [
            "text = 'The quick brown fox jumps over the lazy dog'",
            "words = text.lower().split()\nlongest = max(words, key=len)\nprint(longest, len(words))",
            "caps = ' '.join(w.capitalize() for w in words)\ncaps",
        ],
        {"cells": {0: "text = 'Pack my box with five dozen liquor jugs'"}, "misses": {0, 1, 2}},
    ),
    S(
        "dict-comprehension",
        [
            "names = ['ann', 'bob', 'cy']",
            "lengths = {n: len(n) for n in names}\nlengths",
            "print(sorted(lengths.items(), key=lambda kv: -kv[1]))",
        ],
    ),
    S(
        "set-ops",
        [
            "a = {1, 2, 3}\nb = {2, 3, 4}",
            "both = a & b\neither = a | b\nprint(sorted(both), sorted(either))",
        ],
    ),
    S(
        "tuple-unpacking",
        ["pairs = [(1, 'a'), (2, 'b')]", "nums, letters = zip(*pairs)\nprint(nums, letters)"],
    ),
    S(
        "json-roundtrip",
        [
            "import json\nrecord = {'id': 3, 'tags': ['x', 'y'], 'score': 0.5}",
            "blob = json.dumps(record, sort_keys=True)\nback = json.loads(blob)\nback == record",
        ],
    ),
    S(
        "regex",
        [
            "import re\nlog = 'err=3 warn=10 err=7'",
            "errs = [int(m) for m in re.findall(r'err=(\\d+)', log)]\nerrs",
            "print(sum(errs))",
        ],
    ),
    S(
        "datetime-fixed",
        [
            "from datetime import date, timedelta\nstart = date(2024, 1, 31)",
            "later = start + timedelta(days=30)\nprint(later.isoformat(), later.weekday())",
        ],
    ),
    S(
        "lambda-sort",
        [
            "people = [('ann', 31), ('bob', 25), ('cy', 40)]",
            "by_age = sorted(people, key=lambda p: p[1])\nby_age",
        ],
    ),
    S("generator-expression-sum", ["squares = sum(i * i for i in range(100))\nsquares"]),
    S(
        "nested-functions",
        [
            "def outer(k):\n    def inner(x):\n        return x + k\n    return inner",
            "add5 = outer(5)",
            "add5(10)",
        ],
        warm_hits=False,  # a closure cannot be pickled: that cell is run, not cached
    ),
    S(
        "recursion",
        [
            "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)",
            "vals = [fib(i) for i in range(15)]\nprint(vals[-3:])",
        ],
    ),
    S("last-expression-only-shown", ["x = 3\nx + 1\nx + 2"]),
    S("expression-none", ["print('side effect')\nNone"]),
    S(
        "display-calls",
        [
            "from IPython.display import display, HTML, Markdown",
            "display(HTML('<b>bold</b>'))\ndisplay(Markdown('*it*'))\nprint('after')\nv = 1",
        ],
    ),
    S(
        "display-dataframe-and-print",
        [
            "import pandas as pd\nfrom IPython.display import display\nt = pd.DataFrame({'k': [1, 2]})",
            "print('head:')\ndisplay(t.head(1))\nprint('tail:')\ndisplay(t.tail(1))",
        ],
    ),
    S(
        "pandas-merge",
        [
            "import pandas as pd",
            "left = pd.DataFrame({'k': [1, 2, 3], 'l': ['a', 'b', 'c']})\nright = pd.DataFrame({'k': [2, 3, 4], 'r': [True, False, True]})",
            "m = left.merge(right, on='k', how='outer')\nm",
            "print(m.isna().sum().to_dict())",
        ],
        {
            "cells": {
                1: "left = pd.DataFrame({'k': [1, 2, 5], 'l': ['a', 'b', 'c']})\nright = pd.DataFrame({'k': [2, 3, 4], 'r': [True, False, True]})"
            },
            "misses": {1, 2, 3},
        },
    ),
    S(
        "pandas-pivot",
        [
            "import pandas as pd\nlong = pd.DataFrame({'day': [1, 1, 2, 2], 'kind': ['a', 'b', 'a', 'b'], 'v': [1, 2, 3, 4]})",
            "wide = long.pivot(index='day', columns='kind', values='v')\nwide",
            "wide.sum()",
        ],
    ),
    S(
        "pandas-datetime-column",
        [
            "import pandas as pd\nev = pd.DataFrame({'t': pd.to_datetime(['2024-01-01', '2024-01-03', '2024-02-10']), 'n': [1, 2, 3]})",
            "monthly = ev.groupby(ev['t'].dt.month)['n'].sum()\nmonthly",
        ],
    ),
    S(
        "pandas-string-methods",
        [
            "import pandas as pd\nnames = pd.Series(['  Ann ', 'bob', 'CY'])",
            "clean = names.str.strip().str.title()\nclean.tolist()",
        ],
    ),
    S(
        "sklearn-fit-in-one-cell",
        [
            "from sklearn.datasets import load_iris\nfrom sklearn.linear_model import LogisticRegression",
            "iris = load_iris()\nX, y = iris.data, iris.target",
            "clf = LogisticRegression(max_iter=300).fit(X, y)\nacc = round(clf.score(X, y), 4)\nprint(acc)",
            "clf.predict(X[:5])",
        ],
        {
            "cells": {
                2: "clf = LogisticRegression(max_iter=300, C=0.1).fit(X, y)\nacc = round(clf.score(X, y), 4)\nprint(acc)"
            },
            "misses": {2, 3},
            "hits": {0, 1},
        },
    ),
    S(
        "sklearn-train-test-split",
        [
            "from sklearn.datasets import load_wine\nfrom sklearn.model_selection import train_test_split",
            "X, y = load_wine(return_X_y=True)\nX_tr, X_te, y_tr, y_te = train_test_split(X, y, random_state=0)",
            "print(X_tr.shape, X_te.shape)",
        ],
    ),
    S(
        "range-and-slices",
        ["r = list(range(20))", "evens = r[::2]\nlast3 = r[-3:]\nprint(evens, last3)"],
    ),
    S("counter-of-letters", ["from collections import Counter", "c = Counter('mississippi')\nc"]),
    S(
        "enumerate-zip",
        [
            "a = ['x', 'y']\nb = [1, 2]",
            "for i, (k, v) in enumerate(zip(a, b)):\n    print(i, k, v)",
        ],
    ),
    S(
        "try-except-success",
        ["try:\n    val = int('12')\nexcept ValueError:\n    val = -1", "print(val)"],
    ),
    S("assert-fails", ["x = 3", "assert x > 5, f'x is only {x}'"]),
    S(
        "f-strings",
        ["name, n = 'ann', 3", "msg = f'{name} has {n} items ({n / 7:.2%})'\nprint(msg)"],
    ),
    S("integer-math", ["big = 2 ** 100\nprint(big)", "print(big % 97, big.bit_length())"]),
    S(
        "float-formatting",
        [
            "import math\nvals = [math.pi, math.e, math.tau]",
            "print(', '.join(f'{v:.3f}' for v in vals))",
        ],
    ),
    S(
        "multiple-outputs-per-cell",
        ["xs = [1, 2, 3]\nprint(len(xs))\nys = [x * 2 for x in xs]\nprint(ys)\nys"],
    ),
    S("empty-cell-and-comment", ["# just a comment", "a = 1", "pass"]),
    S(
        "chained-three-edits",
        ["base = 10", "double = base * 2", "triple = base * 3", "print(double, triple)"],
        {"cells": {0: "base = 11"}, "misses": {0, 1, 2, 3}},
        {"cells": {2: "triple = base * 4"}, "misses": {2, 3}, "hits": {0, 1}},
    ),
    S(
        "rerun-same-session",
        ["counter = [0]", "total = sum(range(5))\nprint(total)", "print('done')"],
        {"steps": [Rerun(1), Rerun(2)]},
    ),
    S("rebinding-same-name", ["x = 1", "x = x + 1", "x = x * 10", "print(x)"]),
    S(
        "list-of-dicts-to-frame",
        ["import pandas as pd\nrows = [{'a': 1, 'b': 2}, {'a': 3, 'b': 4}]", "pd.DataFrame(rows)"],
    ),
    S(
        "numpy-boolean-mask",
        [
            "import numpy as np\nv = np.array([5, -1, 3, -7])",
            "pos = v[v > 0]\npos",
            "v.clip(0, None)",
        ],
    ),
    S(
        "numpy-linalg",
        [
            "import numpy as np\nm = np.array([[2.0, 1.0], [1.0, 3.0]])",
            "w = np.linalg.eigvalsh(m).round(6)\nw",
            "inv = np.linalg.inv(m).round(6)\nprint(inv)",
        ],
    ),
    S(
        "class-with-classmethod",
        [
            "class Temp:\n    def __init__(self, c):\n        self.c = c\n    @classmethod\n    def from_f(cls, f):\n        return cls((f - 32) * 5 / 9)\n    def __repr__(self):\n        return f'Temp({self.c:.1f})'",
            "t = Temp.from_f(212)\nt",
        ],
    ),
    S(
        "iris-frame",
        [
            "from sklearn.datasets import load_iris\nimport pandas as pd",
            "iris = load_iris(as_frame=True)\nframe = iris.frame",
            "frame.groupby('target').mean().round(2)",
        ],
    ),
]

# a realistic chain: session edits several cells at once, plus a re-run
SCENARIOS.append(
    Scenario(
        "everyday-notebook-with-reruns",
        [
            Session(
                [
                    dedent("import numpy as np\nimport pandas as pd"),
                    dedent("data = pd.DataFrame({'x': np.arange(10), 'y': np.arange(10) ** 2})"),
                    dedent("data['z'] = data.x + data.y"),
                    dedent("print(data.tail(3))"),
                    Rerun(3),
                ]
            ),
            Session(
                [
                    dedent("import numpy as np\nimport pandas as pd"),
                    dedent("data = pd.DataFrame({'x': np.arange(10), 'y': np.arange(10) ** 2})"),
                    dedent("data['z'] = data.x + data.y"),
                    dedent("print(data.tail(3))"),
                ],
                expect=None,
            ),
        ],
        group=GROUP,
    )
)

# families: the same everyday shape over several values
for _i, (_setup, _use) in enumerate(
    [
        ("vals = [4, 8, 15, 16, 23, 42]", "print(sum(vals) / len(vals))"),
        ("word = 'notebook'", "print(word[::-1], word.upper())"),
        ("grid = [[r * c for c in range(4)] for r in range(4)]", "print(grid[3])"),
        ("inventory = {'apples': 3, 'pears': 0}", "print([k for k, v in inventory.items() if v])"),
        (
            "import statistics\nsample = [2, 4, 4, 4, 5, 5, 7, 9]",
            "print(statistics.mean(sample), statistics.pstdev(sample))",
        ),
        (
            "import itertools\ncombos = list(itertools.combinations('abcd', 2))",
            "print(len(combos), combos[:3])",
        ),
        ("from fractions import Fraction\nhalf = Fraction(1, 2)", "print(half + Fraction(1, 3))"),
        ("from decimal import Decimal\nprice = Decimal('19.99')", "print(price * 3)"),
        ("import string\nletters = string.ascii_lowercase[:5]", "print(list(letters))"),
        ("matrix = [[1, 2], [3, 4]]", "print([list(r) for r in zip(*matrix)])"),
    ]
):
    SCENARIOS.append(
        S(f"family-{_i}", [_setup, _use], {"append": ["print('appended cell')"], "hits": {0, 1}})
    )
