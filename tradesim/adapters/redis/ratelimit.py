"""A per-key fixed-window rate limiter in Redis, shared by every copy of the API."""

from __future__ import annotations

import time

import redis.asyncio as aredis


class RateLimiter:
    """`limit` requests per 1-second window per key."""

    def __init__(self, client: aredis.Redis) -> None:
        self._r = client

    async def hit(self, key: str, limit: int) -> float | None:
        """Count one request; None if allowed, else seconds until the window ends. Raises redis.RedisError."""
        now = time.time()
        window = int(now)
        name = f"rl:{key}:{window}"
        pipe = self._r.pipeline(transaction=False)
        pipe.incr(name)
        pipe.expire(name, 2)
        count, _ = await pipe.execute()
        if int(count) <= limit:
            return None
        return max(0.001, window + 1 - now)
