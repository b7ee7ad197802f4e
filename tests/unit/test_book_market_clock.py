"""The book follows the market's clock, not the wall clock: a newer replay run owns the quote (an older run's
ticks never move it back), and a DAY order lasts until the end of the market day it entered."""

from __future__ import annotations

from decimal import Decimal

from tradesim.domain.book import Book
from tradesim.domain.events import OrderPlaced, Tick
from tradesim.domain.matching import DAY_MS, SlippageModel
from tradesim.testing.factories import tick

SLIP = SlippageModel(max_bps=Decimal("0"))
DAY0 = 19_725 * DAY_MS  # 2024-01-02T00:00Z, a scenario's market day, long before the wall clock's


def at(run_id: int, seq: int, price: str, t_ms: int) -> Tick:
    return tick("AAA", seq, price=str(Decimal(price) - Decimal(seq) / 100), run_id=run_id, event_time_ms=t_ms)


def limit_buy(oid: str, limit: str, tif: str = "gtc") -> OrderPlaced:
    return OrderPlaced(order_id=oid, user_id="u1", symbol="AAA", side="buy", qty=1, order_type="limit",
                       limit_price=Decimal(limit), time_in_force=tif,  # type: ignore[arg-type]
                       placed_at_ms=1_800_000_000_000)  # placed "now" on the wall clock, years after DAY0


def test_an_older_runs_tick_neither_moves_the_quote_nor_fills_an_order() -> None:
    book = Book()
    book.on_tick(at(2, 1, "100", DAY0 + 1_000), SLIP)
    book.on_order(limit_buy("o1", "60"), SLIP, now_ms=0)
    assert book.on_tick(at(1, 50, "50", DAY0 + 2_000), SLIP) == []  # the older run is far below: ignored
    assert book.quote is not None
    assert book.quote.last == Decimal("100")
    (fill,) = book.on_tick(at(2, 2, "59", DAY0 + 3_000), SLIP)  # the newest run comes down to it
    assert (fill.kind, fill.price) == ("fill", Decimal("59.01"))


def test_a_day_order_expires_at_the_end_of_the_market_day_it_entered_not_the_wall_clock_day() -> None:
    book = Book()
    book.on_tick(at(1, 1, "100", DAY0 + 15 * 3_600_000), SLIP)
    assert [d.kind for d in book.on_order(limit_buy("day", "50", tif="day"), SLIP, now_ms=0)] == ["rest"]
    assert [d.kind for d in book.on_order(limit_buy("gtc", "50"), SLIP, now_ms=0)] == ["rest"]
    assert book.on_tick(at(1, 2, "100", DAY0 + DAY_MS - 1), SLIP) == []  # the last instant of that day
    expired = book.on_tick(at(1, 3, "100", DAY0 + DAY_MS), SLIP)  # the next market day
    assert [(d.order.order_id, d.kind) for d in expired] == [("day", "expire")]
    assert list(book.resting) == ["gtc"]
