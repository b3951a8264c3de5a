"""The package surface: light import, __all__, doctests of the core modules."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import subprocess
import sys

import pytest

import tore_nb

HEAVY = ("IPython", "ipywidgets", "ray", "pandas", "boto3", "redis", "botocore")


def test_import_is_light() -> None:
    code = (
        "import sys, tore_nb, tore_nb.tiered, tore_nb.config; "
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


#: The public faces, pinned: a name joins or leaves one of these lists on purpose, in review.
PUBLIC = {
    "tore_nb": [
        "CacheConfig",
        "CacheInvalidator",
        "CacheMetrics",
        "CacheWarmer",
        "CacheWarning",
        "ChangeDetector",
        "ConfigError",
        "ExtraMissing",
        "Hit",
        "IncrementalProcessor",
        "IntegrityError",
        "MultiLevelCache",
        "SerializationError",
        "TierUnavailable",
        "TierWriteError",
        "ToreError",
        "UnpicklableError",
        "cached",
        "generate_key",
        "get_cache",
        "hash_value",
        "load_ipython_extension",
        "unload_ipython_extension",
    ],
    "tore_nb.cells": [
        "CELL_FORMAT",
        "CacheWarning",
        "CellAnalysis",
        "CellEntry",
        "CellError",
        "CellKey",
        "CellOptions",
        "CellOutcome",
        "Dependency",
        "Explanation",
        "KeyPart",
        "Manifest",
        "Observation",
        "OutputEvent",
        "OutputRecorder",
        "StateProbe",
        "analyze_cell",
        "cell_key",
        "explain",
        "latest_parts",
        "register_probe",
        "replay",
        "run_cached_cell",
        "unregister_probe",
    ],
    "tore_nb.incremental": [
        "ChangeDetector",
        "ChangeSet",
        "Document",
        "DocumentError",
        "EmbeddingCache",
        "HashingEmbedder",
        "IncrementalProcessor",
        "Manifest",
        "OCRCache",
        "Page",
        "PageChange",
        "PageContext",
        "PageEvent",
        "PageResult",
        "ParsingCache",
        "Pipeline",
        "ProcessingResult",
        "RayExecutor",
        "RunResult",
        "SerialExecutor",
        "Stage",
        "TableExtractionCache",
        "TextProgress",
        "default_stages",
        "embedding_stage",
        "ocr_stage",
        "read_document",
        "stage",
        "tables_stage",
        "text_stage",
    ],
    "tore_nb.widgets": ["CacheDashboard", "ChangeReportView", "RunProgress", "show_dashboard"],
    "tore_nb.tiers": [
        "REGISTRY",
        "DiskTier",
        "MemoryTier",
        "NullTier",
        "Tier",
        "TierCapabilities",
        "TierSpec",
        "TierUsage",
        "build_tier",
        "build_tiers",
        "capabilities_of",
        "register_tier",
    ],
}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_public_names_are_pinned(module: str) -> None:
    face = importlib.import_module(module)
    assert sorted(face.__all__) == sorted(PUBLIC[module])
    for name in face.__all__:
        assert not name.startswith("_"), name
        assert getattr(face, name) is not None


def test_seed_names_stay_importable_outside_all() -> None:
    """The seed design's users look for these names; they are not the core API."""
    for name in (
        "CacheManager",
        "ParsingCache",
        "OCRCache",
        "TableExtractionCache",
        "EmbeddingCache",
    ):
        assert name not in tore_nb.__all__
        assert getattr(tore_nb, name) is not None
    assert tore_nb.CacheManager is tore_nb.MultiLevelCache
    with pytest.raises(AttributeError):
        tore_nb.nothing_here  # noqa: B018


def all_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(tore_nb.__path__, "tore_nb."))


@pytest.mark.parametrize("module", ["tore_nb", *all_modules()])
def test_doctests(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
