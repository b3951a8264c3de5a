"""Test helpers shipped with tore_nb: real servers on loopback, the tier contract suite, and a
fault-injecting tier.

`RedisServer` starts a real `redis-server` on a free loopback port in a temporary directory and
stops it by PID (it can also be paused with SIGSTOP, killed and restarted); `RedisClusterServers`
joins three of them into a Redis Cluster with `redis-cli --cluster create`. `MotoS3` runs moto's
ThreadedMotoServer on 127.0.0.1. `TierContract` is a pytest mixin: subclass it and provide a
`tier` fixture to run the same tests against any Tier implementation, third-party ones included.

>>> from tore_nb.tiers import NullTier
>>> FlakyTier(NullTier()).name
'null'
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, cast

from .errors import TierUnavailable
from .tiers.base import (
    MISSING,
    LockingTier,
    NamingTier,
    ObjectTier,
    Tier,
    TierUsage,
    capabilities_of,
)

__all__ = [
    "FlakyTier",
    "MotoS3",
    "RedisClusterServers",
    "RedisServer",
    "S3Proxy",
    "TierContract",
    "free_port",
]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A private redis-server process on loopback, for tests and demos.

    >>> RedisServer.available() in (True, False)
    True
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        password: str | None = None,
        maxmemory: str | None = None,
        policy: str = "allkeys-lru",
        extra_args: Sequence[str] = (),
    ) -> None:
        self.port = port or free_port()
        self.extra_args = list(extra_args)
        self.password = password
        self.maxmemory = maxmemory
        self.policy = policy
        self.dir = Path(tempfile.mkdtemp(prefix="tore-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def binary() -> str | None:
        return shutil.which("redis-server") or (
            "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
        )

    @classmethod
    def available(cls) -> bool:
        return cls.binary() is not None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 10.0) -> RedisServer:
        binary = self.binary()
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        args = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.dir),
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
            "--loglevel",
            "warning",
        ]
        if self.password:
            args += ["--requirepass", self.password]
        if self.maxmemory:
            args += ["--maxmemory", self.maxmemory, "--maxmemory-policy", self.policy]
        args += self.extra_args
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(
                        b"PING\r\n"
                        if not self.password
                        else f"AUTH {self.password}\r\nPING\r\n".encode()
                    )
                    got = b""
                    while b"PONG" not in got:
                        chunk = s.recv(64)
                        if not chunk:
                            break
                        got += chunk
                    if b"PONG" in got:
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.resume()
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL the server (a crash)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def pause(self) -> None:
        """SIGSTOP: the server accepts connections but never answers."""
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)

    def restart(self) -> RedisServer:
        """Kill and start again, empty, on the same port."""
        self.kill()
        return self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class RedisClusterServers:
    """A Redis Cluster of `masters` private redis-server processes on loopback (no replicas).

    Each node gets a free client port and a free cluster-bus port (`cluster-port`, so that
    port + 10000 need not be free) and its `nodes.conf` in its own temporary directory;
    `redis-cli --cluster create` assigns the slots. `close()` stops only the processes it
    started, by PID. `url` is a `redis+cluster://` URL that `RedisTier` reads as a cluster.

    >>> RedisClusterServers.available() in (True, False)
    True
    """

    def __init__(self, masters: int = 3) -> None:
        self.nodes = [
            RedisServer(
                extra_args=[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-port",
                    str(free_port()),
                    "--cluster-node-timeout",
                    "5000",
                ]
            )
            for _ in range(masters)
        ]

    @staticmethod
    def available() -> bool:
        return RedisServer.available() and shutil.which("redis-cli") is not None

    @property
    def ports(self) -> list[int]:
        return [n.port for n in self.nodes]

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    def start(self, timeout: float = 60.0) -> RedisClusterServers:
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError("redis-cli is not installed (apt-get install redis-tools)")
        try:
            for node in self.nodes:
                node.start()
            nodes = [f"127.0.0.1:{p}" for p in self.ports]
            subprocess.run(
                [cli, "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
                check=True,
                capture_output=True,
                timeout=timeout,
            )
            self._wait_ok(time.monotonic() + timeout)
        except BaseException:
            self.close()
            raise
        return self

    def _wait_ok(self, deadline: float) -> None:
        """Until every node says cluster_state:ok (slots assigned and gossip agreed)."""
        waiting = list(self.ports)
        while waiting:
            if time.monotonic() > deadline:
                raise RuntimeError(f"Redis Cluster not ok on ports {waiting}")
            waiting = [p for p in waiting if b"cluster_state:ok" not in _ask(p, b"CLUSTER INFO")]
            if waiting:
                time.sleep(0.05)

    def flush(self) -> None:
        """Empty every node (FLUSHALL on each master)."""
        for port in self.ports:
            _ask(port, b"FLUSHALL")

    def close(self) -> None:
        for node in self.nodes:
            node.close()

    def __enter__(self) -> RedisClusterServers:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _ask(port: int, command: bytes) -> bytes:
    """One inline command to 127.0.0.1:`port`; its raw reply (b"" when it cannot be asked)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(command + b"\r\n")
            got = s.recv(65536)
            # a bulk reply ($<n>) may come in pieces: read until its announced length
            if got.startswith(b"$"):
                size = int(got[1 : got.index(b"\r\n")])
                while len(got) < size + len(str(size)) + 5:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    got += chunk
            return got
    except (OSError, ValueError):
        return b""


class MotoS3:
    """moto's ThreadedMotoServer on 127.0.0.1 over real HTTP, with a bucket made for you."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._server: Any = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MotoS3:
        from moto.server import ThreadedMotoServer

        os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        return self

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name="us-east-1")

    def make_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def reset(self) -> None:
        import urllib.request

        urllib.request.urlopen(
            urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST"),
            timeout=5,
        ).read()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> MotoS3:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class S3Proxy:
    """An HTTP proxy on 127.0.0.1 in front of an S3 endpoint (a `MotoS3`) that counts the
    requests by method, waits `delay` seconds before forwarding each (a slow S3), and tells
    `on_request(method, path, body_length)` of each, for finer counts.

    >>> S3Proxy.__name__
    'S3Proxy'
    """

    def __init__(
        self,
        upstream: str,
        delay: float = 0.0,
        on_request: Callable[[str, str, int], None] | None = None,
    ) -> None:
        import http.client
        import threading
        from collections import Counter
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import urlsplit

        self.delay = delay
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        target = urlsplit(upstream)
        host = target.hostname or "127.0.0.1"
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as botocore expects

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                with outer._lock:
                    outer.counts[self.command] += 1
                if on_request is not None:
                    on_request(self.command, self.path, length)
                time.sleep(outer.delay)
                conn = http.client.HTTPConnection(host, target.port, timeout=30)
                try:
                    conn.request(self.command, self.path, body=body, headers=dict(self.headers))
                    resp = conn.getresponse()
                    data = resp.read()
                finally:
                    conn.close()
                self.send_response(resp.status, resp.reason)
                skip = {"content-length", "transfer-encoding", "connection", "server", "date"}
                for k, v in resp.getheaders():
                    if k.lower() not in skip:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _forward

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def total(self) -> int:
        with self._lock:
            return sum(self.counts.values())

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class FlakyTier:
    """Wraps a tier and fails on demand: `down = True` makes every call raise TierUnavailable.

    It declares what the wrapped tier declares (shared, routed sizes, lock, key limits), except
    keeping objects: the wrapper is a store of bytes.
    """

    def __init__(self, inner: Tier, *, slow: float = 0.0) -> None:
        self.inner = inner
        self.name = inner.name
        self.max_item_bytes = inner.max_item_bytes
        self.capabilities = dataclasses.replace(capabilities_of(inner), holds_objects=False)
        self.down = False
        self.slow = slow
        self.calls = 0

    def _check(self) -> None:
        self.calls += 1
        if self.slow:
            time.sleep(self.slow)
        if self.down:
            raise TierUnavailable(f"{self.name} is down (injected)")

    def get(self, key: str) -> bytes | bytearray | memoryview | None:
        self._check()
        return self.inner.get(key)

    def set(self, key: str, value: bytes, ttl: float | None, created: float | None = None) -> None:
        self._check()
        self.inner.set(key, value, ttl, created)

    def delete(self, key: str) -> bool:
        self._check()
        return self.inner.delete(key)

    def get_many(self, keys: Sequence[str]) -> Sequence[bytes | bytearray | memoryview | None]:
        self._check()
        return self.inner.get_many(keys)

    def set_many(
        self, items: Mapping[str, bytes], ttl: float | None, created: float | None = None
    ) -> None:
        self._check()
        self.inner.set_many(items, ttl, created)

    def iter_keys(self, pattern: str = "*") -> Iterator[str]:
        self._check()
        return self.inner.iter_keys(pattern)

    def expire_older_than(self, cutoff: float) -> int:
        self._check()
        return self.inner.expire_older_than(cutoff)

    def clear(self) -> int:
        self._check()
        return self.inner.clear()

    def usage(self) -> TierUsage:
        self._check()
        return self.inner.usage()

    def key_fits(self, key: str) -> bool:
        return not self.capabilities.limited_keys or cast(NamingTier, self.inner).key_fits(key)

    def lock(self, key: str) -> AbstractContextManager[bool]:
        self._check()
        return cast(LockingTier, self.inner).lock(key)

    def close(self) -> None:
        self.inner.close()


class TierContract:
    """The behaviour every tier must have. Subclass in a test module and define a `tier` fixture
    that yields an empty tier.
    """

    def test_miss_is_none(self, tier: Tier) -> None:
        assert tier.get("absent") is None

    def test_set_get_roundtrip(self, tier: Tier) -> None:
        tier.set("k1", b"value-1", None)
        assert tier.get("k1") == b"value-1"

    def test_overwrite(self, tier: Tier) -> None:
        tier.set("k", b"a", None)
        tier.set("k", b"b", None)
        assert tier.get("k") == b"b"

    def test_binary_and_empty_values(self, tier: Tier) -> None:
        blob = bytes(range(256)) * 64
        tier.set("bin", blob, None)
        tier.set("empty", b"", None)
        assert tier.get("bin") == blob
        assert tier.get("empty") == b""

    def test_large_value(self, tier: Tier) -> None:
        blob = os.urandom(2_000_000)
        tier.set("big", blob, None)
        assert tier.get("big") == blob

    def test_delete(self, tier: Tier) -> None:
        tier.set("k", b"v", None)
        assert tier.delete("k") is True
        assert tier.get("k") is None
        assert tier.delete("k") is False

    #: a TTL short enough to wait out, long enough to read the entry back first under load
    short_ttl = 0.5

    def test_ttl_expires(self, tier: Tier) -> None:
        tier.set("short", b"v", self.short_ttl)
        tier.set("long", b"v", 60)
        assert tier.get("short") == b"v"
        time.sleep(self.short_ttl * 2)
        assert tier.get("short") is None
        assert tier.get("long") == b"v"

    def test_get_many_set_many(self, tier: Tier) -> None:
        tier.set_many({f"m{i}": str(i).encode() for i in range(20)}, None)
        got = tier.get_many([f"m{i}" for i in range(22)])
        assert got[:20] == [str(i).encode() for i in range(20)]
        assert got[20:] == [None, None]
        assert tier.get_many([]) == []

    def test_iter_keys_glob(self, tier: Tier) -> None:
        tier.set_many({"page:a:1": b"1", "page:a:2": b"2", "page:b:1": b"3"}, None)
        assert sorted(tier.iter_keys("page:a:*")) == ["page:a:1", "page:a:2"]
        assert sorted(tier.iter_keys()) == ["page:a:1", "page:a:2", "page:b:1"]

    #: how finely a tier records write times (S3's LastModified has whole seconds)
    time_resolution = 0.05

    def test_expire_older_than(self, tier: Tier) -> None:
        tier.set("old", b"v", None)
        time.sleep(self.time_resolution)
        cutoff = time.time()
        time.sleep(self.time_resolution)
        tier.set("new", b"v", None)
        assert tier.expire_older_than(cutoff) == 1
        assert tier.get("old") is None
        assert tier.get("new") == b"v"

    def test_clear_counts(self, tier: Tier) -> None:
        tier.set_many({"a": b"1", "b": b"2", "c": b"3"}, None)
        assert tier.clear() == 3
        assert tier.get("a") is None
        assert list(tier.iter_keys()) == []

    def test_usage(self, tier: Tier) -> None:
        tier.set_many({"a": b"1" * 100, "b": b"2" * 100}, None)
        usage = tier.usage()
        assert usage.entries == 2
        assert usage.size_bytes is None or usage.size_bytes >= 0

    def test_unicode_keys(self, tier: Tier) -> None:
        tier.set("clé:ünï/çødé", b"v", None)
        assert tier.get("clé:ünï/çødé") == b"v"
        assert list(tier.iter_keys("clé:*")) == ["clé:ünï/çødé"]

    def test_is_a_tier(self, tier: Tier) -> None:
        assert isinstance(tier, Tier)
        assert isinstance(tier.name, str) and tier.max_item_bytes > 0

    def test_declared_capabilities_are_offered(self, tier: Tier) -> None:
        caps = capabilities_of(tier)
        assert caps.sizes <= {"small", "large", "huge"}
        if caps.holds_objects:
            objects = cast(ObjectTier, tier)
            value = {"live": [1, 2]}
            assert objects.put("obj", value, 100, None) is True
            assert objects.lookup("obj") is value and objects.lookup("absent") is MISSING
        if caps.lock:
            with cast(LockingTier, tier).lock("k") as got:
                assert got is True
        if caps.limited_keys:
            assert cast(NamingTier, tier).key_fits("k") is True
