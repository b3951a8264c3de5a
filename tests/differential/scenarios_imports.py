"""Class 1, imports: local modules (helpers.py) edited between sessions, imported in a cached
cell or inside a function body; a module edited on disk but not reloaded within a session."""

# ruff: noqa: E501  (cells are data: one string each, as a notebook shows them)

from __future__ import annotations

from .harness import Rerun, Scenario, Session, Write, dedent, restarts

GROUP = "imports"


def S(name: str, cells: list[str], *edits: dict[str, object], **kw: object) -> Scenario:
    return restarts(f"imports-{name}", cells, *edits, group=GROUP, **kw)  # type: ignore[arg-type]


def helpers(body: str) -> dict[str, str | None]:
    return {"helpers": dedent(body)}


V1 = helpers("def f(x):\n    return x + 1\n")
V2 = helpers("def f(x):\n    return x + 2\n")

SCENARIOS: list[Scenario] = [
    S(
        "from-import-in-cell",
        ["from helpers import f\ny = f(1)\nprint(y)"],
        {"modules": V2},
        modules=V1,
    ),
    S(
        "from-import-then-use-later",
        ["from helpers import f", "y = f(10)\ny"],
        {"modules": V2},
        modules=V1,
    ),
    S(
        "import-module-attribute",
        ["import helpers", "y = helpers.f(5)\nprint(y)"],
        {"modules": V2},
        modules=V1,
    ),
    S("import-as-alias", ["import helpers as h\nz = h.f(0)\nz"], {"modules": V2}, modules=V1),
    S("from-import-star", ["from helpers import *\nprint(f(100))"], {"modules": V2}, modules=V1),
    S(
        "import-inside-function-body",
        ["def g(x):\n    from helpers import f\n    return f(x) * 10", "y = g(1)\nprint(y)"],
        {"modules": V2},
        modules=V1,
    ),
    S(
        "import-module-inside-function-body",
        ["def g(x):\n    import helpers\n    return helpers.f(x)", "print(g(3))"],
        {"modules": V2},
        modules=V1,
    ),
    S(
        "module-constant",
        ["from helpers import RATE", "cost = 100 * RATE\nprint(cost)"],
        {"modules": helpers("RATE = 0.25\n")},
        modules=helpers("RATE = 0.1\n"),
    ),
    S(
        "module-constant-via-attribute",
        ["import helpers", "print(helpers.RATE * 3)"],
        {"modules": helpers("RATE = 7\n")},
        modules=helpers("RATE = 5\n"),
    ),
    S(
        "module-class",
        ["from helpers import Model", "m = Model(2)\nprint(m.predict(10))"],
        {
            "modules": helpers(
                "class Model:\n    def __init__(self, k):\n        self.k = k\n    def predict(self, x):\n        return x - self.k\n"
            )
        },
        modules=helpers(
            "class Model:\n    def __init__(self, k):\n        self.k = k\n    def predict(self, x):\n        return x * self.k\n"
        ),
    ),
    S(
        "module-helper-calls-helper",
        ["from helpers import outer", "print(outer(4))"],
        {
            "modules": helpers(
                "def inner(x):\n    return x - 1\n\ndef outer(x):\n    return inner(x) * 2\n"
            )
        },
        modules=helpers(
            "def inner(x):\n    return x + 1\n\ndef outer(x):\n    return inner(x) * 2\n"
        ),
    ),
    S(
        "transitive-module",
        ["from helpers import total", "print(total([1, 2, 3]))"],
        {"modules": {"util": "def weight(x):\n    return x * 10\n"}},
        modules={
            "helpers": "from util import weight\n\ndef total(xs):\n    return sum(weight(x) for x in xs)\n",
            "util": "def weight(x):\n    return x\n",
        },
    ),
    S(
        "package-submodule",
        ["from pkg.core import area", "print(area(3))"],
        {"modules": {"pkg.core": "def area(r):\n    return 3 * r * r\n"}},
        modules={"pkg": "", "pkg.core": "def area(r):\n    return 3.14159 * r * r\n"},
    ),
    S(
        "package-init-reexport",
        ["import pkg", "print(pkg.VERSION, pkg.core.area(1))"],
        {"modules": {"pkg": "from . import core\nVERSION = '2'\n"}},
        modules={
            "pkg": "from . import core\nVERSION = '1'\n",
            "pkg.core": "def area(r):\n    return r\n",
        },
    ),
    S(
        "module-default-argument",
        ["from helpers import greet", "msg = greet('ann')\nmsg"],
        {"modules": helpers("def greet(name, greeting='hi'):\n    return f'{greeting} {name}'\n")},
        modules=helpers("def greet(name, greeting='hello'):\n    return f'{greeting} {name}'\n"),
    ),
    S(
        "module-data-transform-on-frame",
        [
            "import pandas as pd\nfrom helpers import clean",
            "raw = pd.DataFrame({'name': [' a', 'b '], 'v': [1, 2]})",
            "tidy = clean(raw)\ntidy",
        ],
        {
            "modules": helpers(
                "def clean(df):\n    out = df.copy()\n    out['name'] = out['name'].str.strip().str.upper()\n    return out\n"
            )
        },
        modules=helpers(
            "def clean(df):\n    out = df.copy()\n    out['name'] = out['name'].str.strip()\n    return out\n"
        ),
    ),
    S(
        "module-used-by-lambda-in-cell",
        ["import helpers", "fn = lambda v: helpers.f(v) + 0.5", "print(fn(1))"],
        {"modules": V2},
        modules=V1,
        warm_hits=False,  # a lambda cannot be pickled: its cell runs every time
    ),
    S(
        "module-function-via-dict",
        ["import helpers", "ops = {'f': helpers.f}", "print(ops['f'](7))"],
        {"modules": V2},
        modules=V1,
    ),
    S(
        "module-printing-function",
        ["from helpers import report", "report([3, 4])"],
        {
            "modules": helpers(
                "def report(xs):\n    print('total:', sum(xs))\n    print('max:', max(xs))\n"
            )
        },
        modules=helpers("def report(xs):\n    print('total:', sum(xs))\n"),
    ),
    S(
        "importlib-reload-in-cell",
        ["import importlib\nimport helpers", "importlib.reload(helpers)\nprint(helpers.f(1))"],
        {"modules": V2},
        modules=V1,
    ),
    S(
        "module-added-later",
        [
            "try:\n    import extra\n    found = extra.NAME\nexcept ImportError:\n    found = None",
            "print(found)",
        ],
        {"modules": {"extra": "NAME = 'extra here'\n"}},
    ),
    S(
        "module-removed-later",
        [
            "try:\n    import extra\n    found = extra.NAME\nexcept ImportError:\n    found = None",
            "print(found)",
        ],
        {"modules": {"extra": None}},
        modules={"extra": "NAME = 'extra here'\n"},
    ),
]

# a module edited on disk while the session runs, not reloaded: the session keeps the old code
# (plain and cached alike), then a later session imports the new code
NOT_RELOADED = [
    ("from-import", ["from helpers import f", "y = f(1)\nprint(y)"]),
    ("module-attr", ["import helpers", "y = helpers.f(1)\nprint(y)"]),
    (
        "in-function",
        ["def g(x):\n    from helpers import f\n    return f(x)", "y = g(1)\nprint(y)"],
    ),
]
for _name, _cells in NOT_RELOADED:
    _cells = [dedent(c) for c in _cells]
    SCENARIOS.append(
        Scenario(
            f"imports-edited-not-reloaded-{_name}",
            [
                Session(_cells, modules=V1),
                Session([*_cells, Write(modules=V2), Rerun(1), Rerun(0), Rerun(1)]),
                Session(_cells),
                Session([*_cells, Write(modules=V1), Rerun(1)]),
                Session(_cells),
            ],
            group=GROUP,
        )
    )

# a helper edited in a later session, each in its own style of use
for _i, (_old, _new, _use) in enumerate(
    [
        (
            "SCALE = 2\n",
            "SCALE = 3\n",
            "from helpers import SCALE\nimport numpy as np\narr = np.arange(4) * SCALE\narr",
        ),
        (
            "WORDS = ['a', 'b']\n",
            "WORDS = ['a', 'b', 'c']\n",
            "from helpers import WORDS\nn = len(WORDS)\nprint(n)",
        ),
        (
            "def fmt(v):\n    return f'{v:.1f}'\n",
            "def fmt(v):\n    return f'{v:.3f}'\n",
            "from helpers import fmt\nprint(fmt(3.14159))",
        ),
        (
            "def key(r):\n    return r[0]\n",
            "def key(r):\n    return r[1]\n",
            "from helpers import key\nrows = [(2, 'b'), (1, 'c'), (3, 'a')]\nprint(sorted(rows, key=key))",
        ),
        (
            "def pred(v):\n    return v > 2\n",
            "def pred(v):\n    return v > 0\n",
            "import helpers\nkept = list(filter(helpers.pred, [0, 1, 2, 3]))\nkept",
        ),
    ]
):
    SCENARIOS.append(
        S(f"edited-style-{_i}", [_use], {"modules": helpers(_new)}, modules=helpers(_old))
    )
