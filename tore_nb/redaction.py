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

__all__ = ["is_secret", "redact_setting", "redact_url", "redact_value", "url_problem"]

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
# a known scheme mistyped (redis//, redis:/): any other word before a ':' may be a password
_LOOSE_SCHEME = re.compile(r"(?i)(?:rediss?|unix|https?|tcp)(?::/*|/+)")
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
    return _redact_text(url, whole=False)


def _redact_text(url: str, whole: bool) -> str:
    """`redact_url`; `whole`: the text is one value, so a password without an '@' after it
    runs to the end (in a message, to the next space)."""
    starts = [m.start() for m in _SCHEME.finditer(url)]
    if not starts:
        return url
    ends = [*starts[1:], len(url)]
    return url[: starts[0]] + "".join(
        _redact_one(url[a:b], whole) for a, b in zip(starts, ends, strict=True)
    )


def redact_value(text: str) -> str:
    """A setting's value as an error message may quote it, whatever its shape: a URL as by
    `redact_url`; a mistyped one (no "scheme://": `redis//:pw@host`, `:pw@host`, `pw@host`)
    hidden up to its last '@', user name and all (which part is the password is anyone's
    guess), from the end of what looks like a scheme (else from its start).

    >>> redact_value("redis//:hunter2@host:6379/0"), redact_value(":hunter2@host")
    ('redis//***@host:6379/0', '***@host')
    >>> redact_value("hunter2@host"), redact_value("localhost"), redact_value("redis//:hunter2")
    ('***@host', 'localhost', 'redis//:***')
    """
    if _SCHEME.match(text):
        return _redact_text(text, whole=True)
    at = text.rfind("@")
    if at >= 0:
        loose = _LOOSE_SCHEME.match(text)
        start = loose.end() if loose and loose.end() <= at else 0
        return text[:start] + "***" + text[at:]
    # no '@': only the shapes of an empty user name (":pw", "redis//:pw") carry a password
    colon = 0 if text.startswith(":") else text.find("//:") + 2 if "//:" in text else -1
    if colon < 0:
        return text
    return text[: colon + 1] + "***"


def url_problem(url: str) -> str | None:
    """Why a client would not read `url` as written (None: it would): no "scheme://", or an
    unencoded '/', '?', '#', '[' or ']' in its user name or password, which moves the rest
    of the password into the host, port or path (and so into connection errors).

    >>> url_problem("redis://:pw@host:6379/0") is None, url_problem("redis://:p/w@host/0")[:20]
    (True, 'its password or user')
    """
    scheme, sep, rest = url.partition("://")
    if not sep or not _SCHEME.fullmatch(scheme + sep):
        return "it does not start with a scheme:// (e.g. redis://host:6379/0)"
    if _authority(scheme, sep, _SECRET_PARAM.sub(r"\1***", rest)) is None:
        return (
            "its password or user name holds an unencoded '/', '?', '#', '[' or ']': "
            "percent-encode it (e.g. '/' as %2F)"
        )
    return None


def _authority(scheme: str, sep: str, rest: str) -> str | None:
    """The authority (user:password@host:port) of a URL split so, when it is well formed:
    every '@' of the URL in it, and a host before any ':' of it; else None."""
    try:
        parts = urlsplit(scheme + sep + rest)
        _ = parts.port  # ValueError when the "port" is not a number: maybe a piece of password
        netloc = parts.netloc
    except ValueError:
        return None
    if not rest.startswith(netloc):
        return None
    if netloc and "@" in rest[len(netloc) :]:
        return None  # an '@' past the authority: the password had a '/', '?' or '#' before it
    if "@" not in netloc and (netloc.startswith(":") or netloc.endswith(":")):
        return None  # "redis://:pw" with a '/', '?' or '#' in pw: no host, a "port", the rest
    return netloc


def _redact_one(url: str, whole: bool = False) -> str:
    scheme, sep, rest = url.partition("://")
    rest = _SECRET_PARAM.sub(r"\1***", rest)
    netloc = _authority(scheme, sep, rest)
    if netloc is not None:
        user, sign, host = netloc.rpartition("@")
        if ":" in user:
            user = user.split(":", 1)[0] + ":***"
        return scheme + sep + user + sign + host + rest[len(netloc) :]
    # malformed: hide from the first ':' to the last '@' (or, with no '@', to a space)
    colon, at = rest.find(":"), rest.rfind("@")
    if colon < 0:
        return scheme + sep + rest
    if at < colon:
        space = None if whole else re.search(r"\s", rest[colon:])
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
    """A setting as it may be shown: "***" for a secret, a URL's password hidden (a URL or
    host setting's whatever its shape: see `redact_value`), else as is.

    >>> redact_setting("redis_password", "pw"), redact_setting("redis_url", "redis://:pw@h/0")
    ('***', 'redis://:***@h/0')
    >>> redact_setting("redis_url", "redis//:pw@h/0")
    'redis//***@h/0'
    """
    if is_secret(name):
        return "***"
    if not isinstance(value, str):
        return value
    return redact_value(value) if "url" in name or "host" in name else redact_url(value)
