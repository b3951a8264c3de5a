"""What a running cell does outside the kernel (tore_nb.cells.effects, through observe)."""

from __future__ import annotations

import doctest
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tore_nb.cells import effects
from tore_nb.cells.observe import observe
from tore_nb.config import CacheConfig
from tore_nb.tiered import MultiLevelCache


@pytest.fixture
def cache(tmp_path: Path) -> MultiLevelCache:
    return MultiLevelCache(CacheConfig.embedded(tmp_path / "cache"), secret=b"s" * 32)


def test_doctests() -> None:
    result = doctest.testmod(effects)
    assert result.failed == 0 and result.attempted >= 3


def test_programs_started_are_named() -> None:
    with observe() as seen:
        subprocess.run(["true"], check=True)
        subprocess.run("exit 0", shell=True, check=True)
        os.system("true")
    # the shell=True run starts /bin/sh
    assert seen.result.started == ("true", "sh")
    assert not seen.result.signalled and not seen.result.used_cache


def test_signals_sent_count_and_asking_whether_alive_does_not() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with observe() as seen:
            os.kill(child.pid, 0)
        assert seen.result.signalled == ()
        with observe() as seen:
            os.kill(child.pid, signal.SIGTERM)
        assert seen.result.signalled == (child.pid,)
    finally:
        child.kill()
        child.wait()


def test_using_a_cache_counts_and_its_methods_are_put_back(cache: MultiLevelCache) -> None:
    original = MultiLevelCache.get
    with observe() as seen:
        assert MultiLevelCache.get is not original  # wrapped while observing
        cache.get("missing")
    assert seen.result.used_cache
    assert MultiLevelCache.get is original
    with observe() as seen:
        _ = cache.tier_names  # a plain attribute: no use of the cache's entries or figures
    assert not seen.result.used_cache


def test_what_an_ipython_event_hook_does_after_the_cell_is_not_the_cells(
    cache: MultiLevelCache,
) -> None:
    """A live dashboard refreshes after every cell, served or run: not the cell's doing."""
    from IPython.core.events import EventManager, available_events

    events = EventManager(None, available_events)
    events.register("post_run_cell", lambda result: cache.snapshot())
    with observe() as seen:
        events.trigger("post_run_cell", None)
    assert not seen.result.used_cache
