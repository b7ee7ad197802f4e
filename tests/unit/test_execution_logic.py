"""The order book and settlement rules without Flink (the ledger is an in-memory stand-in: pure unit test)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest

from tradesim.domain.book import EARLY_CANCEL_WINDOW_MS, EARLY_CANCELS_KEPT, Book, Decision
from tradesim.domain.errors import (
    InsufficientFunds,
    InsufficientShares,
    OutcomeAlreadyRecorded,
    PortfolioFull,
    PortfolioNotFound,
)
from tradesim.domain.events import OrderCancelRequested, OrderOutcome, OrderPlaced
from tradesim.domain.fees import FeeModel
from tradesim.domain.matching import SlippageModel
from tradesim.domain.orders import NOT_PROCESSED, shown_status
from tradesim.domain.portfolio import Written
from tradesim.domain.settlement import DecisionClock, RecordedOutcome, settle, settle_group
from tradesim.testing.factories import tick

SLIP = SlippageModel(max_bps=Decimal("0"))
FEES = FeeModel(per_share=Decimal("0"), bps=Decimal("0"), minimum=Decimal("1.00"))


def order(oid: str, side: str = "buy", kind: str = "market", qty: int = 10, limit: str | None = None,
          stop: str | None = None, tif: str = "gtc", user: str = "u1") -> OrderPlaced:
    return OrderPlaced(order_id=oid, user_id=user, symbol="AAA", side=side, qty=qty, order_type=kind,  # type: ignore[arg-type]
                       limit_price=Decimal(limit) if limit else None, stop_price=Decimal(stop) if stop else None,
                       time_in_force=tif, placed_at_ms=0)  # type: ignore[arg-type]


@dataclass
class MemoryStore:
    """Same contract as PortfolioStore.apply_fill: one atomic check-and-write per call."""

    cash: Decimal
    positions: dict[str, int] = field(default_factory=dict)
    version: int = 0
    outcomes: dict[str, RecordedOutcome] = field(default_factory=dict)
    #: outcomes recorded outside the item (record_elsewhere), where a replay finds them as the real store's do
    elsewhere: dict[str, RecordedOutcome] = field(default_factory=dict)

    def position(self, symbol: str) -> int:
        return self.positions.get(symbol, 0)

    def apply_fill(self, user_id: str, order_id: str, cash_delta: Decimal, symbol: str, qty_delta: int, *,
                   status: str = "executed", details: Any = None, placed_at_ms: int | None = None) -> Written:
        first = self.outcomes.get(order_id) or self.elsewhere.get(order_id)
        if first is not None:
            raise OutcomeAlreadyRecorded(order_id, first)
        if self.position(symbol) + qty_delta < 0:  # the shares first, as the real ledger
            raise InsufficientShares("shares")
        if self.cash + cash_delta < 0:
            raise InsufficientFunds("cash")
        self.cash += cash_delta
        self.positions[symbol] = self.position(symbol) + qty_delta
        d = details or {}
        self.outcomes[order_id] = RecordedOutcome(
            status=status, decided_at_ms=int(d["decided_at_ms"]), reason=d.get("reason") or None,
            fill_price=Decimal(d["fill_price"]) if "fill_price" in d else None,
            fee=Decimal(d["fee"]) if "fee" in d else None)
        self.version += 1
        return Written(user_id, self.cash, symbol, self.position(symbol) if qty_delta else None, self.version,
                       len(self.outcomes))

    def record_elsewhere(self, order: OrderPlaced, outcome: OrderOutcome) -> None:
        if order.order_id in self.elsewhere:
            raise OutcomeAlreadyRecorded(order.order_id, self.elsewhere[order.order_id])
        self.elsewhere[order.order_id] = RecordedOutcome(
            status=outcome.status, decided_at_ms=outcome.decided_at_ms, reason=outcome.reason)

    def recorded(self, user_id: str, order_id: str) -> RecordedOutcome | None:
        return self.outcomes.get(order_id) or self.elsewhere.get(order_id)


def test_market_order_without_any_price_is_rejected_unknown_symbol() -> None:
    (d,) = Book().on_order(order("o1"), SLIP)
    assert (d.kind, d.reason) == ("reject", "unknown_symbol")


def test_market_order_uses_the_fallback_quote_when_no_tick_was_seen() -> None:
    cached = tick("AAA", 1, price="9.99", run_id=7)  # ask 10.01
    book = Book()
    (d,) = book.on_order(order("o1"), SLIP, fallback=lambda _: cached)
    assert (d.kind, d.price) == ("fill", Decimal("10.01"))
    # the cached price's run is the book's now: an older run's tick does not move it back
    assert book.on_tick(tick("AAA", 50, price="5", run_id=6), SLIP) == []
    assert book.quote is not None
    assert book.quote.ask == Decimal("10.01")


def test_an_order_whose_cancel_time_the_fallback_quote_passed_is_cancelled_not_filled() -> None:
    cached = tick("AAA", 1, price="9.99", event_time_ms=5_000)
    late = order("o1").model_copy(update={"cancel_at_ms": 4_000})
    (d,) = Book().on_order(late, SLIP, fallback=lambda _: cached)
    assert d.kind == "cancel"
    (d,) = Book().on_order(order("o2").model_copy(update={"cancel_at_ms": 5_000}), SLIP, fallback=lambda _: cached)
    assert d.kind == "fill"  # not passed yet: the quote at its cancel time still counts


def test_limit_rests_then_fills_when_a_tick_crosses() -> None:
    book = Book()
    book.on_tick(tick("AAA", 1, price="100"), SLIP)  # ask 100.02
    (rested,) = book.on_order(order("o1", kind="limit", limit="99.50"), SLIP)
    assert (rested.kind, rested.order.order_id) == ("rest", "o1")  # announced once, for the Orders mirror
    assert "o1" in book.resting
    assert book.on_order(order("o1", kind="limit", limit="99.50"), SLIP) == []  # re-delivered: not again
    assert book.on_tick(tick("AAA", 2, price="99.80"), SLIP) == []  # ask 99.83 > 99.50
    (d,) = book.on_tick(tick("AAA", 3, price="99.40"), SLIP)      # ask 99.44 ≤ 99.50
    assert (d.kind, d.price) == ("fill", Decimal("99.44"))
    assert book.resting == {}


def test_redelivered_tick_does_not_act_twice() -> None:
    book = Book()
    book.on_tick(tick("AAA", 5, price="100"), SLIP)
    book.on_order(order("o1", kind="limit", limit="90"), SLIP)
    assert book.on_tick(tick("AAA", 4, price="50"), SLIP) == []  # an older tick of the same run
    assert "o1" in book.resting


def test_cancel_removes_a_resting_order_only_for_its_owner() -> None:
    book = Book()
    book.on_tick(tick("AAA", 1), SLIP)
    book.on_order(order("o1", kind="limit", limit="1"), SLIP)
    assert book.on_cancel(OrderCancelRequested(order_id="o1", user_id="intruder", requested_at_ms=1)) == []
    (d,) = book.on_cancel(OrderCancelRequested(order_id="o1", user_id="u1", requested_at_ms=1))
    assert d.kind == "cancel"
    assert book.on_cancel(OrderCancelRequested(order_id="o1", user_id="u1", requested_at_ms=2)) == []


def test_a_cancel_that_came_before_its_order_cancels_it_when_it_comes() -> None:
    """A probe: an order whose claim's answer was lost was never published; its user cancelled it (202, but the
    book knew no such order and dropped the cancel), then a retry with the key sent it and it rested, live."""
    book = Book()
    book.on_tick(tick("AAA", 1), SLIP)
    assert book.on_cancel(OrderCancelRequested(order_id="o1", user_id="u1", requested_at_ms=5)) == []
    assert book.on_cancel(OrderCancelRequested(order_id="o2", user_id="intruder", requested_at_ms=5)) == []
    (d,) = book.on_order(order("o1", kind="limit", limit="1"), SLIP, now_ms=10, deadline_ms=1000)
    assert (d.kind, d.order.order_id) == ("cancel", "o1")
    assert "o1" not in book.resting
    (d,) = book.on_order(order("o2", kind="limit", limit="1"), SLIP, now_ms=10, deadline_ms=1000)
    assert d.kind == "rest"  # someone else's cancel does not touch u1's order
    assert book.early_cancels == (("o2", "intruder", 5, None),)


def test_an_order_that_comes_after_the_deadline_expires_even_when_its_cancel_came_first() -> None:
    """A property test: a keyed retry a day after placing sends the user's cancel, then the order; the book
    cancelled it, though readers had shown it expired (not processed in time) since the deadline, promising that
    the job decides exactly that. It expires, and takes its cancel out of the book."""
    deadline = 86_400_000
    book = Book()
    book.on_tick(tick("AAA", 1), SLIP)
    assert book.on_cancel(OrderCancelRequested(order_id="o1", user_id="u1", requested_at_ms=2 * deadline)) == []
    now = 2 * deadline + 10
    assert shown_status("accepted", False, 0, now, deadline) == ("expired", NOT_PROCESSED)
    (d,) = book.on_order(order("o1", kind="limit", limit="1"), SLIP, now_ms=now, deadline_ms=deadline)
    assert (d.kind, d.reason) == ("expire", NOT_PROCESSED)
    assert book.early_cancels == ()


def test_early_cancels_are_forgotten_once_their_order_could_no_longer_overtake_them() -> None:
    """A cancel overtakes its order only while the order's publish is on its way; an order sent again later
    comes with its cancel again. So the book keeps such cancels a window long, and at most EARLY_CANCELS_KEPT:
    after a day of cancels that came just after their order filled it held 200 of them (written with every
    tick), and an order sent again after them was not cancelled."""
    window = EARLY_CANCEL_WINDOW_MS
    book = Book()
    book.on_tick(tick("AAA", 1), SLIP)
    book.on_cancel(OrderCancelRequested(order_id="old", user_id="u1", requested_at_ms=0))
    book.on_cancel(OrderCancelRequested(order_id="new", user_id="u1", requested_at_ms=900))
    later = order("o3", kind="limit", limit="1").model_copy(update={"placed_at_ms": window + 500})
    book.on_order(later, SLIP, now_ms=window + 500, deadline_ms=86_400_000)
    assert book.early_cancels == (("new", "u1", 900, None),)
    for i in range(EARLY_CANCELS_KEPT + 5):
        book.on_cancel(OrderCancelRequested(order_id=f"c{i}", user_id="u1", requested_at_ms=1000))
    assert len(book.early_cancels) == EARLY_CANCELS_KEPT
    assert book.early_cancels[-1][0] == f"c{EARLY_CANCELS_KEPT + 4}"
    # a cancel a window later forgets them all (a book is written at every record: it stays small)
    book.on_cancel(OrderCancelRequested(order_id="late", user_id="u1", requested_at_ms=1001 + window))
    assert book.early_cancels == (("late", "u1", 1001 + window, None),)


def test_an_early_cancel_is_matched_by_the_records_times_so_a_replay_minutes_later_decides_the_same() -> None:
    """A review: the window was measured on the job's clock, so a job restored from a checkpoint that replayed
    "cancel, then its order" more than a window later forgot the cancel, and the order went live."""
    book = Book()
    book.on_tick(tick("AAA", 1), SLIP)
    book.on_cancel(OrderCancelRequested(order_id="o1", user_id="u1", requested_at_ms=1_000))
    late = order("o1", kind="limit", limit="1").model_copy(update={"placed_at_ms": 900})
    (d,) = book.on_order(late, SLIP, now_ms=1_000 + 10 * EARLY_CANCEL_WINDOW_MS, deadline_ms=86_400_000)
    assert d.kind == "cancel"
    # a longer Kafka delivery timeout keeps them longer (the job passes the window it derives from it)
    book.on_cancel(OrderCancelRequested(order_id="o2", user_id="u1", requested_at_ms=1_000))
    slow = late.model_copy(update={"order_id": "o2", "placed_at_ms": 1_000 + 2 * EARLY_CANCEL_WINDOW_MS})
    (d,) = book.on_order(slow, SLIP, now_ms=slow.placed_at_ms, deadline_ms=86_400_000,
                         early_window_ms=3 * EARLY_CANCEL_WINDOW_MS)
    assert d.kind == "cancel"


def test_a_cancel_at_a_market_time_that_came_before_its_order_holds_when_it_comes() -> None:
    """A review: `DELETE /orders/{id}?at_ms=T` that reached the book before its order was dropped, and the order
    filled after T."""
    book = Book()
    book.on_tick(tick("AAA", 1, price="100", event_time_ms=10_000), SLIP)
    timed = OrderCancelRequested(order_id="o1", user_id="u1", requested_at_ms=5, at_ms=20_000)
    assert book.on_cancel(timed) == []
    (d,) = book.on_order(order("o1", kind="limit", limit="95"), SLIP, now_ms=10, deadline_ms=86_400_000)
    assert (d.kind, d.order.cancel_due_ms) == ("rest", 20_000)  # the mirror shows when it will be cancelled
    assert book.on_tick(tick("AAA", 2, price="99", event_time_ms=15_000), SLIP) == []
    (d,) = book.on_tick(tick("AAA", 3, price="94", event_time_ms=30_000), SLIP)
    assert (d.kind, d.order.order_id) == ("cancel", "o1")  # before: filled at 94
    # the stream passed the cancel's time before the order came: cancelled as it comes
    assert book.on_cancel(timed.model_copy(update={"order_id": "o2", "at_ms": 25_000})) == []
    (d,) = book.on_order(order("o2", kind="limit", limit="95"), SLIP, now_ms=20, deadline_ms=86_400_000)
    assert (d.kind, d.order.order_id) == ("cancel", "o2")
    # a timed and a plain cancel of one order: the plain one, at once
    book.on_cancel(timed.model_copy(update={"order_id": "o3", "at_ms": 90_000}))
    book.on_cancel(timed.model_copy(update={"order_id": "o3", "at_ms": None}))
    (d,) = book.on_order(order("o3", kind="limit", limit="1"), SLIP, now_ms=30, deadline_ms=86_400_000)
    assert d.kind == "cancel"


def _lost(o: OrderPlaced, requested_at_ms: int = 5) -> OrderCancelRequested:
    return OrderCancelRequested(order_id=o.order_id, user_id=o.user_id, symbol=o.symbol,
                                requested_at_ms=requested_at_ms, lost_order=o)


def test_a_cancel_of_a_lost_order_cancels_it_once_unless_this_book_holds_it() -> None:
    """The execution job started without the state that held an order (`jobs submit --fresh`, a plain `jobs
    cancel`): it showed open for ever. The submit sends a cancel carrying the order; the new run cancels it, keeps
    one it read again (it holds it: its own), and settling keeps an outcome recorded first."""
    store = MemoryStore(cash=Decimal("10000"))
    book = Book()  # the new run's
    book.on_tick(tick("AAA", 1, price="100", event_time_ms=10_000), SLIP)
    lost = order("o1", kind="limit", limit="1")
    (d,) = book.on_cancel(_lost(lost))
    assert (d.kind, d.order) == ("cancel", lost)
    assert settle(d, store, FEES, now_ms=lambda: 7).outcome.status == "cancelled"
    # a later copy of it (say, a retry) is cancelled as it comes: nothing rests as a ghost
    (again,) = book.on_order(lost, SLIP, now_ms=8, deadline_ms=86_400_000)
    assert again.kind == "cancel"
    assert "o1" not in book.resting
    # read again by this run, before the cancel: it rests here, and stays
    reread = order("o2", kind="limit", limit="1")
    book.on_order(reread, SLIP)
    assert book.on_cancel(_lost(reread)) == []
    assert "o2" in book.resting
    scripted = order("o3", kind="limit", limit="1").model_copy(update={"at_ms": 50_000})
    book.on_order(scripted, SLIP)  # held for its market time
    assert book.on_cancel(_lost(scripted)) == []
    assert [o.order_id for o in book.scheduled] == ["o3"]
    # decided after all (its outcome never reached `Orders`): the first outcome stands
    filled = order("o4", qty=1)
    settle(Decision(filled, "fill", price=Decimal("100")), store, FEES, now_ms=lambda: 9)
    (late,) = book.on_cancel(_lost(filled, 10))
    replayed = settle(late, store, FEES, now_ms=lambda: 11).outcome
    assert (replayed.status, replayed.decided_at_ms, store.positions) == ("executed", 9, {"AAA": 1})


def test_a_cancel_may_carry_only_its_own_order_and_a_plain_one_is_written_as_before() -> None:
    from tradesim.domain.errors import InvalidRecord
    from tradesim.domain.events import decode_trade_order, encode

    mine = order("o1", kind="limit", limit="1")
    ok = _lost(mine)
    assert decode_trade_order(encode(ok)) == ok  # the order travels whole
    for other in (order("o2"), order("o1", user="u2"), mine.model_copy(update={"symbol": "BBB"})):
        raw = encode(ok).replace(encode(mine), encode(other))
        with pytest.raises(InvalidRecord, match="must be the cancelled order"):
            decode_trade_order(raw)
    timed = encode(ok).replace(b'"at_ms":null', b'"at_ms":5', 1)  # the cancel's own, before its order's
    with pytest.raises(InvalidRecord, match="takes effect at once"):
        decode_trade_order(timed)
    plain = OrderCancelRequested(order_id="o1", user_id="u1", symbol="AAA", requested_at_ms=1)
    assert b"lost_order" not in encode(plain)  # a job of the release before reads it (it refuses unknown fields)
    assert decode_trade_order(encode(plain)) == plain


def test_an_early_cancel_a_book_kept_before_market_times_were_kept_still_cancels() -> None:
    book = Book()
    book.on_tick(tick("AAA", 1), SLIP)
    book.early_cancels = (("o1", "u1", 5),)  # as pickled by the fortieth session's job
    (d,) = book.on_order(order("o1", kind="limit", limit="1"), SLIP, now_ms=10, deadline_ms=86_400_000)
    assert d.kind == "cancel"


def test_a_book_pickled_before_early_cancels_existed_restores_with_none() -> None:
    import copy

    book = Book()
    book.on_tick(tick("AAA", 1), SLIP)
    old = copy.copy(book)  # as pickle restores it: the instance's dict, without the field it did not have then
    del old.__dict__["early_cancels"]
    assert old.early_cancels == ()
    (d,) = old.on_order(order("o1", kind="limit", limit="1"), SLIP)
    assert d.kind == "rest"


def test_an_order_a_replay_now_rests_is_its_recorded_outcome_when_it_was_decided_before() -> None:
    """A review: after a crash between the fill's write and its emission, the restored book matched the replayed
    limit order against other ticks and it rested; a rest never reaches settling, so the fill (cash moved) was
    never announced."""
    from tradesim.domain.settlement import decided_before

    store = MemoryStore(cash=Decimal("10000"))
    o1 = order("o1", kind="limit", limit="100")
    first = settle(Decision(o1, "fill", price=Decimal("99.03")), store, FEES)
    book = Book()  # restored from before the fill
    book.on_tick(tick("AAA", 2, price="101"), SLIP)
    (rest,) = book.on_order(o1, SLIP)
    assert rest.kind == "rest"
    again = decided_before(rest, store)
    assert again is not None
    assert (again.outcome, again.written) == (first.outcome.model_copy(update={"cash_after": None,
                                                                               "position_after": None}), None)
    assert decided_before(Decision(order("o2", kind="limit", limit="1"), "rest"), store) is None  # it rests


def test_settle_executes_once_and_replays_the_recorded_outcome() -> None:
    store = MemoryStore(cash=Decimal("1000"))
    d = Decision(order("o1", qty=10), "fill", price=Decimal("50"))
    first = settle(d, store, FEES, now_ms=lambda: 1).outcome
    assert (first.status, first.fill_price, first.fee, first.cash_after) == ("executed", Decimal("50"),
                                                                             Decimal("1.00"), Decimal("499.00"))
    # after a restore the same order matches at another price: the recorded outcome wins, nothing applies twice
    again = settle(Decision(order("o1", qty=10), "fill", price=Decimal("60")), store, FEES, now_ms=lambda: 2).outcome
    assert (again.status, again.fill_price, again.decided_at_ms) == ("executed", Decimal("50"), 1)
    assert store.cash == Decimal("499.00")
    assert store.positions == {"AAA": 10}


def test_settle_rejects_insufficient_funds_and_shares_and_records_it() -> None:
    store = MemoryStore(cash=Decimal("100"))
    r = settle(Decision(order("o1", qty=10), "fill", price=Decimal("50")), store, FEES).outcome
    assert (r.status, r.reason) == ("rejected", "insufficient_funds")
    s = settle(Decision(order("o2", side="sell", qty=1), "fill", price=Decimal("50")), store, FEES).outcome
    assert (s.status, s.reason) == ("rejected", "insufficient_shares")
    assert store.cash == Decimal("100")
    assert store.outcomes["o1"].status == "rejected"
    # a later fill decision for the rejected order re-emits the rejection
    replay = settle(Decision(order("o1", qty=1), "fill", price=Decimal("1")), store, FEES).outcome
    assert (replay.status, replay.reason) == ("rejected", "insufficient_funds")


@pytest.mark.parametrize(("kind", "status"), [("cancel", "cancelled"), ("expire", "expired")])
def test_cancel_and_expire_are_recorded(kind: str, status: str) -> None:
    store = MemoryStore(cash=Decimal("100"))
    out = settle(Decision(order("o1"), kind, reason="expired" if kind == "expire" else None), store, FEES).outcome  # type: ignore[arg-type]
    assert out.status == status
    assert store.outcomes["o1"].status == status


def test_many_buys_exceeding_cash_execute_floor_cash_over_cost() -> None:
    store = MemoryStore(cash=Decimal("1000"))
    outs = [settle(Decision(order(f"o{i}", qty=1), "fill", price=Decimal("99")), store, FEES).outcome
            for i in range(50)]
    executed = [o for o in outs if o.status == "executed"]
    assert len(executed) == 10  # ⌊1000 / (99 + 1 fee)⌋
    assert [(o.status, o.reason) for o in outs if o.status != "executed"] == [("rejected", "insufficient_funds")] * 40
    assert store.cash == Decimal("0")


def test_settle_tells_the_store_when_each_order_was_placed() -> None:
    """The store needs it to know whether the order's outcome may have left the item for the archive."""
    placed: list[int | None] = []

    class Recording(MemoryStore):
        def apply_fill(self, *args: Any, **kwargs: Any) -> Written:
            placed.append(kwargs.get("placed_at_ms"))
            return super().apply_fill(*args, **kwargs)

    store = Recording(cash=Decimal("1000"))
    fill = order("o1").model_copy(update={"placed_at_ms": 1_111})
    cancel = order("o2").model_copy(update={"placed_at_ms": 2_222})
    settle(Decision(fill, "fill", price=Decimal("10")), store, FEES)
    settle(Decision(cancel, "cancel"), store, FEES)
    assert placed == [fill.placed_at_ms, cancel.placed_at_ms]


def test_settle_rejects_when_the_portfolio_item_cannot_hold_another_outcome() -> None:
    class FullStore(MemoryStore):
        def apply_fill(self, *args: Any, **kwargs: Any) -> Written:
            raise PortfolioFull("too many")

    store = FullStore(cash=Decimal("1000"))
    fill = settle(Decision(order("o1"), "fill", price=Decimal("10")), store, FEES).outcome
    cancel = settle(Decision(order("o2"), "cancel"), store, FEES).outcome
    assert [(o.status, o.reason) for o in (fill, cancel)] == [("rejected", "too_many_recent_orders")] * 2
    assert store.cash == Decimal("1000")
    assert {o: r.status for o, r in store.elsewhere.items()} == {"o1": "rejected", "o2": "rejected"}


def test_a_rejection_the_item_had_no_room_for_is_what_a_replay_finds_once_it_has_room() -> None:
    """A restore replays the order after the item made room: it must not execute what was announced rejected."""
    class FullStore(MemoryStore):
        def apply_fill(self, *args: Any, **kwargs: Any) -> Written:
            raise PortfolioFull("too many")

    full = FullStore(cash=Decimal("1000"))
    first = settle(Decision(order("o1"), "fill", price=Decimal("10")), full, FEES).outcome
    roomy = MemoryStore(cash=Decimal("1000"), elsewhere=full.elsewhere)
    replay = settle(Decision(order("o1"), "fill", price=Decimal("10")), roomy, FEES)
    assert (replay.outcome.status, replay.outcome.reason) == (first.status, first.reason) == (
        "rejected", "too_many_recent_orders")
    assert (roomy.cash, roomy.outcomes) == (Decimal("1000"), {})


def test_a_user_without_a_portfolio_is_rejected_and_the_rejection_recorded_elsewhere() -> None:
    class NoStore(MemoryStore):
        def apply_fill(self, *args: Any, **kwargs: Any) -> Written:
            raise PortfolioNotFound("nobody")

    store = NoStore(cash=Decimal("0"))
    out = settle(Decision(order("o1"), "fill", price=Decimal("10")), store, FEES).outcome
    assert (out.status, out.reason) == ("rejected", "invalid")
    assert store.elsewhere["o1"].status == "rejected"


def test_settle_hands_over_what_its_write_left_and_nothing_for_a_replay() -> None:
    """The job patches the API's holdings view with it, downstream of the settling stage."""
    store = MemoryStore(cash=Decimal("1000"))
    first = settle(Decision(order("o1"), "fill", price=Decimal("10")), store, FEES)
    assert first.written == Written("u1", store.cash, "AAA", 10, 1, 1)
    assert settle(Decision(order("o1"), "fill", price=Decimal("11")), store, FEES).written is None


def test_a_failed_read_model_update_pauses_updates_then_they_resume() -> None:
    from tradesim.jobs.execution_logic import BestEffort

    now = [100.0]
    calls: list[list[int]] = []
    errors: list[Exception] = []

    def flaky(batch: list[int]) -> None:
        calls.append(batch)
        if batch[0] == 1:
            raise ConnectionError("redis down")

    updates = BestEffort(flaky, pause_s=5, clock=lambda: now[0], on_error=errors.append)
    updates.apply([1])
    updates.apply([2])  # paused: not sent
    now[0] += 5
    updates.apply([3, 4])
    updates.apply([])  # nothing to send: no call
    assert (calls, len(errors)) == ([[1], [3, 4]], 1)


class GroupingStore(MemoryStore):
    """MemoryStore with PortfolioStore's group commit: a group changes a tentative copy, written at flush; a
    flush that loses (`lose` set) writes nothing."""

    def __init__(self, cash: Decimal) -> None:
        super().__init__(cash=cash)
        self.lose, self.flushes = 0, 0
        self.saved: tuple[Decimal, dict[str, int], dict[str, RecordedOutcome], int] | None = None

    def group(self, user_id: str) -> None:
        self.saved = (self.cash, dict(self.positions), dict(self.outcomes), self.version)

    def flush_group(self, user_id: str) -> None:
        from tradesim.domain.errors import VersionConflict

        self.flushes += 1
        if self.lose:
            self.lose -= 1
            self.end_group(user_id)
            raise VersionConflict("another writer")
        self.saved = None

    def end_group(self, user_id: str) -> None:
        if self.saved is not None:
            self.cash, self.positions, self.outcomes, self.version = self.saved
            self.saved = None


@pytest.mark.parametrize("lose", [0, 1])
def test_a_group_settles_like_one_by_one_even_when_its_write_loses(lose: int) -> None:
    decisions = [Decision(order("o1", qty=10), "fill", price=Decimal("50")),
                 Decision(order("o2", qty=20), "fill", price=Decimal("50")),  # more than the cash left
                 Decision(order("o1", qty=10), "fill", price=Decimal("60")),  # a replay inside the same group
                 Decision(order("o3"), "cancel")]
    one_by_one = MemoryStore(cash=Decimal("1000"))
    expected = [settle(d, one_by_one, FEES).outcome for d in decisions]
    store = GroupingStore(cash=Decimal("1000"))
    store.lose = lose
    settled = settle_group("u1", decisions, store, FEES)
    assert [(s.outcome.status, s.outcome.reason, s.outcome.fill_price, s.outcome.cash_after) for s in settled] == [
        (o.status, o.reason, o.fill_price, o.cash_after) for o in expected]
    assert (store.cash, store.positions, set(store.outcomes)) == (
        one_by_one.cash, one_by_one.positions, set(one_by_one.outcomes))
    assert store.flushes == 1
    assert [s.written.version for s in settled if s.written is not None][-1] == store.version  # as the item is


def test_a_groups_outcomes_sort_by_decision_time_in_the_order_the_ledger_applied_them() -> None:
    """Before: a group's outcomes shared one millisecond, and readers folding fills by (decided_at_ms, order_id)
    took the ids' order: a sell before its buy, a wrong average cost and realized P&L."""
    now = [5_000]
    clock = DecisionClock(lambda: now[0])
    store = GroupingStore(cash=Decimal("10000"))
    first = [Decision(order(oid, side=side, qty=10), "fill", price=Decimal("50"))
             for oid, side in (("z-buy", "buy"), ("a-sell", "sell"), ("m-buy", "buy"))]
    settled = settle_group("u1", first, store, FEES, clock)
    second = settle_group("u1", [Decision(order("b-sell", side="sell", qty=10), "fill", price=Decimal("51"))],
                          store, FEES, clock)  # the next group, still in the same millisecond
    outcomes = [s.outcome for s in settled + second]
    assert [o.status for o in outcomes] == ["executed"] * 4
    by_time = sorted(outcomes, key=lambda o: (o.decided_at_ms, o.order_id))
    assert [o.order_id for o in by_time] == ["z-buy", "a-sell", "m-buy", "b-sell"]
    assert [o.decided_at_ms for o in outcomes] == [5_000, 5_001, 5_002, 5_003]


def test_a_replay_or_a_lost_group_takes_no_decision_time() -> None:
    """A replay re-emits its recorded time; a group whose write lost recorded none: neither moves the user's clock
    (before: each took a millisecond, and the next new outcome ran that far ahead of the wall clock)."""
    clock = DecisionClock(lambda: 7_000)
    store = GroupingStore(cash=Decimal("10000"))
    settle_group("u1", [Decision(order("first"), "fill", price=Decimal("50"))], store, FEES, clock)
    assert clock.last("u1") == 7_000
    replays = [Decision(order("first"), "fill", price=Decimal("50")) for _ in range(20)]
    store.lose = 1  # the group's write loses once: settled again one by one
    settled = settle_group("u1", [*replays, Decision(order("new"), "fill", price=Decimal("50"))], store, FEES,
                           clock)
    assert [s.outcome.decided_at_ms for s in settled] == [7_000] * 20 + [7_001]
    assert clock.last("u1") == 7_001


def test_the_decision_clock_keeps_each_users_last_time_and_forgets_users_long_behind_the_wall_clock() -> None:
    now = [1_000]
    clock = DecisionClock(lambda: now[0])
    clock.recorded("a", 1_005)
    clock.recorded("a", 1_002)  # never back
    assert (clock.last("a"), clock.last("b")) == (1_005, -1)
    for i in range(5_000):  # many users, one outcome each, over seconds: memory stays bounded
        now[0] = 2_000 + i
        clock.recorded(f"user-{i}", now[0])
    assert len(clock._last) <= 2 * DecisionClock.FORGET_MS + 1024
    assert clock.last("a") == -1  # forgotten: its time is long behind the wall clock
