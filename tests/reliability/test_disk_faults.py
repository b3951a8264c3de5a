"""Disk full, damaged entry files, a corrupt database, a cache directory the user cannot use:
writes degrade, reads go on, damaged entries are misses and are removed, a broken database is
set aside and rebuilt."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import diskcache
import pytest

from tests.support import SECRET
from tore_nb import CacheConfig, MultiLevelCache

from .conftest import Figures, expected, outage_warnings, workload


def disk_only(path: Path, **kw: object) -> MultiLevelCache:
    cfg = CacheConfig.embedded(path, memory_enabled=False, breaker_reset_seconds=60, **kw)  # type: ignore[arg-type]
    return MultiLevelCache(cfg, secret=SECRET)


def test_disk_full(
    tmp_path: Path,
    figures: Figures,
    monkeypatch: pytest.MonkeyPatch,
    outage_log: pytest.LogCaptureFixture,
) -> None:
    cache = disk_only(tmp_path / "c")
    workload(cache, figures, 50)  # fills the 50 keys
    cache.tier("disk").delete("item:7")  # one entry will be recomputed while the disk is full

    def full(*args: object, **kwargs: object) -> None:
        figures.faults += 1
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(diskcache.Disk, "store", full)
    hits = workload(cache, figures, 200)
    figures.warnings = outage_warnings(outage_log)
    figures.notes.append(f"with the disk full: {hits}/200 reads still served from disk")
    assert cache.breaker_state("disk") == "read-only"
    assert hits >= 190  # reads go on
    assert figures.exceptions == figures.corrupt_reads == 0
    assert figures.warnings == 1
    monkeypatch.undo()
    cache.reset_tier("disk")
    assert cache.set("after", 1) and cache.get("after") == 1


def _entry_files(path: Path) -> list[Path]:
    return [p for p in path.rglob("*.val")]


@pytest.mark.parametrize("damage", ["bitflip", "truncate", "empty"])
def test_damaged_entry_files(damage: str, tmp_path: Path, figures: Figures) -> None:
    figures.scenario = f"disk_entry_{damage}"
    cache = disk_only(tmp_path / "c")
    big = {"blob": os.urandom(200_000)}  # stored as a file by diskcache
    for i in range(10):
        cache.set(f"big{i}", big)
    files = _entry_files(tmp_path / "c")
    assert len(files) == 10
    for f in files[:5]:
        data = bytearray(f.read_bytes())
        if damage == "bitflip":
            data[len(data) // 2] ^= 0x01
        elif damage == "truncate":
            data = data[: len(data) // 3]
        else:
            data = bytearray()
        f.write_bytes(bytes(data))
        figures.faults += 1
    fresh = disk_only(tmp_path / "c")
    served = [figures.timed(lambda k=f"big{i}": fresh.get(k)) for i in range(10)]
    figures.rejected = fresh.get_stats()["tiers"]["disk"]["corrupt"]
    figures.corrupt_reads = sum(1 for v in served if v is not None and v != big)
    assert figures.rejected == 5 and figures.corrupt_reads == 0
    assert sum(v is None for v in served) == 5
    assert len(_entry_files(tmp_path / "c")) == 5  # the damaged ones were removed


def test_corrupt_database_is_set_aside(
    tmp_path: Path, figures: Figures, outage_log: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "c"
    cache = disk_only(path)
    workload(cache, figures, 50)
    cache.close()
    (path / "cache.db").write_bytes(b"this is not a sqlite database" * 100)
    figures.faults = 1
    again = disk_only(path)
    hits = workload(again, figures, 100)
    figures.notes.append(f"after the rebuild: {hits}/100 hits (the first 50 recomputed)")
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("c.corrupt-")]
    assert len(aside) == 1 and (aside[0] / "cache.db").exists()
    assert figures.exceptions == figures.corrupt_reads == 0
    assert again.get("item:1") == expected(1)
    assert "set aside" in outage_log.text


CHILD = r"""
import json, sys, time
from tore_nb import CacheConfig, MultiLevelCache
cache = MultiLevelCache(CacheConfig.embedded(sys.argv[1], memory_enabled=False))
ok, exc, longest = 0, 0, 0.0
for i in range(100):
    t0 = time.monotonic()
    try:
        v = cache.get(f"k{i % 10}")
        if v is None:
            cache.set(f"k{i % 10}", i % 10)
            v = i % 10
        ok += v == i % 10
    except Exception:
        exc += 1
    longest = max(longest, time.monotonic() - t0)
print(json.dumps({"ok": ok, "exc": exc, "longest": longest,
                  "state": cache.breaker_state("disk")}))
"""


def test_cache_directory_without_permission(tmp_path: Path, figures: Figures) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)  # readable, not writable
    env = {**os.environ, "TORE_NB_SECRET": SECRET.decode()}
    cmd = [sys.executable, "-c", CHILD, str(locked / "cache")]
    if os.geteuid() == 0:  # root ignores permission bits unless it drops these capabilities
        setpriv = shutil.which("setpriv")
        assert setpriv, "setpriv (util-linux) is needed to test permissions as root"
        cmd = [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--", *cmd]
    figures.faults = 1
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=False)
    locked.chmod(0o700)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    figures.operations, figures.exceptions = 100, got["exc"]
    figures.longest_call_s = got["longest"]
    figures.warnings = out.stderr.count("unavailable")
    figures.notes.append(f"disk tier state: {got['state']}; all results right: {got['ok'] == 100}")
    assert got["ok"] == 100 and got["exc"] == 0
    assert figures.warnings == 1
