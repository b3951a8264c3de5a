"""IncrementalProcessor: process documents so that only what changed is recomputed.

For each document: detect changes against its manifest; when few pages changed (below
`change_threshold`, the seed's 30%) and the previous document result exists, keep its unchanged
pages and look up only the changed ones; otherwise look up every page. Lookups are one
`fetch_many` for all documents; only the misses go to the executor; new results are written back
with `set_many` and merged, in page order, into one `ProcessingResult` per document.

>>> import tempfile
>>> from tore_nb.config import CacheConfig
>>> from tore_nb.tiered import MultiLevelCache
>>> proc = IncrementalProcessor(MultiLevelCache(CacheConfig.embedded(tempfile.mkdtemp())))
>>> run = proc.process(["data/pdfs/dmca.pdf"])  # doctest: +SKIP
>>> run.documents[0].metadata["mode"], len(run.documents[0].pages)  # doctest: +SKIP
('full', 18)
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..keys import hash_bytes
from .builtin import default_stages
from .changes import ChangeDetector, ChangeSet, Manifest, best_base
from .documents import Document, DocumentError, collector_paused, document_id_for
from .executors import Executor, SerialExecutor, StageOutcome, WorkItem, store_outcomes
from .progress import NullProgress, Progress

# The run records live in results.py; they are re-exported here for one release, so that
# `from tore_nb.incremental.processor import RunResult` (and pickles of ProcessingResult made
# before the move) keep working.
from .results import SHARED, PageEvent, PageResult, ProcessingResult, RunResult, result_key
from .shared import result_tiers
from .stages import Pipeline, Stage

if TYPE_CHECKING:
    from ..tiered import MultiLevelCache

__all__ = [
    "IncrementalProcessor",
    "PageEvent",
    "PageResult",
    "ProcessingResult",
    "RunResult",
    "result_key",
]

Mode = Literal["full", "incremental", "unchanged"]
_Status = tuple[str, str, float, str | None]  # served_by, level, seconds, error


@dataclass
class _Plan:
    change: ChangeSet
    mode: Mode
    previous: ProcessingResult | None
    prev_tier: str
    pages: dict[int, PageResult] = field(default_factory=dict)  # reused from the previous result
    lookup: list[int] = field(default_factory=list)  # page indices to look up / compute


class IncrementalProcessor:
    """Runs stages over documents, recomputing only the pages whose content is new.

    `stages` default to the real default stages (text and layout, OCR for pages without text,
    tables). `executor` defaults to `SerialExecutor()`; pass `RayExecutor()` to fan out.
    A page's stage results are kept `page_ttl` seconds (a day; a stage's own `ttl` wins) in
    every tier, whether the processor or a worker stored them; a document's assembled result
    `result_ttl` seconds (default: the cache's TTL).

    A document seen for the first time that shares at least `related_threshold` of its pages
    with one seen before, or read earlier in the same run, is reported as a diff against it
    (a new version saved under a new name); `previous=` of `process` names it explicitly.
    `related_threshold=None` reports every new document's pages as added.
    """

    def __init__(
        self,
        cache: MultiLevelCache | None = None,
        *,
        stages: Sequence[Stage] | None = None,
        executor: Executor | None = None,
        change_threshold: float = 0.3,
        page_ttl: float | None = 86400.0,
        result_ttl: float | None = None,
        progress: Progress | None = None,
        verify_content: bool = False,
        related_threshold: float | None = 0.5,
    ) -> None:
        if cache is None:
            from ..tiered import get_cache

            cache = get_cache()
        self.cache = cache
        self.detector = ChangeDetector(cache, verify_content=verify_content)
        self._stages = tuple(stages) if stages is not None else None
        self.executor: Executor = executor if executor is not None else SerialExecutor()
        if not 0.0 <= change_threshold <= 1.0:
            raise ValueError("change_threshold must be between 0 and 1")
        self.change_threshold = change_threshold
        if related_threshold is not None and not 0.0 < related_threshold <= 1.0:
            raise ValueError("related_threshold must be above 0 and at most 1, or None")
        self.related_threshold = related_threshold
        self.page_ttl, self.result_ttl = page_ttl, result_ttl
        self.progress: Progress = progress if progress is not None else NullProgress()

    def __repr__(self) -> str:
        return f"IncrementalProcessor(cache={self.cache!r}, executor={self.executor!r})"

    @property
    def stages(self) -> tuple[Stage, ...]:
        if self._stages is None:
            self._stages = default_stages()
        return self._stages

    # -- public API ----------------------------------------------------------------------------
    def process_document(
        self,
        path: str | os.PathLike[str],
        stages: Sequence[Stage] | None = None,
        *,
        force: bool = False,
        previous: str | os.PathLike[str] | None = None,
    ) -> ProcessingResult:
        """Process one document; raises `DocumentError` when it cannot be read."""
        run = self.process([path], stages, force=force, previous=previous)
        if run.failures:
            raise DocumentError(next(iter(run.failures.values())))
        return run.documents[0]

    def process(
        self,
        paths: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
        stages: Sequence[Stage] | None = None,
        *,
        force: bool = False,
        progress: Progress | None = None,
        previous: str | os.PathLike[str] | Mapping[Any, str | os.PathLike[str]] | None = None,
    ) -> RunResult:
        """Process documents incrementally; see the module docstring.

        `force=True` ignores every cached result, the stage caches (OCR, embeddings) included,
        and recomputes all pages; the changes are still reported against the last version.
        `previous` names the earlier version to report changes against: a file when one
        document is given, else a mapping {document: earlier version}.
        """
        t0 = time.perf_counter()
        rejected_before = self._rejected()
        if isinstance(paths, str | os.PathLike):
            paths = [paths]
        path_list = list(dict.fromkeys(os.fspath(p) for p in paths))
        explicit = _explicit_previous(previous, path_list)
        pipeline = Pipeline(stages if stages is not None else self.stages, self.page_ttl)
        ids = [document_id_for(p) for p in path_list]
        # even a forced run diffs against what was seen before, so its report is right
        manifests = self.detector.load_manifests(ids)
        # small records: S3 holds them only when Redis cannot answer (see `result_tiers`)
        prev_hits = self.cache.fetch_many(
            [result_key(d, pipeline) for d in ids], tiers=result_tiers(self.cache)
        )
        now = time.time()
        earlier: dict[str, tuple[ProcessingResult, str]] = {}
        for doc_id in ids:
            hit = prev_hits.get(result_key(doc_id, pipeline))
            value = hit.value if hit is not None else None
            if (
                hit is not None
                and isinstance(value, ProcessingResult)
                and value.document.document_id == doc_id
                and _expires_at(value) > now
            ):
                earlier[doc_id] = (value, hit.tier)
        plans: list[_Plan] = []
        failures: dict[str, str] = {}
        changes: list[ChangeSet] = []
        read: dict[str, bytes] = {}  # the bytes detection read, which executors then run on
        for path, doc_id in zip(path_list, ids, strict=True):
            # the manifest is per document, shared by every pipeline; what this pipeline saw
            # last is its previous result's document, so diff against that when there is one
            prev_doc = earlier.get(doc_id)
            baseline = (
                Manifest(prev_doc[0].document, now)
                if prev_doc is not None
                else manifests.get(doc_id)
            )
            try:
                base = explicit.get(doc_id)
                if base is not None:  # this file's own history is not what was asked for
                    baseline = Manifest(self._read_previous(base), now)
                cs, data = self.detector.detect_read(path, previous=baseline)
            except (DocumentError, OSError) as exc:
                failures[path] = str(exc)
                continue
            changes.append(cs)
            if data is not None:
                read[doc_id] = data
        changes = self._rebase(changes, now)
        for cs in changes:
            own = cs.based_on is None
            prev_doc = None if force or not own else earlier.get(cs.document_id)
            prev = prev_doc[0] if prev_doc is not None else None
            plans.append(self._plan(cs, prev, prev_doc[1] if prev_doc is not None else ""))

        page_hits = self._lookup(plans, pipeline, force)
        items, sources, copies, unreadable = self._work(plans, pipeline, page_hits, force, read)
        if unreadable:
            given = dict(zip(ids, path_list, strict=True))
            failures.update({given[d]: why for d, why in unreadable.items()})
            plans = [p for p in plans if p.change.document_id not in unreadable]
            changes = [c for c in changes if c.document_id not in unreadable]
        outcomes = (
            self.executor.run(
                items, pipeline, sources, cache=self.cache, progress=progress or self.progress
            )
            if items
            else []
        )
        self._write_back(pipeline, outcomes)
        outcomes = [*outcomes, *_copied(outcomes, copies)]
        with collector_paused():  # pickling the results: see `collector_paused`
            results, events = self._merge(plans, pipeline, page_hits, outcomes, manifests)
        return RunResult(
            tuple(results),
            tuple(changes),
            tuple(events),
            failures,
            time.perf_counter() - t0,
            rejected=self._rejected() - rejected_before,
        )

    def _rejected(self) -> int:
        """Entries this process's cache refused so far (failed verification, superseded):
        a run's share is reported (see `RunResult.rejected`)."""
        metrics = self.cache.metrics
        return sum(metrics.tier(name).corrupt for name in self.cache.tier_names)

    # -- steps ---------------------------------------------------------------------------------
    def _read_previous(self, path: str) -> Document:
        """The document an explicit `previous=` names, as the file is now (not recorded)."""
        try:
            return self.detector.detect(path).document
        except DocumentError as exc:
            raise DocumentError(f"the previous version given: {exc}") from exc

    def _rebase(self, changes: list[ChangeSet], now: float) -> list[ChangeSet]:
        """New documents diffed against the document they share most pages with, when one
        seen before or one earlier in this run holds at least `related_threshold` of them."""
        threshold = self.related_threshold
        new = [cs.document for cs in changes if cs.is_new]
        if threshold is None or not new:
            return changes
        seen = self.detector.related(new, threshold=threshold)
        out: list[ChangeSet] = []
        for cs in changes:
            if cs.is_new:
                doc = cs.document
                found = seen.get(doc.document_id)
                earlier = [c.document for c in out]
                base = best_base(doc, [*earlier, *([found] if found else [])], threshold)
                if base is not None:
                    cs = ChangeSet.compare(Manifest(base, now), doc, file_changed=True)
            out.append(cs)
        return out

    def _plan(self, cs: ChangeSet, prev: ProcessingResult | None, tier: str) -> _Plan:
        doc = cs.document
        if prev is not None and prev.document.document_id != doc.document_id:
            prev = None
        if (
            prev is not None
            and not cs.file_changed
            and not prev.failed_pages
            and prev.document.identities == doc.identities
        ):
            return _Plan(cs, "unchanged", prev, tier)
        if prev is not None and not cs.is_new and cs.changed_fraction < self.change_threshold:
            plan = _Plan(cs, "incremental", prev, tier)
            by_identity = {p.identity: p for p in prev.pages if p.ok}
            for c in cs.changes:
                if c.new_index is None:
                    continue
                old = by_identity.get(c.identity)
                if old is not None and not c.needs_processing:
                    plan.pages[c.new_index] = PageResult(c.new_index, c.identity, old.results)
                else:
                    plan.lookup.append(c.new_index)
            return plan
        return _Plan(cs, "full", prev, tier, lookup=list(range(doc.page_count)))

    def _lookup(self, plans: Sequence[_Plan], pipeline: Pipeline, force: bool) -> Mapping[str, Any]:
        if force:
            return {}
        keys = [
            pipeline.key(s.name, p.change.document.pages[i].identity)
            for p in plans
            for i in p.lookup
            for s in pipeline.stages
        ]
        return self.cache.fetch_many(keys, tiers=result_tiers(self.cache)) if keys else {}

    def _work(
        self,
        plans: Sequence[_Plan],
        pipeline: Pipeline,
        hits: Mapping[str, Any],
        force: bool,
        read: Mapping[str, bytes],
    ) -> tuple[list[WorkItem], dict[str, str | bytes], list[_Copy], dict[str, str]]:
        """Work items for the misses; a page whose identity is already scheduled in this run
        (the same page in two versions of a document, or in two documents) is computed once and
        copied (the returned `_Copy` list).

        Executors get the bytes the page identities came from: those detection read (`read`,
        while the file's stat still matches), else the file read now and checked against the
        detected hash. A file that changed or vanished since detection is a failure of its
        document (returned: id -> reason), never computed, so no result of other bytes is
        stored under these identities."""
        items: list[WorkItem] = []
        sources: dict[str, str | bytes] = {}
        scheduled: dict[str, tuple[str, int]] = {}
        copies: list[_Copy] = []
        unreadable: dict[str, str] = {}
        for plan in plans:
            doc = plan.change.document
            doc_items: list[WorkItem] = []
            doc_copies: list[_Copy] = []
            doc_scheduled: dict[str, tuple[str, int]] = {}
            for i in plan.lookup:
                page = doc.pages[i]
                first = scheduled.get(page.identity) or doc_scheduled.get(page.identity)
                if first is not None:
                    doc_copies.append((*first, doc.document_id, page.index))
                    continue
                missing = [
                    s.name
                    for s in pipeline.stages
                    if pipeline.key(s.name, page.identity) not in hits
                ]
                if not missing:
                    continue
                need = pipeline.closure(missing)
                known = {}
                for name in need:
                    hit = hits.get(pipeline.key(name, page.identity))
                    if hit is not None:
                        known[name] = pipeline.unpack(hit.value)[0]
                todo = tuple(n for n in need if n not in known)
                doc_items.append(WorkItem(doc.document_id, page, todo, known, force))
                doc_scheduled[page.identity] = (doc.document_id, page.index)
            if doc_items:
                data = read.get(doc.document_id)
                reason = _moved_on(doc) if data is not None else ""
                if reason:
                    data = None
                elif data is None:  # the stat fast path did not read it
                    data, reason = _read_verified(doc)
                if data is None:
                    unreadable[doc.document_id] = reason
                    continue
                sources[doc.document_id] = data
            items.extend(doc_items)
            copies.extend(doc_copies)
            scheduled.update(doc_scheduled)
        return items, sources, copies, unreadable

    def _write_back(self, pipeline: Pipeline, outcomes: Sequence[StageOutcome]) -> None:
        """Store new results in the local tiers (executors already wrote Redis and S3)."""
        local = self.cache.local_tiers
        if local:
            store_outcomes(self.cache, pipeline, outcomes, local)

    def _merge(
        self,
        plans: Sequence[_Plan],
        pipeline: Pipeline,
        hits: Mapping[str, Any],
        outcomes: Sequence[StageOutcome],
        manifests: Mapping[str, Manifest],
    ) -> tuple[list[ProcessingResult], list[PageEvent]]:
        by_page: dict[tuple[str, int], dict[str, StageOutcome]] = {}
        for o in outcomes:
            by_page.setdefault((o.document_id, o.page_index), {})[o.stage] = o
        n_keys = max(1, len(hits))
        results: list[ProcessingResult] = []
        events: list[PageEvent] = []
        now = _dt.datetime.now(_dt.UTC)
        stamp = now.timestamp()
        keep = self._result_ttl(pipeline)
        for plan in plans:
            cs, doc = plan.change, plan.change.document
            manifest = manifests.get(doc.document_id)
            if plan.mode == "unchanged" and plan.previous is not None:
                self._save_manifest(cs, manifest)
                prev_pages = plan.previous.pages
                events.extend(
                    _events(
                        cs,
                        pipeline,
                        lambda c, s, t=plan.prev_tier, pp=prev_pages: (
                            _served(pipeline, s, pp[c.new_index].results.get(s), t),
                            "document",
                            0.0,
                            None,
                        ),
                    )
                )
                # this run's own metadata: the previous run's counts and threshold are stale
                kept = _page_costs(plan.previous)
                meta = {
                    **plan.previous.metadata,
                    **self._metadata(cs, plan.mode, plan.previous.pages, now),
                    "page_seconds": kept,
                    "saved_seconds": round(sum(kept), 6),
                    "duplicates": 0,  # nothing ran: the previous run's work is not this one's
                    "retries": 0,
                }
                results.append(dataclasses.replace(plan.previous, document=doc, metadata=meta))
                continue
            pages: list[PageResult] = []
            status_of: dict[tuple[int, str], _Status] = {}
            costs: list[float] = []
            saved = 0.0
            prev_costs = (
                {
                    p.identity: c
                    for p, c in zip(plan.previous.pages, _page_costs(plan.previous), strict=True)
                }
                if plan.pages and plan.previous is not None
                else {}
            )
            for i, page in enumerate(doc.pages):
                reused = plan.pages.get(i)
                if reused is not None:
                    pages.append(reused)
                    for s in pipeline.names:
                        by = _served(pipeline, s, reused.results.get(s), plan.prev_tier)
                        status_of[(i, s)] = (by, "document", 0.0, None)
                    cost = prev_costs.get(reused.identity, 0.0)
                    costs.append(cost)
                    saved += cost
                    continue
                values: dict[str, Any] = {}
                errors: dict[str, str] = {}
                done = by_page.get((doc.document_id, i), {})
                cost = 0.0
                for s in pipeline.names:
                    hit = hits.get(pipeline.key(s, page.identity))
                    got = done.get(s)
                    if got is not None:
                        if got.ok:
                            values[s] = got.value
                            by = _served(pipeline, s, got.value, got.source)
                            status_of[(i, s)] = (by, "page", got.seconds, None)
                            cost += got.cost
                            saved += got.cost if got.source != "computed" else 0.0
                        else:
                            errors[s] = got.error or "failed"
                            status_of[(i, s)] = ("failed", "page", got.seconds, got.error)
                    elif hit is not None:
                        value, took = pipeline.unpack(hit.value)
                        values[s] = value
                        by = _served(pipeline, s, value, hit.tier)
                        status_of[(i, s)] = (by, "page", hit.seconds / n_keys, None)
                        cost += took
                        saved += took
                    else:
                        errors[s] = "not computed"
                        status_of[(i, s)] = ("failed", "page", 0.0, "not computed")
                costs.append(round(cost, 6))
                pages.append(PageResult(i, page.identity, values, errors))
            # the document result serves its pages' stage results, so it must not outlive the
            # shortest stage TTL, nor the pages it reuses from the previous result
            expires = stamp + keep
            if plan.pages and plan.previous is not None:
                expires = min(expires, _expires_at(plan.previous))
            result = ProcessingResult(
                document=doc,
                pages=tuple(pages),
                stages=pipeline.names,
                pipeline_fingerprint=pipeline.fingerprint,
                metadata={
                    **self._metadata(cs, plan.mode, pages, now),
                    "expires_at": expires,
                    "page_seconds": tuple(costs),
                    "saved_seconds": round(saved, 6),
                    **_work_counts(by_page, doc.document_id),
                },
            )
            results.append(result)
            if expires > stamp:  # inf - stamp stays inf: no expiry
                self.cache.set(result_key(doc.document_id, pipeline), result, ttl=expires - stamp)
            self._save_manifest(cs, manifest)
            events.extend(_events(cs, pipeline, lambda c, s, st=status_of: st[(c.new_index, s)]))
        return results, events

    def _metadata(
        self, cs: ChangeSet, mode: Mode, pages: Sequence[PageResult], now: _dt.datetime
    ) -> dict[str, Any]:
        return {
            "last_updated": now,
            "changed_pages": cs.changed_pages,
            "incremental_update": mode == "incremental",
            "mode": mode,
            "based_on": cs.based_on.name if cs.based_on is not None else None,
            "change_threshold": self.change_threshold,
            "changed_fraction": cs.changed_fraction,
            "failed_pages": tuple(p.number for p in pages if not p.ok),
            **{f"{k}_pages": v for k, v in cs.counts().items()},
        }

    def _result_ttl(self, pipeline: Pipeline) -> float:
        """Seconds a document result may be kept: the least of `result_ttl` and every stage's
        TTL (None: the cache's default; inf: no expiry)."""
        default = self.cache.config.cache_ttl
        ttls = [self.result_ttl, *(pipeline.ttl(s) for s in pipeline.names)]
        resolved = [default if t is None else t for t in ttls]
        return min((float(t) for t in resolved if t is not None), default=math.inf)

    def _save_manifest(self, cs: ChangeSet, manifest: Manifest | None) -> None:
        # `cs.previous` may be this pipeline's last document; the manifest is the document's
        if manifest is None or manifest.document.fingerprint != cs.document.fingerprint:
            self.detector.save_manifest(cs.document)


def _explicit_previous(previous: Any, paths: Sequence[str]) -> dict[str, str]:
    """`process(previous=...)` as {document id: path of the earlier version}."""
    if previous is None:
        return {}
    if isinstance(previous, str | os.PathLike):
        if len(paths) != 1:
            raise ValueError(
                "previous= names one file for one document; for several, pass a mapping "
                "{document: earlier version}"
            )
        return {document_id_for(paths[0]): os.fspath(previous)}
    if not isinstance(previous, Mapping):
        raise TypeError(f"previous= takes a path or a mapping, not {type(previous).__name__}")
    return {document_id_for(k): os.fspath(v) for k, v in previous.items()}


def _expires_at(result: ProcessingResult) -> float:
    """When a document result's oldest page result expires (epoch seconds; inf: never)."""
    value = result.metadata.get("expires_at")
    return float(value) if isinstance(value, int | float) else math.inf


def _work_counts(
    by_page: Mapping[tuple[str, int], Mapping[str, StageOutcome]], document_id: str
) -> dict[str, int]:
    """This run's stage results of a document that were computed twice across the cluster
    (`duplicates`: a claim lost while working) and that took more than one attempt."""
    mine = [o for (d, _), done in by_page.items() if d == document_id for o in done.values()]
    return {
        "duplicates": sum(o.duplicate for o in mine),
        "retries": sum(max(0, o.attempts - 1) for o in mine),
    }


def _page_costs(result: ProcessingResult) -> tuple[float, ...]:
    """The seconds computing each page's results took (0 where a result predates the record)."""
    costs = result.metadata.get("page_seconds")
    if isinstance(costs, tuple) and len(costs) == len(result.pages):
        return costs
    return (0.0,) * len(result.pages)


def _served(pipeline: Pipeline, stage: str, value: Any, source: str) -> str:
    """Where a stage result came from, or that the stage had nothing to do on the page."""
    return pipeline.skipped(stage, value) or source


def _moved_on(doc: Document) -> str:
    """Why the file is no longer the version detected (its stat moved, or it is gone), or "".

    The run still has that version's bytes, but a document whose file changed under it is
    reported, not quietly processed as it was: the user is looking at another file now."""
    try:
        st = os.stat(doc.path)
    except OSError as exc:
        return f"cannot read {doc.path}: {exc}"
    fp = doc.fingerprint
    if (st.st_size, st.st_mtime_ns) != (fp.size, fp.mtime_ns):
        return f"{doc.path} changed while it was being processed; run again"
    return ""


def _read_verified(doc: Document) -> tuple[bytes | None, str]:
    """The file's bytes when they still hash to what was detected, else None and why."""
    try:
        data = Path(doc.path).read_bytes()
    except OSError as exc:
        return None, f"cannot read {doc.path}: {exc}"
    if hash_bytes(data) != doc.fingerprint.content_hash:
        return None, f"{doc.path} changed while it was being processed; run again"
    return data, ""


_Copy = tuple[str, int, str, int]  # computed (document, page index) -> copy (document, index)


def _copied(outcomes: Sequence[StageOutcome], copies: Sequence[_Copy]) -> list[StageOutcome]:
    if not copies:
        return []
    by_page: dict[tuple[str, int], list[StageOutcome]] = {}
    for o in outcomes:
        by_page.setdefault((o.document_id, o.page_index), []).append(o)
    return [
        dataclasses.replace(
            o,
            document_id=doc,
            page_index=index,
            seconds=0.0,
            source=SHARED if o.ok else o.source,
            attempts=1,
            duplicate=False,
        )
        for src_doc, src_index, doc, index in copies
        for o in by_page.get((src_doc, src_index), ())
    ]


def _events(cs: ChangeSet, pipeline: Pipeline, status: Any) -> list[PageEvent]:
    """A PageEvent per page of the change set; `status(change, stage)` gives a `_Status`."""
    doc = cs.document
    name, path = doc.name, doc.path
    names = pipeline.names
    out = []
    for c in cs.changes:
        old = None if c.old_index is None else c.old_index + 1
        if c.new_index is None:
            out.append(PageEvent(name, path, None, c.status, old, None, c.identity))
            continue
        new = c.new_index + 1
        st: dict[str, _Status] = {s: status(c, s) for s in names}
        out.append(
            PageEvent(
                name,
                path,
                new,
                c.status,
                old,
                new,
                c.identity,
                served={s: v[0] for s, v in st.items()},
                levels={s: v[1] for s, v in st.items()},
                timings={s: v[2] for s, v in st.items()},
                errors={s: v[3] for s, v in st.items() if v[3] is not None},
            )
        )
    return out
