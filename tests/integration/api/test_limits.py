"""HTTP limits on the real API: bodies over api.max_body_bytes are 413 before they are read, the key is checked
before the body is read, unknown keys are remembered and limited per client address (a flood of bogus keys does
not cost a DynamoDB query each), and GET /orders reads a bounded number of orders."""

from __future__ import annotations

import json
import re
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from urllib.parse import urlsplit

import httpx
import pytest

from tradesim.adapters.dynamodb.client import DynamoDB
from tradesim.adapters.dynamodb.orders import OrderStore, placed_order
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


def _exchange(settings: Settings, request: bytes) -> tuple[str, float]:
    """Send raw bytes to the API; its whole answer (head and JSON body) and how long it took to come."""
    where = urlsplit(settings.api.client_url)
    began = time.monotonic()
    with socket.create_connection((where.hostname, where.port), timeout=settings.api.body_timeout_s + 30) as conn:
        conn.sendall(request)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
            chunk = conn.recv(4096)
            assert chunk, f"closed after {answer!r}"
            answer += chunk
    return answer.decode("latin-1"), time.monotonic() - began


def test_the_key_is_checked_before_the_body_is_read(settings: Settings) -> None:
    """Headers promise a body that never comes: an unknown key is still answered at once (401)."""
    text, took = _exchange(settings, b"POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           b"Authorization: Bearer ts_" + secrets.token_hex(16).encode() + b"\r\n"
                           b"Content-Length: 1000\r\n\r\n")
    assert text.startswith("HTTP/1.1 401"), text
    assert '"code":"unauthorized"' in text.replace(" ", "")
    assert took < settings.api.body_timeout_s  # not the body's timeout


def test_a_body_that_stops_short_of_its_length_is_408_after_the_body_timeout(settings: Settings,
                                                                            user: User) -> None:
    auth = user.auth["Authorization"].encode()
    text, took = _exchange(settings, b"POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           b"Authorization: " + auth + b"\r\nContent-Length: 100\r\n\r\n" + b'{"symbol": ')
    assert text.startswith("HTTP/1.1 408"), text
    assert '"code":"request_timeout"' in text.replace(" ", "")
    assert settings.api.body_timeout_s <= took < settings.api.body_timeout_s + 10


def test_a_request_the_parser_refuses_is_a_json_400(settings: Settings, user: User) -> None:
    """A probe: a URL of 64 KiB and more got uvicorn's plain-text 400 ("Invalid HTTP request received.")."""
    auth = user.auth["Authorization"].encode()
    text, _ = _exchange(settings, b"GET /orders?symbol=" + b"A" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n"
                        b"Authorization: " + auth + b"\r\n\r\n")
    head, _, body = text.partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 400"), text[:500]
    assert "content-type: application/json" in head.lower()
    assert json.loads(body)["code"] == "bad_request"


@pytest.mark.parametrize("header", ["Idempotency-Key", "Authorization"])
def test_a_header_that_may_come_once_is_400_when_repeated(settings: Settings, user: User, symbol: str,
                                                          header: str) -> None:
    body = json.dumps(order(symbol)).encode()
    heads = {"Authorization": [user.auth["Authorization"]], "Idempotency-Key": [secrets.token_hex(8)]}
    heads[header].append(heads[header][0] + "x")  # two values: which one counts would be a guess
    lines = b"".join(f"{name}: {value}\r\n".encode() for name, values in heads.items() for value in values)
    text, _ = _exchange(settings, b"POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        + lines + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    assert text.startswith("HTTP/1.1 400"), text
    assert f"the {header} header comes more than once" in text


def test_a_body_that_names_a_field_twice_is_400_and_places_nothing(http: httpx.Client, user: User,
                                                                   symbol: str) -> None:
    key = secrets.token_hex(8)
    body = b'{"symbol": "%s", "side": "buy", "qty": 1, "qty": 100}' % symbol.encode()
    answer = http.post("/orders", content=body, headers={**user.auth, "Idempotency-Key": key,
                                                         "Content-Type": "application/json"})
    assert (answer.status_code, answer.json()["code"]) == (400, "malformed_json"), answer.text
    assert answer.json()["message"] == 'the body names "qty" twice in one object; send each field once'
    fine = http.post("/orders", json=order(symbol), headers={**user.auth, "Idempotency-Key": key})
    assert fine.status_code == 202, fine.text  # the key was not taken by the refused body


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


def test_a_resting_order_is_listed_open_however_many_orders_came_after_it(
        api_with: Callable[..., httpx.Client], user: User, symbol: str, settings: Settings) -> None:
    """GET /orders?status=accepted looks at the newest `orders_scan_max` orders and at every order a book holds:
    an old resting order stays on the user's open list (the TUI's open orders, a strategy's cancels)."""
    narrow = api_with(api={"orders_scan_max": 3})
    resting = narrow.post("/orders", json=order(symbol, type="limit", limit_price="50", time_in_force="gtc"),
                          headers=user.auth).json()["order_id"]
    db = DynamoDB(settings.dynamodb)
    store = OrderStore(db)
    stored = store.get(resting)
    assert stored is not None
    held = placed_order(stored)
    assert store.mark_in_book(held)  # as the execution job's mirror notes an order the book holds
    later = [narrow.post("/orders", json=order(symbol, type="limit", limit_price="40"), headers=user.auth)
             for _ in range(4)]
    assert all(p.status_code == 202 for p in later), [p.text for p in later]
    store.record_outcomes([(placed_order(item), _cancelled(item)) for item in
                           (store.get(p.json()["order_id"]) for p in later) if item is not None])

    listed = narrow.get("/orders", params={"status": "accepted", "limit": 2}, headers=user.auth)
    assert listed.status_code == 200, listed.text
    # the newest 3 (all cancelled) are what the filter looks at; the book's order is found all the same
    assert [o["order_id"] for o in listed.json()["orders"]] == [resting]
    assert resting not in [o["order_id"] for o in narrow.get("/orders", params={"status": "accepted", "symbol": "OTHR"},
                                                             headers=user.auth).json()["orders"]]
    # decided (as the mirror records outcomes): no longer open, and its pointer is gone with the outcome's write
    store.record_outcomes([(held, _cancelled(stored))])
    assert store.open_by_user(user.user_id) == []
    assert resting not in [o["order_id"] for o in narrow.get("/orders", params={"status": "accepted"},
                                                             headers=user.auth).json()["orders"]]
    db.close()


def _cancelled(item: dict[str, object]) -> OrderOutcome:
    return OrderOutcome(order_id=str(item["order_id"]), user_id=str(item["user_id"]), symbol=str(item["symbol"]),
                        side="buy", qty=10, status="cancelled", decided_at_ms=int(time.time() * 1000))


def test_a_pointer_left_behind_is_not_an_open_order_and_is_dropped(settings: Settings) -> None:
    """A crash between the outcome's write and the pointer's delete (here: an outcome written alone) leaves a
    pointer; `Orders` says the order is decided, so the listing skips it and drops it."""
    db = DynamoDB(settings.dynamodb)
    store = OrderStore(db)
    user = "ptr" + secrets.token_hex(5)
    orders = [OrderPlaced(order_id=f"{user}-{i}", user_id=user, symbol="PTRS", side="buy", qty=1,
                          order_type="limit", limit_price=Decimal("5"), placed_at_ms=int(time.time() * 1000) + i)
              for i in range(2)]
    for o in orders:
        store.claim(o)
        assert store.mark_in_book(o)
    decided = orders[0]
    store.record_outcome(decided, OrderOutcome(order_id=decided.order_id, user_id=user, symbol="PTRS", side="buy",
                                               qty=1, status="expired", decided_at_ms=int(time.time() * 1000)))
    assert [i["order_id"] for i in store.open_by_user(user)] == [orders[1].order_id]
    left = db.client.query(TableName=store.open_table, KeyConditionExpression="user_id = :u",
                           ExpressionAttributeValues={":u": {"S": user}}, ConsistentRead=True)["Items"]
    assert [i["order_id"]["S"] for i in left] == [orders[1].order_id]
    # a book's late note of an order already decided does not open it again
    assert not store.mark_in_book(decided)
    assert [i["order_id"] for i in store.open_by_user(user)] == [orders[1].order_id]
    db.close()
