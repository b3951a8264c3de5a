"""Stages: functions of a page, fingerprinted by their code and parameters.

A page result is keyed by the page's content identity and the stage's fingerprint, never by the
page number: `page:{stage}:{fingerprint}:{identity}`. A stage that reads another stage's result
names it in `requires`; its fingerprint then covers the stages it depends on, so changing the
text extractor also recomputes the embeddings made from its text.

>>> @stage(params={"lower": True})
... def words(ctx, lower):
...     text = ctx.text()
...     return len((text.lower() if lower else text).split())
>>> words.name, len(words.fingerprint)
('words', 32)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, overload

from ..fingerprint import fingerprint
from ..keys import hash_value, qualname
from .documents import DocumentError, Page, open_pdfium

if TYPE_CHECKING:
    import pypdfium2
    from PIL import Image

    from ..tiered import MultiLevelCache

__all__ = [
    "DocumentHandle",
    "PageContext",
    "Pipeline",
    "Stage",
    "StageEntry",
    "code_fingerprint",
    "stage",
]

StageFn = Callable[..., Any]
log = logging.getLogger(__name__)


def code_fingerprint(fn: Any) -> str:
    """The code fingerprint of a stage's callable: `tore_nb.fingerprint.fingerprint`, the one
    `@cached` and `%%tcache` use (its source normalised through `ast`, its defaults and closure,
    the user helpers it calls; a callable object's whole class and its state).

    >>> code_fingerprint(lambda x: x + 1) == code_fingerprint(lambda x: x + 1)
    True
    """
    return fingerprint(fn)


def _safe(value: Any) -> str:
    """A stand-in for `value` in a digest: its content digest, else its type's name."""
    try:
        return hash_value(value)
    except (TypeError, ValueError, RecursionError):
        return qualname(type(value))


@dataclass(frozen=True, eq=False)
class Stage:
    """A named function of a page with its parameters, resources and cache lifetime.

    `fn(ctx, **params)` receives a `PageContext`. `requires` names earlier stages whose results
    it reads from `ctx.results`. `num_gpus` > 0 makes Ray schedule it on a GPU. With
    `skip_reason`, a None result means the stage had nothing to do on the page, and reports say
    `skipped (<skip_reason>)` (OCR on a page with a text layer: "text layer").

    >>> s = Stage("chars", lambda ctx: len(ctx.text()))
    >>> s.key("abc").startswith("page:chars:")
    True
    """

    name: str
    fn: StageFn
    params: Mapping[str, Any] = field(default_factory=dict)
    version: str = "1"
    requires: tuple[str, ...] = ()
    ttl: float | None = None
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    fingerprint: str = field(default="", compare=False)
    skip_reason: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not self.name or ":" in self.name:
            raise ValueError(f"a stage name must be non-empty and without ':': {self.name!r}")
        object.__setattr__(self, "params", dict(self.params))
        object.__setattr__(self, "requires", tuple(self.requires))
        if not self.fingerprint:
            fp = hash_value(
                (self.name, self.version, fingerprint(self.fn), _safe(dict(self.params)))
            )
            object.__setattr__(self, "fingerprint", fp)

    def __call__(self, ctx: PageContext) -> Any:
        return self.fn(ctx, **self.params)

    def key(self, identity: str, fingerprint: str | None = None) -> str:
        """The cache key of this stage's result for a page identity."""
        return f"page:{self.name}:{(fingerprint or self.fingerprint)[:16]}:{identity}"

    def with_params(self, **params: Any) -> Stage:
        """A copy with some parameters changed (and so a new fingerprint).

        >>> Stage("s", lambda ctx, n=1: n).with_params(n=2).params
        {'n': 2}
        """
        return replace(self, params={**self.params, **params}, fingerprint="")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Stage) and (other.name, other.fingerprint) == (
            self.name,
            self.fingerprint,
        )

    def __hash__(self) -> int:
        return hash((self.name, self.fingerprint))

    def __repr__(self) -> str:
        return f"Stage({self.name!r}, fingerprint={self.fingerprint[:12]!r})"

    def __reduce__(self) -> Any:
        return (
            Stage,
            (
                self.name,
                self.fn,
                dict(self.params),
                self.version,
                self.requires,
                self.ttl,
                self.num_cpus,
                self.num_gpus,
                self.fingerprint,
                self.skip_reason,
            ),
        )


@overload
def stage(fn: StageFn, /) -> Stage: ...
@overload
def stage(
    fn: None = None,
    /,
    *,
    name: str | None = None,
    params: Mapping[str, Any] | None = None,
    version: str = "1",
    requires: Sequence[str] = (),
    ttl: float | None = None,
    num_cpus: float = 1.0,
    num_gpus: float = 0.0,
) -> Callable[[StageFn], Stage]: ...
def stage(
    fn: StageFn | None = None,
    /,
    *,
    name: str | None = None,
    params: Mapping[str, Any] | None = None,
    version: str = "1",
    requires: Sequence[str] = (),
    ttl: float | None = None,
    num_cpus: float = 1.0,
    num_gpus: float = 0.0,
) -> Stage | Callable[[StageFn], Stage]:
    """Make a `Stage` from a function of a `PageContext`, as `@stage` or `@stage(...)`.

    >>> @stage
    ... def n_chars(ctx):
    ...     return len(ctx.text())
    >>> n_chars.name
    'n_chars'
    """

    def wrap(f: StageFn) -> Stage:
        return Stage(
            name or f.__name__,
            f,
            dict(params or {}),
            version,
            tuple(requires),
            ttl,
            num_cpus,
            num_gpus,
        )

    return wrap(fn) if fn is not None else wrap


@dataclass(frozen=True, slots=True)
class StageEntry:
    """A stage result as the cache keeps it: the value and the seconds computing it took, so a
    later run served from the cache can say how much time that saved.

    >>> Pipeline.unpack(StageEntry("text", 0.25)), Pipeline.unpack("an older, bare entry")
    (('text', 0.25), ('an older, bare entry', 0.0))
    """

    value: Any
    seconds: float


class Pipeline:
    """Stages in order, with their effective fingerprints (own + required stages').

    `default_ttl` is how long a result of a stage without a `ttl` of its own is kept; every
    tier a result is stored in, by the processor or by a worker, keeps it that long.

    >>> a = Stage("a", lambda ctx: 1); b = Stage("b", lambda ctx: 2, requires=("a",), ttl=60)
    >>> p = Pipeline([a, b], default_ttl=3600); p.names, p.ttl("a"), p.ttl("b")
    (('a', 'b'), 3600, 60)
    """

    def __init__(self, stages: Iterable[Stage], default_ttl: float | None = None) -> None:
        self.stages: tuple[Stage, ...] = tuple(stages)
        self.default_ttl = default_ttl
        if not self.stages:
            raise ValueError("a pipeline needs at least one stage")
        self.by_name: dict[str, Stage] = {}
        self.fingerprints: dict[str, str] = {}
        for s in self.stages:
            if s.name in self.by_name:
                raise ValueError(f"two stages are named {s.name!r}")
            missing = [r for r in s.requires if r not in self.by_name]
            if missing:
                raise ValueError(f"stage {s.name!r} requires {missing}, which must come earlier")
            deps = tuple(self.fingerprints[r] for r in s.requires)
            self.fingerprints[s.name] = hash_value((s.fingerprint, deps)) if deps else s.fingerprint
            self.by_name[s.name] = s
        self.fingerprint: str = hash_value(tuple(self.fingerprints[s.name] for s in self.stages))
        self._names = tuple(s.name for s in self.stages)

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    def key(self, stage_name: str, identity: str) -> str:
        """Cache key of a stage's result for a page identity."""
        return self.by_name[stage_name].key(identity, self.fingerprints[stage_name])

    @staticmethod
    def unpack(stored: Any) -> tuple[Any, float]:
        """(value, seconds it took to compute) of a stored stage result (`StageEntry`); an
        entry stored bare by an earlier release gives 0 seconds."""
        if isinstance(stored, StageEntry):
            return stored.value, stored.seconds
        return stored, 0.0

    def skipped(self, stage_name: str, value: Any) -> str | None:
        """`skipped (<reason>)` when the stage's result says it had nothing to do, else None."""
        reason = self.by_name[stage_name].skip_reason
        return f"skipped ({reason})" if reason and value is None else None

    def ttl(self, stage_name: str) -> float | None:
        """How long a result of the stage is kept: its own `ttl`, else the pipeline's default."""
        ttl = self.by_name[stage_name].ttl
        return self.default_ttl if ttl is None else ttl

    def closure(self, names: Iterable[str]) -> tuple[str, ...]:
        """The named stages plus everything they require, in pipeline order."""
        wanted = set(names)
        for s in reversed(self.stages):
            if s.name in wanted:
                wanted.update(s.requires)
        return tuple(s.name for s in self.stages if s.name in wanted)

    def __reduce__(self) -> Any:
        return (Pipeline, (self.stages, self.default_ttl))

    def __repr__(self) -> str:
        return f"Pipeline({list(self.names)})"


class DocumentHandle:
    """A document opened once for a batch of pages: pypdfium2 (and pdfplumber on demand).

    >>> h = DocumentHandle("data/pdfs/dmca.pdf")  # doctest: +SKIP
    >>> len(h.pdfium); h.close()  # doctest: +SKIP
    18
    """

    def __init__(
        self,
        source: str | bytes,
        *,
        path: str | None = None,
        document_id: str = "",
        cache: MultiLevelCache | None = None,
    ) -> None:
        self.source = source
        self.path = path if path is not None else (source if isinstance(source, str) else "")
        self.document_id = document_id
        self.cache = cache
        self._pdfium: pypdfium2.PdfDocument | None = None
        self._plumber: Any = None
        self._plumber_pages: list[Any] | None = None

    @property
    def pdfium(self) -> pypdfium2.PdfDocument:
        if self._pdfium is None:
            self._pdfium = open_pdfium(self.source)
        return self._pdfium

    @property
    def plumber(self) -> Any:
        """The document opened with pdfplumber (tables); imported and opened on first use."""
        if self._plumber is None:
            import io

            import pdfplumber

            src = io.BytesIO(self.source) if isinstance(self.source, bytes) else self.source
            self._plumber = pdfplumber.open(src)
        return self._plumber

    def plumber_page(self, index: int) -> Any:
        """Page `index` (pdfium's numbering, the one every stage uses) as a pdfplumber Page.

        pdfplumber (pdfminer) lists a page object used twice once, where pdfium and pypdf
        list it twice: by position, every page after the duplicate would get the next page's
        tables, stored under the wrong identities. So when the counts differ, pages are matched
        by page object number; a page that cannot be matched fails rather than guessing.
        """
        plumber = self.plumber
        if self._plumber_pages is None:
            self._plumber_pages = (
                list(plumber.pages)
                if len(plumber.pages) == len(self.pdfium)
                else self._pages_by_object(plumber)
            )
        return self._plumber_pages[index]

    def _pages_by_object(self, plumber: Any) -> list[Any]:
        import io

        import pypdf

        src = io.BytesIO(self.source) if isinstance(self.source, bytes) else self.source
        try:
            refs = [p.indirect_reference for p in pypdf.PdfReader(src).pages]
            ids = [r.idnum if r is not None else -1 for r in refs]
        except Exception as exc:  # a file pypdf cannot list: no page can be matched
            ids = []
            log.debug("pages of %s not listed by pypdf: %s", self.path, exc)
        by_id = {p.page_obj.pageid: p for p in plumber.pages}
        if len(ids) != len(self.pdfium) or not all(i in by_id for i in ids):
            raise DocumentError(
                f"{self.path or 'the document'}: pdfplumber reads {len(plumber.pages)} pages "
                f"where pdfium reads {len(self.pdfium)}, and they cannot be matched by page "
                "object; its tables are not computed"
            )
        return [by_id[i] for i in ids]

    def close(self) -> None:
        if self._plumber is not None:
            self._plumber.close()
            self._plumber = None
            self._plumber_pages = None
        if self._pdfium is not None:
            self._pdfium.close()
            self._pdfium = None

    def __enter__(self) -> DocumentHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PageContext:
    """What a stage sees: the page record, lazy pypdfium2 access, renders, required results.

    >>> ctx = PageContext(DocumentHandle("data/pdfs/dmca.pdf"),
    ...                   Page(0, "id", 612.0, 792.0, 0))  # doctest: +SKIP
    >>> ctx.text()[:10]  # doctest: +SKIP
    'Executive '
    """

    def __init__(
        self, handle: DocumentHandle, page: Page, results: Mapping[str, Any] | None = None
    ) -> None:
        self.handle = handle
        self.page = page
        self.results: dict[str, Any] = dict(results or {})
        self._pdfium_page: pypdfium2.PdfPage | None = None
        self._textpage: pypdfium2.PdfTextPage | None = None
        self._text: str | None = None
        self._renders: dict[tuple[float, bool], Image.Image] = {}

    @property
    def cache(self) -> MultiLevelCache | None:
        """The cache this process may use for second-level caches (OCR, embeddings)."""
        return self.handle.cache

    @property
    def pdfium_page(self) -> pypdfium2.PdfPage:
        if self._pdfium_page is None:
            self._pdfium_page = self.handle.pdfium[self.page.index]
        return self._pdfium_page

    @property
    def textpage(self) -> pypdfium2.PdfTextPage:
        if self._textpage is None:
            self._textpage = self.pdfium_page.get_textpage()
        return self._textpage

    def text(self) -> str:
        """The page's text layer as pypdfium2 extracts it (empty for a scan)."""
        if self._text is None:
            self._text = self.textpage.get_text_range().replace("\r\n", "\n").replace("\r", "\n")
        return self._text

    def render(self, dpi: float = 150.0, *, grayscale: bool = False) -> Image.Image:
        """The page rendered with pypdfium2 as a PIL image (rotation applied)."""
        key = (dpi, grayscale)
        img = self._renders.get(key)
        if img is None:
            bitmap = self.pdfium_page.render(scale=dpi / 72.0, grayscale=grayscale)
            img = bitmap.to_pil()
            self._renders[key] = img
        return img

    @property
    def plumber_page(self) -> Any:
        """The page as a pdfplumber Page (for tables)."""
        return self.handle.plumber_page(self.page.index)

    def close(self) -> None:
        if self._textpage is not None:
            self._textpage.close()
            self._textpage = None
        if self._pdfium_page is not None:
            self._pdfium_page.close()
            self._pdfium_page = None
        self._renders.clear()
