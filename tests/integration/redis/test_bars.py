"""The recent-bars cache on the real Redis: order, replace, trim, a new run starts over, every write published."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from tradesim.adapters.redis.bars import BarCache, channel
from tradesim.adapters.redis.client import connect
from tradesim.domain.events import Bar, encode
from tradesim.settings import Settings
from tradesim.testing.factories import unique_symbol

pytestmark = pytest.mark.integration


def bar(symbol: str, start_s: int, close: str = "100", interval: str = "1s") -> tuple[Bar, bytes]:
    width = 1000 if interval == "1s" else 60_000
    c = Decimal(close)
    b = Bar(symbol=symbol, interval=interval, window_start_ms=start_s * 1000,  # type: ignore[arg-type]
            window_end_ms=start_s * 1000 + width, open=c, high=c, low=c, close=c, vwap=c, volume=10,
            trade_count=1)
    return b, encode(b)


def starts(cache: BarCache, symbol: str, interval: str = "1s") -> list[int]:
    return [Bar.model_validate_json(j).window_start_ms // 1000 for j in cache.recent(symbol, interval)]


def test_bars_are_kept_in_window_order_and_trimmed_to_the_newest(settings: Settings) -> None:
    cache = BarCache(connect(settings.redis), keep=5)
    sym = unique_symbol()
    assert cache.apply([bar(sym, s) for s in range(1, 9)]) == 8
    assert starts(cache, sym) == [4, 5, 6, 7, 8]
    assert starts(cache, sym, "1m") == []  # intervals are kept apart
    assert [Bar.model_validate_json(j).window_start_ms // 1000 for j in cache.recent(sym, "1s", 2)] == [7, 8]


def test_a_redelivered_window_replaces_and_an_older_window_means_a_new_run(settings: Settings) -> None:
    cache = BarCache(connect(settings.redis))
    sym = unique_symbol()
    cache.apply([bar(sym, s) for s in (10, 11, 12)])
    cache.apply([bar(sym, 12, close="101")])
    assert starts(cache, sym) == [10, 11, 12]
    assert Bar.model_validate_json(cache.recent(sym, "1s")[-1]).close == Decimal("101")
    cache.apply([bar(sym, 3)])  # the clock went back: another run of the scenario
    assert starts(cache, sym) == [3]


def test_every_written_bar_is_published_on_its_channel(settings: Settings) -> None:
    r = connect(settings.redis)
    sym = unique_symbol()
    sub = r.pubsub()
    sub.subscribe(channel(sym, "1m"))
    assert sub.get_message(timeout=5) is not None  # the subscribe confirmation
    BarCache(r).apply([bar(sym, 60 * s, interval="1m") for s in (1, 2)])
    got: list[int] = []
    deadline = time.monotonic() + 10
    while len(got) < 2 and time.monotonic() < deadline:
        msg = sub.get_message(timeout=1)
        if msg and msg["type"] == "message":
            got.append(Bar.model_validate_json(msg["data"]).window_start_ms // 60_000)
    assert got == [1, 2]
