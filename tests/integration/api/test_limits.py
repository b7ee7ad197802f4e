"""HTTP limits on the real API: bodies over api.max_body_bytes are 413 before they are read, the key is checked
before the body is read, unknown keys are remembered and limited per client address (a flood of bogus keys does
not cost a DynamoDB query each), and GET /orders reads a bounded number of orders."""

from __future__ import annotations

import re
import secrets
import socket
import time
from collections.abc import Iterator
from decimal import Decimal
from urllib.parse import urlsplit

import httpx
import pytest

from tradesim.adapters.dynamodb.client import DynamoDB
from tradesim.adapters.dynamodb.orders import OrderStore
from tradesim.domain.events import OrderOutcome, OrderPlaced
from tradesim.settings import Settings
from tradesim.testing.waiting import wait_for

from .conftest import User, order

pytestmark = pytest.mark.integration


def _lookups(http: httpx.Client) -> float:
    text = http.get("/metrics").text
    found = re.search(r'^tradesim_api_store_seconds_count\{op="account_by_key",store="dynamodb"\} (\S+)$', text,
                      re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_a_body_over_the_limit_is_413_whether_announced_or_streamed(http: httpx.Client, user: User,
                                                                   settings: Settings, symbol: str) -> None:
    big = b'{"symbol": "' + b"A" * settings.api.max_body_bytes + b'"}'
    announced = http.post("/orders", content=big, headers={**user.auth, "Content-Type": "application/json"})
    assert announced.status_code == 413
    assert announced.json()["code"] == "payload_too_large"
    assert announced.json()["request_id"] == announced.headers["x-request-id"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for i in range(0, len(big), 8192):
            yield big[i:i + 8192]

    streamed = http.post("/orders", content=chunks(), headers={**user.auth, "Content-Type": "application/json"})
    assert (streamed.status_code, streamed.json()["code"]) == (413, "payload_too_large")
    fine = http.post("/orders", json=order(symbol), headers={**user.auth, "Idempotency-Key": secrets.token_hex(8)})
    assert fine.status_code == 202, fine.text  # a body under the limit still goes through


def test_the_key_is_checked_before_the_body_is_read(settings: Settings) -> None:
    """Headers promise a body that never comes: an unknown key is still answered at once (401)."""
    where = urlsplit(settings.api.client_url)
    with socket.create_connection((where.hostname, where.port), timeout=10) as conn:
        conn.sendall(b"POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer ts_" + secrets.token_hex(16).encode() + b"\r\n"
                     b"Content-Length: 1000\r\n\r\n")
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):  # the head, then its JSON body
            chunk = conn.recv(4096)
            assert chunk, f"closed after {answer!r}"
            answer += chunk
    text = answer.decode("latin-1")
    assert text.startswith("HTTP/1.1 401"), text
    assert '"code":"unauthorized"' in text.replace(" ", "")


def test_bogus_keys_are_remembered_and_limited_per_address(http: httpx.Client, settings: Settings,
                                                           user: User) -> None:
    bogus = {"Authorization": "Bearer ts_" + secrets.token_hex(16)}
    before = _lookups(http)
    answers = [http.get("/accounts/me", headers=bogus).status_code for _ in range(50)]
    assert set(answers) == {401}
    assert _lookups(http) - before <= settings.api.workers  # one query per worker, then remembered

    limit = settings.api.unknown_keys_per_s
    before = _lookups(http)
    started = time.monotonic()
    flood = [http.get("/accounts/me", headers={"Authorization": f"Bearer ts_{secrets.token_hex(16)}"})
             for _ in range(limit * settings.api.workers * 3)]
    seconds = int(time.monotonic() - started) + 2  # the one-second windows the flood touched, at most
    refused = [a for a in flood if a.status_code == 429]
    assert refused, "a flood of distinct bogus keys is refused"
    assert all(a.json()["code"] == "rate_limited" and a.headers["retry-after"] == "1" for a in refused)
    assert {a.status_code for a in flood} <= {401, 429}
    # at most `limit` queries per worker in each second the flood lasted
    assert _lookups(http) - before <= limit * settings.api.workers * seconds
    # the limit is per second: a known key soon answers again, and so does the limiter for new keys
    wait_for(lambda: http.get("/accounts/me", headers=user.auth).status_code == 200, 5, "a known key answers")
    wait_for(lambda: http.get("/accounts/me", headers={"Authorization": f"Bearer ts_{secrets.token_hex(16)}"})
             .status_code == 401, 5, "the limit to pass with the second")


def test_listing_orders_with_a_filter_reads_a_bounded_number(settings: Settings) -> None:
    """The adapter under GET /orders on real DynamoDB: with a filter it examines at most `scan_max` orders."""
    store = OrderStore(DynamoDB(settings.dynamodb))
    user = "lim" + secrets.token_hex(5)
    base = int(time.time() * 1000)
    placed = [OrderPlaced(order_id=f"{user}-{i}", user_id=user, symbol="LIMS", side="buy", qty=1,
                          order_type="market", placed_at_ms=base + i) for i in range(30)]
    for p in placed:
        store.claim(p)  # as the API records an accepted order
    oldest = placed[0]
    store.record_outcome(oldest, OrderOutcome(order_id=oldest.order_id, user_id=user, symbol="LIMS", side="buy",
                                              qty=1, status="executed", fill_price=Decimal("10"), fee=Decimal("1"),
                                              trade_id="t-" + oldest.order_id, decided_at_ms=base + 100))
    assert store.by_user(user, status="executed", limit=5, scan_max=10) == []  # beyond the newest 10
    (found,) = store.by_user(user, status="executed", limit=5, scan_max=100)
    assert found["order_id"] == oldest.order_id
    assert len(store.by_user(user, limit=7)) == 7
