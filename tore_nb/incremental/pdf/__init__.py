"""The fast PDF reader behind page identities, in four modules; each imports only those above it:

    filters.py  stream data with its transport filters undone (`transport_decoded`)
    syntax.py   the lexer and the object parser (`tokenize`, `parse_object`, `Name`, `Ref`)
    objects.py  cross-reference sections, object streams, stream data (`RawObjects`, `read_xref`)
    hasher.py   a page's content identity (`PageHasher`, `IDENTITY_VERSION`)

It reads the file's bytes with regexes, several times faster than pypdf's parser; pypdf reads a
file (or an object) only where this reader cannot, and both readers give the same identities.

>>> from tore_nb.incremental.pdf import IDENTITY_VERSION
>>> IDENTITY_VERSION
5
"""

from __future__ import annotations

from .hasher import IDENTITY_VERSION, PageHasher
from .objects import Fallback, RawObjects, read_xref
from .syntax import tokenize

__all__ = ["IDENTITY_VERSION", "Fallback", "PageHasher", "RawObjects", "read_xref", "tokenize"]
