"""Hidden global state probes (tore_nb.cells.probes): snapshots, digests, changes, restores."""

from __future__ import annotations

import doctest
import os
import pickle
import random
import subprocess
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from tests.support import SOURCE_ROOT, outputs_under_hash_seeds  # noqa: E402
from tore_nb.cells import probes as probes_module  # noqa: E402
from tore_nb.cells.probes import (  # noqa: E402
    BaseProbe,
    CwdProbe,
    EnvironProbe,
    NumpyRandomProbe,
    PandasOptionsProbe,
    PythonRandomProbe,
    RcParamsProbe,
    StateProbe,
    StateRestoreError,
    SysPathProbe,
    capture_all,
    get_probe,
    probes,
    register_probe,
    unregister_probe,
)

BUILT_INS = [
    "numpy.random",
    "random",
    "matplotlib.rcParams",
    "pandas.options",
    "os.environ",
    "sys.path",
    "cwd",
]


@pytest.fixture(autouse=True)
def _put_state_back() -> Iterator[None]:
    """Each test changes process-wide state; put all of it back afterwards."""
    rng, pyrng = np.random.get_state(), random.getstate()
    path, cwd, env = list(sys.path), os.getcwd(), dict(os.environ)
    options = PandasOptionsProbe().capture()
    with matplotlib.rc_context():
        yield
    np.random.set_state(rng)
    random.setstate(pyrng)
    sys.path[:] = path
    os.chdir(cwd)
    for key in set(os.environ) - set(env):
        del os.environ[key]
    os.environ.update(env)
    PandasOptionsProbe().restore(options)
    plt.close("all")


def test_builtin_probes_are_registered_in_order_with_their_kinds() -> None:
    assert [p.name for p in probes()][: len(BUILT_INS)] == BUILT_INS
    kinds = {p.name: p.kind for p in probes()}
    assert kinds["numpy.random"] == kinds["random"] == "consumed"
    assert kinds["matplotlib.rcParams"] == kinds["pandas.options"] == "keyed"
    assert kinds["os.environ"] == kinds["sys.path"] == kinds["cwd"] == "observed"
    assert all(isinstance(p, StateProbe) for p in probes())


def test_doctests() -> None:
    result = doctest.testmod(probes_module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 10


# -- random generators ----------------------------------------------------------------------------
def test_an_upstream_numpy_seed_changes_the_digest() -> None:
    probe = NumpyRandomProbe()
    np.random.seed(1)
    one = probe.digest(probe.capture())
    np.random.seed(2)
    two = probe.digest(probe.capture())
    np.random.seed(1)
    assert probe.digest(probe.capture()) == one != two


def test_restoring_numpy_continues_from_the_cells_final_state() -> None:
    probe = NumpyRandomProbe()
    np.random.seed(5)
    np.random.rand(10)
    np.random.standard_normal()  # leaves a cached gaussian: part of the state
    final = probe.capture()
    expected = (np.random.rand(3), np.random.standard_normal())
    np.random.seed(99)
    probe.restore(pickle.loads(pickle.dumps(final)))
    assert np.array_equal(np.random.rand(3), expected[0])
    assert np.random.standard_normal() == expected[1]


def test_a_numpy_snapshot_is_not_aliased_to_the_live_generator() -> None:
    probe = NumpyRandomProbe()
    snap = probe.capture()
    digest = probe.digest(snap)
    np.random.rand(1000)
    assert probe.digest(snap) == digest
    assert probe.changes(snap, probe.capture()) is not None
    assert probe.changes(snap, snap) is None


def test_restoring_numpy_after_the_bit_generator_was_replaced() -> None:
    probe = NumpyRandomProbe()
    np.random.seed(3)
    snap = probe.capture()
    expected = np.random.rand()
    np.random.set_bit_generator(np.random.PCG64(1))
    try:
        probe.restore(snap)
        assert np.random.rand() == expected
    finally:
        np.random.set_bit_generator(np.random.MT19937(0))


def test_python_random_changes_and_apply_continue_the_sequence() -> None:
    probe = PythonRandomProbe()
    random.seed(7)
    before = probe.capture()
    random.random()
    after = probe.capture()
    expected = random.random()
    change = probe.changes(before, after)
    assert change is not None
    random.seed(0)
    probe.apply(change)
    assert random.random() == expected
    assert probe.changes(after, after) is None


# -- matplotlib -----------------------------------------------------------------------------------
def test_a_style_is_undone_by_restoring_the_default_snapshot() -> None:
    probe = RcParamsProbe()
    matplotlib.rcdefaults()
    default = probe.capture()
    backend = matplotlib.get_backend()
    plt.style.use("ggplot")
    changed = probe.changes(default, probe.capture())
    assert changed and changed["axes.facecolor"] == "#E5E5E5"
    probe.restore(default)
    assert probe.digest(probe.capture()) == probe.digest(default)
    assert matplotlib.rcParams["axes.facecolor"] == "white"
    assert matplotlib.get_backend() == backend


def test_a_hit_applies_only_the_cells_rc_changes() -> None:
    probe = RcParamsProbe()
    before = probe.capture()
    plt.rc("lines", linewidth=4)
    matplotlib.rcParams["font.sans-serif"] = ["DejaVu Sans"]
    change = probe.changes(before, probe.capture())
    assert set(change or {}) == {"lines.linewidth", "font.sans-serif"}
    matplotlib.rcdefaults()
    matplotlib.rcParams["axes.grid"] = True  # this session's own setting stays
    probe.apply(pickle.loads(pickle.dumps(change)))
    assert matplotlib.rcParams["lines.linewidth"] == 4
    assert matplotlib.rcParams["font.sans-serif"] == ["DejaVu Sans"]
    assert matplotlib.rcParams["axes.grid"] is True


def test_rc_digest_ignores_the_backend_and_interactive_mode() -> None:
    probe = RcParamsProbe()
    digest = probe.digest(probe.capture())
    interactive = matplotlib.is_interactive()
    try:
        matplotlib.interactive(not interactive)
        matplotlib.rcParams["savefig.directory"] = "/somewhere/else"
        matplotlib.use("pdf")
        assert "backend" not in probe.capture()
        assert probe.digest(probe.capture()) == digest
    finally:
        matplotlib.interactive(interactive)
        matplotlib.use("Agg")
    matplotlib.rcParams["lines.linewidth"] = 9.0
    assert probe.digest(probe.capture()) != digest


def test_an_rc_snapshot_does_not_alias_list_values() -> None:
    probe = RcParamsProbe()
    snap = probe.capture()
    fonts = list(snap["font.sans-serif"])
    matplotlib.rcParams["font.sans-serif"].append("Not A Font")
    assert snap["font.sans-serif"] == fonts


def test_capturing_rc_params_does_not_resolve_an_automatic_backend() -> None:
    code = (
        "import sys, matplotlib; from tore_nb.cells.probes import RcParamsProbe; "
        "p = RcParamsProbe(); p.digest(p.capture()); print('matplotlib.pyplot' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": SOURCE_ROOT, "MPLBACKEND": ""},
    )
    assert out.stdout.strip() == "False"


# -- pandas ---------------------------------------------------------------------------------------
def test_pandas_options_are_a_flat_dict_without_deprecated_ones() -> None:
    snap = PandasOptionsProbe().capture()
    assert snap["display.max_rows"] == pd.get_option("display.max_rows")
    assert "display.precision" in snap and "mode.copy_on_write" not in snap
    assert not any(isinstance(v, dict) for v in snap.values())


def test_a_hit_applies_only_the_cells_pandas_options() -> None:
    probe = PandasOptionsProbe()
    before = probe.capture()
    pd.set_option("display.precision", 2)
    change = probe.changes(before, probe.capture())
    assert change == {"display.precision": 2}
    pd.reset_option("display.precision")
    pd.set_option("display.max_columns", 3)  # this session's own setting stays
    probe.apply(change)
    assert pd.get_option("display.precision") == 2
    assert pd.get_option("display.max_columns") == 3
    probe.restore(before)
    assert probe.digest(probe.capture()) == probe.digest(before)


def test_unknown_and_deprecated_pandas_options_are_skipped_quietly() -> None:
    probe = PandasOptionsProbe()
    # warnings are errors in this suite: a deprecation warning would fail here
    probe.apply({"no.such.option": 1, "mode.copy_on_write": True, "display.max_rows": 11})
    assert pd.get_option("display.max_rows") == 11


def test_the_public_fallback_reads_the_same_options() -> None:
    private = PandasOptionsProbe().capture()
    public = PandasOptionsProbe._capture_public()
    assert {k: public[k] for k in private} == private


# -- the process ----------------------------------------------------------------------------------
def test_env_changes_are_the_cells_writes_and_removals_only() -> None:
    probe = EnvironProbe()
    os.environ["TORE_GONE"] = "x"
    before = probe.capture()
    os.environ["TORE_NEW"] = "1"
    del os.environ["TORE_GONE"]
    change = probe.changes(before, probe.capture())
    assert change == {"TORE_NEW": "1", "TORE_GONE": None}
    # another session: its own variables differ, the cell's changes apply over them
    os.environ["TORE_GONE"] = "x"
    del os.environ["TORE_NEW"]
    os.environ["JPY_PARENT_PID"] = "4242"
    probe.apply(change)
    assert os.environ["TORE_NEW"] == "1" and "TORE_GONE" not in os.environ
    assert os.environ["JPY_PARENT_PID"] == "4242"
    out = subprocess.run(["sh", "-c", "echo $TORE_NEW"], capture_output=True, text=True)
    assert out.stdout.strip() == "1"  # through os.environ, so putenv ran


def test_env_capture_is_a_copy_and_restore_is_whole() -> None:
    probe = EnvironProbe()
    snap = probe.capture()
    assert snap == dict(os.environ)
    os.environ["TORE_LATER"] = "1"
    assert "TORE_LATER" not in snap
    probe.restore(snap)
    assert dict(os.environ) == snap


def test_env_digest_of_keys_sees_only_those_keys() -> None:
    probe = EnvironProbe()
    a = {"HOME": "/h", "PID": "1"}
    b = {"HOME": "/h", "PID": "2"}
    assert probe.digest_keys(a, ["HOME"]) == probe.digest_keys(b, ["HOME"])
    assert probe.digest_keys(a, ["PID"]) != probe.digest_keys(b, ["PID"])
    assert probe.digest_keys(a, ["UNSET"]) != probe.digest_keys({"UNSET": ""}, ["UNSET"])
    assert probe.digest(a) != probe.digest(b)


def test_sys_path_changes_keep_front_and_back_and_apply_idempotently() -> None:
    probe = SysPathProbe()
    before = ["", "/lib", "/site"]
    after = ["/mine", "", "/lib", "/lib/extra", "/site", "/tail"]
    change = probe.changes(before, after)
    assert change == {
        "front": ["/mine"],
        "after": [["/lib", "/lib/extra"], ["/site", "/tail"]],
        "removed": [],
    }
    live = sys.path
    sys.path[:] = ["/other-session", "/lib", "/site"]
    probe.apply(change)
    probe.apply(change)
    assert sys.path is live
    assert sys.path == ["/mine", "/other-session", "/lib", "/lib/extra", "/site", "/tail"]
    removal = probe.changes(["/a", "/b"], ["/a"])
    probe.apply(removal)
    assert probe.changes(["/a"], ["/a"]) is None


def test_sys_path_restore_is_in_place() -> None:
    probe = SysPathProbe()
    snap = probe.capture()
    live = sys.path
    sys.path.append("/tore/extra")
    probe.restore(snap)
    assert sys.path is live and sys.path == snap


def test_cwd_restore_and_a_missing_directory(tmp_path: Path) -> None:
    probe = CwdProbe()
    here = probe.capture()
    (tmp_path / "gone").mkdir()
    os.chdir(tmp_path)
    change = probe.changes(here, probe.capture())
    assert change == str(tmp_path)
    os.chdir(here)
    probe.apply(change)
    assert os.getcwd() == str(tmp_path)
    with pytest.raises(StateRestoreError, match="gone") as info:
        probe.restore(str(tmp_path / "gone" / "deeper"))
    assert isinstance(info.value, OSError)
    assert os.getcwd() == str(tmp_path)


# -- the registry ---------------------------------------------------------------------------------
class FakeTorchRandom(BaseProbe):
    """A torch.manual_seed-style generator kept in a fake module."""

    name = "fake_torch.random"
    kind = "consumed"
    seeders = ("fake_torch.manual_seed",)

    def available(self) -> bool:
        return "fake_torch" in sys.modules

    def capture(self) -> Any:
        return list(sys.modules["fake_torch"].state)

    def restore(self, snapshot: Any) -> None:
        sys.modules["fake_torch"].state[:] = snapshot


@pytest.fixture
def fake_torch() -> Iterator[types.ModuleType]:
    module = types.ModuleType("fake_torch")
    module.state = [0]  # type: ignore[attr-defined]

    def manual_seed(seed: int) -> None:
        module.state[:] = [seed]  # type: ignore[attr-defined]

    def rand() -> int:
        module.state[0] = (module.state[0] * 1103515245 + 12345) % 2**31  # type: ignore[attr-defined]
        return int(module.state[0])  # type: ignore[attr-defined]

    module.manual_seed = manual_seed  # type: ignore[attr-defined]
    module.rand = rand  # type: ignore[attr-defined]
    sys.modules["fake_torch"] = module
    try:
        yield module
    finally:
        del sys.modules["fake_torch"]
        unregister_probe("fake_torch.random")


def test_a_third_party_probe_joins_and_replaces_by_name(fake_torch: types.ModuleType) -> None:
    first = FakeTorchRandom()
    register_probe(first)
    assert probes()[-1] is first and get_probe("fake_torch.random") is first
    second = FakeTorchRandom()
    register_probe(probes()[0])  # re-registering a built-in keeps its place
    register_probe(second)
    names = [p.name for p in probes()]
    assert names.count("fake_torch.random") == 1 and names[: len(BUILT_INS)] == BUILT_INS
    assert get_probe("fake_torch.random") is second
    fake_torch.manual_seed(3)
    snap = capture_all()["fake_torch.random"]
    value = fake_torch.rand()
    second.restore(snap)
    assert fake_torch.rand() == value
    assert unregister_probe("fake_torch.random") is second
    assert "fake_torch.random" not in [p.name for p in probes()]


def test_a_probe_needs_a_name_and_a_kind() -> None:
    with pytest.raises(ValueError, match="name"):
        register_probe(BaseProbe())
    bad = FakeTorchRandom()
    bad.kind = "sometimes"  # type: ignore[assignment]
    with pytest.raises(ValueError, match="kind"):
        register_probe(bad)


def test_a_failing_probe_is_left_out_of_capture_all() -> None:
    class Broken(BaseProbe):
        name = "broken"

        def available(self) -> bool:
            return True

        def capture(self) -> Any:
            raise RuntimeError("no")

    register_probe(Broken())
    try:
        snaps = capture_all()
    finally:
        unregister_probe("broken")
    assert "broken" not in snaps and "random" in snaps


def test_probes_never_import_their_library() -> None:
    code = (
        "import sys; from tore_nb.cells import probes as p\n"
        "before = set(sys.modules)\n"
        "[q.available() for q in p.probes()]; snaps = p.capture_all()\n"
        "print(sorted(m for m in set(sys.modules) - before "
        "if m.split('.')[0] in ('numpy', 'pandas', 'matplotlib')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": SOURCE_ROOT},
    )
    assert out.stdout.strip() == "[]"


def test_snapshots_pickle_and_captures_are_cheap() -> None:
    snaps = capture_all()
    assert set(BUILT_INS) <= set(snaps)
    assert pickle.loads(pickle.dumps(snaps)).keys() == snaps.keys()
    for probe in probes():
        if not probe.available():
            continue
        start = time.perf_counter()
        for _ in range(20):
            probe.capture()
        # ~10-60 us each here; a loose bound for a loaded machine
        assert (time.perf_counter() - start) / 20 < 0.005, probe.name


DIGESTS = """
import os, random, sys
import numpy as np, pandas as pd, matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from tore_nb.cells.probes import get_probe
np.random.seed(11); random.seed(11)
plt.style.use("ggplot"); pd.set_option("display.max_rows", 17)
sys.path[:] = ["/a", "/b"]; os.chdir("/")
for name in ("numpy.random", "random", "matplotlib.rcParams", "pandas.options", "sys.path", "cwd"):
    p = get_probe(name); print(name, p.digest(p.capture()))
env = get_probe("os.environ")
print("env", env.digest_keys(env.capture(), ["PATH", "UNSET"]), env.digest({"A": "1", "B": "2"}))
"""


def test_digests_are_equal_across_hash_seeds() -> None:
    outs = outputs_under_hash_seeds(DIGESTS, ("0", "1", "4321"))
    assert len(outs) == 1
    assert len(next(iter(outs)).splitlines()) == 7
