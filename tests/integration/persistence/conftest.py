"""Helpers to feed `trade_executed` and read both read models back, for the persistence service's tests."""

from __future__ import annotations

import contextlib
import time
import urllib.request
import uuid
from collections.abc import Iterable, Iterator

import pytest
from confluent_kafka import TopicPartition

from tradesim.adapters.clickhouse.trades import TradeStore
from tradesim.adapters.kafka.client import consumer as make_consumer
from tradesim.adapters.kafka.client import producer as make_producer
from tradesim.adapters.search.trades import TradeIndex
from tradesim.domain.errors import InvalidRecord
from tradesim.domain.events import OrderOutcome, decode, encode
from tradesim.domain.trades import TradeQuery, TradeRecord
from tradesim.settings import Settings


@pytest.fixture(scope="module")
def index(settings: Settings) -> Iterator[TradeIndex]:
    live = TradeIndex.from_settings(settings.opensearch)
    yield live
    live.close()


@pytest.fixture(scope="module")
def store(settings: Settings) -> TradeStore:
    return TradeStore.from_settings(settings.clickhouse)


def publish(settings: Settings, events: Iterable[OrderOutcome | bytes], per_s: float | None = None) -> None:
    """Write to `trade_executed` as the execution job does (keyed by user); raw bytes go as they are; at most
    `per_s` a second if given (a feed, not a burst)."""
    producer = make_producer(settings.kafka)
    start = time.monotonic()
    for i, event in enumerate(events):
        if per_s is not None and (ahead := start + i / per_s - time.monotonic()) > 0:
            time.sleep(ahead)  # the feed's pace, not a wait for a condition
        if isinstance(event, bytes):
            producer.produce(settings.topics.trade_executed, key=b"garbage", value=event)
        else:
            producer.produce(settings.topics.trade_executed, key=event.key, value=encode(event))
        producer.poll(0)
    assert producer.flush(30) == 0, "not every outcome was delivered to trade_executed"


def searched(index: TradeIndex, users: Iterable[str]) -> list[TradeRecord]:
    """Every record of these users in the search model, through the paging the API uses."""
    out: list[TradeRecord] = []
    for user in users:
        cursor = None
        while True:
            page = index.search(TradeQuery(user_id=user, size=500, sort="decided_asc", cursor=cursor))
            out += page.records
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    return out


def analysed(store: TradeStore, users: Iterable[str]) -> list[TradeRecord]:
    """Every record of these users in the analytics model, repeats collapsed."""
    wanted = set(users)
    return [r for r in store.rows_final() if r.user_id in wanted]


def metric(settings: Settings, name: str, sink: str) -> float:
    """A value from the service's /metrics (0 when the series is not there yet)."""
    p = settings.persistence
    with urllib.request.urlopen(f"http://{p.host}:{p.metrics_port}/metrics", timeout=5) as answer:  # noqa: S310
        text = answer.read().decode()
    for line in text.splitlines():
        if line.startswith(f'{name}{{sink="{sink}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def outcome_ids_in_log(settings: Settings, timeout_s: float = 60) -> set[str]:
    """The order ids the valid outcomes of trade_executed name, from its first offset to its end (as of the call);
    fails after `timeout_s` with the partitions it has not read to their end."""
    topic = settings.topics.trade_executed
    reader = make_consumer(settings.kafka, "test-log-" + uuid.uuid4().hex[:8])
    try:
        parts = reader.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: reader.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in parts}
        todo = {p for p, (low, high) in ends.items() if high > low}
        reader.assign([TopicPartition(topic, p, ends[p][0]) for p in todo])
        at = {p: ends[p][0] for p in todo}  # each partition's position
        ids: set[str] = set()
        deadline = time.monotonic() + timeout_s
        while todo:
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic} not read to its end in {timeout_s} s: partitions {sorted(todo)} left")
            # no more than is due: a consume returns early only on a full batch
            for msg in reader.consume(min(1000, sum(ends[p][1] - at[p] for p in todo)), 1.0):
                if msg.error() is None:
                    with contextlib.suppress(InvalidRecord):
                        ids.add(decode(OrderOutcome, msg.value() or b"").order_id)
            for tp in reader.position([TopicPartition(topic, p) for p in todo]):
                at[tp.partition] = max(at[tp.partition], tp.offset)  # (none yet before a partition's first record)
                if tp.offset >= ends[tp.partition][1]:
                    todo.discard(tp.partition)
        return ids
    finally:
        reader.close()
