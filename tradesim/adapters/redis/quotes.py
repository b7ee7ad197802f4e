"""Async read side of the price cache (the order API's price check); written by `prices.PriceCache`."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, cast

import redis.asyncio as aredis
from redis.asyncio.client import Pipeline

from tradesim.adapters.redis.client import execute
from tradesim.adapters.redis.prices import cached_tick, price_key
from tradesim.domain.events import Tick


async def latest(client: aredis.Redis, symbol: str) -> tuple[Tick, int] | None:
    """The cached tick and the wall time (ms) it was written, or None. Raises redis.RedisError."""
    return decode_latest(await cast("Awaitable[list[Any]]", client.hmget(price_key(symbol), ["tick", "updated_ms"])))


async def latest_many(client: aredis.Redis, symbols: list[str]) -> dict[str, tuple[Tick, int]]:
    """latest() of each symbol that has a cached tick, in one round trip. Raises Unavailable."""
    if not symbols:
        return {}
    pipe = client.pipeline(transaction=False)
    for symbol in symbols:
        queue_latest(pipe, symbol)
    answers = await execute(pipe)
    decoded = (decode_latest(raw) for raw in answers)
    return {s: hit for s, hit in zip(symbols, decoded, strict=True) if hit is not None}


def queue_latest(pipe: Pipeline, symbol: str) -> None:
    """latest() as one command on the caller's pipeline; pass its answer to decode_latest()."""
    pipe.hmget(price_key(symbol), ["tick", "updated_ms"])


def decode_latest(raw: list[str | None]) -> tuple[Tick, int] | None:
    return cached_tick(raw)


def connect_async(url: str, timeout_s: float) -> aredis.Redis:
    """A lazy asyncio client (connection pool); no I/O until the first command."""
    client: aredis.Redis = aredis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                                 decode_responses=True)
    return client
