"""Kafka partitions to files and back (`tradesim backup` / `restore`): every record returns at its old offset with
its key, value, headers and timestamp, also when the log no longer starts at 0; group offsets go back as they were."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Producer, TopicPartition

from tradesim.adapters.kafka.archive import (
    ArchiveError,
    Span,
    append,
    commit_group_offsets,
    export_partition,
    group_offsets,
    import_partition,
    read,
    records_after,
    spans,
)
from tradesim.adapters.kafka.client import TopicSpec, admin, consumer, ensure_topics, producer
from tradesim.settings import Settings

pytestmark = pytest.mark.integration


def _topic(settings: Settings, partitions: int = 2) -> str:
    name = "archive-" + uuid.uuid4().hex[:8]
    ensure_topics(settings.kafka, [TopicSpec(name, partitions, {})])
    return name


def _records(settings: Settings, topic: str, partition: int) -> list[tuple[int, bytes | None, bytes | None,
                                                                         object, int]]:
    c = consumer(settings.kafka, group_id="read-" + uuid.uuid4().hex[:8])
    c.assign([TopicPartition(topic, partition, 0)])
    low, high = c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
    out = []
    while len(out) < high - low:
        msgs = c.consume(high - low - len(out), timeout=5)  # no more than is due: only a full batch returns early
        assert msgs, f"{topic}[{partition}] stopped at {len(out)} of {high - low}"
        out += [(m.offset(), m.key(), m.value(), m.headers(), m.timestamp()[1]) for m in msgs]
    c.close()
    return out


def test_records_come_back_at_their_offsets_after_the_log_start_moved(settings: Settings, tmp_path: Path) -> None:
    source, target = _topic(settings), _topic(settings)
    p = producer(settings.kafka)
    now_ms = int(time.time() * 1000)  # within retention: the broker must not delete them meanwhile
    for i in range(50):
        p.produce(source, partition=0, key=f"k{i}".encode(), timestamp=now_ms + i,
                  value=None if i == 30 else f"v{i}".encode(),
                  headers=[("traceparent", f"t{i}".encode()), ("empty", None)] if i % 7 == 0 else None)
    assert p.flush(10) == 0
    # retention or DeleteRecords moved the log start: offsets 0..19 are gone
    client = admin(settings.kafka)
    for f in client.delete_records([TopicPartition(source, 0, 20)]).values():
        f.result(timeout=10)
    original = _records(settings, source, 0)
    assert original[0][0] == 20
    assert len(original) == 30

    for span in spans(settings.kafka, [source]):
        done = export_partition(settings.kafka, span, tmp_path / f"{span.partition}.bin.gz")
        assert (done.low, done.high) == ((20, 50) if span.partition == 0 else (0, 0))
        import_partition(settings.kafka, Span(target, span.partition, done.low, done.high),
                         tmp_path / f"{span.partition}.bin.gz")

    restored = {(s.partition, s.low, s.high) for s in spans(settings.kafka, [target])}
    assert restored == {(0, 20, 50), (1, 0, 0)}
    assert _records(settings, target, 0) == original
    assert [r.offset for r in read(tmp_path / "0.bin.gz")] == list(range(20, 50))


def test_a_partition_that_holds_records_is_not_written_into(settings: Settings, tmp_path: Path) -> None:
    source, target = _topic(settings, 1), _topic(settings, 1)
    p = producer(settings.kafka)
    for topic in (source, target):
        p.produce(topic, value=b"x")
    assert p.flush(10) == 0
    span = spans(settings.kafka, [source])[0]
    export_partition(settings.kafka, span, tmp_path / "0.bin.gz")
    with pytest.raises(ArchiveError, match="not empty"):
        import_partition(settings.kafka, Span(target, 0, span.low, span.high), tmp_path / "0.bin.gz")
    assert spans(settings.kafka, [target])[0].high == 1


def test_a_log_with_a_gap_is_refused_rather_than_restored_at_other_offsets(settings: Settings,
                                                                           tmp_path: Path) -> None:
    topic = _topic(settings, 1)
    tx = Producer({"bootstrap.servers": settings.kafka.bootstrap, "transactional.id": "t-" + uuid.uuid4().hex[:8]})
    tx.init_transactions(10)
    tx.begin_transaction()
    tx.produce(topic, value=b"a")
    tx.commit_transaction(10)  # offset 0 the record, offset 1 the commit marker
    p = producer(settings.kafka)
    p.produce(topic, value=b"b")
    p.produce(topic, value=b"c")
    assert p.flush(10) == 0
    with pytest.raises(ArchiveError, match="gap at offset 1"):
        export_partition(settings.kafka, spans(settings.kafka, [topic])[0], tmp_path / "0.bin.gz")


def test_group_offsets_are_read_and_set_back(settings: Settings) -> None:
    topic = _topic(settings)
    group = "g-" + uuid.uuid4().hex[:8]
    p = producer(settings.kafka)
    for i in range(6):
        p.produce(topic, value=b"x", partition=i % 2)
    assert p.flush(10) == 0
    c = consumer(settings.kafka, group_id=group)
    c.commit(offsets=[TopicPartition(topic, 0, 2), TopicPartition(topic, 1, 3)], asynchronous=False)
    c.close()
    read_back = group_offsets(settings.kafka, [topic])
    assert read_back[group] == {topic: {0: 2, 1: 3}}

    other = "g-" + uuid.uuid4().hex[:8]
    commit_group_offsets(settings.kafka, {other: {topic: {0: 1, 1: 0}}})
    assert group_offsets(settings.kafka, [topic])[other] == {topic: {0: 1, 1: 0}}


def test_a_copy_whose_start_retention_removed_begins_at_the_new_start(settings: Settings, tmp_path: Path) -> None:
    topic = _topic(settings, 1)
    p = producer(settings.kafka)
    for i in range(30):
        p.produce(topic, value=f"v{i}".encode())
    assert p.flush(10) == 0
    client = admin(settings.kafka)
    for f in client.delete_records([TopicPartition(topic, 0, 20)]).values():
        f.result(timeout=10)
    # the offsets were read before retention moved the start to 20
    assert export_partition(settings.kafka, Span(topic, 0, 0, 30), tmp_path / "a.bin.gz") == Span(topic, 0, 20, 30)
    assert [r.value for r in read(tmp_path / "a.bin.gz")] == [f"v{i}".encode() for i in range(20, 30)]
    # everything the backup wanted is gone: an empty copy that still ends where the partition ended
    assert export_partition(settings.kafka, Span(topic, 0, 0, 10), tmp_path / "b.bin.gz") == Span(topic, 0, 10, 10)
    assert list(read(tmp_path / "b.bin.gz")) == []


def test_records_appended_after_a_partitions_end_are_read_from_there(settings: Settings) -> None:
    """What a backup's late orders go through: read from an offset to the end of each partition as it was when the
    reading began (records produced meanwhile are not read), then appended elsewhere at the offsets given, with
    their keys, values, headers and timestamps."""
    source, target = _topic(settings), _topic(settings)
    p = producer(settings.kafka)
    now_ms = int(time.time() * 1000)
    for i in range(6):
        p.produce(source, partition=i % 2, key=f"k{i}".encode(), value=f"v{i}".encode(), timestamp=now_ms + i,
                  headers=[("traceparent", b"t")] if i == 5 else None)
    assert p.flush(10) == 0
    reading = records_after(settings.kafka, source, {0: 1, 1: 0})
    found = [next(reading)]
    for i in range(6, 10):  # after the reading began: beyond the ends it reads to
        p.produce(source, partition=i % 2, value=f"v{i}".encode())
    assert p.flush(10) == 0
    found += list(reading)
    assert sorted((part, rec.offset, rec.value) for part, rec in found) == [
        (0, 1, b"v2"), (0, 2, b"v4"), (1, 0, b"v1"), (1, 1, b"v3"), (1, 2, b"v5")]
    assert list(records_after(settings.kafka, source, {0: 5, 1: 5})) == []

    p.produce(target, partition=1, value=b"first")
    assert p.flush(10) == 0
    ones = sorted((rec for part, rec in found if part == 1), key=lambda r: r.offset)
    with pytest.raises(ArchiveError, match=r"came back at other offsets"):
        append(settings.kafka, target, 1, 5, ones[:1])  # the partition's end is 1, not 5
    assert append(settings.kafka, target, 1, 2, ones) == 3
    back = _records(settings, target, 1)
    assert [(o, k, v, ts) for o, k, v, _h, ts in back[2:]] == [(2 + i, rec.key, rec.value, rec.timestamp_ms)
                                                               for i, rec in enumerate(ones)]
    assert back[-1][3] == [("traceparent", b"t")]
