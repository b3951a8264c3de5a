"""Claims on work, held in Redis: one key per claim whose value names its holder, and one
heartbeat key per holding process that lives one lease unless renewed.

A claim has no expiry of its own: what lapses is its holder's heartbeat. So a batch of claims
is one MSETNX and its release one DEL, however many pages it covers, and renewing every claim
a process holds is one SET of its heartbeat: the commands per claim shrink with the batch.
A waiter that finds a claim whose holder's heartbeat is gone (the process died) deletes that
claim, checked and deleted atomically, and may then take it. All keys live outside the
entries' key space (under the tier's `lock_prefix`).

A holder is `<process>:<worker>`: the heartbeat is the process's, the worker part tells
apart workers of one process (threads, successive Ray tasks), so that a worker releases only
its own claims.

>>> from tore_nb.tiers.redis import RedisTier
>>> claim_names(RedisTier(prefix="ns|"), ["page-1"])
['tore_nb#lock|ns|claim|page-1']
>>> heartbeat_name(RedisTier(prefix="ns|"), "p1:w1")
'tore_nb#lock|ns|alive|p1'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .redis import RedisTier

__all__ = [
    "beat",
    "claim_many",
    "claim_names",
    "clear_dead",
    "heartbeat_name",
    "holders",
    "living",
    "release_many",
]

# delete each claim whose value is ARGV[i] (what the caller read): a claim taken meanwhile by
# another holder stays; returns 1/0 per key
_CLEAR = """
local out = {}
for i, k in ipairs(KEYS) do
  if redis.call('GET', k) == ARGV[i] then redis.call('DEL', k); out[i] = 1 else out[i] = 0 end
end
return out
"""


def claim_names(tier: RedisTier, keys: Sequence[str]) -> list[str]:
    """The Redis names of claims on `keys`."""
    return [f"{tier.lock_prefix}claim|{k}" for k in keys]


def heartbeat_name(tier: RedisTier, holder: str) -> str:
    """The Redis name of the heartbeat of `holder`'s process."""
    return f"{tier.lock_prefix}alive|{holder.split(':', 1)[0]}"


def beat(tier: RedisTier, process: str, lease: float) -> bool:
    """(Re)start `process`'s heartbeat for one lease: whether it was still alive (False the
    first time, or after a lapse: its claims may have been taken over meanwhile)."""
    name = heartbeat_name(tier, process)
    px = max(1, int(lease * 1000))
    old = tier.command(lambda: tier.client.set(name, b"1", px=px, get=True))
    return old is not None


def claim_many(tier: RedisTier, keys: Sequence[str], holder: str) -> list[bool]:
    """Claim each key for `holder`: which claims are now its. One MSETNX when every key is
    free (the usual case), else one SET NX per key, all in one round trip."""
    names = claim_names(tier, keys)
    if not names:
        return []

    def do() -> list[bool]:
        client: Any = tier.client
        # a cluster refuses MSETNX across slots
        if len(names) > 1 and not tier.cluster and client.msetnx(dict.fromkeys(names, holder)):
            return [True] * len(names)
        pipe = client.pipeline(transaction=False)
        for name in names:
            pipe.set(name, holder, nx=True)
        return [bool(r) for r in pipe.execute()]

    return tier.command(do)  # type: ignore[no-any-return]


def release_many(tier: RedisTier, keys: Sequence[str]) -> None:
    """Delete the claims on `keys` (one DEL; per slot on a cluster). Only for a holder whose
    heartbeat never lapsed while it held them: nobody can have taken them over."""
    names = claim_names(tier, keys)
    if names:
        tier.command(lambda: tier.client.delete(*names))


def holders(tier: RedisTier, keys: Sequence[str]) -> list[str | None]:
    """Who holds each claim (None: nobody), one MGET (per slot on a cluster)."""
    names = claim_names(tier, keys)
    if not names:
        return []

    def do() -> list[Any]:
        client: Any = tier.client
        if tier.cluster:
            return client.mget_nonatomic(names)  # type: ignore[no-any-return]
        return client.mget(names)  # type: ignore[no-any-return]

    got = tier.command(do)
    return [None if v is None else bytes(v).decode() for v in got]


def living(tier: RedisTier, holders_: Sequence[str]) -> set[str]:
    """Those of `holders_` whose process's heartbeat is alive: one EXISTS per process, in one
    round trip."""
    names = {h: heartbeat_name(tier, h) for h in holders_}
    unique = sorted(set(names.values()))
    if not unique:
        return set()

    def do() -> list[Any]:
        pipe = tier.client.pipeline(transaction=False)
        for name in unique:
            pipe.exists(name)
        return pipe.execute()  # type: ignore[no-any-return]

    alive = {n for n, ok in zip(unique, tier.command(do), strict=True) if ok}
    return {h for h, n in names.items() if n in alive}


def clear_dead(tier: RedisTier, keys: Sequence[str], was: Sequence[str]) -> list[bool]:
    """Delete each claim on `keys` whose holder is still `was` (atomically: one that another
    holder took meanwhile stays): which were deleted. A dead holder's claims, or a worker's
    own after its heartbeat lapsed."""
    names = claim_names(tier, keys)
    if not names:
        return []

    def do() -> list[bool]:
        client: Any = tier.client
        if tier.cluster:  # a script's keys must share a slot: one call per claim
            return [bool(client.eval(_CLEAR, 1, n, w)[0]) for n, w in zip(names, was, strict=True)]
        return [bool(r) for r in client.eval(_CLEAR, len(names), *names, *was)]

    return tier.command(do)  # type: ignore[no-any-return]
