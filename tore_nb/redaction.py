"""Secrets kept out of what tore_nb shows: reprs, error messages, `%tcache config`, logs.

One place for the rule, shared by the configuration, the tiers (their error messages quote
URLs) and the magics.

>>> redact_url("redis://:hunter2@localhost:6379/0")
'redis://:***@localhost:6379/0'
>>> redact_setting("redis_password", "pw")
'***'
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

__all__ = ["is_secret", "redact_setting", "redact_url"]

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
_SECRET_PARAM = re.compile(
    r"([?&;][^=&#;]*(?:pass|pwd|secret|token|auth|credential|key)[^=&#;]*=)[^&#;]*", re.I
)


def redact_url(url: str | None) -> str | None:
    """Hide the passwords of a URL such as redis://user:secret@host:6379/0, or of text quoting one.

    The password is what redis-py reads: everything between the first ':' of the userinfo and
    the last '@' of the authority. Password-like query parameters (?password=) are hidden too,
    and a URL too malformed to parse (an unencoded '/', '?' or '#' in its password) is hidden from
    its first ':' to its last '@'. In text (an error message) every URL is hidden so.

    >>> redact_url("redis://:hunter2@localhost:6379/0")
    'redis://:***@localhost:6379/0'
    >>> redact_url("redis://user:p@ss@host/0?password=pw&db=1")
    'redis://user:***@host/0?password=***&db=1'
    """
    if url is None:
        return None
    starts = [m.start() for m in _SCHEME.finditer(url)]
    if not starts:
        return url
    ends = [*starts[1:], len(url)]
    return url[: starts[0]] + "".join(
        _redact_one(url[a:b]) for a, b in zip(starts, ends, strict=True)
    )


def _redact_one(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    rest = _SECRET_PARAM.sub(r"\1***", rest)
    try:
        parts = urlsplit(scheme + sep + rest)
        _ = parts.port  # ValueError when the "port" is not a number: maybe a piece of password
        netloc = parts.netloc
    except ValueError:
        netloc = None
    # well formed: every '@' is in the authority, or it has no ':' that a password could follow
    if (
        netloc is not None
        and rest.startswith(netloc)
        and ("@" in netloc or ":" not in netloc or "@" not in rest)
    ):
        user, sign, host = netloc.rpartition("@")
        if ":" in user:
            user = user.split(":", 1)[0] + ":***"
        return scheme + sep + user + sign + host + rest[len(netloc) :]
    # malformed: hide from the first ':' to the last '@' (or, with no '@', to a space)
    colon, at = rest.find(":"), rest.rfind("@")
    if colon < 0:
        return scheme + sep + rest
    if at < colon:
        space = re.search(r"\s", rest[colon:])
        at = colon + space.start() if space else len(rest)
    return scheme + sep + rest[: colon + 1] + "***" + rest[at:]


_SECRET_FIELDS = frozenset({"redis_password"})


def is_secret(name: str) -> bool:
    """Whether a setting named so is a secret, shown only as "***".

    >>> is_secret("redis_password"), is_secret("redis_url")
    (True, False)
    """
    return name in _SECRET_FIELDS or "password" in name.lower() or "secret" in name.lower()


def redact_setting(name: str, value: Any) -> Any:
    """A setting as it may be shown: "***" for a secret, a URL's password hidden, else as is.

    >>> redact_setting("redis_password", "pw"), redact_setting("redis_url", "redis://:pw@h/0")
    ('***', 'redis://:***@h/0')
    """
    if is_secret(name):
        return "***"
    return redact_url(value) if isinstance(value, str) else value
