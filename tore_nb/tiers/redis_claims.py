"""Claims on work, held in Redis: a key set if absent with a lease, renewed while the work runs.

Outside the entries' key space (under the tier's `lock_prefix`), one command per claim, all of a
batch in one round trip. A claim is never released on success: the result is in the cache by
then, and whoever waits for it reads the result, not the claim; it expires on its own. A claim
whose holder died lapses within one lease, and a waiter takes it over.

>>> from tore_nb.tiers.redis import RedisTier
>>> claim_names(RedisTier(prefix="ns|"), ["page-1"])
['tore_nb#lock|ns|claim|page-1']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .redis import RedisTier

__all__ = ["claim_many", "claim_names", "held_by_anyone", "release_many", "renew_many"]

# a claim's value names its holder; release deletes only the holder's own claims
_RELEASE = """
local n = 0
for i, k in ipairs(KEYS) do
  if redis.call('GET', k) == ARGV[1] then n = n + redis.call('DEL', k) end
end
return n
"""


_RENEW = """
local out = {}
for i, k in ipairs(KEYS) do
  if redis.call('GET', k) == ARGV[1] then
    redis.call('PEXPIRE', k, ARGV[2]); out[i] = 1
  else out[i] = 0 end
end
return out
"""


def claim_names(tier: RedisTier, keys: Sequence[str]) -> list[str]:
    """The Redis names of claims on `keys`."""
    return [f"{tier.lock_prefix}claim|{k}" for k in keys]


def claim_many(tier: RedisTier, keys: Sequence[str], lease: float, owner: str) -> list[bool]:
    """Claim each key (SET NX PX, one round trip for all): which claims are now `owner`'s."""
    names = claim_names(tier, keys)
    px = max(1, int(lease * 1000))

    def do() -> list[bool]:
        pipe = tier.client.pipeline(transaction=False)
        for name in names:
            pipe.set(name, owner, nx=True, px=px)
        return [bool(r) for r in pipe.execute()]

    return tier.command(do)  # type: ignore[no-any-return]


def renew_many(tier: RedisTier, keys: Sequence[str], lease: float, owner: str) -> list[bool]:
    """Extend `owner`'s claims by one lease: which are still `owner`'s (a claim that lapsed and
    was taken over is not extended: the work is being done twice)."""
    names = claim_names(tier, keys)
    px = max(1, int(lease * 1000))

    def do() -> list[bool]:
        if tier.cluster:  # a script's keys must share a slot: one call per claim
            return [bool(tier.client.eval(_RENEW, 1, n, owner, px)) for n in names]
        return [bool(r) for r in tier.client.eval(_RENEW, len(names), *names, owner, px)]

    return tier.command(do)  # type: ignore[no-any-return]


def held_by_anyone(tier: RedisTier, keys: Sequence[str]) -> list[bool]:
    """Whether each claim is still held (by anyone): one EXISTS each, one round trip."""
    names = claim_names(tier, keys)

    def do() -> list[bool]:
        pipe = tier.client.pipeline(transaction=False)
        for name in names:
            pipe.exists(name)
        return [bool(r) for r in pipe.execute()]

    return tier.command(do)  # type: ignore[no-any-return]


def release_many(tier: RedisTier, keys: Sequence[str], owner: str) -> None:
    """Give up `owner`'s claims (after a failure: another process may take the work over)."""
    names = claim_names(tier, keys)

    def do() -> None:
        if tier.cluster:  # a script's keys must share a slot: one call per claim
            for name in names:
                tier.client.eval(_RELEASE, 1, name, owner)
        else:
            tier.client.eval(_RELEASE, len(names), *names, owner)

    tier.command(do)
