"""A private `bars` job per test session on its own topics, so other producers of `market_data` (scenarios,
other tests) cannot move its event-time watermark; it is submitted through the same path as `tradesim jobs
submit bars`."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal

import pytest
from confluent_kafka import TopicPartition

from tradesim.adapters.flink.client import FlinkRest
from tradesim.adapters.kafka.client import TopicSpec, consumer, ensure_topics, producer
from tradesim.domain.events import Tick, encode
from tradesim.settings import Settings
from tradesim.stack.flink import Flink
from tradesim.stack.jobs import submit_job


@dataclass
class BarsJob:
    settings: Settings
    job_id: str
    ticks_topic: str
    bars_topic: str
    dead_letter_topic: str
    rest: FlinkRest
    #: next free event time (ms); every test takes whole minutes after it so watermarks never go backwards
    clock_ms: int

    def take_minute(self) -> int:
        start = max(self.clock_ms, int(time.time() * 1000))
        start += 60_000 - start % 60_000
        self.clock_ms = start + 3 * 60_000
        return start

    def produce(self, records: list[tuple[str, bytes]]) -> None:
        p = producer(self.settings.kafka)
        for key, value in records:
            p.produce(self.ticks_topic, key=key.encode(), value=value)
        assert p.flush(30) == 0

    def end_offsets(self, topic: str) -> list[TopicPartition]:
        c = consumer(self.settings.kafka, group_id=f"probe-{uuid.uuid4().hex[:6]}")
        meta = c.list_topics(topic, timeout=10).topics[topic]
        ends = [TopicPartition(topic, p, c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1])
                for p in meta.partitions]
        c.close()
        return ends

    def read_until(self, start: list[TopicPartition], done: Callable[[list[tuple[bytes, bytes]]], bool],
                   timeout_s: float = 120) -> list[tuple[bytes, bytes]]:
        """(key, value) records after `start`, polled until done(records) or the deadline (then returned as is)."""
        c = consumer(self.settings.kafka, group_id=f"read-{uuid.uuid4().hex[:6]}",
                     **{"isolation.level": "read_uncommitted"})
        c.assign(start)
        got: list[tuple[bytes, bytes]] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not done(got):
            for msg in c.consume(num_messages=500, timeout=0.1):  # done(got) decides: look at it often
                if msg.error() is None:
                    got.append((msg.key(), msg.value()))
        c.close()
        return got


def make_tick(symbol: str, seq: int, t_ms: int, last: str, size: int) -> Tick:
    price = Decimal(last)
    return Tick(symbol=symbol, bid=price - Decimal("0.01"), ask=price + Decimal("0.01"), last=price, size=size,
                event_time_ms=t_ms, seq=seq, scenario_id="flink-it")


def records(ticks: list[Tick]) -> list[tuple[str, bytes]]:
    return [(t.symbol, encode(t)) for t in ticks]


@pytest.fixture(scope="session")
def bars_job(settings: Settings, stack_components: list[str]) -> Iterator[BarsJob]:
    if "flink" not in stack_components:
        pytest.skip("needs flink in the stack (--stack-only kafka,flink)")
    run = uuid.uuid4().hex[:8]
    topics = {"ticks": f"it_ticks_{run}", "bars": f"it_bars_{run}", "dl": f"it_dead_letter_{run}"}
    # one ticks partition: arrival order is the order produced, which the exact-bars assertions rely on
    ensure_topics(settings.kafka, [TopicSpec(topics["ticks"], 1, {}), TopicSpec(topics["bars"], 3, {}),
                                   TopicSpec(topics["dl"], 1, {})])
    job_id, new = submit_job(settings, "bars", overrides={
        "source-topic": topics["ticks"], "bars-topic": topics["bars"], "dead-letter-topic": topics["dl"],
        "group-id": f"it-bars-{run}", "job-name": f"tradesim-bars-it-{run}", "checkpoint-interval-ms": "2000"})
    assert new
    rest = Flink(settings).rest()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        detail = rest.job(job_id)
        if detail["state"] == "RUNNING" and all(v["status"] == "RUNNING" for v in detail["vertices"]):
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"bars job {job_id} not running after 120 s: {rest.job(job_id)['state']}")
    yield BarsJob(settings, job_id, topics["ticks"], topics["bars"], topics["dl"], rest, 0)
    rest.cancel(job_id)
