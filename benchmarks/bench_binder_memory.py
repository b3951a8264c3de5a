"""Peak memory of the Ray cell of notebooks/incremental.ipynb, with Binder's settings.

Run: python benchmarks/bench_binder_memory.py [--no-services] [--interval 0.1]

A Binder session has about 2 GB. A fresh kernel runs the notebook's code cells in order, as a
session does, in the notebook's folder; by default under `binder/start`, so that the default
cache has Binder's Redis and S3 tiers (`--no-services`: memory and disk only). While the Ray cell
runs, the RSS of the kernel and of every process below it (Ray's GCS server, raylet, agents and
workers are the kernel's descendants) is read from /proc every 0.1 s and summed; shared pages
(the object store) count once per process that maps them, so the sum errs high. Prints the peak,
the kernel's own RSS before the cell, and the largest processes at the peak. Not a test.

The kernel is isolated as notebooks/execute.py's: a temporary disk cache, a signing secret, the
tore_nb of this checkout. Only processes this script started are stopped, by PID.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "incremental.ipynb"
ISOLATE = ("REDIS_URL", "REDIS_HOST", "S3_CACHE_BUCKET", "S3_ENDPOINT_URL", "TORE_NB_TIERS")
PAGE = os.sysconf("SC_PAGE_SIZE")
RAY_CELL = "RayExecutor("


def rss(pid: int) -> int:
    """Resident bytes of one process (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def descendants(root: int) -> list[int]:
    """`root` and every process below it, from the parent ids in /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def name_of(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            words = f.read().split(b"\0")
    except OSError:
        return "?"
    text = " ".join(w.decode(errors="replace") for w in words if w)
    return text[:70] or "?"


@dataclass
class Sampler:
    """Sums the RSS of `root` and its descendants every `interval` seconds, keeping the peak."""

    root: int
    interval: float
    peak: int = 0
    at_peak: list[tuple[int, str]] = field(default_factory=list)  # (rss, process), largest first
    samples: int = 0
    most_processes: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> None:
        pids = descendants(self.root)
        sizes = [(rss(p), p) for p in pids]
        total = sum(s for s, _ in sizes)
        self.samples += 1
        self.most_processes = max(self.most_processes, len(pids))
        if total > self.peak:
            named = [(s, "the kernel" if p == self.root else name_of(p)) for s, p in sizes]
            self.peak, self.at_peak = total, sorted(named, reverse=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> Sampler:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()


def kernel_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DISK_CACHE_PATH=str(tmp / "cache"),
        XDG_CACHE_HOME=str(tmp / "xdg-cache"),
        XDG_CONFIG_HOME=str(tmp / "xdg-config"),
        MPLCONFIGDIR=str(tmp / "mpl"),
        TORE_NB_SECRET="bench-binder-secret-0123456789abcdef",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        PYDEVD_DISABLE_FILE_VALIDATION="1",
        RAY_DISABLE_IMPORT_WARNING="1",
    )
    return env


def gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB"


def measure(interval: float) -> int:
    """Run the notebook in a kernel, sampling while its Ray cell runs; print the figures."""
    import nbformat
    from jupyter_client.manager import KernelManager

    nb: Any = nbformat.read(NOTEBOOK, as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    ray_at = next(i for i, source in enumerate(code) if RAY_CELL in source)
    with tempfile.TemporaryDirectory(prefix="tore-nb-binder-memory-") as name:
        km = KernelManager(kernel_name="python3")
        km.start_kernel(env=kernel_env(Path(name)), cwd=str(NOTEBOOK.parent))
        kc = km.client()
        kc.start_channels()
        kernel_pid = km.provisioner.pid if km.provisioner is not None else None
        assert kernel_pid is not None, "no kernel process"
        started: set[int] = set()
        try:
            kc.wait_for_ready(timeout=120)
            before = 0
            sampler = Sampler(kernel_pid, interval)
            # up to and including the cell after Ray's (ray.shutdown())
            for i, source in enumerate(code[: ray_at + 2]):
                if i == ray_at:
                    before = rss(kernel_pid)
                    with sampler:
                        reply = run_cell(kc, source)
                    started = set(descendants(kernel_pid)) - {kernel_pid}
                else:
                    reply = run_cell(kc, source)
                if reply != "ok":
                    print(f"cell {i + 1} of the notebook's code cells failed: {reply}")
                    return 1
        finally:
            kc.stop_channels()
            leftover = set(descendants(kernel_pid)) - {kernel_pid}
            km.shutdown_kernel(now=True)
            for pid in sorted(started & leftover):  # ours, still running after ray.shutdown()
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
    print(
        f"Ray cell of {NOTEBOOK.name}: peak {gb(sampler.peak)} (kernel and "
        f"{sampler.most_processes - 1} processes below it at most; kernel alone before the "
        f"cell {gb(before)}; {sampler.samples} samples every {interval} s)"
    )
    for size, name in sampler.at_peak[:10]:
        print(f"  {gb(size):>8}  {name}")
    return 0


def run_cell(kc: Any, source: str) -> str:
    """Execute one cell; its status ('ok' or the error's name and value)."""
    errors: list[str] = []

    def on_output(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "error":
            errors.append(f"{msg['content']['ename']}: {msg['content']['evalue']}")

    reply = kc.execute_interactive(source, timeout=600, output_hook=on_output)
    status = str(reply["content"]["status"])
    return status if status == "ok" else "; ".join(errors) or status


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--interval", type=float, default=0.1, help="seconds between samples")
    p.add_argument("--no-services", action="store_true", help="without binder/start")
    p.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.inside or args.no_services:
        for var in ISOLATE if args.no_services else ():
            os.environ.pop(var, None)
        return measure(args.interval)
    if shutil.which("redis-server") is None or shutil.which("moto_server") is None:
        print("redis-server or moto_server missing: measuring without Binder's services")
        return measure(args.interval)
    from tore_nb.testing import free_port

    with tempfile.TemporaryDirectory(prefix="tore-nb-binder-services-") as run_dir:
        env = {k: v for k, v in os.environ.items() if k not in ISOLATE}
        env.update(
            TORE_NB_REDIS_PORT=str(free_port()),
            TORE_NB_S3_PORT=str(free_port()),
            TORE_NB_RUN_DIR=run_dir,
        )
        here = [sys.executable, str(Path(__file__).resolve()), "--inside"]
        here += ["--interval", str(args.interval)]
        # binder/start runs this script again with the services up, then stops them by PID
        return subprocess.run(["bash", str(REPO / "binder" / "start"), *here], env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
