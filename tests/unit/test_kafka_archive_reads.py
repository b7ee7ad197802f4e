"""How the Kafka archive reads a partition: a consume returns early only once its batch is full (otherwise it waits
out its timeout), so each one asks for no more records than are still due and the last batch of a partition
comes back as soon as its last record arrives."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.kafka_fakes import FakeConsumer
from tradesim.adapters.kafka import archive
from tradesim.adapters.kafka.archive import Span, export_partition, read, records_after
from tradesim.settings import Settings


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeConsumer:
    c = FakeConsumer({p: [f"v{p}.{o}".encode() for o in range(n)] for p, n in {0: 12, 1: 5, 2: 30}.items()})
    monkeypatch.setattr(archive, "BATCH", 4)  # several batches per partition
    monkeypatch.setattr(archive, "_reader", lambda _kafka, starts: (c.assign(starts), c)[1])
    monkeypatch.setattr(archive, "spans",
                        lambda _kafka, topics: [Span(topics[0], p, 0, len(log)) for p, log in c.logs.items()])
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
