"""Benchmark of what the shared tiers cost per page-stage result (a script, not a test).

    python benchmarks/bench_scaleout.py [--pdf PATH ...] [--nodes N] [--pages-per-s N]

A private redis-server and moto's S3 server (behind a small proxy on 127.0.0.1 that counts
requests by kind) back a `MultiLevelCache` (memory, disk, Redis, S3). `IncrementalProcessor`
runs the text and tables stages over the sample PDFs in data/pdfs (the scanned ones left out):
1. cold: empty Redis, empty bucket, empty disk; every result is computed. Redis commands and
   Redis CPU (the `usec` of `INFO commandstats`, which is what the server spent executing them)
   per computed result (targets: <= 1.5 commands, <= 10 us), S3 requests per result by kind,
   and the S3 requests on page results, which are all small (target: 0);
2. warm: a second kernel (a new cache, empty memory and disk, the same Redis and S3) runs the
   same documents; Redis commands per served result (target: <= 0.1) and S3 requests.
Whatever the processor sends (claims or leases of pages included) is counted: the figures are
the server's own. It then projects the rates for `--nodes` x `--pages-per-s` (100 x 1,000) and
prints a Markdown table for docs/scaleout.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tore_nb.config import CacheConfig  # noqa: E402
from tore_nb.incremental.builtin import tables_stage, text_stage  # noqa: E402
from tore_nb.incremental.processor import IncrementalProcessor  # noqa: E402
from tore_nb.testing import MotoS3, RedisServer, S3Proxy  # noqa: E402
from tore_nb.tiered import MultiLevelCache  # noqa: E402

PDF_DIR = REPO / "data" / "pdfs"
# born-digital originals: 129 pages (no scans, no second versions that share pages)
DEFAULT_PDFS = (
    "dmca.pdf",
    "federal-register-2020-17221.pdf",
    "i1040nr.pdf",
    "f1040nr.pdf",
    "ca-warn-report.pdf",
    "us-001.pdf",
    "us-036.pdf",
    "GeoBase_NHNC1_Data_Model_UML_EN.pdf",
)
SECRET = b"s" * 32
BUCKET = "tore-scaleout"
TARGET_COLD_CMDS = 1.5
TARGET_COLD_US = 10.0
TARGET_WARM_CMDS = 0.1
STAGES = 2
# the benchmark's own commands, not the cache's
OWN_COMMANDS = {"cmdstat_config|resetstat", "cmdstat_config", "cmdstat_flushall"}


class CountingS3Proxy:
    """An HTTP proxy on 127.0.0.1 in front of an S3 endpoint that counts requests by kind
    (GET, PUT, HEAD, DELETE, LIST, ...) and by what the object is (page result or other)."""

    def __init__(self, upstream: str) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()
        self.put_bytes: dict[str, int] = {}  # object class -> largest PUT body
        self._lock = threading.Lock()
        self._proxy = S3Proxy(upstream, on_request=self.record)
        self.url = self._proxy.url

    def record(self, method: str, raw_path: str, length: int) -> None:
        parts = urlsplit(raw_path)
        path = unquote(parts.path).lstrip("/")
        key = path.split("/", 1)[1] if "/" in path else ""  # path style: /bucket/key
        kind = method
        if method == "GET" and not key:
            kind = "LIST"
        elif method == "POST" and "delete" in parts.query:
            kind = "DELETE (batch)"
        elif parts.query and method in ("GET", "PUT") and "tagging" in parts.query:
            kind = f"{method} tagging"
        what = key_class(key)
        with self._lock:
            self.counts[(kind, what)] += 1
            if method == "PUT" and key:
                self.put_bytes[what] = max(self.put_bytes.get(what, 0), length)

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()
            self.put_bytes.clear()

    def snapshot(self) -> Counter[tuple[str, str]]:
        with self._lock:
            return Counter(self.counts)

    def close(self) -> None:
        self._proxy.close()


def key_class(key: str) -> str:
    """What an object is, from its name: "page result", "manifest-index", "result", ..."""
    if not key:
        return "bucket"
    name = key.rsplit("/", 1)[-1]
    if name.startswith("page:"):
        return "page result"
    return name.split(":", 1)[0] if ":" in name else "other"


def commandstats(client: Any) -> dict[str, tuple[int, int]]:
    """command -> (calls, usec) since the last CONFIG RESETSTAT, without the benchmark's own."""
    stats = client.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"]))
        for name, v in stats.items()
        if name not in OWN_COMMANDS
    }


def run_kernel(
    label: str, pdfs: list[Path], redis_url: str, proxy: CountingS3Proxy, disk: Path, client: Any
) -> dict[str, Any]:
    """One kernel: a new cache (empty memory and disk) over the shared Redis and S3, one run."""
    proxy.reset()
    client.config_resetstat()
    config = CacheConfig(
        redis_url=redis_url,
        s3_cache_bucket=BUCKET,
        s3_endpoint_url=proxy.url,
        s3_cache_region="us-east-1",
        disk_cache_path=str(disk),
    )
    cache = MultiLevelCache(config, secret=SECRET)
    proc = IncrementalProcessor(cache, stages=[text_stage(), tables_stage()])
    t0 = time.perf_counter()
    run = proc.process(pdfs)
    elapsed = time.perf_counter() - t0
    cache.flush(30.0)
    cache.close()
    stats = commandstats(client)
    s3 = proxy.snapshot()
    if run.failures:
        raise SystemExit(f"{label}: documents failed: {run.failures}")
    df = run.report()
    served = Counter(zip(df.served_by, df.level, strict=True))
    return {
        "label": label,
        "seconds": elapsed,
        "pages": int(sum(r.document.page_count for r in run.documents)),
        "results": len(df),
        "computed": int((df.served_by == "computed").sum()),
        "served": int((df.served_by != "computed").sum()),
        "served_by": dict(served),
        "commands": sum(c for c, _ in stats.values()),
        "usec": sum(u for _, u in stats.values()),
        "by_command": stats,
        "s3": s3,
        "put_bytes": dict(proxy.put_bytes),
    }


def s3_kinds(s3: Counter[tuple[str, str]]) -> Counter[str]:
    kinds: Counter[str] = Counter()
    for (kind, _), n in s3.items():
        kinds[kind] += n
    return kinds


def describe(fig: dict[str, Any], per: int, docs: int) -> None:
    top = sorted(fig["by_command"].items(), key=lambda kv: -kv[1][0])
    parts = ", ".join(f"{name} {calls} ({usec} us)" for name, (calls, usec) in top[:8])
    print(f"    Redis commands (calls, CPU): {parts or 'none'}")
    total = sum(fig["s3"].values())
    by_key: Counter[str] = Counter()
    for (kind, what), count in fig["s3"].items():
        by_key[f"{kind} {what}"] += count
    on_pages = sum(v for (_, w), v in fig["s3"].items() if w == "page result")
    print(
        f"    S3 requests: {total} = {total / per:.3f} per result, {total / docs:.1f} per "
        f"document ({dict(by_key) or 'none'})"
    )
    print(f"    S3 requests on page results: {on_pages} (target 0) {mark(on_pages == 0)}")


def mark(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pdf", type=Path, action="append", help="a PDF (repeat; default: 8 files)")
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--pages-per-s", type=int, default=1000, help="per node")
    args = ap.parse_args()
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request
    pdfs = args.pdf or [PDF_DIR / name for name in DEFAULT_PDFS]
    print(
        f"cores: {os.cpu_count()}, python {sys.version.split()[0]}, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    import redis

    with (
        RedisServer() as server,
        MotoS3() as moto,
        tempfile.TemporaryDirectory() as d,
    ):
        moto.make_bucket(BUCKET)
        proxy = CountingS3Proxy(moto.endpoint_url)
        client = redis.Redis.from_url(server.url)
        try:
            client.flushall()
            cold = run_kernel("cold", pdfs, server.url, proxy, Path(d) / "disk-1", client)
            warm = run_kernel("warm", pdfs, server.url, proxy, Path(d) / "disk-2", client)
            # the same files under other paths: new documents (no document result to reuse)
            # whose pages are all known, served one page entry at a time
            copies = Path(d) / "copies"
            copies.mkdir()
            for pdf in pdfs:
                (copies / pdf.name).write_bytes(pdf.read_bytes())
            moved = [copies / pdf.name for pdf in pdfs]
            pages = run_kernel("warm pages", moved, server.url, proxy, Path(d) / "disk-3", client)
            # what the page results weigh in Redis (after the counting: these are not counted)
            sizes = [
                int(client.memory_usage(k) or 0) for k in client.scan_iter("*page:*", count=1000)
            ]
        finally:
            client.close()
            proxy.close()

    docs = len(pdfs)
    print(
        f"{docs} documents, {cold['pages']} pages, stages text and tables: "
        f"{cold['results']} page-stage results"
    )
    n = max(cold["computed"], 1)
    cmds_c, us_c = cold["commands"] / n, cold["usec"] / n
    print(
        f"  cold ({cold['seconds']:.1f} s, {cold['computed']} results computed, "
        f"{cold['served']} not; served_by {cold['served_by']}):"
    )
    print(
        f"    Redis commands per computed result: {cmds_c:.3f} (target <= {TARGET_COLD_CMDS}) "
        f"{mark(cmds_c <= TARGET_COLD_CMDS)}"
    )
    print(
        f"    Redis CPU per computed result: {us_c:.2f} us (target <= {TARGET_COLD_US:g} us) "
        f"{mark(us_c <= TARGET_COLD_US)}"
    )
    describe(cold, n, docs)
    if sizes:
        print(
            f"    page-result keys in Redis: {len(sizes)}, MEMORY USAGE {min(sizes)}-{max(sizes)} "
            f"bytes (small: under small_item_mb = 1 MB)"
        )
    warm_figs = []
    for fig, what in (
        (warm, "the same documents"),
        (pages, "the same files under other paths (new documents, known pages)"),
    ):
        m = max(fig["served"], 1)
        cmds_w, us_w = fig["commands"] / m, fig["usec"] / m
        ok = cmds_w <= TARGET_WARM_CMDS and fig["computed"] == 0
        print(
            f"  {fig['label']}: a second kernel (empty memory and disk), {what} "
            f"({fig['seconds']:.2f} s, {fig['served']} results served, {fig['computed']} "
            f"computed; served_by {fig['served_by']}):"
        )
        print(
            f"    Redis commands per served result: {cmds_w:.3f} (target <= {TARGET_WARM_CMDS}) "
            f"{mark(ok)}; Redis CPU {us_w:.2f} us per result"
        )
        describe(fig, m, docs)
        warm_figs.append((fig, m, cmds_w, us_w))

    pages_s = args.nodes * args.pages_per_s
    results_s = pages_s * STAGES
    print(
        f"  projection, {args.nodes} nodes x {args.pages_per_s:,} pages/s = {pages_s:,} pages/s, "
        f"{results_s:,} results/s (documents of {cold['pages'] / docs:.1f} pages, as here):"
    )
    rows = [(cold, n, cmds_c, us_c), *warm_figs]
    projected = []
    for fig, per, cmds, us in rows:
        kinds = s3_kinds(fig["s3"])
        row = (
            cmds * results_s,
            us * results_s / 1e6,
            kinds["GET"] / per * results_s,
            kinds["PUT"] / per * results_s,
            sum(kinds.values()) / per * results_s,
        )
        projected.append(row)
        print(
            f"    {fig['label']}: Redis {row[0]:,.0f} commands/s, {row[1]:.2f} cores; "
            f"S3 GET {row[2]:,.0f}/s, PUT {row[3]:,.0f}/s, all requests {row[4]:,.0f}/s"
        )

    print("\nMarkdown for docs/scaleout.md:\n")
    print(
        f"Measured: {docs} documents, {cold['pages']} pages, 2 stages (text, tables), "
        f"{os.cpu_count()} cores.\n"
    )
    print(
        "| per page-stage result | Redis commands | Redis CPU | S3 requests | "
        "S3 requests on page results | target |"
    )
    print("|---|---|---|---|---|---|")
    targets = {
        "cold": f"<= {TARGET_COLD_CMDS} commands, <= {TARGET_COLD_US:g} us, 0 S3 on page results",
        "warm": f"<= {TARGET_WARM_CMDS} commands",
        "warm pages": f"<= {TARGET_WARM_CMDS} commands",
    }
    for fig, per, cmds, us in rows:
        total = sum(fig["s3"].values())
        on_pages = sum(v for (_, w), v in fig["s3"].items() if w == "page result")
        what = "computed" if fig is cold else "served"
        print(
            f"| {fig['label']} ({per} {what}) | {cmds:.3f} | {us:.2f} us | "
            f"{total / per:.3f} ({total}) | {on_pages} | {targets[fig['label']]} |"
        )
    print(
        f"\nProjected for {args.nodes} nodes x {args.pages_per_s:,} pages/s "
        f"({pages_s:,} pages/s, {results_s:,} results/s):\n"
    )
    print("| | Redis commands/s | Redis CPU (cores) | S3 GET/s | S3 PUT/s | S3 requests/s |")
    print("|---|---|---|---|---|---|")
    for (fig, *_), row in zip(rows, projected, strict=True):
        print(
            f"| {fig['label']} | {row[0]:,.0f} | {row[1]:.2f} | {row[2]:,.0f} | "
            f"{row[3]:,.0f} | {row[4]:,.0f} |"
        )


if __name__ == "__main__":
    main()
