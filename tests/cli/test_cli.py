"""The `tore-nb` command: process twice (the second run is served from the cache), invalidate."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO
from tests.support import sample_pdf as pdf
from tore_nb.cli import main
from tore_nb.testing import MotoS3


def test_process_twice_second_run_all_cached(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """By default one line per document and a totals line; --pages adds the per-page table."""
    cache_dir = str(tmp_path / "cache")
    args = [
        "--cache-dir",
        cache_dir,
        "process",
        str(pdf("us-036.pdf")),
        "--stages",
        "text,tables",
        "--no-progress",
    ]
    assert main(args) == 0
    first = capsys.readouterr().out.splitlines()
    assert first == [
        "us-036.pdf: 3 pages, new; stage results 6 computed",
        first[1],
    ]
    assert first[1].startswith("1 document, 3 pages (3 new or modified); stage results 6 computed")
    assert main([*args, "--pages", "--metrics"]) == 0
    second = capsys.readouterr().out
    assert "us-036.pdf: 3 pages, unchanged; stage results 6 from cache" in second
    assert second.count(" disk ") >= 6 and "hit_rate" in second  # the table, the metrics


def test_process_changed_file_reports_changes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "report.pdf"
    shutil.copy(pdf("ca-warn-report.pdf"), work)
    base = [
        "--cache-dir",
        str(tmp_path / "c"),
        "process",
        str(work),
        "--stages",
        "text",
        "--no-progress",
    ]
    assert main(base) == 0
    capsys.readouterr()
    shutil.copy(pdf("ca-warn-report_v2.pdf"), work)
    csv = tmp_path / "report.csv"
    assert main([*base, "--pages", "--changed-only", "--csv", str(csv)]) == 0
    out = capsys.readouterr().out
    assert "report.pdf: 15 pages, 1 modified, 1 removed, 14 unchanged" in out
    assert "modified" in out.splitlines()[1]  # the per-page table: only the changed rows
    assert csv.read_text().count("\n") == 3  # header, the modified page, the removed page
    assert main([*base, "--csv", str(csv)]) == 0  # without --pages: the documents
    assert csv.read_text().splitlines()[0].startswith("document,mode,based_on,pages")


def test_folders_and_globs_are_searched(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "in" / "deeper"
    folder.mkdir(parents=True)
    shutil.copy(pdf("us-001.pdf"), folder / "a.pdf")
    shutil.copy(pdf("us-036.pdf"), tmp_path / "in" / "b.PDF")
    (tmp_path / "in" / "notes.txt").write_text("not a pdf")
    c = ["--cache-dir", str(tmp_path / "c"), "process", "--stages", "text", "--no-progress"]
    assert main([*c, str(tmp_path / "in")]) == 0
    out = capsys.readouterr().out
    assert "a.pdf: 3 pages" in out and "b.PDF: 3 pages" in out and "2 documents" in out
    assert main([*c, str(tmp_path / "in" / "**" / "*.pdf")]) == 0
    assert "1 document, 3 pages" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        main([*c, str(tmp_path / "in" / "*.nothing")])
    assert exit_.value.code == 2


def test_failures_go_to_stderr_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.pdf"
    bad.write_text("nope")
    c = ["--cache-dir", str(tmp_path / "c"), "process", "--no-progress", "--stages", "text"]
    assert main([*c, str(bad), str(pdf("us-001.pdf"))]) == 1
    out, err = capsys.readouterr()
    assert "us-001.pdf: 3 pages" in out and "1 could not be read" in out
    assert f"tore-nb: {bad}:" in err and "bad.pdf" not in out


def test_version_and_local(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith("tore-nb ")
    os.environ["REDIS_URL"] = "redis://127.0.0.1:1/0"  # a Redis nobody runs: --local ignores it
    try:
        c = ["--local", "--cache-dir", str(tmp_path / "c")]
        assert (
            main([*c, "process", str(pdf("us-001.pdf")), "--stages", "text", "--no-progress"]) == 0
        )
        assert main([*c, "stats"]) == 0
        out = capsys.readouterr().out
        assert "this process's counters" in out and "redis" not in out
    finally:
        del os.environ["REDIS_URL"]


def test_invalidate_and_stats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    c = ["--cache-dir", str(tmp_path / "c")]
    path = str(pdf("us-036.pdf"))
    assert main([*c, "warm", path, "--stages", "text", "--no-progress"]) == 0
    capsys.readouterr()
    assert main([*c, "invalidate", "--document", path]) == 0
    assert "removed 5 entries" in capsys.readouterr().out  # 3 pages, the result, the manifest
    assert main([*c, "stats"]) == 0
    assert "disk" in capsys.readouterr().out


def test_bad_stage_name(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["--cache-dir", str(tmp_path), "process", "x.pdf", "--stages", "nope"])


@pytest.mark.parametrize("value", ["2", "-0.1", "nan", "x"])
def test_threshold_outside_0_to_1_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    """Regression: the parser took any float, so --threshold 2 or nan got past it and failed
    later in the processor with a ValueError; it is now a usage error (exit 2) naming the option."""
    with pytest.raises(SystemExit) as exc:
        main(["--cache-dir", str(tmp_path), "process", "x.pdf", "--threshold", value])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--threshold" in err and "Traceback" not in err


def test_empty_stage_list_says_no_stage_was_given(tmp_path: Path) -> None:
    """Regression: `--stages ,` was reported as "unknown stage(s) []"; it now says no stage."""
    with pytest.raises(SystemExit) as exc:
        main(["--cache-dir", str(tmp_path), "process", str(pdf("us-001.pdf")), "--stages", ","])
    assert "no stage" in str(exc.value.code) and "[]" not in str(exc.value.code)


def test_entry_point_runs_as_a_module(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tore_nb.cli",
            "--cache-dir",
            str(tmp_path / "c"),
            "process",
            str(pdf("us-036.pdf")),
            "--stages",
            "text",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "us-036.pdf" in out.stdout


def test_a_new_version_under_a_new_name_and_previous(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`process report_v1.pdf` then `report_v2.pdf` says what v2 changed against v1 and what
    the cache saved; `--previous FILE` names the earlier version for one document."""
    v1, v2 = tmp_path / "report_v1.pdf", tmp_path / "report_v2.pdf"
    shutil.copy(pdf("ca-warn-report.pdf"), v1)
    shutil.copy(pdf("ca-warn-report_v2.pdf"), v2)
    base = ["--cache-dir", str(tmp_path / "c"), "process", "--stages", "text", "--no-progress"]
    assert main([*base, str(v1)]) == 0
    capsys.readouterr()
    assert main([*base, str(v2)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(
        "report_v2.pdf: 15 pages, based on report_v1.pdf: 1 modified, 1 removed, 14 unchanged; "
        "stage results 1 computed, 14 from cache (disk); saved "
    )
    assert "saved" in lines[1]
    assert main([*base, str(v1), "--previous", str(v2)]) == 0
    out = capsys.readouterr().out
    assert "report_v1.pdf: 16 pages, based on report_v2.pdf: 1 modified, 1 added, 14 unch" in out
    with pytest.raises(SystemExit) as exc:
        main([*base, str(v1), str(v2), "--previous", str(v2)])
    assert exc.value.code == 2
    assert "--previous needs one document" in capsys.readouterr().err


def test_a_damaged_file_is_processed_and_its_repair_said_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file cut before its `startxref` tail (pdfium opens it) was refused; it is read now,
    and what pypdf repaired goes to stderr as warnings (exit 0), not into the output lines."""
    data = pdf("us-036.pdf").read_bytes()
    cut = tmp_path / "cut.pdf"
    cut.write_bytes(data[: data.rindex(b"startxref")])
    args = ["--cache-dir", str(tmp_path / "c"), "process", str(cut), "--stages", "text"]
    assert main([*args, "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("cut.pdf: 3 pages, new; stage results 3 computed")
    assert f"tore-nb: {cut}: warning: no startxref at the end of the file" in captured.err
    assert "warning" not in captured.out


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch, moto_server: MotoS3, s3_bucket: str) -> str:
    """S3_* pointing the CLI at the moto server's fresh bucket."""
    monkeypatch.setenv("S3_CACHE_BUCKET", s3_bucket)
    monkeypatch.setenv("S3_ENDPOINT_URL", moto_server.endpoint_url)
    monkeypatch.setenv("S3_CACHE_REGION", "us-east-1")
    monkeypatch.setenv("TORE_NB_NAMESPACE", "cli")
    return s3_bucket


@pytest.mark.s3
def test_s3_lifecycle_installs_then_says_installed(
    s3_env: str, moto_server: MotoS3, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["s3-lifecycle"]) == 0
    assert capsys.readouterr().out == (
        f"s3://{s3_env}/tore-cache/cli/: 4 lifecycle rules installed\n"
    )
    client = moto_server.client()
    rules = client.get_bucket_lifecycle_configuration(Bucket=s3_env)["Rules"]
    assert [r["Expiration"]["Days"] for r in rules] == [1, 7, 30, 365]
    assert main(["s3-lifecycle"]) == 0
    assert "4 lifecycle rules already installed" in capsys.readouterr().out


@pytest.mark.s3
def test_s3_lifecycle_print_shows_the_rules_and_changes_nothing(
    s3_env: str, moto_server: MotoS3, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from tore_nb.tiers.s3 import lifecycle_rules

    assert main(["s3-lifecycle", "--print"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out) == {"Rules": lifecycle_rules("tore-cache/cli/")}
    assert "replaces the bucket's rules" in out.err
    client = moto_server.client()
    with pytest.raises(client.exceptions.ClientError, match="NoSuchLifecycleConfiguration"):
        client.get_bucket_lifecycle_configuration(Bucket=s3_env)


@pytest.mark.s3
def test_s3_lifecycle_refused_says_to_print(
    s3_env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("S3_CACHE_BUCKET", "no-such-bucket")
    assert main(["s3-lifecycle"]) == 1
    err = capsys.readouterr().err
    assert "NoSuchBucket" in err and "tore-nb s3-lifecycle --print" in err


def test_s3_lifecycle_without_a_bucket_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["s3-lifecycle", "--print"])
    assert exc.value.code == 2
    assert "S3_CACHE_BUCKET" in capsys.readouterr().err
