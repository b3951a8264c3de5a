"""What a running cell touches (tore_nb.cells.observe): files, listings, env, cwd, imports."""

from __future__ import annotations

import doctest
import glob
import importlib
import os
import pickle
import random
import sys
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tore_nb.cells import observe as observe_module
from tore_nb.cells.observe import Observation, observe
from tore_nb.cells.probes import BaseProbe, register_probe, unregister_probe

ENV_METHODS = ("__getitem__", "__contains__", "__iter__", "__setitem__", "__delitem__")
ORIGINAL_ENV = {name: vars(os._Environ).get(name) for name in ENV_METHODS}
ORIGINAL_GETCWD = os.getcwd


def assert_unpatched() -> None:
    assert observe_module._active == 0
    assert {name: vars(os._Environ).get(name) for name in ENV_METHODS} == ORIGINAL_ENV
    assert os.getcwd is ORIGINAL_GETCWD
    assert np.random.seed is np.random.mtrand.seed
    assert random.seed == random._inst.seed  # a bound method: equal, never identical


@pytest.fixture(autouse=True)
def _state_back(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    rng, pyrng = np.random.get_state(), random.getstate()
    monkeypatch.chdir(tmp_path)
    yield
    np.random.set_state(rng)
    random.setstate(pyrng)
    assert_unpatched()


def write(path: Path, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_doctests() -> None:
    result = doctest.testmod(observe_module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 5


# -- files ----------------------------------------------------------------------------------------
def test_relative_reads_and_writes_are_recorded_as_given(tmp_path: Path) -> None:
    write(tmp_path / "data" / "in.csv", "a\n1\n")
    with observe() as seen:
        text = Path("data/in.csv").read_text()
        with open("out.txt", "w") as f:
            f.write(text)
    obs = seen.result
    assert obs.files_read == ("data/in.csv",)
    assert obs.files_written == ("out.txt",)
    assert obs.cwd_read
    assert obs.absolute("data/in.csv") == str(tmp_path / "data" / "in.csv")
    assert obs.absolute("out.txt") == str(tmp_path / "out.txt")


def test_absolute_paths_do_not_read_the_working_directory(tmp_path: Path) -> None:
    source = write(tmp_path / "in.bin")
    with observe() as seen:
        source.read_bytes()
        np.save(tmp_path / "arr.npy", np.arange(3))
        np.load(tmp_path / "arr.npy")
    obs = seen.result
    assert obs.files_read == (str(source),)  # arr.npy: the run made it, then read it
    assert obs.files_written == (str(tmp_path / "arr.npy"),)
    assert not obs.cwd_read


def test_a_file_the_run_created_before_reading_is_not_an_input(tmp_path: Path) -> None:
    write(tmp_path / "log.txt", "old\n")
    with observe() as seen:
        Path("fresh.txt").write_text("made here")
        Path("fresh.txt").read_text()
        with open("log.txt", "a") as f:  # appending keeps what was there: still an input
            f.write("more\n")
        Path("log.txt").read_text()
        with open("both.txt", "w+") as f:
            f.write("1")
    obs = seen.result
    assert obs.files_read == ("log.txt",)
    assert obs.files_written == ("fresh.txt", "log.txt", "both.txt")


def test_os_open_counts_and_file_descriptors_do_not(tmp_path: Path) -> None:
    write(tmp_path / "raw.txt")
    with observe() as seen:
        fd = os.open("raw.txt", os.O_RDONLY)
        with open(fd, closefd=True) as f:  # an int: the fd, not a path
            f.read()
        fd = os.open("new.txt", os.O_WRONLY | os.O_CREAT)
        os.close(fd)
    assert seen.result.files_read == ("raw.txt",)
    assert seen.result.files_written == ("new.txt",)


def test_directories_fifos_and_missing_files_are_not_files(tmp_path: Path) -> None:
    (tmp_path / "folder").mkdir()
    os.mkfifo(tmp_path / "pipe")
    write(tmp_path / "doomed.txt")
    with observe() as seen:
        os.close(os.open("folder", os.O_RDONLY))
        os.close(os.open("pipe", os.O_RDONLY | os.O_NONBLOCK))
        with pytest.raises(FileNotFoundError):
            Path("missing.txt").read_text()
        Path("doomed.txt").read_text()
        Path("doomed.txt").unlink()
    assert seen.result.files_read == ()


def test_library_data_and_system_files_are_skipped() -> None:
    numpy_file = Path(np.__file__)
    stdlib_file = Path(os.__file__)
    with observe() as seen:
        numpy_file.read_bytes()
        stdlib_file.read_bytes()
        Path("/proc/self/status").read_text()
        os.listdir(numpy_file.parent)
    assert seen.result.files_read == ()
    assert seen.result.dirs_listed == ()


def test_ignored_folders_do_not_count(tmp_path: Path) -> None:
    write(tmp_path / "cache" / "entry")
    write(tmp_path / "data.txt")
    with observe(ignore=[tmp_path / "cache"]) as seen:
        (tmp_path / "cache" / "entry").read_text()
        (tmp_path / "data.txt").read_text()
    assert seen.result.files_read == (str(tmp_path / "data.txt"),)


# -- listings -------------------------------------------------------------------------------------
def test_listings_and_globs_are_recorded(tmp_path: Path) -> None:
    for name in ("a.csv", "b.csv"):
        write(tmp_path / "data" / name)
    (tmp_path / "other").mkdir()
    with observe() as seen:
        found = sorted(glob.glob("data/*.csv"))
        os.listdir("other")
        sorted(Path(tmp_path).glob("*"))
    assert found == ["data/a.csv", "data/b.csv"]
    obs = seen.result
    assert obs.globs == ("data/*.csv",)
    assert obs.dirs_listed == ("data", "other", str(tmp_path))
    assert obs.cwd_read
    assert obs.files_read == ()


# -- imports -------------------------------------------------------------------------------------
def test_first_imports_are_reported_and_their_code_files_are_not_data(
    tmp_path: Path, local_modules: Path
) -> None:
    data = write(tmp_path / "settings.json", "{}")
    (local_modules / "tore_probe_mod.py").write_text(
        f"import json\nSETTINGS = json.loads(open({str(data)!r}).read())\n"
    )
    (local_modules / "tore_probe_other.py").write_text("VALUE = 1\n")
    importlib.invalidate_caches()
    with observe() as seen:
        import tore_probe_mod  # noqa: F401

        importlib.import_module("tore_probe_other")
        import os.path  # noqa: F401 (already imported: not new)
    obs = seen.result
    assert obs.imported == ("tore_probe_mod", "tore_probe_other")
    # the module's own data file counts; its .py and .pyc, and the folder scan, do not
    assert obs.files_read == (str(data),)
    assert obs.dirs_listed == ()


# -- the environment ------------------------------------------------------------------------------
def test_env_reads_by_every_route_and_not_after_the_cell_set_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TORE_A", "1")
    monkeypatch.delenv("TORE_B", raising=False)
    with observe() as seen:
        assert os.environ["TORE_A"] == "1"
        os.environ.get("TORE_B")
        assert "TORE_C" not in os.environ
        os.getenv("TORE_D")
        os.environ["TORE_E"] = "set here"
        assert os.environ["TORE_E"] == "set here"
        os.environ.pop("TORE_E")
    obs = seen.result
    assert obs.env_read == ("TORE_A", "TORE_B", "TORE_C", "TORE_D")
    assert not obs.env_all


def test_iterating_the_environment_reads_all_of_it() -> None:
    with observe() as seen:
        dict(os.environ)
    assert seen.result.env_all
    with observe() as seen:
        len(os.environ)
    assert not seen.result.env_all


# -- the working directory ------------------------------------------------------------------------
def test_cwd_reads(tmp_path: Path) -> None:
    with observe() as seen:
        os.getcwd()
    assert seen.result.cwd_read
    with observe() as seen:
        Path.cwd()
    assert seen.result.cwd_read
    with observe() as seen:
        os.path.abspath("x")
    assert seen.result.cwd_read
    with observe() as seen:
        os.path.abspath("/x")
        os.getpid()
    assert not seen.result.cwd_read


def test_a_chdir_to_an_absolute_path_first_makes_relative_paths_independent(
    tmp_path: Path,
) -> None:
    write(tmp_path / "sub" / "in.txt")
    with observe() as seen:
        os.chdir(tmp_path / "sub")
        Path("in.txt").read_text()
    assert not seen.result.cwd_read
    assert seen.result.absolute("in.txt") == str(tmp_path / "sub" / "in.txt")
    os.chdir(tmp_path)
    with observe() as seen:
        os.chdir("sub")  # relative: lands where it started from
        Path("in.txt").read_text()
    assert seen.result.cwd_read


# -- seeding ------------------------------------------------------------------------------------
def test_seeding_before_drawing_is_seeded_and_after_is_not() -> None:
    with observe() as seen:
        np.random.seed(1)
        np.random.rand()
        random.random()
        random.seed(2)
    assert seen.result.seeded == frozenset({"numpy.random"})
    with observe() as seen:
        np.random.set_state(np.random.get_state())
        random.setstate(random.getstate())
        random.random()
    assert seen.result.seeded == frozenset({"numpy.random", "random"})


def test_given_snapshots_are_the_start_state() -> None:
    from tore_nb.cells.probes import capture_all

    snaps = capture_all()
    np.random.rand()  # between the caller's snapshot and the run: counts as consumed
    with observe(snaps) as seen:
        np.random.seed(0)
    assert "numpy.random" not in seen.result.seeded


def test_a_seeder_bound_inside_the_run_stays_usable_and_pickles_as_the_original() -> None:
    with observe():
        from numpy.random import seed
    seed(4)
    assert np.random.rand() == (np.random.seed(4), np.random.rand())[1]
    assert pickle.loads(pickle.dumps(seed)) is np.random.mtrand.seed
    assert repr(seed) == repr(np.random.mtrand.seed)


class FakeRandom(BaseProbe):
    name = "fake_rng"
    kind = "consumed"
    seeders = ("fake_rng.manual_seed",)

    def available(self) -> bool:
        return "fake_rng" in sys.modules

    def capture(self) -> Any:
        return tuple(sys.modules["fake_rng"].state)

    def restore(self, snapshot: Any) -> None:
        sys.modules["fake_rng"].state[:] = snapshot


def test_a_registered_third_party_generator_is_watched_too() -> None:
    module = types.ModuleType("fake_rng")
    module.state = [0]  # type: ignore[attr-defined]

    def manual_seed(value: int) -> None:
        module.state[:] = [value]  # type: ignore[attr-defined]

    module.manual_seed = manual_seed  # type: ignore[attr-defined]
    sys.modules["fake_rng"] = module
    register_probe(FakeRandom())
    try:
        with observe() as seen:
            module.manual_seed(3)  # type: ignore[attr-defined]
        assert "fake_rng" in seen.result.seeded
        assert module.manual_seed is manual_seed  # type: ignore[attr-defined]
        with observe() as seen:
            module.state[0] += 1  # type: ignore[attr-defined]
            module.manual_seed(3)  # type: ignore[attr-defined]
        assert "fake_rng" not in seen.result.seeded
    finally:
        unregister_probe("fake_rng")
        del sys.modules["fake_rng"]


# -- scope: exceptions, nesting, threads ----------------------------------------------------------
def test_patches_are_removed_after_an_exception(tmp_path: Path) -> None:
    write(tmp_path / "in.txt")
    with pytest.raises(ZeroDivisionError), observe() as seen:
        Path("in.txt").read_text()
        os.environ.get("TORE_X")
        assert observe_module._active == 1
        assert os.getcwd is not ORIGINAL_GETCWD
        1 / 0  # noqa: B018
    assert_unpatched()
    assert seen.result.files_read == ("in.txt",)
    assert seen.result.env_read == ("TORE_X",)


def test_nested_observations_both_record_and_patches_stay_until_the_outer_ends(
    tmp_path: Path,
) -> None:
    write(tmp_path / "a.txt")
    write(tmp_path / "b.txt")
    write(tmp_path / "c.txt")
    with observe() as outer:
        Path("a.txt").read_text()
        with observe() as inner:
            Path("b.txt").read_text()
            os.environ.get("TORE_INNER")
            np.random.seed(1)
        assert observe_module._active == 1
        assert os.getcwd is not ORIGINAL_GETCWD
        Path("c.txt").read_text()
        os.environ.get("TORE_OUTER")
    assert inner.result.files_read == ("b.txt",)
    assert inner.result.env_read == ("TORE_INNER",)
    assert outer.result.files_read == ("a.txt", "b.txt", "c.txt")
    assert outer.result.env_read == ("TORE_INNER", "TORE_OUTER")
    assert inner.result.seeded == outer.result.seeded == frozenset({"numpy.random"})


def test_another_threads_activity_is_not_recorded(tmp_path: Path) -> None:
    write(tmp_path / "mine.txt")
    write(tmp_path / "theirs.txt")
    started, go, done = threading.Event(), threading.Event(), threading.Event()
    theirs: dict[str, Observation] = {}

    def other() -> None:
        started.set()
        go.wait(5)
        (tmp_path / "theirs.txt").read_text()
        os.environ.get("TORE_THEIRS")
        os.getcwd()
        with observe() as seen:  # its own, concurrent observation
            (tmp_path / "theirs.txt").read_text()
        theirs["obs"] = seen.result
        done.set()

    thread = threading.Thread(target=other)
    thread.start()
    started.wait(5)
    with observe() as seen:
        go.set()
        done.wait(5)
        (tmp_path / "mine.txt").read_text()
    thread.join(5)
    assert seen.result.files_read == (str(tmp_path / "mine.txt"),)
    assert seen.result.env_read == ()
    assert not seen.result.cwd_read
    assert theirs["obs"].files_read == (str(tmp_path / "theirs.txt"),)


def test_an_observer_is_used_once_and_its_result_waits_for_the_end() -> None:
    observer = observe()
    with pytest.raises(RuntimeError, match="not ended"):
        observer.result  # noqa: B018
    with observer, pytest.raises(RuntimeError, match="once"), observer:
        pass
    assert observer.result == Observation()


def test_entering_and_leaving_is_cheap() -> None:
    with observe():
        pass
    start = time.perf_counter()
    for _ in range(200):
        with observe():
            pass
    # ~20-70 us each here; a loose bound for a loaded machine
    assert (time.perf_counter() - start) / 200 < 0.002
