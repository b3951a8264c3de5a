"""The real default stages: text and layout (pypdfium2), OCR for pages without a text layer
(tesseract), tables (pdfplumber) and embeddings (a hashing embedder by default).

>>> [s.name for s in default_stages()]
['text', 'ocr', 'tables']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, NamedTuple

from .caches import DAY, Embedder, EmbeddingCache, HashingEmbedder, OCRCache
from .stages import PageContext, Stage

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

__all__ = [
    "OCRResult",
    "OCRWord",
    "PageText",
    "Table",
    "TextLine",
    "default_stages",
    "embedding_stage",
    "ocr_stage",
    "page_text",
    "tables_stage",
    "text_stage",
]

BBox = tuple[float, float, float, float]
MAX_OCR_PIXELS = 40_000_000


class TextLine(NamedTuple):
    """A line of text and its box in PDF points (x0, y0, x1, y1; origin bottom left).

    A named tuple: pages have hundreds of lines, and tuples pickle several times faster.
    """

    text: str
    bbox: BBox


@dataclass(frozen=True, slots=True)
class PageText:
    """A page's text layer and its lines with their boxes."""

    text: str
    lines: tuple[TextLine, ...]
    width: float
    height: float

    @property
    def has_text(self) -> bool:
        return bool(self.text.strip())


class OCRWord(NamedTuple):
    """A recognised word, its confidence (0-100, -1 unknown) and its box in pixels."""

    text: str
    confidence: float
    bbox: tuple[int, int, int, int]  # pixels: left, top, width, height


@dataclass(frozen=True, slots=True)
class OCRResult:
    """Text recognised on a rendered page, its words with confidences, and how it was made."""

    text: str
    words: tuple[OCRWord, ...]
    engine: str
    dpi: float
    language: str

    @property
    def mean_confidence(self) -> float:
        confs = [w.confidence for w in self.words if w.confidence >= 0]
        return sum(confs) / len(confs) if confs else 0.0


@dataclass(frozen=True, slots=True)
class Table:
    """A table found by pdfplumber: rows of cells (None for empty cells) and its box."""

    rows: tuple[tuple[str | None, ...], ...]
    bbox: BBox

    def to_frame(self) -> Any:
        """The table as a pandas DataFrame, the first row as header."""
        import pandas as pd

        if not self.rows:
            return pd.DataFrame()
        return pd.DataFrame(list(self.rows[1:]), columns=list(self.rows[0]))


# -- text ---------------------------------------------------------------------------------------
def extract_text(ctx: PageContext) -> PageText:
    """Text and line boxes of a page with pypdfium2 (about 3 ms a page)."""
    tp = ctx.textpage
    raw = tp.get_text_range()
    lines: list[TextLine] = []
    pos = 0
    for line in raw.split("\r\n"):
        stripped = line.strip()
        if stripped:
            a = tp.get_charbox(pos)
            b = tp.get_charbox(pos + len(line) - 1)
            bbox = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
            lines.append(TextLine(line, tuple(round(v, 2) for v in bbox)))  # type: ignore[arg-type]
        pos += len(line) + 2
    text = raw.replace("\r\n", "\n")
    return PageText(text, tuple(lines), ctx.page.width, ctx.page.height)


def text_stage() -> Stage:
    """Text and layout with pypdfium2."""
    import pypdfium2

    return Stage("text", extract_text, version=f"1/pdfium-{pypdfium2.version.PDFIUM_INFO}")


# -- OCR ----------------------------------------------------------------------------------------
@cache
def tesseract_version() -> str:
    """The tesseract binary's version; raises `ExtraMissing` when it cannot be run."""
    from ..errors import ExtraMissing

    try:
        import pytesseract

        return str(pytesseract.get_tesseract_version())
    except ImportError as exc:
        raise ExtraMissing("pytesseract", "ocr") from exc
    except Exception as exc:  # TesseractNotFoundError and friends
        raise ExtraMissing("the tesseract binary (apt-get install tesseract-ocr)", "ocr") from exc


def _preprocess(image: Image.Image, steps: Sequence[str]) -> Image.Image:
    from PIL import ImageOps

    for step in steps:
        if step == "grayscale":
            image = image.convert("L")
        elif step == "autocontrast":
            image = ImageOps.autocontrast(image.convert("L"))
        elif step == "binarize":
            image = image.convert("L").point(lambda v: 255 if v > 160 else 0)
        else:
            raise ValueError(f"unknown OCR preprocessing step {step!r}")
    return image


def run_ocr(
    ctx: PageContext,
    *,
    dpi: float = 300.0,
    language: str = "eng",
    preprocessing: Sequence[str] = ("grayscale",),
    config: str = "",
    min_chars: int = 1,
    always: bool = False,
) -> OCRResult | None:
    """OCR a page that has no text layer (None when it has one, unless `always`)."""
    text = ctx.results.get("text")
    if (
        not always
        and text is not None
        and len(str(getattr(text, "text", text)).strip()) >= min_chars
    ):
        return None
    pixels = ctx.page.width * ctx.page.height * (dpi / 72.0) ** 2
    if pixels > MAX_OCR_PIXELS:  # a huge page: lower the resolution rather than run out of memory
        dpi = dpi * (MAX_OCR_PIXELS / pixels) ** 0.5
    image = ctx.render(dpi, grayscale=True)
    engine = f"tesseract-{tesseract_version()}-{language}-{config or 'default'}"

    def recognise() -> OCRResult:
        return _tesseract(_preprocess(image, preprocessing), engine, dpi, language, config)

    if ctx.cache is not None:
        return OCRCache(ctx.cache).get_or_ocr(image, engine, preprocessing, recognise)
    return recognise()


def _tesseract(
    image: Image.Image, engine: str, dpi: float, language: str, config: str
) -> OCRResult:
    import pytesseract

    data = pytesseract.image_to_data(
        image, lang=language, config=config, output_type=pytesseract.Output.DICT
    )
    words: list[OCRWord] = []
    lines: dict[tuple[int, int, int], list[str]] = {}
    for i, word in enumerate(data["text"]):
        if not word.strip():
            continue
        conf = float(data["conf"][i])
        words.append(
            OCRWord(
                word, conf, (data["left"][i], data["top"][i], data["width"][i], data["height"][i])
            )
        )
        key = (data["block_num"][i], data["par_num"][i], data["line_num"][i])
        lines.setdefault(key, []).append(word)
    out: list[str] = []
    last_par: tuple[int, int] | None = None
    for (block, par, _), ws in lines.items():
        if last_par is not None and (block, par) != last_par:
            out.append("")
        out.append(" ".join(ws))
        last_par = (block, par)
    return OCRResult("\n".join(out), tuple(words), engine, dpi, language)


def ocr_stage(
    *,
    dpi: float = 300.0,
    language: str = "eng",
    preprocessing: Sequence[str] = ("grayscale",),
    config: str = "",
    always: bool = False,
) -> Stage:
    """OCR with tesseract, taken automatically for pages without a text layer."""
    return Stage(
        "ocr",
        run_ocr,
        {
            "dpi": dpi,
            "language": language,
            "preprocessing": tuple(preprocessing),
            "config": config,
            "always": always,
        },
        version=f"1/{_tesseract_tag()}",
        requires=("text",),
        ttl=7 * DAY,
        skip_reason="text layer",
    )


def _tesseract_tag() -> str:
    try:
        return f"tesseract-{tesseract_version()}"
    except ImportError:
        return "tesseract-missing"


# -- tables -------------------------------------------------------------------------------------
def extract_tables(
    ctx: PageContext, *, settings: dict[str, Any] | None = None
) -> tuple[Table, ...]:
    """Tables of a page with pdfplumber's `find_tables`."""
    page = ctx.plumber_page
    found = page.find_tables(table_settings=settings or {})
    height = float(page.height)
    tables = []
    for t in found:
        rows = tuple(tuple(cell for cell in row) for row in t.extract())
        x0, top, x1, bottom = (float(v) for v in t.bbox)
        tables.append(Table(rows, (x0, height - bottom, x1, height - top)))
    return tuple(tables)


def tables_stage(settings: dict[str, Any] | None = None) -> Stage:
    """Tables with pdfplumber."""
    import pdfplumber

    return Stage(
        "tables",
        extract_tables,
        {"settings": dict(settings or {})},
        version=f"1/pdfplumber-{pdfplumber.__version__}",
        ttl=DAY,
    )


# -- embeddings ---------------------------------------------------------------------------------
def page_text(results: Mapping[str, Any]) -> str:
    """A page's text from its stage results: the text layer, or OCR where it has none."""
    text = results.get("text")
    content = str(getattr(text, "text", text) or "")
    if content.strip():
        return content
    return str(getattr(results.get("ocr"), "text", "") or "")


def embed_page(ctx: PageContext, *, embedder: Embedder) -> np.ndarray:
    """The embedding of the page's text (or its OCR text when it has no text layer)."""
    content = page_text(ctx.results)
    if ctx.cache is not None:
        return EmbeddingCache(ctx.cache).get_or_embed(content, embedder)
    return embedder.embed(content)


def embedding_stage(embedder: Embedder | None = None, *, num_gpus: float = 0.0) -> Stage:
    """Embeddings of each page's text; the hashing embedder unless another is given."""
    emb = embedder if embedder is not None else HashingEmbedder()
    return Stage(
        "embeddings",
        embed_page,
        {"embedder": emb},
        version=f"1/{emb.name}",
        requires=("text", "ocr"),
        ttl=30 * DAY,
        num_gpus=num_gpus,
    )


def default_stages(
    *, ocr: bool = True, tables: bool = True, embeddings: bool = False
) -> tuple[Stage, ...]:
    """text, ocr (pages without a text layer), tables; embeddings on request."""
    stages = [text_stage()]
    if ocr or embeddings:
        stages.append(ocr_stage())
    if tables:
        stages.append(tables_stage())
    if embeddings:
        stages.append(embedding_stage())
    return tuple(stages)
