"""Async read side of the price cache (the order API's price check); written by `prices.PriceCache`."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, cast

import redis.asyncio as aredis
from redis.asyncio.client import Pipeline

from tradesim.adapters.redis.client import execute
from tradesim.adapters.redis.prices import ask_price, cached_tick
from tradesim.domain.events import Tick


async def latest(client: aredis.Redis, symbol: str) -> tuple[Tick, int] | None:
    """The cached tick and the wall time (ms) it was written, or None. Raises redis.RedisError."""
    return decode_latest(await cast("Awaitable[list[Any]]", ask_price(client, symbol)), symbol)


async def latest_many(client: aredis.Redis, symbols: list[str]) -> dict[str, tuple[Tick, int]]:
    """latest() of each symbol that has a cached tick, in one round trip. Raises Unavailable."""
    if not symbols:
        return {}
    pipe = client.pipeline(transaction=False)
    for symbol in symbols:
        queue_latest(pipe, symbol)
    answers = await execute(pipe)
    decoded = ((s, decode_latest(raw, s)) for s, raw in zip(symbols, answers, strict=True))
    return {s: hit for s, hit in decoded if hit is not None}


def queue_latest(pipe: Pipeline, symbol: str) -> None:
    """latest() as one command on the caller's pipeline; pass its answer to decode_latest()."""
    ask_price(pipe, symbol)


def decode_latest(raw: list[Any], symbol: str) -> tuple[Tick, int] | None:
    """`symbol`'s cached tick and its write time from queue_latest()'s answer, or None: none, or not `symbol`'s to
    read (another symbol's tick, not UTF-8, out of the schema's bounds): no price."""
    return cached_tick(raw, symbol)


def connect_async(url: str, timeout_s: float) -> aredis.Redis:
    """A lazy asyncio client (connection pool); no I/O until the first command."""
    client: aredis.Redis = aredis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                                 decode_responses=True)
    return client
