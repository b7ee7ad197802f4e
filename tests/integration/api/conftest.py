"""Helpers for the order API tests: HTTP client, accounts, fresh prices, and reading `trade_orders` back."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal

import httpx
import pytest
import uvicorn
from confluent_kafka import TopicPartition

from tradesim.adapters.kafka.client import consumer
from tradesim.adapters.redis.client import connect as redis_connect
from tradesim.adapters.redis.prices import PriceCache
from tradesim.domain.events import OrderCancelRequested, OrderPlaced, decode_trade_order
from tradesim.services.admin_key import load_admin_key
from tradesim.services.api.app import create_app
from tradesim.services.ingest.publisher import publish_all
from tradesim.settings import Settings
from tradesim.testing.factories import tick, unique_symbol
from tradesim.testing.net import free_port
from tradesim.testing.waiting import wait_for  # noqa: F401 - re-exported to the tests

from ..conftest import forget_idempotency_keys as forget_user_keys


@dataclass(frozen=True)
class User:
    user_id: str
    key: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@pytest.fixture(scope="session")
def admin_key(settings: Settings) -> str:
    key = load_admin_key(settings, create=False)
    assert key, "the API did not write its admin key"
    return key


@pytest.fixture(scope="session")
def http(settings: Settings) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=settings.api.client_url, timeout=30) as client:
        yield client


@pytest.fixture
def new_user(http: httpx.Client, admin_key: str) -> Callable[..., User]:
    def make(cash: str = "100000", rate_limit: int | None = 100_000) -> User:
        name = "t" + secrets.token_hex(6)
        body: dict[str, object] = {"name": name, "cash": cash}
        if rate_limit is not None:
            body["rate_limit_per_s"] = rate_limit
        answer = http.post("/accounts", json=body, headers={"Authorization": f"Bearer {admin_key}"})
        assert answer.status_code == 201, answer.text
        return User(name, answer.json()["api_key"])

    return make


@pytest.fixture
def user(new_user: Callable[..., User]) -> User:
    return new_user()


@pytest.fixture
def cache(settings: Settings) -> PriceCache:
    return PriceCache(redis_connect(settings.redis))


@pytest.fixture
def symbol(settings: Settings, cache: PriceCache) -> str:
    """A symbol with a fresh price (last 100.01, ask 100.02), put in Redis by the real market-data service."""
    sym = unique_symbol()
    publish_all(settings, [tick(sym, 1)])
    wait_for(lambda: cache.latest(sym) is not None, what=f"{sym} in the price cache")
    return sym


ASK = Decimal("100.02")


def order(symbol: str, side: str = "buy", qty: int = 10, **extra: object) -> dict[str, object]:
    return {"symbol": symbol, "side": side, "qty": qty, **extra}


class OrderLog:
    """Reads `trade_orders` from the offsets it saw at creation up to the end, i.e. the events since then."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = settings.topics.trade_orders
        self._consumer = consumer(settings.kafka, "tradesim-test-" + secrets.token_hex(4))
        meta = self._consumer.list_topics(self.topic, timeout=10)
        self.start = {}
        for p in meta.topics[self.topic].partitions:
            _, high = self._consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10)
            self.start[p] = high

    def since(self, user_id: str | None = None) -> list[OrderPlaced | OrderCancelRequested]:
        ends = {p: self._consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10)[1]
                for p in self.start}
        self._consumer.assign([TopicPartition(self.topic, p, off) for p, off in self.start.items()])
        pending = {p for p in self.start if ends[p] > self.start[p]}
        events = []
        deadline = time.monotonic() + 30
        while pending and time.monotonic() < deadline:
            msg = self._consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            events.append(decode_trade_order(msg.value()))
            if msg.offset() + 1 >= ends[msg.partition()]:
                pending.discard(msg.partition())
        assert not pending, f"could not read trade_orders up to its end: partitions {pending}"
        return [e for e in events if user_id is None or e.user_id == user_id]

    def close(self) -> None:
        self._consumer.close()


@pytest.fixture
def order_log(settings: Settings) -> Iterator[OrderLog]:
    log = OrderLog(settings)
    yield log
    log.close()


def untraced(event: OrderPlaced | OrderCancelRequested) -> OrderPlaced | OrderCancelRequested:
    """The event without its traceparent: each publish of an order (a retry's replay too) is its own span, so two
    copies of one order differ in that alone."""
    return event.model_copy(update={"traceparent": None}) if isinstance(event, OrderPlaced) else event


def forget_idempotency_keys(settings: Settings, user: User) -> int:
    """The user's idempotency key records gone from Redis (see the shared helper)."""
    return forget_user_keys(settings, user.user_id)


@pytest.fixture
def api_with(settings: Settings) -> Iterator[Callable[..., httpx.Client]]:
    """Start another API process-in-a-thread whose settings differ (e.g. a dead Kafka), on a free port."""
    servers: list[tuple[uvicorn.Server, threading.Thread, httpx.Client]] = []

    def start(**sections: dict[str, object]) -> httpx.Client:
        port = free_port()
        update: dict[str, object] = {name: getattr(settings, name).model_copy(update=values)
                                     for name, values in sections.items()}
        update["api"] = settings.api.model_copy(update={**sections.get("api", {}), "port": port})
        custom = settings.model_copy(update=update)
        server = uvicorn.Server(uvicorn.Config(create_app(custom), host="127.0.0.1", port=port, log_config=None,
                                               lifespan="on", loop="asyncio"))
        thread = threading.Thread(target=server.run, name=f"api-{port}", daemon=True)
        thread.start()
        wait_for(lambda: server.started, 15, "the extra API to start")
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        servers.append((server, thread, client))
        return client

    yield start
    for server, thread, client in servers:
        client.close()
        server.should_exit = True
        thread.join(15)
