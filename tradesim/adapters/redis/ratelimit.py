"""A per-key fixed-window rate limiter in Redis, shared by every copy of the API."""

from __future__ import annotations

import time
from collections import OrderedDict

import redis
import redis.asyncio as aredis
from redis.asyncio.client import Pipeline

from tradesim.ports import StoreFull


class RateLimiter:
    """`limit` requests per 1-second window per key."""

    def __init__(self, client: aredis.Redis, local_keys: int = 100_000) -> None:
        self._r = client
        self._local: OrderedDict[str, tuple[int, int]] = OrderedDict()  # key → (window, count) of hit_here
        self._local_keys = local_keys

    def hit_here(self, key: str, limit: int) -> float | None:
        """hit() counted in this process alone, in the same windows: for when Redis refuses the shared count for
        memory (each process then lets `limit` through, so the limit holds, times the processes at most). The
        `local_keys` keys counted last are kept."""
        now = time.time()
        window = int(now)
        seen, count = self._local.pop(key, (window, 0))
        self._local[key] = (window, count + 1 if seen == window else 1)
        while len(self._local) > self._local_keys:
            self._local.popitem(last=False)
        return self.verdict(self._local[key][1], limit, now)

    async def hit(self, key: str, limit: int) -> float | None:
        """Count one request; None if allowed, else seconds until the window ends. Raises StoreFull when Redis
        is at its memory cap, redis.RedisError otherwise."""
        pipe = self._r.pipeline(transaction=False)
        now = self.queue_hit(pipe, key)
        try:
            count, _ = await pipe.execute()
        except redis.exceptions.OutOfMemoryError as exc:
            raise StoreFull(str(exc)) from None
        return self.verdict(count, limit, now)

    @staticmethod
    def queue_hit(pipe: Pipeline, key: str) -> float:
        """hit() as two commands on the caller's pipeline; pass their first answer and this time to verdict()."""
        now = time.time()
        name = f"rl:{key}:{int(now)}"
        pipe.incr(name)
        pipe.expire(name, 2)
        return now

    @staticmethod
    def verdict(count: int | str, limit: int, now: float) -> float | None:
        if int(count) <= limit:
            return None
        return max(0.001, int(now) + 1 - now)
