"""The market-data consume loop commits a batch's offsets only once the batch is in Redis, also when it stops."""

from __future__ import annotations

import threading
import uuid

import pytest
import redis
from confluent_kafka import TopicPartition

from tradesim.adapters.kafka.client import TopicSpec, consumer, ensure_topics, producer
from tradesim.domain.events import Tick, encode
from tradesim.services.marketdata import metrics
from tradesim.services.marketdata.consumer import CacheConsumer, Counters
from tradesim.settings import Settings
from tradesim.testing.factories import tick, unique_symbol

pytestmark = pytest.mark.integration


def test_a_batch_not_written_when_the_service_stops_stays_uncommitted(settings: Settings) -> None:
    """Redis is away and the service stops while the loop retries: the next start must get the batch again."""
    run = uuid.uuid4().hex[:8]
    topic, group = f"it_md_offsets_{run}", f"it-md-offsets-{run}"
    ensure_topics(settings.kafka, [TopicSpec(topic, 1, {})])  # its own topic: the batch is exactly this tick
    t = tick(unique_symbol(), 1)
    p = producer(settings.kafka)
    p.produce(topic, key=t.key, value=encode(t))
    assert p.flush(10) == 0
    stop, tried = threading.Event(), threading.Event()
    batches: list[list[tuple[Tick, bytes]]] = []

    def redis_away(batch: list[tuple[Tick, bytes]]) -> int:
        batches.append(batch)
        tried.set()
        raise redis.ConnectionError("refused (the test's Redis is away)")

    loop = CacheConsumer(settings, stop, topic=topic, group=group, kind=Tick, write=redis_away,
                         counters=Counters(metrics.TICKS_IN, metrics.TICKS_APPLIED, None, metrics.LAG))
    runner = threading.Thread(target=loop.run, daemon=True)
    runner.start()
    try:
        assert tried.wait(60), "the loop never tried to write a batch"
    finally:
        stop.set()
        runner.join(30)
    assert not runner.is_alive()
    assert [record for record, _ in batches[0]] == [t]

    check = consumer(settings.kafka, group)
    try:
        [committed] = check.committed([TopicPartition(topic, 0)], timeout=10)
    finally:
        check.close()
    assert committed.offset < 0  # nothing committed: the next start of the group gets the tick again
