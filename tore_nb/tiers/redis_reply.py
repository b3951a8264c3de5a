r"""Reading a RESP2 MGET reply straight off a redis-py connection's socket (see `RedisTier`).

redis-py spends ~3 us a key parsing an MGET reply in pure Python; `read_bulk_array` spends
~0.4 us, and hands large values over in fresh memory the codec can restore arrays into.

>>> import socket
>>> a, b = socket.socketpair()
>>> _ = a.sendall(b"*2\r\n$1\r\nx\r\n$-1\r\n")
>>> read_bulk_array(b, 2, 100, RuntimeError)
[bytearray(b'x'), None]
>>> a.close(); b.close()
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

__all__ = ["OWN", "plain_resp2", "read_bulk_array"]


def plain_resp2(conn: Any) -> bool:
    """Whether `conn` parses with redis-py's pure-Python RESP2 parser over a plain socket."""
    try:
        from redis._parsers import _RESP2Parser
    except ImportError:  # a redis-py that moved it: keep its own reading
        return False
    return type(getattr(conn, "_parser", None)) is _RESP2Parser and isinstance(
        getattr(conn, "_sock", None), socket.socket
    )


_CHUNK = 1 << 16  # bytes a recv asks for, as redis-py does
OWN = 1 << 16  # values from this size up are received into memory of their own


def read_bulk_array(
    sock: socket.socket, count: int, limit: int, error: Callable[[str], Exception]
) -> list[bytes | bytearray | memoryview | None]:
    """Read a RESP2 array of `count` bulk strings (an MGET reply) from `sock`.

    Missing keys give None. Small values come back as `bytearray` slices; from 64 KiB up a
    value is received straight into fresh memory (a writable `memoryview`) that the codec can
    hand over to restored arrays. A value over `limit` bytes is read past and returned empty,
    which the codec rejects and counts. An error reply raises `error(text)`; anything out of
    protocol raises `InvalidResponse`, and the caller drops the connection.
    """
    import redis

    buf = bytearray()
    recv = sock.recv

    def more() -> None:
        chunk = recv(_CHUNK)
        if not chunk:
            raise redis.exceptions.ConnectionError("Connection closed by server.")
        buf.extend(chunk)

    def bad(what: str) -> Exception:
        return redis.exceptions.InvalidResponse(f"Protocol error in MGET reply: {what}")

    end = buf.find(b"\r\n")
    while end < 0:
        more()
        end = buf.find(b"\r\n")
    if buf[:1] == b"-":
        raise error(buf[1:end].decode("utf-8", "replace"))
    if buf[:1] != b"*" or int(buf[1:end]) != count:
        raise bad(f"expected an array of {count}, got {bytes(buf[: min(end, 32)])!r}")
    pos = end + 2
    out: list[bytes | bytearray | memoryview | None] = []
    append = out.append
    find, startswith = buf.find, buf.startswith
    for _ in range(count):
        end = find(b"\r\n", pos)
        while end < 0:
            more()
            end = find(b"\r\n", pos)
        if buf[pos] != 36:  # "$"
            raise bad(f"expected a bulk string, got {bytes(buf[pos : min(end, pos + 32)])!r}")
        size = int(buf[pos + 1 : end])
        pos = end + 2
        if size < 0:
            append(None)
            continue
        end = pos + size
        if size > limit or (size >= OWN and end + 2 > len(buf)):
            append(_receive(sock, buf, pos, size, keep=size <= limit))
            end = 0  # buf now holds only what followed the value
        else:
            while end + 2 > len(buf):
                more()
            append(buf[pos:end])
        if not startswith(b"\r\n", end):
            while len(buf) < end + 2:
                more()
            if not startswith(b"\r\n", end):
                raise bad("a bulk string does not end in CRLF")
        pos = end + 2
    if pos != len(buf):
        raise bad("data after the reply")
    return out


def _receive(sock: socket.socket, buf: bytearray, pos: int, size: int, keep: bool) -> Any:
    """Receive a value of `size` bytes whose start is buffered at `buf[pos:]`.

    Returns it in fresh memory (uninitialised: a bytearray would be zeroed first), or, when
    not `keep`, reads past it and returns b"". Leaves in `buf` only what followed the value.
    """
    import numpy as np
    import redis

    have = min(len(buf) - pos, size)
    dst = np.empty(size if keep else 0, np.uint8).data
    if keep:
        dst[:have] = buf[pos : pos + have]
    n = have
    while n < size:
        got = sock.recv_into(dst[n:]) if keep else len(sock.recv(min(_CHUNK, size - n)))
        if not got:
            raise redis.exceptions.ConnectionError("Connection closed by server.")
        n += got
    del buf[: pos + have]
    return dst if keep else b""
