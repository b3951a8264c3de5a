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


def test_process_twice_second_run_all_cached(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
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
    first = capsys.readouterr().out
    assert first.split("\n\n")[0].count(" computed ") == 6 and "hit_rate" in first
    assert main(args) == 0
    second = capsys.readouterr().out
    assert "computed" not in second.split("\n\n")[0]
    assert second.count(" disk ") >= 6 and "unchanged" in second


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
        "--no-metrics",
    ]
    assert main(base) == 0
    capsys.readouterr()
    shutil.copy(pdf("ca-warn-report_v2.pdf"), work)
    csv = tmp_path / "report.csv"
    assert main([*base, "--changed-only", "--csv", str(csv)]) == 0
    out = capsys.readouterr().out
    assert "modified" in out and "removed" in out and "incremental" in out
    assert csv.read_text().count("\n") == 17  # header + 15 pages + 1 removed page


def test_unreadable_file_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.pdf"
    bad.write_text("nope")
    assert main(["--cache-dir", str(tmp_path / "c"), "process", str(bad), "--no-progress"]) == 1
    assert "FAILED" in capsys.readouterr().out


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
