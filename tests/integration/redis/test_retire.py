"""A scripted run's symbols leave the caches: their prices and bars expire, and the symbol list forgets them."""

from __future__ import annotations

import pytest

from tradesim.adapters.redis.bars import BarCache, bars_key
from tradesim.adapters.redis.client import connect
from tradesim.adapters.redis.prices import PriceCache, price_key
from tradesim.domain.events import encode
from tradesim.settings import Settings
from tradesim.testing.factories import tick, unique_symbol
from tradesim.testing.waiting import wait_for

from .test_bars import bar

pytestmark = pytest.mark.integration


def test_retired_prices_expire_and_the_symbol_list_forgets_them_while_others_stay(settings: Settings) -> None:
    r = connect(settings.redis)
    cache = PriceCache(r)
    gone, kept = unique_symbol(), unique_symbol()
    ticks = [tick(gone, 1), tick(kept, 1)]
    assert cache.apply([(t, encode(t)) for t in ticks], now_ms=1) == 2
    assert {gone, kept} <= set(cache.symbols())
    cache.retire([gone], after_s=60)
    assert 0 < r.ttl(price_key(gone)) <= 60
    assert r.ttl(price_key(kept)) == -1  # no expiry
    newer = tick(gone, 2)
    assert cache.apply([(newer, encode(newer))], now_ms=2) == 1  # a late tick keeps the expiry (HSET keeps a TTL)
    assert 0 < r.ttl(price_key(gone)) <= 60
    r.pexpire(price_key(gone), 1)
    wait_for(lambda: gone not in cache.symbols(), 10, f"{gone} forgotten once its price expired")
    assert kept in cache.symbols()
    assert not r.sismember("price:symbols", gone)


def test_retired_bars_expire_in_every_interval(settings: Settings) -> None:
    r = connect(settings.redis)
    cache = BarCache(r)
    sym = unique_symbol()
    cache.apply([bar(sym, 1), bar(sym, 0, interval="1m")])
    cache.retire([sym], after_s=60)
    for interval in ("1s", "1m"):
        assert 0 < r.ttl(bars_key(sym, interval)) <= 60, interval
    cache.apply([bar(sym, 2)])  # a late bar keeps the expiry
    assert 0 < r.ttl(bars_key(sym, "1s")) <= 60
