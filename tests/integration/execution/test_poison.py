"""No single record stops the execution job: a tick or order a stage raises on goes to `dead_letter` with the
error, and the job goes on without a restart. The records are poisoned by `faults.poison` (set for the test
stack in tests/integration/conftest.py): the stage raises on every record of that symbol, as a bug would."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from tradesim.adapters.dynamodb.client import DynamoDB
from tradesim.adapters.dynamodb.orders import OrderStore
from tradesim.adapters.kafka.client import producer
from tradesim.services.ingest.publisher import publish_all
from tradesim.settings import PoisonStage, Settings
from tradesim.stack.flink import Flink
from tradesim.testing.factories import tick
from tradesim.testing.letters import DeadLetters

from .conftest import Exchange, running, wait_for

pytestmark = pytest.mark.integration
JOB = "tradesim-execution"


def _poison(settings: Settings, stage: PoisonStage) -> str:
    symbol = settings.faults.poison.get(stage)
    assert symbol, f"the test stack runs with faults.poison[{stage!r}] (tests/integration/conftest.py); " \
                   "a stack started without it: `tradesim down` and run again"
    return symbol


def _failed_on_poison(settings: Settings) -> list[str]:
    """The job's failures caused by an injected fault (none: the guard caught every one)."""
    (job_id,) = running(settings)
    return [f for f in Flink(settings).rest().failures(job_id) if "InjectedFault" in f]


def test_a_tick_and_an_order_the_matching_raises_on_are_dead_lettered_and_the_job_goes_on(
        ex: Exchange, symbol: str) -> None:
    poison = _poison(ex.settings, "match")
    letters = DeadLetters(ex.settings)
    ex.price(symbol, 1, "20")
    user = ex.account("1000")
    outcomes = ex.outcomes()

    run_id = time.time_ns() // 1_000_000
    publish_all(ex.settings, [tick(poison, 1, price="20")], run_id=run_id)
    (on_tick,) = letters.wait(f'"run_id":{run_id}', 1, JOB)
    assert (on_tick.source_topic, on_tick.consumer) == (ex.settings.topics.market_data, "tradesim-execution")
    assert on_tick.reason.startswith("match failed: InjectedFault: injected fault: match fails on " + poison)

    bad, good = ex.order(user, poison), ex.order(user, symbol)
    ex.send(bad, good)
    got = outcomes.wait([bad.order_id, good.order_id])
    (on_order,) = letters.wait(bad.order_id, 1, JOB)
    assert on_order.source_topic == ex.settings.topics.trade_orders
    assert "match failed: InjectedFault" in on_order.reason
    # the poisoned order still ends, with nothing moved; the other one executes as usual
    assert (got[bad.order_id].status, got[bad.order_id].reason) == ("rejected", "internal_error")
    assert got[good.order_id].status == "executed"
    assert ex.store.get(user).positions == {symbol: 1}
    assert _failed_on_poison(ex.settings) == []


def test_a_decision_whose_settling_raises_is_set_aside_alone(ex: Exchange, symbol: str) -> None:
    """The user's other orders in the same group write settle; the poisoned one is dead-lettered, and its order
    cannot be rejected either (settling anything of it raises), so it stays open — never executed."""
    poison = _poison(ex.settings, "settle")
    letters = DeadLetters(ex.settings)
    ex.price(symbol, 1, "20")
    publish_all(ex.settings, [tick(poison, 1, price="30")], run_id=time.time_ns() // 1_000_000)
    wait_for(lambda: ex.cache.latest(poison) is not None, 30, "poison symbol priced")
    user = ex.account("1000")
    outcomes = ex.outcomes()

    first, bad, last = ex.order(user, symbol), ex.order(user, poison), ex.order(user, symbol, qty=2)
    ex.send(first, bad, last)
    got = outcomes.wait([first.order_id, last.order_id])
    (letter,) = letters.wait(bad.order_id, 1, JOB)
    assert "settle failed: InjectedFault: injected fault: settle fails on " + poison in letter.reason
    assert letter.source_topic == ex.settings.topics.trade_orders
    assert [got[o.order_id].status for o in (first, last)] == ["executed", "executed"]
    outcomes.poll()
    assert bad.order_id not in outcomes.by_order()
    portfolio = ex.store.get(user)
    assert portfolio.positions == {symbol: 3}
    assert portfolio.cash == min(got[o.order_id].cash_after or 0 for o in (first, last)) < Decimal("1000")
    assert bad.order_id not in OrderStore(DynamoDB(ex.settings.dynamodb)).decided([bad.order_id])
    assert _failed_on_poison(ex.settings) == []


def test_records_without_a_value_on_both_topics_are_set_aside_and_orders_go_on(ex: Exchange, symbol: str) -> None:
    """A tombstone (a record with no value) on `market_data` or `trade_orders` used to make the source's reader
    throw: the job restarted on that record forever and no order executed."""
    letters = DeadLetters(ex.settings)
    ex.price(symbol, 1, "20")
    user = ex.account("1000")
    outcomes = ex.outcomes()
    (job_id,) = running(ex.settings)
    p = producer(ex.settings.kafka)
    p.produce(ex.settings.topics.market_data, key=symbol.encode(), value=None)
    p.produce(ex.settings.topics.trade_orders, key=user.encode(), value=None)
    assert p.flush(30) == 0
    ex.price(symbol, 2, "21")  # after the market tombstone on the symbol's partition

    order = ex.order(user, symbol)
    ex.send(order)
    got = outcomes.wait([order.order_id])
    assert got[order.order_id].status == "executed"
    # the order tombstone is a bad record (a tick one is skipped, as any unreadable tick)
    wait_for(lambda: [x.source_topic for x in letters.about("", JOB) if x.record == ""]
             == [ex.settings.topics.trade_orders], 60, "the tombstone's dead letter")
    assert running(ex.settings) == [job_id]
    assert [f for f in Flink(ex.settings).rest().failures(job_id) if "deserialize" in f] == []
