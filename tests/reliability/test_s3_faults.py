"""S3 answering 5xx, SlowDown, AccessDenied, or never answering: bounded retries, no blocked
call, no exception; AccessDenied disables the tier with one warning that shows no secret."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.support import SECRET
from tore_nb import CacheConfig, MultiLevelCache

from .conftest import Figures, outage_warnings, workload

pytestmark = pytest.mark.s3

ERRORS = {
    "500": (500, "InternalError", "We encountered an internal error. Please try again."),
    "503-slowdown": (503, "SlowDown", "Please reduce your request rate."),
    "403-denied": (403, "AccessDenied", "Access Denied"),
}
AWS_CANARY = "CANARY-aws-secret-7d1f"


class FaultServer:
    """A loopback HTTP server that answers every S3 request with one canned error."""

    def __init__(self, status: int, code: str, message: str) -> None:
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
            f"<Message>{message}</Message><RequestId>tore</RequestId></Error>"
        ).encode()
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                outer.requests += 1
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class SilentServer:
    """Accepts connections and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.conns: list[socket.socket] = []
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self) -> None:
        self._stop = True
        for c in self.conns:
            c.close()
        self.sock.close()


@pytest.fixture
def aws_canary(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATORETEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_CANARY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    yield AWS_CANARY


def s3_cache(tmp_path: Path, url: str) -> MultiLevelCache:
    cfg = CacheConfig(
        disk_cache_path=str(tmp_path / "d"),
        s3_cache_bucket="b",
        s3_endpoint_url=url,
        s3_cache_region="us-east-1",
        memory_enabled=False,
        disk_enabled=False,
        breaker_reset_seconds=60,
    )
    return MultiLevelCache(cfg, secret=SECRET)


@pytest.mark.parametrize("fault", list(ERRORS))
def test_s3_error_answers(
    fault: str,
    tmp_path: Path,
    figures: Figures,
    aws_canary: str,
    outage_log: pytest.LogCaptureFixture,
) -> None:
    figures.scenario = f"s3_{fault}"
    server = FaultServer(*ERRORS[fault])
    try:
        cache = s3_cache(tmp_path, server.url)
        workload(cache, figures, 100)
        figures.faults = server.requests
    finally:
        server.close()
    figures.warnings = outage_warnings(outage_log)
    figures.notes.append(
        f"{server.requests} requests reached the failing endpoint for "
        f"{figures.operations} cache calls"
    )
    assert figures.exceptions == figures.corrupt_reads == 0
    assert figures.longest_call_s < 5.0
    assert figures.warnings == 1
    assert server.requests <= 6  # bounded retries, then the breaker keeps the tier away
    if fault == "403-denied":
        assert cache.breaker_state("s3") == "disabled"
        assert "AccessDenied" in outage_log.text
    assert aws_canary not in outage_log.text


def test_s3_endpoint_never_answers(
    tmp_path: Path, figures: Figures, aws_canary: str, outage_log: pytest.LogCaptureFixture
) -> None:
    server = SilentServer()
    try:
        cache = s3_cache(tmp_path, server.url)
        t0 = time.monotonic()
        workload(cache, figures, 100)
        total = time.monotonic() - t0
        figures.faults = len(server.conns)
    finally:
        server.close()
    figures.warnings = outage_warnings(outage_log)
    figures.notes.append(f"100 computations took {total:.1f} s in all with S3 silent")
    assert figures.exceptions == figures.corrupt_reads == 0
    # one call pays the read timeout (2 s) times the attempts (2) plus botocore's backoff;
    # then the breaker skips S3
    # (2 x 2 s + a backoff of up to 2 s with jitter; a loaded machine adds a little)
    assert figures.longest_call_s < 8.0
    assert total < 12.0
    assert figures.warnings == 1
    assert aws_canary not in outage_log.text


class TagDeniedServer:
    """A loopback S3 that denies a PUT carrying an object tag (no s3:PutObjectTagging) and
    takes any other PUT."""

    def __init__(self) -> None:
        self.puts: list[str | None] = []  # the x-amz-tagging header of each PUT
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                tagging = self.headers.get("x-amz-tagging")
                outer.puts.append(tagging)
                body = b""
                if tagging:
                    body = (
                        b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied'
                        b"</Code><Message>Access Denied</Message></Error>"
                    )
                self.send_response(403 if tagging else 200)
                self.send_header("ETag", '"0"')
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_s3_denied_object_tags_write_untagged_and_say_so_once(
    aws_canary: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A policy written for untagged PUTs lacks s3:PutObjectTagging: entries are still written
    (untagged, so S3 does not expire them), with one warning, and the tier is not disabled."""
    from tore_nb.tiers.s3 import S3Tier

    server = TagDeniedServer()
    tier = S3Tier(bucket="b", endpoint_url=server.url, region="us-east-1")
    try:
        with caplog.at_level("WARNING"):
            tier.set("a", b"v", 3600.0)
            tier.set("b", b"v", 3600.0)
    finally:
        tier.close()
        server.close()
    assert server.puts == ["tore_nb-expires=1d", None, None]
    assert caplog.text.count("s3:PutObjectTagging") == 1
    assert aws_canary not in caplog.text
