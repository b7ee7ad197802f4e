"""Backup and restore round trip: trade, `tradesim backup`, purge the stack, `tradesim restore`, trade on. Balances,
orders, searchable trades and analytics are what they were; an order resting in the execution job's book at the
backup still executes after the restore (its savepoint came back); no order executes twice, also when clients
retry every order they placed before the backup."""

from __future__ import annotations

import itertools
import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import TopicPartition
from typer.testing import CliRunner

from tests.integration.api.conftest import User, admin_key, http, new_user  # noqa: F401 - fixtures
from tests.integration.conftest import FOUND_RUNNING
from tests.integration.execution.conftest import running
from tests.integration.persistence.conftest import analysed, searched
from tradesim.adapters.clickhouse.trades import TradeStore
from tradesim.adapters.dynamodb.client import DynamoDB
from tradesim.adapters.dynamodb.orders import OrderStore
from tradesim.adapters.dynamodb.portfolios import PortfolioStore
from tradesim.adapters.kafka.client import consumer, producer
from tradesim.adapters.redis.client import connect
from tradesim.adapters.redis.prices import PriceCache
from tradesim.adapters.search.trades import TradeIndex
from tradesim.cli.app import app
from tradesim.cli.backup import _Bars
from tradesim.domain.errors import InvalidRecord
from tradesim.domain.events import OrderOutcome, OrderPlaced, decode, encode
from tradesim.domain.portfolio import fold
from tradesim.domain.precheck import order_id_for
from tradesim.services.ingest.publisher import publish_all
from tradesim.settings import Settings
from tradesim.stack.backup import Manifest, NoSteps, restore
from tradesim.stack.jobs import submit_standard_jobs
from tradesim.stack.marks import (
    begin_rebuild,
    finish_rebuild,
    forget_unfinished_rebuilds,
    short_models,
    unfinished_restore,
)
from tradesim.stack.supervisor import Supervisor
from tradesim.testing.factories import tick, unique_symbol
from tradesim.testing.waiting import wait_for

pytestmark = pytest.mark.integration

CASH = "100000"
cli = CliRunner()


def _price(settings: Settings, symbol: str, seq: int, price: str) -> None:
    """Publish a tick and wait until the market-data service cached it (the API prices orders from there)."""
    publish_all(settings, [tick(symbol, seq, price=price, run_id=7)])
    cache = PriceCache(connect(settings.redis))
    wait_for(lambda: (got := cache.latest(symbol)) is not None and got[0].seq >= seq, 60, "price cached")


def _all_outcomes(settings: Settings, users: set[str]) -> dict[str, list[OrderOutcome]]:
    """Every outcome of these users on trade_executed (all copies, by order), from the start of the log to its end
    now; the log also holds other tests' deliberately malformed records, which are skipped."""
    topic = settings.topics.trade_executed
    c = consumer(settings.kafka, group_id="backup-" + uuid.uuid4().hex[:8])
    parts = c.list_topics(topic, timeout=10).topics[topic].partitions
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    ends = [TopicPartition(topic, p, c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1])
            for p in parts]
    out: dict[str, list[OrderOutcome]] = {}

    def at_end() -> bool:
        for m in c.consume(1000, timeout=0.2):
            try:
                o = decode(OrderOutcome, m.value())
            except InvalidRecord:
                continue
            if o.user_id in users:
                out.setdefault(o.order_id, []).append(o)
        return all(pos.offset >= end.offset for pos, end in zip(c.position(ends), ends, strict=True) if end.offset)

    wait_for(at_end, 60, "trade_executed read to its end")
    c.close()
    return out


def _state(settings: Settings, http: httpx.Client, users: list[User]) -> dict[str, Any]:  # noqa: F811
    """What a user of the stack can see: balances, orders, searchable trades, analytics rows."""
    store = PortfolioStore(DynamoDB(settings.dynamodb))
    ids = [u.user_id for u in users]
    balances = {}
    for u in users:
        p = store.get(u.user_id)
        assert p is not None
        balances[u.user_id] = (p.cash, {s: q for s, q in p.positions.items() if q})
    orders = {}
    for u in users:
        answer = http.get("/orders", headers=u.auth, params={"limit": 500})
        assert answer.status_code == 200, answer.text
        orders[u.user_id] = answer.json()["orders"]
    with TradeIndex.from_settings(settings.opensearch) as index:
        found = sorted(searched(index, ids), key=lambda r: r.order_id)
    rows = sorted(analysed(TradeStore.from_settings(settings.clickhouse), ids), key=lambda r: r.order_id)
    return {"balances": balances, "orders": orders, "search": found, "analytics": rows}


class DuringBackup(threading.Thread):
    """A client placing a market buy every 0.2 s while the backup runs (and keeping the price fresh)."""

    def __init__(self, settings: Settings, user: User, symbol: str, seqs: Iterator[int]) -> None:
        super().__init__(daemon=True)
        self.settings, self.user, self.symbol, self.seqs = settings, user, symbol, seqs
        self.stop = threading.Event()
        #: (answered at, wall clock; status, 0 without an answer; body; idempotency key; order id)
        self.answers: list[tuple[float, int, dict[str, Any], str, str | None]] = []

    def run(self) -> None:
        with httpx.Client(base_url=self.settings.api.client_url, timeout=30) as client:
            for k in itertools.count():
                if self.stop.is_set():
                    return
                if k % 10 == 0:  # the API refuses orders on a price older than marketdata.stale_after_s
                    publish_all(self.settings, [tick(self.symbol, next(self.seqs), price="20", run_id=7)])
                key, body = secrets.token_hex(8), {"symbol": self.symbol, "side": "buy", "qty": 1}
                try:
                    answer = client.post("/orders", json=body, headers={**self.user.auth, "Idempotency-Key": key})
                    status, order_id = answer.status_code, answer.json().get("order_id")
                except httpx.HTTPError:
                    status, order_id = 0, None
                self.answers.append((time.time(), status, body, key, order_id))
                self.stop.wait(0.2)  # the client's pace, not a wait for a condition


class LatePublisher:
    """An API that claimed an order before the backup copied `Orders` and publishes it only after the recovery
    point (the API claims, then publishes: a slow publish straddles the recovery point). The backup's progress
    display is where the test can act between its steps; the record goes out as the read models' copy starts."""

    def __init__(self, settings: Settings, user: User, symbol: str, key: str) -> None:
        self.settings = settings
        self.order = OrderPlaced(order_id=order_id_for(user.user_id, key), user_id=user.user_id, symbol=symbol,
                                 side="buy", qty=1, order_type="market", time_in_force="day",
                                 placed_at_ms=int(time.time() * 1000))
        self.body, self.key, self.published = {"symbol": symbol, "side": "buy", "qty": 1}, key, False
        db = DynamoDB(settings.dynamodb)
        try:
            assert OrderStore(db).claim(self.order) is None
        finally:
            db.close()

    def hook(self, monkeypatch: pytest.MonkeyPatch) -> None:
        start = _Bars.start

        def started(bars: _Bars, description: str, total: int | None) -> int:
            if description == "OpenSearch snapshot":  # the first step after the recovery point
                p = producer(self.settings.kafka)
                p.produce(self.settings.topics.trade_orders, key=self.order.key, value=encode(self.order))
                assert p.flush(30) == 0
                self.published = True
            return start(bars, description, total)

        monkeypatch.setattr(_Bars, "start", started)


def test_a_restored_stack_holds_the_same_data_and_executes_nothing_twice(
        settings: Settings, supervisor: Supervisor, http: httpx.Client,  # noqa: F811
        new_user: Callable[..., User], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    if FOUND_RUNNING:
        pytest.skip("purges the stack's data: runs only on a stack this session started")
    try:
        _round_trip(settings, supervisor, http, new_user, tmp_path, monkeypatch)
    finally:
        finish_rebuild(settings, "search")  # the test's own mark (see below), whatever failed
        supervisor.up()  # whatever failed, later tests find the stack up
        # the jobs are left running: the next file (test_backup_interrupted.py) needs every standard job running


class _StopAt(NoSteps):
    """Steps that stop the restore at the first step whose description starts with `prefix`, as a Ctrl-C would."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def start(self, description: str, total: int | None) -> int:
        if description.startswith(self.prefix):
            raise KeyboardInterrupt
        return 0


def _round_trip(settings: Settings, supervisor: Supervisor, http: httpx.Client,  # noqa: F811
                new_user: Callable[..., User], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    submit_standard_jobs(settings)  # a backup needs every standard job running, to save its state
    symbol = unique_symbol("BK")
    users = [new_user(cash=CASH) for _ in range(3)]
    during = new_user(cash=CASH)  # trades while the backup runs; the others stand still
    ids = {u.user_id for u in (*users, during)}
    seqs = itertools.count(1)
    _price(settings, symbol, next(seqs), "20")
    placed: list[tuple[User, dict[str, Any], str, str]] = []  # (user, body, idempotency key, order id)

    def place(user: User, body: dict[str, Any]) -> str:
        key = secrets.token_hex(8)
        answer = http.post("/orders", json=body, headers={**user.auth, "Idempotency-Key": key})
        assert answer.status_code == 202, answer.text
        placed.append((user, body, key, answer.json()["order_id"]))
        return str(answer.json()["order_id"])

    def decided(order_ids: list[str]) -> bool:
        return all(http.get(f"/orders/{o}", headers=u.auth).json()["status"] != "accepted"
                   for u, _, _, o in placed if o in order_ids)

    market = [place(users[i % 3], {"symbol": symbol, "side": "buy", "qty": 1 + i % 3}) for i in range(9)]
    wait_for(lambda: decided(market), 120, "the buys decided", poll_s=0.5)
    market += [place(users[i], {"symbol": symbol, "side": "sell", "qty": 1}) for i in range(3)]
    # rests in the job's book (price 20): only the savepoint carries it across the restore
    resting = place(users[0], {"symbol": symbol, "side": "buy", "qty": 5, "type": "limit",
                               "limit_price": "15", "time_in_force": "gtc"})

    wait_for(lambda: decided(market), 120, "the market orders decided", poll_s=0.5)
    wait_for(lambda: http.get(f"/orders/{resting}", headers=users[0].auth).json()["in_book"], 30,
             "the limit order resting in the book")
    wait_for(lambda: len(_state(settings, http, users)["search"]) == len(market)
             and len(_state(settings, http, users)["analytics"]) == len(market), 120, "the read models caught up",
             poll_s=0.5)
    before = _state(settings, http, users)

    folder = tmp_path / "backup"
    begin_rebuild(settings, "search")  # as a rebuild stopped after its switch leaves it: the search model short
    late = LatePublisher(settings, during, symbol, secrets.token_hex(8))
    late.hook(monkeypatch)
    client = DuringBackup(settings, during, symbol, seqs)
    client.start()
    done = cli.invoke(app, ["backup", str(folder)])
    client.stop.set()
    client.join(30)
    monkeypatch.undo()  # the restore's steps go unwatched
    assert done.exit_code == 0, done.output
    assert "backed up into" in done.output
    assert late.published
    manifest = Manifest.load(folder)
    assert manifest.late.get(settings.topics.trade_orders), "the late-published order's record copied"
    recovery_point = manifest.recovery_point
    in_backup = [a for a in client.answers if a[1] == 202 and a[0] < recovery_point]
    assert in_backup, f"no order was accepted before the recovery point: {client.answers[:5]}"
    again = cli.invoke(app, ["backup", str(folder)])
    assert (again.exit_code, "not an empty folder" in again.output) == (2, True), again.output

    # an empty stack: every store's data deleted (the API's admin key is kept: the session's fixtures hold it)
    supervisor.down()
    Supervisor(settings, [c for c in supervisor.components if c.name != "api"]).down(purge=True)
    forget_unfinished_rebuilds(settings)  # as `tradesim down --purge` does
    assert short_models(settings) == []
    supervisor.up()
    assert cli.invoke(app, ["restore", str(tmp_path / "nothing")]).exit_code == 2
    # a restore stopped once it began changing the stack (here before any data moved, so it may start again) leaves
    # a mark that `status` and `up` show until a restore finishes
    with pytest.raises(KeyboardInterrupt):
        restore(settings, folder, _StopAt("Kafka"))
    shown = cli.invoke(app, ["status"])
    assert f"a restore from {folder.resolve()} did not finish" in shown.stderr, shown.output
    done = cli.invoke(app, ["restore", str(folder)])
    assert done.exit_code == 0, done.output
    assert unfinished_restore(settings) is None
    status = json.loads(cli.invoke(app, ["status", "--json"]).stdout)
    assert status["unfinished_restore"] is None
    # the purge removed the rebuild's mark; the restored stack marks the model the backup copied short again
    assert Manifest.load(folder).short_models == ["search"]
    assert [line.split(" stopped")[0] for line in status["unfinished_rebuilds"]] == ["a rebuild of search"]
    finish_rebuild(settings, "search")
    assert running(settings), "the execution job resumed from its savepoint"

    wait_for(lambda: _state(settings, http, users) == before, 60, "the restored state equal to the backed-up one",
             poll_s=0.5)
    refused = cli.invoke(app, ["restore", str(folder)])
    assert (refused.exit_code, "needs an empty stack" in refused.output) == (2, True), refused.output
    # every order accepted before the recovery point is in the restored stack and gets decided, also the one
    # claimed before it and published after it (without a client's retry)
    placed += [(during, body, key, str(order_id)) for _, _, body, key, order_id in in_backup]
    placed.append((during, late.body, late.key, late.order.order_id))
    wait_for(lambda: decided([str(a[4]) for a in in_backup] + [late.order.order_id]), 120,
             "the orders accepted during the backup decided", poll_s=0.5)

    # trade on: every client retries what it placed (before the backup, and during it: orders accepted after the
    # recovery point were not in the backup and are placed again), the resting order fills, new orders run
    later = [(during, body, key, str(order_id)) for at, status, body, key, order_id in client.answers
             if status == 202 and at >= recovery_point]
    # a restored stack's price cache is empty until ticks arrive, and the API checks the price before it finds a
    # retried order's claim (see the closing note of the sixth session)
    _price(settings, symbol, next(seqs), "20")
    for user, body, key, order_id in [*placed, *later]:
        answer = http.post("/orders", json=body, headers={**user.auth, "Idempotency-Key": key})
        assert (answer.status_code, answer.json().get("order_id")) == (202, order_id), answer.text
    placed += later
    _price(settings, symbol, next(seqs), "14")
    place(users[1], {"symbol": symbol, "side": "buy", "qty": 2})  # a new order after the restore
    wait_for(lambda: decided([o for _, _, _, o in placed]), 120, "every order decided", poll_s=0.5)
    assert http.get(f"/orders/{resting}", headers=users[0].auth).json()["status"] == "executed"

    # none executed twice: one decision per order, and every account is the fold of its outcomes
    outcomes = _all_outcomes(settings, ids)
    decisions = {oid: {(o.status, o.fill_price, o.fee) for o in copies} for oid, copies in outcomes.items()}
    assert {oid for oid, d in decisions.items() if len(d) > 1} == set()
    assert set(decisions) == {o for _, _, _, o in placed}
    store = PortfolioStore(DynamoDB(settings.dynamodb))
    for u in (*users, during):
        folded = fold(Decimal(CASH), [copies[0] for copies in outcomes.values() if copies[0].user_id == u.user_id])
        p = store.get(u.user_id)
        assert p is not None
        assert (p.cash, {s: q for s, q in p.positions.items() if q}) == (folded.cash, folded.positions)
