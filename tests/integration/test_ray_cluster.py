"""RayExecutor(address=...) against a head node started by `ray start --head` on loopback.

The test starts the head with `--block` in its own process group and ends exactly the
processes it started (by their ids), never `ray stop`, which would stop every Ray on the machine.
It uses 127.0.0.2: Ray rewrites 127.0.0.1 and localhost to the machine's outward address, and
every packet of this test stays on the loopback interface. `ray start` turns Ray's token
authentication on (~/.ray/auth_token), so the driver uses it too; the variable is set before Ray
is first imported, because Ray reads it once.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import CI, DATA, REPO, SECRET
from tore_nb.config import CacheConfig
from tore_nb.incremental.executors import RayExecutor
from tore_nb.incremental.processor import IncrementalProcessor
from tore_nb.incremental.stages import PageContext, Stage
from tore_nb.tiered import MultiLevelCache

pytestmark = pytest.mark.ray

HOST = "127.0.0.2"
SECOND = "127.0.0.3"  # a second node on its own loopback address
THIRD = "127.0.0.4"  # a node started without the drivers' secret
os.environ.setdefault("RAY_AUTH_MODE", "token")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def descendants(pid: int) -> set[int]:
    """Process ids below `pid`, read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out: set[int] = set()
    todo = [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class Node:
    """One `ray start --block` process group: the node and everything it started."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ray.scripts.scripts", "start", *args, "--block"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.started: set[int] = set()

    def wait_for_raylet(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.started |= descendants(self.proc.pid)
            if self.proc.poll() is not None:
                pytest.fail(f"ray start exited with {self.proc.returncode}", pytrace=False)
            if any("raylet" in _cmdline(p) for p in self.started):
                return
            time.sleep(0.5)
        pytest.fail("no raylet started", pytrace=False)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """End exactly the processes this node started (never `ray stop`)."""
        self.started |= descendants(self.proc.pid)
        pids = [self.proc.pid, *self.started]
        for pid in pids:
            _signal(pid, sig)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(alive(p) for p in pids):
            time.sleep(0.2)
            self.proc.poll()
        for pid in pids:
            _signal(pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


def _node_args(ip: str) -> list[str]:
    return [
        f"--node-ip-address={ip}",
        "--num-cpus=1",
        "--object-store-memory=100000000",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--metrics-export-port={free_port()}",
        "--disable-usage-stats",
    ]


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[tuple[str, Node]]:
    """A head on 127.0.0.2 and a second node on 127.0.0.3 (1 CPU each); yields the address
    and the second node, which a test may kill."""
    # `ray start` run by this interpreter: the head and its workers see the packages the tests see
    if importlib.util.find_spec("ray.scripts.scripts") is None:
        if CI:
            pytest.fail("the ray command is required with CI=true", pytrace=False)
        pytest.skip("ray not installed")
    import ray

    if ray.is_initialized():
        ray.shutdown()
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "RAY_USAGE_STATS_ENABLED": "0",
        "TORE_NB_SECRET": SECRET.decode(),  # every node signs as the drivers do
    }
    address = f"{HOST}:{port}"
    head = Node(
        [
            "--head",
            f"--port={port}",
            f"--ray-client-server-port={free_port()}",
            f"--dashboard-port={free_port()}",
            "--include-dashboard=false",
            *_node_args(HOST),
        ],
        env,
    )
    nodes = [head]
    try:
        head.wait_for_raylet()
        # a raylet process is not a cluster that takes drivers: under load the GCS was not yet
        # serving when the driver connected, and ray.init timed out. Wait until `ray status`
        # sees the node (the GCS answers and the raylet registered), with its own deadline.
        _wait_until_serving(address, env, deadline=time.monotonic() + 120)
        second = Node([f"--address={address}", *_node_args(SECOND)], env)
        nodes.append(second)
        second.wait_for_raylet()
        _wait_until_serving(address, env, deadline=time.monotonic() + 120, nodes=2)
        yield address, second
    finally:
        if ray.is_initialized():
            ray.shutdown()
        for node in reversed(nodes):
            node.kill(signal.SIGTERM)


def _wait_until_serving(address: str, env: dict[str, str], deadline: float, nodes: int = 1) -> None:
    """Until `ray status --address` reports `nodes` nodes (the GCS serves, raylets registered)."""
    host, port = address.rsplit(":", 1)
    said = ""
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(1.0)
            if s.connect_ex((host, int(port))) != 0:
                time.sleep(0.5)
                continue
        status = subprocess.run(
            [sys.executable, "-m", "ray.scripts.scripts", "status", f"--address={address}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=max(5.0, deadline - time.monotonic()),
        )
        if status.returncode == 0 and status.stdout.count(" node_") >= nodes:
            return
        said = (status.stderr or status.stdout).strip()[-300:]
        time.sleep(1.0)
    pytest.fail(f"the Ray head at {address} never served: {said}", pytrace=False)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def where(ctx: PageContext) -> tuple[int, str]:
    import ray

    return len(ctx.text()), ray.get_runtime_context().get_node_id()


def executor(address: str) -> RayExecutor:
    return RayExecutor(
        address=address,
        inline_below=0,
        init_kwargs={"_node_ip_address": HOST, "configure_logging": False, "log_to_driver": False},
    )


def test_existing_cluster_by_address(ray_cluster: tuple[str, Node], tmp_path: Path) -> None:
    address, _ = ray_cluster
    path = DATA / "pdfs" / "us-036.pdf"
    if not path.is_file():
        pytest.fail(f"shared test data missing: {path}", pytrace=False)
    cache = MultiLevelCache(CacheConfig.embedded(tmp_path / "c"), secret=SECRET)
    proc = IncrementalProcessor(cache, stages=[Stage("where", where)], executor=executor(address))
    run = proc.process(path)
    import ray

    alive_nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}  # type: ignore[no-untyped-call]
    assert len(alive_nodes) == 2
    assert {p["where"][1] for p in run[0].pages} <= alive_nodes
    assert all(p["where"][0] > 0 for p in run[0].pages)
    again = proc.process(path)
    assert set(again.report().served_by) == {"memory"}
    ray.shutdown()  # the drivers below are processes of their own


DRIVER = r"""
import json, os, sys, time
from tore_nb import CacheConfig, MultiLevelCache
from tore_nb.incremental import IncrementalProcessor, RayExecutor, Stage

log, address, pause = sys.argv[1], sys.argv[2], float(sys.argv[3])

def chars(ctx):
    import ray
    with open(log, "a") as f:
        f.write(f"{ray.get_runtime_context().get_node_id()} {ctx.page.identity}\n")
    time.sleep(pause)  # pages take a while: the drivers and the nodes overlap
    return len(ctx.text())

executor = RayExecutor(address=address, inline_below=0, init_kwargs={
    "_node_ip_address": "127.0.0.2", "configure_logging": False, "log_to_driver": False},
    share_secret=os.environ.get("SHARE_SECRET") == "1")
cache = MultiLevelCache(CacheConfig.from_env())
run = IncrementalProcessor(cache, stages=[Stage("chars", chars)], executor=executor).process(
    sys.argv[4:])
s = run.summary()
print(json.dumps({
    "computed": int(s.results_computed.sum()), "duplicates": int(s.duplicates.sum()),
    "failed": int(s.results_failed.sum()), "retries": int(s.retries.sum()),
    "rejected": run.rejected,
    "results": [[p.results.get("chars") for p in d.pages] for d in run.documents],
}))
"""


def driver(
    tmp_path: Path,
    name: str,
    address: str,
    redis_url: str,
    log: Path,
    pause: float,
    *,
    share_secret: bool = False,
    document: str = "dmca.pdf",
) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "DISK_CACHE_PATH": str(tmp_path / name),  # another machine: its own disk
        "TORE_NB_SECRET": SECRET.decode(),
        "SHARE_SECRET": "1" if share_secret else "0",
        "PYTHONPATH": str(REPO),
    }
    docs = [str(DATA / "pdfs" / document)]
    args = [sys.executable, "-c", DRIVER, str(log), address, str(pause), *docs]
    with (tmp_path / f"{name}.err").open("w") as err:  # read by tests that expect a failure
        return subprocess.Popen(
            args, env=env, stdout=subprocess.PIPE, stderr=err, text=True, cwd=tmp_path
        )


def last_json(stdout: str) -> Any:
    """The driver's report: its last line (Ray's raylet may print above it)."""
    return json.loads(stdout.strip().splitlines()[-1])


def computations(log: Path) -> list[tuple[str, str]]:
    if not log.exists():
        return []
    return [(n, i) for n, i in (line.split() for line in log.read_text().splitlines())]


@pytest.mark.parametrize(
    ("name", "pages"),
    [("dmca.pdf", 18), ("us-036.pdf", 3)],
    ids=["cluster full", "spare capacity"],
)
def test_two_drivers_compute_each_page_once(
    ray_cluster: tuple[str, Node], tmp_path: Path, private_redis: Any, name: str, pages: int
) -> None:
    """Regression: two kernels processing the same new documents, each with half the cluster
    free, computed all 115 pages twice. Pages are claimed before they are computed: with the
    cluster full (each driver has more tasks than the cluster has CPUs) and with spare
    capacity (one task each, on a node each), every page is computed once, both drivers get
    every result, and neither counts a duplicate."""
    address, _ = ray_cluster
    log = tmp_path / "computed.log"
    drivers = [
        driver(tmp_path, f"d{i}", address, private_redis.url, log, 0.3, document=name)
        for i in (1, 2)
    ]
    outs = [last_json(d.communicate(timeout=300)[0]) for d in drivers]
    assert [d.returncode for d in drivers] == [0, 0]
    done = computations(log)
    assert len(done) == len({i for _, i in done}) == pages
    if pages > RayExecutor().pages_per_task:
        assert len({n for n, _ in done}) == 2  # the work spread over both nodes
    assert outs[0]["results"] == outs[1]["results"]
    assert [o["duplicates"] for o in outs] == [0, 0] and [o["failed"] for o in outs] == [0, 0]
    assert sum(o["computed"] for o in outs) == pages


def test_a_node_without_the_secret_fails_the_run_naming_it_until_the_secret_is_shared(
    ray_cluster: tuple[str, Node], tmp_path: Path, private_redis: Any
) -> None:
    """Regression: a node started without TORE_NB_SECRET signed with its own key file, and every
    later kernel rejected that node's pages as unsigned and recomputed them (42, then 21 pages
    a run), silently: the report said "computed". A third node without the secret joins the
    cluster here: a run whose tasks reach it fails before any work, naming that node and the
    fix; with `share_secret=True` the same run succeeds, and another kernel is then served
    every page from Redis, rejecting nothing."""
    address, _ = ray_cluster
    env = {k: v for k, v in os.environ.items() if k != "TORE_NB_SECRET"}
    env |= {
        "PYTHONPATH": str(REPO),
        "RAY_USAGE_STATS_ENABLED": "0",
        "XDG_CONFIG_HOME": str(tmp_path / "elsewhere"),  # its own key file: another secret
    }
    third = Node([f"--address={address}", *_node_args(THIRD)], env)
    try:
        third.wait_for_raylet()
        _wait_until_serving(address, env, deadline=time.monotonic() + 120, nodes=3)
        log = tmp_path / "computed.log"
        # every node has one CPU: five tasks of a slow document reach all three at once
        failing = driver(tmp_path, "d1", address, private_redis.url, log, 0.3)
        failing.communicate(timeout=300)
        err = (tmp_path / "d1.err").read_text()
        assert failing.returncode != 0
        assert "WorkerSecretError" in err and f"Ray node {THIRD}" in err, err[-2000:]
        assert "share_secret=True" in err and "TORE_NB_SECRET" in err
        shared = driver(tmp_path, "d2", address, private_redis.url, log, 0.3, share_secret=True)
        out = last_json(shared.communicate(timeout=300)[0])
        assert shared.returncode == 0 and out["failed"] == 0 and out["rejected"] == 0
        assert all(r is not None for r in out["results"][0])
        other = driver(tmp_path, "d3", address, private_redis.url, log, 0.3)
        again = last_json(other.communicate(timeout=300)[0])
        assert other.returncode == 0
        assert (again["computed"], again["rejected"]) == (0, 0)
        assert again["results"] == out["results"]
    finally:
        third.kill(signal.SIGTERM)


def test_a_node_killed_mid_run_loses_only_the_page_in_flight(
    ray_cluster: tuple[str, Node], tmp_path: Path, private_redis: Any
) -> None:
    """Results were saved per chunk of a CPU's share of the pages: a lost node lost its whole
    chunk (11 pages recomputed). Each page is stored as it completes and units are small now:
    the run finishes with every result, and at most the unit in flight is computed again.
    (Last in this module: the cluster has one node left after it.)"""
    address, second = ray_cluster
    log = tmp_path / "computed.log"
    d = driver(tmp_path, "d", address, private_redis.url, log, 0.5)
    deadline = time.monotonic() + 120
    nodes: set[str] = set()
    while len(nodes) < 2 or len(computations(log)) < 6:  # both nodes at work, some pages done
        assert time.monotonic() < deadline and d.poll() is None, "the run never spread"
        nodes = {n for n, _ in computations(log)}
        time.sleep(0.1)
    second.kill()
    out = last_json(d.communicate(timeout=300)[0])
    assert d.returncode == 0 and out["failed"] == 0
    assert len(out["results"][0]) == 18 and all(r is not None for r in out["results"][0])
    done = computations(log)
    again = len(done) - len({i for _, i in done})
    assert again <= RayExecutor().pages_per_task, done  # only what was in flight
    # pages computed again were taken over from the dead node's claims: the report says so
    assert out["retries"] >= again, out
