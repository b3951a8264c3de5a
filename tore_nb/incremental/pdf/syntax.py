"""PDF object syntax: the lexer and the object parser of the fast reader.

`tokenize` yields the tokens of object syntax; `parse_object` reads one object (a dictionary,
array, string, number, name, reference or keyword) into plain Python values: `Name` (a str),
`Ref`, `Stream`, dict, list, int, float, bytes, bool and None. Dictionaries nested at most a few
levels are matched by a handful of regexes rather than token by token, and parsed once per
distinct text when the caller keeps a memo. `used_names` lists the names a content stream uses.

>>> [t for t, _ in tokenize(b"<< /Type /Font /W [1 2.5] /F 3 0 R >>")]
['<<', 'name', 'name', 'name', '[', 'num', 'num', ']', 'name', 'ref', '>>']
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

__all__ = [
    "CACHE_SIZE",
    "WHITESPACE",
    "Name",
    "Ref",
    "Stream",
    "Unreadable",
    "parse_object",
    "tokenize",
    "used_names",
]

WHITESPACE = b"\x00\t\n\x0c\r "
# the most entries each memo of tokens and their parts keeps (names, keys, numbers)
CACHE_SIZE = 65536
_TOKEN = re.compile(
    rb"""
    (?:[\x00\t\n\x0c\r ]+|%[^\r\n]*)*
    (?:
    (?P<ref>(?P<rn>\d+)[\x00\t\n\x0c\r ]+(?P<rg>\d+)[\x00\t\n\x0c\r ]+R
      (?![^\x00\t\n\x0c\r ()<>\[\]{}/%]))
  | (?P<num>[+-]?(?:\d+\.?\d*|\.\d+))
  | (?P<name>/[^\x00\t\n\x0c\r ()<>\[\]{}/%]*)
  | (?P<dopen><<) | (?P<dclose>>>)
  | (?P<aopen>\[) | (?P<aclose>\])
  | (?P<hex><[0-9A-Fa-f\x00\t\n\x0c\r ]*>)
  | (?P<lit>\((?:[^\\()]|\\.|\((?:[^\\()]|\\.|\((?:[^\\()]|\\.)*\))*\))*\))
  | (?P<kw>[A-Za-z_]+)
  | (?P<ws>\Z)
    )
    """,
    re.X | re.S,
)
_KINDS = {"dopen": "<<", "dclose": ">>", "aopen": "[", "aclose": "]"}
# atomic groups and possessive repeats: a failed match gives up at once, without backtracking
_NUM_ARRAY = re.compile(
    rb"\[((?>[\x00\t\n\x0c\r ]*[+-]?(?:\d+\.?\d*|\.\d+)(?![\d.]))*+)[\x00\t\n\x0c\r ]*\]"
)
_NAME_ESC = re.compile(rb"#([0-9A-Fa-f]{2})")
_LIT_SPECIAL = re.compile(rb"[()\\]")
_ESCAPES = {
    b"n": b"\n",
    b"r": b"\r",
    b"t": b"\t",
    b"b": b"\b",
    b"f": b"\f",
    b"(": b"(",
    b")": b")",
    b"\\": b"\\",
}
_NAME_IN_CONTENT = re.compile(rb"/([^\x00\t\n\x0c\r ()<>\[\]{}/%]*)")


class Name(str):
    """A PDF name such as /Font (a str, told apart from strings).

    >>> Name("/Font") == "/Font", type(parse_object(b"/Font")[0]).__name__
    (True, 'Name')
    """

    __slots__ = ()


class Ref:
    """An indirect reference `n g R`.

    >>> parse_object(b"[4 0 R]")[0]
    [Ref(4, 0)]
    """

    __slots__ = ("generation", "idnum")

    def __init__(self, idnum: int, generation: int) -> None:
        self.idnum, self.generation = idnum, generation

    def __repr__(self) -> str:
        return f"Ref({self.idnum}, {self.generation})"


class Stream(dict[str, Any]):
    """A stream: its dictionary and its raw (still encoded) data.

    >>> s = Stream({"/Length": 3}, b"abc"); s["/Length"], s.data
    (3, b'abc')
    """

    __slots__ = ("data",)

    def __init__(self, d: dict[str, Any], data: bytes) -> None:
        super().__init__(d)
        self.data = data


class Unreadable(Exception):
    """The raw reader cannot read this text as an object (pypdf is asked instead)."""


def tokenize(data: bytes, pos: int = 0) -> Iterator[tuple[str, Any]]:
    """(kind, value) tokens of PDF object syntax, from `pos` on (for inspection and tests).

    >>> list(tokenize(b"/Name 12 (a b)"))
    [('name', b'/Name'), ('num', b'12'), ('str', b'a b')]
    """
    n = len(data)
    while pos < n:
        m = _TOKEN.match(data, pos)
        if m is None:
            raise Unreadable(f"unexpected byte {data[pos : pos + 1]!r} at {pos}")
        kind = m.lastgroup or "ws"
        pos = m.end()
        if kind == "ws":
            continue
        text = m.group(kind)
        if kind == "lit":
            yield "str", _unescape(text[1:-1])
        elif kind == "ref":
            yield "ref", Ref(int(m.group("rn")), int(m.group("rg")))
        elif kind in ("num", "name", "hex", "kw"):
            yield kind, text
        else:
            yield _KINDS[kind], None


def _literal(data: bytes, pos: int) -> tuple[bytes, int]:
    """A literal string starting after its '(': the unescaped bytes and the end position."""
    depth, out, start = 1, bytearray(), pos
    for m in _LIT_SPECIAL.finditer(data, pos):
        i = m.start()
        if i < start:
            continue
        c = data[i : i + 1]
        out += data[start:i]
        if c == b"\\":
            nxt = data[i + 1 : i + 2]
            if nxt in _ESCAPES:
                out += _ESCAPES[nxt]
                start = i + 2
            elif nxt.isdigit():
                octal = re.match(rb"[0-7]{1,3}", data[i + 1 : i + 4])
                digits = octal.group() if octal else nxt
                out.append(int(digits, 8) & 0xFF)
                start = i + 1 + len(digits)
            elif nxt in (b"\r", b"\n"):
                start = i + 2 + (nxt == b"\r" and data[i + 2 : i + 3] == b"\n")
            else:
                start = i + 1
        elif c == b"(":
            depth += 1
            out += c
            start = i + 1
        else:
            depth -= 1
            if depth == 0:
                return bytes(out), i + 1
            out += c
            start = i + 1
    raise Unreadable("unterminated string")


def _value_pattern(cap: bool) -> bytes:
    """One scalar value, or an array of numbers, as a regex (capturing each kind when `cap`)."""
    o = b"(" if cap else b"(?:"
    ws, reg = rb"[\x00\t\n\x0c\r ]", rb"[^\x00\t\n\x0c\r ()<>\[\]{}/%]"
    number = rb"[+-]?(?:\d+\.?\d*|\.\d+)"
    after = rb"(?=[\x00\t\n\x0c\r /\]>]|\Z)"
    lit = rb"\((?:[^\\()]|\\.|\((?:[^\\()]|\\.|\((?:[^\\()]|\\.)*\))*\))*\)"
    return (
        rb"(?:" + o + rb"\d+)" + ws + b"+" + o + rb"\d+)" + ws + b"+R(?!" + reg + b")"
        b"|" + o + number + b")" + after + b"|" + o + b"/" + reg + b"*)"
        b"|" + o + lit + b")|" + o + rb"<[0-9A-Fa-f\x00\t\n\x0c\r ]*>)"
        b"|"
        + o
        + b"true|false|null)"
        + after
        + rb"|\["
        + o
        + rb"(?>"
        + ws
        + b"*"
        + number
        + rb"(?![\d.]))*+)"
        + ws
        + rb"*\])"
    )


_WSS = rb"[\x00\t\n\x0c\r ]*"
_KEY = rb"/[^\x00\t\n\x0c\r ()<>\[\]{}/%]*"
_FLAT_DEPTH = 4


def _nested_patterns() -> tuple[list[bytes], list[bytes]]:
    """Values nested up to `_FLAT_DEPTH` dictionaries or arrays deep, without and with groups."""
    plain, grouped = [_value_pattern(False)], [_value_pattern(True)]
    for _ in range(_FLAT_DEPTH):
        inner = plain[-1]
        body_d = rb"(?>" + _WSS + _KEY + _WSS + inner + rb")*+" + _WSS
        body_a = rb"(?>" + _WSS + inner + rb")*+" + _WSS
        grouped.append(rb"(?:" + grouped[0] + rb"|(<<" + body_d + rb">>)|(\[" + body_a + rb"\]))")
        plain.append(rb"(?:" + inner + rb"|<<" + body_d + rb">>|\[" + body_a + rb"\])")
    return plain, grouped


_PLAIN, _GROUPED = _nested_patterns()
# entries of a dictionary and items of an array whose values nest at most `depth` levels
_ENTRY = [re.compile(_WSS + b"(" + _KEY + b")" + _WSS + g, re.S) for g in _GROUPED]
_ITEM = [re.compile(_WSS + g, re.S) for g in _GROUPED]
# a dictionary or array of values nested at most _FLAT_DEPTH levels: a few regexes, no token loop
# (a dictionary's entries are matched one by one with `_ENTRY[_FLAT_DEPTH - 1]`, then its '>>')
_FLAT_ARRAY = re.compile(
    rb"\[((?>" + _WSS + _PLAIN[_FLAT_DEPTH - 1] + rb")*+)" + _WSS + rb"\]", re.S
)
_DICT_CLOSE = re.compile(_WSS + b">>")
_NAMES: dict[bytes, Name] = {}
_KEYS: dict[bytes, str] = {}


def _name(raw: bytes) -> Name:
    """The Name for a name token (`raw` starts with '/'); names repeat, so they are cached."""
    got = _NAMES.get(raw)
    if got is None:
        got = Name(_name_text(raw[1:]))
        if len(_NAMES) < CACHE_SIZE:
            _NAMES[raw] = got
    return got


def _name_text(body: bytes) -> str:
    """'/' and a name's body (the bytes after its '/'), #xx escapes undone."""
    if b"#" in body:
        body = _NAME_ESC.sub(lambda g: bytes([int(g.group(1), 16)]), body)
    return "/" + body.decode("utf-8", "surrogateescape")


def _key(raw: bytes) -> str:
    got = _KEYS.get(raw)
    if got is None:
        got = str(_name(raw))
        if len(_KEYS) < CACHE_SIZE:
            _KEYS[raw] = got
    return got


_NUMBERS: dict[bytes, int | float] = {}


def _number(token: bytes) -> int | float:
    """The value of a number token: a float where it has a '.', else an int (cached)."""
    got = _NUMBERS.get(token)
    if got is None:
        got = float(token) if b"." in token else int(token)
        if len(_NUMBERS) < CACHE_SIZE:
            _NUMBERS[token] = got
    return got


def _numbers(text: bytes) -> list[int | float]:
    """The values of the number tokens in `text` (the body of an array of numbers)."""
    get = _NUMBERS.get
    return [v if (v := get(t)) is not None else _number(t) for t in text.split()]


def _hex(token: bytes) -> bytes:
    digits = re.sub(rb"[^0-9A-Fa-f]", b"", token[1:-1])
    return bytes.fromhex((digits + b"0" if len(digits) % 2 else digits).decode())


def _scalar(g: Any) -> Any:
    """The value of one `_value_pattern(True)` match, given as its groups."""
    rn, rg, nu, nm, lt, hx, kw, arr = g[:8]
    if nm:
        return _name(nm)
    if nu:
        return _number(nu)
    if rn:
        return Ref(int(rn), int(rg))
    if lt:
        return _unescape(lt[1:-1])
    if hx:
        return _hex(hx)
    if kw:
        return True if kw == b"true" else (False if kw == b"false" else None)
    return _numbers(arr)


def _flat_value(g: Any, depth: int) -> Any:
    """The value of one `_GROUPED[depth]` match: a scalar, or a nested dictionary or array."""
    if depth:
        if g[8]:
            return _flat_dict(g[8][2:-2], depth - 1)
        if g[9]:
            return _flat_array(g[9][1:-1], depth - 1)
    return _scalar(g)


def _flat_dict(body: bytes, depth: int = _FLAT_DEPTH - 1) -> dict[str, Any]:
    return _dict_of(_ENTRY[depth].findall(body), depth)


def _dict_of(entries: list[Any], depth: int) -> dict[str, Any]:
    """The dictionary of `_ENTRY[depth]` matches, given as their groups."""
    # names, numbers and references (most values) are read inline; see `_scalar`
    out: dict[str, Any] = {}
    keys, names = _KEYS, _NAMES
    for g in entries:
        k = g[0]
        key = keys.get(k) or _key(k)
        if g[4]:
            out[key] = names.get(g[4]) or _name(g[4])
        elif g[3]:
            out[key] = _number(g[3])
        elif g[1]:
            out[key] = Ref(int(g[1]), int(g[2]))
        else:
            out[key] = _flat_value(g[1:], depth)
    return out


def _flat_array(body: bytes, depth: int = _FLAT_DEPTH - 1) -> list[Any]:
    out: list[Any] = []
    names = _NAMES
    for g in _ITEM[depth].findall(body):
        if g[3]:
            out.append(names.get(g[3]) or _name(g[3]))
        elif g[2]:
            out.append(_number(g[2]))
        elif g[0]:
            out.append(Ref(int(g[0]), int(g[1])))
        else:
            out.append(_flat_value(g, depth))
    return out


_K_REF, _K_NUM, _K_NAME, _K_DOPEN, _K_DCLOSE, _K_AOPEN, _K_ACLOSE = 1, 4, 5, 6, 7, 8, 9
_K_HEX, _K_LIT, _K_KW, _K_WS = 10, 11, 12, 13


def parse_object(
    data: bytes, pos: int = 0, end: int | None = None, memo: dict[bytes, Any] | None = None
) -> tuple[Any, int | None]:
    """The first object at `pos`; the second value is where stream data starts, if any.

    >>> parse_object(b"<< /Type /Page /Rotate 90 /Contents 4 0 R >>")
    ({'/Type': '/Page', '/Rotate': 90, '/Contents': Ref(4, 0)}, None)

    With a `memo`, dictionaries nested at most `_FLAT_DEPTH` levels are parsed once per distinct
    text and their values shared (nothing mutates a parsed object); the returned object itself
    is always a fresh one.
    """
    stack: list[Any] = []
    keys: list[Any] = []
    root: Any = _NONE
    stop = len(data) if end is None else end
    match, numbers = _TOKEN.match, _NUM_ARRAY.match
    entry_scanner = _ENTRY[_FLAT_DEPTH - 1].scanner  # type: ignore[attr-defined]
    dict_close, flat_array = _DICT_CLOSE.match, _FLAT_ARRAY.match
    while pos < stop:
        m = match(data, pos, stop)
        if m is None:
            raise Unreadable(f"unexpected byte at {pos}")
        kind = m.lastindex
        pos = m.end()
        value: Any
        if kind == _K_NAME:
            value = _name(m.group(_K_NAME))
        elif kind == _K_NUM:
            tok = m.group(_K_NUM)
            value = _number(tok)
        elif kind == _K_REF:
            value = Ref(int(m.group(2)), int(m.group(3)))
        elif kind == _K_DOPEN:
            # a dictionary nested at most _FLAT_DEPTH levels: its entries matched one after
            # another from its '<<' (as `<<((?>entry)*+)\s*>>` would match them), then '>>'
            start = end = m.end()
            entries = []
            scan = entry_scanner(data, start, stop).match
            while (entry := scan()) is not None:
                entries.append(entry.groups(b""))
                end = entry.end()
            close = dict_close(data, end, stop)
            if close is not None:
                pos = close.end()
                if memo is None:
                    value = _dict_of(entries, _FLAT_DEPTH - 1)
                else:
                    body = data[start:end]
                    value = memo.get(body)
                    if value is None:
                        value = memo[body] = _dict_of(entries, _FLAT_DEPTH - 1)
                    if not stack:
                        value = dict(value)  # the object itself: a fresh dictionary
            else:
                stack.append({})
                keys.append(None)
                continue
        elif kind == _K_AOPEN:
            start = m.start(_K_AOPEN)
            arr = numbers(data, start, stop)
            if arr is not None:  # /Widths, matrices, boxes
                pos = arr.end()
                value = _numbers(arr.group(1))
            else:
                flat = flat_array(data, start, stop)
                if flat is not None:
                    pos = flat.end()
                    value = _flat_array(flat.group(1))
                else:
                    stack.append([])
                    keys.append(None)
                    continue
        elif kind in (_K_DCLOSE, _K_ACLOSE):
            if not stack:
                raise Unreadable("unbalanced")
            value = stack.pop()
            keys.pop()
        elif kind == _K_WS:
            continue
        elif kind == _K_LIT:
            value = _unescape(m.group(_K_LIT)[1:-1])
        elif kind == _K_HEX:
            value = _hex(m.group(_K_HEX))
        elif kind == _K_KW:
            word = m.group(_K_KW)
            if word == b"stream" or word == b"endobj":
                if root is _NONE or stack:
                    raise Unreadable("misplaced keyword")
                return root, (m.end() if word == b"stream" else None)
            if word == b"true" or word == b"false":
                value = word == b"true"
            elif word == b"null":
                value = None
            else:
                raise Unreadable(f"unexpected keyword {word!r}")
        else:
            raise Unreadable(f"unexpected token {m.group()!r}")
        if not stack:
            if root is not _NONE:
                return root, None
            root = value
            # a following `stream` or `endobj` keyword ends the object
            continue
        top = stack[-1]
        if type(top) is list:
            top.append(value)
        elif keys[-1] is None:
            if type(value) is not Name:
                raise Unreadable("a dictionary key must be a name")
            keys[-1] = value
        else:
            top[str(keys[-1])] = value
            keys[-1] = None
    if root is _NONE or stack:
        raise Unreadable("truncated object")
    return root, None


def _unescape(body: bytes) -> bytes:
    """The bytes of a literal string's body (balanced, as `_TOKEN` matched it): as `_literal`."""
    if b"\\" not in body:
        return body
    return _ESCAPE.sub(_escaped, body)


# an escape of a literal string: a known character, 1-3 octal digits, a line end, 8 or 9 (an error,
# as in `_literal`), or any other character (the backslash is dropped)
_ESCAPE = re.compile(rb"\\(?:[nrtbf()\\]|[0-7]{1,3}|\r\n?|\n|([89])|.)", re.S)
_ESCAPED: dict[bytes, bytes] = {}


def _escaped(m: re.Match[bytes]) -> bytes:
    esc = m.group()
    got = _ESCAPED.get(esc)
    if got is None:
        if m.group(1):
            raise ValueError(f"bad octal escape {esc!r}")  # int(b"8", 8) in `_literal`
        got, _ = _literal(esc + b")", 0)
        if len(_ESCAPED) < 4096:
            _ESCAPED[esc] = got
    return got


_NONE: Any = object()


def used_names(content: bytes) -> frozenset[str]:
    """Every name a content stream mentions (resource names among them).

    >>> sorted(used_names(b"BT /F1 12 Tf (Hi) Tj ET /Im0 Do"))
    ['/F1', '/Im0']
    """
    get = _CONTENT_NAMES.get
    return frozenset(
        [
            name if (name := get(raw)) is not None else _content_name(raw)
            for raw in set(_NAME_IN_CONTENT.findall(content))
        ]
    )


_CONTENT_NAMES: dict[bytes, str] = {}


def _content_name(raw: bytes) -> str:
    """A name of a content stream (`raw` is its body) as a str, as `_name_text` (cached)."""
    name = _name_text(raw)
    if len(_CONTENT_NAMES) < CACHE_SIZE:
        _CONTENT_NAMES[raw] = name
    return name
