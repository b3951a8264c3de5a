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
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import CI, DATA, REPO, SECRET
from tore_nb.config import CacheConfig
from tore_nb.incremental.executors import RayExecutor
from tore_nb.incremental.processor import IncrementalProcessor
from tore_nb.incremental.stages import PageContext, Stage
from tore_nb.tiered import MultiLevelCache

pytestmark = pytest.mark.ray

HOST = "127.0.0.2"
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


@pytest.fixture(scope="module")
def ray_head() -> Iterator[str]:
    # `ray start` run by this interpreter: the head and its workers see the packages the tests see
    if importlib.util.find_spec("ray.scripts.scripts") is None:
        if CI:
            pytest.fail("the ray command is required with CI=true", pytrace=False)
        pytest.skip("ray not installed")
    import ray

    if ray.is_initialized():
        ray.shutdown()
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0"}
    head = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ray.scripts.scripts",
            "start",
            "--head",
            f"--port={port}",
            f"--ray-client-server-port={free_port()}",
            f"--dashboard-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--metrics-export-port={free_port()}",
            f"--node-ip-address={HOST}",
            "--num-cpus=1",
            "--include-dashboard=false",
            "--block",
            "--disable-usage-stats",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    started: set[int] = set()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            started |= descendants(head.pid)
            if head.poll() is not None:
                pytest.fail(f"ray start exited with {head.returncode}", pytrace=False)
            if any("raylet" in _cmdline(p) for p in started):
                break
            time.sleep(0.5)
        # a raylet process is not a cluster that takes drivers: under load the GCS was not yet
        # serving when the driver connected, and ray.init timed out. Wait until `ray status`
        # sees the node (the GCS answers and the raylet registered), with its own deadline.
        _wait_until_serving(f"{HOST}:{port}", env, deadline=time.monotonic() + 120)
        yield f"{HOST}:{port}"
    finally:
        if ray.is_initialized():
            ray.shutdown()
        started |= descendants(head.pid)
        for pid in [head.pid, *started]:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(alive(p) for p in [head.pid, *started]):
            time.sleep(0.2)
            head.poll()
        for pid in [head.pid, *started]:
            _signal(pid, signal.SIGKILL)
        head.wait(timeout=10)


def _wait_until_serving(address: str, env: dict[str, str], deadline: float) -> None:
    """Until `ray status --address` reports a node (the GCS serves, the raylet registered)."""
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
        if status.returncode == 0 and "node_" in status.stdout:
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


def test_existing_cluster_by_address(ray_head: str, tmp_path: Path) -> None:
    path = DATA / "pdfs" / "us-036.pdf"
    if not path.is_file():
        pytest.fail(f"shared test data missing: {path}", pytrace=False)
    cache = MultiLevelCache(CacheConfig.embedded(tmp_path / "c"), secret=SECRET)
    proc = IncrementalProcessor(
        cache,
        stages=[Stage("where", where)],
        executor=RayExecutor(
            address=ray_head,
            inline_below=0,
            init_kwargs={
                "_node_ip_address": HOST,
                "configure_logging": False,
                "log_to_driver": False,
            },
        ),
    )
    run = proc.process(path)
    import ray

    nodes = ray.nodes()  # type: ignore[no-untyped-call]
    assert len(nodes) == 1 and nodes[0]["Alive"]
    assert {p["where"][1] for p in run[0].pages} == {nodes[0]["NodeID"]}
    assert all(p["where"][0] > 0 for p in run[0].pages)
    again = proc.process(path)
    assert set(again.report().served_by) == {"memory"}
