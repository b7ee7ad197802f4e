"""Kafka partitions to files and back with their offsets, and consumer-group offsets.

A restore into an empty partition gives every record its old offset (records below the backup's first offset are
filled and then deleted with DeleteRecords), so the consumer-group offsets and Flink savepoints taken with the
backup stay valid. Holds for logs without gaps: tradesim's topics are neither compacted nor transactional.
Records can also be appended after a restored partition's end (`append`, checked to land at the offsets given)."""

from __future__ import annotations

import gzip
import json
import struct
import time
import uuid
from base64 import b64decode, b64encode
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from tradesim.adapters.kafka.client import admin, consumer, producer
from tradesim.adapters.kafka.errors import KafkaUnavailable
from tradesim.settings import KafkaSettings

MAGIC = b"tradesim-kafka-archive/1\n"
#: offset, timestamp (ms), key length, value length, headers length; -1 = null
_HEAD = struct.Struct(">qqiii")
#: a partition that yields nothing for this long while records are due has stalled
STALL_S = 30.0
#: most records one consume asks for (it asks for fewer when fewer are due: it returns early only on a full batch)
BATCH = 5000

Progress = Callable[[int], None]


class ArchiveError(Exception):
    """A partition cannot be copied or restored as it stands (message says which and why)."""


@dataclass(frozen=True)
class Span:
    """Offsets [low, high) of one partition."""

    topic: str
    partition: int
    low: int
    high: int

    @property
    def count(self) -> int:
        return self.high - self.low


def spans(kafka: KafkaSettings, topics: list[str], timeout_s: float = 10.0) -> list[Span]:
    """The current [low, high) of every partition of `topics` (a topic that does not exist is left out)."""
    c = consumer(kafka, group_id=f"tradesim-archive-{uuid.uuid4().hex[:8]}")
    try:
        out = []
        for topic in topics:
            meta = c.list_topics(topic, timeout=timeout_s).topics.get(topic)
            if meta is None or meta.error is not None:
                continue
            for p in sorted(meta.partitions):
                low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
                out.append(Span(topic, p, low, high))
        return out
    except KafkaException as exc:
        raise KafkaUnavailable(f"cannot read the offsets of {', '.join(topics)}: {exc}") from None
    finally:
        c.close()


def _bytes(v: str | bytes) -> bytes:
    return v.encode() if isinstance(v, str) else v


@dataclass(frozen=True)
class Record:
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]] | None

    @classmethod
    def of(cls, msg: Message) -> Record:
        pairs = cast(list[tuple[str, str | bytes | None]], msg.headers() or [])  # a consumed message's: pairs
        return cls(cast(int, msg.offset()), msg.timestamp()[1], msg.key(), msg.value(),
                   [(k, None if v is None else _bytes(v)) for k, v in pairs] or None)


def _frame(rec: Record) -> bytes:
    head_bytes = json.dumps([[k, None if v is None else b64encode(v).decode()] for k, v in rec.headers]).encode() \
        if rec.headers else None
    fields = (rec.key, rec.value, head_bytes)
    lengths = (-1 if x is None else len(x) for x in fields)
    return _HEAD.pack(rec.offset, rec.timestamp_ms, *lengths) + b"".join(x for x in fields if x is not None)


def write(path: Path, records: Iterable[Record]) -> int:
    """An archive file of `records` (as `read` gives them back); returns the count."""
    n = 0
    with gzip.open(path, "wb", compresslevel=3) as f:
        f.write(MAGIC)
        for rec in records:
            f.write(_frame(rec))
            n += 1
    return n


def read(path: Path) -> Iterator[Record]:
    """The records of one archived partition, in offset order."""
    with gzip.open(path, "rb") as f:
        if f.read(len(MAGIC)) != MAGIC:
            raise ArchiveError(f"{path} is not a tradesim Kafka archive")
        while head := f.read(_HEAD.size):
            if len(head) < _HEAD.size:
                raise ArchiveError(f"{path} is truncated")
            offset, ts, *lengths = _HEAD.unpack(head)
            key, value, raw = fields = [None if n < 0 else f.read(n) for n in lengths]
            if any(got is not None and len(got) < n for got, n in zip(fields, lengths, strict=True)):
                raise ArchiveError(f"{path} is truncated in the record of offset {offset}")
            yield Record(offset, ts, key, value, None if raw is None else _headers(path, offset, raw))


def _headers(path: Path, offset: int, raw: bytes) -> list[tuple[str, bytes | None]]:
    try:
        pairs = json.loads(raw)
        return [(str(k), None if v is None else b64decode(v, validate=True)) for k, v in pairs]
    except (ValueError, TypeError) as exc:  # (binascii.Error is a ValueError)
        raise ArchiveError(f"{path}: the headers of the record of offset {offset} do not read ({exc})") from None


def misplaced(path: Path, low: int, high: int) -> str | None:
    """Why the archived partition's records are not exactly the offsets low, low + 1, … high - 1 (as an export
    writes them; it refuses a gap), or None; reads the whole file, so a damaged one raises ArchiveError, OSError
    or EOFError."""
    expected = low
    for rec in read(path):
        if rec.offset != expected:
            return f"offset {rec.offset} where {expected} was due"
        expected += 1
    return None if expected == high else f"it ends before offset {high} at {expected}"


class _StartMoved(Exception):
    """Retention removed records the copy had not reached: copy again from the partition's new start."""


def export_partition(kafka: KafkaSettings, span: Span, path: Path, progress: Progress = lambda _n: None) -> Span:
    """Write the records of `span` to `path`; returns the span written (its low is higher if retention removed
    records meanwhile, and it is empty if retention removed them all). Raises ArchiveError on a gap in the
    offsets, KafkaUnavailable when the broker stalls."""
    for _ in range(5):
        try:
            return _export(kafka, span, path, progress)
        except _StartMoved:
            now = next(s for s in spans(kafka, [span.topic]) if s.partition == span.partition)
            span = Span(span.topic, span.partition, min(now.low, span.high), span.high)
    raise ArchiveError(f"{span.topic}[{span.partition}]: retention kept removing records faster than they were "
                       "copied")


def _export(kafka: KafkaSettings, span: Span, path: Path, progress: Progress) -> Span:
    if span.count <= 0:
        write(path, [])
        return Span(span.topic, span.partition, span.high, span.high)
    c = _reader(kafka, [TopicPartition(span.topic, span.partition, span.low)])
    expected = span.low  # the next offset due
    last_progress = time.monotonic()
    try:
        with gzip.open(path, "wb", compresslevel=3) as f:
            f.write(MAGIC)
            while expected < span.high:
                # no more than is due: a batch short of its count waits out the whole timeout
                batch = c.consume(num_messages=min(BATCH, span.high - expected), timeout=1.0)
                if not batch and time.monotonic() - last_progress > STALL_S:
                    raise KafkaUnavailable(f"{span.topic}[{span.partition}] yielded nothing for {STALL_S:.0f} s "
                                           f"at offset {expected}")
                n = 0
                for msg in batch:
                    if msg.error() is not None:
                        raise KafkaUnavailable(f"reading {span.topic}[{span.partition}]: {msg.error()}")
                    offset = msg.offset()
                    if offset != expected:
                        low = c.get_watermark_offsets(TopicPartition(span.topic, span.partition), timeout=10)[0]
                        if low > expected:  # the consumer was moved to the new start
                            raise _StartMoved
                        raise ArchiveError(f"{span.topic}[{span.partition}] has a gap at offset {expected}; a "
                                           "compacted or transactional topic cannot be restored with its offsets")
                    if offset >= span.high:
                        break
                    f.write(_frame(Record.of(msg)))
                    expected = offset + 1
                    n += 1
                if n:
                    last_progress = time.monotonic()
                    progress(n)
    finally:
        c.close()
    return span


def import_partition(kafka: KafkaSettings, span: Span, path: Path, progress: Progress = lambda _n: None) -> None:
    """Write an archived partition into the same, empty partition so each record gets its old offset.
    Raises ArchiveError when the partition is not empty or an offset comes out different."""
    now = spans(kafka, [span.topic])
    current = next((s for s in now if s.partition == span.partition), None)
    if current is None:
        raise ArchiveError(f"topic {span.topic} has no partition {span.partition}")
    if current.high != 0:
        raise ArchiveError(f"{span.topic}[{span.partition}] is not empty ({current.high} records)")
    p = producer(kafka, **{"linger.ms": 20, "batch.num.messages": 10000})
    if span.low > 0:  # offsets below the backup's first one: fill, then delete
        for i in range(span.low):
            _produce(p, span.topic, span.partition, value=None)
            if i % 10000 == 0:
                p.poll(0)
        if p.flush(60) != 0:
            raise KafkaUnavailable(f"filling {span.topic}[{span.partition}] did not finish")
        filled = next(s for s in spans(kafka, [span.topic]) if s.partition == span.partition)
        if filled.high != span.low:
            raise ArchiveError(f"{span.topic}[{span.partition}] was filled to {filled.high}, not {span.low}: "
                               "something else writes to it")
        client = admin(kafka)  # held until the futures complete: they never do once it is collected
        futures = client.delete_records([TopicPartition(span.topic, span.partition, span.low)], request_timeout=30)
        for f in futures.values():
            f.result(timeout=60)
    _write_at(p, span.topic, span.partition, ((rec.offset, rec) for rec in read(path)), progress)


def append(kafka: KafkaSettings, topic: str, partition: int, first: int, records: Iterable[Record]) -> int:
    """Produce `records` at the end of `topic`'s `partition`, which must be `first`, with their keys, values,
    headers and timestamps; returns the count. Raises ArchiveError when they land at other offsets."""
    p = producer(kafka, **{"linger.ms": 20})
    return _write_at(p, topic, partition, enumerate(records, start=first))


def _write_at(p: Producer, topic: str, partition: int, records: Iterable[tuple[int, Record]],
              progress: Progress = lambda _n: None) -> int:
    """Produce each (expected offset, record) and check every delivery's offset; returns the count. Stops writing
    at the first wrong one (the partition is not ours alone) and raises ArchiveError."""
    wrong: list[str] = []

    def check(expected: int) -> Callable[[object, Message], None]:
        def on_delivery(err: object, msg: Message) -> None:
            if err is not None or msg.offset() != expected:
                wrong.append(f"offset {expected}: {err or f'written at {msg.offset()}'}")
        return on_delivery

    n = 0
    for expected, rec in records:
        _produce(p, topic, partition, key=rec.key, value=rec.value, headers=rec.headers, timestamp=rec.timestamp_ms,
                 on_delivery=check(expected))
        n += 1
        if n % 5000 == 0:
            p.poll(0)
            progress(5000)
            if wrong:
                break
    if p.flush(60) != 0:
        raise KafkaUnavailable(f"writing {topic}[{partition}] did not finish")
    progress(n % 5000)
    if wrong:
        raise ArchiveError(f"{topic}[{partition}] came back at other offsets ({len(wrong)} records, first: "
                           f"{wrong[0]})")
    return n


def _produce(p: Producer, topic: str, partition: int, **kw: object) -> None:
    """Produce, waiting for room when the producer's queue is full."""
    while True:
        try:
            p.produce(topic, partition=partition, **kw)  # type: ignore[arg-type]
            return
        except BufferError:
            p.poll(0.05)


def records_after(kafka: KafkaSettings, topic: str, start: dict[int, int]) -> Iterator[tuple[int, Record]]:
    """(partition, record) for the records of `topic` from `start` (partition → offset) to each partition's end as
    it is when the reading starts. Raises KafkaUnavailable when the broker stalls."""
    ends = {s.partition: s.high for s in spans(kafka, [topic]) if s.partition in start}
    due = {p: end for p, end in ends.items() if end > start[p]}
    if not due:
        return
    c = _reader(kafka, [TopicPartition(topic, p, start[p]) for p in due])
    at = {p: start[p] for p in due}  # the next offset due per partition
    last_progress = time.monotonic()
    try:
        while due:
            batch = c.consume(num_messages=min(BATCH, sum(due[p] - at[p] for p in due)), timeout=1.0)
            for msg in batch:
                if msg.error() is not None:
                    raise KafkaUnavailable(f"reading {topic}: {msg.error()}")
                partition, offset = cast(int, msg.partition()), cast(int, msg.offset())  # consumed: set
                if partition not in due or not start[partition] <= offset < due[partition]:
                    continue
                last_progress = time.monotonic()
                at[partition] = offset + 1
                yield partition, Record.of(msg)
                if offset + 1 >= due[partition]:
                    del due[partition]
                    c.incremental_unassign([TopicPartition(topic, partition)])  # its later records are not due
            if due and time.monotonic() - last_progress > STALL_S:
                raise KafkaUnavailable(f"{topic} yielded nothing due for {STALL_S:.0f} s")
    finally:
        c.close()


def _reader(kafka: KafkaSettings, starts: list[TopicPartition]) -> Consumer:
    """A consumer of its own (no group offsets shared with anyone) assigned to read from `starts`."""
    c = consumer(kafka, group_id=f"tradesim-archive-{uuid.uuid4().hex[:8]}", **{"fetch.max.bytes": 16 << 20})
    c.assign(starts)
    return c


#: group → topic → partition → committed offset
GroupOffsets = dict[str, dict[str, dict[int, int]]]


def group_offsets(kafka: KafkaSettings, topics: list[str], timeout_s: float = 10.0) -> GroupOffsets:
    """The committed offsets on `topics` of every consumer group that has any."""
    client = admin(kafka)
    try:
        groups = [g.group_id for g in client.list_consumer_groups(request_timeout=timeout_s).result().valid]
        out: GroupOffsets = {}
        for group in sorted(groups):
            futures = client.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)],
                                                         request_timeout=timeout_s)
            for tp in futures[group].result().topic_partitions:
                if tp.topic in topics and tp.offset >= 0:
                    out.setdefault(group, {}).setdefault(tp.topic, {})[tp.partition] = tp.offset
        return out
    except KafkaException as exc:
        raise KafkaUnavailable(f"cannot list the consumer groups' offsets: {exc}") from None


def commit_group_offsets(kafka: KafkaSettings, offsets: GroupOffsets, timeout_s: float = 10.0) -> None:
    """Set each group's committed offsets (the groups must have no active member)."""
    client = admin(kafka)
    try:
        for group, topics in offsets.items():
            parts = [TopicPartition(t, p, o) for t, by_p in topics.items() for p, o in by_p.items()]
            futures = client.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(group, parts)],
                                                          request_timeout=timeout_s)
            futures[group].result()
    except KafkaException as exc:
        raise KafkaUnavailable(f"cannot set the consumer groups' offsets: {exc}") from None
