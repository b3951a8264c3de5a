"""The `tore-nb` command.

    tore-nb process PATH...       process PDFs incrementally (files, folders, globs): one line per
                                  document and a totals line; --pages for the per-page table;
                                  --previous FILE: report the changes against an earlier version
    tore-nb warm PATH...          fill the caches for many documents (parallel with --executor ray)
    tore-nb invalidate ...        forget documents (--document), key patterns, stages or old entries
    tore-nb stats                 what the tiers hold, and this process's counters
    tore-nb s3-lifecycle          install the bucket's lifecycle rules that make S3 expire
                                  entries; --print: print them (JSON) for an admin to apply
    tore-nb run NOTEBOOK.ipynb... execute notebooks headless, each in a fresh kernel, every cell
                                  cached (`%tcache auto`): only what an edit reaches runs again;
                                  outputs written back (or to --output); one line per notebook

The cache is configured as the library's is: from the environment (REDIS_URL, S3_CACHE_BUCKET,
DISK_CACHE_PATH, ...), by default memory and disk under $XDG_CACHE_HOME/tore_nb. `--local`
keeps to memory and disk whatever the environment says; `--cache-dir` moves the disk tier.

Exit status: 0 when every document and page was processed; 1 when a document could not be
read or a page's stage failed, or a notebook's cell failed (reasons on stderr); 2 for a usage
error (a bad option, no PDF under the paths given, a notebook not found).

>>> main(["--help"])  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .incremental.executors import Executor
    from .incremental.stages import Stage
    from .tiered import MultiLevelCache

__all__ = ["build_parser", "main"]

STAGE_NAMES = ("text", "ocr", "tables", "embeddings")


def _fraction(text: str) -> float:
    """An argparse type: a number between 0 and 1 (a bad one is a usage error, exit 2).

    >>> _fraction("0.5")
    0.5
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `tore-nb`."""
    from importlib.metadata import PackageNotFoundError, version

    try:  # the installed distribution's: `tore_nb/__init__` is the package face, a floor above
        __version__ = version("tore_nb")
    except PackageNotFoundError:  # run from a checkout that is not installed
        __version__ = "unknown"
    p = argparse.ArgumentParser(
        prog="tore-nb",
        description="tore_nb: incremental document processing and multi-tier caching",
        epilog="exit status: 0 all processed; 1 a document, page or notebook failed (see "
        "stderr); 2 usage error",
    )
    p.add_argument("--version", action="version", version=f"tore-nb {__version__}")
    p.add_argument("--cache-dir", help="disk tier directory (default: $XDG_CACHE_HOME/tore_nb)")
    p.add_argument(
        "--local",
        action="store_true",
        help="memory and disk tiers only, whatever REDIS_URL or S3_CACHE_BUCKET say",
    )
    p.add_argument("--env", action="store_true", help=argparse.SUPPRESS)  # the default now
    sub = p.add_subparsers(dest="command", required=True)

    def work_options(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "paths", nargs="+", metavar="PATH", help="PDF files, folders (searched) or globs"
        )
        sp.add_argument(
            "--stages",
            default="text,ocr,tables",
            help=f"comma-separated stages among {', '.join(STAGE_NAMES)} "
            "(default: text,ocr,tables)",
        )
        sp.add_argument("--executor", choices=("serial", "ray"), default="serial")
        sp.add_argument("--address", help="an existing Ray cluster (implies --executor ray)")
        sp.add_argument("--num-cpus", type=int, help="CPUs for a local Ray instance")
        sp.add_argument(
            "--threshold",
            type=_fraction,
            default=0.3,
            help="changed fraction above which the document result is rebuilt",
        )
        sp.add_argument("--force", action="store_true", help="ignore cached results")
        sp.add_argument("--no-progress", action="store_true", help="no progress bar")

    proc = sub.add_parser("process", help="process documents incrementally")
    work_options(proc)
    proc.add_argument(
        "--pages", action="store_true", help="print the per-page table (page, stage, served by)"
    )
    proc.add_argument(
        "--changed-only",
        action="store_true",
        help="with --pages: only pages that changed or were computed",
    )
    proc.add_argument(
        "--csv",
        help="also write what is printed to this CSV file (documents, or pages with --pages)",
    )
    proc.add_argument(
        "--previous",
        metavar="FILE",
        help="the earlier version of the one document given, to report its changes against "
        "(by default a new document is diffed against one seen before that holds at least "
        "half its pages)",
    )
    proc.add_argument("--metrics", action="store_true", help="print the cache metrics per tier")
    proc.add_argument("--no-metrics", action="store_true", help=argparse.SUPPRESS)  # the default

    warm = sub.add_parser("warm", help="fill the caches for many documents")
    work_options(warm)

    inv = sub.add_parser("invalidate", help="remove cache entries")
    inv.add_argument("--document", action="append", default=[], metavar="PATH_OR_ID")
    inv.add_argument("--pattern", action="append", default=[], metavar="GLOB")
    inv.add_argument("--stage", action="append", default=[], metavar="NAME")
    inv.add_argument("--older-than", type=float, metavar="SECONDS")

    sub.add_parser("stats", help="cache metrics and usage per tier")

    life = sub.add_parser(
        "s3-lifecycle",
        help="install the S3 lifecycle rules that expire entries by their TTL",
        description="Merge the rules that make S3 delete expired entries (by the object tag "
        "tore_nb-expires, under this namespace's prefix) into the bucket's lifecycle "
        "configuration, keeping its other rules. Needs S3_CACHE_BUCKET.",
    )
    life.add_argument(
        "--print",
        action="store_true",
        help="print the rules as JSON for put-bucket-lifecycle-configuration instead "
        "(when this identity may not change the bucket's lifecycle)",
    )
    add_run_parser(sub)
    return p


def add_run_parser(sub: Any) -> None:
    """The `run` subcommand's options."""
    run = sub.add_parser(
        "run",
        help="execute notebooks headless, every cell cached",
        description="Execute each notebook top to bottom in a fresh kernel (nbclient) with "
        "`%load_ext tore_nb` and `%tcache auto` loaded at start-up (nothing is added to "
        "the notebook): a cell whose code and inputs did not change is served from the "
        "cache, so a re-run after an edit executes only the cells the edit reaches. The "
        "outputs are written back in place (or to --output) and one line per notebook says "
        "how many cells ran and how many were served. The kernel reads the cache from the "
        "environment (DISK_CACHE_PATH, REDIS_URL, S3_CACHE_BUCKET...), with --cache-dir and "
        "--local applied; it runs in the notebook's folder.",
        epilog="exit status: 0 every notebook ran; 1 a cell failed (the cell and its "
        "traceback on stderr; that notebook is not written) or a kernel could not run it; "
        "2 usage error",
    )
    run.add_argument("notebooks", nargs="+", metavar="NOTEBOOK.ipynb", help="notebooks to run")
    run.add_argument(
        "--output",
        "-o",
        metavar="DIR_OR_FILE",
        help="write the executed notebooks into this folder (or, for one notebook, to this "
        ".ipynb file) and leave the sources untouched (default: in place)",
    )
    run.add_argument(
        "--timeout", type=_seconds, metavar="SECONDS", help="per cell (default: no limit)"
    )
    run.add_argument("--kernel", metavar="NAME", help="kernel to use (default: the notebook's own)")
    run.add_argument(
        "--no-cache", action="store_true", help="run plainly with nbclient: no cell cached"
    )
    run.add_argument(
        "--allow-errors",
        action="store_true",
        help="go on past a failing cell (its error is in the outputs) and write the notebook",
    )
    run.add_argument(
        "--verbose", "-v", action="store_true", help="one more line per cell: served or ran, why"
    )


def _seconds(text: str) -> int:
    """An argparse type: a positive whole number of seconds.

    >>> _seconds("30")
    30
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of seconds: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def _s3_lifecycle(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """`tore-nb s3-lifecycle [--print]`: install the expiry rules, or print them."""
    import json

    from .config import CacheConfig
    from .errors import TierUnavailable
    from .tiers import build_tier

    cfg = CacheConfig.from_env()
    if not cfg.s3_enabled:
        parser.error("s3-lifecycle needs S3_CACHE_BUCKET (and S3_ENDPOINT_URL for a non-AWS store)")
    tier: Any = build_tier("s3", cfg)
    where = f"s3://{tier.bucket}/{tier.prefix}"
    try:
        if args.print:
            print(json.dumps({"Rules": tier.lifecycle_rules()}, indent=2))
            print(
                f"tore-nb: the rules for {where}; put-bucket-lifecycle-configuration replaces "
                "the bucket's rules: add these to the ones it has",
                file=sys.stderr,
            )
            return 0
        try:
            changed = tier.install_lifecycle()
        except TierUnavailable as exc:
            print(
                f"tore-nb: {where}: {exc}; an identity without s3:PutLifecycleConfiguration can "
                "print the rules for an admin: tore-nb s3-lifecycle --print",
                file=sys.stderr,
            )
            return 1
        n = len(tier.lifecycle_rules())
        print(f"{where}: {n} lifecycle rules {'installed' if changed else 'already installed'}")
        return 0
    finally:
        tier.close()


def make_cache(args: argparse.Namespace) -> MultiLevelCache:
    from .config import CacheConfig
    from .tiered import MultiLevelCache

    if args.local:
        cfg = CacheConfig.embedded(args.cache_dir)
    else:
        cfg = CacheConfig.from_env()
        if args.cache_dir:
            cfg = cfg.replace(disk_cache_path=args.cache_dir)
    return MultiLevelCache(cfg)


def find_pdfs(paths: Sequence[str]) -> list[str]:
    """The PDFs named by `paths`: files as given, folders searched (sorted), globs expanded.
    A path that is none of these is kept, so that it is reported as not found.

    >>> find_pdfs(["no/such/file.pdf"])
    ['no/such/file.pdf']
    """
    found: list[str] = []
    for arg in paths:
        if os.path.isdir(arg):
            found += sorted(
                str(p) for p in Path(arg).rglob("*") if p.suffix.lower() == ".pdf" and p.is_file()
            )
        elif glob.has_magic(arg):
            found += sorted(glob.glob(arg, recursive=True))
        else:
            found.append(arg)
    return list(dict.fromkeys(found))


def make_stages(spec: str) -> list[Stage]:
    from .incremental import builtin

    names = [s.strip() for s in spec.split(",") if s.strip()]
    if not names:
        raise SystemExit(f"tore-nb: --stages names no stage; choose from {', '.join(STAGE_NAMES)}")
    unknown = [n for n in names if n not in STAGE_NAMES]
    if unknown:
        raise SystemExit(
            f"tore-nb: unknown stage(s) {', '.join(unknown)}; choose from {', '.join(STAGE_NAMES)}"
        )
    stages: list[Stage] = []
    if "text" in names or "ocr" in names or "embeddings" in names:
        stages.append(builtin.text_stage())
    if "ocr" in names or "embeddings" in names:
        stages.append(builtin.ocr_stage())
    if "tables" in names:
        stages.append(builtin.tables_stage())
    if "embeddings" in names:
        stages.append(builtin.embedding_stage())
    return stages


def make_executor(args: argparse.Namespace) -> Executor:
    from .incremental.executors import RayExecutor, SerialExecutor

    if args.executor == "ray" or args.address:
        return RayExecutor(address=args.address, num_cpus=args.num_cpus)
    return SerialExecutor()


def _run(args: argparse.Namespace, cache: MultiLevelCache) -> Any:
    import os

    from .incremental.processor import IncrementalProcessor
    from .incremental.progress import NullProgress, TextProgress

    if args.executor == "ray" or args.address:
        os.environ.setdefault("OMP_THREAD_LIMIT", "1")
    progress = NullProgress() if args.no_progress else TextProgress(sys.stderr)
    proc = IncrementalProcessor(
        cache,
        stages=make_stages(args.stages),
        executor=make_executor(args),
        change_threshold=args.threshold,
        progress=progress,
    )
    previous = getattr(args, "previous", None)
    return proc.process(args.paths, force=args.force, previous=previous)


def _print_process(args: argparse.Namespace, run: Any, cache: MultiLevelCache) -> None:
    from .incremental.report import format_documents, format_report

    if args.pages:
        print(format_report(run, changed_only=args.changed_only, max_rows=100_000))
    print("\n".join(format_documents(run)))
    if args.csv:
        if args.pages:
            df = run.report()
            if args.changed_only:
                df = df[(df.status != "unchanged") | (df.served_by == "computed")]
        else:
            df = run.summary()
        df.to_csv(args.csv, index=False)
    if args.metrics:
        print()
        print(cache.to_frame().to_string())


def _report_failures(run: Any) -> bool:
    """Say on stderr what reading documents reported (a damaged file repaired), then what
    failed: documents that could not be read, pages whose stage failed."""
    for path, said in run.warnings.items():
        for message in said:
            print(f"tore-nb: {path}: warning: {message}", file=sys.stderr)
    for path, why in run.failures.items():
        print(f"tore-nb: {path}: {why}", file=sys.stderr)
    failed_pages = False
    for row in run.report_rows():
        document, page, _status, *_, stage, served_by, _level, _secs, error = row
        if served_by == "failed" and page is not None:  # unreadable documents: said above
            failed_pages = True
            print(f"tore-nb: {document} page {page}, {stage}: {error}", file=sys.stderr)
    return bool(run.failures) or failed_pages


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `tore-nb`; returns the exit status (1 when a document or page failed)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "s3-lifecycle":  # the bucket only: no cache to open
        return _s3_lifecycle(args, parser)
    if args.command == "run":  # the kernels open the cache, not this process
        from .notebooks import run_command

        return run_command(args, parser)
    if args.command in ("process", "warm"):
        args.paths = find_pdfs(args.paths)
        if not args.paths:
            parser.error("no PDF found under the paths given")
        if getattr(args, "previous", None) and len(args.paths) != 1:
            parser.error(f"--previous needs one document; the paths name {len(args.paths)}")
    cache = make_cache(args)
    try:
        if args.command in ("process", "warm"):
            run = _run(args, cache)
            if args.command == "process":
                _print_process(args, run, cache)
            else:
                from .incremental.report import format_documents

                print("\n".join(format_documents(run)))
            return 1 if _report_failures(run) else 0
        if args.command == "invalidate":
            from .maintenance import CacheInvalidator

            inv = CacheInvalidator(cache)
            n = sum(inv.invalidate_document(d) for d in args.document)
            n += sum(inv.invalidate_pattern(p) for p in args.pattern)
            n += sum(inv.invalidate_stage(s) for s in args.stage)
            if args.older_than is not None:
                n += inv.invalidate_by_age(args.older_than)
            print(f"removed {n} entries")
            return 0
        print(
            "what the tiers hold (entries, size) and this process's counters: a new command "
            "starts them at zero, so hits and misses of earlier runs are not here"
        )
        print(cache.to_frame().to_string())
        return 0
    finally:
        cache.close()


if __name__ == "__main__":
    sys.exit(main())
