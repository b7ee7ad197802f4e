"""The execution job on the real stack: orders go to `trade_orders` (directly, so the job's own guards are what
is tested — the API's pre-check is advisory), outcomes are read back from `trade_executed`."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal

import pytest
from confluent_kafka import Consumer, TopicPartition

from tradesim.adapters.dynamodb.client import DynamoDB
from tradesim.adapters.dynamodb.portfolios import PortfolioStore
from tradesim.adapters.kafka.client import consumer, producer
from tradesim.adapters.redis.client import connect
from tradesim.adapters.redis.prices import PriceCache
from tradesim.domain.events import OrderCancelRequested, OrderOutcome, OrderPlaced, decode, encode
from tradesim.services.ingest.publisher import publish_all
from tradesim.settings import Settings
from tradesim.stack.flink import Flink
from tradesim.stack.jobs import JOBS, RECOVERY, cancel_job, submit_job
from tradesim.testing.factories import tick, unique_symbol
from tradesim.testing.waiting import wait_for  # noqa: F401 - re-exported to the tests


@dataclass
class Outcomes:
    """Every OrderOutcome on trade_executed since the reader was opened (all copies, in arrival order)."""

    c: Consumer
    seen: list[OrderOutcome] = field(default_factory=list)

    def poll(self) -> None:
        for m in self.c.consume(1000, timeout=0.2):
            if m.error() is None:
                self.seen.append(decode(OrderOutcome, m.value()))

    def by_order(self) -> dict[str, list[OrderOutcome]]:
        out: dict[str, list[OrderOutcome]] = {}
        for o in self.seen:
            out.setdefault(o.order_id, []).append(o)
        return out

    def wait(self, order_ids: list[str], timeout_s: float = 120) -> dict[str, OrderOutcome]:
        wanted = set(order_ids)

        def have_all() -> bool:
            self.poll()
            return wanted <= set(self.by_order())

        wait_for(have_all, timeout_s, f"outcomes of {len(wanted)} orders")
        got = self.by_order()
        return {oid: got[oid][0] for oid in order_ids}


@dataclass
class Exchange:
    settings: Settings
    store: PortfolioStore
    cache: PriceCache

    def account(self, cash: str) -> str:
        user = "x" + uuid.uuid4().hex[:10]
        self.store.create(user, Decimal(cash))
        return user

    def price(self, symbol: str, seq: int, price: str) -> None:
        """Publish a tick and wait until the market-data cache has it (the job reads the same stream)."""
        publish_all(self.settings, [tick(symbol, seq, price=price, run_id=1)])
        wait_for(lambda: (got := self.cache.latest(symbol)) is not None and got[0].seq >= seq, 30, "price cached")

    def order(self, user: str, symbol: str, side: str = "buy", qty: int = 1, kind: str = "market",
              limit: str | None = None, stop: str | None = None, tif: str = "gtc") -> OrderPlaced:
        return OrderPlaced(order_id="o" + uuid.uuid4().hex, user_id=user, symbol=symbol, side=side, qty=qty,  # type: ignore[arg-type]
                           order_type=kind, limit_price=Decimal(limit) if limit else None,  # type: ignore[arg-type]
                           stop_price=Decimal(stop) if stop else None, time_in_force=tif,  # type: ignore[arg-type]
                           placed_at_ms=int(time.time() * 1000))

    def send(self, *events: OrderPlaced | OrderCancelRequested | bytes) -> None:
        p = producer(self.settings.kafka)
        for e in events:
            if isinstance(e, bytes):
                p.produce(self.settings.topics.trade_orders, key=b"garbage", value=e)
            else:
                p.produce(self.settings.topics.trade_orders, key=e.key, value=encode(e))
        assert p.flush(30) == 0

    def outcomes(self) -> Outcomes:
        topic = self.settings.topics.trade_executed
        c = consumer(self.settings.kafka, group_id="probe-" + uuid.uuid4().hex[:8])
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        c.assign([TopicPartition(topic, p, c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1])
                  for p in parts])
        return Outcomes(c)


def running(settings: Settings) -> list[str]:
    """The ids of the running execution jobs."""
    rest = Flink(settings).rest()
    return [j.id for j in rest.jobs(with_checkpoints=False) if j.name == JOBS["execution"].flink_name and j.active]


def stop_execution_job(settings: Settings) -> str:
    """Stop the running execution job with a savepoint; returns its location."""
    (job_id,) = running(settings)
    return Flink(settings).rest().stop_with_savepoint(job_id, None)


def savepoint_execution_job(settings: Settings) -> str:
    """A savepoint of the running execution job, which runs on; returns its location."""
    (job_id,) = running(settings)
    return Flink(settings).rest().savepoint(job_id, None)


def start_execution_job(settings: Settings, savepoint: str | None = None, **overrides: str) -> str:
    """Submit the execution job, restored from `savepoint` if given; `overrides`: program arguments."""
    options = {RECOVERY: savepoint} if savepoint else None
    job_id, new = submit_job(settings, "execution", overrides={k.replace("_", "-"): v for k, v in overrides.items()},
                             options=options)
    assert new, "an execution job was still running"
    return job_id


@pytest.fixture(scope="package")
def execution_job(settings: Settings) -> Iterator[None]:
    _, started = submit_job(settings, "execution")
    yield
    if not started:
        # The session found it running, on a stack someone else started: leave a job running as found (some
        # tests stop and restart it), or that stack accepts orders and never executes them.
        if not running(settings):
            submit_job(settings, "execution")
        return
    # Cancelled when this package is done: left running, it executes nothing but still consumes every tick the
    # later market-data tests publish, and their timing-sensitive fan-out tests share the same two cores. (Some
    # tests restart it, so it is found by name.)
    for job_id in running(settings):
        cancel_job(settings, job_id)


@pytest.fixture
def exchange(settings: Settings, execution_job: None) -> Exchange:
    """The stack as the execution tests use it, whether an execution job runs or not (for a test that cancels
    what runs and submits its own)."""
    return Exchange(settings, PortfolioStore(DynamoDB(settings.dynamodb)), PriceCache(connect(settings.redis)))


@pytest.fixture
def ex(settings: Settings, exchange: Exchange) -> Exchange:
    """`exchange` with an execution job running: a test that ran the job with arguments of its own cancels it when
    it is done, and then the job is submitted again here (a standard submit, as the package's first)."""
    if not running(settings):
        submit_job(settings, "execution")
    return exchange


@pytest.fixture
def symbol() -> str:
    return unique_symbol("E")
