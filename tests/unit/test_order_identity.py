"""An order's identity (its body) and its lifetime before the book: pure rules, no server."""

from __future__ import annotations

from decimal import Decimal
from typing import get_args

from tradesim.domain.book import Book
from tradesim.domain.events import OrderPlaced, OrderStatus
from tradesim.domain.matching import SlippageModel
from tradesim.domain.orders import (
    NOT_PROCESSED,
    body_hash,
    may_rest,
    read_grace_ms,
    shown_may_differ,
    shown_status,
    stored_statuses,
)
from tradesim.testing.factories import tick

DAY_MS = 86_400_000


def _order(**change: object) -> OrderPlaced:
    base = OrderPlaced(order_id="o1", user_id="u1", symbol="ACME", side="buy", qty=5, order_type="limit",
                       limit_price=Decimal("100.00"), time_in_force="gtc", placed_at_ms=1_000)
    return base.model_copy(update=change)


def test_the_body_hash_is_the_body_not_its_id_time_or_spelling() -> None:
    assert body_hash(_order()) == body_hash(_order(order_id="o2", placed_at_ms=9, limit_price=Decimal("100")))
    for other in ({"qty": 6}, {"side": "sell"}, {"symbol": "ACMF"}, {"limit_price": Decimal("100.01")},
                  {"time_in_force": "day"}, {"client_order_id": "c"}, {"at_ms": 60_000}, {"cancel_at_ms": 9}):
        assert body_hash(_order(**other)) != body_hash(_order()), other


def test_an_order_without_a_market_time_keeps_the_hash_it_had_before_market_times_existed() -> None:
    # computed before `at_ms` existed: claims in the Orders table carry it, a keyed retry must still match
    assert body_hash(_order()) == "8518b5e42df978ca8a4685257389728808b19d2e300ab64a179eec849a7875f0"


def test_an_order_that_reaches_the_book_after_the_deadline_expires_unmatched() -> None:
    book = Book()
    late = book.on_order(_order(), SlippageModel(), now_ms=1_000 + DAY_MS + 1, deadline_ms=DAY_MS)
    assert [(d.kind, d.reason) for d in late] == [("expire", NOT_PROCESSED)]
    assert book.resting == {}
    # on time, the same order meets the book as usual (no price yet: unknown symbol)
    assert [d.kind for d in Book().on_order(_order(), SlippageModel(), now_ms=1_000 + DAY_MS,
                                            deadline_ms=DAY_MS)] == ["reject"]


def test_an_order_resting_before_the_deadline_is_not_expired_by_a_redelivery() -> None:
    book = Book()
    book.resting["o1"] = (_order(), False)
    assert book.on_order(_order(), SlippageModel(), now_ms=10 * DAY_MS, deadline_ms=DAY_MS) == []


def test_readers_show_an_overdue_accepted_order_expired_unless_a_book_holds_it() -> None:
    deadline = 60_000
    # a grace after the deadline: the job may have taken the order just in time and not yet written so
    late = deadline + read_grace_ms(deadline)
    assert 0 < read_grace_ms(deadline) <= read_grace_ms(10**9) == 60_000
    assert shown_status("accepted", False, 0, late, deadline) == ("accepted", None)
    assert shown_status("accepted", False, 0, late + 1, deadline) == ("expired", NOT_PROCESSED)
    assert shown_status("accepted", True, 0, 10 * deadline, deadline) == ("accepted", None)
    assert shown_status("executed", False, 0, 10 * deadline, deadline) == ("executed", None)


def test_a_status_filter_knows_which_statuses_a_read_may_change() -> None:
    """A list filtered on a status must read past the rows that show otherwise (the API's `limit`)."""
    for stored in ("accepted", *get_args(OrderStatus)):
        for reached, now in ((False, 0), (False, 10**12), (True, 10**12)):
            shown, _ = shown_status(stored, reached, 0, now, 60_000)
            assert stored in stored_statuses(shown)
            if shown != stored:
                assert shown_may_differ(shown)
                assert shown_may_differ(stored)
    assert not shown_may_differ("executed")


def test_only_orders_that_may_rest_ever_rest_in_a_book() -> None:
    """`may_rest` decides which decided orders the Orders mirror also removes from `OpenOrders`: an order it calls
    unable to rest must be decided on arrival, whatever the price (here none can fill: far from the market)."""
    far = {"buy": Decimal("1.00"), "sell": Decimal("100000.00")}
    cases = [_order(order_type=t, side=side, time_in_force=tif, limit_price=far[side] if "limit" in t else None,
                    stop_price=(far["sell"] if side == "buy" else far["buy"]) if "stop" in t else None)
             for t in ("market", "limit", "stop", "stop_limit") for side in ("buy", "sell")
             for tif in ("day", "gtc", "ioc")]
    for order in cases:
        book = Book()
        book.on_tick(tick("ACME", 1, event_time_ms=900), SlippageModel())
        kinds = [d.kind for d in book.on_order(order, SlippageModel(), now_ms=1_000)]
        assert ("rest" in kinds) <= may_rest(order), (order.order_type, order.side, order.time_in_force, kinds)
        if order.order_type != "market" and order.time_in_force != "ioc":
            assert kinds == ["rest"], (order.order_type, order.side, order.time_in_force, kinds)
    scripted = _order(order_type="market", limit_price=None, time_in_force="day", at_ms=5_000)
    assert may_rest(scripted)
    assert not may_rest(_order(order_type="market", limit_price=None, time_in_force="day"))
