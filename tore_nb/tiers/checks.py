"""What the tiered cache accepts from callers: keys every tier can store, TTLs every tier can
express. A bad one is the caller's error (TypeError, ValueError), raised before any tier is
touched, never a tier outage.

>>> check_key("page:1"), check_ttl(float("inf")), check_ttl(30)
('page:1', None, 30.0)
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable

__all__ = ["FOREVER", "check_key", "check_keys", "check_ttl", "check_utf8", "plain_key"]

# TTLs from here up mean no expiry: inf, and spans that stores cannot represent (Redis PX)
FOREVER = 100 * 365.25 * 86400


def plain_key(key: object) -> str:
    """`key` as a plain str, or TypeError; str subclasses (StrEnum) become their str value."""
    if not isinstance(key, str):
        raise TypeError(f"cache keys are str, not {type(key).__name__}: {key!r:.80}")
    return str.__str__(key)


def check_utf8(key: str) -> None:
    """Raise ValueError when `key` does not encode as UTF-8 (a lone surrogate)."""
    if not key.isascii():
        try:
            key.encode()
        except UnicodeEncodeError as exc:
            raise ValueError(
                f"cache key {key!r:.80} does not encode as UTF-8 ({exc.reason})"
            ) from None


def check_key(key: object) -> str:
    """A valid key: a str that encodes as UTF-8 (so every tier can store it), else raise."""
    k = key if type(key) is str else plain_key(key)
    check_utf8(k)
    return k


def check_keys(keys: Iterable[object]) -> list[str]:
    """Valid keys, checked in one pass over their concatenation for the usual case."""
    if isinstance(keys, str):
        raise TypeError("expected an iterable of keys, not one str")
    out = list(keys)
    if out and {*map(type, out)} != {str}:
        out = [plain_key(k) for k in out]
    try:
        "".join(out).encode()  # type: ignore[arg-type]
    except UnicodeEncodeError:
        for k in out:
            check_utf8(k)  # type: ignore[arg-type]
    return out  # type: ignore[return-value]


def check_ttl(ttl: object) -> float | None:
    """A TTL in seconds, or None for no expiry (which inf also means); else raise.

    A TTL of zero or less stores an entry that is already expired.
    """
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, numbers.Real):
        raise TypeError(f"ttl is a number of seconds or None, not {type(ttl).__name__}")
    seconds = float(ttl)
    if seconds != seconds:
        raise ValueError("ttl is NaN; pass None or float('inf') for no expiry")
    if seconds >= FOREVER:
        return None
    return max(seconds, -1.0)  # -inf too: already expired, in a range every tier accepts
