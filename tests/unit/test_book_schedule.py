"""Scripted orders in the book: held until the tick stream passes their market time, then applied on the quote in
effect at that time, and cancelled once it passes their cancel time — so the decisions depend on the tick stream,
not on when the orders arrived."""

from __future__ import annotations

import pickle
from decimal import Decimal

import pytest

from tradesim.adapters.dynamodb.orders import order_item
from tradesim.domain.book import Book, Decision
from tradesim.domain.events import OrderCancelRequested, OrderPlaced, Tick
from tradesim.domain.matching import SlippageModel
from tradesim.domain.orders import body_hash
from tradesim.testing.factories import tick

SLIP = SlippageModel(max_bps=Decimal("0"))


def at(seconds: float) -> int:
    return int(seconds * 1000)


def quote_at(seq: int, seconds: float, price: str) -> Tick:
    """A tick at `seconds` on the market clock: last `price`, bid/ask ± 0.01 (the factory adds seq/100)."""
    return tick("AAA", seq, price=str(Decimal(price) - Decimal(seq) / 100), event_time_ms=at(seconds))


def scripted(oid: str, seconds: float, kind: str = "market", side: str = "buy", limit: str | None = None,
             tif: str = "gtc", cancel_at: float | None = None) -> OrderPlaced:
    return OrderPlaced(order_id=oid, user_id="u1", symbol="AAA", side=side, qty=1, order_type=kind,  # type: ignore[arg-type]
                       limit_price=Decimal(limit) if limit else None, time_in_force=tif,  # type: ignore[arg-type]
                       placed_at_ms=0, at_ms=at(seconds), cancel_at_ms=None if cancel_at is None else at(cancel_at))


def cancel(oid: str) -> OrderCancelRequested:
    return OrderCancelRequested(order_id=oid, user_id="u1", symbol="AAA", requested_at_ms=0)


STREAM = [quote_at(1, 0, "100"), quote_at(2, 10, "101"), quote_at(3, 20, "102"), quote_at(4, 30, "99"),
          quote_at(5, 40, "98")]


def run(events: list[Tick | OrderPlaced]) -> list[tuple[str, str, Decimal | None]]:
    """Feed a book; the decisions that settle (rests are not outcomes) as (order, kind, price)."""
    book = Book()
    out: list[Decision] = []
    for e in events:
        if isinstance(e, Tick):
            out += book.on_tick(e, SLIP)
        else:
            out += book.on_order(e, SLIP, now_ms=0)
    return [(d.order.order_id, d.kind, d.price) for d in out if d.kind != "rest"]


def test_a_market_order_fills_on_the_quote_in_effect_at_its_time_not_the_tick_that_released_it() -> None:
    # at 15 s the quote in effect is the 10 s tick (ask 101.01); the 20 s tick releases it
    assert run([scripted("o1", 15), *STREAM]) == [("o1", "fill", Decimal("101.01"))]


@pytest.mark.parametrize("arrives_after", range(0, 3))  # before any tick, after the 0 s tick, after the 10 s tick
def test_the_decisions_do_not_depend_on_when_the_script_arrived(arrives_after: int) -> None:
    script = [
        scripted("mkt", 15),                                              # → 101.01
        scripted("lim", 15, kind="limit", limit="99.50"),                 # the 30 s tick (ask 99.01) fills it
        scripted("gone", 12, kind="limit", limit="99.50", cancel_at=25),  # cancelled at 25 s, before that tick
    ]
    events = [*STREAM[:arrives_after], *script, *STREAM[arrives_after:]]
    assert run(events) == [("mkt", "fill", Decimal("101.01")), ("gone", "cancel", None),
                           ("lim", "fill", Decimal("99.01"))]


def test_a_cancel_time_before_the_fill_wins_and_one_after_it_finds_nothing() -> None:
    # limit 99.50 placed at 15 s fills on the 30 s tick; cancelled at 25 s it never fills, at 35 s it filled first
    assert run([scripted("a", 15, kind="limit", limit="99.50", cancel_at=25), *STREAM]) == [("a", "cancel", None)]
    assert run([scripted("b", 15, kind="limit", limit="99.50", cancel_at=35), *STREAM]) == [
        ("b", "fill", Decimal("99.01"))]
    with pytest.raises(ValueError, match="cancel_at_ms must be after at_ms"):
        scripted("c", 15, cancel_at=15)


def test_a_scripted_day_order_expires_at_the_end_of_its_market_day_not_the_wall_clock_one() -> None:
    day = 86_400
    book = Book()
    book.on_order(scripted("d", 100, kind="limit", limit="1", tif="day"), SLIP, now_ms=0)
    book.on_tick(quote_at(1, 200, "100"), SLIP)  # released: rests (limit 1 never fills)
    assert book.on_tick(quote_at(2, day - 1, "100"), SLIP) == []
    (expired,) = book.on_tick(quote_at(3, day, "100"), SLIP)
    assert (expired.order.order_id, expired.kind) == ("d", "expire")


def test_orders_at_one_time_apply_in_arrival_order_and_an_order_before_the_first_tick_takes_that_tick() -> None:
    book = Book()
    assert [d.kind for d in book.on_order(scripted("x", 0), SLIP, now_ms=0)] == ["rest"]  # held, shown in the book
    assert book.on_order(scripted("x", 0), SLIP, now_ms=0) == []  # a re-delivery is not held twice
    book.on_order(scripted("y", 0, side="sell"), SLIP, now_ms=0)
    assert book.on_tick(quote_at(1, 0, "100"), SLIP) == []  # the 0 s tick does not pass 0 s
    decided = book.on_tick(quote_at(2, 1, "200"), SLIP)
    assert [(d.order.order_id, d.price) for d in decided] == [("x", Decimal("100.01")), ("y", Decimal("99.99"))]


def test_an_immediate_cancel_takes_a_held_order_out() -> None:
    book = Book()
    book.on_tick(quote_at(1, 0, "100"), SLIP)
    book.on_order(scripted("h", 50), SLIP, now_ms=0)
    assert [(d.order.order_id, d.kind) for d in book.on_cancel(cancel("h"))] == [("h", "cancel")]
    assert book.on_tick(quote_at(2, 60, "100"), SLIP) == []


def test_an_order_without_a_market_time_is_applied_on_arrival_as_before() -> None:
    book = Book()
    book.on_tick(quote_at(1, 0, "100"), SLIP)
    plain = scripted("p", 0).model_copy(update={"at_ms": None})
    assert [(d.kind, d.price) for d in book.on_order(plain, SLIP, now_ms=0)] == [("fill", Decimal("100.01"))]


def test_a_book_pickled_before_scheduling_existed_restores_with_nothing_held() -> None:
    old = Book()
    del old.__dict__["scheduled"]  # what a pickle of the previous release carries
    restored = pickle.loads(pickle.dumps(old))  # noqa: S301 - our own state format
    assert restored.scheduled == ()
    assert run([scripted("o1", 15), *STREAM]) == [("o1", "fill", Decimal("101.01"))]


def test_a_scripted_orders_slippage_repeats_across_runs_whose_order_ids_differ() -> None:
    slip = SlippageModel(max_bps=Decimal("2"))

    def fill_of(order: OrderPlaced) -> Decimal | None:
        book = Book()
        book.on_order(order, slip, now_ms=0)
        book.on_tick(STREAM[0], slip)
        book.on_tick(STREAM[1], slip)
        (fill,) = book.on_tick(STREAM[2], slip)  # the 20 s tick releases it onto the 10 s quote (ask 101.01)
        return fill.price

    first = fill_of(scripted("run1-o1", 15).model_copy(update={"client_order_id": "buy1"}))
    again = fill_of(scripted("run2-o1", 15).model_copy(update={"client_order_id": "buy1"}))
    other = fill_of(scripted("run1-o2", 15).model_copy(update={"client_order_id": "buy2"}))
    assert first == again
    assert first is not None
    assert Decimal("101.01") < first < Decimal("101.01") * Decimal("1.0002")  # slipped, within the bound
    assert other != first  # another scripted order, another draw


def timed_cancel(oid: str, seconds: float, user: str = "u1") -> OrderCancelRequested:
    return OrderCancelRequested(order_id=oid, user_id=user, symbol="AAA", requested_at_ms=0, at_ms=at(seconds))


@pytest.mark.parametrize("cancel_arrives_after", [1, 2])  # before or after the 30 s tick reached the book
def test_a_timed_cancel_is_held_so_the_fill_at_its_tick_wins_wherever_the_cancel_arrived(
        cancel_arrives_after: int) -> None:
    """A strategy reacting to the 30 s tick cancels "at 30 s": the buy limit that tick filled stays filled, whether
    the cancel reached the book before or after that tick."""
    book = Book()
    out: list[Decision] = []
    out += book.on_tick(STREAM[0], SLIP)
    out += book.on_order(scripted("o1", 5, kind="limit", limit="99.50"), SLIP, now_ms=0)  # rests until 30 s
    out += book.on_tick(STREAM[1], SLIP)
    events: list[Tick | OrderCancelRequested] = [STREAM[2], STREAM[3], STREAM[4]]
    events.insert(cancel_arrives_after, timed_cancel("o1", 30))
    for e in events:
        out += book.on_tick(e, SLIP) if isinstance(e, Tick) else book.on_cancel(e)
    assert [(d.order.order_id, d.kind, d.price) for d in out if d.kind != "rest"] == [
        ("o1", "fill", Decimal("99.01"))]


def test_a_timed_cancel_takes_a_resting_order_out_before_the_next_tick_is_matched() -> None:
    book = Book()
    book.on_tick(STREAM[0], SLIP)
    assert [d.kind for d in book.on_order(scripted("o1", 5, kind="limit", limit="98.50"), SLIP, now_ms=0)] == ["rest"]
    book.on_tick(STREAM[1], SLIP)  # releases it: rests (ask 101.01 > 98.50)
    (held,) = book.on_cancel(timed_cancel("o1", 10))
    assert (held.kind, held.order.cancel_due_ms) == ("rest", at(10))  # shown as the order's cancel time
    # held beside the order's body, which stays as placed: a keyed retry of that body is the same order
    assert held.order.cancel_at_ms is None
    assert body_hash(held.order) == body_hash(scripted("o1", 5, kind="limit", limit="98.50"))
    assert order_item(held.order) == order_item(scripted("o1", 5, kind="limit", limit="98.50"))
    assert book.on_cancel(timed_cancel("o1", 10, user="u2")) == []  # not someone else's to cancel
    out = [d for e in STREAM[2:] for d in book.on_tick(e, SLIP)]
    assert [(d.order.order_id, d.kind) for d in out] == [("o1", "cancel")]  # before the 30 s tick (98) fills it


def test_a_timed_cancel_the_stream_already_passed_cancels_at_once_and_a_later_one_keeps_the_earlier_time() -> None:
    book = Book()
    book.on_tick(STREAM[0], SLIP)
    book.on_order(scripted("o1", 0.5, kind="limit", limit="50", cancel_at=25), SLIP, now_ms=0)
    book.on_tick(STREAM[1], SLIP)
    (kept,) = book.on_cancel(timed_cancel("o1", 30))
    assert (kept.order.cancel_due_ms, kept.order.held_cancel_ms) == (at(25), None)
    (earlier,) = book.on_cancel(timed_cancel("o1", 15))
    assert (earlier.order.cancel_due_ms, earlier.order.cancel_at_ms) == (at(15), at(25))  # placed time kept
    assert [d.kind for d in book.on_cancel(timed_cancel("o1", 5))] == ["cancel"]  # 5 s is behind the 10 s tick


@pytest.mark.parametrize("stream_at", [1, 2])  # the cancel reaches the book at 10 s, or at 20 s
def test_a_cancel_timed_before_its_orders_own_time_cancels_it_wherever_it_arrived(stream_at: int) -> None:
    book = Book()
    out: list[Decision] = []
    out += book.on_tick(STREAM[0], SLIP)
    out += book.on_order(scripted("o1", 25, kind="limit", limit="200"), SLIP, now_ms=0)  # would fill at once
    for i, t in enumerate(STREAM[1:], start=1):
        if i == stream_at + 1:
            out += book.on_cancel(timed_cancel("o1", 15))
        out += book.on_tick(t, SLIP)
    assert [(d.order.order_id, d.kind) for d in out if d.kind != "rest"] == [("o1", "cancel")]


def test_a_live_order_does_not_give_scripted_orders_the_cached_quote() -> None:
    """Scripted orders wait in a book with no tick yet; a live order takes the cached price for itself only."""
    book = Book()
    book.on_order(scripted("s1", 15), SLIP, now_ms=0)
    cached = quote_at(9, 30, "99")  # a later price in the cache
    live = OrderPlaced(order_id="live", user_id="u2", symbol="AAA", side="buy", qty=1, order_type="market",
                       placed_at_ms=0)
    (fill,) = book.on_order(live, SLIP, lambda _: cached, now_ms=0)
    assert fill.price == cached.ask
    out = [d for t in STREAM for d in book.on_tick(t, SLIP)]
    assert [(d.order.order_id, d.price) for d in out if d.kind == "fill"] == [("s1", Decimal("101.01"))]


def test_an_order_before_the_first_tick_is_cancelled_by_a_cancel_time_that_tick_passes() -> None:
    """A probe: with no quote before its time, the order met the first tick although its cancel time came
    before that tick (the README: cancelled once the ticks pass it, before that tick is matched)."""
    first = quote_at(1, 10, "100")  # ask 100.01
    assert run([scripted("pre", 5, kind="limit", limit="101", cancel_at=8), first]) == [("pre", "cancel", None)]
    assert run([scripted("kept", 5, kind="limit", limit="101", cancel_at=12), first]) == [
        ("kept", "fill", Decimal("100.01"))]


@pytest.mark.parametrize("at_s", [5.0, None])
def test_an_order_arriving_after_the_stream_passed_its_cancel_time_is_cancelled_not_matched(
        at_s: float | None) -> None:
    """A probe: an order (scripted, or live with a past `cancel_at_ms`) that came after the ticks passed its cancel
    time was matched on the quote then; the same cancel sent as a request before it cancelled it."""
    order = scripted("late", at_s if at_s is not None else 0, kind="limit", limit="101", cancel_at=20)
    if at_s is None:
        order = order.model_copy(update={"at_ms": None})
    assert run([quote_at(1, 30, "100"), order]) == [("late", "cancel", None)]


def test_a_day_order_whose_day_ends_before_its_cancel_time_expires_rather_than_being_cancelled() -> None:
    """A probe: a DAY order cancelled at 01:00 of the next market day was reported `cancelled` by the first tick
    after, although its day had ended (and it had expired) at 00:00."""
    day = 86_400
    order = scripted("d", 100, kind="limit", limit="1", tif="day", cancel_at=day + 3_600)
    assert run([quote_at(1, 200, "100"), order, quote_at(2, day + 7_200, "100")]) == [("d", "expire", None)]
    early = scripted("e", 100, kind="limit", limit="1", tif="day", cancel_at=day - 60)
    assert run([quote_at(1, 200, "100"), early, quote_at(2, day + 7_200, "100")]) == [("e", "cancel", None)]



@pytest.mark.parametrize("cancel_first", ["no", "before its time", "after its time"])
def test_a_day_order_whose_timed_cancel_came_first_expires_as_if_the_order_had(cancel_first: str) -> None:
    """A review: a scripted DAY order arriving after the stream passed its day's end and its cancel's market time
    expired when it came before its cancel, but was `cancelled` when the cancel overtook it (the book kept such a
    cancel as one "at once", or judged it so, skipping the day check its own `cancel_at_ms` gets): the outcome
    hung on arrival order."""
    day = 86_400
    order = scripted("d", 100, kind="limit", limit="1", tif="day")
    cancel = timed_cancel("d", day + 3_600)
    book = Book()
    out: list[Decision] = []
    book.on_tick(quote_at(1, 200, "100"), SLIP)
    if cancel_first == "before its time":
        out += book.on_cancel(cancel)
    book.on_tick(quote_at(2, 2 * day + 60, "100"), SLIP)  # past the order's day and its cancel's time
    if cancel_first == "after its time":
        out += book.on_cancel(cancel)
    out += book.on_order(order, SLIP, now_ms=0)
    if cancel_first == "no":
        out += book.on_cancel(cancel)
    assert [(d.order.order_id, d.kind) for d in out] == [("d", "expire")]



def test_a_live_day_order_after_its_cancel_time_on_a_market_clock_days_ahead_is_cancelled() -> None:
    """A review: the arrival check judged a live DAY order's day by its wall-clock placing time (its session is
    stamped later), so on a market clock days ahead of the wall clock it said `expire` for a cancel."""
    order = scripted("live", 0, kind="limit", limit="101", tif="day", cancel_at=3 * 86_400 + 10)
    order = order.model_copy(update={"at_ms": None})
    assert run([quote_at(1, 3 * 86_400 + 20, "100"), order]) == [("live", "cancel", None)]
