"""Class 9, round trips (values restored from the cache must be the values, and downstream cells
must hit on a warm run); class 10, outputs (`;`, %time, %timeit, widgets); class 11, files read
without --files and edited between sessions; class 12, `@tore_nb.cached` results mutated."""

# ruff: noqa: E501  (cells are data: one string each, as a notebook shows them)

from __future__ import annotations

from .harness import Scenario, restarts, uncached


def S(group: str, name: str, cells: list[str], *edits: dict[str, object], **kw: object) -> Scenario:
    return restarts(f"{group}-{name}", cells, *edits, group=group, **kw)  # type: ignore[arg-type]


def rt(name: str, make: str, *use: str) -> Scenario:
    """A round trip: a value made in one cell, used by the next ones; warm: all hits, and an
    edit of the last cell re-runs it alone."""
    cells = [make, *use]
    last = len(cells) - 1
    return S(
        "roundtrip",
        name,
        cells,
        {
            "cells": {last: cells[last] + "\nprint('edited')"},
            "misses": {last},
            "hits": set(range(last)),
        },
    )


ROUND_TRIPS: list[Scenario] = [
    rt(
        "datetimeindex-freq",
        "import pandas as pd\nidx = pd.date_range('2024-01-01', periods=6, freq='D')\ns = pd.Series(range(6), index=idx)",
        "print(s.index.freq)",
        "s.resample('2D').sum()",
    ),
    rt(
        "datetimeindex-freq-shift",
        "import pandas as pd\nts = pd.Series([1.0, 2.0, 4.0], index=pd.date_range('2024-03-01', periods=3, freq='h'))",
        "shifted = ts.shift(1, freq='infer')\nprint(shifted.index)",
    ),
    rt(
        "load-digits",
        "from sklearn.datasets import load_digits\ndigits = load_digits()",
        "X, y = digits.data, digits.target\nprint(X.shape, y[:10])",
        "print(digits.DESCR.splitlines()[0])",
    ),
    rt(
        "load-iris-frame",
        "from sklearn.datasets import load_iris\niris = load_iris(as_frame=True)",
        "print(iris.frame.shape, list(iris.target_names))",
    ),
    rt(
        "categorical",
        "import pandas as pd\ncat = pd.Series(['lo', 'hi', 'lo'], dtype=pd.CategoricalDtype(['lo', 'hi'], ordered=True))",
        "print(cat.cat.codes.tolist(), cat.max())",
    ),
    rt(
        "multiindex",
        "import pandas as pd\nmi = pd.DataFrame({'v': [1, 2, 3, 4]}, index=pd.MultiIndex.from_product([['a', 'b'], [1, 2]], names=['k', 'n']))",
        "mi.loc['a']",
        "print(mi.index.names)",
    ),
    rt(
        "tz-aware",
        "import pandas as pd\nstamps = pd.date_range('2024-06-01', periods=3, freq='D', tz='Europe/Paris')",
        "print(stamps.tz, stamps[0].hour)",
    ),
    rt(
        "period-index",
        "import pandas as pd\npi = pd.period_range('2024-01', periods=4, freq='M')",
        "print(pi.freqstr, pi[-1])",
    ),
    rt(
        "structured-array",
        "import numpy as np\nrec = np.array([(1, 2.5), (2, 3.5)], dtype=[('id', 'i4'), ('v', 'f8')])",
        "print(rec['v'].sum(), rec.dtype.names)",
    ),
    rt(
        "sparse-matrix",
        "import scipy.sparse as sp\nm = sp.random(5, 5, density=0.3, random_state=0, format='csr')",
        "print(m.nnz, type(m).__name__, round(m.sum(), 6))",
    ),
    rt(
        "frame-attrs",
        "import pandas as pd\nf = pd.DataFrame({'a': [1]})\nf.attrs['source'] = 'lab'",
        "print(f.attrs)",
    ),
    rt(
        "decimal-fraction",
        "from decimal import Decimal\nfrom fractions import Fraction\nnums = [Decimal('1.10'), Fraction(2, 3)]",
        "print(nums, type(nums[0]).__name__)",
    ),
    rt(
        "namedtuple",
        "from collections import namedtuple\nPt = namedtuple('Pt', 'x y')\npt = Pt(1, 2)",
        "print(pt, pt._asdict())",
    ),
    rt(
        "dataclass-value",
        "from dataclasses import dataclass\n\n@dataclass(frozen=True)\nclass Money:\n    amount: int\n    cur: str = 'EUR'\n\nprice = Money(5)",
        "print(price, price == Money(5))",
    ),
    rt(
        "enum",
        "import enum\nclass Color(enum.Enum):\n    RED = 1\n    BLUE = 2\nfav = Color.BLUE",
        "print(fav, fav is Color.BLUE)",
    ),
    rt(
        "defaultdict-list",
        "from collections import defaultdict\ndd = defaultdict(list)\ndd['a'].append(1)",
        "dd['b'].append(2)\nprint(dict(dd))",
    ),
    rt(
        "ordereddict-deque",
        "from collections import OrderedDict, deque\nod = OrderedDict(b=1, a=2)\ndq = deque([1, 2, 3], maxlen=3)",
        "print(list(od), dq.maxlen, list(dq))",
    ),
    rt(
        "datetime64-nat",
        "import numpy as np\nwhen = np.array(['2024-01-01', 'NaT'], dtype='datetime64[D]')",
        "print(when, np.isnat(when))",
    ),
    rt(
        "special-floats",
        "import math\nvals = [float('nan'), -0.0, float('inf'), 1e308]",
        "print([math.copysign(1, v) for v in vals[1:2]], vals)",
    ),
    rt(
        "big-int-complex-bytes",
        "big = 3 ** 200\nz = complex(1, -2)\nraw = b'\\x00\\xff'",
        "print(big % 1000, z.conjugate(), raw.hex())",
    ),
    rt(
        "set-of-tuples",
        "pairs = {(1, 'a'), (2, 'b')}\nfrozen = frozenset({1, 2})",
        "print(sorted(pairs), sorted(frozen))",
    ),
    rt(
        "nullable-int",
        "import pandas as pd\nni = pd.Series([1, None, 3], dtype='Int64')",
        "print(ni.isna().tolist(), ni.dtype)",
    ),
    rt(
        "string-dtype",
        "import pandas as pd\nst = pd.Series(['a', None], dtype='string')",
        "print(st.dtype, st.isna().tolist())",
    ),
    rt(
        "interval-index",
        "import pandas as pd\nbins = pd.cut([1, 5, 9], bins=[0, 4, 8, 12])",
        "print(bins.categories, list(bins.codes))",
    ),
    rt(
        "masked-array",
        "import numpy as np\nma = np.ma.masked_array([1, 2, 3], mask=[0, 1, 0])",
        "print(ma.sum(), ma.mask.tolist())",
    ),
    rt(
        "fitted-model-in-one-cell",
        "from sklearn.datasets import load_iris\nfrom sklearn.neighbors import KNeighborsClassifier\nX, y = load_iris(return_X_y=True)\nknn = KNeighborsClassifier(3).fit(X, y)",
        "print(knn.predict(X[:3]), knn.n_features_in_)",
    ),
    rt(
        "float32-array",
        "import numpy as np\nf32 = np.linspace(0, 1, 5, dtype=np.float32)",
        "print(f32.dtype, f32)",
    ),
    rt(
        "fortran-order-array",
        "import numpy as np\nfo = np.asfortranarray(np.arange(6).reshape(2, 3))",
        "print(fo.flags['F_CONTIGUOUS'], fo.ravel(order='K'))",
    ),
    rt(
        "figure-object",
        "import matplotlib.pyplot as plt\nfig, ax = plt.subplots(figsize=(2, 2))\nax.plot([1, 2])\nax.set_title('kept')\nplt.close(fig)",
        "print(ax.get_title(), len(fig.axes))",
    ),
    rt(
        "timedelta-index",
        "import pandas as pd\ntd = pd.to_timedelta(['1 day', '2h'])",
        "print(td.total_seconds().tolist())",
    ),
]

OUTPUTS: list[Scenario] = [
    S(
        "outputs",
        "semicolon-plot",
        ["import matplotlib.pyplot as plt", "plt.figure(figsize=(2, 2))\nplt.plot([1, 2, 3]);"],
        {"cells": {1: "plt.figure(figsize=(2, 2))\nplt.plot([3, 2, 1]);"}},
    ),
    S("outputs", "semicolon-list", ["[1, 2];", "x = 5\nx;"]),
    S("outputs", "semicolon-after-comment", ["y = 3\ny;  # quiet"]),
    S("outputs", "no-semicolon-list", ["[1, 2]"]),
    S(
        "outputs",
        "time-magic-line",
        ["%time total = sum(range(1000))", "print(total)"],
        warm_hits=False,
    ),
    S(
        "outputs",
        "time-cell-magic",
        ["%%time\nacc = 0\nfor i in range(100):\n    acc += i", "print(acc)"],
        warm_hits=False,
    ),
    S(
        "outputs",
        "timeit-line",
        ["%timeit -n 3 -r 2 sum(range(50))", "done = True"],
        warm_hits=False,
    ),
    S(
        "outputs",
        "timeit-output-var",
        ["res = %timeit -o -q -n 2 -r 2 sum(range(10))", "print(type(res).__name__, res.loops)"],
        warm_hits=False,
    ),
    S(
        "outputs",
        "interact-widget",
        [
            "from ipywidgets import interact\ndef f(x):\n    return x * 2",
            "w = interact(f, x=5)",
            "print('after interact')",
        ],
        warm_hits=False,
    ),
    S(
        "outputs",
        "widget-display",
        [
            "import ipywidgets as widgets\nfrom IPython.display import display",
            "slider = widgets.IntSlider(value=3, description='n')\ndisplay(slider)",
            "print(slider.value)",
        ],
        warm_hits=False,
    ),
    S(
        "outputs",
        "widget-as-last-expression",
        ["import ipywidgets as widgets", "widgets.Text(value='hi')"],
    ),
    S(
        "outputs",
        "clear-output",
        [
            "from IPython.display import clear_output, display",
            "print('first')\nclear_output()\nprint('second')\ndone = 1",
        ],
    ),
    S(
        "outputs",
        "display-update",
        [
            "from IPython.display import display",
            "h = display('one', display_id='d')\nh.update('two')\nv = 2",
        ],
        warm_hits=False,
    ),
    S("outputs", "print-and-result", ["print('text')\n41 + 1"]),
    S(
        "outputs",
        "html-and-markdown",
        [
            "from IPython.display import HTML, Markdown, display",
            "display(Markdown('# Title'))\nHTML('<i>x</i>')",
        ],
    ),
    S(
        "outputs",
        "repr-html-object",
        [
            "class Card:\n    def _repr_html_(self):\n        return '<b>card</b>'\n    def __repr__(self):\n        return 'Card()'",
            "Card()",
        ],
    ),
    S("outputs", "underscore-previous", ["6 * 7", "print(_)"], warm_hits=False),
    S(
        "outputs",
        "out-history",
        ["10 + 1", "print(Out.get(1, 'no Out[1]') if isinstance(Out, dict) else None)"],
        warm_hits=False,
    ),
    S(
        "outputs",
        "progress-carriage-return",
        ["import sys\nfor i in range(3):\n    sys.stdout.write(f'\\r{i}')\nprint()"],
    ),
    S(
        "outputs",
        "stderr-warning-from-module",
        ["from helpers import old\nprint(old())"],
        modules={
            "helpers": "import warnings\n\ndef old():\n    warnings.warn('old api', DeprecationWarning, stacklevel=1)\n    return 1\n"
        },
    ),
    S(
        "outputs",
        "pandas-two-displays",
        [
            "import pandas as pd\nfrom IPython.display import display\nt = pd.DataFrame({'a': [1]})",
            "display(t)\nt.T",
        ],
    ),
    S(
        "outputs",
        "figure-then-text",
        [
            "import matplotlib.pyplot as plt",
            "fig = plt.figure(figsize=(2, 1))\nplt.plot([0, 1])\nplt.show()\nprint('after the plot')",
        ],
    ),
    S(
        "outputs",
        "two-figures",
        [
            "import matplotlib.pyplot as plt",
            "for k in (1, 2):\n    plt.figure(figsize=(1, 1))\n    plt.plot([0, k])\nplt.show()",
        ],
    ),
    S(
        "outputs",
        "bash-like-magic",
        ["%%capture captured\nprint('hidden')", "print(captured.stdout)"],
        warm_hits=False,
    ),
]

FILES: list[Scenario] = [
    S(
        "files",
        "read-csv",
        ["import pandas as pd", "df = pd.read_csv('data.csv')\nprint(df.sum().to_dict())"],
        {"files": {"data.csv": "a,b\n3,4\n"}},
        files={"data.csv": "a,b\n1,2\n"},
    ),
    S(
        "files",
        "read-csv-display",
        ["import pandas as pd", "sales = pd.read_csv('sales.csv')", "sales.groupby('r').v.sum()"],
        {"files": {"sales.csv": "r,v\nn,1\ns,5\nn,7\n"}},
        files={"sales.csv": "r,v\nn,1\ns,2\nn,3\n"},
    ),
    S(
        "files",
        "open-read",
        ["text = open('notes.txt').read()\nprint(text.strip())"],
        {"files": {"notes.txt": "version two\n"}},
        files={"notes.txt": "version one\n"},
    ),
    S(
        "files",
        "with-open-lines",
        [
            "with open('notes.txt') as fh:\n    lines = fh.read().splitlines()",
            "print(len(lines), lines[-1])",
        ],
        {"files": {"notes.txt": "a\nb\nc\n"}},
        files={"notes.txt": "a\nb\n"},
    ),
    S(
        "files",
        "np-loadtxt",
        ["import numpy as np", "m = np.loadtxt('m.txt')\nprint(m.sum())"],
        {"files": {"m.txt": "1 2\n3 9\n"}},
        files={"m.txt": "1 2\n3 4\n"},
    ),
    S(
        "files",
        "glob-folder",
        ["import glob", "names = sorted(glob.glob('in/*.txt'))\nprint(names)"],
        {"files": {"in/c.txt": "c"}},
        files={"in/a.txt": "a", "in/b.txt": "b"},
    ),
    S(
        "files",
        "glob-then-read-all",
        [
            "import glob\nimport pandas as pd",
            "parts = [pd.read_csv(p) for p in sorted(glob.glob('parts/*.csv'))]\nallp = pd.concat(parts)\nprint(len(allp), allp.v.sum())",
        ],
        {"files": {"parts/2.csv": "v\n10\n20\n"}},
        files={"parts/1.csv": "v\n1\n2\n"},
    ),
    S(
        "files",
        "pathlib-read-text",
        ["from pathlib import Path", "cfg = Path('cfg.ini').read_text()\nprint(cfg)"],
        {"files": {"cfg.ini": "[x]\nk=2\n"}},
        files={"cfg.ini": "[x]\nk=1\n"},
    ),
    S(
        "files",
        "json-load",
        ["import json", "params = json.loads(open('p.json').read())\nprint(params['lr'])"],
        {"files": {"p.json": '{"lr": 0.2}'}},
        files={"p.json": '{"lr": 0.1}'},
    ),
    S(
        "files",
        "listdir",
        ["import os", "print(sorted(os.listdir('box')))"],
        {"files": {"box/new.txt": "n"}},
        files={"box/old.txt": "o"},
    ),
    S(
        "files",
        "file-removed",
        ["import os", "print(os.path.exists('flag.txt'))"],
        {"files": {"flag.txt": None}},
        files={"flag.txt": "on"},
    ),
    S(
        "files",
        "read-via-helper",
        ["from helpers import load", "rows = load('rows.txt')\nprint(rows)"],
        {"files": {"rows.txt": "x\ny\nz\n"}},
        files={"rows.txt": "x\ny\n"},
        modules={
            "helpers": "def load(path):\n    with open(path) as fh:\n        return fh.read().split()\n"
        },
    ),
    S(
        "files",
        "same-size-edit",
        ["import pandas as pd", "v = pd.read_csv('v.csv').v.tolist()\nprint(v)"],
        {"files": {"v.csv": "v\n7\n8\n"}},
        files={"v.csv": "v\n1\n2\n"},
    ),
    S(
        "files",
        "file-written-then-read",
        [
            "with open('out.txt', 'w') as fh:\n    fh.write('made by a cell')",
            "print(open('out.txt').read())",
        ],
        {"cells": {0: "with open('out.txt', 'w') as fh:\n    fh.write('made by the edited cell')"}},
    ),
    S(
        "files",
        "tcache-files-option-works",
        [
            "import pandas as pd",
            "%%tcache --files data.csv\ndf = pd.read_csv('data.csv')\nprint(len(df))",
        ],
        {"files": {"data.csv": "a\n1\n2\n3\n"}},
        files={"data.csv": "a\n1\n"},
        warm_hits=False,
    ),
]

CACHED_FUNCTIONS: list[Scenario] = [
    S(
        "cachedfn",
        "frame-mutated-then-called-again",
        [
            "import pandas as pd\nfrom tore_nb import cached\n\n@cached\ndef load(n):\n    return pd.DataFrame({'a': range(n)})",
            "df = load(3)\ndf['b'] = 1",
            "again = load(3)\nprint(list(again.columns))",
        ],
    ),
    S(
        "cachedfn",
        "list-mutated",
        [
            "from tore_nb import cached\n\n@cached\ndef items(n):\n    return list(range(n))",
            "xs = items(3)\nxs.append(99)",
            "print(items(3))",
        ],
    ),
    S(
        "cachedfn",
        "array-mutated",
        [
            "import numpy as np\nfrom tore_nb import cached\n\n@cached\ndef zeros(n):\n    return np.zeros(n)",
            "z = zeros(3)\nz[0] = 5",
            "print(zeros(3))",
        ],
    ),
    S(
        "cachedfn",
        "dict-mutated",
        [
            "from tore_nb import cached\n\n@cached\ndef conf():\n    return {'lr': 0.1}",
            "c = conf()\nc['lr'] = 9",
            "print(conf())",
        ],
    ),
    S(
        "cachedfn",
        "mutated-in-same-cell",
        [
            "from tore_nb import cached\n\n@cached\ndef items(n):\n    return [0] * n",
            "a = items(2)\na[0] = 1\nb = items(2)\nprint(a, b)",
        ],
    ),
    S(
        "cachedfn",
        "next-session-after-mutation",
        [
            "from tore_nb import cached\n\n@cached\ndef base():\n    return [1, 2]",
            "v = base()\nv.append(3)\nprint(v)",
            "print(base())",
        ],
        {"cells": {2: "print('again', base())"}},
    ),
    S(
        "cachedfn",
        "helper-edited",
        [
            "from tore_nb import cached\nfrom helpers import k\n\n@cached\ndef compute(x):\n    return x * k()",
            "print(compute(2))",
        ],
        {"modules": {"helpers": "def k():\n    return 30\n"}},
        modules={"helpers": "def k():\n    return 3\n"},
    ),
    S(
        "cachedfn",
        "global-read-in-body",
        [
            "from tore_nb import cached\nrate = 2\n\n@cached\ndef fee(x):\n    return x * rate",
            "print(fee(10))",
        ],
        {
            "cells": {
                0: "from tore_nb import cached\nrate = 5\n\n@cached\ndef fee(x):\n    return x * rate"
            }
        },
    ),
    S(
        "cachedfn",
        "file-read-in-body",
        [
            "from tore_nb import cached\n\n@cached\ndef read(path):\n    return open(path).read()",
            "print(read('in.txt'))",
        ],
        {"files": {"in.txt": "new"}},
        files={"in.txt": "old"},
    ),
    S(
        "cachedfn",
        "random-in-body",
        [
            "import numpy as np\nfrom tore_nb import cached\nnp.random.seed(0)\n\n@cached\ndef noise():\n    return np.random.rand()",
            "a = noise()\nb = np.random.rand()\nprint(round(a, 6), round(b, 6))",
        ],
    ),
    S(
        "cachedfn",
        "argument-mutated-by-function",
        [
            "from tore_nb import cached\n\n@cached\ndef consume(xs):\n    xs.pop()\n    return len(xs)",
            "data = [1, 2, 3]\nn = consume(data)\nprint(n, data)",
        ],
    ),
]

SCENARIOS: list[Scenario] = [*ROUND_TRIPS, *OUTPUTS, *FILES, *CACHED_FUNCTIONS]

# a live widget cannot outlive its kernel: such a cell runs normally
SCENARIOS = uncached(SCENARIOS, ["outputs-widget-as-last-expression"], "shows a live widget")
# a class made by a call (namedtuple) cannot be rebuilt by another session: runs uncached
SCENARIOS = uncached(SCENARIOS, ["roundtrip-namedtuple"], "a class made by a call")
# a matplotlib figure restored from the cache differs in its callback registries, so a cell
# reading it re-runs (right, not free): known, see the cells issue notes
SCENARIOS = uncached(SCENARIOS, ["roundtrip-figure-object"], "figures hash by their internals")
