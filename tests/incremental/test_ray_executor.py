"""RayExecutor on a real local Ray instance (num_cpus=2, two declared GPUs), one per module."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.support import SECRET
from tests.support import sample_pdf as pdf
from tore_nb.config import CacheConfig
from tore_nb.incremental.executors import RayExecutor, SerialExecutor
from tore_nb.incremental.processor import IncrementalProcessor, RunResult
from tore_nb.incremental.stages import PageContext, Stage
from tore_nb.tiered import MultiLevelCache

pytestmark = pytest.mark.ray


def make_proc(tmp_path: Path, stages: list[Stage], **kw: Any) -> IncrementalProcessor:
    cache = MultiLevelCache(
        kw.pop("config", None) or CacheConfig.embedded(tmp_path / "c"), secret=SECRET
    )
    executor = kw.pop("executor", None) or RayExecutor(inline_below=0)
    return IncrementalProcessor(cache, stages=stages, executor=executor, **kw)


def n_chars(ctx: PageContext) -> tuple[int, int]:
    return len(ctx.text()), os.getpid()


def computed(run: RunResult) -> list[int]:
    df = run.report()
    return sorted({int(p) for p in df[df.served_by == "computed"]["page"]})


def test_small_jobs_run_inline_without_ray(tmp_path: Path) -> None:
    import sys

    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        pytest.skip("ray already running in this process")
    run = make_proc(
        tmp_path, [Stage("chars", n_chars)], executor=RayExecutor(inline_below=10)
    ).process(pdf("us-036.pdf"))
    assert {p["chars"][1] for p in run[0].pages} == {os.getpid()}


def test_fan_out_matches_serial_and_runs_in_workers(ray_session: Any, tmp_path: Path) -> None:
    stages = [Stage("chars", n_chars)]
    ray_run = make_proc(tmp_path, stages).process([pdf("dmca.pdf"), pdf("us-036.pdf")])
    serial = make_proc(tmp_path / "s", stages, executor=SerialExecutor()).process(
        [pdf("dmca.pdf"), pdf("us-036.pdf")]
    )
    for a, b in zip(ray_run.documents, serial.documents, strict=True):
        assert [p["chars"][0] for p in a.pages] == [p["chars"][0] for p in b.pages]
    pids = {p["chars"][1] for r in ray_run.documents for p in r.pages}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2


def test_only_changed_pages_are_dispatched(ray_session: Any, tmp_path: Path) -> None:
    work = tmp_path / "d.pdf"
    shutil.copy(pdf("dmca.pdf"), work)
    proc = make_proc(tmp_path, [Stage("chars", n_chars)])
    assert computed(proc.process(work)) == list(range(1, 19))
    shutil.copy(pdf("dmca_v2.pdf"), work)
    assert computed(proc.process(work)) == [3, 7, 19]


def gpu_ids(ctx: PageContext) -> tuple[str | None, list[Any]]:
    import ray

    return os.environ.get("CUDA_VISIBLE_DEVICES"), [str(g) for g in ray.get_gpu_ids()]


def test_gpu_stage_gets_its_own_device(ray_session: Any, tmp_path: Path) -> None:
    stages = [Stage("chars", n_chars), Stage("gpu", gpu_ids, num_gpus=1, requires=("chars",))]
    run = make_proc(tmp_path, stages).process(pdf("dmca.pdf"))
    seen = [p["gpu"] for p in run[0].pages]
    for visible, ids in seen:
        assert len(ids) == 1 and visible == ids[0] and ids[0] in ("0", "1")
    # the CPU stage ran without a GPU
    assert all(p["chars"][0] >= 0 for p in run[0].pages)


def fails_on_page_two(ctx: PageContext, marker: str) -> int:
    if ctx.page.index == 1 and not os.path.exists(marker):  # fails once: a transient error
        Path(marker).touch()
        raise RuntimeError("transient")
    if ctx.page.index == 2:
        raise ValueError("always broken")
    return ctx.page.index


def test_failed_pages_are_retried_then_reported(ray_session: Any, tmp_path: Path) -> None:
    stage = Stage("f", fails_on_page_two, {"marker": str(tmp_path / "once")})
    run = make_proc(tmp_path, [stage], executor=RayExecutor(inline_below=0, retries=1)).process(
        pdf("dmca.pdf")
    )
    result = run[0]
    assert result.failed_pages == (3,)
    assert "always broken" in result.pages[2].errors["f"]
    assert result.pages[1]["f"] == 1  # retried and recovered
    assert [p.results.get("f") for p in result.pages if p.index != 2] == [
        i for i in range(18) if i != 2
    ]


def die_once(ctx: PageContext, marker: str, log: str) -> int:
    with open(log, "a") as f:
        f.write(f"{ctx.page.index}\n")
    if ctx.page.index == 5 and not os.path.exists(marker):
        Path(marker).touch()
        os.kill(os.getpid(), signal.SIGKILL)  # the worker dies mid-chunk
    return ctx.page.index * 10


def test_killed_worker_loses_and_duplicates_no_page(ray_session: Any, tmp_path: Path) -> None:
    log = tmp_path / "log"
    stage = Stage("d", die_once, {"marker": str(tmp_path / "died"), "log": str(log)})
    run = make_proc(tmp_path, [stage]).process(pdf("dmca.pdf"))
    result = run[0]
    assert (tmp_path / "died").exists()
    assert [p["d"] for p in result.pages] == [i * 10 for i in range(18)]
    assert result.failed_pages == ()
    df = run.report()
    assert sorted(df.page) == list(range(1, 19))  # each page reported once
    runs = [int(x) for x in log.read_text().split()]
    assert runs.count(5) == 2  # page 6 ran again in the retried task


def test_workers_write_shared_redis_tier(ray_session: Any, tmp_path: Path, redis_url: str) -> None:
    cfg = CacheConfig(disk_cache_path=str(tmp_path / "c1"), redis_url=redis_url)
    stages = [Stage("chars", n_chars)]
    first = make_proc(tmp_path, stages, config=cfg).process(pdf("us-036.pdf"))
    assert computed(first) == [1, 2, 3]
    # another machine: empty memory and disk, the same Redis: pages come from Redis
    cfg2 = cfg.replace(disk_cache_path=str(tmp_path / "c2"))
    redis_only = MultiLevelCache(
        cfg2.replace(memory_enabled=False, disk_enabled=False), secret=SECRET
    )
    ident = first[0].pages[0].identity
    from tore_nb.incremental.stages import Pipeline

    assert redis_only.contains(Pipeline(stages).key("chars", ident))
    second = make_proc(tmp_path, stages, config=cfg2).process(pdf("us-036.pdf"))
    df = second.report()
    assert set(df.served_by) == {"redis"}


def test_a_worker_without_the_drivers_secret_fails_the_run_with_the_fix(
    ray_session: Any, tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: a node started without TORE_NB_SECRET signed with its own key file; every
    later kernel rejected its pages as unsigned and recomputed them, silently. A worker now
    proves it holds the driver's secret before any work: otherwise the run fails naming the
    node and the fix, and `share_secret=True` hands the tasks the driver's secret."""
    from tore_nb.incremental.shared import WorkerSecretError

    # the driver signs with a secret its Ray workers (started earlier) do not have
    monkeypatch.setenv("TORE_NB_SECRET", "the-drivers-own-secret-0123456789")
    cfg = CacheConfig(disk_cache_path=str(tmp_path / "c1"), redis_url=redis_url)
    stages = [Stage("chars", n_chars)]

    def proc(**kw: Any) -> IncrementalProcessor:
        executor = RayExecutor(inline_below=0, **kw)
        return IncrementalProcessor(MultiLevelCache(cfg), stages=stages, executor=executor)

    with pytest.raises(WorkerSecretError, match=r"Ray node .* TORE_NB_SECRET.*share_secret"):
        proc().process(pdf("us-036.pdf"))
    shared = proc(share_secret=True).process(pdf("us-036.pdf"))
    assert computed(shared) == [1, 2, 3]
    # what those workers stored verifies for another kernel with the driver's secret
    other = cfg.replace(disk_cache_path=str(tmp_path / "c2"))
    again = IncrementalProcessor(MultiLevelCache(other), stages=stages).process(pdf("us-036.pdf"))
    assert set(again.report().served_by) == {"redis"}
