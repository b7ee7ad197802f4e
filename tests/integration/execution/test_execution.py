"""Issue 7 on the real stack: matching, atomic idempotent settlement, faults."""

from __future__ import annotations

import os
import signal
import time
from decimal import Decimal

import pytest

from tradesim.adapters.dynamodb.client import DynamoDB
from tradesim.adapters.dynamodb.orders import OrderStore
from tradesim.domain.events import OrderCancelRequested
from tradesim.domain.fees import FeeModel
from tradesim.domain.money import round_cash
from tradesim.domain.portfolio import fold
from tradesim.stack.flink import Flink
from tradesim.stack.supervisor import Supervisor

from .conftest import Exchange, wait_for

pytestmark = pytest.mark.integration


def _fees(ex: Exchange) -> FeeModel:
    return ex.settings.trading.fee_model()


def test_market_buy_executes_and_updates_the_portfolio(ex: Exchange, symbol: str) -> None:
    user = ex.account("10000")
    ex.price(symbol, 1, "100")  # bid 100.00, ask 100.02
    reader = ex.outcomes()
    o = ex.order(user, symbol, "buy", qty=10)
    ex.send(o)
    out = reader.wait([o.order_id])[o.order_id]
    assert out.status == "executed"
    assert out.fill_price is not None
    assert Decimal("100.02") <= out.fill_price <= Decimal("100.02") * (1 + ex.settings.trading.slippage_bps / 10_000)
    assert out.fee == _fees(ex).fee(10, out.fill_price)
    p = ex.store.get(user)
    assert p is not None
    assert p.positions == {symbol: 10}
    assert p.cash == Decimal("10000") - round_cash(10 * out.fill_price) - out.fee == out.cash_after


def test_concurrent_buys_beyond_cash_execute_exactly_floor_cash_over_cost(ex: Exchange, symbol: str) -> None:
    ex.price(symbol, 1, "100")  # ask 100.02; a limit of 101 fills at exactly the ask: cost is known
    cost = round_cash(Decimal("100.02")) + _fees(ex).fee(1, Decimal("100.02"))
    user = ex.account(str(cost * 20 + Decimal("50.00")))
    reader = ex.outcomes()
    orders = [ex.order(user, symbol, "buy", qty=1, kind="limit", limit="101") for _ in range(50)]
    ex.send(*orders)
    outs = reader.wait([o.order_id for o in orders]).values()
    executed = [o for o in outs if o.status == "executed"]
    assert len(executed) == 20
    assert {(o.status, o.reason) for o in outs if o.status != "executed"} == {("rejected", "insufficient_funds")}
    p = ex.store.get(user)
    assert p is not None
    assert (p.cash, p.positions) == (Decimal("50.00"), {symbol: 20})


def test_a_users_decision_times_increase_in_the_order_the_ledger_applied_them(ex: Exchange, symbol: str) -> None:
    """Orders sent together settle in groups, one write each: before, a group's outcomes shared a millisecond, and
    the read side, folding fills by (decided_at_ms, order_id), took the random ids' order (a wrong average cost)."""
    ex.price(symbol, 1, "100")
    user = ex.account("100000")
    reader = ex.outcomes()
    orders = [ex.order(user, symbol, "buy", qty=1) for _ in range(30)]
    ex.send(*orders)
    in_ledger_order = sorted(reader.wait([o.order_id for o in orders]).values(), key=lambda o: o.position_after or 0)
    assert [o.position_after for o in in_ledger_order] == list(range(1, 31))
    times = [o.decided_at_ms for o in in_ledger_order]
    assert all(a < b for a, b in zip(times, times[1:], strict=False)), times


def test_selling_more_than_held_is_rejected(ex: Exchange, symbol: str) -> None:
    user = ex.account("1000")
    ex.price(symbol, 1, "10")
    reader = ex.outcomes()
    buy = ex.order(user, symbol, "buy", qty=5)
    ex.send(buy)
    assert reader.wait([buy.order_id])[buy.order_id].status == "executed"
    sell = ex.order(user, symbol, "sell", qty=6)
    ex.send(sell)
    out = reader.wait([sell.order_id])[sell.order_id]
    assert (out.status, out.reason) == ("rejected", "insufficient_shares")
    p = ex.store.get(user)
    assert p is not None
    assert p.positions == {symbol: 5}


def test_limit_order_rests_until_a_tick_crosses(ex: Exchange, symbol: str) -> None:
    user = ex.account("100000")
    ex.price(symbol, 1, "100")  # ask 100.02
    reader = ex.outcomes()
    o = ex.order(user, symbol, "buy", qty=3, kind="limit", limit="99.50")
    ex.send(o)
    ex.price(symbol, 2, "100.50")  # ask 100.53: still above the limit
    orders = OrderStore(DynamoDB(ex.settings.dynamodb))
    # resting: the job's Orders mirror marks it in the book (it stays open past the processing deadline)
    wait_for(lambda: (orders.get(o.order_id) or {}).get("in_book") is True, what="resting order in Orders")
    assert (orders.get(o.order_id) or {}).get("status") == "accepted"
    # and notes it open (OpenOrders)
    assert [i["order_id"] for i in orders.open_by_user(user, limit=10, max_read=10)] == [o.order_id]
    crossing_at = int(time.time() * 1000)
    ex.price(symbol, 3, "99.40")   # ask 99.44 ≤ 99.50
    out = reader.wait([o.order_id])[o.order_id]
    assert out.status == "executed"
    assert out.fill_price == Decimal("99.44")  # the ask, better than the limit
    assert out.decided_at_ms >= crossing_at, "it must not fill before the crossing tick"
    wait_for(lambda: (orders.get(o.order_id) or {}).get("status") == "executed", what="outcome in Orders")
    wait_for(lambda: not orders.db.client.query(  # the mirror removed its pointer with the outcome's write
        TableName=orders.open_table, KeyConditionExpression="user_id = :u",
        ExpressionAttributeValues={":u": {"S": user}}, ConsistentRead=True)["Items"], what="OpenOrders emptied")
    orders.db.close()


def test_cancel_of_a_resting_order(ex: Exchange, symbol: str) -> None:
    user = ex.account("5000")
    ex.price(symbol, 1, "100")
    reader = ex.outcomes()
    o = ex.order(user, symbol, "buy", qty=1, kind="limit", limit="50")
    ex.send(o)
    ex.price(symbol, 2, "100")  # the order is in the book once a later tick of the same key was processed
    ex.send(OrderCancelRequested(order_id=o.order_id, user_id=user, symbol=symbol,
                                 requested_at_ms=int(time.time() * 1000)))
    out = reader.wait([o.order_id])[o.order_id]
    assert out.status == "cancelled"
    p = ex.store.get(user)
    assert p is not None
    assert p.cash == Decimal("5000")
    assert p.outcomes[o.order_id].status == "cancelled"


def test_order_for_a_symbol_never_priced_is_rejected(ex: Exchange) -> None:
    user = ex.account("5000")
    reader = ex.outcomes()
    o = ex.order(user, "NEVERPRICED", "buy", qty=1)
    ex.send(o)
    out = reader.wait([o.order_id])[o.order_id]
    assert (out.status, out.reason) == ("rejected", "unknown_symbol")


def test_malformed_order_goes_to_dead_letter_and_the_job_keeps_running(ex: Exchange, symbol: str) -> None:
    from confluent_kafka import TopicPartition

    from tradesim.adapters.kafka.client import consumer

    dlq = ex.settings.topics.dead_letter
    c = consumer(ex.settings.kafka, group_id="dlq-probe-" + symbol)
    parts = c.list_topics(dlq, timeout=10).topics[dlq].partitions
    c.assign([TopicPartition(dlq, p, c.get_watermark_offsets(TopicPartition(dlq, p), timeout=10)[1])
              for p in parts])
    marker = f'{{"type":"order_placed","order_id":"{symbol}","qty":-1}}'.encode()
    ex.send(marker)
    found: list[str] = []

    def dead_lettered() -> bool:
        found.extend(m.value().decode() for m in c.consume(100, timeout=0.2)
                     if m.error() is None and symbol in m.value().decode())
        return bool(found)

    wait_for(dead_lettered, 60, "dead letter")
    c.close()
    assert '"consumer":"tradesim-execution"' in found[0]
    user = ex.account("1000")
    ex.price(symbol, 1, "10")
    reader = ex.outcomes()
    o = ex.order(user, symbol, "buy", qty=1)
    ex.send(o)
    assert reader.wait([o.order_id])[o.order_id].status == "executed"


def test_portfolio_equals_fold_of_trade_executed(ex: Exchange, symbol: str) -> None:
    user = ex.account("20000")
    ex.price(symbol, 1, "50")
    reader = ex.outcomes()
    orders = [ex.order(user, symbol, side, qty) for side, qty in
              [("buy", 10), ("buy", 5), ("sell", 7), ("sell", 20), ("buy", 400), ("sell", 8)]]
    for o in orders:  # one at a time: the order of settlement is the order of sending
        ex.send(o)
        reader.wait([o.order_id])
    reader.poll()
    mine = [o for o in reader.seen if o.user_id == user]
    folded = fold(Decimal("20000"), mine)
    p = ex.store.get(user)
    assert p is not None
    assert (p.cash, {s: q for s, q in p.positions.items() if q}) == (folded.cash, folded.positions)
    assert {o.order_id for o in mine} == {o.order_id for o in orders}


def test_a_replayed_order_whose_outcome_left_the_portfolio_item_gets_the_same_outcome_again(
        ex: Exchange, symbol: str) -> None:
    live_s, above = ex.settings.trading.outcome_live_s, ex.settings.trading.prune_above
    user = ex.account("100000")
    ex.price(symbol, 1, "10")
    reader = ex.outcomes()
    first = [ex.order(user, symbol, "buy", qty=1) for _ in range(above + 1)]
    ex.send(*first)
    reader.wait([o.order_id for o in first])
    ex.price(symbol, 2, "11")  # the replay must not be judged again at the new price
    time.sleep(live_s + 1)  # not a condition to await: the outcomes must *age* past the live horizon
    later = ex.order(user, symbol, "buy", qty=1)  # the write after which the job prunes
    ex.send(later)
    reader.wait([later.order_id])
    wait_for(lambda: (p := ex.store.get(user)) is not None and first[0].order_id not in p.outcomes, 30,
             "the first outcome to leave the item for Orders")
    before = ex.store.get(user)
    assert before is not None
    assert before.archived_n > 0
    ex.send(first[0])  # a replay, as after a restore from an older checkpoint
    wait_for(lambda: (reader.poll(), len(reader.by_order()[first[0].order_id]) == 2)[1], 60,
             "the replayed order's outcome")
    original, again = reader.by_order()[first[0].order_id]
    assert (again.status, again.fill_price, again.fee, again.decided_at_ms) == (
        original.status, original.fill_price, original.fee, original.decided_at_ms)
    after = ex.store.get(user)
    assert after is not None
    assert (after.cash, after.positions, after.version) == (before.cash, before.positions, before.version)


def test_taskmanager_kill_9_mid_run_loses_nothing_and_applies_nothing_twice(ex: Exchange, symbol: str,
                                                                            dynamodb_alone: Supervisor) -> None:
    # 2,000 orders over 20 users (100 each). With 4 users (500 outcomes, ~120 KB per item) this test exposed a
    # dynalite defect in about one run of three: acknowledged writes to a large, hot item lost or read stale
    # (README, "Known problems"). That is the emulator's problem, not the job's; the crash is what is tested here.
    n, n_users = 2000, 20
    ex.price(symbol, 1, "20")
    users = [ex.account("1000000") for _ in range(n_users)]
    reader = ex.outcomes()
    orders = [ex.order(users[i % n_users], symbol, "buy" if i % 3 else "sell", qty=1 + i % 5) for i in range(n)]
    ex.send(*orders[: n // 2])
    flink = Flink(ex.settings)
    wait_for(lambda: (reader.poll(), len(reader.by_order()) > 100)[1], 120, "the run to be under way")
    tm = flink.taskmanager_pid()
    assert tm is not None
    scratch = set((flink.dir / "tmp" / "taskmanager").iterdir())  # its blob cache, RPC jar, Python files
    assert scratch, "the TaskManager keeps its scratch in the stack's flink/tmp/taskmanager"
    os.kill(tm, signal.SIGKILL)
    ex.send(*orders[n // 2:])
    got = reader.wait([o.order_id for o in orders], timeout_s=300)
    assert flink.taskmanager_pid() not in (None, tm), "the TaskManager must have been restarted"
    left = sorted(p.name for p in scratch if p.exists())
    assert not left, f"the killed TaskManager's scratch stayed behind: {left}"
    # every order: exactly one distinct terminal outcome (replays may repeat it, never change it)
    for oid, copies in reader.by_order().items():
        if oid in got:
            assert len({(c.status, c.reason, c.fill_price, c.fee) for c in copies}) == 1, oid
    # Check what is durable: restart the store (a clean close and reopen of dynalite's LevelDB) before reading,
    # so a write that was only ever visible in the old process's memory counts as lost.
    dynamodb_alone.down()
    dynamodb_alone.up()
    ex.store.db.close()  # pooled connections went to the old process
    archive = OrderStore(ex.store.db)
    for u in users:
        mine = [got[o.order_id] for o in orders if o.user_id == u]
        # Poll with a deadline (the job may still be writing a replayed outcome); an outcome that never shows up
        # fails the test, and the message says which ones and what was emitted for them.
        holder: list = []  # type: ignore[type-arg]

        def recorded(u: str = u, mine: list = mine, holder: list = holder) -> bool:  # type: ignore[type-arg]
            # on the item, or in Orders once it left the item (see tradesim.adapters.dynamodb.portfolios)
            p = ex.store.get(u)
            archived = archive.decided([o.order_id for o in mine if p is None or o.order_id not in p.outcomes])
            where = {o.order_id: (p.outcomes.get(o.order_id) if p is not None else None) or archived.get(o.order_id)
                     for o in mine}
            holder[:] = [p, where]
            return p is not None and all(where[o.order_id] is not None for o in mine)

        try:
            wait_for(recorded, 60, f"every outcome of {u} recorded on its portfolio or in Orders")  # none lost
        except AssertionError as exc:
            p, where = holder
            missing = [o for o in mine if where.get(o.order_id) is None]
            copies = reader.by_order()
            detail = [(o.order_id, o.status, o.reason, len(copies.get(o.order_id, []))) for o in missing[:10]]
            raise AssertionError(f"{exc}: {len(missing)} of {len(mine)} missing; portfolio version "
                                 f"{p and p.version}, {p and len(p.outcomes)} outcomes; first missing "
                                 f"(order, emitted status, reason, copies): {detail}") from None
        p, where = holder
        assert all(where[o.order_id].status == o.status for o in mine), "emitted what was recorded"
        assert p.version == len(p.outcomes) + p.archived_n, "each recorded outcome is exactly one write"
        folded = fold(Decimal("1000000"), mine)  # applied once each
        assert (p.cash, {s: q for s, q in p.positions.items() if q}) == (folded.cash, folded.positions)


def test_dynamodb_unavailable_for_a_while_then_catches_up(ex: Exchange, symbol: str,
                                                           dynamodb_alone: Supervisor) -> None:
    user = ex.account("100000")
    ex.price(symbol, 1, "10")
    reader = ex.outcomes()
    dynamodb_alone.down()
    try:
        orders = [ex.order(user, symbol, "buy", qty=1) for _ in range(20)]
        ex.send(*orders)
        reader.poll()
        assert not any(o.order_id in reader.by_order() for o in orders)  # nothing can be settled now
    finally:
        dynamodb_alone.up()
    outs = reader.wait([o.order_id for o in orders], timeout_s=180)
    assert all(o.status == "executed" for o in outs.values())
    p = ex.store.get(user)
    assert p is not None
    assert p.positions == {symbol: 20}
