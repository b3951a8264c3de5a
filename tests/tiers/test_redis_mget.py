"""The Redis tier reads MGET replies itself: every shape of reply, cut anywhere, and faults.

The reader is checked over a socket pair against replies cut into arbitrary pieces, then
against a real redis-server, paused and killed mid-use.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support import SECRET
from tore_nb import CacheConfig, MultiLevelCache
from tore_nb.errors import TierUnavailable
from tore_nb.testing import RedisServer
from tore_nb.tiers.redis import RedisTier
from tore_nb.tiers.redis_reply import OWN as _OWN
from tore_nb.tiers.redis_reply import read_bulk_array as _read_bulk_array

redis = pytest.importorskip("redis")


def encode(values: Sequence[bytes | None]) -> bytes:
    parts = [b"*%d\r\n" % len(values)]
    for v in values:
        parts.append(b"$-1\r\n" if v is None else b"$%d\r\n%b\r\n" % (len(v), v))
    return b"".join(parts)


class ErrorReply(Exception):
    pass


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    b.settimeout(5)
    yield a, b
    a.close()
    b.close()


def read(
    pair: tuple[socket.socket, socket.socket],
    wire: bytes,
    count: int,
    cuts: Sequence[int] = (),
    limit: int = 1 << 30,
    close: bool = False,
) -> list[bytes | bytearray | memoryview | None]:
    """Send `wire` in pieces cut at `cuts` from a thread, and read it back."""
    a, b = pair

    def send() -> None:
        last = 0
        for cut in [*sorted(set(cuts)), len(wire)]:
            if cut > last:
                a.sendall(wire[last:cut])
                last = cut
                time.sleep(0)
        if close:
            a.shutdown(socket.SHUT_WR)

    t = threading.Thread(target=send)
    t.start()
    try:
        return _read_bulk_array(b, count, limit, ErrorReply)
    finally:
        t.join(10)


sizes = st.one_of(st.integers(0, 40), st.integers(_OWN - 3, _OWN + 3), st.integers(_OWN, 3 * _OWN))
replies = st.lists(st.one_of(st.none(), sizes), min_size=1, max_size=12)


@settings(max_examples=60, deadline=None)
@given(shape=replies, data=st.data())
def test_any_reply_cut_anywhere_reads_back(shape: list[int | None], data: st.DataObject) -> None:
    values = [None if n is None else bytes([i % 251]) * n for i, n in enumerate(shape)]
    wire = encode(values)
    cuts = data.draw(st.lists(st.integers(1, len(wire) - 1), max_size=8)) if len(wire) > 1 else []
    a, b = socket.socketpair()
    b.settimeout(5)
    try:
        got = read((a, b), wire, len(values), cuts)
    finally:
        a.close()
        b.close()
    assert [None if g is None else bytes(g) for g in got] == values
    for g, v in zip(got, values, strict=True):
        if v is not None:
            assert isinstance(g, bytearray | memoryview) and not memoryview(g).readonly


def test_large_values_land_in_memory_of_their_own(pair: tuple[socket.socket, ...]) -> None:
    values: list[bytes | None] = [b"a" * 10, b"b" * (3 * _OWN), None, b"c" * 5]
    got = read(pair, encode(values), 4, cuts=[20, 30, 5000])  # type: ignore[arg-type]
    assert isinstance(got[1], memoryview) and got[1].nbytes == 3 * _OWN
    assert [None if g is None else bytes(g) for g in got] == values


def test_oversize_value_is_read_past_and_handed_back_empty(pair: tuple[socket.socket, ...]) -> None:
    values: list[bytes | None] = [b"x" * 100, b"y" * 200_000, b"z" * 100, b"w" * 150]
    got = read(pair, encode(values), 4, cuts=[50, 400], limit=150)  # type: ignore[arg-type]
    assert [None if g is None else bytes(g) for g in got] == [
        b"x" * 100,
        b"",
        b"z" * 100,
        b"w" * 150,
    ]


def test_error_reply_raises_the_mapped_error(pair: tuple[socket.socket, ...]) -> None:
    with pytest.raises(ErrorReply, match="NOAUTH Authentication required"):
        read(pair, b"-NOAUTH Authentication required.\r\n", 3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("wire", "count", "match"),
    [
        (b"*2\r\n$1\r\na\r\n$1\r\nb\r\n", 3, "expected an array of 3"),
        (b"+OK\r\n", 1, "expected an array of 1"),
        (b"*1\r\n:5\r\n", 1, "expected a bulk string"),
        (b"*1\r\n$3\r\nabcXY", 1, "does not end in CRLF"),
        (b"*1\r\n$1\r\na\r\n$1\r\n", 1, "data after the reply"),
    ],
)
def test_out_of_protocol_replies_raise(
    pair: tuple[socket.socket, ...], wire: bytes, count: int, match: str
) -> None:
    with pytest.raises(redis.exceptions.InvalidResponse, match=match):
        read(pair, wire, count)  # type: ignore[arg-type]


@pytest.mark.parametrize("big", [False, True])
def test_closed_mid_reply_is_a_connection_error(pair: tuple[socket.socket, ...], big: bool) -> None:
    wire = encode([b"a" * 10, b"b" * (2 * _OWN if big else 500)])
    with pytest.raises(redis.exceptions.ConnectionError, match="closed"):
        read(pair, wire[: len(wire) - 100], 2, close=True)  # type: ignore[arg-type]


# -- against a real redis-server ---------------------------------------------------------------


@pytest.mark.redis
def test_tier_reads_replies_itself_and_agrees_with_redis_py(redis_url: str) -> None:
    tier = RedisTier(url=redis_url, prefix="mget-test|")
    items = {
        "small": b"s" * 100,
        "empty": b"",
        "big": bytes(range(256)) * 4000,  # 1 MB, past the own-memory threshold
        "line\r\nbreak and spaces": b"crlf in the key",
        "ключ-✓": b"non-ascii key",
    }
    tier.set_many(items, None)
    keys = [*items, "absent"]
    got = tier.get_many(keys)
    assert tier._own_reader is True  # this redis-py is read around, as intended
    assert [None if g is None else bytes(g) for g in got] == [*items.values(), None]
    raw = redis.Redis.from_url(redis_url).mget([tier.prefix + k for k in keys])
    # values that are no tore_nb entry are stored behind a 16-byte header carrying the write time
    assert all(r is None or r.startswith(b"TNBr") for r in raw)
    assert [None if g is None else bytes(g) for g in got] == [r and r[16:] for r in raw]
    tier.close()


@pytest.mark.redis
def test_cache_get_many_through_the_reader(tmp_path: Path, redis_url: str) -> None:
    import numpy as np

    cfg = CacheConfig(
        disk_cache_path=str(tmp_path), redis_url=redis_url, memory_enabled=False, disk_enabled=False
    )
    cache = MultiLevelCache(cfg, secret=SECRET)
    values = {f"a{i}": np.arange(i * 5000, dtype=np.float64) for i in range(1, 30)}
    values |= {f"d{i}": {"i": i, "text": "t" * i} for i in range(30)}
    cache.set_many(values)
    got = cache.get_many([*values, "absent"])
    assert set(got) == set(values)
    for k, v in values.items():
        if isinstance(v, np.ndarray):
            assert np.array_equal(got[k], v) and got[k].flags.writeable
        else:
            assert got[k] == v
    cache.close()


@pytest.mark.redis
def test_reader_survives_a_hung_and_a_killed_server(private_redis: RedisServer) -> None:
    tier = RedisTier(url=private_redis.url, prefix="fault|", socket_timeout=0.3)
    items = {f"k{i}": bytes([i]) * (i * 3000) for i in range(60)}  # some past 64 KiB
    tier.set_many(items, None)
    keys = list(items)
    assert [bytes(v) if v is not None else None for v in tier.get_many(keys)] == list(
        items.values()
    )

    private_redis.pause()
    try:
        t0 = time.monotonic()
        with pytest.raises(TierUnavailable):
            tier.get_many(keys)
        assert time.monotonic() - t0 < 2.0
    finally:
        private_redis.resume()
    # the late reply went to a dropped connection: the next read is whole and in step
    for _ in range(3):
        assert [bytes(v) if v is not None else None for v in tier.get_many(keys)] == list(
            items.values()
        )

    private_redis.kill()
    with pytest.raises(TierUnavailable):
        tier.get_many(keys)
    private_redis.start()
    assert tier.get_many(keys) == [None] * len(keys)  # a fresh, empty server
    tier.close()


@pytest.mark.redis
def test_resp3_forced_in_the_url_keeps_redis_pys_own_mget(redis_url: str) -> None:
    tier = RedisTier(url=redis_url + "?protocol=3", prefix="resp3|")
    tier.set_many({"a": b"1", "b": b"2" * 100_000}, None)
    assert [bytes(v) if v is not None else None for v in tier.get_many(["a", "b", "c"])] == [
        b"1",
        b"2" * 100_000,
        None,
    ]
    assert tier._own_reader is False
    tier.close()
