"""tradesim's Redis keys edited by hand into another type or odd values, on the stack's Redis: the writers' Lua
scripts replace them instead of failing (a price hash that failed the script stalled every symbol's feed; a
holdings view that could not be read failed its user's orders for as long as it lived)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from decimal import Decimal

import pytest
import redis

from tradesim.adapters.redis import portfolio_view as view
from tradesim.adapters.redis.client import connect
from tradesim.adapters.redis.prices import SYMBOLS_KEY, PriceCache, price_key
from tradesim.adapters.redis.quotes import connect_async
from tradesim.domain.events import encode
from tradesim.domain.portfolio import Holdings
from tradesim.settings import Settings
from tradesim.testing.factories import tick, unique_symbol

pytestmark = pytest.mark.integration


@pytest.fixture
def client(settings: Settings) -> Iterator[redis.Redis]:
    r = connect(settings.redis)
    yield r
    r.close()


def _apply(cache: PriceCache, *symbols: str, seq: int = 5) -> int:
    ticks = [tick(s, seq) for s in symbols]
    return cache.apply([(t, encode(t)) for t in ticks], now_ms=1_000)


@pytest.mark.parametrize(("field", "value"), [("run_id", "abc"), ("seq", "x"), ("run_id", "inf"), ("seq", "nan")])
def test_a_price_hash_with_an_unreadable_order_is_replaced_and_the_others_still_written(
        client: redis.Redis, field: str, value: str) -> None:
    cache, edited, other = PriceCache(client), unique_symbol("R"), unique_symbol("R")
    assert _apply(cache, edited, other, seq=1) == 2
    client.hset(price_key(edited), field, value)
    assert _apply(cache, edited, other, seq=2) == 2
    assert client.hget(price_key(edited), "seq") == "2"
    assert client.hget(price_key(other), "seq") == "2"


def test_a_price_key_or_symbol_set_of_another_type_is_replaced(client: redis.Redis) -> None:
    cache, edited, other = PriceCache(client), unique_symbol("R"), unique_symbol("R")
    listed = client.smembers(SYMBOLS_KEY)
    client.set(price_key(edited), "x")
    client.set(SYMBOLS_KEY, "y")
    try:
        assert _apply(cache, edited, other) == 2
        assert client.hget(price_key(edited), "seq") == "5"
        assert client.type(SYMBOLS_KEY) == "set"
        assert {edited, other} <= client.smembers(SYMBOLS_KEY)
        assert cache.latest(edited) is not None
    finally:  # the stack's other symbols listed again (the replaced set knew only these two)
        if client.type(SYMBOLS_KEY) != "set":
            client.delete(SYMBOLS_KEY)
        if listed:
            client.sadd(SYMBOLS_KEY, *listed)


def test_a_newer_price_is_still_kept_over_an_older_tick(client: redis.Redis) -> None:
    cache, symbol = PriceCache(client), unique_symbol("R")
    assert _apply(cache, symbol, seq=7) == 1
    assert _apply(cache, symbol, seq=6) == 0
    assert client.hget(price_key(symbol), "seq") == "7"


def test_a_holdings_view_with_an_unreadable_version_is_dropped_by_a_patch_and_replaced_by_a_fill(
        settings: Settings, client: redis.Redis) -> None:
    user = "odd-" + secrets.token_hex(4)
    key = view.view_key(user)
    client.hset(key, mapping={"v": "x", "cash": "100", "n": "0"})
    writer = view.ViewWriter(client)
    assert writer.patch(user, version=8, cash=Decimal(90), n_outcomes=1, symbol="AAPL", quantity=1) == -1
    assert not client.exists(key)

    client.hset(key, mapping={"v": "x", "cash": "abc", "n": "0"})

    async def fill() -> None:
        reader = connect_async(settings.redis.client_url, 2.0)
        try:
            await view.PortfolioView(reader).fill(user, Holdings(cash=Decimal(90), version=8, n_outcomes=1))
        finally:
            await reader.aclose()

    try:
        asyncio.run(fill())
        assert view.decode(client.hgetall(key)) == Holdings(cash=Decimal(90), version=8, n_outcomes=1)
    finally:
        client.delete(key)
