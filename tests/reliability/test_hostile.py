"""Hostile input: planted pickles, moved, replayed and truncated entries in every tier are
rejected and never unpickled; passwords never leak; malformed configuration names its variable."""

from __future__ import annotations

import datetime
import json
import logging
import os
import pickle
import sqlite3
import stat
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pytest

from tests.support import SECRET
from tore_nb import CacheConfig, ConfigError, MultiLevelCache
from tore_nb.testing import MotoS3, RedisServer

from .conftest import Figures

PASSWORD = "CANARY-redis-pw-91c3"


class Canary:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, ...]:
        return (open, (self.path, "w"))


@pytest.mark.redis
@pytest.mark.s3
def test_tampered_entries_in_every_tier(
    tmp_path: Path, figures: Figures, redis_url: str, s3_bucket: str, moto_server: MotoS3
) -> None:
    canary = tmp_path / "canary"
    base = dict(
        disk_cache_path=str(tmp_path / "d"),
        redis_url=redis_url,
        s3_cache_bucket=s3_bucket,
        s3_endpoint_url=moto_server.endpoint_url,
        s3_cache_region="us-east-1",
        memory_enabled=False,
    )
    cache = MultiLevelCache(CacheConfig(**base), secret=SECRET)  # type: ignore[arg-type]
    other_ns = MultiLevelCache(CacheConfig(namespace="other", **base), secret=SECRET)  # type: ignore[arg-type]
    planted = pickle.dumps(Canary(str(canary)))
    attempts = 0
    for name in ("disk", "redis", "s3"):
        tier = cache.tier(name)
        for i in range(4):
            cache.set(f"{name}-good{i}", {"v": i}, tiers=[name])
        other_ns.set(f"{name}-replayed", "from another namespace", tiers=[name])
        raw_good = tier.get(f"{name}-good0")
        assert raw_good is not None
        attacks = {
            f"{name}-planted": planted,  # a bare pickle
            f"{name}-planted-header": raw_good[:68] + planted,  # a valid header, planted body
            f"{name}-moved": raw_good,  # a valid entry under another key
            f"{name}-truncated": raw_good[: len(raw_good) - 7],
            f"{name}-replayed": other_ns.tier(name).get(f"{name}-replayed") or b"",
        }
        for key, blob in attacks.items():
            tier.set(key, blob, None)
            attempts += 1
            assert figures.timed(lambda k=key, t=name: cache.get(k, tiers=[t])) is None
        assert cache.get(f"{name}-good1", tiers=[name]) == {"v": 1}
    stats = cache.get_stats()["tiers"]
    figures.faults = attempts
    figures.rejected = sum(stats[t]["corrupt"] for t in ("disk", "redis", "s3"))
    figures.notes.append(
        f"{figures.rejected}/{attempts} tampered entries rejected; canary file "
        f"created: {canary.exists()}"
    )
    assert figures.rejected == attempts
    assert not canary.exists()


def test_passwords_never_leak(
    tmp_path: Path,
    figures: Figures,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    with RedisServer(password=PASSWORD) as server:
        env = {
            "REDIS_URL": server.url,
            "REDIS_PASSWORD": PASSWORD,
            "DISK_CACHE_PATH": str(tmp_path / "d"),
        }
        cfg = CacheConfig.from_env(env)
        cache = MultiLevelCache(cfg, secret=SECRET)
        seen += [repr(cfg), str(cfg), repr(cache), repr(cache.tier("redis"))]
        cache.set("k", 1)
        assert cache.get("k") == 1
        server.kill()  # connection errors from here on
        figures.faults += 1
        for i in range(20):
            figures.timed(lambda j=i: cache.set(f"x{j}", j))
            figures.timed(lambda j=i: cache.get(f"x{j}"))
    wrong = CacheConfig(
        disk_cache_path=str(tmp_path / "w"),
        redis_url=f"redis://:{PASSWORD}x@127.0.0.1:{server.port}/0",
    )
    figures.timed(lambda: MultiLevelCache(wrong, secret=SECRET).get("k"))
    for bad in (
        {"REDIS_URL": f"http://:{PASSWORD}@h/0"},
        {"REDIS_PASSWORD": PASSWORD, "REDIS_PORT": "nope"},
    ):
        with pytest.raises(ConfigError) as err:
            CacheConfig.from_env(bad)
        seen.append("".join(traceback.format_exception(err.value)))
        figures.faults += 1
    out = capsys.readouterr()
    seen += [caplog.text, out.out, out.err]
    seen += [str(r.args) for r in caplog.records]
    leaks = sum(PASSWORD in s for s in seen)
    figures.notes.append(
        f"{len(seen)} reprs, logs, outputs and tracebacks checked; password found in {leaks}"
    )
    assert leaks == 0
    assert figures.exceptions == 0


@pytest.mark.parametrize(
    "var,value",
    [
        ("REDIS_URL", "redis//broken"),
        ("REDIS_PORT", "-1"),
        ("REDIS_DB", "x"),
        ("MEMORY_CACHE_SIZE_MB", "-5"),
        ("DISK_CACHE_SIZE_GB", "inf"),
        ("TORE_NB_TTL", "0"),
        ("AWS_BATCH_JOB_ID", "a/b"),
        ("TORE_NB_SECRET", "short"),
    ],
)
def test_malformed_environment(var: str, value: str, tmp_path: Path) -> None:
    from tore_nb.codec import load_secret

    with pytest.raises(ConfigError, match=var):
        if var == "TORE_NB_SECRET":
            load_secret({var: value})
        else:
            CacheConfig.from_env({var: value})


def test_disk_rows_diskcache_would_unpickle_are_never_loaded(tmp_path: Path) -> None:
    """A row stored by diskcache itself in pickle or text mode (not by tore_nb) is a miss:
    diskcache's own `get` would unpickle it before any signature check."""
    import diskcache

    canary = tmp_path / "canary"
    cache = MultiLevelCache(
        CacheConfig(disk_cache_path=str(tmp_path / "d"), memory_enabled=False), secret=SECRET
    )
    cache.set("real", {"v": 1})
    planter = diskcache.Cache(str(tmp_path / "d"))
    ns = "tore_nb|"  # the namespace's key prefix on disk
    planter.set(ns + "planted", Canary(str(canary)), tag=0.0)  # pickle mode, in the row
    planter.set(ns + "planted-file", [Canary(str(canary)), "x" * 100_000], tag=0.0)  # a file
    planter.set(ns + "text", "a text row", tag=0.0)
    planter.set(ns + "huge", b"x" * 100_000, tag=0.0)  # a file, its size then forged
    planter._sql("UPDATE Cache SET size = ? WHERE key = ?", (10**15, ns + "huge"))
    planter.close()
    for key in ("planted", "planted-file", "text", "huge"):
        assert cache.get(key) is None
        assert not cache.contains(key)
    # rows written "in 1970" (tag 0): the sweep reads tags, never values
    assert cache.expire_older_than(datetime.datetime.fromtimestamp(1)) == 4
    assert cache.get("real") == {"v": 1}
    assert cache.breaker_state("disk") == "closed"
    assert not canary.exists()


# -- an attacker who can write the shared disk cache --------------------------------------------
NS = "tore_nb|"  # the default namespace's key prefix on disk
BIG = {"blob": os.urandom(200_000)}  # incompressible: kept by diskcache as a file


def _disk_cache(path: Path) -> MultiLevelCache:
    cfg = CacheConfig.embedded(path, memory_enabled=False, breaker_reset_seconds=60)
    return MultiLevelCache(cfg, secret=SECRET)


def _filenames(path: Path) -> dict[str, str]:
    """key -> the entry file its row names, read from diskcache's table as an attacker would."""
    con = sqlite3.connect(path / "cache.db")
    try:
        rows = con.execute("SELECT key, filename FROM Cache WHERE filename IS NOT NULL")
        return {k.removeprefix(NS): f for k, f in rows.fetchall()}
    finally:
        con.close()


def _point_rows(path: Path, rows: dict[str, tuple[str, float | None]]) -> None:
    """Rewrite rows as an attacker: key -> (file name, expire time)."""
    con = sqlite3.connect(path / "cache.db")
    with con:
        for key, (filename, expire) in rows.items():
            sql = "UPDATE Cache SET filename = ?, expire_time = ? WHERE key = ?"
            assert con.execute(sql, (filename, expire, NS + key)).rowcount == 1
    con.close()


def test_planted_file_names_never_delete_the_victims_files(
    tmp_path: Path, figures: Figures
) -> None:
    """Rows naming files outside the cache (`../x`, an absolute path, a symlinked directory or
    file, expired rows) made the victim's process delete those files and their emptied
    directories: when it rejected the entry, and when diskcache culled, replaced or cleared
    the rows later. Only regular files inside the cache directory may be deleted."""
    home, outside = tmp_path / "home", tmp_path / "outside"
    path = home / "cache"
    victims = {
        "notes": home / "notes.txt",
        "thesis": home / "docs" / "thesis.tex",  # alone in its directory
        "data": tmp_path / "abs" / "data.csv",
        "linked-dir": outside / "cd" / ("0" * 28 + ".val"),
        "linked-file": tmp_path / "linked.txt",
    }
    for f in victims.values():
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("the victim's own file")
    cache = _disk_cache(path)
    cache.set("good", {"v": 1})
    path.joinpath("ee").symlink_to(outside)  # a cache subdirectory leading out
    path.joinpath("ef", "01").mkdir(parents=True)
    path.joinpath("ef", "01", "1" * 28 + ".val").symlink_to(victims["linked-file"])
    names = {
        "notes": "../notes.txt",
        "thesis": "../docs/thesis.tex",
        "data": str(victims["data"]),
        "linked-dir": "ee/cd/" + "0" * 28 + ".val",
        "linked-file": "ef/01/" + "1" * 28 + ".val",
    }
    ways = ("get", "cull", "replace", "clear")  # how the victim's process comes to delete a row
    for way in ways:
        for what in names:
            cache.set(f"{way}-{what}", BIG)
    expired = time.time() - 60
    _point_rows(
        path,
        {
            f"{way}-{what}": (name, expired if way == "cull" else None)
            for way in ways
            for what, name in names.items()
        },
    )
    figures.faults = len(ways) * len(names)
    for what in names:  # rejected on reading
        assert figures.timed(lambda k=f"get-{what}": cache.get(k)) is None
    figures.timed(lambda: cache.set("new", BIG))  # diskcache culls expired rows on a write
    for what in names:
        figures.timed(lambda k=f"replace-{what}": cache.set(k, {"v": 2}))
    assert cache.get("good") == {"v": 1} and cache.breaker_state("disk") == "closed"
    figures.timed(lambda: cache.expire_older_than(0))
    figures.timed(cache.clear)
    figures.rejected = cache.get_stats()["tiers"]["disk"]["corrupt"]
    deleted = sorted(k for k, f in victims.items() if not f.exists())
    figures.notes.append(f"victim files deleted: {len(deleted)}/{len(victims)} {deleted}")
    assert deleted == []
    assert figures.rejected == len(names) and figures.exceptions == 0
    assert path.joinpath("ee").is_symlink() and home.is_dir()


HANGS_CHILD = r"""
import json, sys, time
from tore_nb import CacheConfig, MultiLevelCache
cfg = CacheConfig.embedded(sys.argv[1], memory_enabled=False, breaker_reset_seconds=60)
cache = MultiLevelCache(cfg)
keys = json.loads(sys.argv[2])
t0 = time.monotonic()
one = sum(cache.get(k) is not None for k in keys)
many = len(cache.get_many(keys))
print(json.dumps({"one": one, "many": many, "state": cache.breaker_state("disk"),
                  "rejected": cache.get_stats()["tiers"]["disk"]["corrupt"],
                  "seconds": time.monotonic() - t0}))
"""


def test_entry_file_replaced_by_a_fifo_or_directory_is_one_rejected_entry(
    tmp_path: Path, figures: Figures
) -> None:
    """A value file replaced by a FIFO made `get` block forever; one replaced by a directory
    took the whole disk tier offline (0 of 8 good entries served). Each is now one rejected
    entry, and the tier goes on serving the others."""
    path = tmp_path / "c"
    cache = _disk_cache(path)
    keys = [f"big{i}" for i in range(10)]
    for k in keys:
        cache.set(k, BIG)
    cache.close()
    files = _filenames(path)
    fifo, folder = path / files["big0"], path / files["big1"]
    fifo.unlink()
    os.mkfifo(fifo)
    folder.unlink()
    folder.mkdir()
    figures.faults = 2
    env = {**os.environ, "TORE_NB_SECRET": SECRET.decode()}
    cmd = [sys.executable, "-c", HANGS_CHILD, str(path), json.dumps(keys)]
    # a hang fails the test instead of hanging it
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    figures.operations, figures.longest_call_s = 2 * len(keys), got["seconds"]
    figures.rejected = got["rejected"]
    figures.notes.append(
        f"good entries served: {got['one']}/8 by get, {got['many']}/8 by get_many; "
        f"disk tier {got['state']}"
    )
    assert got["one"] == got["many"] == 8
    assert got["state"] == "closed" and got["rejected"] == 2
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # not ours to delete: left where it was
