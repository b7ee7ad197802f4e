"""The market-data consume loop commits a batch's offsets only once the batch is in Redis and its dead letters are
in Kafka, also when it stops."""

from __future__ import annotations

import threading
import uuid

import pytest
import redis
from confluent_kafka import TopicPartition
from prometheus_client import REGISTRY

from tradesim.adapters.kafka.client import TopicSpec, consumer, ensure_topics, producer
from tradesim.adapters.kafka.dead_letters import DeadLetterSender
from tradesim.domain.events import Tick, encode
from tradesim.services.marketdata import metrics
from tradesim.services.marketdata.consumer import CacheConsumer, Counters
from tradesim.settings import Settings
from tradesim.testing.factories import tick, unique_symbol
from tradesim.testing.net import free_port
from tradesim.testing.waiting import wait_for

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


def test_a_batch_whose_dead_letter_kafka_did_not_take_stays_uncommitted(settings: Settings) -> None:
    """The letter's broker is away: the loop must hold the batch, sending the letter again, and not commit past
    the malformed record (before, the letter was only queued, and the offset committed at once)."""
    run = uuid.uuid4().hex[:8]
    topic, group = f"it_md_letters_{run}", f"it-md-letters-{run}"
    ensure_topics(settings.kafka, [TopicSpec(topic, 1, {})])
    p = producer(settings.kafka)
    p.produce(topic, key=b"BAD", value=b"not a tick")
    assert p.flush(10) == 0
    away = settings.kafka.model_copy(update={"bootstrap_servers": f"127.0.0.1:{free_port()}"})
    stop = threading.Event()
    loop = CacheConsumer(settings, stop, topic=topic, group=group, kind=Tick, write=lambda batch: len(batch),
                         counters=Counters(metrics.TICKS_IN, metrics.TICKS_APPLIED, None, metrics.LAG),
                         letters=lambda: DeadLetterSender.connect(away, "dead_letter", "marketdata", 0.2))
    retries = _retries()
    runner = threading.Thread(target=loop.run, daemon=True)
    runner.start()
    try:
        wait_for(lambda: _retries() >= retries + 2, timeout_s=60, what="the letter sent again, twice")
    finally:
        stop.set()
        runner.join(30)
    assert not runner.is_alive()

    check = consumer(settings.kafka, group)
    try:
        [committed] = check.committed([TopicPartition(topic, 0)], timeout=10)
    finally:
        check.close()
    assert committed.offset < 0  # the malformed record comes again, and so does its letter


def _retries() -> float:
    return REGISTRY.get_sample_value("tradesim_marketdata_dead_letter_retries_total") or 0.0
