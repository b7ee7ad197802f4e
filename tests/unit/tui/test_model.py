"""The TUI's state, without Textual or a server: quotes, bars, change %, the account, orders, the status text."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tradesim.domain.events import Bar, OrderOutcome
from tradesim.domain.trades import TradeRecord, record_of
from tradesim.tui.app import TradesimApp
from tradesim.tui.model import (
    CHART,
    ORDERS,
    PORTFOLIO,
    SUMMARY,
    WATCH,
    Account,
    Health,
    Latency,
    Link,
    Market,
    Model,
    OpenOrder,
    Orders,
    Quote,
    decided_at_once,
    field_errors,
    order_body,
    parse_quote,
    record_of_order,
    record_of_trade,
    sparkline,
)

DAY = 86_400_000
T0 = 1_790_000_000_000 - 1_790_000_000_000 % DAY + 9 * 3_600_000  # 09:00 UTC of some day


def q(last: str, seq: int, run: int = 1, t: int = T0) -> Quote:
    p = Decimal(last)
    return Quote(p - Decimal("0.01"), p + Decimal("0.01"), p, t, run, seq)


def bar(symbol: str, start_ms: int, o: str, c: str, interval: str = "1m") -> Bar:
    width = 60_000 if interval == "1m" else 1_000
    lo, hi = min(Decimal(o), Decimal(c)), max(Decimal(o), Decimal(c))
    return Bar(symbol=symbol, interval=interval, window_start_ms=start_ms,  # type: ignore[arg-type]
               window_end_ms=start_ms + width, open=Decimal(o), high=hi, low=lo, close=Decimal(c),
               vwap=Decimal(c), volume=100, trade_count=1)


def record(order_id: str, status: str = "executed", decided: int = T0, symbol: str = "AAA", side: str = "buy",
           qty: int = 10, price: str | None = "100", reason: str | None = None) -> TradeRecord:
    executed = status == "executed"
    return TradeRecord(order_id=order_id, user_id="u", symbol=symbol, side=side, qty=qty,  # type: ignore[arg-type]
                       status=status, decided_at_ms=decided, reason=reason,
                       price=Decimal(price) if executed and price else None,
                       fee=Decimal("1.00") if executed else None)


def test_a_quote_frame_is_parsed_with_decimals() -> None:
    symbol, quote = parse_quote({"symbol": "AAA", "bid": "99.99", "ask": "100.01", "last": "100.00",
                                 "event_time_ms": 5, "seq": 3, "run_id": 7, "size": 1})
    assert symbol == "AAA"
    assert quote == Quote(Decimal("99.99"), Decimal("100.01"), Decimal("100.00"), 5, 7, 3)


def test_an_older_quote_is_ignored_and_a_newer_run_wins() -> None:
    m = Market(["AAA"])
    assert m.tick("AAA", q("100", 5), 0.0)
    assert not m.tick("AAA", q("101", 4), 0.0)
    assert not m.tick("AAA", q("101", 5), 0.0)
    assert m.last("AAA") == Decimal("100")
    assert m.tick("AAA", q("90", 1, run=2), 0.0)
    assert m.last("AAA") == Decimal("90")
    assert m.rows["AAA"].previous_last == Decimal("100")


def test_change_is_measured_from_the_first_price_seen_until_a_bar_of_the_day_is_known() -> None:
    m = Market(["AAA"])
    m.tick("AAA", q("100", 1), 0.0)
    m.tick("AAA", q("102", 2), 0.0)
    assert m.change_pct("AAA") == Decimal(2)
    m.set_bars("AAA", "1m", [bar("AAA", T0 - DAY, "50", "51"), bar("AAA", T0 - 60_000, "101", "101.5"),
                             bar("AAA", T0, "101.5", "102")])
    assert m.session_open("AAA") == Decimal("101")  # the first 1m bar of the tick's day, not yesterday's
    assert m.change_pct("AAA") == (Decimal(102) - Decimal(101)) / Decimal(101) * 100
    m.tick("AAA", q("103", 3, t=T0 + DAY), 0.0)  # the next simulated day: no bar of it yet
    assert m.session_open("AAA") is None
    assert m.change_pct("AAA") == Decimal(3)


def test_bars_replace_their_window_start_over_on_a_new_run_and_are_capped() -> None:
    m = Market(["AAA"])
    m.set_bars("AAA", "1s", [bar("AAA", T0 + i * 1000, "1", "1", "1s") for i in range(400)])
    assert len(m.bars("AAA", "1s")) == 300
    assert m.bars("AAA", "1s")[0].window_start_ms == T0 + 100_000
    m.add_bar(bar("AAA", T0 + 399_000, "1", "2", "1s"))
    assert len(m.bars("AAA", "1s")) == 300
    assert m.bars("AAA", "1s")[-1].close == Decimal(2)
    m.add_bar(bar("AAA", T0 + 300_000, "1", "3", "1s"))  # a window still held: replaced
    assert m.bars("AAA", "1s")[200].close == Decimal(3)
    m.add_bar(bar("AAA", T0 + 5_000, "7", "7", "1s"))  # older than anything held: another run
    assert [b.close for b in m.bars("AAA", "1s")] == [Decimal(7)]


def test_sparkline_scales_closes_and_ends_with_the_last_price() -> None:
    assert sparkline([Decimal(1), Decimal(2), Decimal(3)]) == "▁▅█"
    assert sparkline([Decimal(5), Decimal(5)]) == "▄▄"
    m = Market(["AAA"])
    assert m.spark("AAA", 8) == ""  # no bars: nothing to draw
    m.set_bars("AAA", "1m", [bar("AAA", T0 + i * 60_000, "10", str(10 + i)) for i in range(10)])
    m.tick("AAA", q("5", 1), 0.0)
    assert m.spark("AAA", 4) == "▇██▁"  # the newest 3 closes (17, 18, 19) and the last price 5


def portfolio_doc(as_of: int, cash: str = "9000.00", qty: int = 10, avg: str | None = "100.1") -> dict:
    return {"user_id": "u", "as_of_ms": as_of, "cash": cash,
            "positions": [{"symbol": "AAA", "qty": qty, "average_cost": avg, "realized_pnl": "0",
                           "last_price": "101"}]}


def test_portfolio_is_valued_at_the_latest_prices() -> None:
    a, m = Account(), Market()
    a.load(portfolio_doc(T0))
    v = a.valuation(m)
    assert v.holdings[0].last == Decimal(101)  # the API's price until the feed has one
    m.tick("AAA", q("110", 1), 0.0)
    v = a.valuation(m)
    h = v.holdings[0]
    assert (h.qty, h.average_cost, h.market_value) == (10, Decimal("100.1"), Decimal(1100))
    assert h.unrealized == Decimal(1100) - Decimal("1001.0")
    assert v.equity == Decimal(9000) + Decimal(1100)
    assert v.unrealized == h.unrealized


def test_a_fill_moves_cash_and_shares_and_is_folded_into_the_cost_once() -> None:
    a, m = Account(), Market()
    a.load(portfolio_doc(T0))
    fill = record("o1", qty=5, price="102")
    a.fill(fill, Decimal("8489.00"), 15, T0 + 10)
    a.fill(fill, Decimal("8489.00"), 15, T0 + 10)  # a repeat (at-least-once delivery) changes nothing
    h = a.holdings["AAA"]
    assert a.cash == Decimal("8489.00")
    assert h.qty == 15
    assert h.cost is not None
    assert h.cost.cost == Decimal("1001.0") + Decimal(510) + Decimal("1.00")
    m.tick("AAA", q("102", 1), 0.0)
    assert a.valuation(m).holdings[0].average_cost == ((Decimal("1512.0")) / 15).quantize(Decimal("1e-8"))


def test_the_cost_basis_is_the_apis_not_a_rounded_average_times_qty() -> None:
    # 3 bought at 10.00 with a 1.00 fee: cost 31.00, average 10.33333333 (× 3 = 30.99999999)
    a, m = Account(), Market()
    doc = portfolio_doc(T0, qty=3, avg="10.33333333")
    doc["positions"][0] |= {"cost_basis": "31.00", "last_price": "11"}
    doc["realized_pnl"] = "0"
    a.load(doc)
    assert a.valuation(m).unrealized == Decimal("2.00")  # as the API's: 33 − 31
    a.fill(record("o1", side="sell", qty=3, price="12"), Decimal("9035.00"), 0, T0 + 10)
    assert a.valuation(m).realized == Decimal("4.00")  # proceeds 35.00 − cost 31.00


def test_a_fill_the_view_cannot_place_leaves_the_cost_unknown_not_wrong() -> None:
    a, m = Account(), Market()
    a.load(portfolio_doc(T0))
    a.fill(record("o1", qty=5), Decimal("500"), 40, T0 + 10)  # 40 after buying 5: we missed fills
    m.tick("AAA", q("100", 1), 0.0)
    h = a.valuation(m).holdings[0]
    assert h.qty == 40
    assert h.average_cost is None
    assert h.unrealized is None
    assert h.market_value == Decimal(4000)


def test_a_fill_after_a_missed_round_trip_leaves_the_cost_unknown_not_the_old_one() -> None:
    """A probe: 10 held, a sale of the 10 missed (decided while the account channel reconnected), then a purchase of
    10 at 120 pushed: the shares after it were those held, so it was taken for a fill counted already and the
    average cost of the sold shares (100.1) was shown until the next portfolio read."""
    a, m = Account(), Market()
    a.load(portfolio_doc(T0))
    a.fill(record("o3", qty=10, price="120"), Decimal("8000"), 10, T0 + 30)
    m.tick("AAA", q("120", 1), 0.0)
    h = a.valuation(m).holdings[0]
    assert h.qty == 10
    assert h.average_cost is None
    assert h.unrealized is None


def test_an_older_api_answer_does_not_undo_a_newer_frame() -> None:
    a = Account()
    a.load(portfolio_doc(T0))
    a.frame({"symbol": "AAA", "cash": "100.00", "position": 0, "order_id": "o9", "as_of_ms": T0 + 50})
    assert "AAA" not in a.held()
    assert a.cash == Decimal(100)
    a.load(portfolio_doc(T0 + 20))  # answered before the frame's decision
    assert "AAA" not in a.held()
    assert a.cash == Decimal(100)
    assert a.valuation(Market()).holdings == []
    a.load(portfolio_doc(T0 + 60, cash="7.00", qty=3))
    assert a.held()["AAA"].qty == 3
    assert a.cash == Decimal(7)


def test_without_a_price_equity_is_unknown() -> None:
    a = Account()
    doc = portfolio_doc(T0)
    doc["positions"][0]["last_price"] = None
    a.load(doc)
    assert a.valuation(Market()).equity is None


def test_an_outcome_that_arrives_before_the_orders_answer_is_not_reopened() -> None:
    o = Orders()
    assert o.outcome(record("o1"))
    assert not o.placed(OpenOrder("o1", "AAA", "buy", 1, "market", None, None, "day", T0))
    assert o.open == {}
    assert not o.outcome(record("o1"))  # a repeat


def test_listing_open_orders_drops_what_was_decided_unseen_but_keeps_what_is_newer() -> None:
    o = Orders()
    old = OpenOrder("o1", "AAA", "buy", 1, "limit", "9", None, "gtc", T0)
    new = OpenOrder("o2", "AAA", "buy", 1, "limit", "9", None, "gtc", T0 + 1_000)
    o.placed(old)
    o.placed(new)
    o.cancelling("o3")  # unknown: nothing happens
    o.replace_open([OpenOrder("o4", "BBB", "sell", 2, "stop", None, "8", "day", T0 - 5)], fetched_from_ms=T0 + 500)
    assert set(o.open) == {"o2", "o4"}
    assert set(o.unsettled) == {"o1"}  # decided unseen: its outcome is still to be looked up


def test_an_order_decided_unseen_stays_unsettled_until_its_lookup_answers() -> None:
    model = Model()
    orders = model.orders

    def mk(order_id: str) -> OpenOrder:
        return OpenOrder(order_id, "AAA", "buy", 1, "limit", "9", None, "gtc", T0)

    model.on_open_orders([mk("o1"), mk("o2"), mk("o3"), mk("o4"), mk("o5")], T0)
    orders.cancelling("o2")
    model.on_open_orders([], T0 + 1)
    assert orders.open == {}
    assert list(orders.unsettled) == ["o1", "o2", "o3", "o4", "o5"]
    assert not orders.placed(mk("o1"))  # the POST's late answer does not reopen it
    model.on_looked_up("o1", {"order_id": "o1", "user_id": "u", "symbol": "AAA", "side": "buy", "qty": 1,
                              "type": "limit", "status": "cancelled", "placed_at_ms": T0, "decided_at_ms": T0 + 5},
                       0.0)
    assert orders.outcomes["o1"].status == "cancelled"
    model.dirty.clear()
    model.on_looked_up("o2", {"order_id": "o2", "user_id": "u", "symbol": "AAA", "side": "buy", "qty": 1,
                              "type": "limit", "limit_price": "9", "time_in_force": "gtc", "status": "accepted",
                              "placed_at_ms": T0}, 0.0)
    assert orders.open["o2"].cancelling  # open after all (the listing lagged), still being cancelled
    assert ORDERS in model.dirty
    model.on_looked_up("o3", None, 0.0)  # the API has no such order any more
    model.on_record(record("o4", decided=T0 + 7), 0.0)  # its outcome came another way first
    model.on_open_orders([mk("o2"), mk("o5")], T0 + 2)  # listed again
    assert orders.unsettled == {}
    assert set(orders.open) == {"o2", "o5"}
    assert set(orders.outcomes) == {"o1", "o4"}


def test_the_blotter_is_newest_first_and_bounded() -> None:
    o = Orders()
    for i in range(510):
        o.outcome(record(f"o{i}", decided=T0 + i))
    rows = o.blotter()
    assert len(rows) == 500
    assert rows[0].order_id == "o509"
    assert rows[-1].order_id == "o10"


def test_outcomes_from_the_api_read_as_records() -> None:
    order = {"order_id": "o1", "user_id": "u", "symbol": "AAA", "side": "sell", "qty": 3, "type": "limit",
             "status": "rejected", "reason": "insufficient_shares", "placed_at_ms": 1, "decided_at_ms": 2}
    assert record_of_order(order) == TradeRecord("o1", "u", "AAA", "sell", 3, "rejected", 2, "limit", 1,
                                                 "insufficient_shares")
    assert record_of_order({**order, "status": "accepted"}) is None
    trade = {"order_id": "o2", "user_id": "u", "symbol": "AAA", "side": "buy", "qty": 1, "status": "executed",
             "order_type": "market", "placed_at_ms": 1, "decided_at_ms": 2, "reason": None, "price": "10.5",
             "fee": "1.00", "notional": "10.50"}
    assert record_of_trade(trade).price == Decimal("10.5")


def test_the_model_marks_what_to_repaint() -> None:
    model = Model(market=Market(["AAA"]), selected="AAA")
    assert model.on_quote("AAA", q("1", 1), 0.0)
    assert model.take_dirty({CHART}) == ({CHART}, set())
    assert model.take_dirty() == ({WATCH}, {"AAA"})
    outcome = OrderOutcome(order_id="o1", user_id="u", symbol="BBB", side="buy", qty=2, status="executed",
                           fill_price=Decimal(5), fee=Decimal(1), cash_after=Decimal(89), position_after=2,
                           trade_id="o1-1", decided_at_ms=T0)
    model.latency.sent("o1", 1.0)
    assert model.on_outcome(outcome, 1.25)
    assert not model.on_outcome(outcome, 1.5)
    dirty, _ = model.take_dirty()
    assert {PORTFOLIO, SUMMARY} <= dirty
    assert model.account.holdings["BBB"].qty == 2
    assert "BBB" in model.market.rows
    assert list(model.latency.samples) == [250.0]


def test_link_and_health_texts_are_what_the_status_bar_says() -> None:
    link = Link("market data", "down", 2.0)
    assert link.text() == "market data: disconnected (reconnecting in 2.0 s)"
    assert Link("api", "connected").text() == "api: connected"
    health = Health(components=[("kafka", "running", True), ("api", "down", False)],
                    jobs=[("execution", "RUNNING")])
    assert health.text() == "stack: api down · jobs: execution running"
    assert Health(jobs_error="flink down", components=[]).text() == "stack: ok (0) · jobs: flink down"
    lat = Latency()
    for i, ms in enumerate((10, 20, 30, 40)):
        lat.sent(f"o{i}", 0.0)
        lat.seen(f"o{i}", ms / 1000)
    assert lat.text() == "order→outcome: 40 ms · 30 ms · 20 ms"
    model = Model(user_name="alice", health=health, latency=lat, account_feed="live")
    model.set_link(model.market_link, "connected")
    assert model.status_text() == ("alice · market data: connected · api: connecting… · account: live\n"
                                   "stack: api down · jobs: execution running · order→outcome: 40 ms · 30 ms · 20 ms")


FORM = {"side": "buy", "symbol": "aaa", "qty": "10", "type": "market", "limit_price": "", "stop_price": "",
        "time_in_force": "day"}


def test_a_valid_ticket_becomes_the_api_body() -> None:
    assert order_body(FORM) == ({"symbol": "AAA", "side": "buy", "qty": 10, "type": "market",
                                 "time_in_force": "day"}, {})
    body, errors = order_body({**FORM, "type": "stop_limit", "limit_price": "10.5", "stop_price": "11"})
    assert errors == {}
    assert body is not None
    assert (body["limit_price"], body["stop_price"]) == ("10.5", "11")


@pytest.mark.parametrize(("change", "field", "words"), [
    ({"qty": "0"}, "qty", "greater than 0"),
    ({"qty": "-3"}, "qty", "greater than 0"),
    ({"qty": "ten"}, "qty", "valid integer"),
    ({"qty": ""}, "qty", "valid integer"),
    # int() refuses these, or reads them as other numbers (before: "--1" crashed the app, "١٢" became 12)
    ({"qty": "--1"}, "qty", "valid integer"), ({"qty": "\u00b2"}, "qty", "valid integer"),
    ({"qty": "9" * 5000}, "qty", "valid integer"), ({"qty": "\u0661\u0662"}, "qty", "valid integer"),
    # a probe: 20 digits said "valid integer" while 10 said the limit
    ({"qty": "9" * 20}, "qty", "less than or equal to"), ({"qty": "9223372036854775807"}, "qty", "less than"),
    ({"symbol": "a b"}, "symbol", "symbol like AAPL"),
    ({"type": "limit"}, "limit_price", "limit_price is required"),
    ({"type": "stop", "stop_price": "1.23456"}, "stop_price", "price like"),
])
def test_an_invalid_ticket_names_the_field(change: dict[str, str], field: str, words: str) -> None:
    body, errors = order_body({**FORM, **change})
    assert body is None
    assert words in errors[field], errors


def test_api_field_errors_map_to_ticket_fields() -> None:
    errors = [{"loc": ["body", "qty"], "msg": "Input should be greater than 0", "type": "greater_than"},
              {"loc": ["body"], "msg": "Value error, stop_price is required for a stop order", "type": "value_error"},
              {"loc": [], "msg": "something else", "type": "x"}]
    assert field_errors(errors) == {"qty": "Input should be greater than 0",
                                    "stop_price": "stop_price is required for a stop order", "": "something else"}


def test_figures_a_table_cannot_round_are_shown_as_they_came() -> None:
    """Before: rounding NaN, Infinity or 1e40 raised InvalidOperation in the repaint, which ended the TUI."""
    from tradesim.client.format import cents, price, signed

    assert (cents("1e40"), price("Infinity"), signed("NaN"), signed("-1E+25")) == ("1E+40", "Infinity", "NaN",
                                                                                     "-1E+25")
    # not a number: never its text, which could be markup or control characters
    assert (cents("[bold]x[/]"), price("\x1b[2J"), signed("\\[blink]x")) == ("?", "?", "?")
    assert (cents("12.345"), price("185.12345"), signed("-3.999")) == ("12.34", "185.1234", "[red]-4.00[/red]")


def test_realized_pnl_counts_the_positions_the_answer_no_longer_lists() -> None:
    """Before: only the listed (held) positions' realized P&L was summed, so a closed position's vanished from
    the summary on start-up and on `r`, and an account not loaded showed 0."""
    a, m = Account(), Market()
    assert a.valuation(m).realized is None  # nothing loaded yet: not known, not 0
    doc = portfolio_doc(T0)
    doc["positions"][0]["realized_pnl"] = "2.50"
    a.load({**doc, "realized_pnl": "-4.65"})  # BBB was bought and sold out: -7.15 realized, not listed
    assert a.valuation(m).realized == Decimal("-4.65")
    a.fill(record("o1", side="sell", qty=10, price="101"), Decimal("10010"), 0, T0 + 10)  # AAA sold out too
    in_session = a.valuation(m).realized
    assert in_session is not None
    assert in_session == Decimal("-7.15") + a.holdings["AAA"].cost.realized  # type: ignore[union-attr]
    a.load({**portfolio_doc(T0 + 20), "positions": [], "realized_pnl": str(in_session)})  # `r`: nothing held
    assert a.valuation(m).realized == in_session
    a.load({**portfolio_doc(T0 + 30), "realized_pnl": None})  # analytics did not answer
    assert a.valuation(m).realized is None


def test_an_older_portfolio_answer_does_not_undo_the_newer_realized_figure() -> None:
    """A review: two fetches crossing applied the older answer's closed-position figure over the newer one's."""
    a, m = Account(), Market()
    a.load({**portfolio_doc(T0 + 50), "realized_pnl": "-9.00"})
    a.load({**portfolio_doc(T0), "realized_pnl": "-4.65"})  # answered later, put together earlier
    assert a.valuation(m).realized == Decimal("-9.00")


def test_an_order_an_earlier_attempt_may_have_placed_keeps_that_attempts_time() -> None:
    latency = Latency()
    latency.sent("o1", 1.0)
    latency.not_sent("o1")  # the API was not reached: the retry's time counts
    latency.sent("o1", 5.0)
    latency.reached("o1")  # timed out after sending: it may be placed
    latency.not_sent("o1")  # a third try that did not reach the API changes nothing
    latency.sent("o1", 9.0)
    assert latency.seen("o1", 6.0) == 1000.0


def test_only_orders_decided_at_once_and_outcomes_pushed_as_decided_give_latency_samples() -> None:
    """A probe: the status bar's order→outcome showed 58,795 ms for a limit order cancelled after resting, and the
    time until a refresh for outcomes read from the API."""
    assert decided_at_once({"type": "market", "time_in_force": "day"})
    assert decided_at_once({"type": "limit", "time_in_force": "ioc"})
    assert not decided_at_once({"type": "limit", "time_in_force": "gtc"})
    assert not decided_at_once({"type": "stop", "time_in_force": "day"})
    model = Model(market=Market(["AAA"]))
    model.latency.sent("polled", 1.0)
    model.latency.sent("pushed", 1.0)
    for order_id, pushed in (("polled", False), ("pushed", True)):
        outcome = OrderOutcome(order_id=order_id, user_id="u", symbol="AAA", side="buy", qty=1, status="cancelled",
                               decided_at_ms=T0)
        if pushed:
            model.on_outcome(outcome, 1.25)
        else:
            model.on_record(record_of(outcome), 60.0)
    assert list(model.latency.samples) == [250.0]  # the one pushed by the account channel as it was decided
    assert model.latency.pending == {}


def test_a_watched_quote_without_a_tick_for_longer_than_the_api_accepts_is_marked_stale() -> None:
    """A probe: with the market stopped, the watchlist showed its last prices as if live, and every order on them
    was refused `stale_price`. A quote older than `marketdata.stale_after_s` now shows so, until the next tick."""
    from tradesim.tui.widgets.tables import Watchlist

    m = Model(market=Market(["ACME", "INIT"]))
    assert m.on_quote("ACME", q("10", 1), received_at=100.0)
    m.take_dirty()
    assert not m.mark_stale(now=129.0, after_s=30)
    assert m.mark_stale(now=131.0, after_s=30)
    assert m.take_dirty() == ({WATCH}, {"ACME"})  # INIT has no quote yet: nothing to call stale
    assert not m.mark_stale(now=200.0, after_s=30)  # once
    stale = Watchlist._row(m.market, "ACME")
    assert str(stale[4]) == "stale"
    assert m.on_quote("ACME", q("11", 2), received_at=201.0)
    assert not m.market.rows["ACME"].stale
    assert str(Watchlist._row(m.market, "ACME")[4]) != "stale"


def test_a_snapshot_already_old_on_arrival_is_stale_by_its_age_not_its_arrival() -> None:
    """A probe's limit: opening the TUI on a stopped market showed the cached prices as live for another
    `stale_after_s`, while the API already refused orders on them."""
    m = Model(market=Market(["ACME", "INIT"]))
    assert m.on_quote("ACME", q("10", 1), received_at=100.0, age_s=25.0)
    assert m.on_quote("INIT", q("20", 1), received_at=100.0, age_s=5.0)
    assert m.mark_stale(now=106.0, after_s=30)
    assert m.market.rows["ACME"].stale
    assert not m.market.rows["INIT"].stale


def test_the_app_hands_a_snapshots_age_to_its_model(offline_app: TradesimApp) -> None:
    symbol = offline_app.model.market.watchlist[0]
    offline_app.feed_quote(symbol, q("10", 1), 100.0, 40.0)
    assert offline_app.model.market.rows[symbol].priced_at == 60.0


def test_an_outcome_before_the_orders_answer_leaves_nothing_behind() -> None:
    """A review: the answer to POST /orders marked its order as perhaps placed even when its outcome (pushed
    first) had already been seen, so the id was kept for ever; the same for an order never timed (a limit order)
    that was decided meanwhile."""
    latency = Latency()
    latency.sent("o1", 1.0)
    assert latency.seen("o1", 1.5) == 500.0
    latency.reached("o1")  # the answer, after the outcome
    latency.reached("o2")  # a limit order's answer: not timed
    assert latency.maybe_placed == set()
    assert latency.pending == {}
