"""The Binder configuration (binder/): `start` runs Redis and an S3 server on loopback for the
session, on ports nobody else holds, and stops them when the session ends; the requirements are
a lock with every package pinned, made from requirements.in."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.support import REPO, missing
from tore_nb.testing import RedisServer, free_port

BINDER = REPO / "binder"
NOTEBOOKS = REPO / "notebooks"
ISOLATE = ("REDIS_URL", "REDIS_HOST", "S3_CACHE_BUCKET", "S3_ENDPOINT_URL", "TORE_NB_TIERS")


def _servers_available() -> None:
    if not RedisServer.available() or shutil.which("moto_server") is None:
        missing("redis-server and moto_server (moto[server])")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a child that exited but is not reaped yet is gone too
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


@pytest.fixture
def start_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of `binder/start`: its own run folder and cache, free ports."""
    env = {k: v for k, v in os.environ.items() if k not in ISOLATE}
    pythonpath = os.environ.get("PYTHONPATH")
    env.update(
        TORE_NB_REDIS_PORT=str(free_port()),
        TORE_NB_S3_PORT=str(free_port()),
        TORE_NB_RUN_DIR=str(tmp_path / "services"),
        DISK_CACHE_PATH=str(tmp_path / "cache"),
        XDG_CACHE_HOME=str(tmp_path / "xdg-cache"),
        XDG_CONFIG_HOME=str(tmp_path / "xdg-config"),
        TORE_NB_SECRET="binder-test-secret-0123456789abcdef",
        PYTHONPATH=os.pathsep.join([str(REPO), *([pythonpath] if pythonpath else [])]),
    )
    yield env
    for name in ("redis.pid", "moto.pid"):  # a failed test leaves nothing running
        pid = tmp_path / "services" / name
        if pid.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid.read_text().strip()), signal.SIGKILL)


def start(env: dict[str, str], code: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(BINDER / "start"), sys.executable, "-c", code],
        cwd=NOTEBOOKS,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


REPORT_SERVERS = """
import os, redis
run = os.environ["TORE_NB_RUN_DIR"]
print("REDIS_URL", os.environ.get("REDIS_URL"))
print("S3_ENDPOINT_URL", os.environ.get("S3_ENDPOINT_URL"))
print("redis pid", redis.Redis.from_url(os.environ["REDIS_URL"]).info()["process_id"])
print("started", open(f"{run}/redis.pid").read().strip(), open(f"{run}/moto.pid").read().strip())
"""


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_start_takes_other_ports_when_its_ports_are_in_use(start_env: dict[str, str]) -> None:
    _servers_available()
    with socket.socket() as taken:  # a program already listening on the Redis and S3 port
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        start_env.update(TORE_NB_REDIS_PORT=str(port), TORE_NB_S3_PORT=str(port))
        proc = start(start_env, REPORT_SERVERS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"port {port} is already in use; Redis listens on port" in proc.stderr
    assert f"port {port} is already in use; the S3 server listens on port" in proc.stderr
    redis_url = re.search(r"REDIS_URL redis://127\.0\.0\.1:(\d+)/0", proc.stdout)
    s3_url = re.search(r"S3_ENDPOINT_URL http://127\.0\.0\.1:(\d+)", proc.stdout)
    assert redis_url and s3_url, proc.stdout
    assert int(redis_url.group(1)) != port and int(s3_url.group(1)) != port
    # REDIS_URL leads to the Redis that start started, not to another one
    served_by = re.search(r"redis pid (\d+)", proc.stdout)
    started = re.search(r"started (\d+) (\d+)", proc.stdout)
    assert served_by and started and served_by.group(1) == started.group(1)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_start_stops_its_servers_when_the_session_ends(start_env: dict[str, str]) -> None:
    _servers_available()
    run = Path(start_env["TORE_NB_RUN_DIR"])
    # the session ends normally: the command returns
    proc = start(start_env, REPORT_SERVERS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = re.search(r"started (\d+) (\d+)", proc.stdout)
    assert found, proc.stdout
    assert not any(_alive(int(pid)) for pid in found.groups())
    # the session is stopped: start gets SIGTERM while the command runs
    session = subprocess.Popen(
        ["bash", str(BINDER / "start"), "sleep", "60"],
        env=start_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not ((run / "redis.pid").exists() and (run / "moto.pid").exists()):
        assert time.monotonic() < deadline and session.poll() is None, session.communicate()
        time.sleep(0.1)
    time.sleep(1)  # past the servers' start
    pids = [int((run / name).read_text()) for name in ("redis.pid", "moto.pid")]
    session.terminate()
    session.communicate(timeout=30)
    assert session.returncode != 0
    assert not any(_alive(pid) for pid in pids)
    assert not (run / "redis.pid").exists()


BINDER_RUN = """
import os, nbformat
from nbclient import NotebookClient
print("env:", os.environ.get("REDIS_URL"), os.environ.get("S3_ENDPOINT_URL"),
      os.environ.get("S3_CACHE_BUCKET"))
nb = nbformat.read("dashboard.ipynb", as_version=4)
NotebookClient(nb, kernel_name="python3", timeout=120).execute()
for cell in nb.cells:
    for out in cell.get("outputs", []):
        for line in out.get("text", "").splitlines():
            if line.startswith("hits per tier"):
                print(line)
"""


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_start_gives_the_notebooks_redis_and_s3(start_env: dict[str, str]) -> None:
    """The dashboard notebook runs on all four tiers, as on mybinder.org."""
    _servers_available()
    try:
        from jupyter_client.kernelspec import KernelSpecManager
    except ImportError:
        missing("nbclient (pip install -e '.[test]')")
    if "python3" not in KernelSpecManager().find_kernel_specs():
        missing("a python3 kernel (pip install ipykernel)")
    proc = start(start_env, BINDER_RUN, timeout=170)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"redis://127.0.0.1:{start_env['TORE_NB_REDIS_PORT']}/0" in proc.stdout
    assert f"http://127.0.0.1:{start_env['TORE_NB_S3_PORT']} tore-nb-binder" in proc.stdout
    assert "hits per tier: {'memory': 10, 'disk': 5, 'redis': 5, 's3': 0}" in proc.stdout


def _lock() -> dict[str, Requirement]:
    pins = {}
    for line in (BINDER / "requirements.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#") and not line.startswith("."):
            req = Requirement(line)
            pins[req.name.lower().replace("_", "-")] = req
    return pins


def test_binder_requirements_pin_every_package_exactly() -> None:
    lock = (BINDER / "requirements.txt").read_text().splitlines()
    source = (BINDER / "requirements.in").read_text().splitlines()
    # tore_nb itself, with its extras, as requirements.in names it
    assert [line for line in lock if line.startswith(".")] == [
        line for line in source if line.startswith(".")
    ]
    pins = _lock()
    assert pins
    for name, req in pins.items():
        [spec] = req.specifier
        assert spec.operator == "==", f"{name} is not pinned: {req}"
    # every package requirements.in asks for is pinned, at a version it allows
    for line in source:
        if line.strip() and not line.startswith(("#", ".")):
            wanted = Requirement(line)
            pin = pins.get(wanted.name.lower().replace("_", "-"))
            assert pin is not None, f"{wanted.name} of requirements.in is not in the lock"
            [spec] = pin.specifier
            assert wanted.specifier.contains(spec.version), f"{pin} does not satisfy {wanted}"


def test_binder_requirements_pin_what_tore_nb_needs() -> None:
    """The lock covers tore_nb's own dependencies and the extras the notebooks use."""
    from importlib.metadata import requires

    pins = _lock()
    extras = {"redis", "s3", "notebook", "ray", "ocr", "tables"}
    for line in requires("tore_nb") or []:
        req = Requirement(line)
        marker = req.marker
        if marker is None or any(marker.evaluate({"extra": extra}) for extra in extras):
            if req.name.lower().replace("_", "-") == "tore-nb":
                continue
            pin = pins.get(req.name.lower().replace("_", "-"))
            assert pin is not None, f"{req.name} (a dependency of tore_nb) is not in the lock"
            [spec] = pin.specifier
            assert req.specifier.contains(spec.version), f"{pin} does not satisfy {req}"
