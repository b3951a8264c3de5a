"""Helpers the tests share (paths, the test secret, subprocess and IPython helpers): plain
functions, imported as `from tests.support import ...`. Fixtures live in conftest.py."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

import tore_nb

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
REPO = Path(__file__).resolve().parents[1]  # the checkout: tests/ is one level down
DATA = REPO / "data"  # sample PDFs the repo carries (provenance in data/*/MANIFEST.md)
SECRET = b"tore-nb-test-secret-0123456789abcdef"
SOURCE_ROOT = str(Path(tore_nb.__file__).resolve().parents[1])  # subprocesses import this one


def outputs_under_hash_seeds(code: str, seeds: Iterable[str], *args: str) -> set[str]:
    """What `python -c code *args` prints under each PYTHONHASHSEED: one item when the output
    does not depend on the seed."""
    return {
        subprocess.run(
            [sys.executable, "-c", code, *args],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin", "PYTHONPATH": SOURCE_ROOT},
        ).stdout
        for seed in seeds
    }


def write_module(folder: Path, name: str, source: str) -> Any:
    """Write `name.py` into `folder` and import it (again, if it was imported before)."""
    (folder / f"{name}.py").write_text(textwrap.dedent(source))
    importlib.invalidate_caches()
    if name in sys.modules:
        return importlib.reload(sys.modules[name])
    return importlib.import_module(name)


def sample_pdf(name: str) -> Path:
    """A sample PDF of data/pdfs (fails under CI, skips elsewhere, when it is not there)."""
    path = DATA / "pdfs" / name
    if not path.is_file():
        missing(f"sample data {path}")
    return path


def missing(what: str) -> None:
    """Fail under CI, skip on a developer machine."""
    if CI:
        pytest.fail(f"{what} is required with CI=true", pytrace=False)
    pytest.skip(f"{what} not available")


# -- IPython shells (the `ip` fixture) ------------------------------------------------------------
def run(ip: Any, code: str) -> Any:
    """Run a cell that must succeed; its result."""
    result = ip.run_cell(code)
    assert result.success, result.error_in_exec or result.error_before_exec
    return result.result


def out(capsys: pytest.CaptureFixture[str]) -> list[str]:
    """The lines printed since the last call."""
    return capsys.readouterr().out.splitlines()


def status_lines(lines: list[str]) -> list[str]:
    """The hit lines (verbose: one under every hit)."""
    return [line for line in lines if line.startswith("tcache:") and " restored from " in line]
