"""Produce keyed messages to every tradesim topic on the real broker and read them back in per-key order."""

from __future__ import annotations

import time
import uuid
from collections import defaultdict

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import ConfigResource, ResourceType

from tradesim.adapters.kafka.client import TopicSpec, admin, consumer, ensure_topics, producer
from tradesim.adapters.kafka.errors import KafkaUnavailable
from tradesim.adapters.toxiproxy.client import Toxiproxy
from tradesim.settings import Settings
from tradesim.stack.kafka import orders_retention

pytestmark = pytest.mark.integration
N = 1000
KEYS = [f"key-{i}" for i in range(17)]


def _topics(settings: Settings) -> list[str]:
    t = settings.topics
    return [t.market_data, t.trade_orders, t.trade_executed, t.dead_letter]


def test_up_created_the_topics_with_partitions(settings: Settings) -> None:
    meta = admin(settings.kafka).list_topics(timeout=10)
    for name in _topics(settings):
        assert name in meta.topics, name
    assert len(meta.topics[settings.topics.market_data].partitions) == settings.kafka.partitions
    assert len(meta.topics[settings.topics.trade_orders].partitions) == settings.kafka.partitions


def _config(settings: Settings, topic: str) -> dict[str, str]:
    resource = ConfigResource(ResourceType.TOPIC, topic)
    client = admin(settings.kafka)  # held until the answer is in: a collected client cancels its requests
    entries = client.describe_configs([resource])[resource].result(timeout=10)
    return {k: e.value for k, e in entries.items()}


def test_trade_orders_retention_follows_the_processing_deadline(settings: Settings) -> None:
    cfg = _config(settings, settings.topics.trade_orders)
    assert {k: cfg[k] for k in ("retention.ms", "segment.ms")} == orders_retention(
        settings.trading.processing_deadline_ms)
    assert int(cfg["retention.ms"]) > settings.trading.processing_deadline_ms


def test_ensure_topics_sets_the_spec_config_on_an_existing_topic(settings: Settings) -> None:
    name = f"test-config-{uuid.uuid4().hex[:8]}"
    assert ensure_topics(settings.kafka, [TopicSpec(name, 1, {"retention.ms": "86400000"})]) == [name]
    assert ensure_topics(settings.kafka, [TopicSpec(name, 1, {"retention.ms": "3600000"})]) == []  # exists
    assert _config(settings, name)["retention.ms"] == "3600000"
    client = admin(settings.kafka)
    client.delete_topics([name])[name].result(timeout=10)


def test_ensure_topics_gives_up_at_one_deadline_for_all_its_steps(settings: Settings, tox: Toxiproxy) -> None:
    """Each of ensure_topics' round trips (connect, list, create, wait for the leader) fits in the timeout on its
    own but not all together: the call must end at the deadline with KafkaUnavailable, not succeed late."""
    name = f"test-deadline-{uuid.uuid4().hex[:8]}"
    proxied = settings.routed().kafka  # what the services use: through Toxiproxy
    assert proxied.port != settings.kafka.port, "the test stack runs with chaos on"
    # every reply 0.3 s late: connecting and listing take ~1.2 s, creating and the leader wait ~0.3 s each, so
    # the whole call needs ~1.9 s (a deadline per step let it succeed then) against a deadline of 1.5 s
    timeout_s = 1.5
    tox.add_toxic("kafka", "test-deadline", "latency", {"latency": 300})
    start = time.monotonic()
    try:
        # past the listing (were the listing alone too slow, a deadline per step would fail alike)
        with pytest.raises(KafkaUnavailable, match="create topic|not created|without a leader|just created"):
            ensure_topics(proxied, [TopicSpec(name, 1, {})], timeout_s=timeout_s)
        took = time.monotonic() - start
    finally:
        tox.remove_toxic("kafka", "test-deadline")
        client = admin(settings.kafka)  # the creation may have reached the broker before the call gave up
        client.delete_topics([name])[name].exception(timeout=10)
    assert took < timeout_s + 0.5, f"gave up after {took:.1f} s, the deadline was {timeout_s:g} s"


@pytest.mark.parametrize("topic_attr", ["market_data", "trade_orders", "trade_executed", "dead_letter"])
def test_thousand_keyed_messages_come_back_in_per_key_order(settings: Settings, topic_attr: str) -> None:
    topic = getattr(settings.topics, topic_attr)
    run = uuid.uuid4().hex[:8]
    p = producer(settings.kafka)
    # Remember where each partition ends now, so only this run's messages are read back.
    c = consumer(settings.kafka, group_id=f"test-{run}")
    parts = admin(settings.kafka).list_topics(topic, timeout=10).topics[topic].partitions
    starts = []
    for pid in parts:
        _, high = c.get_watermark_offsets(TopicPartition(topic, pid), timeout=10)
        starts.append(TopicPartition(topic, pid, high))
    delivered: list[str] = []

    def on_delivery(err, msg) -> None:  # noqa: ANN001 - confluent callback signature
        assert err is None, err
        delivered.append(msg.key().decode())

    sent: dict[str, list[int]] = defaultdict(list)
    for i in range(N):
        key = KEYS[i % len(KEYS)]
        sent[key].append(i)
        p.produce(topic, key=key, value=f"{run}:{i}".encode(), on_delivery=on_delivery)
        p.poll(0)
    assert p.flush(30) == 0
    assert len(delivered) == N

    c.assign(starts)
    got: dict[str, list[int]] = defaultdict(list)
    received = 0
    deadline = time.monotonic() + 60
    while received < N and time.monotonic() < deadline:
        for msg in c.consume(num_messages=500, timeout=1.0):
            assert msg.error() is None, msg.error()
            value = msg.value().decode("utf-8", "replace")
            if value.startswith(run + ":"):  # other producers (jobs' dead letters) share these topics
                got[msg.key().decode()].append(int(value.split(":", 1)[1]))
                received += 1
    c.close()
    assert received == N
    assert dict(got) == dict(sent)  # every key's messages arrive exactly once, in the order produced
