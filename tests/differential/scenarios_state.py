"""Class 4, hidden global state: random number generators, matplotlib and pandas settings,
sys.path, os.environ, the working directory, warnings filters... changed by one cell and read
by later ones (or by the next draw)."""

# ruff: noqa: E501  (cells are data: one string each, as a notebook shows them)

from __future__ import annotations

from .harness import Scenario, restarts, uncached

GROUP = "state"


def S(name: str, cells: list[str], *edits: dict[str, object], **kw: object) -> Scenario:
    return restarts(f"state-{name}", cells, *edits, group=GROUP, **kw)  # type: ignore[arg-type]


PLOT = "fig, ax = plt.subplots(figsize=(2, 2))\nax.plot([1, 3, 2])\nplt.show()"
PLOT2 = "fig, ax = plt.subplots(figsize=(2, 2))\nax.plot([2, 1, 3])\nplt.show()"
FRAME = "import pandas as pd\nbig = pd.DataFrame({'v': range(20)})"

SCENARIOS: list[Scenario] = [
    S(
        "np-seed-upstream-changed",
        ["import numpy as np\nnp.random.seed(1)", "a = np.random.rand(3).round(6)\nprint(a)"],
        {"cells": {0: "import numpy as np\nnp.random.seed(2)"}},
    ),
    S(
        "random-seed-upstream-changed",
        ["import random\nrandom.seed(1)", "pick = random.choice('abcdefgh')\nprint(pick)"],
        {"cells": {0: "import random\nrandom.seed(99)"}},
    ),
    S(
        "np-draw-then-draw-again",
        [
            "import numpy as np\nnp.random.seed(0)",
            "a = np.random.rand()",
            "b = np.random.rand()",
            "print(a == b, round(a, 6), round(b, 6))",
        ],
        {"cells": {2: "b = np.random.rand() + 0"}},
    ),
    S(
        "unseeded-draw-then-draw",
        ["import random", "a = random.random()", "b = random.random()\nprint(a == b)"],
        {"cells": {2: "b = random.random()\nprint('edited', a == b)"}},
    ),
    S(
        "np-unseeded-draws",
        [
            "import numpy as np",
            "noise = np.random.normal(size=3).round(6)",
            "more = np.random.normal(size=3).round(6)\nprint(noise, more)",
        ],
        {"cells": {2: "more = np.random.normal(size=2).round(6)\nprint(noise, more)"}},
    ),
    S(
        "pandas-sample-global-rng",
        [
            "import numpy as np\nimport pandas as pd\nnp.random.seed(4)\ndf = pd.DataFrame({'a': range(10)})",
            "s1 = df.sample(3)",
            "s2 = df.sample(3)\nprint(s1.a.tolist(), s2.a.tolist())",
        ],
        {"cells": {2: "s2 = df.sample(2)\nprint(s1.a.tolist(), s2.a.tolist())"}},
    ),
    S(
        "sklearn-split-global-rng",
        [
            "import numpy as np\nfrom sklearn.model_selection import train_test_split\nnp.random.seed(0)\nX = np.arange(20).reshape(10, 2)",
            "a_tr, a_te = train_test_split(X)",
            "b_tr, b_te = train_test_split(X)\nprint(a_te[:, 0], b_te[:, 0])",
        ],
        {
            "cells": {
                2: "b_tr, b_te = train_test_split(X, test_size=2)\nprint(a_te[:, 0], b_te[:, 0])"
            }
        },
    ),
    S(
        "plt-style-use-then-edit-plot",
        ["import matplotlib.pyplot as plt", "plt.style.use('ggplot')", PLOT],
        {"cells": {2: PLOT2}},
    ),
    S(
        "plt-style-changed",
        ["import matplotlib.pyplot as plt", "plt.style.use('ggplot')", PLOT],
        {"cells": {1: "plt.style.use('bmh')"}},
    ),
    S(
        "plt-rc-linewidth",
        ["import matplotlib.pyplot as plt", "plt.rc('lines', linewidth=4)", PLOT],
        {"cells": {2: PLOT2}},
    ),
    S(
        "plt-rcparams-setitem",
        [
            "import matplotlib as mpl\nimport matplotlib.pyplot as plt",
            "mpl.rcParams['axes.grid'] = True",
            PLOT,
        ],
        {"cells": {1: "mpl.rcParams['axes.grid'] = False"}},
    ),
    S(
        "plt-figure-numbers",
        [
            "import matplotlib.pyplot as plt",
            "f1 = plt.figure(figsize=(1, 1))\nplt.close(f1)\nn1 = f1.number",
            "f2 = plt.figure(figsize=(1, 1))\nprint(f2.number)\nplt.close(f2)",
        ],
        {
            "cells": {
                2: "f2 = plt.figure(figsize=(1, 1))\nprint('second', f2.number)\nplt.close(f2)"
            }
        },
    ),
    S(
        "pd-set-option-max-rows",
        [FRAME, "pd.set_option('display.max_rows', 5)", "print(big)"],
        {"cells": {2: "print(big.head(12))"}},
    ),
    S(
        "pd-set-option-changed",
        [FRAME, "pd.set_option('display.max_rows', 5)", "print(big)"],
        {"cells": {1: "pd.set_option('display.max_rows', 8)"}},
    ),
    S(
        "pd-precision-option",
        [
            "import pandas as pd\nfr = pd.DataFrame({'x': [1 / 3, 2 / 3]})",
            "pd.options.display.precision = 2",
            "fr",
        ],
        {"cells": {2: "fr * 2"}},
    ),
    S(
        "np-printoptions",
        [
            "import numpy as np\nvals = np.array([1 / 3, 2 / 3])",
            "np.set_printoptions(precision=2)",
            "print(vals)",
        ],
        {"cells": {2: "print(vals * 3)"}},
    ),
    S(
        "sys-path-append",
        ["import sys\nsys.path.append('lib')", "import mylib\nprint(mylib.X)"],
        {"cells": {1: "import mylib\nprint('X is', mylib.X)"}},
        files={"lib/mylib.py": "X = 42\n"},
    ),
    S(
        "os-environ-set-in-cell",
        ["import os\nos.environ['STAGE'] = 'dev'", "print(os.environ.get('STAGE'))"],
        {"cells": {1: "print('stage:', os.environ.get('STAGE'))"}},
    ),
    S(
        "os-environ-changed-in-cell",
        ["import os\nos.environ['STAGE'] = 'dev'", "stage = os.environ['STAGE']\nprint(stage)"],
        {"cells": {0: "import os\nos.environ['STAGE'] = 'prod'"}},
    ),
    S(
        "env-var-between-sessions",
        ["import os\nthreshold = float(os.environ.get('THRESH', '0.5'))", "print(threshold * 2)"],
        {"env": {"THRESH": "0.9"}},
        env={"THRESH": "0.7"},
    ),
    S(
        "env-var-read-in-helper",
        ["from helpers import mode", "print(mode())"],
        {"env": {"RUN_MODE": "full"}},
        env={"RUN_MODE": "quick"},
        modules={
            "helpers": "import os\n\ndef mode():\n    return os.environ.get('RUN_MODE', 'none')\n"
        },
    ),
    S(
        "os-chdir-in-cell",
        ["import os\nos.chdir('sub')", "text = open('data.txt').read()\nprint(text)"],
        {"cells": {1: "text = open('data.txt').read().upper()\nprint(text)"}},
        files={"sub/data.txt": "inside sub\n", "data.txt": "top level\n"},
    ),
    S(
        "os-chdir-then-getcwd",
        ["import os\nos.chdir('sub')", "print(os.path.basename(os.getcwd()))"],
        {"cells": {1: "print('cwd', os.path.basename(os.getcwd()))"}},
        files={"sub/keep.txt": "x\n"},
    ),
    S(
        "warnings-filter",
        [
            "import warnings\nwarnings.filterwarnings('ignore', category=UserWarning)",
            "from helpers import noisy\nprint(noisy())",
        ],
        {"cells": {1: "from helpers import noisy\nprint('edited', noisy())"}},
        modules={
            "helpers": "import warnings\n\ndef noisy():\n    warnings.warn('careful', UserWarning, stacklevel=1)\n    return 1\n"
        },
    ),
    S(
        "decimal-context",
        [
            "import decimal\ndecimal.getcontext().prec = 5",
            "q = decimal.Decimal(1) / decimal.Decimal(7)\nprint(q)",
        ],
        {"cells": {1: "q = decimal.Decimal(2) / decimal.Decimal(7)\nprint(q)"}},
    ),
    S(
        "recursion-limit",
        ["import sys\nsys.setrecursionlimit(2500)", "print(sys.getrecursionlimit())"],
        {"cells": {1: "print('limit', sys.getrecursionlimit())"}},
    ),
    S(
        "logging-config",
        [
            "import logging\nimport sys\nlogging.basicConfig(level=logging.INFO, stream=sys.stdout, format='%(levelname)s %(message)s', force=True)",
            "logging.getLogger('nb').info('hello')",
        ],
        {"cells": {1: "logging.getLogger('nb').info('hello again')"}},
    ),
    S(
        "float-format-option",
        [
            "import pandas as pd\nvals = pd.DataFrame({'x': [1.23456]})",
            "pd.options.display.float_format = '{:.1f}'.format",
            "print(vals)",
        ],
        {"cells": {2: "print(vals * 2)"}},
    ),
    S(
        "precision-magic",
        ["import math", "%precision 3", "math.pi"],
        {"cells": {2: "math.e"}},
    ),
    S(
        "module-level-state-in-helper",
        [
            "import helpers",
            "helpers.register('a')",
            "helpers.register('b')\nprint(helpers.REGISTRY)",
        ],
        {"cells": {2: "helpers.register('c')\nprint(helpers.REGISTRY)"}},
        modules={"helpers": "REGISTRY = []\n\ndef register(name):\n    REGISTRY.append(name)\n"},
    ),
    S(
        "seed-in-helper-call",
        [
            "import numpy as np\nfrom helpers import reseed",
            "reseed(3)",
            "print(np.random.randint(0, 1000, 3))",
        ],
        {"cells": {1: "reseed(4)"}},
        modules={"helpers": "import numpy as np\n\ndef reseed(s):\n    np.random.seed(s)\n"},
    ),
]

# a helper that changes its own module's state: a hit could not change it, so it runs uncached
SCENARIOS = uncached(
    SCENARIOS, ["state-module-level-state-in-helper"], "changes a local module's state"
)
# logging handlers hold streams and files a hit cannot make again: configuring runs uncached
SCENARIOS = uncached(SCENARIOS, ["state-logging-config"], "configures logging")
