"""Cached cells: analyse a cell, key it by what it reads, run or restore it, explain a miss.

`analyze_cell` reads a cell's code through `ast`: which names it reads from the namespace before
binding them (its inputs), which it binds (its outputs), which it binds by `import`, `def` or
`class` (its definitions). `cell_key` turns that into a key made of parts: a format version,
the normalised code, a digest of every input (modules by name and version, user functions and
classes by code fingerprint, other values by content), extra `deps`, and files by content.

`run_cached_cell` looks the key up. On a hit it unpickles the stored variables (fresh copies
each time: an entry is an immutable snapshot, so mutating a restored value never corrupts the
cache), assigns them all at once, re-executes the cell's definitions (which so see the cell's
values), and replays what the cell printed and displayed, in order, its last value back in
`Out`. On a miss it runs the cell while recording its stdout, stderr and rich outputs, then
stores the variables and the outputs. A cell that raises is not cached; a variable that cannot
be pickled, or a cell the analysis marks uncacheable (a magic it cannot see into, a read of
`In` or `Out`), runs uncached with one warning naming why.

An input that cannot be content-hashed (an open file, a lock, a connection) makes the cell
uncachable, with a warning naming it: hashing it by identity would give keys that differ in
every process. A user type can define `__tore_hash__` to say what counts.

>>> import tempfile
>>> from tore_nb import MultiLevelCache, CacheConfig
>>> cache = MultiLevelCache(CacheConfig.embedded(tempfile.mkdtemp()))
>>> ns = {"n": 3}
>>> run_cached_cell("total = sum(range(n))\\nprint(total)", ns, cache).status
3
'stored'
>>> run_cached_cell("total = sum(range(n))  # same code\\nprint(total)", {"n": 3}, cache).status
3
'hit'

Modules, each with one job; each imports only those above it in this list:

- `analysis`: what a cell reads and binds (`analyze_cell`), from `ast` alone
- `keys`: the key of a cell and its parts (`cell_key`), pure but for reading `--files`
- `capture`: recording what a cell shows, and replaying it (`OutputRecorder`, `replay`)
- `entry`: what the cache holds for a cell (`CellEntry`) and the pickling of its variables
- `explanation`: which key part changed since the stored entry (`explain`)
- `run`: serve a cell from the cache or run and store it (`run_cached_cell`)
"""

from __future__ import annotations

from .analysis import IPYTHON_NAMES as IPYTHON_NAMES
from .analysis import CellAnalysis, analyze_cell
from .capture import OutputEvent, OutputRecorder, replay
from .entry import CellEntry
from .explanation import ExplainRow as ExplainRow
from .explanation import Explanation, explain, latest_parts
from .explanation import previous_parts as previous_parts
from .keys import CELL_FORMAT, CellKey, KeyPart, cell_key
from .keys import LATEST_PREFIX as LATEST_PREFIX
from .keys import PREFIX as PREFIX
from .keys import UnhashableInput as UnhashableInput
from .keys import cell_label as cell_label
from .keys import file_digest as file_digest
from .run import CacheWarning, CellError, CellOptions, CellOutcome, run_cached_cell
from .run import Status as Status

__all__ = [
    "CELL_FORMAT",
    "CacheWarning",
    "CellAnalysis",
    "CellEntry",
    "CellError",
    "CellKey",
    "CellOptions",
    "CellOutcome",
    "Explanation",
    "KeyPart",
    "OutputEvent",
    "OutputRecorder",
    "analyze_cell",
    "cell_key",
    "explain",
    "latest_parts",
    "replay",
    "run_cached_cell",
]
