"""A sink's loop reading while its sink retries, on the stack's Kafka: what arrives during the wait comes with the
next batch; with the hold full, nothing is skipped or read twice; a rewind, or a rebalance that takes partitions
away, drops the held records that will be read again."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Protocol

import pytest
from confluent_kafka import Message, TopicPartition

from tradesim.adapters.kafka.client import TopicSpec, admin, ensure_topics
from tradesim.adapters.kafka.client import producer as make_producer
from tradesim.adapters.kafka.dead_letters import DeadLetterSender
from tradesim.adapters.search.trades import TradeIndex
from tradesim.services.persistence.pipeline import LETTER_DEADLINE_S, MAX_HELD_BATCHES, SinkWorker, sink_consumer
from tradesim.settings import Settings
from tradesim.testing.net import free_port
from tradesim.testing.waiting import wait_for

PARTITIONS = 3
#: one wait between retries; the records are in Kafka before it starts, so it holds them within milliseconds
IDLE_S = 1.5


@pytest.fixture
def topic(settings: Settings) -> Iterator[str]:
    name = "test-sink-" + uuid.uuid4().hex[:8]
    ensure_topics(settings.kafka, [TopicSpec(name, PARTITIONS, {})])
    yield name
    client = admin(settings.kafka)  # held: the futures fail if the client is collected first
    client.delete_topics([name])[name].result(timeout=10)


class MakeWorker(Protocol):
    def __call__(self, batch_size: int, group: str | None = None, letters: DeadLetterSender | None = None
                 ) -> SinkWorker: ...


@pytest.fixture
def make_worker(settings: Settings, topic: str, index: TradeIndex) -> Iterator[MakeWorker]:
    """Makes workers on `topic`, subscribed; one of a new group (the default) waits for every partition, nothing
    consumed; one joining a `group` does not wait. Closes them all after the test."""
    made: list[SinkWorker] = []

    def make(batch_size: int, group: str | None = None, letters: DeadLetterSender | None = None) -> SinkWorker:
        s = settings.model_copy(update={
            "topics": settings.topics.model_copy(update={"trade_executed": topic}),
            "persistence": settings.persistence.model_copy(update={"batch_size": batch_size})})
        letters = letters or DeadLetterSender.connect(s.kafka, s.topics.dead_letter, "test-sink", LETTER_DEADLINE_S)
        worker = SinkWorker(s, index, sink_consumer(s, group or "test-sink-" + uuid.uuid4().hex[:8]), letters,
                            threading.Event())
        made.append(worker)
        worker.subscribe()
        if group is None:
            _wait_assigned_all(worker)
        return worker

    yield make
    for worker in made:
        worker.consumer.close()


def _wait_assigned_all(worker: SinkWorker) -> None:
    """Until every partition is the worker's (polling, which consumes nothing before any record is produced)."""
    wait_for(lambda: worker.consumer.poll(0.1) is None and len(worker.consumer.assignment()) == PARTITIONS, 30,
             "the partitions assigned")


def _produce(settings: Settings, topic: str, n: int, partition: int | None = None) -> set[tuple[int, int]]:
    """n records (over every partition, or into one); their (partition, offset)s."""
    producer = make_producer(settings.kafka)
    placed: set[tuple[int, int]] = set()

    def delivered(err: object, msg: Message) -> None:
        assert err is None, err
        placed.add((msg.partition() or 0, msg.offset() or 0))

    for i in range(n):
        where = {} if partition is None else {"partition": partition}
        producer.produce(topic, key=f"k{i}".encode(), value=b"v", on_delivery=delivered, **where)
    assert producer.flush(30) == 0
    assert len(placed) == n
    return placed


def _positions(batch: list[Message]) -> list[tuple[int, int]]:
    return [(m.partition() or 0, m.offset() or 0) for m in batch]


def _collect_until(worker: SinkWorker, n: int) -> list[tuple[int, int]]:
    """The positions of the batches collected until there are n records."""
    got: list[tuple[int, int]] = []

    def enough() -> bool:
        got.extend(_positions(worker._collect()))
        return len(got) >= n

    wait_for(enough, 60, f"{n} records collected")
    return got


def test_records_that_arrive_while_a_sink_retries_come_with_the_next_batch(
        settings: Settings, topic: str, make_worker: MakeWorker) -> None:
    """A paused consumer would drop what it fetched and fetch again only after the retry's short collect."""
    worker = make_worker(100)
    placed = _produce(settings, topic, 6)
    worker._idle(IDLE_S)
    assert set(_positions(worker._held)) == placed  # read during the wait...
    assert set(_positions(worker._collect())) == placed  # ...and in the next batch


def test_a_full_hold_pauses_and_skips_or_repeats_nothing(
        settings: Settings, topic: str, make_worker: MakeWorker) -> None:
    worker = make_worker(2)
    n = 5 * MAX_HELD_BATCHES * 2
    placed = _produce(settings, topic, n)
    worker._idle(IDLE_S)  # holds MAX_HELD_BATCHES × 2, pauses and seeks back the partitions that bring more
    assert len(worker._held) == MAX_HELD_BATCHES * 2
    paused, held = set(worker._paused), _positions(worker._held)
    assert paused, "no partition was paused"
    worker._idle(IDLE_S)  # a retry with the hold still full: the paused partitions stay paused
    assert (worker._paused, _positions(worker._held)) == (paused, held)
    got = _collect_until(worker, n)
    assert sorted(got) == sorted(placed)  # each once
    for part in range(PARTITIONS):
        offsets = [offset for p, offset in got if p == part]
        assert offsets == sorted(offsets), f"partition {part} out of order: {offsets}"


def test_a_rewind_reads_the_batch_and_the_held_records_after_it_once_in_order(
        settings: Settings, topic: str, make_worker: MakeWorker) -> None:
    """Also when the rewind empties a full hold whose partition was paused: it is resumed, not left paused."""
    worker = make_worker(2)
    placed = sorted(_produce(settings, topic, 5 * MAX_HELD_BATCHES * 2, partition=0))
    batch: list[Message] = []
    wait_for(lambda: batch.extend(worker._collect()) or batch, 30, "a first batch")
    worker._idle(IDLE_S)  # holds the records after the batch until the hold is full, then pauses
    assert len(worker._held) == MAX_HELD_BATCHES * 2
    assert worker._paused == {(topic, 0)}
    worker._rewind(batch)  # as when a commit fails: the batch is read again, and what followed it
    assert _collect_until(worker, len(placed)) == placed


def test_partitions_taken_away_mid_retry_drop_their_held_records_and_are_not_left_paused(
        settings: Settings, topic: str, make_worker: MakeWorker) -> None:
    """A second worker joins the group while the first holds records and has paused partitions: the rebalance
    takes partitions away (librdkafka's default assignors revoke all, then assign anew). Whatever the first keeps
    or gets back it reads again from the commit (nothing committed here: from the start), so together the two
    read every record once; a held record of a revoked partition would come twice, a pause left behind never."""
    group = "test-sink-" + uuid.uuid4().hex[:8]
    first = make_worker(2, group)
    _wait_assigned_all(first)
    n = 5 * MAX_HELD_BATCHES * 2
    placed = _produce(settings, topic, n)
    first._idle(IDLE_S)
    assert len(first._held) == MAX_HELD_BATCHES * 2
    assert first._paused, "no partition was paused"

    retrying = threading.Event()
    assigned: list[int] = [PARTITIONS]  # the first worker's, as of its last wait (a consumer is not shared)
    failed: list[BaseException] = []

    def retry() -> None:  # the first worker's waits go on, and take part in the rebalance, while the second joins
        try:
            while not retrying.is_set():
                first._idle(0.2)
                assigned[0] = len(first.consumer.assignment())
        except BaseException as exc:  # noqa: BLE001 - raised in the test's thread below
            failed.append(exc)

    waits = threading.Thread(target=retry)
    waits.start()
    second = make_worker(2, group)
    got: list[tuple[int, int]] = []
    try:
        def split() -> bool:
            got.extend(_positions(second._collect()))
            theirs = len(second.consumer.assignment())
            return 0 < theirs < PARTITIONS and assigned[0] + theirs == PARTITIONS
        wait_for(lambda: bool(failed) or split(), 60, "the partitions split between the two workers")
    finally:
        retrying.set()
        waits.join(10)
    assert not waits.is_alive()
    if failed:
        raise failed[0]
    kept = {(tp.topic, tp.partition) for tp in first.consumer.assignment()}
    assert {(m.topic(), m.partition()) for m in first._held} <= kept
    assert first._paused <= kept

    def both_read_everything() -> bool:
        got.extend(_positions(first._collect()) + _positions(second._collect()))
        return len(got) >= n

    wait_for(both_read_everything, 60, f"{n} records collected by the two workers")
    assert sorted(got) == sorted(placed)  # each once


def test_a_batch_whose_dead_letter_expired_is_not_committed_but_read_again(
        settings: Settings, topic: str, make_worker: MakeWorker) -> None:
    """The letter's broker is away and the letter expires, which empties the producer's queue: the batch must be
    handled again, not committed (the old check, flush() == 0, called that delivered)."""
    away = settings.kafka.model_copy(update={"bootstrap_servers": f"127.0.0.1:{free_port()}"})
    worker = make_worker(10, letters=DeadLetterSender.connect(away, "dead_letter", "test-sink", 0.2))
    placed = _produce(settings, topic, 1)  # b"v": not an outcome, so its batch has a dead letter
    batch: list[Message] = []
    wait_for(lambda: batch.extend(worker._collect()) or batch, 30, "the record")
    worker._persist(batch)
    assert worker.persisted == 0
    [(part, _)] = placed
    [committed] = worker.consumer.committed([TopicPartition(topic, part)], timeout=10)
    assert committed.offset < 0
    assert _collect_until(worker, 1) == sorted(placed)  # rewound: the record comes again
