"""Change detection: change sets against the truth table of data/pdfs/MANIFEST.md, file
fingerprints, manifests kept in the cache. Page identities are in tests/incremental/test_pdf.py."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support import SECRET
from tests.support import sample_pdf as pdf
from tore_nb.config import CacheConfig
from tore_nb.incremental.changes import (
    ChangeDetector,
    ChangeSet,
    Manifest,
    best_base,
    diff_pages,
)
from tore_nb.incremental.documents import (
    Document,
    DocumentError,
    FileFingerprint,
    Page,
    document_id_for,
    fingerprint_file,
    read_document,
)
from tore_nb.tiered import MultiLevelCache


def changes(v1: str, v2: str) -> ChangeSet:
    old = read_document(pdf(v1))
    return ChangeSet.compare(Manifest(old, 0.0), read_document(pdf(v2)))


# (v1, v2, v2 pages to reprocess, v1 pages gone, moved pages in v2): MANIFEST.md's table
TRUTH = [
    ("dmca.pdf", "dmca_v2.pdf", [3, 7, 19], [], []),
    ("ca-warn-report.pdf", "ca-warn-report_v2.pdf", [2], [9], []),
    ("multipage.pdf", "multipage_v2.pdf", [], [], [1]),
    ("federal-register-2020-17221.pdf", "federal-register-2020-17221_resaved.pdf", [], [], []),
    (
        "Seige_of_Vicksburg_Sample_OCR.pdf",
        "Seige_of_Vicksburg_Sample_OCR-crazyones-merged.pdf",
        [2],
        [],
        [],
    ),
]


@pytest.mark.parametrize(
    ("v1", "v2", "work", "gone", "n_moved"), TRUTH, ids=[t[0].split(".")[0] for t in TRUTH]
)
def test_truth_table_exact_pages(
    v1: str, v2: str, work: list[int], gone: list[int], n_moved: list[int]
) -> None:
    cs = changes(v1, v2)
    assert list(cs.changed_pages) == work
    assert [c.old_index + 1 for c in cs.removed if c.old_index is not None] == gone
    assert len(cs.moved) == len(n_moved)
    # every page not reprocessed kept its content: its identity existed in v1
    old = set(cs.previous.identities) if cs.previous else set()
    for c in cs.changes:
        if c.new_index is not None and not c.needs_processing:
            assert c.identity in old


def test_dmca_v2_statuses() -> None:
    cs = changes("dmca.pdf", "dmca_v2.pdf")
    assert [(c.old_index, c.new_index) for c in cs.modified] == [(2, 2), (6, 6)]
    assert [c.new_index for c in cs.added] == [18]
    assert cs.counts() == {"added": 1, "removed": 0, "moved": 0, "modified": 2, "unchanged": 16}


def test_ca_warn_deleted_page_shifts_without_flagging() -> None:
    cs = changes("ca-warn-report.pdf", "ca-warn-report_v2.pdf")
    shifted = [(c.old_index, c.new_index) for c in cs.unchanged if c.old_index != c.new_index]
    assert shifted == [(i, i - 1) for i in range(9, 16)]
    assert cs.changed_fraction == pytest.approx(2 / 16)


def test_swapped_image_pages_are_a_move_only() -> None:
    cs = changes("multipage.pdf", "multipage_v2.pdf")
    assert cs.pages_to_process == ()
    (moved,) = cs.moved
    assert {moved.old_index, moved.new_index} == {1, 2}


def test_not_a_pdf_is_a_document_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pdf"
    bad.write_bytes(b"this is not a pdf")
    with pytest.raises(DocumentError):
        read_document(bad)
    with pytest.raises(DocumentError):
        read_document(tmp_path / "missing.pdf")


def test_fingerprint_stat_fast_path(tmp_path: Path) -> None:
    f = tmp_path / "a.pdf"
    shutil.copy(pdf("dmca.pdf"), f)
    fp, data = fingerprint_file(f)
    assert data is not None and fp.size == len(data)
    assert fingerprint_file(f, fp) == (fp, None)  # nothing read
    os.utime(f, ns=(fp.mtime_ns + 10**9, fp.mtime_ns + 10**9))
    fp2, data2 = fingerprint_file(f, fp)
    assert data2 is not None and fp2.content_hash == fp.content_hash and fp2 != fp


def test_document_id_is_stable_per_path(tmp_path: Path) -> None:
    assert document_id_for(tmp_path / "a.pdf") == document_id_for(str(tmp_path / "a.pdf"))
    assert document_id_for(tmp_path / "a.pdf") != document_id_for(tmp_path / "b" / "a.pdf")


# -- the detector with manifests in the cache ------------------------------------------------
def make_cache(path: Path) -> MultiLevelCache:
    return MultiLevelCache(CacheConfig.embedded(path), secret=SECRET)


def test_detector_versions_and_restart(tmp_path: Path) -> None:
    work = tmp_path / "report.pdf"
    shutil.copy(pdf("ca-warn-report.pdf"), work)
    det = ChangeDetector(make_cache(tmp_path / "c"))
    first = det.detect(work, save=True)
    assert first.is_new and first.changed_pages == tuple(range(1, 17))
    assert not det.has_file_changed(work)

    shutil.copy(pdf("ca-warn-report_v2.pdf"), work)
    assert det.has_file_changed(work)
    # a new process: memory is empty, the manifest comes from the disk tier
    det2 = ChangeDetector(make_cache(tmp_path / "c"))
    second = det2.detect(work, save=True)
    assert second.file_changed and second.changed_pages == (2,)
    assert [c.old_index for c in second.removed] == [8]
    third = det2.detect(work)
    assert not third.file_changed and not third.has_changes
    assert third.document is second.document or third.document == second.document


def test_detector_touch_without_change(tmp_path: Path) -> None:
    work = tmp_path / "d.pdf"
    shutil.copy(pdf("dmca.pdf"), work)
    det = ChangeDetector(make_cache(tmp_path / "c"))
    det.detect(work, save=True)
    os.utime(work, ns=(1, 1))
    cs = det.detect(work, save=True)
    assert not cs.file_changed and cs.pages_to_process == ()
    manifest = det.load_manifest(document_id_for(work))
    assert manifest is not None and manifest.document.fingerprint.mtime_ns == 1


def test_get_changed_pages_seed_api(tmp_path: Path) -> None:
    det = ChangeDetector(make_cache(tmp_path / "c"))
    doc = read_document(pdf("dmca.pdf"))
    det.save_manifest(doc)
    v2 = read_document(pdf("dmca_v2.pdf"))
    assert det.get_changed_pages(doc.document_id, v2.identities) == [3, 7, 19]


def test_unchanged_document_is_not_parsed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "d.pdf"
    shutil.copy(pdf("dmca.pdf"), work)
    det = ChangeDetector(make_cache(tmp_path / "c"))
    det.detect(work, save=True)

    def boom(*a: object, **k: object) -> Document:
        raise AssertionError("parsed an unchanged file")

    monkeypatch.setattr("tore_nb.incremental.changes.read_document", boom)
    assert det.detect(work).pages_to_process == ()


# -- the alignment as a property --------------------------------------------------------------
idents = st.lists(st.sampled_from("abcdefghij"), max_size=12)


@given(old=idents, new=idents)
def test_diff_pages_accounts_for_every_page(old: list[str], new: list[str]) -> None:
    out = diff_pages(old, new)
    current = [c for c in out if c.new_index is not None]
    assert [c.new_index for c in current] == list(range(len(new)))
    assert all(c.identity == new[c.new_index] for c in current if c.new_index is not None)
    olds = [c.old_index for c in out if c.old_index is not None]
    assert sorted(olds) == sorted(set(olds))  # no old page used twice
    assert set(olds) == set(range(len(old)))  # and every old page accounted for
    for c in current:
        if c.identity not in old:
            assert c.needs_processing
        if c.status in ("unchanged", "moved"):
            assert c.old_index is not None and old[c.old_index] == c.identity
        if c.status == "unchanged":
            assert not c.needs_processing


def test_diff_pages_identical_is_all_unchanged() -> None:
    out = diff_pages(["a", "b", "a"], ["a", "b", "a"])
    assert [c.status for c in out] == ["unchanged"] * 3


def test_a_saved_manifest_makes_its_document_a_base_for_later_new_ones(tmp_path: Path) -> None:
    """Documents are found by a few of their page identities (one batched read), and only one
    holding at least the threshold of the new document's pages is taken."""
    cache = MultiLevelCache(CacheConfig.embedded(tmp_path / "c"), secret=SECRET)
    det = ChangeDetector(cache)
    v1, v2 = read_document(pdf("dmca.pdf")), read_document(pdf("dmca_v2.pdf"))
    other = read_document(pdf("us-036.pdf"))
    assert det.related([v2]) == {}
    det.save_manifest(v1)
    det.save_manifest(other)
    assert det.related([v2, other]) == {v2.document_id: v1}  # other: itself is no base
    assert det.related([v2], threshold=0.9) == {}  # 16 of 19 pages shared: 0.84
    # a fresh cache object on the same directory: the index is persistent
    again = ChangeDetector(MultiLevelCache(CacheConfig.embedded(tmp_path / "c"), secret=SECRET))
    assert again.related([v2])[v2.document_id].document_id == v1.document_id


def test_best_base_takes_the_candidate_holding_most_pages() -> None:
    def doc(name: str, ids: str) -> Document:
        pages = tuple(Page(i, x, 1.0, 1.0, 0) for i, x in enumerate(ids))
        return Document(f"/{name}.pdf", name, FileFingerprint(1, 1, name), pages)

    new = doc("new", "abcdef")
    half, most = doc("half", "abcxyz"), doc("most", "abcdeq")
    assert best_base(new, [half, most]) is most
    assert best_base(new, [half]) is half and best_base(new, [doc("few", "abxxxx")]) is None
    assert best_base(new, [doc("new", "abcdef")]) is None  # never itself
    cs = ChangeSet.compare(Manifest(most, 0.0), new)
    assert cs.based_on is most and not cs.is_new and "based on most.pdf" in str(cs)
