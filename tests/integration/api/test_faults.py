"""503 + Retry-After when Kafka, Redis or DynamoDB is unreachable — and nothing half-done.

Each case runs a second API (same code, same Redis/DynamoDB/Kafka except the one made unreachable by pointing it
at a closed port), so the shared stack stays up for the other tests.
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tradesim.settings import Settings
from tradesim.stack.supervisor import Supervisor
from tradesim.testing.net import free_port

from .conftest import OrderLog, User, order, untraced, wait_for

pytestmark = pytest.mark.integration


def _assert_503(answer: httpx.Response) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.json()["code"] == "unavailable"
    assert int(answer.headers["retry-after"]) >= 1


def test_kafka_down_is_503_outcome_unknown_and_a_keyed_retry_places_the_order_once(
        api_with: Callable[..., httpx.Client], http: httpx.Client, user: User, symbol: str, order_log: OrderLog,
        settings: Settings) -> None:
    """An unacknowledged record may or may not be on the log (librdkafka cannot tell a record never sent from one
    whose ack was lost), so the answer says so and names the order; its claim in Orders stays, and a retry with
    the same key places that same order."""
    broken = api_with(kafka={"bootstrap_servers": f"127.0.0.1:{free_port()}"}, api={"kafka_timeout_s": 1.5})
    headers = {**user.auth, "Idempotency-Key": "kafka-down-1"}
    answer = broken.post("/orders", json=order(symbol), headers=headers)
    assert answer.status_code == 503, answer.text
    assert answer.json()["code"] == "outcome_unknown"
    assert int(answer.headers["retry-after"]) >= 1
    order_id = answer.json()["order_id"]
    ready = broken.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["kafka"] != "ok"
    assert ready.json()["checks"]["redis"] == "ok"
    assert order_log.since(user.user_id) == []
    assert http.get(f"/orders/{order_id}", headers=user.auth).json()["status"] == "accepted"
    # the key was released: a retry on the healthy API places the same order, exactly once
    retry = http.post("/orders", json=order(symbol), headers=headers)
    assert retry.status_code == 202
    assert retry.json()["order_id"] == order_id
    events = order_log.since(user.user_id)
    assert [e.order_id for e in events] == [order_id]


def test_redis_down_is_503(api_with: Callable[..., httpx.Client], user: User, symbol: str,
                           order_log: OrderLog) -> None:
    broken = api_with(redis={"url": f"redis://127.0.0.1:{free_port()}/0"}, api={"store_timeout_s": 0.5})
    _assert_503(broken.post("/orders", json=order(symbol), headers={**user.auth, "Idempotency-Key": "r-1"}))
    _assert_503(broken.get("/accounts/me", headers=user.auth))
    assert broken.get("/readyz").json()["checks"]["redis"] != "ok"
    assert order_log.since(user.user_id) == []


def test_dynamodb_down_is_503(api_with: Callable[..., httpx.Client], user: User, symbol: str,
                              order_log: OrderLog) -> None:
    broken = api_with(dynamodb={"port": free_port()}, api={"store_timeout_s": 0.5})
    _assert_503(broken.post("/orders", json=order(symbol), headers={**user.auth, "Idempotency-Key": "d-1"}))
    assert broken.get("/readyz").json()["checks"]["dynamodb"] != "ok"
    assert order_log.since(user.user_id) == []


def test_a_post_while_the_broker_is_frozen_is_503_outcome_unknown_and_a_retry_places_that_order(
        api_with: Callable[..., httpx.Client], http: httpx.Client, user: User, symbol: str, order_log: OrderLog,
        supervisor: Supervisor) -> None:
    """SIGSTOP leaves the broker's socket open: the record is sent, then no ack comes within the deadline — the
    librdkafka "possibly persisted" case. After SIGCONT the broker may well write it; a retry with the key is safe."""
    short = api_with(api={"kafka_timeout_s": 2})
    assert short.post("/orders", json=order(symbol, qty=1), headers=user.auth).status_code == 202  # connected
    (kafka,) = [c for c in supervisor.status() if c.name == "kafka"]
    assert kafka.pid is not None
    alive = {c.name for c in supervisor.status() if c.healthy}
    headers = {**user.auth, "Idempotency-Key": "frozen-broker-1"}
    os.kill(kafka.pid, signal.SIGSTOP)
    try:
        answer = short.post("/orders", json=order(symbol, qty=2), headers=headers)
    finally:
        os.kill(kafka.pid, signal.SIGCONT)
    # nothing else may have died of the pause (the market-data service used to, on its lag metric's timeout)
    wait_for(lambda: alive <= {c.name for c in supervisor.status() if c.healthy}, 30,
             "every component that was healthy before the pause healthy again")
    assert answer.status_code == 503, answer.text
    assert answer.json()["code"] == "outcome_unknown"
    order_id = answer.json()["order_id"]
    retry = http.post("/orders", json=order(symbol, qty=2), headers=headers)
    assert retry.status_code == 202, retry.text
    assert retry.json()["order_id"] == order_id
    assert http.get(f"/orders/{order_id}", headers=user.auth).json()["qty"] == 2
    copies = [e for e in order_log.since(user.user_id) if e.order_id == order_id]
    assert 1 <= len(copies) <= 2  # the frozen send may have landed after SIGCONT: the same event, twice
    assert all(untraced(c) == untraced(copies[0]) for c in copies)


def test_a_stalled_read_model_holds_only_its_own_threads(api_with: Callable[..., httpx.Client], user: User) -> None:
    """A probe: 100 searches against a stalled OpenSearch took every thread of the API's shared pool, so orders and
    readiness (DynamoDB, Kafka) waited behind them and `/readyz` blamed Kafka and DynamoDB. The read models have
    threads of their own now: orders are served while every search still waits, and each search gets its 503."""
    with socket.socket() as hole:  # accepts connections (the kernel does) and never answers: a frozen node
        hole.bind(("127.0.0.1", 0))
        hole.listen(512)
        api = api_with(opensearch={"port": hole.getsockname()[1], "timeout_s": 3.0})
        with ThreadPoolExecutor(60) as pool:
            searches = [pool.submit(api.get, "/trades/search", headers=user.auth) for _ in range(60)]
            served: list[int] = []
            while not any(f.done() for f in searches):  # (a request starved of a thread times out: an error)
                served.append(api.get("/orders", params={"limit": 1}, headers=user.auth, timeout=2.5).status_code)
                served.append(api.get("/readyz", timeout=2.5).status_code)
            answers = [f.result() for f in searches]
    assert served
    assert set(served) == {200}
    for answer in answers:
        _assert_503(answer)


def test_a_500_says_the_connection_closes(api_with: Callable[..., httpx.Client], user: User,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A probe: after a 500 the server closed the keep-alive connection without saying so, and a client's next
    request on it (perhaps a POST) failed as a reset."""
    from tradesim.adapters.search.trades import TradeIndex

    def bug(*_: object) -> None:
        raise RuntimeError("a bug")

    api = api_with()
    monkeypatch.setattr(TradeIndex, "search", bug)  # (the in-process API shares this module)
    answer = api.get("/trades/search", headers=user.auth)
    assert (answer.status_code, answer.json()["code"]) == (500, "internal_error")
    assert answer.headers["connection"] == "close"
    assert api.get("/orders", params={"limit": 1}, headers=user.auth).status_code == 200  # a new connection
