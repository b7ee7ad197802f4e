"""The caches' Lua scripts on the real Redis: one round trip per batch, and a Redis that lost its scripts (restarted,
flushed) gets them again without losing the batch."""

from __future__ import annotations

from decimal import Decimal

import pytest
import redis

from tradesim.adapters.redis.bars import BarCache
from tradesim.adapters.redis.client import connect
from tradesim.adapters.redis.portfolio_view import ViewWriter
from tradesim.adapters.redis.prices import PriceCache, price_key
from tradesim.domain.events import encode
from tradesim.domain.portfolio import Written
from tradesim.settings import Settings
from tradesim.testing.factories import tick, unique_symbol

from .test_bars import bar, starts

pytestmark = pytest.mark.integration


def _calls(r: redis.Redis, command: str) -> int:
    return int(r.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))


def test_batches_after_a_script_flush_load_the_script_again_and_then_cost_one_round_trip(settings: Settings) -> None:
    """Before: redis-py's `Script` on a pipeline asked `SCRIPT EXISTS` ahead of every batch (a tick batch, a bar
    batch, the execution job's holdings-view patches): two round trips where one does."""
    r = connect(settings.redis)
    prices, bars, view = PriceCache(r), BarCache(r), ViewWriter(r)
    sym = unique_symbol()
    r.script_flush()  # what a restarted Redis without the scripts looks like to its clients
    first = [tick(sym, 1), tick(sym, 2)]
    assert prices.apply([(t, encode(t)) for t in first], now_ms=1) == 2
    assert bars.apply([bar(sym, 1), bar(sym, 2)]) == 2
    assert view.patch_all([Written("nobody-" + sym, Decimal(1), sym, 1, 1, 1)]) == [0]  # no view: not applied
    asked = _calls(r, "script|exists")
    later = [tick(sym, 3)]
    assert prices.apply([(t, encode(t)) for t in later], now_ms=3) == 1
    assert bars.apply([bar(sym, 3)]) == 1
    assert view.patch_all([Written("nobody-" + sym, Decimal(1), sym, 1, 2, 1)]) == [0]
    assert _calls(r, "script|exists") == asked  # no component of the stack asks any more
    assert prices.latest(sym) is not None
    assert prices.latest(sym)[0].seq == 3
    assert r.hget(price_key(sym), "seq") == "3"
    assert starts(bars, sym) == [1, 2, 3]
