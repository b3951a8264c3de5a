"""Executors run the stages of the pages that missed the cache: serially, or as Ray tasks.

Both receive `WorkItem`s (a page, the stages to compute, the results it already has) and return
one `StageOutcome` per (page, stage). A stage that raises fails that page's stage (and the
stages that require it) and nothing else. The Ray executor sends pages in small units (a few
pages a task, twice as many units in flight as the cluster runs at once, the next sent as one
returns), retries units whose worker died (Ray's task retries) and re-runs failed pages as
single tasks with `retry_exceptions`; a handful of pages run inline instead of starting Ray.
Either way each page is claimed, computed and stored by `work.run_items`.

>>> from tore_nb.incremental.stages import Pipeline, Stage
>>> SerialExecutor().run([], Pipeline([Stage("n", lambda ctx: 1)]), {})
[]
"""

from __future__ import annotations

import itertools
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .progress import NullProgress, Progress
from .shared import WorkerSecretError, env_of, make_probe, prove_secret
from .stages import Pipeline

# the work itself lives in `work`; these names are re-exported from here, where they were
from .work import (
    OpenDocuments,
    StageOutcome,
    WorkItem,
    brief,
    known_values,
    run_items,
    slot,
    store_outcomes,
)

if TYPE_CHECKING:
    from ..tiered import MultiLevelCache

log = logging.getLogger("tore_nb.incremental")

__all__ = [
    "Executor",
    "OpenDocuments",
    "RayExecutor",
    "SerialExecutor",
    "StageOutcome",
    "WorkItem",
    "run_items",
    "store_outcomes",
]


class Executor(Protocol):
    """Runs work items; `sources` maps document ids to their bytes (or file paths)."""

    def run(
        self,
        items: Sequence[WorkItem],
        pipeline: Pipeline,
        sources: Mapping[str, str | bytes],
        *,
        cache: MultiLevelCache | None = None,
        progress: Progress | None = None,
    ) -> list[StageOutcome]: ...


def _shared(cache: MultiLevelCache | None) -> tuple[str, ...]:
    if cache is None:
        return ()
    return cache.shared_tiers


def _retry_inline(
    items: Sequence[WorkItem],
    outcomes: list[StageOutcome],
    pipeline: Pipeline,
    sources: Mapping[str, str | bytes],
    cache: MultiLevelCache | None,
    retries: int,
) -> list[StageOutcome]:
    """Run failed (page, stage) pairs again, up to `retries` times."""
    for attempt in range(2, retries + 2):
        failed = {slot(o) for o in outcomes if not o.ok}
        if not failed:
            break
        redo = _redo_items(items, outcomes, failed)
        again = {
            slot(o): o
            for o in run_items(redo, pipeline, sources, cache, _shared(cache), recheck=False)
        }
        outcomes = [
            replace(again.get(slot(o), o), attempts=attempt) if slot(o) in failed else o
            for o in outcomes
        ]
    return outcomes


def _redo_items(
    items: Sequence[WorkItem], outcomes: Sequence[StageOutcome], failed: set[tuple[str, int, str]]
) -> list[WorkItem]:
    ok = known_values(outcomes)
    redo = []
    for it in items:
        stages = tuple(s for s in it.stages if (it.document_id, it.page.index, s) in failed)
        if stages:
            known = {**it.known, **ok[(it.document_id, it.page.index)]}
            redo.append(WorkItem(it.document_id, it.page, stages, known, it.force))
    return redo


class SerialExecutor:
    """Runs pages one after another in this process; failed pages are retried `retries` times.

    >>> SerialExecutor(retries=0).retries
    0
    """

    def __init__(self, *, retries: int = 1) -> None:
        self.retries = retries

    def __repr__(self) -> str:
        return "SerialExecutor()"

    def run(
        self,
        items: Sequence[WorkItem],
        pipeline: Pipeline,
        sources: Mapping[str, str | bytes],
        *,
        cache: MultiLevelCache | None = None,
        progress: Progress | None = None,
    ) -> list[StageOutcome]:
        progress = progress or NullProgress()
        if not items:
            return []
        progress.start(len(items), "pages")
        shared = _shared(cache)
        out: list[StageOutcome] = []
        try:
            # each document opened once for all its pages; progress as each page is done
            out = run_items(
                items,
                pipeline,
                sources,
                cache,
                shared,
                recheck=False,
                on_page=lambda: progress.advance(1),
            )
        finally:
            progress.close()
        if self.retries > 0:
            out = _retry_inline(items, out, pipeline, sources, cache, self.retries)
        return out


class RayExecutor:
    """Runs pages as Ray tasks on local CPUs, GPUs, or an existing cluster (`address=`).

    Without `address` a new local Ray instance is started (pass address="auto" to join the
    one `ray start` runs here). Stages with `num_gpus` run in tasks that reserve a GPU (Ray
    sets CUDA_VISIBLE_DEVICES for each). Documents travel through the object store, so cluster
    nodes need no shared disk. With Redis or S3 configured, workers read and write those tiers
    themselves; each task first proves that it holds the driver's secret (`prove_secret`), else
    the run fails with `WorkerSecretError` naming the node (`share_secret=True` hands the tasks
    the driver's secret in their environment). `ray.init` is called only when needed and not
    already done (`init_kwargs` go to it).

    >>> RayExecutor(num_cpus=2).pages_per_task
    4
    """

    def __init__(
        self,
        *,
        address: str | None = None,
        num_cpus: int | None = None,
        num_gpus: int | None = None,
        pages_per_task: int = 4,
        max_retries: int = 3,
        retries: int = 1,
        inline_below: int = 4,
        init_kwargs: Mapping[str, Any] | None = None,
        share_secret: bool = False,
    ) -> None:
        self.address = address
        self.num_cpus, self.num_gpus = num_cpus, num_gpus
        self.pages_per_task = pages_per_task
        self.max_retries, self.retries, self.inline_below = max_retries, retries, inline_below
        self.init_kwargs = dict(init_kwargs or {})
        self.share_secret = share_secret

    def __repr__(self) -> str:
        where = self.address or "local"
        return f"RayExecutor(address={where!r}, num_cpus={self.num_cpus})"

    def _runtime_env(self, cache: MultiLevelCache | None) -> dict[str, Any] | None:
        """With `share_secret`, the tasks' environment carries the driver's secret."""
        if not self.share_secret or cache is None:
            return None
        # a task's env_vars stand in for the job's: tore_nb must stay importable
        return {"env_vars": {"PYTHONPATH": _pythonpath(), **cache.secret_env()}}

    def ensure_ray(self) -> Any:
        """Import Ray and connect (ray.init) unless this process already did."""
        from ..errors import require

        ray: Any = require("ray", "ray")
        if not ray.is_initialized():
            kw: dict[str, Any] = {
                "include_dashboard": False,
                "log_to_driver": True,
                "configure_logging": False,
            }
            if self.address:
                kw["address"] = self.address
            else:  # a fresh local instance, even when `ray start` runs on this machine
                kw["address"] = "local"
                if self.num_cpus is not None:
                    kw["num_cpus"] = self.num_cpus
                if self.num_gpus is not None:
                    kw["num_gpus"] = self.num_gpus
                # workers import tore_nb even when it runs from a source checkout
                kw["runtime_env"] = {"env_vars": {"PYTHONPATH": _pythonpath()}}
            kw.update(self.init_kwargs)
            ray.init(**kw)
        return ray

    def run(
        self,
        items: Sequence[WorkItem],
        pipeline: Pipeline,
        sources: Mapping[str, str | bytes],
        *,
        cache: MultiLevelCache | None = None,
        progress: Progress | None = None,
    ) -> list[StageOutcome]:
        if not items:
            return []
        started = _ray_started()
        if len(items) < self.inline_below and not started:
            return SerialExecutor(retries=self.retries).run(
                items, pipeline, sources, cache=cache, progress=progress
            )
        ray = self.ensure_ray()
        progress = progress or NullProgress()
        shared = _shared(cache)
        task = ray.remote(_ray_chunk)
        needed = {it.document_id for it in items}
        doc_refs = {d: ray.put(_bytes_of(p)) for d, p in sources.items() if d in needed}
        pipe_ref = ray.put(pipeline)
        cache_ref = ray.put(cache) if shared else None
        # workers write the shared tiers: each proves first that it signs as the driver does
        probe = make_probe(cache) if cache is not None and shared else None
        env = self._runtime_env(cache) if shared else None
        groups = _resource_groups(pipeline)
        chunks, workers = self._chunks(ray, items, pipeline)
        progress.start(sum(len(c) for c in chunks), "pages")
        pending: dict[Any, tuple[list[WorkItem], int, int]] = {}  # ref -> items, done, chunk
        left: dict[int, int] = {}  # chunk -> its tasks not returned yet

        def submit(cid: int, chunk: list[WorkItem]) -> None:
            # a page counts as done when the last group with work for it returns
            last = [
                max((i for i, g in enumerate(groups) if not g[0].isdisjoint(it.stages)), default=-1)
                for it in chunk
            ]
            upstream: list[Any] = []
            for gi, (names, cpus, gpus) in enumerate(groups):
                sub = [
                    WorkItem(it.document_id, it.page, s, it.known, it.force)
                    for it in chunk
                    if (s := tuple(n for n in it.stages if n in names))
                ]
                if not sub:
                    continue
                docs = {it.document_id: doc_refs[it.document_id] for it in sub}
                ref = task.options(
                    num_cpus=cpus, num_gpus=gpus, max_retries=self.max_retries, **env_of(env)
                ).remote(sub, pipe_ref, docs, cache_ref, shared, probe, *upstream)
                pending[ref] = (sub, last.count(gi), cid)
                left[cid] = left.get(cid, 0) + 1
                upstream = [*upstream, ref]

        # small units, a bounded number in flight: a lost node loses only what it was running,
        # and a worker that is done early takes the next unit instead of idling
        queue = list(enumerate(chunks))[::-1]
        limit = max(1, workers * 2)
        while queue and len(left) < limit:
            submit(*queue.pop())
        out: list[StageOutcome] = []
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    sub, finished, cid = pending.pop(ref)
                    try:
                        out.extend(ray.get(ref))
                    except WorkerSecretError:
                        raise  # the whole run: every result of that node would be rejected
                    except Exception as exc:  # a lost unit fails its pages only
                        msg = brief(exc)
                        out.extend(
                            StageOutcome(
                                it.document_id, it.page.index, it.page.identity, s, error=msg
                            )
                            for it in sub
                            for s in it.stages
                        )
                    if finished:
                        progress.advance(finished)
                    left[cid] -= 1
                    if not left[cid]:
                        del left[cid]
                        while queue and len(left) < limit:
                            submit(*queue.pop())
        finally:
            progress.close()
        return self._retry_failed(
            ray, items, out, pipe_ref, doc_refs, cache_ref, shared, pipeline, probe, env
        )

    def _chunks(
        self, ray: Any, items: Sequence[WorkItem], pipeline: Pipeline
    ) -> tuple[list[list[WorkItem]], int]:
        """Units of at most `pages_per_task` pages of one document order, and how many run
        at once on this cluster (its CPUs over the stages' CPU needs)."""
        cpus = ray.cluster_resources().get("CPU", 1.0)
        per_task = max(s.num_cpus for s in pipeline.stages) or 1.0
        workers = max(1, int(cpus // per_task))
        ordered = sorted(items, key=lambda it: (it.document_id, it.page.index))
        # a few pages a task, fewer when there are few pages: every worker gets some
        size = max(1, min(self.pages_per_task, math.ceil(len(ordered) / workers)))
        return [ordered[i : i + size] for i in range(0, len(ordered), size)], workers

    def _retry_failed(
        self,
        ray: Any,
        items: Sequence[WorkItem],
        out: list[StageOutcome],
        pipe_ref: Any,
        doc_refs: Mapping[str, Any],
        cache_ref: Any,
        shared: tuple[str, ...],
        pipeline: Pipeline,
        probe: bytes | None,
        env: dict[str, Any] | None,
    ) -> list[StageOutcome]:
        failed = {slot(o) for o in out if not o.ok}
        if not failed or self.retries <= 0:
            return out
        strict = ray.remote(_ray_strict)
        redo = _redo_items(items, out, failed)
        refs = []
        for it in redo:
            stage_gpus = max(pipeline.by_name[s].num_gpus for s in it.stages)
            stage_cpus = max(pipeline.by_name[s].num_cpus for s in it.stages)
            refs.append(
                (
                    it,
                    strict.options(
                        num_cpus=stage_cpus,
                        num_gpus=stage_gpus,
                        max_retries=self.retries,
                        retry_exceptions=[StageFailed],
                        **env_of(env),
                    ).remote(
                        [it],
                        pipe_ref,
                        {it.document_id: doc_refs[it.document_id]},
                        cache_ref,
                        shared,
                        probe,
                    ),
                )
            )
        again: dict[tuple[str, int, str], StageOutcome] = {}
        for it, ref in refs:
            try:
                got = ray.get(ref)
            except WorkerSecretError:
                raise
            except Exception as exc:  # still failing after Ray's retries
                msg = _cause(exc)
                got = [
                    StageOutcome(it.document_id, it.page.index, it.page.identity, s, error=msg)
                    for s in it.stages
                ]
            for o in got:
                again[slot(o)] = replace(o, attempts=1 + (1 if o.ok else 1 + self.retries))
        return [again.get(slot(o), o) for o in out]


def _cause(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None)
    return brief(cause if isinstance(cause, BaseException) else exc)


def _bytes_of(source: str | bytes) -> bytes:
    return source if isinstance(source, bytes) else Path(source).read_bytes()


def _pythonpath() -> str:
    here = str(Path(__file__).resolve().parents[2])
    rest = os.environ.get("PYTHONPATH", "")
    return os.pathsep.join(p for p in (here, rest) if p)


def _ray_started() -> bool:
    import sys

    ray = sys.modules.get("ray")
    return bool(ray is not None and ray.is_initialized())


def _resource_groups(pipeline: Pipeline) -> list[tuple[frozenset[str], float, float]]:
    """Consecutive stages with the same CPU/GPU needs share a task."""
    groups: list[tuple[frozenset[str], float, float]] = []
    for s in pipeline.stages:
        if groups and (groups[-1][1], groups[-1][2]) == (s.num_cpus, s.num_gpus):
            names, cpus, gpus = groups[-1]
            groups[-1] = (names | {s.name}, cpus, gpus)
        else:
            groups.append((frozenset({s.name}), s.num_cpus, s.num_gpus))
    return groups


def _ray_sources(docs: Mapping[str, Any]) -> dict[str, str | bytes]:
    import ray

    out: dict[str, str | bytes] = {}
    for d, ref in docs.items():
        out[d] = ray.get(ref) if isinstance(ref, ray.ObjectRef) else ref
    return out


def _merge_upstream(
    items: Sequence[WorkItem], upstream: Sequence[Sequence[StageOutcome]]
) -> list[WorkItem]:
    if not upstream:
        return list(items)
    known = known_values(itertools.chain.from_iterable(upstream))
    return [
        WorkItem(
            it.document_id,
            it.page,
            it.stages,
            {**it.known, **known[(it.document_id, it.page.index)]},
            it.force,
        )
        for it in items
    ]


def _ray_chunk(
    items: list[WorkItem],
    pipeline: Pipeline,
    docs: Mapping[str, Any],
    cache: MultiLevelCache | None,
    shared: tuple[str, ...],
    probe: bytes | None,
    *upstream: list[StageOutcome],
) -> list[StageOutcome]:
    """A Ray task: one chunk of pages, for the stages of one resource group."""
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")
    if cache is not None and probe is not None:  # before any work: see `prove_secret`
        prove_secret(cache, probe)
    merged = _merge_upstream(items, upstream)
    # forced items never take shared-tier results (run_items skips them per item)
    return run_items(merged, pipeline, _ray_sources(docs), cache, shared)


def _ray_strict(
    items: list[WorkItem],
    pipeline: Pipeline,
    docs: Mapping[str, Any],
    cache: MultiLevelCache | None,
    shared: tuple[str, ...],
    probe: bytes | None,
) -> list[StageOutcome]:
    """A Ray task that raises when a stage fails, so that Ray's `retry_exceptions` applies."""
    out = _ray_chunk(items, pipeline, docs, cache, shared, probe)
    bad = [o for o in out if not o.ok]
    if bad:
        raise StageFailed(bad[0].error or "stage failed")
    return out


class StageFailed(RuntimeError):
    """Raised inside a retry task so that Ray retries it."""
