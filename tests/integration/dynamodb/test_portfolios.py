"""Portfolios on the real dynalite: conditional writes, typed refusals, concurrency, restarts, outages."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest
from botocore.exceptions import ClientError

from tradesim.adapters.dynamodb.client import DynamoDB
from tradesim.adapters.dynamodb.errors import is_item_too_large
from tradesim.adapters.dynamodb.orders import OrderStore
from tradesim.adapters.dynamodb.portfolios import PortfolioStore
from tradesim.adapters.dynamodb.tables import ACCOUNTS, ORDERS, PORTFOLIOS, table_name
from tradesim.domain.book import Decision
from tradesim.domain.errors import InsufficientFunds, InsufficientShares, OutcomeAlreadyRecorded, PortfolioFull
from tradesim.domain.events import OrderOutcome, OrderPlaced
from tradesim.domain.fees import FeeModel
from tradesim.domain.settlement import RecordedOutcome, settle
from tradesim.ports import Unavailable
from tradesim.settings import Settings
from tradesim.stack.supervisor import Supervisor
from tradesim.testing.net import free_port

pytestmark = pytest.mark.integration
#: a down store must fail within this (client: 2 attempts × 2 s timeouts, plus backoff)
UNAVAILABLE_DEADLINE_S = 10.0


@pytest.fixture
def db(settings: Settings) -> Iterator[DynamoDB]:
    handle = DynamoDB(settings.dynamodb)
    yield handle
    handle.close()


@pytest.fixture
def store(db: DynamoDB) -> PortfolioStore:
    return PortfolioStore(db)


def new_user() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


def test_tables_exist_and_are_active_after_up(db: DynamoDB, settings: Settings) -> None:
    names = set(db.client.list_tables()["TableNames"])
    for logical in (PORTFOLIOS, ORDERS, ACCOUNTS):
        assert table_name(settings.dynamodb, logical) in names
    orders = db.client.describe_table(TableName=table_name(settings.dynamodb, ORDERS))["Table"]
    assert orders["TableStatus"] == "ACTIVE"
    by_user = {i["IndexName"]: i for i in orders["GlobalSecondaryIndexes"]}["by_user"]
    assert [k["AttributeName"] for k in by_user["KeySchema"]] == ["user_id", "placed_at_ms"]
    accounts = db.client.describe_table(TableName=table_name(settings.dynamodb, ACCOUNTS))["Table"]
    assert [i["IndexName"] for i in accounts["GlobalSecondaryIndexes"]] == ["by_key_hash"]


def test_conditional_update_succeeds_then_refuses_with_insufficient_funds(store: PortfolioStore) -> None:
    user = new_user()
    store.create(user, Decimal("100.00"))
    after = store.apply_fill(user, "o1", Decimal("-60.50"), "AAPL", 2)
    assert (after.cash, after.position("AAPL"), after.version) == (Decimal("39.50"), 2, 1)
    with pytest.raises(InsufficientFunds):
        store.apply_fill(user, "o2", Decimal("-39.51"), "AAPL", 1)
    unchanged = store.get(user)
    assert unchanged is not None
    assert (unchanged.cash, unchanged.position("AAPL"), unchanged.version) == (Decimal("39.50"), 2, 1)
    assert "o2" not in unchanged.outcomes


def test_selling_more_than_held_refuses_with_insufficient_shares(store: PortfolioStore) -> None:
    user = new_user()
    store.create(user, Decimal("100"))
    store.apply_fill(user, "buy", Decimal("-30"), "MSFT", 3)
    with pytest.raises(InsufficientShares):
        store.apply_fill(user, "sell", Decimal("40"), "MSFT", -4)
    sold = store.apply_fill(user, "sell-all", Decimal("30"), "MSFT", -3)
    assert (sold.cash, sold.position("MSFT")) == (Decimal("100"), 0)


def test_replayed_order_id_returns_the_first_outcome_and_applies_once(store: PortfolioStore) -> None:
    user = new_user()
    store.create(user, Decimal("1000"))
    store.apply_fill(user, "o1", Decimal("-101.25"), "AAPL", 1, details={"price": "101.25"})
    # a replay may see another price: it must get the first outcome back, not apply a second change
    with pytest.raises(OutcomeAlreadyRecorded) as info:
        store.apply_fill(user, "o1", Decimal("-99.00"), "AAPL", 1, details={"price": "99.00"})
    assert info.value.order_id == "o1"
    assert info.value.outcome == RecordedOutcome(status="executed", cash_delta=Decimal("-101.25"), symbol="AAPL",
                                                 qty_delta=1)
    final = store.get(user)
    assert final is not None
    assert (final.cash, final.position("AAPL"), final.version) == (Decimal("898.75"), 1, 1)


@pytest.mark.parametrize(("start_cash", "expected_ok"), [
    (Decimal("1000"), 20),  # every decrement fits: none may be lost
    (Decimal("150"), 15),   # over-subscribed: exactly the 15 that fit succeed, cash ends at exactly 0
])
def test_concurrent_conditional_decrements_lose_no_update(settings: Settings, store: PortfolioStore,
                                                          start_cash: Decimal, expected_ok: int) -> None:
    user = new_user()
    store.create(user, start_cash)
    threads_n, step = 20, Decimal("10")
    barrier = threading.Barrier(threads_n)
    ok: list[str] = []
    refused: list[str] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        own = DynamoDB(settings.dynamodb)  # its own session and client
        try:
            own_store = PortfolioStore(own)
            barrier.wait(timeout=30)
            order = f"o{i}"
            try:
                own_store.apply_fill(user, order, -step, "AAPL", 1)
            except InsufficientFunds:
                with lock:
                    refused.append(order)
            else:
                with lock:
                    ok.append(order)
        except BaseException as exc:  # any failure, surfaced by the assertion below
            with lock:
                failures.append(exc)
        finally:
            own.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert failures == []
    assert (len(ok), len(refused)) == (expected_ok, threads_n - expected_ok)
    final = store.get(user)
    assert final is not None
    assert final.cash == start_cash - step * expected_ok
    assert final.position("AAPL") == expected_ok
    assert final.version == expected_ok
    assert set(final.outcomes) == set(ok)


def test_data_survives_down_and_up(store: PortfolioStore, dynamodb_alone: Supervisor) -> None:
    # only the store restarts (the whole stack's restart is tests/integration/stack/test_lifecycle.py's); the
    # services that use it ride that out (tests/integration/marketdata/test_dependency_restarts.py)
    user = new_user()
    store.create(user, Decimal("500"))
    store.apply_fill(user, "o1", Decimal("-123.45"), "TSLA", 5)
    before = {s.name: s for s in dynamodb_alone.status()}["dynamodb"]
    dynamodb_alone.down()
    stopped = {s.name: s for s in dynamodb_alone.status()}["dynamodb"]
    assert (stopped.state, stopped.healthy) == ("stopped", False)
    dynamodb_alone.up()
    after = {s.name: s for s in dynamodb_alone.status()}["dynamodb"]
    assert after.healthy
    assert after.pid != before.pid  # a new process, so the data came from disk
    store.db.close()  # drop pooled connections to the old process
    portfolio = store.get(user)
    assert portfolio is not None
    assert (portfolio.cash, portfolio.position("TSLA"), portfolio.version) == (Decimal("376.55"), 5, 1)
    assert portfolio.outcomes["o1"].cash_delta == Decimal("-123.45")


def test_store_that_is_down_raises_unavailable_quickly(settings: Settings) -> None:
    down = PortfolioStore(DynamoDB(settings.dynamodb.model_copy(update={"port": free_port()})))
    started = time.monotonic()
    with pytest.raises(Unavailable):
        down.get("anyone")
    with pytest.raises(Unavailable):
        down.apply_fill("anyone", "o1", Decimal("-1"), "AAPL", 1)
    assert time.monotonic() - started < UNAVAILABLE_DEADLINE_S


def test_store_that_never_answers_raises_unavailable_within_the_deadline(settings: Settings) -> None:
    # accepts TCP connections (the kernel's backlog does) but never answers: the read timeout must fire
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = int(silent.getsockname()[1])
        hung = PortfolioStore(DynamoDB(settings.dynamodb.model_copy(update={"port": port})))
        started = time.monotonic()
        with pytest.raises(Unavailable):
            hung.get("anyone")
        assert time.monotonic() - started < UNAVAILABLE_DEADLINE_S


def _decided(at_ms: int) -> dict[str, str]:
    return {"decided_at_ms": str(at_ms)}


def test_holdings_read_leaves_the_outcomes_out_and_counts_them(store: PortfolioStore) -> None:
    user = new_user()
    store.create(user, Decimal("100"))
    applied = store.apply_fill(user, "o1", Decimal("-10"), "AAPL", 1)
    store.apply_fill(user, "o2", Decimal("0"), "AAPL", 0, status="rejected")
    held = store.holdings(user)
    assert held is not None
    assert (held.cash, held.positions, held.outcomes, held.n_outcomes) == (Decimal("90"), {"AAPL": 1}, {}, 2)
    assert (applied.cash, applied.position("AAPL"), applied.version, applied.n_outcomes) == (Decimal("90"), 1, 1, 1)


def test_prune_removes_only_outcomes_decided_before_the_cutoff(store: PortfolioStore) -> None:
    user = new_user()
    store.create(user, Decimal("1000"))
    for i in range(5):
        store.apply_fill(user, f"old{i}", Decimal("-1"), "AAPL", 1, details=_decided(1_000 + i))
    store.apply_fill(user, "new", Decimal("-1"), "AAPL", 1, details=_decided(5_000))
    store.apply_fill(user, "untimed", Decimal("-1"), "AAPL", 1)  # no decision time: never pruned
    assert store.prune(user, older_than_ms=2_000) == 5
    after = store.get(user)
    assert after is not None
    assert (set(after.outcomes), after.n_outcomes, after.version) == ({"new", "untimed"}, 2, 8)  # a prune is a write
    assert (after.cash, after.position("AAPL")) == (Decimal("993"), 7)  # pruning never touches the money
    assert store.prune(user, older_than_ms=2_000) == 0


def test_apply_fill_prunes_expired_outcomes_once_above_the_threshold(db: DynamoDB) -> None:
    now_s = 1_000_000.0
    pruning = PortfolioStore(db, horizon_ms=60_000, prune_above=3, clock=lambda: now_s)
    user = new_user()
    pruning.create(user, Decimal("1000"))
    old_ms = int(now_s * 1000) - 120_000
    for i in range(3):
        pruning.apply_fill(user, f"old{i}", Decimal("-1"), "AAPL", 1, details=_decided(old_ms))
    assert pruning.holdings(user).n_outcomes == 3  # type: ignore[union-attr]  # at the threshold: kept
    pruning.apply_fill(user, "fresh", Decimal("-1"), "AAPL", 1, details=_decided(int(now_s * 1000)))
    after = pruning.get(user)
    assert after is not None
    assert (set(after.outcomes), after.n_outcomes) == ({"fresh"}, 1)


def _buy(user: str, placed_at_ms: int) -> OrderPlaced:
    return OrderPlaced(order_id="o" + uuid.uuid4().hex, user_id=user, symbol="AAPL", side="buy", qty=1,
                       order_type="market", placed_at_ms=placed_at_ms)


def _executed(store: PortfolioStore, order: OrderPlaced, decided_ms: int, orders: OrderStore | None = None) -> None:
    """Record a 1-share fill at 10 on the portfolio and, given `orders`, mirror it there as the job does."""
    store.apply_fill(order.user_id, order.order_id, Decimal("-11"), "AAPL", 1, placed_at_ms=order.placed_at_ms,
                     details={"decided_at_ms": str(decided_ms), "fill_price": "10", "fee": "1"})
    if orders is not None:
        orders.record_outcome(order, OrderOutcome(
            order_id=order.order_id, user_id=order.user_id, symbol="AAPL", side="buy", qty=1, status="executed",
            fill_price=Decimal("10"), fee=Decimal("1"), trade_id=order.order_id + "-1", decided_at_ms=decided_ms))


def test_outcomes_leave_the_item_only_once_the_archive_holds_them(db: DynamoDB) -> None:
    orders = OrderStore(db)
    store = PortfolioStore(db, archive=orders)
    user = new_user()
    store.create(user, Decimal("1000"))
    mirrored, unmirrored, fresh = _buy(user, 1_000), _buy(user, 1_500), _buy(user, 9_000)
    _executed(store, mirrored, 1_100, orders)
    _executed(store, unmirrored, 1_600)  # the job's mirror has not written it yet
    _executed(store, fresh, 9_100, orders)
    assert store.prune(user, older_than_ms=5_000) == 1
    after = store.get(user)
    assert after is not None
    assert (set(after.outcomes), after.n_outcomes) == ({unmirrored.order_id, fresh.order_id}, 2)
    assert (after.archived_upto, after.archived_n) == (1_000, 1)  # placing time of what left, not decision time
    assert (after.cash, after.position("AAPL")) == (Decimal("967"), 3)


def test_a_replayed_order_whose_outcome_left_the_item_reemits_it_and_applies_nothing(db: DynamoDB) -> None:
    orders = OrderStore(db)
    store = PortfolioStore(db, archive=orders)
    user = new_user()
    store.create(user, Decimal("1000"))
    order = _buy(user, 1_000)
    _executed(store, order, 1_100, orders)
    assert store.prune(user, older_than_ms=5_000) == 1
    for placed in (order.placed_at_ms, None):  # also a caller that does not know the placing time
        with pytest.raises(OutcomeAlreadyRecorded) as replay:
            store.apply_fill(user, order.order_id, Decimal("-500"), "AAPL", 50, placed_at_ms=placed,
                             details={"decided_at_ms": "99999", "fill_price": "10", "fee": "0"})
        recorded = replay.value.outcome
        assert recorded is not None
        assert (recorded.status, recorded.fill_price, recorded.decided_at_ms) == ("executed", Decimal("10"), 1_100)
    after = store.get(user)
    assert after is not None
    assert (after.cash, after.position("AAPL"), after.version) == (Decimal("989"), 1, 2)  # the fill, the prune


def test_an_orders_recorded_outcome_is_found_on_the_item_or_once_it_left_in_the_archive(db: DynamoDB) -> None:
    orders = OrderStore(db)
    store = PortfolioStore(db, archive=orders)
    user = new_user()
    store.create(user, Decimal("1000"))
    left, stays, never = _buy(user, 1_000), _buy(user, 9_000), _buy(user, 9_500)
    _executed(store, left, 1_100, orders)
    _executed(store, stays, 9_100)
    assert store.prune(user, older_than_ms=5_000) == 1
    found = store.recorded(user, stays.order_id)
    assert found is not None
    assert (found.status, found.decided_at_ms) == ("executed", 9_100)
    archived = store.recorded(user, left.order_id)
    assert archived is not None
    assert (archived.status, archived.fill_price, archived.decided_at_ms) == ("executed", Decimal("10"), 1_100)
    assert store.recorded(user, never.order_id) is None
    assert store.recorded(new_user(), never.order_id) is None  # no item at all


def _one_archived(db: DynamoDB) -> tuple[OrderStore, PortfolioStore, str]:
    """A user with 1,000 cash whose one fill (placed at 5,000, 11 cash) has left the item: archived_upto 5,000."""
    orders = OrderStore(db)
    store = PortfolioStore(db, archive=orders)
    user = new_user()
    store.create(user, Decimal("1000"))
    _executed(store, _buy(user, 5_000), 5_100, orders)
    assert store.prune(user, older_than_ms=9_000) == 1
    return orders, store, user


def test_an_order_placed_before_the_archive_mark_without_an_outcome_is_applied_once(db: DynamoDB) -> None:
    _, store, user = _one_archived(db)
    late = _buy(user, 4_000)  # placed before archived_upto (5,000), decided only now
    _executed(store, late, 9_500)
    with pytest.raises(OutcomeAlreadyRecorded):
        _executed(store, late, 9_600)
    after = store.get(user)
    assert after is not None
    assert (after.cash, after.position("AAPL"), set(after.outcomes)) == (Decimal("978"), 2, {late.order_id})


class _RacingArchive:
    """The real Orders table; while the store looks an order up, another writer records that order and moves
    its outcome to the archive — the interleaving the `archived_n = :seen` condition exists for. The order was
    placed before the archive mark, so `archived_upto` does not move."""

    def __init__(self, orders: OrderStore, racer: PortfolioStore, order: OrderPlaced) -> None:
        self.orders, self.racer, self.order, self.lookups = orders, racer, order, 0

    def decided(self, order_ids: list[str]) -> dict[str, dict[str, object]]:
        self.lookups += 1
        found = self.orders.decided(order_ids)
        if self.lookups == 1:
            _executed(self.racer, self.order, 9_700, self.orders)
            assert self.racer.prune(self.order.user_id, older_than_ms=10_000) == 1
        return found


def test_an_outcome_that_leaves_the_item_during_an_archive_lookup_is_not_applied_again(db: DynamoDB) -> None:
    orders, plain, user = _one_archived(db)
    late = _buy(user, 4_000)
    racing = _RacingArchive(orders, plain, late)
    store = PortfolioStore(db, archive=racing)  # type: ignore[arg-type]
    with pytest.raises(OutcomeAlreadyRecorded) as replay:
        store.apply_fill(user, late.order_id, Decimal("-11"), "AAPL", 1, placed_at_ms=late.placed_at_ms,
                         details={"decided_at_ms": "9800", "fill_price": "10", "fee": "1"})
    assert replay.value.outcome is not None
    assert replay.value.outcome.decided_at_ms == 9_700  # the racer's outcome, found on the second look-up
    assert racing.lookups == 2
    after = plain.get(user)
    assert after is not None
    assert (after.cash, after.position("AAPL")) == (Decimal("978"), 2)  # two fills, not three


class _CountingDB:
    """The real DynamoDB, counting the reads of whole items (a spy, not a fake)."""

    def __init__(self, db: DynamoDB) -> None:
        self.settings, self._db, self.reads = db.settings, db, 0

    @property
    def client(self) -> _CountingDB:
        return self

    def get_item(self, **request: object) -> object:
        self.reads += 1
        return self._db.client.get_item(**request)

    def __getattr__(self, name: str) -> object:
        return getattr(self._db.client, name)


def test_a_busy_users_writes_read_nothing_and_expired_outcomes_leave_with_a_later_write(db: DynamoDB) -> None:
    now_s = 2_000_000.0
    spy = _CountingDB(db)
    pruning = PortfolioStore(spy, horizon_ms=300_000, prune_above=2, clock=lambda: now_s)  # type: ignore[arg-type]
    user = new_user()
    pruning.create(user, Decimal("1000"))

    def fill(i: int) -> None:
        pruning.apply_fill(user, f"o{i}", Decimal("-1"), "AAPL", 1, details=_decided(int(now_s * 1000)))

    for i in range(3):
        fill(i)
    for step in range(1, 5):  # +70 s … +280 s: nothing can have expired yet
        now_s += 70
        fill(10 + step)
    now_s += 30  # +310 s: the first three outcomes are past the horizon
    fill(99)
    assert spy.reads == 0  # every write after the first went on the store's copy of the item
    after = pruning.get(user)
    assert after is not None
    assert {"o0", "o1", "o2"}.isdisjoint(after.outcomes)
    assert (after.n_outcomes, after.version, after.cash, after.position("AAPL")) == (5, 8, Decimal("992"), 8)


def test_a_copy_that_would_allow_a_fill_does_not_overwrite_a_reset(db: DynamoDB) -> None:
    from tradesim.adapters.dynamodb.accounts import AccountStore

    store = PortfolioStore(db)
    user = new_user()
    store.create(user, Decimal("1000"))
    store.apply_fill(user, "o1", Decimal("-100"), "AAPL", 1)  # copy: cash 900, version 1
    AccountStore(db).reset_portfolio(user, Decimal("50"), lambda: 1)  # stored: cash 50, version 2
    with pytest.raises(InsufficientFunds):  # the copy's 900 would cover it; the put on version 1 must lose
        store.apply_fill(user, "o2", Decimal("-500"), "AAPL", 5)
    after = store.get(user)
    assert after is not None
    assert (after.cash, after.positions, after.version, set(after.outcomes)) == (Decimal("50"), {}, 2, {"o1"})


def test_a_write_on_a_stale_copy_loses_to_a_reset_and_is_decided_on_the_stored_item(
        db: DynamoDB, settings: Settings) -> None:
    from tradesim.adapters.dynamodb.accounts import AccountStore

    store = PortfolioStore(db)
    user = new_user()
    store.create(user, Decimal("100"))
    store.apply_fill(user, "o1", Decimal("-60"), "AAPL", 6)  # the store now holds a copy at version 1
    AccountStore(db).reset_portfolio(user, Decimal("1000"), lambda: 1)  # another writer: version 2, cash 1000, flat
    applied = store.apply_fill(user, "o2", Decimal("-500"), "AAPL", 5)  # the copy says 40 cash: too little
    assert (applied.cash, applied.position("AAPL"), applied.version) == (Decimal("500"), 5, 3)
    with pytest.raises(InsufficientShares):  # the copy (refreshed by the last write) knows the reset now
        store.apply_fill(user, "o3", Decimal("70"), "AAPL", -7)
    after = store.get(user)
    assert after is not None
    assert (after.cash, after.positions, set(after.outcomes)) == (Decimal("500"), {"AAPL": 5}, {"o1", "o2"})


def test_a_creates_reset_is_refused_once_a_later_create_stamped_the_item_and_settling_keeps_the_stamp(
        db: DynamoDB) -> None:
    """The fence against a stalled account create (see tradesim.adapters.dynamodb.accounts), on dynalite: the
    later create's reset stamps the item; the execution job's writes (an UpdateItem, then a PutItem of its copy)
    keep the stamp; the earlier create's reset is refused, an admin's is not and keeps the stamp too."""
    from tradesim.adapters.dynamodb.accounts import AccountStore, AccountTakenOver

    store, accounts = PortfolioStore(db), AccountStore(db)
    user = new_user()
    store.create(user, Decimal("5"))  # an orphan: no stamp, read as 0
    assert accounts.reset_portfolio(user, Decimal("700"), lambda: 1, generation=2) == 1
    store.apply_fill(user, "o1", Decimal("-100"), "AAPL", 1)  # UpdateItem
    store.apply_fill(user, "o2", Decimal("-100"), "AAPL", 1)  # PutItem of the copy
    traded = store.get(user)
    assert traded is not None
    assert (traded.cash, traded.positions, traded.create_generation) == (Decimal("500"), {"AAPL": 2}, 2)
    with pytest.raises(AccountTakenOver):
        accounts.reset_portfolio(user, Decimal("700"), lambda: 1, generation=1)
    assert store.get(user) == traded
    assert accounts.reset_portfolio(user, Decimal("700"), lambda: 1) == traded.version + 1  # the admin's
    after = store.get(user)
    assert after is not None
    assert (after.cash, after.positions, after.create_generation) == (Decimal("700"), {}, 2)


def test_an_item_that_cannot_grow_refuses_with_portfolio_full_and_stays_unchanged(db: DynamoDB) -> None:
    store = PortfolioStore(db, horizon_ms=60_000, clock=time.time)
    user = new_user()
    store.create(user, Decimal("1000"))
    recent = str(int(time.time() * 1000))
    for i in range(3):  # ~360 KB of recent outcomes: nothing may be pruned yet
        store.apply_fill(user, f"big{i}", Decimal("0"), "AAPL", 0, status="rejected",
                         details={"decided_at_ms": recent, "pad": "x" * 120_000})
    with pytest.raises(PortfolioFull):
        store.apply_fill(user, "one-more", Decimal("-1"), "AAPL", 1,
                         details={"decided_at_ms": recent, "pad": "x" * 60_000})
    after = store.holdings(user)
    assert after is not None
    assert (after.cash, after.n_outcomes, after.version) == (Decimal("1000"), 3, 3)


def test_the_same_store_runs_on_boto3s_own_client(settings: Settings) -> None:
    sdk = DynamoDB(settings.dynamodb.model_copy(update={"client": "boto3"}))
    store = PortfolioStore(sdk)
    user = new_user()
    store.create(user, Decimal("100"))
    applied = store.apply_fill(user, "o1", Decimal("-10"), "AAPL", 1)
    with pytest.raises(OutcomeAlreadyRecorded):
        store.apply_fill(user, "o1", Decimal("-10"), "AAPL", 1)
    read = store.get(user)
    assert read is not None
    assert (applied.version, read.cash, read.position("AAPL"), set(read.outcomes)) == (1, Decimal("90"), 1, {"o1"})
    sdk.close()


def test_a_group_of_writes_lands_with_one_put_at_flush(db: DynamoDB) -> None:
    store = PortfolioStore(db)
    user = new_user()
    store.create(user, Decimal("1000"))
    store.apply_fill(user, "o0", Decimal("-10"), "AAPL", 1)  # the store holds a copy (version 1)
    puts: list[str] = []
    client = db.client
    real_put = client.put_item

    def counting_put(**kwargs: object) -> object:
        puts.append(str(kwargs["TableName"]))
        return real_put(**kwargs)

    client.put_item = counting_put  # a spy around the real client
    try:
        store.group(user)
        applied = [store.apply_fill(user, f"o{i}", Decimal("-10"), "AAPL", 1) for i in range(1, 6)]
        assert [a.version for a in applied] == [2, 3, 4, 5, 6]  # what each write would have made
        before = store.get(user)
        assert before is not None
        assert (before.version, set(before.outcomes)) == (1, {"o0"})
        with pytest.raises(OutcomeAlreadyRecorded):  # the group's own outcomes count before the flush
            store.apply_fill(user, "o3", Decimal("-10"), "AAPL", 1)
        store.flush_group(user)
    finally:
        del client.put_item
    after = store.get(user)
    assert after is not None
    assert (after.cash, after.positions, after.version, len(after.outcomes)) == (Decimal("940"), {"AAPL": 6}, 6, 6)
    assert len(puts) == 1


def test_a_group_that_loses_to_another_writer_writes_none_of_its_changes(db: DynamoDB) -> None:
    from tradesim.adapters.dynamodb.accounts import AccountStore
    from tradesim.adapters.dynamodb.portfolios import GroupLost

    store = PortfolioStore(db)
    user = new_user()
    store.create(user, Decimal("1000"))
    store.apply_fill(user, "o1", Decimal("-100"), "AAPL", 1)
    store.group(user)
    store.apply_fill(user, "o2", Decimal("-100"), "AAPL", 1)
    store.apply_fill(user, "o3", Decimal("-100"), "AAPL", 1)
    AccountStore(db).reset_portfolio(user, Decimal("50"), lambda: 1)  # another writer moves the item mid-group
    with pytest.raises(GroupLost):
        store.flush_group(user)
    after = store.get(user)
    assert after is not None
    assert (after.cash, set(after.outcomes)) == (Decimal("50"), {"o1"})
    with pytest.raises(InsufficientFunds):  # settled again one by one, on the stored item
        store.apply_fill(user, "o2", Decimal("-100"), "AAPL", 1)


def test_a_write_the_group_cannot_decide_goes_after_the_groups_earlier_writes(db: DynamoDB) -> None:
    store = PortfolioStore(db)
    user = new_user()
    store.create(user, Decimal("100"))
    store.apply_fill(user, "o1", Decimal("-10"), "AAPL", 1)
    store.group(user)
    store.apply_fill(user, "o2", Decimal("-60"), "AAPL", 6)
    with pytest.raises(InsufficientFunds):  # a refusal is judged on the stored item: the group is written first
        store.apply_fill(user, "o3", Decimal("-50"), "AAPL", 5)
    mid = store.get(user)
    assert mid is not None
    assert (mid.cash, set(mid.outcomes)) == (Decimal("30"), {"o1", "o2"})
    store.apply_fill(user, "o4", Decimal("-30"), "AAPL", 3)
    store.flush_group(user)
    after = store.get(user)
    assert after is not None
    assert (after.cash, after.positions, set(after.outcomes)) == (Decimal("0"), {"AAPL": 10}, {"o1", "o2", "o4"})


def _fill_until_full(db: DynamoDB, user: str, room: int) -> None:
    """Pad the user's item until fewer than `room` bytes more would fit in DynamoDB's 400 KB (a binary search on
    the padding's length: the store's own size check decides)."""
    table = table_name(db.settings, PORTFOLIOS)

    def fits(length: int) -> bool:
        try:
            db.client.update_item(TableName=table, Key={"user_id": {"S": user}},
                                  UpdateExpression="SET padding = :p, version = version + :one",  # as every writer
                                  ExpressionAttributeValues={":p": {"S": "x" * length}, ":one": {"N": "1"}})
        except ClientError as exc:
            if not is_item_too_large(exc):
                raise
            return False
        return True

    low, high = 0, 420_000  # low fits, high does not
    assert fits(low)
    assert not fits(high)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if fits(mid) else (low, mid)
    assert fits(low - room)


def test_a_rejection_the_full_item_had_no_room_for_is_found_by_a_replay_after_room_was_made(db: DynamoDB) -> None:
    """Settling on a full item rejects the order: the rejection goes to the archive and the item's mark says so,
    so a replay (a restore from a checkpoint before it) re-emits it after the item made room, never a fill."""
    orders = OrderStore(db)
    store = PortfolioStore(db, archive=orders)
    user = new_user()
    store.create(user, Decimal("1000"))
    _executed(store, _buy(user, 1_000), 1_100)  # an outcome on the item: its mark must not hide it
    _fill_until_full(db, user, room=80)  # room for the mark (~40 bytes), not for an outcome (~150)
    order = _buy(user, 2_000)
    first = settle(Decision(order, "fill", price=Decimal("10")), store, FeeModel()).outcome
    assert (first.status, first.reason) == ("rejected", "too_many_recent_orders")
    assert orders.decided([order.order_id])[order.order_id].status == "rejected"
    full = store.get(user)
    assert full is not None
    assert (full.archived_upto, full.archived_n) == (2_000, 1)
    db.client.update_item(TableName=table_name(db.settings, PORTFOLIOS), Key={"user_id": {"S": user}},
                          UpdateExpression="REMOVE padding SET version = version + :one",  # room again, as a prune
                          ExpressionAttributeValues={":one": {"N": "1"}})
    # a later order (placed after the mark) is judged on the item alone, and leaves the store a copy of the item
    later = settle(Decision(_buy(user, 3_000), "fill", price=Decimal("10")), store, FeeModel()).outcome
    assert later.status == "executed"
    for placed in (store, PortfolioStore(db, archive=orders)):  # with that copy (the mark sends it to the archive
        again = settle(Decision(order, "fill", price=Decimal("10")), placed, FeeModel()).outcome  # too), and none
        assert (again.status, again.reason, again.decided_at_ms) == ("rejected", "too_many_recent_orders",
                                                                     first.decided_at_ms)
    after = store.get(user)
    assert after is not None
    assert (after.cash, after.position("AAPL")) == (Decimal("978"), 2)  # the two fills, not the rejected order
    assert order.order_id not in after.outcomes


def test_a_rejection_for_a_user_without_a_portfolio_is_held_by_the_archive(db: DynamoDB) -> None:
    orders = OrderStore(db)
    store = PortfolioStore(db, archive=orders)
    order = _buy(new_user(), 2_000)
    out = settle(Decision(order, "fill", price=Decimal("10")), store, FeeModel()).outcome
    assert (out.status, out.reason) == ("rejected", "invalid")
    assert orders.decided([order.order_id])[order.order_id].status == "rejected"
    assert store.get(order.user_id) is None  # the mark found no item, and made none
    again = settle(Decision(order, "fill", price=Decimal("10")), store, FeeModel(),  # decided later, were it
                   now_ms=lambda: out.decided_at_ms + 1_000).outcome  # decided again
    assert (again.status, again.reason, again.decided_at_ms) == ("rejected", "invalid", out.decided_at_ms)
