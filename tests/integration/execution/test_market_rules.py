"""Market data rules on the real stack: ticks outside the schema's bounds (price cap, 4 decimal places, print size)
never reach a book or the price cache (dead-lettered with the reason; trading goes on); an older replay run never
moves the execution job's quote back; DAY orders end with the market day they entered, not the wall clock's."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from tradesim.adapters.dynamodb.client import DynamoDB
from tradesim.adapters.dynamodb.orders import OrderStore
from tradesim.adapters.kafka.client import producer
from tradesim.domain.events import encode
from tradesim.domain.matching import DAY_MS
from tradesim.services.ingest.publisher import publish_all
from tradesim.testing.factories import tick
from tradesim.testing.letters import DeadLetters

from .conftest import Exchange, wait_for

pytestmark = pytest.mark.integration


def test_an_out_of_range_tick_is_dead_lettered_and_the_symbol_trades_on(ex: Exchange, symbol: str) -> None:
    settings = ex.settings
    good = json.loads(encode(tick(symbol, 1, price="50", run_id=1)))
    bad = [good | {"seq": 2, "bid": "1e30", "ask": "1e30", "last": "1e30"},           # 1e30: the reported crash
           good | {"seq": 3, "last": "50.00001"},                                      # a fifth decimal place
           good | {"seq": 4, "size": 10**12}]                                          # an absurd print
    letters = DeadLetters(settings)
    p = producer(settings.kafka)
    for record in bad:
        p.produce(settings.topics.market_data, key=symbol.encode(), value=json.dumps(record).encode())
    assert p.flush(10) == 0
    try:
        got = letters.wait(symbol, len(bad), consumer="marketdata")
    finally:
        letters.close()
    reasons = {x.record: x.reason for x in got}
    assert len(reasons) == len(bad), reasons
    text = " | ".join(reasons.values())
    assert "less than or equal to 1000000" in text
    assert "decimal places" in text
    assert "less than or equal to 1000000000" in text
    assert ex.cache.latest(symbol) is None  # nothing of it cached

    ex.price(symbol, 5, "50")  # then a good tick: cached, in the book
    user = ex.account("1000")
    outcomes = ex.outcomes()
    order = ex.order(user, symbol)
    ex.send(order)
    outcome = outcomes.wait([order.order_id])[order.order_id]
    assert outcome.status == "executed"
    assert outcome.fill_price is not None
    assert outcome.fill_price < 51  # the book's quote is the good tick's, never the 1e30 one


def test_an_older_replay_runs_ticks_never_move_the_jobs_quote_back(ex: Exchange, symbol: str) -> None:
    """The price cache's rule in the book too: run 2 at 100, then run 1's ticks at 50 — a buy limit at 60 rests
    (before, it filled at run 1's price while the newest run was far away)."""
    user = ex.account("10000")
    publish_all(ex.settings, [tick(symbol, 1, price="100")], run_id=2)
    wait_for(lambda: ex.cache.latest(symbol) is not None, 30, "price cached")
    outcomes = ex.outcomes()
    order = ex.order(user, symbol, kind="limit", limit="60")
    ex.send(order)
    publish_all(ex.settings, [tick(symbol, s, price="50") for s in range(2, 6)], run_id=1)
    publish_all(ex.settings, [tick(symbol, 2, price="58")], run_id=2)  # the newest run reaches the limit
    outcome = outcomes.wait([order.order_id])[order.order_id]
    assert (outcome.status, outcome.fill_price) == ("executed", Decimal("58.03"))  # run 2's ask, not run 1's


def test_a_day_order_expires_with_the_market_day_of_a_past_dated_replay(ex: Exchange, symbol: str) -> None:
    day0 = 19_725 * DAY_MS  # 2024-01-02, as the shipped scenarios are dated
    user = ex.account("10000")
    publish_all(ex.settings, [tick(symbol, 1, price="100", event_time_ms=day0 + 15 * 3_600_000)])
    wait_for(lambda: ex.cache.latest(symbol) is not None, 30, "price cached")
    outcomes = ex.outcomes()
    day, gtc = ex.order(user, symbol, kind="limit", limit="50", tif="day"), ex.order(user, symbol, kind="limit",
                                                                                      limit="50")
    ex.send(day, gtc)
    orders = OrderStore(DynamoDB(ex.settings.dynamodb))  # both rest in the book before the next day's tick
    wait_for(lambda: all((o := orders.get(i)) is not None and o.get("in_book") for i in (day.order_id, gtc.order_id)),
             60, "both orders in the book")
    publish_all(ex.settings, [tick(symbol, 2, price="100", event_time_ms=day0 + DAY_MS)])  # the next market day
    outcome = outcomes.wait([day.order_id])[day.order_id]
    assert (outcome.status, outcome.reason) == ("expired", "expired")
    assert gtc.order_id not in outcomes.by_order()  # a GTC order rests on
