"""Regressions of cell analysis (tore_nb.cells.analysis): conditional binds, calls before binds,
walrus, self-reference. The fingerprint regressions that lived here are in test_fingerprint.py;
these belong with the cell analysis tests."""

from __future__ import annotations

import pytest

from tore_nb.cells import analyze_cell, cell_key


# -- 5. cell analysis: conditional binds, calls before binds, walrus, self-reference ---------------
@pytest.mark.parametrize(
    ("source", "name"),
    [
        ("if flag:\n    y = 0\nz = y", "y"),
        ("try:\n    y = f()\nexcept Exception:\n    pass\nz = y", "y"),
        ("match cmd:\n    case 1:\n        y = 1\nz = y", "y"),
        ("a = b and (y := 1)\nz = y", "y"),
        ("def g():\n    return x\ny = g()\nx = 5", "x"),
        ("def g():\n    return x\ndef f():\n    return g()\ny = f()\nx = 5", "x"),
        ("r = sorted(xs, key=lambda e: e[idx])\nidx = 0", "idx"),
        ("@register\ndef f():\n    return later\nlater = 1", "later"),
    ],
)
def test_names_bound_later_or_on_some_paths_are_inputs(source: str, name: str) -> None:
    """A name bound only on some paths (if, try, match, walrus in a short-circuit) or only
    after a call that reads it is an input of the cell."""
    a = analyze_cell(source)
    assert name in a.inputs
    key = cell_key(a, {"flag": False, "xs": [], "cmd": 0, "b": 0, name: 1})
    assert key.key != cell_key(a, {"flag": False, "xs": [], "cmd": 0, "b": 0, name: 2}).key


@pytest.mark.parametrize(
    "source",
    [
        "if flag:\n    y = 0\nelse:\n    y = 1\nz = y",
        "if flag:\n    raise ValueError\ny = 1\nz = y",
        "try:\n    import y\nexcept ImportError:\n    y = None\nz = y",
        "match cmd:\n    case 1:\n        y = 1\n    case _:\n        y = 2\nz = y",
        "for i in xs:\n    y = i\n    z = y",
        "for i in xs:\n    y = i\nz = y",  # a loop body is taken to run: re-runs hit
        "while more():\n    y = 1\nz = y",
        "def g():\n    return y\ny = 5\nz = g()",
        "def g():\n    return y\ny = 1",
        "class C:\n    def m(self):\n        return C.y\ny = 1",
        "with open(p) as f:\n    y = f.read()\nz = y",
    ],
)
def test_names_bound_on_every_path_first_are_not_inputs(source: str) -> None:
    """A name bound on every path before it is read is an output, not an input."""
    a = analyze_cell(source)
    assert "y" not in a.inputs and "C" not in a.inputs
    assert "y" in a.outputs


def test_walrus_in_a_comprehension_binds_in_the_cell() -> None:
    """A walrus in a comprehension binds in the enclosing scope: an output, not an input."""
    a = analyze_cell("r = [(y := v) for v in xs]")
    assert a.inputs == ("xs",)
    assert set(a.outputs) == {"r", "y"}
    inner = analyze_cell("def f():\n    r = [(y := v) for v in xs]\n    return y\nq = f()")
    assert inner.inputs == ("xs",)
