"""Class 5, functions inside objects (a pipeline list, a dataclass config, functools.partial,
a bound method, a dict of callables) whose helper is edited between sessions; class 6, dict
order; class 7, indirect reads (df.query('@cut'), eval, globals()[...]); class 8, aliasing."""

# ruff: noqa: E501  (cells are data: one string each, as a notebook shows them)

from __future__ import annotations

from .harness import Scenario, restarts, uncached


def S(group: str, name: str, cells: list[str], *edits: dict[str, object], **kw: object) -> Scenario:
    return restarts(f"{group}-{name}", cells, *edits, group=group, **kw)  # type: ignore[arg-type]


CLEAN1 = "def clean(s):\n    return s.strip()"
CLEAN2 = "def clean(s):\n    return s.strip().upper()"
H1 = {"helpers": "def clean(s):\n    return s.strip()\n"}
H2 = {"helpers": "def clean(s):\n    return s.strip().title()\n"}

FUNCTIONS_IN_OBJECTS: list[Scenario] = [
    S(
        "objfn",
        "pipeline-list",
        [
            CLEAN1,
            "pipeline = [clean, str.lower]",
            "out = ' Ab '\nfor step in pipeline:\n    out = step(out)\nprint(repr(out))",
        ],
        {"cells": {0: CLEAN2}},
    ),
    S(
        "objfn",
        "pipeline-list-reversed-order",
        [
            CLEAN1,
            "pipeline = [str.lower, clean]",
            "out = ' Ab '\nfor step in pipeline:\n    out = step(out)\nprint(repr(out))",
        ],
        {"cells": {0: CLEAN2}},
    ),
    S(
        "objfn",
        "dict-of-callables",
        [
            CLEAN1,
            "ops = {'clean': clean, 'len': len}",
            "print({k: f(' xy ') for k, f in ops.items()})",
        ],
        {"cells": {0: CLEAN2}},
    ),
    S(
        "objfn",
        "tuple-of-callables",
        [CLEAN1, "steps = (clean,)", "print(steps[0]('  q '))"],
        {"cells": {0: CLEAN2}},
    ),
    S(
        "objfn",
        "dataclass-config",
        [
            CLEAN1,
            "from dataclasses import dataclass, field\nfrom typing import Callable\n\n@dataclass\nclass Config:\n    name: str\n    prep: Callable = None",
            "cfg = Config('run1', clean)",
            "print(cfg.prep('  data '))",
        ],
        {"cells": {0: CLEAN2}},
    ),
    S(
        "objfn",
        "functools-partial",
        [
            "import functools\ndef power(x, k):\n    return x ** k",
            "square = functools.partial(power, k=2)",
            "print(square(7))",
        ],
        {"cells": {0: "import functools\ndef power(x, k):\n    return x ** k + 1"}},
    ),
    S(
        "objfn",
        "partial-of-helper-module",
        [
            "import functools\nfrom helpers import clean",
            "c = functools.partial(clean)",
            "print(repr(c(' hello world ')))",
        ],
        {"modules": H2},
        modules=H1,
    ),
    S(
        "objfn",
        "bound-method",
        [
            "class Greeter:\n    def __init__(self, name):\n        self.name = name\n    def hello(self):\n        return f'hello {self.name}'",
            "g = Greeter('ann')\nsay = g.hello",
            "print(say())",
        ],
        {
            "cells": {
                0: "class Greeter:\n    def __init__(self, name):\n        self.name = name\n    def hello(self):\n        return f'HELLO {self.name}!'"
            }
        },
    ),
    S(
        "objfn",
        "object-holding-function-attr",
        [
            CLEAN1,
            "class Stage:\n    def __init__(self, fn):\n        self.fn = fn\n    def __call__(self, v):\n        return self.fn(v)",
            "stage = Stage(clean)",
            "print(stage(' v '))",
        ],
        {"cells": {0: CLEAN2}},
    ),
    S(
        "objfn",
        "list-of-helper-functions",
        ["from helpers import clean", "pipe = [clean]", "print([f(' a b ') for f in pipe])"],
        {"modules": H2},
        modules=H1,
    ),
    S(
        "objfn",
        "dataclass-config-helper-module",
        [
            "from dataclasses import dataclass\nfrom typing import Callable\nfrom helpers import clean\n\n@dataclass\nclass Cfg:\n    fn: Callable",
            "cfg = Cfg(clean)",
            "print(cfg.fn('  mixed Case  '))",
        ],
        {"modules": H2},
        modules=H1,
    ),
    S(
        "objfn",
        "sklearn-function-transformer",
        [
            "import numpy as np\nfrom sklearn.preprocessing import FunctionTransformer\nfrom helpers import scale",
            "ft = FunctionTransformer(scale)",
            "print(ft.fit_transform(np.array([[1.0], [2.0]])).ravel())",
        ],
        {"modules": {"helpers": "def scale(x):\n    return x * 100\n"}},
        modules={"helpers": "def scale(x):\n    return x * 10\n"},
    ),
    S(
        "objfn",
        "callback-in-dict-config",
        [
            "def on_done(n):\n    return f'done {n}'",
            "config = {'epochs': 2, 'callback': on_done}",
            "print(config['callback'](config['epochs']))",
        ],
        {"cells": {0: "def on_done(n):\n    return f'finished after {n}'"}},
    ),
    S(
        "objfn",
        "sorted-with-key-in-object",
        [
            "def by_len(s):\n    return len(s)",
            "spec = {'key': by_len}",
            "print(sorted(['ccc', 'a', 'bb'], key=spec['key']))",
        ],
        {"cells": {0: "def by_len(s):\n    return -len(s)"}},
    ),
    S(
        "objfn",
        "map-object-lazy",
        [CLEAN1, "words = [' a ', ' b ']\nlazy = list(map(clean, words))", "print(lazy)"],
        {"cells": {0: CLEAN2}},
    ),
    S(
        "objfn",
        "class-attribute-function",
        [CLEAN1, "class Job:\n    prep = staticmethod(clean)", "print(Job.prep(' job '))"],
        {"cells": {0: CLEAN2}},
    ),
]

DICT_ORDER: list[Scenario] = [
    S(
        "dictorder",
        "dataframe-from-dict",
        [
            "import pandas as pd",
            "cols = {'a': [1, 2], 'b': [3, 4]}",
            "df = pd.DataFrame(cols)\nprint(df)",
        ],
        {"cells": {1: "cols = {'b': [3, 4], 'a': [1, 2]}"}},
    ),
    S(
        "dictorder",
        "dataframe-display",
        ["import pandas as pd", "cols = {'x': [1], 'y': [2], 'z': [3]}", "pd.DataFrame(cols)"],
        {"cells": {1: "cols = {'z': [3], 'y': [2], 'x': [1]}"}},
    ),
    S(
        "dictorder",
        "list-of-keys",
        ["d = {'first': 1, 'second': 2}", "print(list(d))"],
        {"cells": {0: "d = {'second': 2, 'first': 1}"}},
    ),
    S(
        "dictorder",
        "json-dumps",
        ["import json\nd = {'a': 1, 'b': 2}", "print(json.dumps(d))"],
        {"cells": {0: "import json\nd = {'b': 2, 'a': 1}"}},
    ),
    S(
        "dictorder",
        "iteration-order-print",
        ["weights = {'w1': 0.5, 'w2': 0.25}", "for k, v in weights.items():\n    print(k, v)"],
        {"cells": {0: "weights = {'w2': 0.25, 'w1': 0.5}"}},
    ),
    S(
        "dictorder",
        "first-key",
        ["d = {'a': 1, 'b': 2}", "first = next(iter(d))\nprint(first)"],
        {"cells": {0: "d = {'b': 2, 'a': 1}"}},
    ),
    S(
        "dictorder",
        "series-from-dict",
        ["import pandas as pd\nd = {'p': 1, 'q': 2}", "pd.Series(d)"],
        {"cells": {0: "import pandas as pd\nd = {'q': 2, 'p': 1}"}},
    ),
    S(
        "dictorder",
        "kwargs-order",
        [
            "opts = {'sep': '-', 'end': '!\\n'}",
            "def show(**kw):\n    print(list(kw))\nshow(**opts)",
        ],
        {"cells": {0: "opts = {'end': '!\\n', 'sep': '-'}"}},
    ),
    S(
        "dictorder",
        "cached-function-argument",
        [
            "import pandas as pd\nfrom tore_nb import cached\n\n@cached\ndef frame(cols):\n    return pd.DataFrame(cols)",
            "cols = {'a': [1], 'b': [2]}",
            "print(frame(cols))",
        ],
        {"cells": {1: "cols = {'b': [2], 'a': [1]}"}},
    ),
    S(
        "dictorder",
        "cached-function-keys",
        [
            "from tore_nb import cached\n\n@cached\ndef keys_of(d):\n    return list(d)",
            "print(keys_of({'x': 1, 'y': 2}))",
        ],
        {"cells": {1: "print(keys_of({'y': 2, 'x': 1}))"}},
    ),
    S(
        "dictorder",
        "set-to-sorted-ok",
        ["s = {3, 1, 2}", "print(sorted(s))"],
        {"cells": {0: "s = {2, 3, 1}"}, "hits": {1}},
    ),
]

INDIRECT: list[Scenario] = [
    S(
        "indirect",
        "df-query-at-name",
        [
            "import pandas as pd\ndf = pd.DataFrame({'a': range(6)})",
            "cut = 2",
            "sel = df.query('a > @cut')\nprint(sel.a.tolist())",
        ],
        {"cells": {1: "cut = 3"}},
    ),
    S(
        "indirect",
        "df-eval-at-name",
        [
            "import pandas as pd\ndf = pd.DataFrame({'a': [1, 2]})",
            "w = 10",
            "print(df.eval('@w * a').tolist())",
        ],
        {"cells": {1: "w = 20"}},
    ),
    S("indirect", "eval-string", ["x = 1", "print(eval('x + 1'))"], {"cells": {0: "x = 5"}}),
    S(
        "indirect",
        "globals-getitem",
        ["x = 'one'", "print(globals()['x'])"],
        {"cells": {0: "x = 'two'"}},
    ),
    S(
        "indirect",
        "format-globals",
        ["x = 3", "print('{x}'.format(**globals()))"],
        {"cells": {0: "x = 4"}},
    ),
    S(
        "indirect",
        "format-map-vars",
        ["name = 'ann'", "print('hi {name}'.format_map(vars()))"],
        {"cells": {0: "name = 'bob'"}},
    ),
    S(
        "indirect",
        "string-template",
        [
            "from string import Template\nwho = 'world'",
            "print(Template('hello $who').substitute(globals()))",
        ],
        {"cells": {0: "from string import Template\nwho = 'moon'"}},
    ),
    S(
        "indirect",
        "exec-reads-global",
        ["limit = 3", "exec('print(limit * 2)')"],
        {"cells": {0: "limit = 4"}},
    ),
    S(
        "indirect",
        "globals-get-default",
        ["level = 1", "print(globals().get('level', 0))"],
        {"cells": {0: "level = 2"}},
    ),
    S(
        "indirect",
        "function-reads-global-by-name",
        ["def lookup(name):\n    return globals()[name]", "rate = 0.5", "print(lookup('rate'))"],
        {"cells": {1: "rate = 0.75"}},
    ),
    S(
        "indirect",
        "query-two-names",
        [
            "import pandas as pd\ndf = pd.DataFrame({'a': range(10)})",
            "lo, hi = 2, 5",
            "print(df.query('@lo < a < @hi').a.tolist())",
        ],
        {"cells": {1: "lo, hi = 1, 8"}},
    ),
    S(
        "indirect",
        "getattr-main",
        ["import sys\nthr = 7", "print(getattr(sys.modules['__main__'], 'thr'))"],
        {"cells": {0: "import sys\nthr = 8"}},
    ),
    S(
        "indirect",
        "function-global-read",
        ["factor = 2", "def times(v):\n    return v * factor", "print(times(5))"],
        {"cells": {0: "factor = 3"}, "misses": {2}},
    ),
]

ALIASING: list[Scenario] = [
    S(
        "alias",
        "clean-is-raw-frame",
        [
            "import pandas as pd\nraw = pd.DataFrame({'x': [1, 2]})",
            "clean = raw\nclean['x2'] = 1",
            "print(raw)",
        ],
    ),
    S(
        "alias",
        "array-view-then-write",
        [
            "import numpy as np\nx2 = np.arange(16).reshape(4, 4)",
            "x2_sub = x2[:2, :2]",
            "x2_sub[0, 0] = 99",
            "print(x2)",
        ],
    ),
    S(
        "alias",
        "output-list-holds-existing",
        ["row = [1, 2]", "table = [row, row]", "table[0].append(3)", "print(row, table)"],
    ),
    S("alias", "list-alias-append", ["a = [1]", "b = a\nb.append(2)", "print(a)"]),
    S("alias", "dict-alias-setitem", ["d = {'k': 0}", "d2 = d\nd2['k'] = 1", "print(d)"]),
    S(
        "alias",
        "alias-then-mutate-later",
        ["base = [0, 0]", "other = base", "other[0] = 5", "print(base)"],
    ),
    S(
        "alias",
        "reshape-view",
        [
            "import numpy as np\nflat = np.zeros(6)",
            "mat = flat.reshape(2, 3)",
            "mat[1, 2] = 7",
            "print(flat)",
        ],
    ),
    S(
        "alias",
        "objects-in-two-lists",
        [
            "class Node:\n    def __init__(self):\n        self.v = 0\nn = Node()",
            "first = [n]\nsecond = [n]",
            "first[0].v = 3",
            "print(second[0].v, n.v)",
        ],
    ),
    S("alias", "identity-check", ["a = [1, 2]", "b = a", "print(a is b)"]),
    S(
        "alias",
        "frame-column-series",
        [
            "import pandas as pd\nframe = pd.DataFrame({'a': [1, 2]})",
            "col = frame['a']",
            "col.iloc[0] = 100",
            "print(frame.a.tolist(), col.tolist())",
        ],
    ),
    S(
        "alias",
        "nested-dict-shared",
        [
            "inner = {'n': 1}",
            "outer = {'a': inner, 'b': inner}",
            "outer['a']['n'] = 2",
            "print(outer['b'], inner)",
        ],
    ),
    S(
        "alias",
        "default-argument-shared",
        [
            "def add(x, acc=[]):\n    acc.append(x)\n    return acc",
            "r1 = add(1)",
            "r2 = add(2)\nprint(r1, r2, r1 is r2)",
        ],
    ),
]

SCENARIOS: list[Scenario] = [*FUNCTIONS_IN_OBJECTS, *DICT_ORDER, *INDIRECT, *ALIASING]

# reads through globals() or vars(), or by a name in a string: unknowable, so run uncached
SCENARIOS = uncached(
    SCENARIOS,
    [
        "indirect-globals-getitem",
        "indirect-format-globals",
        "indirect-format-map-vars",
        "indirect-string-template",
        "indirect-globals-get-default",
        "indirect-function-reads-global-by-name",
        "indirect-getattr-main",
    ],
    "reads names indirectly",
)
