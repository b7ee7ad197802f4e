"""The fault suite: each Toxiproxy fault (tradesim/stack/chaos.py) hits Redis, DynamoDB or Kafka for 8 s in the
middle of a 2,000-order load through the API. For every fault: no accepted order lost, none executed twice, every
account exactly the fold of its outcomes (conservation), the search model holds every outcome, and every
component is healthy again with no manual step. The test stack runs with chaos on (tests/integration/conftest.py).

Each run appends a row (fault, orders accepted, lost, double, seconds to recover) to build/fault-results.jsonl
for benchmarks/RESULTS.md."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from tests.integration.api.conftest import User, admin_key, http, new_user  # noqa: F401 - fixtures
from tests.integration.execution.conftest import Outcomes, execution_job  # noqa: F401 - fixture
from tests.integration.persistence.conftest import index, searched  # noqa: F401 - fixture
from tradesim.adapters.dynamodb.client import DynamoDB
from tradesim.adapters.dynamodb.portfolios import PortfolioStore
from tradesim.adapters.kafka.client import consumer
from tradesim.adapters.search.trades import TradeIndex
from tradesim.adapters.toxiproxy.client import Toxiproxy, ToxiproxyRefused
from tradesim.domain.events import OrderOutcome
from tradesim.domain.portfolio import fold
from tradesim.services.ingest.publisher import publish_all
from tradesim.settings import Settings
from tradesim.stack.chaos import FAULTS
from tradesim.stack.supervisor import Supervisor
from tradesim.testing.factories import tick, unique_symbol
from tradesim.testing.net import ESTABLISHED, open_tcp
from tradesim.testing.waiting import wait_for

pytestmark = pytest.mark.integration

ORDERS, USERS, CASH = 2000, 20, "1000000"
FAULT_S = 8.0
#: the faults CI runs (time budget); `tradesim chaos run` has every one
IN_CI = ("dynamodb-down", "dynamodb-latency", "dynamodb-reset", "dynamodb-timeout", "redis-down", "redis-latency",
         "kafka-down", "kafka-latency")
RESULTS = Path(__file__).resolve().parents[3] / "build" / "fault-results.jsonl"


class Ticker:
    """Keeps the symbol's price fresh (the API refuses orders on a price older than 30 s) while the load runs."""

    def __init__(self, settings: Settings, symbol: str) -> None:
        self.settings, self.symbol, self.stop = settings, symbol, threading.Event()
        self.run_id = time.time_ns() // 1_000_000
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        seq = 1
        while not self.stop.is_set():
            try:
                publish_all(self.settings, [tick(self.symbol, seq, price="20")], run_id=self.run_id)
            except Exception:  # noqa: BLE001, S110 - Kafka is not faulted here; a missed tick is the next one's
                pass
            seq += 1
            self.stop.wait(2.0)  # a feed's pace, not a wait for a condition

    def __enter__(self) -> Ticker:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        self.thread.join(10)


def _outcomes_from_now(settings: Settings) -> Outcomes:
    from confluent_kafka import TopicPartition

    topic = settings.topics.trade_executed
    c = consumer(settings.kafka, group_id="faults-" + secrets.token_hex(4))
    parts = c.list_topics(topic, timeout=10).topics[topic].partitions
    c.assign([TopicPartition(topic, p, c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1])
              for p in parts])
    return Outcomes(c)


def _healthy(supervisor: Supervisor) -> bool:
    return all(s.healthy for s in supervisor.status())


@pytest.mark.parametrize("name", IN_CI)
def test_a_fault_under_load_loses_nothing_and_executes_nothing_twice(
        name: str, settings: Settings, supervisor: Supervisor, tox: Toxiproxy, new_user: Callable[..., User],  # noqa: F811
        index: TradeIndex, execution_job: None) -> None:  # noqa: F811
    fault = FAULTS[name]
    _assert_routed_through_the_proxies(settings, supervisor)
    symbol = unique_symbol("F")
    users = [new_user(cash=CASH) for _ in range(USERS)]
    accepted: dict[str, tuple[User, str, int]] = {}
    accepted_at: dict[str, float] = {}
    answers: list[tuple[float, float, int]] = []  # (sent at, seconds, status) of every request
    refused: dict[int, int] = {}
    lock = threading.Lock()
    reader = _outcomes_from_now(settings)
    sent = threading.Semaphore(0)

    def accepted_after(t: float) -> bool:
        with lock:
            return any(at > t for at in accepted_at.values())

    def place(i: int, client: httpx.Client) -> None:
        user, side, qty = users[i % USERS], "sell" if i % 5 == 0 else "buy", 1 + i % 4
        started = time.monotonic()
        try:
            answer = client.post("/orders", json={"symbol": symbol, "side": side, "qty": qty}, headers=user.auth)
            status = answer.status_code
        except httpx.HTTPError:
            status = 0  # no answer: the client does not know; not counted as accepted
        with lock:
            answers.append((started, time.monotonic() - started, status))
            if status == 202:
                accepted[answer.json()["order_id"]] = (user, side, qty)
                accepted_at[answer.json()["order_id"]] = time.monotonic()
            else:
                refused[status] = refused.get(status, 0) + 1
        sent.release()

    with Ticker(settings, symbol):
        wait_for(lambda: _price_cached(settings, symbol), 30, "the symbol priced")
        with httpx.Client(base_url=settings.api.client_url, timeout=30) as client, \
                ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(place, i, client) for i in range(ORDERS)]
            for _ in range(ORDERS // 3):
                sent.acquire()
            fault.apply(tox)
            injected = time.monotonic()
            threading.Event().wait(FAULT_S)  # the fault's duration is the scenario, nothing to poll for
            fault.remove(tox)
            removed = time.monotonic()
            for f in futures:
                f.result()
            _assert_kafka_through_the_proxy(settings, supervisor)  # both hold Kafka connections by now
            # the API takes orders again with no manual step (an order refused while it recovers is retried)
            wait_for(lambda: (place(ORDERS + 1, client), accepted_after(removed))[1], 60,  # a buy
                     "an order accepted after the fault", poll_s=0.5)
        assert accepted, refused
        # the fault reached the API: during it, requests were refused or slow
        hit = [a for a in answers if injected <= a[0] <= removed and (a[2] != 202 or a[1] >= 0.25)]
        assert hit, f"nothing noticed {name}"
        reader.wait(list(accepted), timeout_s=300)  # none lost: every accepted order has its outcome
    recovered_s = time.monotonic() - removed
    wait_for(lambda: _healthy(supervisor), 60, "every component healthy again", poll_s=0.5)

    # none executed twice: each order has one decision (replays may repeat it, never change it), and each
    # account is exactly the fold of its outcomes from its starting cash (conservation)
    double = [oid for oid, copies in reader.by_order().items() if oid in accepted
              and len({(c.status, c.fill_price, c.fee) for c in copies}) > 1]
    assert double == []
    store = PortfolioStore(DynamoDB(settings.dynamodb))

    def conserved() -> list[str]:
        """Accounts that are not the fold of their outcomes (all of them: a request whose answer timed out may
        still have placed its order, so the outcomes seen count, not only the 202s)."""
        reader.poll()
        by_user: dict[str, dict[str, OrderOutcome]] = {}
        for o in reader.seen:
            by_user.setdefault(o.user_id, {}).setdefault(o.order_id, o)
        off = []
        for user in users:
            folded = fold(Decimal(CASH), by_user.get(user.user_id, {}).values())
            p = store.get(user.user_id)
            if p is None or (p.cash, {s: q for s, q in p.positions.items() if q}) != (folded.cash, folded.positions):
                off.append(f"{user.user_id}: {p and (p.cash, p.positions)} != {(folded.cash, folded.positions)}")
        return off

    try:
        wait_for(lambda: not conserved(), 60, "every account the fold of its outcomes", poll_s=0.2)
    except AssertionError:
        pytest.fail(f"not conserved: {conserved()[:3]}")
    # the read side converges on the same outcomes
    wait_for(lambda: {r.order_id for r in searched(index, [u.user_id for u in users])} >= set(accepted), 120,
             "every outcome searchable", poll_s=0.5)

    row = {"fault": name, "orders": ORDERS, "accepted": len(accepted), "refused": refused, "lost": 0,
           "double": len(double), "fault_s": round(removed - injected, 1), "recover_s": round(recovered_s, 1)}
    RESULTS.parent.mkdir(exist_ok=True)
    with RESULTS.open("a") as f:
        f.write(json.dumps(row) + "\n")
    print(row)


def _pids(settings: Settings, supervisor: Supervisor) -> list[tuple[int | None, str]]:
    from tradesim.stack.flink import Flink

    (api,) = [s.pid for s in supervisor.status() if s.name == "api"]
    return [(api, "api"), (Flink(settings).taskmanager_pid(), "TaskManager")]


def _assert_routed_through_the_proxies(settings: Settings, supervisor: Supervisor) -> None:
    """The API and the TaskManager run with the proxies' ports (a stack started without chaos would not)."""
    c = settings.chaos
    for pid, what in _pids(settings, supervisor):
        assert pid is not None, what
        env = dict(item.split("=", 1) for item in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in item)
        assert (env.get("TRADESIM_REDIS__PORT"), env.get("TRADESIM_DYNAMODB__PORT"), env.get("TRADESIM_KAFKA__PORT")
                ) == (str(c.redis_port), str(c.dynamodb_port), str(c.kafka_port)), \
            f"{what} bypasses Toxiproxy: restart the stack with chaos on"


def _assert_kafka_through_the_proxy(settings: Settings, supervisor: Supervisor) -> None:
    """Every Kafka connection the API and the TaskManager (the jobs' clients) hold goes to the proxy, none to the
    broker's own listener: what the broker advertises cannot lead them around it. (After a Kafka fault a client
    may still be waiting out its reconnect backoff: the proxy connections are awaited.)"""
    pids = _pids(settings, supervisor)
    assert all(pid is not None for pid, _ in pids), pids
    ports = {what: _remote_ports(pid) for pid, what in pids if pid is not None}

    def connected() -> bool:
        ports.update({what: _remote_ports(pid) for pid, what in pids if pid is not None})
        return all(settings.chaos.kafka_port in p for p in ports.values())

    wait_for(connected, 30, f"connections to the Kafka proxy ({ports})", poll_s=0.2)
    assert [what for what, p in ports.items() if settings.kafka.port in p] == [], "Kafka reached around the proxy"


def _remote_ports(pid: int) -> set[int]:
    """Remote ports of the established TCP connections of the process and its children (the API's workers)."""
    from tradesim.stack.exporter import family, read_procs

    return {s.remote_port for s in open_tcp(family(read_procs(), pid)).values() if s.state == ESTABLISHED}


def _price_cached(settings: Settings, symbol: str) -> bool:
    from tradesim.adapters.redis.client import connect
    from tradesim.adapters.redis.prices import PriceCache

    client = connect(settings.redis)
    try:
        return PriceCache(client).latest(symbol) is not None
    finally:
        client.close()


def test_a_fault_in_place_is_refused_again_and_one_cleared_meanwhile_counts_as_removed(tox: Toxiproxy) -> None:
    """Before: a second `redis-down` was applied, and the shorter run's end brought Redis back under the longer
    one; a run whose toxic `chaos clear` had removed ended with Toxiproxy's 404 as an error."""
    down, slow = FAULTS["redis-down"], FAULTS["redis-latency"]
    down.apply(tox)
    with pytest.raises(ToxiproxyRefused, match="redis is down already"):
        down.apply(tox)
    assert down.remove(tox) is True
    assert down.remove(tox) is False  # (up already)
    slow.apply(tox)
    with pytest.raises(ToxiproxyRefused):
        slow.apply(tox)  # Toxiproxy's own refusal: the toxic exists
    tox.reset()  # `tradesim chaos clear`
    assert slow.remove(tox) is False
