"""Local modules whose loaded code is not their file's: a key made from the file would lie.

A function's fingerprint is read from its source file, and a local module the cell imports is
keyed by its file. When that file was edited after the module was imported (and not reloaded),
the kernel runs other code than the key describes: a lookup could serve, and a store would
file, results under the wrong code. `stale_modules` names such modules, checking only the
local ones loaded from their source by Python's own loader (the list is rebuilt when
`sys.modules` grows or shrinks). Every such module counts, not only those the cell uses: a stale
one is rare, and the note says what to do.

>>> stale_modules()
[]
"""

from __future__ import annotations

import importlib.machinery
import sys
import types

from .. import code_modules, code_origin

__all__ = ["stale_modules"]

_local: list[str] = []
_count = -1


def stale_modules() -> list[str]:
    """One line per local module edited on disk since it was imported (not reloaded)."""
    global _count, _local
    if len(sys.modules) != _count:
        _count = len(sys.modules)
        libraries = code_origin.library_dirs()
        _local = []
        for name, mod in list(sys.modules.items()):
            path = getattr(mod, "__file__", None)
            # a file under the library folders as named is decided without resolving links
            if name == "__main__" or not isinstance(path, str) or path.startswith(libraries):
                continue
            if _plain_source(mod) and code_origin.is_local_module(name):
                _local.append(name)
    found = code_modules.stale_modules(_local)
    return [
        f"{reason}; reload it (importlib.reload) or restart the kernel, so that what runs is "
        f"what the key describes"
        for reason in found
    ]


def _plain_source(mod: types.ModuleType) -> bool:
    """Loaded from its file as it is: an import hook that rewrites the source (pytest's
    assertion rewriting) gives code no file holds, which cannot be compared."""
    loader = getattr(getattr(mod, "__spec__", None), "loader", None)
    return type(loader) is importlib.machinery.SourceFileLoader
