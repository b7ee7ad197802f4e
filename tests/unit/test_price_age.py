"""A cached price's age, the one the API's `stale_price`, `/portfolio` and the WebSocket snapshot all go by."""

from __future__ import annotations

import pytest

from tradesim.adapters.redis.prices import cached_tick, written_ms
from tradesim.domain.events import MAX_EPOCH_MS
from tradesim.domain.precheck import StalePrice, check_fresh, price_age_ms
from tradesim.testing.factories import tick


@pytest.mark.parametrize(("raw", "expected"), [(b"1700000000000", 1_700_000_000_000), ("42", 42), (None, 0),
                                               (b"", 0), ("12.5", 0), ("-5", 0), ("soon", 0), ("\u0661\u0662", 0)])
def test_the_write_time_is_read_or_taken_as_long_ago(raw: bytes | str | None, expected: int) -> None:
    assert written_ms(raw) == expected


@pytest.mark.parametrize("raw", ["9" * 5000, str(MAX_EPOCH_MS + 1)], ids=["5000 digits", "one past"])
def test_a_write_time_past_the_last_epoch_ms_is_taken_as_long_ago(raw: str) -> None:
    """Before, one of 4,301 digits or more raised ValueError (Python's limit on int() of a string) out of the order
    API's price check and a WebSocket subscription; a shorter one made the price fresh for ever."""
    assert written_ms(raw) == 0
    assert written_ms(str(MAX_EPOCH_MS)) == MAX_EPOCH_MS


def test_an_unreadable_write_time_makes_the_price_stale_rather_than_an_error() -> None:
    """Before, a hash another writer left with a non-number `updated_ms` raised ValueError out of the order
    API's price check (a 500)."""
    t = tick("AAA", 1)
    cached = cached_tick([t.model_dump_json().encode(), b"yesterday"])
    assert cached == (t, 0)
    with pytest.raises(StalePrice):
        check_fresh("AAA", cached, now_ms=1_700_000_000_000, stale_after_s=30)


def test_an_age_is_never_negative() -> None:
    assert price_age_ms(updated_ms=2_000, now_ms=1_000) == 0  # the writer's clock ahead of the reader's
    assert price_age_ms(updated_ms=1_000, now_ms=4_500) == 3_500
