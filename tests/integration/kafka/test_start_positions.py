"""Where a job's source starts (the offsets `tradesim jobs submit` resolves): a group's committed offset, else the
partition's first or next offset, per partition."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition

from tradesim.adapters.kafka.client import TopicSpec, consumer, ensure_topics, producer, start_positions
from tradesim.settings import Settings
from tradesim.stack.kafka import Kafka
from tradesim.stack.supervisor import Supervisor
from tradesim.testing.net import free_port

pytestmark = pytest.mark.integration


def test_committed_offsets_where_the_group_has_them_else_the_reset_end(settings: Settings) -> None:
    topic = "positions-" + uuid.uuid4().hex[:8]
    ensure_topics(settings.kafka, [TopicSpec(topic, 2, {})])
    p = producer(settings.kafka)
    for i in range(5):
        p.produce(topic, value=b"x", partition=i % 2)  # partition 0: offsets 0..2, partition 1: 0..1
    assert p.flush(10) == 0
    group = "g-" + uuid.uuid4().hex[:8]
    c = consumer(settings.kafka, group_id=group)
    c.commit(offsets=[TopicPartition(topic, 0, 2)], asynchronous=False)  # only partition 0 committed
    c.close()

    assert start_positions(settings.kafka, group, topic, "earliest") == {0: 2, 1: 0}
    assert start_positions(settings.kafka, group, topic, "latest") == {0: 2, 1: 2}
    assert start_positions(settings.kafka, "never-" + uuid.uuid4().hex[:6], topic, "latest") == {0: 3, 1: 2}
    assert start_positions(settings.kafka, group, "no-such-topic-" + uuid.uuid4().hex[:6], "earliest") == {}


def test_a_broker_that_just_started_gives_positions_once_its_coordinator_is_ready(settings: Settings,
                                                                                 tmp_path: Path) -> None:
    """The first group lookup on a new broker creates its offsets topic and is answered "not coordinator" until
    that is ready; `tradesim jobs submit` right after `tradesim up` must wait for it, not fail."""
    kafka = settings.kafka.model_copy(update={"port": free_port(), "controller_port": free_port(),
                                              "proxied_port": free_port(), "bootstrap_servers": None})
    side = settings.model_copy(update={"home": tmp_path / "home", "kafka": kafka})
    sup = Supervisor(side, [Kafka(side)])
    try:
        sup.up()
        topic = "fresh-" + uuid.uuid4().hex[:8]
        ensure_topics(kafka, [TopicSpec(topic, 2, {})])
        assert start_positions(kafka, "g-" + uuid.uuid4().hex[:8], topic, "earliest", timeout_s=30) == {0: 0, 1: 0}
    finally:
        sup.down()
