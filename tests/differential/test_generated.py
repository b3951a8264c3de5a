"""Generated differential scenarios (Hypothesis): small random cell programs over ints, lists,
dicts and arrays, with functions defined in cells and in a local module, imports, prints, and
random edits between sessions (a constant in a cell, in the helper module, or in a data file).

Two families: `pure` programs (bindings only; their edits touch cells) must agree today;
`full` programs add in-place mutation (methods and function calls), the helper module and a
data file, the classes the lead's rewrite is to handle. Shrinking is off (each example costs
several processes): a failure prints the whole program.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from .harness import CACHED_MODES, ForkServer, Scenario, Session, check, report

NAMES = ("a", "b", "c", "xs", "d", "arr", "total")


@dataclass
class Cell:
    template: str  # "{c}" marks the cell's constant, the target of edits
    const: int | None = None

    def text(self, const: int | None = None) -> str:
        value = self.const if const is None else const
        return self.template.replace("{c}", str(value)) + "\n"


@dataclass
class Program:
    cells: list[Cell]
    module_k: int
    file_n: int
    edits: list[tuple[str, int, int]] = field(default_factory=list)

    def scenario(self, name: str) -> Scenario:
        consts = [c.const for c in self.cells]
        module_k, file_n = self.module_k, self.file_n

        def session(**kw: object) -> Session:
            cells = [c.text(k) for c, k in zip(self.cells, consts, strict=True)]
            return Session(
                cells,
                files={"n.txt": f"{file_n}\n"},
                modules={"helpers": HELPERS.format(k=module_k)},
                **kw,  # type: ignore[arg-type]
            )

        # the last cell lists the namespace through globals(): uncached by design, compared
        last = frozenset({len(self.cells) - 1})
        sessions = [session(), session(expect="all-hits", misses=last)]
        for kind, where, value in self.edits:
            if kind == "cell":
                consts[where] = value
            elif kind == "module":
                module_k = value
            else:
                file_n = value
            sessions.append(session())
        return Scenario(name, sessions, group="generated")

    def show(self) -> str:
        lines = [f"helpers.K = {self.module_k}, n.txt = {self.file_n}, edits: {self.edits}"]
        for i, c in enumerate(self.cells):
            lines.append(f"--- cell {i}\n{c.text()}")
        return "\n".join(lines)


HELPERS = "K = {k}\n\ndef g(x):\n    return x + K\n\ndef grow(items):\n    items.append(K)\n"


@st.composite
def programs(draw: st.DrawFn, full: bool) -> Program:
    types: dict[str, str] = {}
    cells: list[Cell] = [Cell("import math\nimport numpy as np")]
    has_fn = False

    def const() -> int:
        return draw(st.integers(0, 9))

    def pick(kind: str) -> str:
        return draw(st.sampled_from(sorted(n for n, t in types.items() if t == kind)))

    for _ in range(draw(st.integers(2, 6))):
        kinds = ["int", "list", "dict", "arr", "fn"]
        if "int" in types.values():
            kinds += ["derive", "math", "print"]
            if has_fn:
                kinds.append("call")
            if full:
                kinds += ["helper", "file"]
        if "list" in types.values():
            kinds += ["listuse"] + (["append", "sort", "grow"] if full else [])
        if "dict" in types.values():
            kinds += ["dictuse"] + (["setitem"] if full else [])
        if "arr" in types.values():
            kinds += ["arruse"] + (["fill", "aug"] if full else [])
        kind = draw(st.sampled_from(kinds))
        target = draw(st.sampled_from(NAMES))
        if kind == "int":
            cells.append(Cell(f"{target} = {{c}}", const()))
            types[target] = "int"
        elif kind == "list":
            cells.append(Cell(f"{target} = [{{c}}, 3, 1]", const()))
            types[target] = "list"
        elif kind == "dict":
            cells.append(Cell(f"{target} = {{'k': {{c}}, 'z': 0}}", const()))
            types[target] = "dict"
        elif kind == "arr":
            cells.append(Cell(f"{target} = np.arange({{c}} + 2)", const()))
            types[target] = "arr"
        elif kind == "fn":
            cells.append(Cell("def f(x):\n    return x * {c} + 1", const()))
            has_fn = True
        elif kind == "derive":
            src = pick("int")
            cells.append(Cell(f"{target} = {src} + {{c}}\nprint({target})", const()))
            types[target] = "int"
        elif kind == "math":
            src = pick("int")
            cells.append(Cell(f"{target} = math.floor({src} / 2)", None))
            types[target] = "int"
        elif kind == "print":
            cells.append(Cell(f"print({pick('int')})", None))
        elif kind == "call":
            src = pick("int")
            cells.append(Cell(f"{target} = f({src})\n{target}", None))
            types[target] = "int"
        elif kind == "helper":
            src = pick("int")
            cells.append(Cell(f"from helpers import g\n{target} = g({src})", None))
            types[target] = "int"
        elif kind == "file":
            cells.append(Cell(f"{target} = int(open('n.txt').read()) + {{c}}", const()))
            types[target] = "int"
        elif kind == "listuse":
            src = pick("list")
            cells.append(Cell(f"{target} = len({src}) + sum({src})\nprint({src})", None))
            types[target] = "int"
        elif kind == "append":
            cells.append(Cell(f"{pick('list')}.append({{c}})", const()))
        elif kind == "sort":
            cells.append(Cell(f"{pick('list')}.sort()", None))
        elif kind == "grow":
            cells.append(Cell(f"from helpers import grow\ngrow({pick('list')})", None))
        elif kind == "dictuse":
            src = pick("dict")
            cells.append(Cell(f"{target} = {src}['k'] * 2\nprint(sorted({src}.items()))", None))
            types[target] = "int"
        elif kind == "setitem":
            cells.append(Cell(f"{pick('dict')}['k'] = {{c}}", const()))
        elif kind == "arruse":
            src = pick("arr")
            cells.append(Cell(f"{target} = int({src}.sum())\n{src}", None))
            types[target] = "int"
        elif kind == "fill":
            cells.append(Cell(f"{pick('arr')}.fill({{c}})", const()))
        elif kind == "aug":
            cells.append(Cell(f"{pick('arr')} += {{c}}", const()))
    cells.append(Cell("print(sorted(k for k in globals() if not k.startswith('_')))", None))
    editable = [i for i, c in enumerate(cells) if c.const is not None]
    edit_kinds = ["cell"] if editable else []
    if full:
        edit_kinds += ["module", "file"]
    edits: list[tuple[str, int, int]] = []
    if edit_kinds:
        for _ in range(draw(st.integers(1, 2))):
            kind = draw(st.sampled_from(edit_kinds))
            where = draw(st.sampled_from(editable)) if kind == "cell" else -1
            edits.append((kind, where, draw(st.integers(10, 19))))
    return Program(cells, draw(st.integers(0, 9)), draw(st.integers(0, 9)), edits)


EXAMPLES = 30


def fast(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )


def _check(server: ForkServer, program: Program, name: str) -> None:
    for mode in CACHED_MODES:
        scenario = program.scenario(f"{name}-{mode}")
        diffs = check(server, scenario, mode)
        if diffs:
            pytest.fail(f"{report(diffs)}\nthe program:\n{program.show()}", pytrace=False)


@fast(EXAMPLES)
@given(program=programs(full=False))
def test_generated_pure_programs(server: ForkServer, program: Program) -> None:
    _check(server, program, "generated-pure")


@fast(EXAMPLES)
@given(program=programs(full=True))
def test_generated_full_programs(server: ForkServer, program: Program) -> None:
    _check(server, program, "generated-full")
