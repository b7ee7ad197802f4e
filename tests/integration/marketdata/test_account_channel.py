"""The account channel of the market-data WebSocket on the real stack: API key → DynamoDB, outcomes from
`trade_executed` (written here with the Kafka adapter: that topic is the channel's input) → that user's sockets.

The end-to-end test at the bottom places a real order through the API, so the real execution job decides it.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

import httpx
import pytest
from confluent_kafka.admin import NewPartitions
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection

from tradesim.adapters.dynamodb.accounts import Account, AccountStore, hash_key
from tradesim.adapters.dynamodb.client import DynamoDB
from tradesim.adapters.kafka.client import TopicSpec, admin, ensure_topics, producer
from tradesim.adapters.redis.prices import PriceCache
from tradesim.domain.events import OrderOutcome, encode
from tradesim.services.admin_key import load_admin_key
from tradesim.services.ingest.publisher import publish_all
from tradesim.services.marketdata import outcomes as outcomes_module
from tradesim.services.marketdata.keys import KeyChecker
from tradesim.services.marketdata.outcomes import OutcomeFeed
from tradesim.services.marketdata.ws import ACCOUNT_QUEUE, MarketDataHub, run_server
from tradesim.settings import Settings
from tradesim.stack.jobs import submit_job
from tradesim.testing.factories import tick, ticks, unique_symbol
from tradesim.testing.net import free_port

from .conftest import cached_seq, metric, recv_json, recv_until, wait_for, ws_client

pytestmark = pytest.mark.integration

Frame = dict  # type: ignore[type-arg]


@pytest.fixture(scope="module")
def accounts(settings: Settings) -> Iterator[AccountStore]:
    db = DynamoDB(settings.dynamodb)
    yield AccountStore(db)
    db.close()


def new_user(accounts: AccountStore) -> tuple[str, str]:
    """A user and its API key, stored as the API stores them (the key's hash)."""
    user = "w" + secrets.token_hex(6)
    key = "ts_" + secrets.token_urlsafe(32)
    accounts.create(Account(user_id=user, api_key_hash=hash_key(key), starting_cash=Decimal(100_000),
                            created_at_ms=int(time.time() * 1000)))
    return user, key


def outcome(user: str, status: str = "executed", *, symbol: str = "ACME", cash: str = "98989.90",
            position: int = 10, decided_at_ms: int | None = None) -> OrderOutcome:
    now = decided_at_ms or int(time.time() * 1000)
    order_id = "o" + uuid.uuid4().hex
    filled = status == "executed"
    return OrderOutcome(
        order_id=order_id, user_id=user, symbol=symbol, side="buy", qty=10, status=status,  # type: ignore[arg-type]
        reason="insufficient_funds" if status == "rejected" else None,
        fill_price=Decimal("101.00") if filled else None, fee=Decimal("0.10") if filled else None,
        cash_after=Decimal(cash) if filled else None, position_after=position if filled else None,
        trade_id=order_id + "-1" if filled else None, decided_at_ms=now, order_type="market", placed_at_ms=now - 5)


def write(settings: Settings, *records: OrderOutcome | tuple[bytes, bytes]) -> None:
    """Onto trade_executed, keyed by user as the execution job keys them; (key, raw bytes) for a poison record."""
    p = producer(settings.kafka)
    for r in records:
        key, value = r if isinstance(r, tuple) else (r.key, encode(r))
        p.produce(settings.topics.trade_executed, key=key, value=value)
    assert p.flush(30) == 0


def follow(ws: ClientConnection, key: str) -> Frame:
    ws.send(json.dumps({"op": "account", "api_key": key}))
    return recv_json(ws)


def expected_frames(o: OrderOutcome) -> list[Frame]:
    frames: list[Frame] = [{"type": "outcome", "data": json.loads(encode(o))}]
    if o.status == "executed":
        frames.append({"type": "portfolio", "data": {
            "user_id": o.user_id, "symbol": o.symbol, "cash": str(o.cash_after), "position": o.position_after,
            "order_id": o.order_id, "as_of_ms": o.decided_at_ms}})
    return frames


def account_frames_until(ws: ClientConnection, order_id: str, timeout_s: float = 30) -> list[Frame]:
    """Frames (heartbeats left out) up to and including the outcome of `order_id` and what follows it in the
    same push (its portfolio frame, if any)."""
    frames = [f for f in recv_until(ws, lambda f: f.get("type") == "outcome" and f["data"]["order_id"] == order_id,
                                    timeout_s) if f["type"] != "heartbeat"]
    if frames[-1]["data"]["status"] == "executed":
        frames += [f for f in recv_until(ws, lambda f: f.get("type") == "portfolio", timeout_s)
                   if f["type"] != "heartbeat"]
    return frames


def read_to_close(ws: ClientConnection, timeout_s: float = 30) -> tuple[list[Frame], int | None]:
    """Every frame but heartbeats until the server closes, and the close code it sent."""
    frames: list[Frame] = []
    try:
        while True:
            frame = recv_json(ws, timeout_s)
            if frame["type"] != "heartbeat":
                frames.append(frame)
    except ConnectionClosed as closed:
        return frames, closed.rcvd.code if closed.rcvd is not None else None


def expect_close(ws: ClientConnection, code: int) -> None:
    frames, got = read_to_close(ws, 10)
    assert frames == []
    assert got == code


def test_own_outcome_and_portfolio_frames_arrive_on_every_socket_of_the_user(settings: Settings,
                                                                            accounts: AccountStore) -> None:
    user, key = new_user(accounts)
    pushed = metric(settings, "tradesim_marketdata_outcomes_pushed_total")
    with ws_client(settings) as one, ws_client(settings) as two:
        for ws in (one, two):
            assert follow(ws, key) == {"type": "account", "user_id": user}
        assert metric(settings, "tradesim_marketdata_account_clients") >= 2
        filled, cancelled = outcome(user), outcome(user, "cancelled")
        write(settings, filled, cancelled)
        for ws in (one, two):
            assert account_frames_until(ws, cancelled.order_id) == [*expected_frames(filled),
                                                                   *expected_frames(cancelled)]
    assert metric(settings, "tradesim_marketdata_outcomes_pushed_total") >= pushed + 4


def test_another_users_socket_never_receives_them(settings: Settings, accounts: AccountStore) -> None:
    alice, alice_key = new_user(accounts)
    bob, bob_key = new_user(accounts)
    with ws_client(settings) as a, ws_client(settings) as b:
        assert follow(a, alice_key)["user_id"] == alice
        assert follow(b, bob_key)["user_id"] == bob
        alices = [outcome(alice, s) for s in ("executed", "rejected", "expired", "executed")]
        write(settings, *alices)
        got = account_frames_until(a, alices[-1].order_id)
        assert got == [f for o in alices for f in expected_frames(o)]
        # Anything of Alice's wrongly routed to Bob was queued to him when Alice got it, so it would be ahead of
        # an outcome of his written only now: reading up to that one closes the window.
        marker = outcome(bob, "cancelled")
        write(settings, marker)
        seen = account_frames_until(b, marker.order_id)
    assert seen == expected_frames(marker)


def test_a_bad_key_gets_unauthorized_and_the_socket_closes_with_1008(settings: Settings) -> None:
    failures = metric(settings, "tradesim_marketdata_account_auth_failures_total")
    with ws_client(settings) as ws:
        err = follow(ws, "ts_" + secrets.token_urlsafe(32))
        assert (err["type"], err["code"]) == ("error", "unauthorized")
        expect_close(ws, 1008)
    assert metric(settings, "tradesim_marketdata_account_auth_failures_total") >= failures + 1


def test_the_admin_key_is_refused(settings: Settings) -> None:
    admin = load_admin_key(settings, create=False)
    assert admin, "the API did not write its admin key"
    with ws_client(settings) as ws:
        err = follow(ws, admin)
        assert (err["type"], err["code"]) == ("error", "unauthorized")
        assert "admin key" in err["message"]  # the generated key is known as the admin's, not "unknown"
        expect_close(ws, 1008)


def test_a_malformed_account_op_is_a_bad_request_and_the_connection_stays(settings: Settings,
                                                                         accounts: AccountStore) -> None:
    user, key = new_user(accounts)
    with ws_client(settings) as ws:
        for bad in ({"op": "account"}, {"op": "account", "api_key": 7}, {"op": "account", "api_key": ""},
                    {"op": "account", "api_key": "x" * 1000}, {"op": "account", "api_key": "\udfff"}):
            ws.send(json.dumps(bad))
            assert recv_json(ws)["code"] == "bad_request"
        assert follow(ws, key) == {"type": "account", "user_id": user}
        _, other_key = new_user(accounts)
        err = follow(ws, other_key)  # one account per connection
        assert err["code"] == "bad_request"
        o = outcome(user, "cancelled")
        write(settings, o)
        assert account_frames_until(ws, o.order_id) == expected_frames(o)  # still following the first


def test_a_poison_record_is_skipped_and_later_outcomes_still_arrive(settings: Settings,
                                                                    accounts: AccountStore) -> None:
    user, key = new_user(accounts)
    skipped = metric(settings, "tradesim_marketdata_outcome_records_skipped_total")
    with ws_client(settings) as ws:
        assert follow(ws, key)["user_id"] == user
        broken = json.loads(encode(outcome(user)))
        del broken["fill_price"]  # executed without a price: fails validation, not parsing
        # keyed by the user: the same partition as the good outcome after them, so they are read first
        write(settings, (user.encode(), b"\xff not json"), (user.encode(), json.dumps(broken).encode()),
              (user.encode(), b""))
        good = outcome(user)
        write(settings, good)
        assert account_frames_until(ws, good.order_id) == expected_frames(good)
    assert metric(settings, "tradesim_marketdata_outcome_records_skipped_total") >= skipped + 3


def test_price_subscriptions_still_work_on_the_same_connection(settings: Settings, cache: PriceCache,
                                                               accounts: AccountStore) -> None:
    user, key = new_user(accounts)
    symbol = unique_symbol()
    publish_all(settings, [tick(symbol, 1)])
    wait_for(lambda: cached_seq(cache, symbol) == 1, what="first tick cached")
    with ws_client(settings) as ws:
        assert follow(ws, key)["user_id"] == user
        ws.send(json.dumps({"op": "subscribe", "symbols": [symbol]}))
        assert recv_json(ws) == {"type": "subscribed", "symbols": [symbol]}
        assert recv_json(ws)["data"]["seq"] == 1
        publish_all(settings, ticks(symbol, 2, 20))
        o = outcome(user)
        write(settings, o)
        frames = recv_until(ws, lambda f: f.get("type") == "tick" and f["data"]["seq"] == 20, 30)
        if not any(f["type"] == "portfolio" for f in frames):
            frames += recv_until(ws, lambda f: f.get("type") == "portfolio", 30)
    assert [f["data"]["seq"] for f in frames if f["type"] == "tick"] == list(range(2, 21))
    assert [f for f in frames if f["type"] in ("outcome", "portfolio")] == expected_frames(o)


@contextmanager
def private_hub(settings: Settings, partitions: int = 1, **sections: dict[str, object]) -> Iterator[Settings]:
    """The service's account side (outcome feed, hub, WebSocket server) in this process, on a free port and a
    topic of its own: for tests that flood the topic, change its partitions or point at a dead store, which must
    not touch the shared service and topic. Yields its settings."""
    topic = "test-outcomes-" + secrets.token_hex(4)
    update: dict[str, object] = {name: getattr(settings, name).model_copy(update=values)
                                 for name, values in sections.items()}
    update["marketdata"] = settings.marketdata.model_copy(update={"ws_port": free_port(), "ws_url": None})
    update["topics"] = settings.topics.model_copy(update={"trade_executed": topic})
    custom = settings.model_copy(update=update)
    ensure_topics(settings.kafka, [TopicSpec(topic, partitions, {})])
    loop = asyncio.new_event_loop()
    stop, stop_feed, ready = asyncio.Event(), threading.Event(), threading.Event()
    keys = KeyChecker(custom)
    hub = MarketDataHub(custom, keys)

    def positioned() -> None:
        ready.set()
        loop.call_soon_threadsafe(hub.feed_ready.set)

    feed = OutcomeFeed(custom, stop_feed, lambda batch: loop.call_soon_threadsafe(hub.push_outcomes, batch), positioned)
    feeder = threading.Thread(target=feed.run, name="test-outcome-feed", daemon=True)
    server = threading.Thread(target=lambda: loop.run_until_complete(run_server(hub, stop)), daemon=True)
    feeder.start()
    server.start()
    try:
        wait_for(lambda: ready.is_set() and _accepts(custom), 15, "the in-process hub to listen")
        yield custom
    finally:
        stop_feed.set()
        feeder.join(15)
        loop.call_soon_threadsafe(stop.set)
        server.join(15)
        keys.close()
        loop.close()
        kafka_admin = admin(settings.kafka)  # held: the futures fail if the client is collected first
        kafka_admin.delete_topics([topic])[topic].result(timeout=10)


def _accepts(settings: Settings) -> bool:
    try:
        with ws_client(settings):
            return True
    except OSError:
        return False


def test_a_client_that_falls_behind_is_closed_after_a_gapless_prefix_and_others_get_everything(
        settings: Settings, accounts: AccountStore) -> None:
    user, key = new_user(accounts)
    # executed outcomes make two frames each: enough to overflow the slow client's queue plus what the socket
    # buffers hold; the fast client must get all of them
    outcomes = [outcome(user, cash=str(Decimal(100_000) - i), position=i + 1)
                for i in range(ACCOUNT_QUEUE // 2 + 1500)]
    expected = [f for o in outcomes for f in expected_frames(o)]
    with private_hub(settings) as hub, ws_client(hub, rcvbuf=4096) as slow, ws_client(hub) as fast:
        for ws in (slow, fast):
            assert follow(ws, key)["user_id"] == user
        fast_frames: list[Frame] = []

        def read_fast() -> None:
            fast_frames.extend(f for f in recv_until(
                fast, lambda f: f.get("type") == "portfolio" and f["data"]["order_id"] == outcomes[-1].order_id, 90)
                if f["type"] != "heartbeat")

        reader = threading.Thread(target=read_fast)
        reader.start()
        # Paced (about 2,000 outcomes/s) so a reader thread on a busy box always keeps up: falling ACCOUNT_QUEUE
        # frames behind is what makes a client slow; the slow one reads nothing and must overflow.
        feed = producer(settings.kafka)
        start = time.monotonic()
        for i in range(0, len(outcomes), 200):
            for o in outcomes[i:i + 200]:
                feed.produce(hub.topics.trade_executed, key=o.key, value=encode(o))
            feed.flush(10)
            pause = start + (i + 200) / 2000 - time.monotonic()
            if pause > 0:
                time.sleep(pause)  # the pace of the feed, not a wait for a condition
        assert feed.flush(30) == 0
        reader.join(timeout=120)
        assert fast_frames == expected, "a client that keeps up gets every outcome, in order"
        slow_frames, code = read_to_close(slow)
    assert code == 1011
    *prefix, last = slow_frames  # (its ack was read by follow())
    assert (last["type"], last["code"]) == ("error", "unavailable")
    assert prefix == expected[:len(prefix)], "what the slow client got has no gap"
    assert len(prefix) < len(expected)


def test_a_partition_added_to_the_topic_is_followed(settings: Settings, accounts: AccountStore,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outcomes_module, "REFRESH_S", 0.2)  # the feed's metadata refresh, not a test wait
    user, key = new_user(accounts)
    with private_hub(settings, partitions=1) as hub, ws_client(hub) as ws:
        assert follow(ws, key)["user_id"] == user
        topic = hub.topics.trade_executed
        kafka_admin = admin(settings.kafka)  # held: the future fails if the client is collected first
        kafka_admin.create_partitions([NewPartitions(topic, 2)])[topic].result(timeout=10)
        o = outcome(user, "expired")
        p = producer(settings.kafka)
        wait_for(lambda: 1 in p.list_topics(topic, timeout=5).topics[topic].partitions, 10, "the new partition")
        p.produce(topic, key=o.key, value=encode(o), partition=1)
        assert p.flush(10) == 0
        assert account_frames_until(ws, o.order_id) == expected_frames(o)


def test_unavailable_when_dynamodb_cannot_be_reached(settings: Settings) -> None:
    with private_hub(settings, dynamodb={"port": free_port()}) as hub, ws_client(hub) as ws:
        err = follow(ws, "ts_" + secrets.token_urlsafe(32))
        assert (err["type"], err["code"]) == ("error", "unavailable")
        expect_close(ws, 1011)


def test_a_real_order_reaches_its_users_socket(settings: Settings, cache: PriceCache) -> None:
    """API → trade_orders → execution job → trade_executed → this socket; the portfolio frame is the stored one."""
    submit_job(settings, "execution")  # a no-op when it runs (the stack's jobs); other packages may cancel it
    admin = load_admin_key(settings, create=False)
    symbol = unique_symbol("W")
    publish_all(settings, [tick(symbol, 1)])
    wait_for(lambda: cached_seq(cache, symbol) == 1, what="price cached")
    with httpx.Client(base_url=settings.api.client_url, timeout=30) as http:
        created = http.post("/accounts", json={"name": "w" + secrets.token_hex(6), "cash": "10000"},
                            headers={"Authorization": f"Bearer {admin}"})
        assert created.status_code == 201, created.text
        user, key = created.json()["user_id"], created.json()["api_key"]
        auth = {"Authorization": f"Bearer {key}"}
        with ws_client(settings) as ws:
            assert follow(ws, key) == {"type": "account", "user_id": user}
            placed = http.post("/orders", json={"symbol": symbol, "side": "buy", "qty": 3},
                               headers={**auth, "Idempotency-Key": uuid.uuid4().hex})
            assert placed.status_code == 202, placed.text
            order_id = placed.json()["order_id"]
            frames = account_frames_until(ws, order_id, timeout_s=120)
        me = http.get("/accounts/me", headers=auth).json()
    (result,) = [f["data"] for f in frames if f["type"] == "outcome"]
    (portfolio,) = [f["data"] for f in frames if f["type"] == "portfolio"]
    assert (result["order_id"], result["status"], result["qty"]) == (order_id, "executed", 3)
    assert (portfolio["user_id"], portfolio["symbol"], portfolio["order_id"]) == (user, symbol, order_id)
    assert portfolio["position"] == 3 == me["positions"][symbol]
    assert Decimal(portfolio["cash"]) == Decimal(me["cash"]) < 10_000
    assert portfolio["as_of_ms"] == result["decided_at_ms"]


def test_a_connection_whose_key_was_rotated_is_closed(settings: Settings, accounts: AccountStore) -> None:
    """A probe: a connection opened with a key kept getting that user's fills and cash after the key was rotated,
    for as long as it stayed open (new connections with the old key were refused)."""
    user, key = new_user(accounts)
    with private_hub(settings, api={"auth_cache_s": 0.0}) as hub, ws_client(hub) as ws:
        assert follow(ws, key) == {"type": "account", "user_id": user}
        assert accounts.set_key_hash(user, hash_key("ts_" + secrets.token_urlsafe(32)))  # rotated
        frames, code = read_to_close(ws, 30)  # checked again within KEY_RECHECK_MIN_S
        assert code == 1008
        assert [(f["type"], f["code"]) for f in frames] == [("error", "unauthorized")]
