"""The work on pages: what is to compute (`WorkItem`), what came of it (`StageOutcome`), and
`run_items`, which every executor runs: each document opened once (`OpenDocuments`), pages
claimed cluster-wide in batches before they are computed (`claims`), each page's results stored
in the shared tiers as soon as it is done, pages another worker claimed awaited from there.

>>> from tore_nb.incremental.stages import Pipeline, Stage
>>> run_items([], Pipeline([Stage("n", lambda ctx: 1)]), {})
[]
"""

from __future__ import annotations

import contextlib
import logging
import time
import traceback
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .caches import refreshing
from .claims import Claims, claim_key
from .documents import PDFIUM_LOCK, Page
from .shared import result_tiers
from .stages import DocumentHandle, PageContext, Pipeline, StageEntry

if TYPE_CHECKING:
    from ..tiered import MultiLevelCache

log = logging.getLogger("tore_nb.incremental")

#: seconds a worker waits for pages another worker claimed before computing them itself
MAX_WAIT = 600.0
#: pages claimed at once: one command claims them, one looks up what was stored meanwhile,
#: one releases them
CLAIM_BATCH = 8

__all__ = [
    "OpenDocuments",
    "StageOutcome",
    "WorkItem",
    "brief",
    "describe",
    "known_values",
    "run_items",
    "slot",
    "store_outcomes",
]


@dataclass(frozen=True, slots=True)
class WorkItem:
    """A page of a document and the stages still to compute for it."""

    document_id: str
    page: Page
    stages: tuple[str, ...]
    known: Mapping[str, Any] = field(default_factory=dict)
    # a forced run: second-level caches (OCR, embeddings) and shared tiers are not read
    force: bool = False


@dataclass(frozen=True, slots=True)
class StageOutcome:
    """The result of one stage on one page: a value, or the error that stopped it.

    `source` is "computed", or the shared tier a worker found the result in; `seconds` the
    time computing it took in this run, `cost` the time it took whenever it was computed.
    """

    document_id: str
    page_index: int
    identity: str
    stage: str
    value: Any = None
    error: str | None = None
    seconds: float = 0.0
    source: str = "computed"
    attempts: int = 1
    cost: float = 0.0
    # computed while another worker held its claim (this one's lapsed): done twice
    duplicate: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


class OpenDocuments:
    """The documents of a run, each opened once (pdfium, and pdfplumber when a stage asks) and
    shared by every page and stage that needs it; at most `keep` stay open, the least recently
    used closed first (pages come grouped by document).

    >>> with OpenDocuments({}, None) as docs:
    ...     docs.keep
    4
    """

    def __init__(
        self, sources: Mapping[str, str | bytes], cache: MultiLevelCache | None, keep: int = 4
    ) -> None:
        self.sources = sources
        self.cache = cache
        self.keep = keep
        self._open: dict[str, DocumentHandle] = {}

    def __getitem__(self, document_id: str) -> DocumentHandle:
        handle = self._open.pop(document_id, None)
        if handle is None:
            handle = DocumentHandle(
                self.sources[document_id], document_id=document_id, cache=self.cache
            )
            while len(self._open) >= self.keep:
                with PDFIUM_LOCK:
                    self._open.pop(next(iter(self._open))).close()
        self._open[document_id] = handle  # the most recently used last
        return handle

    def close(self) -> None:
        with PDFIUM_LOCK:
            for handle in self._open.values():
                handle.close()
            self._open.clear()

    def __enter__(self) -> OpenDocuments:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_items(
    items: Sequence[WorkItem],
    pipeline: Pipeline,
    sources: Mapping[str, str | bytes],
    cache: MultiLevelCache | None = None,
    shared_tiers: Sequence[str] = (),
    *,
    recheck: bool = True,
    documents: OpenDocuments | None = None,
    on_page: Callable[[], None] | None = None,
) -> list[StageOutcome]:
    """Compute the stages of `items`, opening each document once (or taking it from
    `documents`, which the caller keeps open across calls). Used by every executor.

    With `shared_tiers` (Redis, S3) pages are claimed cluster-wide, `CLAIM_BATCH` at a time,
    before they are computed (see `claims`); each page's new results are written there as soon
    as it is done (a lost worker loses only the batch in flight), and pages another worker has
    claimed are awaited and taken from there, or taken over when their holder dies. Results
    another worker stored meanwhile are taken instead of computed: with claims, a batch is
    looked up once claimed; without, all of `items` up front (unless `recheck` is False).
    `on_page` is called as each page is done.
    """
    found: dict[str, tuple[str, Any, float]] = {}
    claims = Claims(cache, shared_tiers) if cache is not None and shared_tiers else None

    def fetch(todo: Iterable[WorkItem]) -> None:
        """Take what other workers stored meanwhile for `todo` into `found`."""
        assert cache is not None
        keys = [pipeline.key(s, it.page.identity) for it in todo if not it.force for s in it.stages]
        if keys:
            got = cache.fetch_many(keys, tiers=result_tiers(cache, shared_tiers))
            found.update({k: (h.tier, *pipeline.unpack(h.value)) for k, h in got.items()})

    if claims is not None and recheck and not claims.active:
        fetch(items)  # with claims, each batch is looked up once claimed (below)
    by_doc: dict[str, list[WorkItem]] = defaultdict(list)
    for it in items:
        by_doc[it.document_id].append(it)
    out: list[StageOutcome] = []
    waiting: list[tuple[WorkItem, str]] = []
    with contextlib.ExitStack() as stack:
        docs = documents
        if docs is None:
            docs = stack.enter_context(OpenDocuments(sources, cache))

        def compute(batch: Sequence[WorkItem], attempt: int = 1, claim: bool = True) -> None:
            # claimed together (one command), stored page by page, released together
            keys: dict[int, str] = {}
            held: set[str] = set()
            if claim and claims is not None and claims.active:
                for n, it in enumerate(batch):
                    need = any(pipeline.key(s, it.page.identity) not in found for s in it.stages)
                    if need and not it.force:
                        keys[n] = claim_key(pipeline, it.page.identity, it.stages)
                held = claims.take(list(keys.values())) if keys else set()
                if held:
                    # after claiming: a holder that released these pages had stored them
                    fetch(batch[n] for n, k in keys.items() if k in held)
            pages: list[tuple[str | None, list[StageOutcome]]] = []
            lost: set[str] = set()
            try:
                for n, it in enumerate(batch):
                    key = keys.get(n)
                    if key is not None and key not in held:
                        waiting.append((it, key))  # another worker computes it: awaited below
                        continue
                    with PDFIUM_LOCK:
                        page = _run_page(docs[it.document_id], it, pipeline, found)
                    if cache is not None and shared_tiers:
                        fresh = [o for o in page if o.source == "computed"]
                        store_outcomes(cache, pipeline, fresh, shared_tiers)
                    pages.append((key, page))
                    if on_page is not None:
                        on_page()
            finally:
                if claims is not None and held:
                    lost = claims.done(held)
            for key, page in pages:
                # done twice: its claim was lost meanwhile, or it was computed while another
                # worker still held it; a page taken over from a dead worker is a second attempt
                twice = not claim or key in lost
                if twice or attempt > 1:
                    page = [
                        replace(o, duplicate=twice, attempts=attempt)
                        if o.source == "computed"
                        else o
                        for o in page
                    ]
                out.extend(page)

        try:
            ordered = [it for doc_items in by_doc.values() for it in doc_items]
            for i in range(0, len(ordered), CLAIM_BATCH):
                compute(ordered[i : i + CLAIM_BATCH])
            if waiting:
                assert cache is not None and claims is not None
                _await_others(waiting, pipeline, cache, shared_tiers, claims, compute, out, on_page)
        finally:
            if claims is not None:
                claims.close()
    return out


def _await_others(
    waiting: list[tuple[WorkItem, str]],
    pipeline: Pipeline,
    cache: MultiLevelCache,
    shared_tiers: Sequence[str],
    claims: Claims,
    compute: Callable[[Sequence[WorkItem], int, bool], None],
    out: list[StageOutcome],
    on_page: Callable[[], None] | None,
) -> None:
    """Take the results of pages other workers claimed as they arrive in the shared tiers;
    compute what is missing of a page whose claim lapsed (its holder died or failed)."""
    log.info("waiting for %d page(s) that other workers are computing", len(waiting))
    tiers = result_tiers(cache, shared_tiers)
    delay = 0.05
    # a holder that renews its claims but never finishes (a stage stuck) must not hold this
    # run forever: past this, its pages are computed here too, and counted as duplicates
    give_up = time.monotonic() + MAX_WAIT
    while waiting:
        keys = [pipeline.key(s, it.page.identity) for it, _ in waiting for s in it.stages]
        hits = cache.fetch_many(keys, tiers=tiers)
        still: list[tuple[WorkItem, str]] = []
        for it, key in waiting:
            got = {s: hits.get(pipeline.key(s, it.page.identity)) for s in it.stages}
            if all(h is not None for h in got.values()):
                for s, h in got.items():
                    assert h is not None
                    value, cost = pipeline.unpack(h.value)
                    common = (it.document_id, it.page.index, it.page.identity, s)
                    out.append(StageOutcome(*common, value=value, source=h.tier, cost=cost))
                if on_page is not None:
                    on_page()
            else:
                still.append((it, key))
        stuck = time.monotonic() > give_up
        if stuck:
            log.warning("gave up waiting for %d page(s) claimed elsewhere", len(still))
            lapsed = {k for _, k in still}
        else:
            lapsed = set(claims.lapsed([k for _, k in still])) if still else set()
        waiting.clear()
        again: list[WorkItem] = []
        for it, key in still:
            if key not in lapsed:
                waiting.append((it, key))
                continue
            # its holder is gone: compute what is missing, with what it left as inputs
            known = dict(it.known)
            for s in it.stages:
                h = hits.get(pipeline.key(s, it.page.identity))
                if h is not None:
                    value, cost = pipeline.unpack(h.value)
                    known[s] = value
                    common = (it.document_id, it.page.index, it.page.identity, s)
                    out.append(StageOutcome(*common, value=value, source=h.tier, cost=cost))
            todo = tuple(s for s in it.stages if s not in known)
            again.append(WorkItem(it.document_id, it.page, todo, known, it.force))
        for i in range(0, len(again), CLAIM_BATCH):
            compute(again[i : i + CLAIM_BATCH], 2, not stuck)
        if waiting:
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


def _run_page(
    handle: DocumentHandle,
    item: WorkItem,
    pipeline: Pipeline,
    found: Mapping[str, tuple[str, Any, float]],
) -> list[StageOutcome]:
    ctx = PageContext(handle, item.page, item.known)
    failed: dict[str, str] = {}
    out = []
    try:
        for name in item.stages:
            stage = pipeline.by_name[name]
            common = (item.document_id, item.page.index, item.page.identity, name)
            # a requirement that is neither known nor computed here failed upstream (maybe in
            # another Ray task): running without it would cache a wrong value
            bad = [r for r in stage.requires if r in failed or r not in ctx.results]
            if bad:
                failed[name] = f"required stage {bad[0]!r} failed"
                out.append(StageOutcome(*common, error=failed[name]))
                continue
            hit = None if item.force else found.get(pipeline.key(name, item.page.identity))
            if hit is not None:
                ctx.results[name] = hit[1]
                out.append(StageOutcome(*common, value=hit[1], source=hit[0], cost=hit[2]))
                continue
            t0 = time.perf_counter()
            try:
                with refreshing(item.force):
                    value = stage(ctx)
            except Exception as exc:  # a failing page must not stop the others
                failed[name] = describe(exc)
                out.append(
                    StageOutcome(*common, error=failed[name], seconds=time.perf_counter() - t0)
                )
                continue
            ctx.results[name] = value
            took = time.perf_counter() - t0
            out.append(StageOutcome(*common, value=value, seconds=took, cost=took))
    finally:
        ctx.close()
    return out


def describe(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" ({tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno})" if tb else ""
    return f"{type(exc).__name__}: {exc}{where}"


def brief(exc: BaseException) -> str:
    return describe(exc).splitlines()[0][:500]


def slot(o: StageOutcome) -> tuple[str, int, str]:
    return (o.document_id, o.page_index, o.stage)


def store_outcomes(
    cache: MultiLevelCache,
    pipeline: Pipeline,
    outcomes: Iterable[StageOutcome],
    tiers: Sequence[str] | None,
) -> None:
    """Store the successful outcomes among `tiers`, routed by size like every entry (a small
    result never goes to S3), each with its cost (`StageEntry`): one `set_many` for each TTL
    (`Pipeline.ttl`)."""
    by_ttl: dict[float | None, dict[str, Any]] = defaultdict(dict)
    for o in outcomes:
        if o.ok:
            entry = StageEntry(o.value, round(o.cost, 6))
            by_ttl[pipeline.ttl(o.stage)][pipeline.key(o.stage, o.identity)] = entry
    for ttl, batch in by_ttl.items():
        cache.set_many(batch, ttl=ttl, within=tiers)


def known_values(outcomes: Iterable[StageOutcome]) -> dict[tuple[str, int], dict[str, Any]]:
    """(document, page index) -> the values of its stages that succeeded."""
    known: dict[tuple[str, int], dict[str, Any]] = defaultdict(dict)
    for o in outcomes:
        if o.ok:
            known[(o.document_id, o.page_index)][o.stage] = o.value
    return known
