"""Cached cells: key a cell by what it reads, run it under observation, restore it exactly.

A hit must never serve what a plain run would not produce, so what a cell reads and changes is
observed, not guessed. Before a run, `analyze_cell` reads the code (candidate inputs, the
modules it imports, its definitions, whether it can be cached at all) and `cell_key` makes a
key of parts: the normalised code, every input by content (functions by their full code
fingerprint), the modules by their code, the hidden state every cell reads silently
(matplotlib's rcParams, pandas' options), `--deps` and `--files`.

On a miss the cell runs under observation (`observe`, `probes`): the namespace's difference
(names added, rebound, deleted), the inputs hashed again (an object changed in place by any
call is an output), the files and folders it opened, the environment variables it read, the
random states it drew from, the state it changed. What it read beyond its key becomes a
dependency in a `Manifest`, and the entry lies under a key that includes their digests (`deps`).
On a hit the variables are restored (objects that existed before as themselves, views as
views, objects changed in place changed in place: `snapshot`), the cell's definitions run
again, the state probes' changes are applied, and the outputs are replayed in order.

A cell that cannot be restored as a plain run would leave the namespace, or cannot be keyed
(an indirect read through `globals()`, an input that cannot be content-hashed, a local module
edited since it was imported), runs uncached with one note saying why. A user type can define
`__tore_hash__` to say what counts.

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

- `analysis`: what a cell's code may read (`analyze_cell`), from `ast` alone
- `probes`: hidden global state as a registry (`StateProbe`, `register_probe`)
- `effects`: what a run does outside the kernel (processes, a tore_nb cache), in words
- `observe`: what a running cell touches (`observe.observe`, `Observation`)
- `keys`: the key of a cell and its parts (`cell_key`), pure but for reading files
- `deps`: dependencies seen only by running, and manifests (`Dependency`, `Manifest`)
- `capture`: recording what a cell shows, and replaying it (`OutputRecorder`, `replay`)
- `snapshot`: what a run changed, pickled with references, restored in place
- `entry`: what the cache holds for a cell (`CellEntry`)
- `explanation`: which key part changed since the stored entry (`explain`)
- `outcome`: what happened to a cell and the line that says so (`CellOutcome`)
- `state`, `modules`, `store`, `restore`: the steps of a run
- `run`: serve a cell from the cache or run and store it (`run_cached_cell`)
"""

from __future__ import annotations

from .analysis import IPYTHON_NAMES as IPYTHON_NAMES
from .analysis import CellAnalysis, analyze_cell
from .capture import OutputEvent, OutputRecorder, replay
from .deps import Dependency, Manifest
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
from .observe import Observation
from .outcome import CacheWarning, CellError, CellOptions, CellOutcome
from .outcome import Status as Status
from .probes import StateProbe, register_probe, unregister_probe
from .run import run_cached_cell

__all__ = [
    "CELL_FORMAT",
    "CacheWarning",
    "CellAnalysis",
    "CellEntry",
    "CellError",
    "CellKey",
    "CellOptions",
    "CellOutcome",
    "Dependency",
    "Explanation",
    "KeyPart",
    "Manifest",
    "Observation",
    "OutputEvent",
    "OutputRecorder",
    "StateProbe",
    "analyze_cell",
    "cell_key",
    "explain",
    "latest_parts",
    "register_probe",
    "replay",
    "run_cached_cell",
    "unregister_probe",
]
