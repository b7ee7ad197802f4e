"""503 + Retry-After when Kafka, Redis or DynamoDB is unreachable — and nothing half-done.

Each case runs a second API (same code, same Redis/DynamoDB/Kafka except the one made unreachable by pointing it
at a closed port), so the shared stack stays up for the other tests.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tradesim.settings import Settings

from .conftest import OrderLog, User, free_port, order

pytestmark = pytest.mark.integration


def _assert_503(answer: httpx.Response) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.json()["code"] == "unavailable"
    assert int(answer.headers["retry-after"]) >= 1


def test_kafka_down_is_503_and_no_half_done_order(api_with: Callable[..., httpx.Client], http: httpx.Client,
                                                  user: User, symbol: str, order_log: OrderLog,
                                                  settings: Settings) -> None:
    broken = api_with(kafka={"bootstrap_servers": f"127.0.0.1:{free_port()}"}, api={"kafka_timeout_s": 1.5})
    headers = {**user.auth, "Idempotency-Key": "kafka-down-1"}
    _assert_503(broken.post("/orders", json=order(symbol), headers=headers))
    ready = broken.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["kafka"] != "ok"
    assert ready.json()["checks"]["redis"] == "ok"
    # no event, no Orders item, and the key was released: a retry on the healthy API places it exactly once
    assert order_log.since(user.user_id) == []
    retry = http.post("/orders", json=order(symbol), headers=headers)
    assert retry.status_code == 202
    events = order_log.since(user.user_id)
    assert [e.order_id for e in events] == [retry.json()["order_id"]]
    shown = http.get(f"/orders/{retry.json()['order_id']}", headers=user.auth)
    assert (shown.status_code, shown.json()["order_id"]) == (200, retry.json()["order_id"])


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
