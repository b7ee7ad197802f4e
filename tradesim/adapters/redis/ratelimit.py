"""A per-key fixed-window rate limiter in Redis, shared by every copy of the API."""

from __future__ import annotations

import time

import redis
import redis.asyncio as aredis
from redis.asyncio.client import Pipeline

from tradesim.ports import StoreFull


class RateLimiter:
    """`limit` requests per 1-second window per key."""

    def __init__(self, client: aredis.Redis) -> None:
        self._r = client

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
