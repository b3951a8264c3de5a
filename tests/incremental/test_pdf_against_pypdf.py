"""The fast reader (own cross-reference and page-tree reading) against pypdf's reading."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import DATA
from tore_nb.incremental.documents import DocumentError, page_identities
from tore_nb.incremental.pdf import Fallback, PageHasher, RawObjects, read_xref

ALL = sorted(p for d in ("pdfs", "acceptance") for p in (DATA / d).glob("*.pdf"))
PLAIN = [p for p in ALL if b"/Encrypt" not in p.read_bytes()]
pytestmark = pytest.mark.skipif(not ALL, reason="shared PDFs not present")


def pypdf_pages(data: bytes, raw: bool) -> list[tuple[str, float, float, int]]:
    import pypdf

    reader = pypdf.PdfReader(io.BytesIO(data))
    hasher = PageHasher(RawObjects(data, reader, raw=raw))
    return [hasher.page(p) for p in reader.pages]


@pytest.mark.parametrize("path", PLAIN, ids=lambda p: p.name)
def test_fast_reader_agrees_with_pypdf(path: Path) -> None:
    data = path.read_bytes()
    raw = RawObjects(data)  # no Fallback: every shared unencrypted file is plain enough
    hasher = PageHasher(raw)
    fast = [hasher.page(p) for p in raw.pages()]
    assert not raw.pypdf_opened
    assert fast == pypdf_pages(data, raw=True) == pypdf_pages(data, raw=False)
    got = page_identities(data)
    assert [(p.identity, p.width, p.height, p.rotation) for p in got] == fast


@pytest.mark.parametrize("path", PLAIN, ids=lambda p: p.name)
def test_xref_agrees_with_pypdf(path: Path) -> None:
    import pypdf

    data = path.read_bytes()
    reader = pypdf.PdfReader(io.BytesIO(data))
    offsets, in_streams, trailer = read_xref(data)
    assert offsets == {(n, g): off for g, t in reader.xref.items() for n, off in t.items()}
    assert in_streams == dict(reader.xref_objStm)
    assert "/Root" in trailer


def test_encrypted_and_damaged_files_go_to_pypdf() -> None:
    encrypted = [p for p in ALL if p not in PLAIN]
    for path in encrypted:
        with pytest.raises(Fallback):
            RawObjects(path.read_bytes())
    data = (DATA / "pdfs" / "us-001.pdf").read_bytes()
    at = data.rfind(b"startxref")
    broken = data[:at] + b"startxref\n12\n%%EOF\n"  # a wrong pointer pypdf repairs
    with pytest.raises(Fallback):
        RawObjects(broken)
    try:
        expected: object = [p[0] for p in pypdf_pages(broken, raw=True)]
    except Exception:
        expected = DocumentError
    if expected is DocumentError:
        with pytest.raises(DocumentError):
            page_identities(broken)
    else:
        assert [p.identity for p in page_identities(broken)] == expected


def test_identities_are_the_same_in_another_process() -> None:
    path = PLAIN[0]
    code = (
        "import sys; from tore_nb.incremental.documents import page_identities as f; "
        "print(','.join(p.identity for p in f(open(sys.argv[1], 'rb').read())))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)], env=env, capture_output=True, check=True
    )
    here = ",".join(p.identity for p in page_identities(path.read_bytes()))
    assert out.stdout.decode().strip() == here
