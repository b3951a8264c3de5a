"""What a run changed and how a hit puts it back (tore_nb.cells.snapshot): the namespace's
difference, references to objects that existed before, views, changes made in place."""

from __future__ import annotations

import collections
import random
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tore_nb.cells.snapshot import (
    ObjectIndex,
    RestoreError,
    dumps,
    held_elsewhere,
    inplace_state,
    loads,
    namespace_changes,
    restore_into,
)
from tore_nb.keys import hash_value


def roundtrip(values: Any, before: dict[str, Any], at_hit: dict[str, Any]) -> Any:
    stream, buffers, _ = dumps(values, ObjectIndex(before, deep=list(before)))
    return loads(stream, buffers, at_hit)


def test_changes_are_the_namespaces_difference_and_inputs_changed_in_place() -> None:
    """Outputs are observed: a name bound anywhere (even by a function of another cell) is
    rebound, an input whose content changed is mutated, a name gone is deleted."""
    before = {"a": [1], "b": 2, "c": 3}
    digests = {"a": hash_value(before["a"])}
    after = dict(before)
    after["a"].append(2)
    after["d"] = 4
    del after["c"]
    changes = namespace_changes(before, after, digests, hash_value)
    assert changes == type(changes)(rebound=("d",), mutated=("a",), deleted=("c",))


def test_an_input_changed_then_rebound_is_still_changed() -> None:
    """`df2 = df; df['x'] = 1; df = df.copy()`: the object df held changed, and df2 sees it."""
    old = {"k": 1}
    before = {"df": old}
    after = {"df": {"k": 1, "x": 1}, "df2": old}
    old["x"] = 1
    changes = namespace_changes(before, after, {"df": hash_value({"k": 1})}, hash_value)
    assert changes.mutated == ("df",) and set(changes.rebound) == {"df", "df2"}


def test_an_alias_of_an_object_that_existed_is_restored_as_that_object() -> None:
    raw = {"a": 1}
    out = roundtrip({"clean": raw}, {"raw": raw}, at_hit := {"raw": {"a": 1}})
    assert out["clean"] is at_hit["raw"]


def test_an_item_of_an_input_handed_out_is_restored_as_that_item() -> None:
    model = [0]
    cfg = {"model": model}
    at_hit = {"cfg": {"model": [0]}}
    out = roundtrip({"m": model}, {"cfg": cfg}, at_hit)
    assert out["m"] is at_hit["cfg"]["model"]


def test_a_numpy_view_is_restored_as_a_view() -> None:
    """`x2_sub = x2[:2, :2]`: writing into the restored view changes x2, as after a plain
    run; also when x2 is itself a view (a reshape of an arange)."""
    x2 = np.arange(9).reshape(3, 3)
    at_hit = {"x2": np.arange(9).reshape(3, 3)}
    out = roundtrip({"sub": x2[:2, 1:]}, {"x2": x2}, at_hit)
    out["sub"][0, 0] = 99
    assert at_hit["x2"][0, 1] == 99 and out["sub"].shape == (2, 2)


def test_new_objects_are_private_copies() -> None:
    arr = np.arange(4)
    stream, buffers, used = dumps({"y": arr}, ObjectIndex({}))
    first, second = loads(stream, buffers, {}), loads(stream, buffers, {})
    first["y"][0] = 7
    assert second["y"][0] == 0 and used == set()


@pytest.mark.parametrize(
    "make",
    [
        lambda: [3, 1, 2],
        lambda: {"b": 1, "a": 2},
        lambda: {1, 2},
        lambda: bytearray(b"ab"),
        lambda: collections.deque([1, 2]),
        lambda: collections.defaultdict(list, {"a": [1]}),
        lambda: random.Random(1),
        lambda: np.random.default_rng(1),
        lambda: np.random.RandomState(1),
        lambda: np.arange(5.0),
        lambda: pd.DataFrame({"a": [1, 2]}),
        lambda: pd.Series([1.0, 2.0], name="s"),
        lambda: type("Model", (), {})(),
    ],
)
def test_a_change_made_in_place_is_made_in_place_again(make: Any) -> None:
    """The object a hit changes is the live one: every other reference sees the change."""
    changed, live = make(), make()

    def mutate(obj: Any) -> None:
        if isinstance(obj, list):
            obj.sort()
        elif isinstance(obj, dict):
            obj["new"] = [5]
        elif isinstance(obj, set):
            obj.add(9)
        elif isinstance(obj, bytearray | collections.deque):
            obj.append(1) if isinstance(obj, collections.deque) else obj.extend(b"c")
        elif isinstance(obj, random.Random | np.random.Generator | np.random.RandomState):
            obj.random()
        elif isinstance(obj, np.ndarray):
            obj.fill(0)
        elif isinstance(obj, pd.DataFrame):
            obj["b"] = obj["a"] * 2
        elif isinstance(obj, pd.Series):
            obj.iloc[0] = 9.0
        else:
            obj.coef_ = [1, 2]

    mutate(changed)
    state = inplace_state(changed)
    assert state is not None
    holder = [live]
    restore_into(live, *state)
    assert holder[0] is live
    assert hash_value(live) == hash_value(changed) or repr(live) == repr(changed)


def test_a_frame_changed_in_place_keeps_working_and_its_flags_are_its_own() -> None:
    live = pd.DataFrame({"a": [1, 2]})
    changed = live.copy()
    changed["b"] = 3
    kind, content = inplace_state(changed) or ("", None)
    restore_into(live, kind, content)
    live["c"] = 4
    assert list(live.columns) == ["a", "b", "c"] and live.flags._obj() is live


def test_an_array_of_another_shape_cannot_be_changed_in_place() -> None:
    with pytest.raises(RestoreError):
        restore_into(np.zeros(3), "ndarray", np.zeros(4))


def test_held_elsewhere_sees_other_names_and_containers() -> None:
    obj = object.__new__(type("Opaque", (), {"__slots__": ()}))
    ns = {"x": obj}
    assert not held_elsewhere(obj, ns, ())
    assert held_elsewhere(obj, {"x": obj, "y": obj}, ())
    keep = [obj]
    assert held_elsewhere(obj, ns, ())
    assert not held_elsewhere(obj, ns, (keep,))
