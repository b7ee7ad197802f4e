"""A read model of each portfolio's holdings in Redis, for the order API's advisory pre-check.

Why: the pre-check read the `Portfolios` item from DynamoDB on every order; that read was a third of the API's
cost per order and, on a busy item, a full read of ~100 KB in dynalite. The truth stays in DynamoDB (the
execution job's conditional write is the real guard); this view only has to be close, and it is versioned so it
never goes backwards:

- the execution job *patches* `pf:{user}` after each write it made, with what the write returned (UPDATED_NEW:
  the version, cash, outcome count and the order symbol's position). A patch applies only on top of exactly the
  previous version; a gap (a write the view missed: an account reset, a lost patch) deletes the view instead.
- the API *fills* a missing view from a DynamoDB read, unless a newer one got there first (it also re-reads
  before refusing a user at the recent-orders limit: pruning lowers the count without a new version).
- an account reset *drops* it. Every write renews a TTL, so a view nobody maintains expires by itself.
- a view with a field that is not a number (edited by hand) counts as missing: the API fills it again (the
  fill replaces it) and a patch drops it, as a gap.

Hash fields: `v` version, `cash` (decimal string), `n` kept outcomes, `p:<SYMBOL>` positions.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, Mapping
from decimal import Decimal
from typing import cast

import redis
import redis.asyncio as aredis
from redis.asyncio.client import Pipeline

from tradesim.adapters.redis.client import BatchScript
from tradesim.domain.portfolio import Holdings, Written

#: seconds a view lives after its last write
VIEW_TTL_S = 300

# ARGV: version, cash, n, ttl, symbol ('' = none), quantity ('' = unchanged)
_PATCH = """
local have = redis.call('HGET', KEYS[1], 'v')
if not have then return 0 end
local v = tonumber(ARGV[1])
have = tonumber(have)
if have == nil then redis.call('DEL', KEYS[1]) return -1 end
if have >= v then return 0 end
if have ~= v - 1 then redis.call('DEL', KEYS[1]) return -1 end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'cash', ARGV[2], 'n', ARGV[3])
if ARGV[5] ~= '' and ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'p:' .. ARGV[5], ARGV[6]) end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
return 1
"""

# ARGV: version, ttl, then field/value pairs of the whole view
_FILL = """
local have = tonumber(redis.call('HGET', KEYS[1], 'v') or '')
if have and have > tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
"""


def view_key(user_id: str) -> str:
    return f"pf:{user_id}"


def decode(raw: Mapping[str, str]) -> Holdings | None:
    """The view from HGETALL's answer; None when missing (or torn by a concurrent DEL), or when a field is not a
    number (edited by hand): the API then fills it again instead of failing the user's orders."""
    if not raw or "v" not in raw or "cash" not in raw:
        return None
    try:
        cash = Decimal(raw["cash"])
        held = Holdings(cash=cash, version=int(raw["v"]), n_outcomes=int(raw.get("n", 0)),
                        positions={k[2:]: int(q) for k, q in raw.items() if k.startswith("p:")})
    except (ValueError, ArithmeticError):  # decimal.InvalidOperation is an ArithmeticError
        return None
    return held if cash.is_finite() else None


def _fields(h: Holdings) -> list[str]:
    out = ["v", str(h.version), "cash", str(h.cash), "n", str(h.n_outcomes)]
    for symbol, qty in h.positions.items():
        out += [f"p:{symbol}", str(qty)]
    return out


#: the execution job's mirror state of earlier releases holds pickled ViewPatch objects (the same fields as Written):
#: the name stays so such checkpoints and savepoints still restore
ViewPatch = Written


class ViewWriter:
    """The execution job's side (synchronous client)."""

    def __init__(self, client: redis.Redis, ttl_s: int = VIEW_TTL_S) -> None:
        self._client = client
        self._patch = BatchScript(client, _PATCH)
        self._ttl_s = ttl_s

    def patch(self, user_id: str, *, version: int, cash: Decimal, n_outcomes: int, symbol: str,
              quantity: int | None) -> int:
        """1 applied, 0 no view or already newer, -1 a gap (view dropped). Raises redis.RedisError."""
        return self.patch_all([Written(user_id, cash, symbol, quantity, version, n_outcomes)])[0]

    def patch_all(self, writes: Iterable[Written]) -> list[int]:
        """patch() with what each write left, in the order given, in one round trip. Raises redis.RedisError."""
        return [int(answer) for answer in self._patch.run([
            ([view_key(p.user_id)],
             [p.version, str(p.cash), p.n_outcomes, self._ttl_s, p.symbol, "" if p.quantity is None else p.quantity])
            for p in writes])]


class PortfolioView:
    """The API's side (asyncio client): read it (usually pipelined by the caller), fill it, drop it."""

    def __init__(self, client: aredis.Redis, ttl_s: int = VIEW_TTL_S) -> None:
        self._r = client
        self._fill = client.register_script(_FILL)
        self._ttl_s = ttl_s

    async def get(self, user_id: str) -> Holdings | None:
        return decode(await cast("Awaitable[dict[str, str]]", self._r.hgetall(view_key(user_id))))

    @staticmethod
    def queue_get(pipe: Pipeline, user_id: str) -> None:
        """get() as one command on the caller's pipeline; pass its answer to decode()."""
        pipe.hgetall(view_key(user_id))

    async def fill(self, user_id: str, holdings: Holdings) -> None:
        await self._fill(keys=[view_key(user_id)], args=[holdings.version, self._ttl_s, *_fields(holdings)])

    async def drop(self, user_id: str) -> None:
        await self._r.delete(view_key(user_id))
