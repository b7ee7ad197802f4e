"""Issue 13 on the real stack: an order id is executed at most once whatever is retried, replayed or restored, and
no accepted order is lost while the execution job is down. Orders go through the API here (its claim in `Orders`
is part of the guarantee); the job is stopped and restored from savepoints like an operator would."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal

import httpx
import pytest

from tradesim.adapters.dynamodb.client import DynamoDB
from tradesim.adapters.dynamodb.orders import OrderStore, placed_order
from tradesim.domain.events import OrderCancelRequested, OrderOutcome, OrderPlaced
from tradesim.stack.flink import Flink
from tradesim.stack.jobs import cancel_job

from ..api.conftest import (  # noqa: F401 - fixtures
    OrderLog,
    User,
    admin_key,
    api_with,
    forget_idempotency_keys,
    http,
    new_user,
    order,
)
from .conftest import (
    Exchange,
    Outcomes,
    running,
    savepoint_execution_job,
    start_execution_job,
    stop_execution_job,
    wait_for,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def orders(ex: Exchange) -> Iterator[OrderStore]:
    db = DynamoDB(ex.settings.dynamodb)
    yield OrderStore(db)
    db.close()


def _post(http: httpx.Client, user: User, body: dict[str, object], key: str | None = None) -> str:  # noqa: F811
    headers = {**user.auth, **({"Idempotency-Key": key} if key else {})}
    answer = http.post("/orders", json=body, headers=headers)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["order_id"])


def _execute_then_archive(ex: Exchange, http: httpx.Client, user: User, symbol: str,  # noqa: F811
                          reader: Outcomes, key: str) -> OrderOutcome:
    """Execute K (keyed), then enough orders of the same user that K's outcome leaves the portfolio item for
    `Orders`; returns K's outcome."""
    k = _post(http, user, order(symbol, qty=1), key)
    more = [_post(http, user, order(symbol, qty=1)) for _ in range(40)]
    outcomes = reader.wait([k, *more])
    assert {o.status for o in outcomes.values()} == {"executed"}

    def k_left_the_item() -> bool:
        p = ex.store.get(user.user_id)
        assert p is not None
        if k in p.outcomes:
            # outcomes leave once older than trading.outcome_live_s, with the next write of the item
            reader.wait([_post(http, user, order(symbol, qty=1))])
            return False
        return True

    wait_for(k_left_the_item, 60, "K's outcome to leave the portfolio item", poll_s=0.3)
    return outcomes[k]


def _same_decision(a: OrderOutcome, b: OrderOutcome) -> bool:
    return (a.status, a.fill_price, a.fee, a.decided_at_ms, a.symbol, a.qty) == (
        b.status, b.fill_price, b.fee, b.decided_at_ms, b.symbol, b.qty)


def test_a_retry_after_the_outcome_left_the_item_and_redis_forgot_the_key_executes_nothing(
        ex: Exchange, http: httpx.Client, new_user: Callable[..., User], symbol: str,  # noqa: F811
        orders: OrderStore) -> None:
    user = new_user(cash="100000")
    ex.price(symbol, 1, "100")
    reader, log = ex.outcomes(), OrderLog(ex.settings)
    key = "k-" + uuid.uuid4().hex
    first = _execute_then_archive(ex, http, user, symbol, reader, key)
    k = first.order_id
    stored = orders.get(k)
    assert stored is not None
    before = ex.store.get(user.user_id)
    assert before is not None
    ex.price(symbol, 2, "101")  # were it judged again, it would fill at another price
    assert forget_idempotency_keys(ex.settings, user) == 1
    assert _post(http, user, order(symbol, qty=1), key) == k  # the API finds the claim: the same order
    # what the API sends for a claimed order whose outcome it cannot see: the same event, first placing time
    ex.send(placed_order(stored))
    wait_for(lambda: (reader.poll(), len(reader.by_order()[k]) >= 2)[1], 60, "K's outcome re-emitted")
    assert all(_same_decision(o, first) for o in reader.by_order()[k])
    # K only ever travels with its first placing time (the job's archive guard trusts it)
    sent = [e for e in log.since(user.user_id) if isinstance(e, OrderPlaced) and e.order_id == k]
    log.close()
    assert {e.placed_at_ms for e in sent} == {stored["placed_at_ms"]}
    after = ex.store.get(user.user_id)
    assert after is not None
    assert (after.cash, after.positions, after.version) == (before.cash, before.positions, before.version)
    assert orders.get(k) == stored


def test_a_cancel_of_an_order_never_sent_holds_when_a_retry_sends_it(
        ex: Exchange, http: httpx.Client, new_user: Callable[..., User], symbol: str,  # noqa: F811
        orders: OrderStore) -> None:
    """A probe: DynamoDB did not answer the claim (503), yet it landed; the order was on no log. Its user cancelled
    it (202: the book knew no such order and dropped the cancel), then a retry with the key sent it: it rested,
    live. The book now keeps such a cancel, and the order ends cancelled when it comes."""
    from tradesim.domain.precheck import order_id_for

    user = new_user(cash="100000")
    ex.price(symbol, 1, "100")
    reader = ex.outcomes()
    key = "k-" + uuid.uuid4().hex
    body = order(symbol, qty=1, type="limit", limit_price="50", time_in_force="gtc")  # would rest: 50 < 100
    claimed = OrderPlaced(order_id=order_id_for(user.user_id, key), user_id=user.user_id, symbol=symbol,
                          side="buy", qty=1, order_type="limit", limit_price=Decimal(50), time_in_force="gtc",
                          placed_at_ms=int(time.time() * 1000))
    assert orders.claim(claimed) is None  # the claim that landed unanswered; nothing published
    cancel = http.delete(f"/orders/{claimed.order_id}", headers=user.auth)
    assert cancel.status_code == 202, cancel.text
    assert _post(http, user, body, key) == claimed.order_id  # the retry: the claimed order, sent now
    (outcome,) = reader.wait([claimed.order_id]).values()
    assert outcome.status == "cancelled"  # before: no outcome; the order rested in the book
    wait_for(lambda: (orders.get(claimed.order_id) or {}).get("status") == "cancelled", 30, "the mirror's status")


def test_a_cancel_the_book_no_longer_keeps_holds_when_a_retry_sends_its_order(
        ex: Exchange, http: httpx.Client, new_user: Callable[..., User], symbol: str,  # noqa: F811
        orders: OrderStore) -> None:
    """A review: the book keeps a bounded number of cancels of orders it has not seen (mostly cancels that came
    just after their order filled), for a short while; once others had pushed it out, a retry sent the order and
    it filled. The API keeps the cancel on the order's claim, and a retry sends it before the order (sent after,
    it missed a market order, which fills as it comes)."""
    from tradesim.domain.book import EARLY_CANCELS_KEPT
    from tradesim.domain.precheck import order_id_for

    user = new_user(cash="100000")
    ex.price(symbol, 1, "100")
    reader = ex.outcomes()
    key = "k-" + uuid.uuid4().hex
    claimed = OrderPlaced(order_id=order_id_for(user.user_id, key), user_id=user.user_id, symbol=symbol,
                          side="buy", qty=1, order_type="market", placed_at_ms=int(time.time() * 1000))
    assert orders.claim(claimed) is None  # a claim that landed unanswered; nothing published
    assert http.delete(f"/orders/{claimed.order_id}", headers=user.auth).status_code == 202
    for _ in range(EARLY_CANCELS_KEPT):  # cancels of other orders the book has not seen, after it
        other = claimed.model_copy(update={"order_id": "o_" + uuid.uuid4().hex})
        assert orders.claim(other) is None
        assert http.delete(f"/orders/{other.order_id}", headers=user.auth).status_code == 202
    ex.price(symbol, 2, "100")  # fresh for the retry's pre-check
    assert _post(http, user, order(symbol, qty=1), key) == claimed.order_id  # the retry: the claimed order, sent now
    (outcome,) = reader.wait([claimed.order_id]).values()
    assert outcome.status == "cancelled"  # before: no outcome (a limit order rested), or executed (a market one)


def test_a_restore_from_a_savepoint_taken_before_an_order_does_not_execute_it_again(
        ex: Exchange, http: httpx.Client, new_user: Callable[..., User], symbol: str,  # noqa: F811
        orders: OrderStore) -> None:
    user = new_user(cash="100000")
    ex.price(symbol, 1, "100")
    old = savepoint_execution_job(ex.settings)  # taken before K; the job runs on
    reader = ex.outcomes()
    key = "k-" + uuid.uuid4().hex
    first = _execute_then_archive(ex, http, user, symbol, reader, key)
    k = first.order_id
    before = ex.store.get(user.user_id)
    assert before is not None
    stored = orders.get(k)
    assert forget_idempotency_keys(ex.settings, user) == 1
    assert _post(http, user, order(symbol, qty=1), key) == k
    ex.price(symbol, 2, "101")
    executed = {o.order_id for o in reader.seen}
    stop_execution_job(ex.settings)
    start_execution_job(ex.settings, old)  # replays K and every order since, against other ticks
    wait_for(lambda: (reader.poll(), all(len(reader.by_order()[o]) >= 2 for o in executed))[1], 180,
             "every outcome since the savepoint re-emitted")
    for copies in reader.by_order().values():
        assert all(_same_decision(c, copies[0]) for c in copies)
    after = ex.store.get(user.user_id)
    assert after is not None
    assert (after.cash, after.positions) == (before.cash, before.positions)
    assert orders.get(k) == stored


def test_an_order_the_job_did_not_see_within_the_deadline_expires_and_changes_nothing(
        ex: Exchange, http: httpx.Client, new_user: Callable[..., User], symbol: str,  # noqa: F811
        api_with: Callable[..., httpx.Client]) -> None:  # noqa: F811
    """The job is down longer than `trading.processing_deadline_s` (1 s here, a day by default): the order is
    never lost — readers show it expired at once, and the job, when it is back, records exactly that."""
    user = new_user(cash="100000")
    ex.price(symbol, 1, "100")
    savepoint = stop_execution_job(ex.settings)
    try:
        short = api_with(trading={"processing_deadline_s": 1})
        reader = ex.outcomes()
        placed = _post(short, user, order(symbol, qty=1))
        assert http.get(f"/orders/{placed}", headers=user.auth).json()["status"] == "accepted"  # a day to go there
        wait_for(lambda: short.get(f"/orders/{placed}", headers=user.auth).json()["status"] == "expired", 30,
                 "the order shown expired")
        assert short.get(f"/orders/{placed}", headers=user.auth).json()["reason"] == "not_processed_in_time"
        start_execution_job(ex.settings, savepoint, processing_deadline_s="1")
        outcome = reader.wait([placed])[placed]
        assert (outcome.status, outcome.reason) == ("expired", "not_processed_in_time")
        wait_for(lambda: http.get(f"/orders/{placed}", headers=user.auth).json()["status"] == "expired", 30,
                 "the recorded outcome in Orders")
        p = ex.store.get(user.user_id)
        assert p is not None
        assert (p.cash, p.positions) == (Decimal("100000"), {})
    finally:  # the job with the test's deadline goes; the next test's `ex` submits the default job again
        for job_id in running(ex.settings):
            cancel_job(ex.settings, job_id)


def test_a_savepoint_taken_before_any_order_arrived_replays_every_order_since(exchange: Exchange,
                                                                             symbol: str) -> None:
    """A freshly submitted job whose partitions have yielded nothing yet: its savepoint must still hold where each
    partition stands (the Kafka source would otherwise keep "the group's committed offset" and resolve it at the
    restore — by then past every order since, which the restored books would never see)."""
    from tradesim.adapters.kafka.client import start_positions

    ex = exchange  # no job submitted for the test: it submits its own
    ex.price(symbol, 1, "100")
    for job_id in running(ex.settings):
        cancel_job(ex.settings, job_id)
    rest = Flink(ex.settings).rest()
    job_id = start_execution_job(ex.settings)
    wait_for(lambda: all(v["status"] == "RUNNING" for v in rest.job(job_id)["vertices"]), 60, "the job's tasks")
    # Every partition in a reader, so the savepoint holds a position for each (one taken before the source found
    # its partitions holds none, and its restore starts them from the group's commit: docs/design/hardening.md).
    partitions = {f"{ex.settings.topics.trade_orders}-{p}" for p in range(ex.settings.kafka.partitions)}
    wait_for(lambda: partitions <= rest.assigned_splits(job_id), 60, "every partition assigned", poll_s=0.5)
    idle = savepoint_execution_job(ex.settings)  # before any order reached the new job, which runs on
    users = [ex.account("10000") for _ in range(6)]  # several users: most partitions get an order
    placed = [ex.order(u, symbol, kind="limit", limit="50") for u in users]  # resting, far below the price
    reader = ex.outcomes()
    ex.send(*placed)
    topic = ex.settings.topics.trade_orders

    def all_committed() -> bool:  # a checkpoint committed the job's position past the orders
        ends = start_positions(ex.settings.kafka, "probe-" + uuid.uuid4().hex[:6], topic, "latest")
        return start_positions(ex.settings.kafka, "tradesim-execution", topic, "earliest") == ends

    wait_for(all_committed, 60, "the job's offsets committed past the orders", poll_s=0.5)
    stop_execution_job(ex.settings)
    start_execution_job(ex.settings, idle)  # books as before the orders: they must come back from the topic
    now_ms = int(time.time() * 1000)
    ex.send(*[OrderCancelRequested(order_id=o.order_id, user_id=o.user_id, symbol=symbol, requested_at_ms=now_ms)
              for o in placed])
    got = reader.wait([o.order_id for o in placed], timeout_s=60)
    assert {o.status for o in got.values()} == {"cancelled"}  # each was in the restored book to be cancelled


def _rest_a_buy_limit_at_90(ex: Exchange, symbol: str) -> tuple[Outcomes, OrderPlaced]:
    """A GTC buy limit at 90 against an ask of 100, once the job's mirror marked it resting in the book."""
    user = ex.account("100000")
    ex.price(symbol, 1, "100")
    reader = ex.outcomes()
    resting = ex.order(user, symbol, kind="limit", limit="90", tif="gtc")
    ex.send(resting)
    db = DynamoDB(ex.settings.dynamodb)
    try:
        wait_for(lambda: (OrderStore(db).get(resting.order_id) or {}).get("in_book"), 60, "the order resting")
    finally:
        db.close()
    return reader, resting


def _committed_past_the_order(ex: Exchange, run: str) -> None:
    """Until the run checkpointed after the resting order and its group committed past it, so that a run started
    from the group's offsets never sees the order again: only this run's state holds it."""
    from confluent_kafka import TopicPartition

    from tradesim.adapters.kafka.client import consumer, start_positions
    from tradesim.stack.jobs import NO_REQUESTS, ask_checkpoint, source_groups

    rest = Flink(ex.settings).rest()
    # a checkpoint asked for now, after the order rested: its barrier follows the order
    asked: list[str | None] = [None]

    def checkpointed() -> bool:
        asked[0], done = ask_checkpoint(rest, run, asked[0])
        assert asked[0] != NO_REQUESTS, "this Flink takes checkpoint requests"
        return done

    wait_for(checkpointed, 60, "a checkpoint taken after the order rested", poll_s=0.5)
    # and the group's offsets past the order (Kafka learns them some time after the checkpoint)
    topic = ex.settings.topics.trade_orders
    probe = consumer(ex.settings.kafka, group_id="probe-" + uuid.uuid4().hex[:8])
    try:
        parts = probe.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: probe.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
    finally:
        probe.close()
    group = next(g for g, t in source_groups(ex.settings, {"execution"}) if t == topic)
    wait_for(lambda: all(at >= ends[p] for p, at in start_positions(ex.settings.kafka, group, topic,
                                                                    "earliest").items()), 120,
             "the job's group committed past the order", poll_s=0.2)


def _assert_it_fills_when_the_ask_crosses(ex: Exchange, symbol: str, reader: Outcomes, resting: OrderPlaced) -> None:
    ex.price(symbol, 2, "89")
    outcome = reader.wait([resting.order_id])[resting.order_id]
    assert outcome.status == "executed"
    assert outcome.fill_price is not None
    assert outcome.fill_price <= Decimal("90")


def test_a_resting_order_outlives_flink_stopped_by_down_and_started_again(ex: Exchange, symbol: str) -> None:
    """`down` parks the jobs (a savepoint each) before Flink stops, and their next submit resumes from it: a GTC
    order resting in the book still fills after Flink was stopped and started (before, the job started afresh
    from its group's offsets, past the order, and the order stayed `accepted` for ever)."""
    from tradesim.stack import registry
    from tradesim.stack.jobs import JOBS, name_of, parked, submit_job, waiting_to_resume
    from tradesim.stack.supervisor import Supervisor

    reader, resting = _rest_a_buy_limit_at_90(ex, symbol)
    rest = Flink(ex.settings).rest()
    ran = [name_of(j.name) for j in rest.jobs(with_checkpoints=False) if j.active and name_of(j.name) in JOBS]
    flink = Supervisor(ex.settings, registry.build(ex.settings, ["flink"]))
    flink.down()
    try:
        assert "execution" in parked(ex.settings)
    finally:
        flink.up()
        waiting = waiting_to_resume(ex.settings)  # what `up` without --with-jobs names
        for name in ran:  # as `up --with-jobs` does: each from its parked state
            submit_job(ex.settings, name)
    assert "execution" in waiting
    assert "execution" not in parked(ex.settings)
    assert "execution" not in waiting_to_resume(ex.settings)
    _assert_it_fills_when_the_ask_crosses(ex, symbol, reader, resting)  # it rested through the restart


def test_cancel_lost_cancels_an_order_no_book_holds_and_leaves_one_the_book_holds(
        ex: Exchange, symbol: str, orders: OrderStore) -> None:
    """`tradesim jobs cancel-lost` (what a start without state sends by itself, for when it could not): an order
    shown in a book that the running job does not hold (here: marked so, never sent, as an earlier run's book left
    it) is cancelled; one the book holds stays, and fills later."""
    from typer.testing import CliRunner

    from tradesim.cli.app import app

    reader, resting = _rest_a_buy_limit_at_90(ex, symbol)
    lost = ex.order(resting.user_id, symbol, kind="limit", limit="80")
    assert orders.claim(lost) is None
    assert orders.mark_in_book(lost)
    sent = CliRunner().invoke(app, ["jobs", "cancel-lost"])
    assert sent.exit_code == 0, sent.output
    assert reader.wait([lost.order_id])[lost.order_id].status == "cancelled"  # before: open for ever
    wait_for(lambda: (orders.get(lost.order_id) or {}).get("status") == "cancelled", 30, "the order shown cancelled")
    assert (orders.get(resting.order_id) or {}).get("status") == "accepted"
    _assert_it_fills_when_the_ask_crosses(ex, symbol, reader, resting)  # the book held it: its cancel passed by


def test_orders_a_book_held_are_cancelled_when_the_job_starts_without_its_state(ex: Exchange, symbol: str) -> None:
    """A plain `jobs cancel` keeps no state: the next submit started with empty books, and an order the old run
    held showed `accepted`, in the book, for ever. The submit now sends each such order a cancel the new run
    acts on, so each gets an outcome; the job then trades on."""
    from typer.testing import CliRunner

    from tradesim.cli.app import app

    reader, resting = _rest_a_buy_limit_at_90(ex, symbol)
    (run,) = running(ex.settings)
    _committed_past_the_order(ex, run)  # else the new run reads it again, holds it, and keeps it (its own)
    cancelled = CliRunner().invoke(app, ["jobs", "cancel", run])
    assert cancelled.exit_code == 0, cancelled.output
    submitted = CliRunner().invoke(app, ["jobs", "submit", "execution"])
    assert submitted.exit_code == 0, submitted.output
    assert "an earlier run held in its books" in " ".join(submitted.output.split())
    outcome = reader.wait([resting.order_id])[resting.order_id]
    assert outcome.status == "cancelled"  # before: no outcome, ever
    db = DynamoDB(ex.settings.dynamodb)
    try:
        wait_for(lambda: (OrderStore(db).get(resting.order_id) or {}).get("status") == "cancelled", 30,
                 "the order shown cancelled")
        assert resting.order_id not in {o.order_id for o in OrderStore(db).held_in_books()}
    finally:
        db.close()
    again = ex.order(resting.user_id, symbol)  # the new run trades
    ex.send(again)
    assert reader.wait([again.order_id])[again.order_id].status == "executed"


def test_a_resting_order_outlives_a_killed_jobmanager_and_the_watchdog_puts_the_job_back(
        ex: Exchange, symbol: str) -> None:
    """The JobManager killed (-9) takes the cluster's jobs with it (no HA: a new one knows none). The watchdog
    starts Flink again and resubmits the execution job from its lost run's last retained checkpoint, so a GTC
    order resting in the book still fills (before, nothing ran until `up --with-jobs`, which started the job
    afresh from its group's offsets, past the order)."""
    from tradesim.adapters.flink.errors import FlinkRequestError, FlinkUnavailable
    from tradesim.stack import watchdog
    from tradesim.stack.jobs import runs

    reader, resting = _rest_a_buy_limit_at_90(ex, symbol)
    flink = Flink(ex.settings)
    (run,) = running(ex.settings)
    noted = runs(ex.settings).get("execution")
    assert noted is not None, "the execution job's run is noted at its submit"
    assert noted.run == run

    _committed_past_the_order(ex, run)
    jobmanager = int((flink.dir / "pids" / "jobmanager.pid").read_text())
    # the cluster's scratch: the JobManager's blobs, RPC jar, web files (~80 MB) and the TaskManager's folder's
    tmp = flink.dir / "tmp"
    scratch = {*(p for p in tmp.iterdir() if p.name != "taskmanager"), *(tmp / "taskmanager").iterdir()}
    assert len(scratch) > 2, "the running cluster keeps its scratch in the stack's flink/tmp"
    watchdog.start(ex.settings)
    try:
        os.kill(jobmanager, signal.SIGKILL)

        def resubmitted() -> bool:
            now = runs(ex.settings).get("execution")
            try:
                return now is not None and now.run != run and running(ex.settings) == [now.run]
            except (FlinkUnavailable, FlinkRequestError):  # the cluster restarting
                return False

        wait_for(resubmitted, 300, "Flink restarted and the execution job resubmitted by the watchdog", poll_s=0.2)
        # once the new run has a checkpoint of its own
        wait_for(lambda: not (flink.dir / "checkpoints" / run).exists(), 150, "the lost run's checkpoints removed",
                 poll_s=0.5)
    finally:
        stayed = watchdog.stop(ex.settings)
    assert stayed, "the watchdog died during the test"
    left = sorted(p.name for p in scratch if p.exists())
    assert not left, f"the killed JobManager's scratch stayed behind: {left}"
    _assert_it_fills_when_the_ask_crosses(ex, symbol, reader, resting)  # it rested through the crash
