"""How the Kafka archive reads a partition: a consume returns early only once its batch is full (otherwise it waits
out its timeout), so each one asks for no more records than are still due and the last batch of a partition
comes back as soon as its last record arrives."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition

from tradesim.adapters.kafka import archive
from tradesim.adapters.kafka.archive import Span, export_partition, read, records_after
from tradesim.settings import Settings


@dataclass
class FakeMessage:
    _partition: int
    _offset: int

    def error(self) -> None:
        return None

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return 1, 1000 + self._offset

    def key(self) -> bytes:
        return f"k{self._offset}".encode()

    def value(self) -> bytes:
        return f"v{self._partition}.{self._offset}".encode()

    def headers(self) -> None:
        return None


@dataclass
class FakeConsumer:
    """Partitions of `ends[p]` records from offset 0, all of them fetched already."""

    ends: dict[int, int]
    at: dict[int, int] = field(default_factory=dict)
    waits: int = 0  # consumes that would have waited out their timeout

    def assign(self, starts: list[TopicPartition]) -> None:
        self.at = {tp.partition: tp.offset for tp in starts}

    def incremental_unassign(self, parts: list[TopicPartition]) -> None:
        for tp in parts:
            del self.at[tp.partition]

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        out: list[FakeMessage] = []
        for p in list(self.at):
            take = min(self.ends[p] - self.at[p], num_messages - len(out))
            out += [FakeMessage(p, o) for o in range(self.at[p], self.at[p] + take)]
            self.at[p] += take
        if len(out) < num_messages:  # the real one waits for more until the timeout
            self.waits += 1
        return out

    def close(self) -> None:
        pass


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeConsumer:
    c = FakeConsumer({0: 12, 1: 5, 2: 30})
    monkeypatch.setattr(archive, "BATCH", 4)  # several batches per partition
    monkeypatch.setattr(archive, "_reader", lambda _kafka, starts: (c.assign(starts), c)[1])
    monkeypatch.setattr(archive, "spans", lambda _kafka, topics: [Span(topics[0], p, 0, n) for p, n in c.ends.items()])
    return c


def test_an_export_asks_for_no_more_than_is_due(settings: Settings, fake: FakeConsumer, tmp_path: Path) -> None:
    written = export_partition(settings.kafka, Span("t", 0, 3, 12), tmp_path / "p.gz")
    assert written == Span("t", 0, 3, 12)
    assert [r.offset for r in read(tmp_path / "p.gz")] == list(range(3, 12))
    assert fake.waits == 0


def test_reading_after_offsets_asks_for_no_more_than_is_due(settings: Settings, fake: FakeConsumer) -> None:
    got = list(records_after(settings.kafka, "t", {0: 10, 1: 0, 2: 4}))
    assert sorted((p, r.offset) for p, r in got) == [(0, 10), (0, 11), *((1, o) for o in range(5)),
                                                     *((2, o) for o in range(4, 30))]
    assert fake.waits == 0
