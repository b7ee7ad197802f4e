"""Redis connections configured from settings."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

import redis
from redis.asyncio.client import Pipeline

from tradesim.ports import Unavailable
from tradesim.settings import RedisSettings

T = TypeVar("T")


def connect(settings: RedisSettings, timeout_s: float = 2.0) -> redis.Redis:
    """A client; lazy, so no network I/O happens until the first command."""
    return redis.Redis.from_url(settings.client_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                decode_responses=True)


async def execute(pipe: Pipeline) -> list[Any]:
    """Send a pipeline the caller queued; a Redis failure becomes Unavailable."""
    return await unavailable_on_error(pipe.execute())


async def unavailable_on_error(call: Awaitable[T]) -> T:
    """Await a Redis call; a Redis failure becomes Unavailable (the API answers 503, the caller may go on)."""
    try:
        return await call
    except redis.RedisError as exc:
        raise Unavailable(f"redis: {exc}") from None
