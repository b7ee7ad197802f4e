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
from tradesim.adapters.dynamodb.orders import OrderStore, open_key
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


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_a_body_holding_nan_or_infinity_is_400_and_places_nothing(http: httpx.Client, user: User, symbol: str,
                                                                  constant: str) -> None:
    """Python's json reads these; JSON has no such numbers (before: 422, as if it were a bad quantity)."""
    key = secrets.token_hex(8)
    body = b'{"symbol": "%s", "side": "buy", "qty": %s}' % (symbol.encode(), constant.encode())
    answer = http.post("/orders", content=body, headers={**user.auth, "Idempotency-Key": key,
                                                         "Content-Type": "application/json"})
    assert (answer.status_code, answer.json()["code"]) == (400, "malformed_json"), answer.text
    assert answer.json()["message"] == f"the body holds {constant}, which JSON has no spelling for; send a number"
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
        api_with: Callable[..., httpx.Client], user: User, settings: Settings) -> None:
    """GET /orders?status=accepted looks at the newest `orders_scan_max` orders and at every order a book holds:
    an old resting order stays on the user's open list (the TUI's open orders, a strategy's cancels). The orders
    are written as the API claims them and the job's mirror marks and decides them, but never published, so no
    book holds them in fact."""
    narrow = api_with(api={"orders_scan_max": 3})
    db = DynamoDB(settings.dynamodb)
    store = OrderStore(db)
    now = int(time.time() * 1000)
    resting, later = _limit(user.user_id, now), [_limit(user.user_id, now + 1 + i) for i in range(4)]
    store.claim(resting)
    assert store.mark_in_book(resting)  # the book holds it: the mirror notes it
    for o in later:
        store.claim(o)
    store.record_outcomes([(o, _cancelled(o)) for o in later])

    def open_ids(**params: object) -> list[str]:
        listed = narrow.get("/orders", params={"status": "accepted", **params}, headers=user.auth)
        assert listed.status_code == 200, listed.text
        return [o["order_id"] for o in listed.json()["orders"]]

    # the newest 3 (all cancelled) are all the filter looks at; the book's order is found all the same
    assert open_ids(limit=2) == [resting.order_id]
    assert open_ids(limit=2, symbol="OTHR") == []
    # decided (as the mirror records outcomes): no longer open, and its pointer goes with the outcome's write
    store.record_outcomes([(resting, _cancelled(resting))])
    assert _pointers(store, user.user_id) == []
    assert open_ids(limit=2) == []
    db.close()


def _limit(user_id: str, placed_at_ms: int) -> OrderPlaced:
    return OrderPlaced(order_id="o_" + secrets.token_hex(8), user_id=user_id, symbol="LIMS", side="buy", qty=1,
                       order_type="limit", limit_price=Decimal("5"), time_in_force="gtc", placed_at_ms=placed_at_ms)


def _cancelled(order: OrderPlaced) -> OrderOutcome:
    return OrderOutcome(order_id=order.order_id, user_id=order.user_id, symbol=order.symbol, side=order.side,
                        qty=order.qty, status="cancelled", decided_at_ms=int(time.time() * 1000))


def _pointers(store: OrderStore, user_id: str) -> list[str]:
    """The order ids `OpenOrders` points at for the user, oldest first."""
    items = store.db.client.query(TableName=store.open_table, KeyConditionExpression="user_id = :u",
                                  ExpressionAttributeValues={":u": {"S": user_id}}, ConsistentRead=True)["Items"]
    return [i["placed_order"]["S"].partition("#")[2] for i in items]


def test_pointers_left_behind_hide_nothing_and_are_dropped_when_decided(settings: Settings) -> None:
    """A crash between the outcome's write and the pointer's delete (here: an outcome written alone) leaves a
    pointer; `Orders` says the order is decided, so the listing skips it and drops it. A pointer whose order has
    no item yet stays (the job notes the pointer before the order's mark creates the item)."""
    db = DynamoDB(settings.dynamodb)
    store = OrderStore(db)
    user = "ptr" + secrets.token_hex(5)
    now = int(time.time() * 1000)
    decided, held, unmarked = (_limit(user, now + i) for i in range(3))
    for o in (decided, held):
        store.claim(o)
        assert store.mark_in_book(o)
    store.record_outcome(decided, _cancelled(decided))
    db.client.put_item(TableName=store.open_table, Item=open_key(unmarked))
    assert [i["order_id"] for i in store.open_by_user(user, limit=10, max_read=10)] == [held.order_id]
    assert _pointers(store, user) == [held.order_id, unmarked.order_id]
    # a book's late note of an order already decided does not open it again
    assert not store.mark_in_book(decided)
    assert _pointers(store, user) == [held.order_id, unmarked.order_id]
    # newest first, and no more than asked for (or read)
    assert store.mark_in_book(unmarked)
    assert [i["order_id"] for i in store.open_by_user(user, limit=10, max_read=10)] == [unmarked.order_id,
                                                                                        held.order_id]
    assert [i["order_id"] for i in store.open_by_user(user, limit=1, max_read=10)] == [unmarked.order_id]
    assert store.open_by_user(user, limit=10, max_read=1) == store.open_by_user(user, limit=1, max_read=10)
    db.close()


def test_a_stack_from_before_open_orders_gets_pointers_for_its_resting_orders(settings: Settings) -> None:
    """`note_open_orders` (run by `tradesim up` when it creates `OpenOrders`, and by a restore of a backup made
    before it) points at every order `Orders` shows in a book, and at no other."""
    db = DynamoDB(settings.dynamodb)
    store = OrderStore(db)
    user = "old" + secrets.token_hex(5)
    now = int(time.time() * 1000)
    held, waiting = _limit(user, now), _limit(user, now + 1)
    for o in (held, waiting):
        store.claim(o)
    assert store.mark_in_book(held)
    db.client.delete_item(TableName=store.open_table, Key=open_key(held))  # as before the table existed
    assert store.open_by_user(user, limit=10, max_read=10) == []
    assert store.note_open_orders() >= 1
    assert _pointers(store, user) == [held.order_id]
    db.close()


def test_without_open_orders_the_order_is_still_marked_and_decided(settings: Settings) -> None:
    """The pointers are an aid to listing: a store that refuses them (here: no such table, a job newer than the
    stack it runs on) still gets the `in_book` mark and the outcome, which readers and retries depend on."""
    db = DynamoDB(settings.dynamodb)
    store = OrderStore(db)
    store.open_table = "NoSuchTable" + secrets.token_hex(3)
    o = _limit("nop" + secrets.token_hex(5), int(time.time() * 1000))
    store.claim(o)
    assert store.mark_in_book(o)
    assert (store.get(o.order_id) or {}).get("in_book") is True
    store.record_outcomes([(o, _cancelled(o))])
    assert (store.get(o.order_id) or {}).get("status") == "cancelled"
    db.close()
