"""The `Orders` table against the real dynalite: the API's claim, the job's in-book mark and outcomes."""

from __future__ import annotations

import time
import uuid
from decimal import Decimal
from typing import Any

import pytest

from tradesim.adapters.dynamodb.client import DynamoDB
from tradesim.adapters.dynamodb.orders import OrderStore, placed_order, requested_cancel
from tradesim.domain.events import OrderCancelRequested, OrderOutcome, OrderPlaced
from tradesim.settings import Settings

pytestmark = pytest.mark.integration


def _order(user: str) -> OrderPlaced:
    return OrderPlaced(order_id="o" + uuid.uuid4().hex, user_id=user, symbol="AAA", side="buy", qty=2,
                       order_type="limit", limit_price=Decimal("10.5"), placed_at_ms=int(time.time() * 1000))


def _outcome(o: OrderPlaced, status: str = "executed") -> OrderOutcome:
    filled = status == "executed"
    return OrderOutcome(order_id=o.order_id, user_id=o.user_id, symbol=o.symbol, side=o.side, qty=o.qty,
                        status=status, reason=None if status != "rejected" else "insufficient_funds",  # type: ignore[arg-type]
                        fill_price=Decimal("10.25") if filled else None, fee=Decimal("1.00") if filled else None,
                        trade_id=o.order_id + "-1" if filled else None, decided_at_ms=123)


def test_outcome_replaces_accepted_once_and_is_idempotent(settings: Settings) -> None:
    store = OrderStore(DynamoDB(settings.dynamodb))
    o = _order("u" + uuid.uuid4().hex[:8])
    assert store.claim(o) is None
    assert store.record_outcome(o, _outcome(o))
    got = store.get(o.order_id)
    assert got is not None
    assert (got["status"], got["fill_price"], got["fee"], got["limit_price"]) == ("executed", "10.25", "1.00", "10.5")
    assert store.record_outcome(o, _outcome(o))  # a replay of the same outcome
    assert not store.record_outcome(o, _outcome(o, "rejected"))  # another terminal status never overwrites
    assert not store.mark_in_book(o)  # nor does a late in-book mark
    assert store.claim(o) == store.get(o.order_id)  # a claim finds the order, outcome and all
    assert store.get(o.order_id)["status"] == "executed"  # type: ignore[index]


def test_outcome_without_accepted_item_creates_a_listable_order(settings: Settings) -> None:
    store = OrderStore(DynamoDB(settings.dynamodb))
    user = "u" + uuid.uuid4().hex[:8]
    o = _order(user)
    assert store.record_outcome(o, _outcome(o, "rejected"))
    (listed,) = store.by_user(user)
    assert (listed["order_id"], listed["status"], listed["reason"], listed["qty"]) == (
        o.order_id, "rejected", "insufficient_funds", 2)


def test_batched_outcomes_replace_accepted_and_repeat_harmlessly(settings: Settings) -> None:
    store = OrderStore(DynamoDB(settings.dynamodb))
    user = "u" + uuid.uuid4().hex[:8]
    orders = [_order(user) for _ in range(30)]  # more than one BatchWriteItem call (25)
    assert store.claim(orders[0]) is None
    decided = [(o, _outcome(o, "executed" if i % 2 else "rejected")) for i, o in enumerate(orders)]
    store.record_outcomes(decided + decided[:3])  # a replay inside the batch: the same key twice in one call
    store.record_outcomes(decided[:5])  # and a later repeat
    listed = {o["order_id"]: o for o in store.by_user(user)}
    assert {oid: o["status"] for oid, o in listed.items()} == {o.order_id: out.status for o, out in decided}
    assert listed[orders[1].order_id]["fill_price"] == "10.25"
    assert not store.mark_in_book(orders[0])  # a late in-book mark still never replaces the outcome


def test_the_first_claim_of_an_order_id_stands(settings: Settings) -> None:
    store = OrderStore(DynamoDB(settings.dynamodb))
    o = _order("u" + uuid.uuid4().hex[:8])
    assert store.claim(o) is None
    later = o.model_copy(update={"placed_at_ms": o.placed_at_ms + 5_000, "qty": 3})
    first = store.claim(later)
    assert first is not None
    assert placed_order(first) == o  # its placing time and body, not the later request's
    store.release(later)  # not the holder's claim: it stays
    assert store.get(o.order_id) is not None
    store.release(o)  # the holder's, still accepted and not in a book: gone
    assert store.get(o.order_id) is None


def test_a_claim_a_retry_sent_again_is_not_released_by_its_claimer(settings: Settings) -> None:
    """The claimer's publish failed for certain, but a retry had sent the order meanwhile: the claim stays."""
    store = OrderStore(DynamoDB(settings.dynamodb))
    o = _order("u" + uuid.uuid4().hex[:8])
    assert store.claim(o) is None
    assert store.mark_replayed(o)
    store.release(o)
    assert store.get(o.order_id) is not None
    gone = _order("u" + uuid.uuid4().hex[:8])
    assert store.claim(gone) is None
    store.release(gone)
    assert not store.mark_replayed(gone)  # released first: the retry claims anew instead


def test_a_claim_keeps_its_cancel_at_once_over_one_at_a_market_time_and_the_earlier_of_two(
        settings: Settings) -> None:
    store = OrderStore(DynamoDB(settings.dynamodb))
    o = _order("u" + uuid.uuid4().hex[:8])
    assert store.claim(o) is None
    assert requested_cancel(store.get(o.order_id) or {}) is None

    def cancel(at_ms: int | None, requested_at_ms: int = 5, user_id: str = o.user_id) -> OrderCancelRequested:
        return OrderCancelRequested(order_id=o.order_id, user_id=user_id, symbol=o.symbol,
                                    requested_at_ms=requested_at_ms, at_ms=at_ms)

    assert not store.mark_cancel_requested(cancel(None, user_id="intruder"))  # not theirs to cancel
    assert store.mark_cancel_requested(cancel(9_000))
    assert not store.mark_cancel_requested(cancel(10_000))  # later than the one kept
    assert store.mark_cancel_requested(cancel(8_000, 6))
    assert requested_cancel(store.get(o.order_id) or {}) == cancel(8_000, 6)
    assert store.mark_cancel_requested(cancel(None, 7))
    assert not store.mark_cancel_requested(cancel(1_000, 8))  # one at once is kept already
    assert requested_cancel(store.get(o.order_id) or {}) == cancel(None, 7)
    assert placed_order(store.get(o.order_id) or {}) == o  # the order's body is as placed
    assert store.record_outcome(o, _outcome(o, "executed"))
    assert not store.mark_cancel_requested(cancel(None, 9))  # decided: nothing to keep
    assert requested_cancel(store.get(o.order_id) or {}) is None


def test_the_in_book_mark_keeps_the_order_and_creates_one_that_bypassed_the_api(settings: Settings) -> None:
    store = OrderStore(DynamoDB(settings.dynamodb))
    claimed, bypassed = _order("u" + uuid.uuid4().hex[:8]), _order("u" + uuid.uuid4().hex[:8])
    assert store.claim(claimed) is None
    assert store.mark_in_book(claimed)
    assert store.mark_in_book(bypassed)
    for o in (claimed, bypassed):
        got = store.get(o.order_id)
        assert got is not None
        assert (got["status"], got["in_book"], placed_order(got)) == ("accepted", True, o)
    store.release(claimed)  # an order in a book is no longer the API's to release
    assert store.get(claimed.order_id) is not None


def _bench_claims(db: DynamoDB, table: str) -> int:
    request: dict[str, Any] = {"TableName": table, "FilterExpression": "begins_with(user_id, :p)",
                               "ExpressionAttributeValues": {":p": {"S": "u_bench_"}}, "Select": "COUNT"}
    count = 0
    while True:
        page = db.client.scan(**request)
        count += int(page["Count"])
        if "LastEvaluatedKey" not in page:
            return count
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def test_the_dynamodb_benchmark_leaves_no_claim_behind(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """A probe: `bench dynamodb` left its 3,100 claims as open orders in the stack's `Orders`, read by every later
    backup."""
    from benchmarks import dynamodb as bench

    monkeypatch.setattr(bench, "WARMUP", 10)  # the figures are not the point here
    db = DynamoDB(settings.dynamodb)
    table = OrderStore(db).table
    before = _bench_claims(db, table)
    figures = bench.run(settings, 100, 2, [])
    assert set(figures) == {"claim", "get"}
    assert _bench_claims(db, table) == before
