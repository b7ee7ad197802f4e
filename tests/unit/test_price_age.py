"""A cached price's age, the one the API's `stale_price`, `/portfolio` and the WebSocket snapshot all go by."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.unit.test_redis_full import AUTH, FullRedis, _calls, _resources
from tradesim.adapters.redis.prices import cached_tick, price_key, written_ms
from tradesim.domain.events import MAX_EPOCH_MS
from tradesim.domain.precheck import MAX_CLOCK_SKEW_MS, StalePrice, check_fresh, price_age_ms
from tradesim.settings import Settings
from tradesim.testing.factories import tick


@pytest.mark.parametrize(("raw", "expected"), [(b"1700000000000", 1_700_000_000_000), ("42", 42), (None, 0),
                                               (b"", 0), ("12.5", 0), ("-5", 0), ("soon", 0), ("\u0661\u0662", 0)])
def test_the_write_time_is_read_or_taken_as_long_ago(raw: bytes | str | None, expected: int) -> None:
    assert written_ms(raw) == expected


@pytest.mark.parametrize("raw", ["9" * 5000, str(MAX_EPOCH_MS + 1)], ids=["5000 digits", "one past"])
def test_a_write_time_past_the_last_epoch_ms_is_taken_as_long_ago(raw: str) -> None:
    """Before, one of 4,301 digits or more raised ValueError (Python's limit on int() of a string) out of the order
    API's price check and a WebSocket subscription; a shorter one made the price fresh for ever (one up to
    MAX_EPOCH_MS did too: see the test of a write time ahead of the clock)."""
    assert written_ms(raw) == 0
    assert written_ms(str(MAX_EPOCH_MS)) == MAX_EPOCH_MS


def test_an_unreadable_write_time_makes_the_price_stale_rather_than_an_error() -> None:
    """Before, a hash another writer left with a non-number `updated_ms` raised ValueError out of the order
    API's price check (a 500)."""
    t = tick("AAA", 1)
    cached = cached_tick([t.model_dump_json().encode(), b"yesterday"], "AAA")
    assert cached == (t, 0)
    with pytest.raises(StalePrice):
        check_fresh("AAA", cached, now_ms=1_700_000_000_000, stale_after_s=30)


def test_an_age_is_never_negative() -> None:
    assert price_age_ms(updated_ms=2_000, now_ms=1_000) == 0  # the writer's clock ahead of the reader's
    assert price_age_ms(updated_ms=1_000, now_ms=4_500) == 3_500


@pytest.mark.parametrize("ahead_ms", [MAX_CLOCK_SKEW_MS + 1, 365 * 86_400_000], ids=["past the skew", "a year"])
def test_a_write_time_ahead_of_the_clock_makes_the_price_stale(ahead_ms: int) -> None:
    """Before, a write time in the future (up to MAX_EPOCH_MS) read as age 0: the price was fresh until then."""
    now_ms = 1_700_000_000_000
    assert price_age_ms(updated_ms=now_ms + ahead_ms, now_ms=now_ms) == now_ms  # as unknown: as old as can be
    assert price_age_ms(updated_ms=MAX_EPOCH_MS, now_ms=now_ms) == now_ms
    with pytest.raises(StalePrice):
        check_fresh("AAA", (tick("AAA", 1), now_ms + ahead_ms), now_ms=now_ms, stale_after_s=30)
    assert check_fresh("AAA", (tick("AAA", 1), now_ms + MAX_CLOCK_SKEW_MS), now_ms=now_ms, stale_after_s=30)


def _order(redis: FullRedis, settings: Settings) -> httpx.Response:
    redis.full = False
    order = {"json": {"symbol": "ACME", "side": "buy", "qty": 1}, "headers": {**AUTH, "Idempotency-Key": "k1"}}
    (answer,) = _calls(_resources(settings, redis), ("POST", "/orders", order))
    return answer


def _priced(tick_value: str | bytes, updated_ms: str | bytes) -> FullRedis:
    r = FullRedis()
    r.hashes[price_key("ACME")] = {"tick": tick_value, "updated_ms": updated_ms}
    r.hashes["pf:alice"] = {"v": "1", "cash": "100000", "n": "0"}
    return r


def test_the_order_api_refuses_a_price_written_in_the_future(settings: Settings) -> None:
    """Before, `updated_ms` "253402300799999" (year 9999) took orders on that price for ever."""
    answer = _order(_priced(tick("ACME", 1).model_dump_json(), str(MAX_EPOCH_MS)), settings)
    assert (answer.status_code, answer.json()["code"]) == (422, "stale_price"), answer.text


@pytest.mark.parametrize("cached", [tick("OTHER", 1).model_dump_json(),
                                    b"\xff" + tick("ACME", 1).model_dump_json().encode()],
                         ids=["another symbol's tick", "not UTF-8"])
def test_the_order_api_takes_a_cached_tick_not_its_symbols_as_no_price(settings: Settings, cached: str | bytes) -> None:
    """Before, another symbol's tick cached under `price:ACME` priced ACME's order (202), and one not UTF-8 raised
    UnicodeDecodeError out of the client (no RedisError): a 500."""
    fresh = _priced(tick("ACME", 1).model_dump_json(), str(int(time.time() * 1000)))
    assert _order(fresh, settings).status_code == 202
    answer = _order(_priced(cached, str(int(time.time() * 1000))), settings)
    assert (answer.status_code, answer.json()["code"]) == (422, "unknown_symbol"), answer.text
