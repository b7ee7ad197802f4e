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


def test_retired_bars_expire_in_every_interval_also_when_written_or_rebuilt_after(settings: Settings) -> None:
    """A review: a bar the market-data service wrote after the retire (the run had read it from Kafka), or a set
    the apply script rebuilt (an older bar redelivered), had no expiry and stayed for good."""
    r = connect(settings.redis)
    prices, cache = PriceCache(r), BarCache(r)
    sym = unique_symbol()
    first = tick(sym, 1)
    prices.apply([(first, encode(first))], now_ms=1)
    cache.apply([bar(sym, 5)])
    prices.retire([sym], after_s=60)
    cache.retire([sym], after_s=60)
    assert 0 < r.ttl(bars_key(sym, "1s")) <= 60
    cache.apply([bar(sym, 0, interval="1m")])  # after the retire, in a set that did not exist
    assert 0 < r.ttl(bars_key(sym, "1m")) <= 60
    cache.apply([bar(sym, 6)])  # a late bar keeps it
    assert 0 < r.ttl(bars_key(sym, "1s")) <= 60
    cache.apply([bar(sym, 2)])  # an older one: the set is deleted and rebuilt, with the expiry again
    assert 0 < r.ttl(bars_key(sym, "1s")) <= 60
    live = unique_symbol()  # a symbol whose price does not expire: its bars do not either
    other = tick(live, 1)
    prices.apply([(other, encode(other))], now_ms=1)
    cache.apply([bar(live, 1)])
    assert r.ttl(bars_key(live, "1s")) == -1
