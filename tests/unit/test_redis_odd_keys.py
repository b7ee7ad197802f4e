"""tradesim's Redis keys edited by hand into another type or odd values: the writers' Lua scripts replace them
instead of failing. The scripts run on a private redis-server on a loopback port of the test's own (no stack)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import redis
import redis.asyncio as aredis

from tradesim.adapters.redis import portfolio_view as view
from tradesim.adapters.redis.prices import SYMBOLS_KEY, PriceCache, price_key
from tradesim.domain.events import encode
from tradesim.domain.portfolio import Holdings
from tradesim.testing.factories import tick
from tradesim.testing.net import free_port

SERVER = shutil.which("redis-server")


@pytest.fixture
def client(tmp_path: Path) -> Iterator[redis.Redis]:
    if SERVER is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    proc = subprocess.Popen([SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    r = redis.Redis(port=port, decode_responses=True)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                r.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.05)
        yield r
    finally:
        r.close()
        proc.terminate()
        proc.wait(10)


def _apply(cache: PriceCache, *symbols: str, seq: int = 5) -> int:
    ticks = [tick(s, seq) for s in symbols]
    return cache.apply([(t, encode(t)) for t in ticks], now_ms=1_000)


@pytest.mark.parametrize(("field", "value"), [("run_id", "abc"), ("seq", "x"), ("run_id", "inf"), ("seq", "nan")])
def test_a_price_hash_with_an_unreadable_order_is_replaced_and_the_others_still_written(
        client: redis.Redis, field: str, value: str) -> None:
    cache = PriceCache(client)
    assert _apply(cache, "AAPL", "MSFT", seq=1) == 2
    client.hset(price_key("AAPL"), field, value)
    assert _apply(cache, "AAPL", "MSFT", seq=2) == 2
    assert client.hget(price_key("AAPL"), "seq") == "2"
    assert client.hget(price_key("MSFT"), "seq") == "2"


def test_a_price_key_or_symbol_set_of_another_type_is_replaced(client: redis.Redis) -> None:
    cache = PriceCache(client)
    client.set(price_key("AAPL"), "x")
    client.set(SYMBOLS_KEY, "y")
    assert _apply(cache, "AAPL", "MSFT") == 2
    assert client.hget(price_key("AAPL"), "seq") == "5"
    assert client.smembers(SYMBOLS_KEY) == {"AAPL", "MSFT"}
    assert cache.latest("AAPL") is not None


def test_a_newer_price_is_still_kept_over_an_older_tick(client: redis.Redis) -> None:
    cache = PriceCache(client)
    assert _apply(cache, "AAPL", seq=7) == 1
    assert _apply(cache, "AAPL", seq=6) == 0
    assert client.hget(price_key("AAPL"), "seq") == "7"


@pytest.mark.parametrize("edit", [{"cash": "abc"}, {"cash": "NaN"}, {"v": "x"}, {"n": "1.5"}, {"p:AAPL": "ten"}])
def test_a_holdings_view_with_a_field_that_is_not_a_number_counts_as_missing(edit: dict[str, str]) -> None:
    raw = {"v": "7", "cash": "100.00", "n": "3", "p:AAPL": "2"}
    assert view.decode(raw) == Holdings(cash=Decimal("100.00"), version=7, n_outcomes=3, positions={"AAPL": 2})
    assert view.decode(raw | edit) is None


def test_a_holdings_view_with_an_unreadable_version_is_dropped_by_a_patch_and_replaced_by_a_fill(
        client: redis.Redis) -> None:
    key = view.view_key("alice")
    client.hset(key, mapping={"v": "x", "cash": "100", "n": "0"})
    writer = view.ViewWriter(client)
    assert writer.patch("alice", version=8, cash=Decimal(90), n_outcomes=1, symbol="AAPL", quantity=1) == -1
    assert not client.exists(key)

    client.hset(key, mapping={"v": "x", "cash": "abc", "n": "0"})
    port = client.connection_pool.connection_kwargs["port"]

    async def fill() -> None:
        reader = aredis.Redis(port=port, decode_responses=True)
        try:
            await view.PortfolioView(reader).fill("alice", Holdings(cash=Decimal(90), version=8, n_outcomes=1))
        finally:
            await reader.aclose()

    asyncio.run(fill())
    assert view.decode(client.hgetall(key)) == Holdings(cash=Decimal(90), version=8, n_outcomes=1)
