"""The market-data consume loop commits a batch's offsets only once the batch is in Redis, also when it stops."""

from __future__ import annotations

import threading
import uuid

import pytest
import redis
from confluent_kafka import TopicPartition

from tradesim.adapters.kafka.client import consumer
from tradesim.domain.events import Tick
from tradesim.services.ingest.publisher import publish_all
from tradesim.services.marketdata import metrics
from tradesim.services.marketdata.consumer import CacheConsumer, Counters
from tradesim.settings import Settings
from tradesim.testing.factories import tick, unique_symbol

pytestmark = pytest.mark.integration


def test_a_batch_not_written_when_the_service_stops_stays_uncommitted(settings: Settings) -> None:
    """Redis is away and the service stops while the loop retries: the next start must get the batch again."""
    publish_all(settings, [tick(unique_symbol(), 1)], run_id=1)
    group = f"test-offsets-{uuid.uuid4().hex[:8]}"
    stop, tried = threading.Event(), threading.Event()

    def redis_away(batch: list[tuple[Tick, bytes]]) -> int:
        tried.set()
        raise redis.ConnectionError("refused (the test's Redis is away)")

    loop = CacheConsumer(settings, stop, topic=settings.topics.market_data, group=group, kind=Tick,
                         write=redis_away, counters=Counters(metrics.TICKS_IN, metrics.TICKS_APPLIED, None,
                                                             metrics.LAG))
    runner = threading.Thread(target=loop.run)
    runner.start()
    try:
        assert tried.wait(60), "the loop never tried to write a batch"
    finally:
        stop.set()
        runner.join(30)
    assert not runner.is_alive()

    check = consumer(settings.kafka, group)
    try:
        topic = settings.topics.market_data
        partitions = check.list_topics(topic, timeout=10).topics[topic].partitions
        committed = check.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
    finally:
        check.close()
    assert [tp.offset for tp in committed if tp.offset >= 0] == []  # nothing committed for the unwritten batch
