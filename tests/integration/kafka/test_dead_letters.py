"""Dead letters answer whether Kafka took them: on the real broker, and on a producer whose broker is away."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Message, TopicPartition

from tradesim.adapters.kafka.client import TopicSpec, consumer, ensure_topics, producer
from tradesim.adapters.kafka.dead_letters import DeadLetterSender
from tradesim.domain.events import DeadLetter, decode
from tradesim.settings import Settings
from tradesim.testing.net import free_port

pytestmark = pytest.mark.integration


def _source(settings: Settings, topic: str, value: bytes) -> Message:
    """A record as a consumer gets it, read back from `topic`."""
    p = producer(settings.kafka)
    p.produce(topic, key=b"k1", value=value)
    assert p.flush(10) == 0
    c = consumer(settings.kafka, f"it-dl-source-{uuid.uuid4().hex[:8]}")
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        msg = c.poll(30)
    finally:
        c.close()
    assert msg is not None
    assert msg.error() is None
    return msg


def test_letters_kafka_took_are_delivered_and_read_back_as_the_topics_schema(settings: Settings) -> None:
    run = uuid.uuid4().hex[:8]
    source, letters_topic = f"it_dl_src_{run}", f"it_dl_letters_{run}"
    ensure_topics(settings.kafka, [TopicSpec(source, 1, {}), TopicSpec(letters_topic, 1, {})])
    msg = _source(settings, source, b"\xff not json")
    letters = DeadLetterSender.connect(settings.kafka, letters_topic, "it-consumer", 30)
    letters.send(msg, "invalid tick: not JSON")
    letters.send(msg, "second")
    assert letters.delivered()
    assert letters.delivered()  # a round with nothing sent has nothing to wait for

    c = consumer(settings.kafka, f"it-dl-read-{run}")
    try:
        c.assign([TopicPartition(letters_topic, 0, 0)])
        # every letter sent was delivered, so the log's end is known: read up to it and no further (a consume
        # asking for more than is there waits out its whole timeout)
        end = c.get_watermark_offsets(TopicPartition(letters_topic, 0), timeout=10)[1]
        got: list[Message] = []
        while len(got) < end and (more := c.consume(end - len(got), timeout=10)):
            got += [m for m in more if m.error() is None]
    finally:
        c.close()
    assert [m.key() for m in got] == [b"k1", b"k1"]
    first, second = (decode(DeadLetter, m.value() or b"") for m in got)
    assert (first.source_topic, first.consumer, first.reason, first.record) == (
        source, "it-consumer", "invalid tick: not JSON", "\ufffd not json")
    assert second.reason == "second"


def test_a_letter_that_expired_is_not_delivered_though_the_queue_is_empty(settings: Settings) -> None:
    """No broker at the address: the letter expires, which empties librdkafka's queue (flush() says 0), but
    `delivered` must say False, or a consumer would commit past a record whose letter is lost."""
    run = uuid.uuid4().hex[:8]
    source = f"it_dl_src_{run}"
    ensure_topics(settings.kafka, [TopicSpec(source, 1, {})])
    msg = _source(settings, source, b"{}")
    away = settings.kafka.model_copy(update={"bootstrap_servers": f"127.0.0.1:{free_port()}"})
    letters = DeadLetterSender(producer(away, **{"message.timeout.ms": 300}), f"it_dl_letters_{run}", "it-consumer",
                               deadline_s=30)  # waits for the report, however late it comes
    letters.send(msg, "refused")
    assert not letters.delivered()
    assert letters.producer.flush(0) == 0  # the queue is empty: flush() alone would have called it delivered
