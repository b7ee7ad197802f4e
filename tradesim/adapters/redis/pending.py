"""Orders Kafka acknowledged that the execution job has not yet written to `Orders`: the API's `accepted` view.

Why here and not in DynamoDB: the `Orders` put on the request path cost more than everything else the API does
per order (a thread hop, an HTTP call, a conditional write with an index update in dynalite). The execution job
is now the only writer of `Orders` (an outcome, or `accepted` once an order rests), and until it has written, the
API answers from this record of the `OrderPlaced` event.

`po:{order_id}` holds the event's JSON; `pu:{user_id}` is a sorted set of the user's order ids by placement time.
Both live for `ttl_s` (the outcome horizon: far longer than the job takes to decide or rest an order), but the
execution job removes an order's entries once it has written the outcome to `Orders` (so at 300 orders/s Redis
holds seconds of them, not an hour), and the API removes entries it finds in `Orders` as it meets them. The job
writes `Orders` before it removes the entry, so an order is always in one of the two; a reader that misses both
(it read `Orders` just before the write and the entry just after the removal) reads `Orders` again.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable

import redis
import redis.asyncio as aredis
from redis.asyncio.client import Pipeline

from tradesim.domain.errors import InvalidRecord
from tradesim.domain.events import OrderPlaced, decode_trade_order


def _order_key(order_id: str) -> str:
    return f"po:{order_id}"


def _user_key(user_id: str) -> str:
    return f"pu:{user_id}"


class PendingOrders:
    def __init__(self, client: aredis.Redis, ttl_s: int) -> None:
        self._r = client
        self.ttl_s = ttl_s

    def add(self, pipe: Pipeline, order: OrderPlaced, encoded: str) -> None:
        """Queue the writes on the caller's pipeline (sent together with its other commands)."""
        user = _user_key(order.user_id)
        pipe.set(_order_key(order.order_id), encoded, ex=self.ttl_s)
        pipe.zadd(user, {order.order_id: order.placed_at_ms})
        pipe.zremrangebyscore(user, "-inf", f"({int(time.time() * 1000) - self.ttl_s * 1000}")
        pipe.expire(user, self.ttl_s)

    async def get(self, order_id: str) -> OrderPlaced | None:
        return _decode(await self._r.get(_order_key(order_id)))

    async def of_user(self, user_id: str) -> list[OrderPlaced]:
        """The user's pending orders, newest first. Raises redis.RedisError."""
        since = int(time.time() * 1000) - self.ttl_s * 1000
        ids = await self._r.zrevrangebyscore(_user_key(user_id), "+inf", since)
        if not ids:
            return []
        found = [_decode(raw) for raw in await self._r.mget([_order_key(i) for i in ids])]
        return [o for o in found if o is not None and o.user_id == user_id]

    async def forget(self, user_id: str, order_ids: Iterable[str]) -> None:
        """Drop orders the API found in `Orders` (the job's item is the truth from then on)."""
        ids = list(order_ids)
        if ids:
            pipe = self._r.pipeline(transaction=False)
            pipe.zrem(_user_key(user_id), *ids)
            pipe.delete(*[_order_key(i) for i in ids])
            await pipe.execute()


class PendingCleaner:
    """The execution job's side (synchronous client): drop the entries of orders now written to `Orders`."""

    def __init__(self, client: redis.Redis) -> None:
        self._r = client

    def forget(self, orders: Iterable[tuple[str, str]]) -> None:
        """(user_id, order_id) pairs, in one round trip. Raises redis.RedisError."""
        by_user: dict[str, list[str]] = defaultdict(list)
        for user_id, order_id in orders:
            by_user[user_id].append(order_id)
        if not by_user:
            return
        pipe = self._r.pipeline(transaction=False)
        for user_id, ids in by_user.items():
            pipe.zrem(_user_key(user_id), *ids)
            pipe.delete(*[_order_key(i) for i in ids])
        pipe.execute()


def _decode(raw: str | None) -> OrderPlaced | None:
    if raw is None:
        return None
    try:
        event = decode_trade_order(raw)
    except InvalidRecord:
        return None
    return event if isinstance(event, OrderPlaced) else None
