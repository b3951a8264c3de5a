"""Disk full, damaged entry files, a corrupt database, a cache directory the user cannot use:
writes degrade, reads go on, damaged entries are misses and are removed, a broken database is
set aside and rebuilt."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import diskcache
import pytest

from tests.support import SECRET
from tore_nb import CacheConfig, MultiLevelCache
from tore_nb.tiers.disk import DiskTier

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


TRUNCATED_CHILD = r"""
import os, sys, time
from tore_nb import CacheConfig, MultiLevelCache
path, ready, stop = sys.argv[1:4]
cache = MultiLevelCache(CacheConfig.embedded(path, memory_enabled=False))
for i in range(300):
    cache.set(f"k{i}", {"i": i, "pad": os.urandom(2000)})
open(ready, "w").close()
deadline, n = time.monotonic() + 30, 0
while not os.path.exists(stop) and time.monotonic() < deadline:
    cache.get(f"k{n % 300}")
    if n % 10 == 0:
        cache.set(f"w{n % 50}", n)
    n += 1
print(n)
"""


def _wait_for(path: Path, proc: subprocess.Popen[str], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path.name} never came"
        time.sleep(0.01)


@pytest.mark.parametrize(
    "victim",
    [
        "cache.db",
        "cache.db-wal",
        pytest.param(
            "cache.db-shm",
            marks=pytest.mark.xfail(
                strict=True,
                reason="SQLite maps the WAL index (-shm) into memory whatever mmap_size says; "
                "only leaving WAL mode, at the cost of concurrent readers, avoids it",
            ),
        ),
    ],
)
def test_truncated_database_never_kills_the_process(
    victim: str, tmp_path: Path, figures: Figures
) -> None:
    """diskcache memory-maps SQLite's database by default: truncating `cache.db` under a
    process using it killed that process with SIGBUS (9 of 9 trials). Nothing done to the
    files under the cache directory may crash the process."""
    env = {**os.environ, "TORE_NB_SECRET": SECRET.decode()}
    codes = []
    for trial in range(5):
        path, ready, stop = (tmp_path / f"{trial}-{n}" for n in ("c", "ready", "stop"))
        cmd = [sys.executable, "-c", TRUNCATED_CHILD, str(path), str(ready), str(stop)]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            _wait_for(ready, proc)  # type: ignore[arg-type]
            time.sleep(0.1)  # reading by now
            with contextlib.suppress(FileNotFoundError):
                os.truncate(path / victim, 0)
            figures.faults += 1
            time.sleep(0.5)  # reads and writes go on against the truncated file
            stop.touch()
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        codes.append(proc.returncode)
    figures.notes.append(f"{victim} truncated under a reader: exit codes {codes}")
    assert codes == [0] * 5, proc.stderr.read() if proc.stderr else ""


READER_CHILD = r"""
import json, logging, sys
from tore_nb import CacheConfig, MultiLevelCache
logging.basicConfig(level=logging.WARNING)
cfg = CacheConfig.embedded(sys.argv[1], memory_enabled=False, breaker_reset_seconds=60)
cache = MultiLevelCache(cfg)
served = sum(cache.get(f"item:{i}") is not None for i in range(40))
stored = sum(bool(cache.set(f"new:{i}", i)) for i in range(10))
again = sum(cache.get(f"item:{i}") is not None for i in range(40))
print(json.dumps({"served": served, "again": again, "stored": stored,
                  "state": cache.breaker_state("disk")}))
"""


@contextlib.contextmanager
def _other_user() -> Iterator[str]:
    """A second OS user, made for the test and removed after it."""
    name = f"torenb{os.getpid() % 100000}"
    subprocess.run(["useradd", "--system", "--no-create-home", name], check=True, timeout=30)
    try:
        yield name
    finally:
        subprocess.run(["userdel", name], check=False, timeout=30)


def _without_permission_bits_bypass(cmd: list[str]) -> list[str]:
    """`cmd` run so that permission bits apply to it, even as root."""
    if os.geteuid() != 0:
        return cmd
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to test permissions as root"
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner", "--", *cmd]


@pytest.mark.parametrize("how", ["read-only", "another-users"])
def test_cache_this_process_cannot_write_is_read_not_set_aside(
    how: str, tmp_path: Path, figures: Figures
) -> None:
    """A read-only cache directory, or one owned by another user, was renamed
    `*.corrupt-<time>` and emptied (0 of 40 entries served), with "set aside and rebuilt"
    logged even when the rename failed. It is read; writes are skipped with one warning."""
    if how == "another-users" and (os.geteuid() != 0 or not shutil.which("useradd")):
        pytest.skip("making a second OS user needs root and useradd")
    path = tmp_path / "c"
    cache = disk_only(path)
    for i in range(40):
        cache.set(f"item:{i}", expected(i))
    cache.close()
    figures.faults = 1
    with contextlib.ExitStack() as stack:
        if how == "another-users":
            user = stack.enter_context(_other_user())
            shutil.chown(path, user, user)
            for p in path.rglob("*"):
                shutil.chown(p, user, user)
            subprocess.run(["chmod", "-R", "go+rX", str(path)], check=True, timeout=30)
        else:
            subprocess.run(["chmod", "-R", "a-w", str(path)], check=True, timeout=30)
            stack.callback(subprocess.run, ["chmod", "-R", "u+w", str(path)], timeout=30)
        env = {**os.environ, "TORE_NB_SECRET": SECRET.decode()}
        cmd = _without_permission_bits_bypass([sys.executable, "-c", READER_CHILD, str(path)])
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    figures.operations = 90
    figures.warnings = out.stderr.count("WARNING")
    figures.notes.append(
        f"{how}: {got['served']}/40 entries served, then {got['again']}/40 after "
        f"{10 - got['stored']}/10 skipped writes; disk tier {got['state']}"
    )
    assert got["served"] == got["again"] == 40
    assert got["state"] == "read-only" and got["stored"] == 0  # no tier could take them
    assert figures.warnings == 1 and "refuses writes" in out.stderr, out.stderr
    assert "set aside" not in out.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["c"]
    assert len(disk_only(path).find_keys("item:*")) == 40


RACE_CHILD = r"""
import json, os, sys, time
from tore_nb import CacheConfig, MultiLevelCache
path, me, go, n, in_use = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
def cache():
    cfg = CacheConfig.embedded(path, memory_enabled=False, breaker_reset_seconds=0.05)
    return MultiLevelCache(cfg)
if in_use == "1":  # open and used before the damage
    mine = cache()
    mine.get("x")
open(f"{go}.ready-{me}", "w").close()
while not os.path.exists(go):
    time.sleep(0.001)
if in_use != "1":
    mine = cache()
stored, late = [], []  # late: written after this process saw the damage (a failed write)
for i in range(50):  # each write retried through the outage the damage causes
    deadline = time.monotonic() + 20
    while not mine.set(f"{me}:{i}", i) and time.monotonic() < deadline:
        time.sleep(0.01)
        late = late or [None]
    if mine.get(f"{me}:{i}") == i:
        stored.append(i)
        if late:
            late.append(i)
open(f"{go}.wrote-{me}", "w").close()
while sum(os.path.exists(f"{go}.wrote-{o}") for o in range(n)) < n:
    time.sleep(0.01)
fresh = cache()
served = {i for i in stored if fresh.get(f"{me}:{i}") == i}
print(json.dumps({"stored": len(stored), "lost": len(stored) - len(served),
                  "late_lost": sum(i not in served for i in late if i is not None)}))
"""


@pytest.mark.parametrize("when", ["opening", "in-use"])
def test_processes_that_see_one_corrupt_database_set_it_aside_once(
    when: str, tmp_path: Path, figures: Figures
) -> None:
    """Two processes that both noticed a damaged database each set aside what was there, the
    second one the first's rebuilt directory: a split brain that lost 50 of 50 writes of the
    first process. The damaged database is set aside once, and no write is lost."""
    n, trials, lost, late_lost, asides = 4, 3, 0, 0, []
    env = {**os.environ, "TORE_NB_SECRET": SECRET.decode()}
    for trial in range(trials):
        path, go = tmp_path / f"c{trial}", tmp_path / f"go{trial}"
        disk_only(path).set("x", 1)
        damage = (path / "cache.db").write_bytes
        if when == "opening":
            damage(b"this is not a sqlite database" * 100)
        args = [str(path), "", str(go), str(n), str(int(when == "in-use"))]
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", RACE_CHILD, *args[:1], str(me), *args[2:]],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for me in range(n)
        ]
        for me, proc in enumerate(procs):
            _wait_for(Path(f"{go}.ready-{me}"), proc)  # type: ignore[arg-type]
        if when == "in-use":
            damage(b"this is not a sqlite database" * 100)
        figures.faults += 1
        go.touch()  # all at once: each opens the damaged database
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=120)
            assert proc.returncode == 0, stderr
            got = json.loads(stdout)
            assert got["stored"] == 50
            lost += got["lost"]
            late_lost += got["late_lost"]
        asides.append(len(list(tmp_path.glob(f"c{trial}.corrupt-*"))))
    figures.operations = trials * n * 100
    figures.notes.append(
        f"damaged while {when}, {n} processes x {trials} trials: set aside {asides}; "
        f"writes lost {lost}, of them made after the damage was seen {late_lost}"
    )
    assert asides == [1] * trials and late_lost == 0
    # a process that never read the damaged file may have written into it before it was set
    # aside (its pages were in its own memory): that is the damage's cost, not a split brain
    assert when == "in-use" or lost == 0
    # but a process must not go on writing into a set-aside database: before, all of the
    # in-use processes' writes went there (150 of 150 lost in 3 trials of 4 processes)
    assert lost < trials * n * 50 // 4


def test_a_disk_cache_other_users_may_write_is_said_at_open(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """No reader survives a truncated `cache.db-shm` (see the expected failure above), and
    anyone who can write the directory can do it: a shared directory is said once, at open."""
    private, shared = tmp_path / "private", tmp_path / "shared"
    private.mkdir(mode=0o700)
    shared.mkdir()
    shared.chmod(0o777)
    with caplog.at_level("WARNING", logger="tore_nb"):
        for d in (private, shared):
            tier = DiskTier(str(d), size_limit=10**7)
            tier.set("k", b"v", None)
            assert tier.get("k") == b"v"
            tier.close()
    said = [r.getMessage() for r in caplog.records if "is shared" in r.getMessage()]
    assert len(said) == 1 and str(shared) in said[0] and "other users may write it" in said[0]
