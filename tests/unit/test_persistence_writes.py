"""The persistence sinks' write rule without Kafka (the sink is an in-memory stand-in: pure unit test of the rule).

A record that fails while the sink takes a record after it in the same pass is a poison record and goes to
dead_letter; records failing after the sink's last write ("trailing") are held and retried, since a sink that broke
midway (a disk filling up) looks the same (docs/design/persistence.md)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from tradesim.domain.trades import TradeRecord, record_of
from tradesim.ports import InjectedFault
from tradesim.services.persistence.pipeline import BatchWriter
from tradesim.testing.factories import outcomes

Sources = list[tuple[TradeRecord, int]]  # each record with its place in the log
Failed = list[tuple[TradeRecord, int, Exception]]


class DiskFull(Exception):
    """Not an outage (`Unavailable`) nor a refusal: as ClickHouse's code 243, not enough space."""


@dataclass
class MemorySink:
    """A TradeSink with `room` records of space left (None: no limit) that fails on the order ids in `poison`;
    all or nothing per write, a repeat a no-op, as the port says."""

    name: str = "memory"
    room: int | None = None
    poison: set[str] = field(default_factory=set)
    stored: dict[str, TradeRecord] = field(default_factory=dict)
    tries: dict[str, int] = field(default_factory=dict)  # order id → writes that carried it

    def write(self, records: Sequence[TradeRecord]) -> None:
        for record in records:
            self.tries[record.order_id] = self.tries.get(record.order_id, 0) + 1
            if record.order_id in self.poison:
                raise InjectedFault(f"cannot encode {record.order_id}")
        new = {r.order_id: r for r in records if r.order_id not in self.stored}
        if self.room is not None:
            if len(new) > self.room:
                raise DiskFull("Code: 243. Cannot reserve space: not enough space")
            self.room -= len(new)
        self.stored.update(new)


def _records(n: int) -> Sources:
    return [(record_of(o), i) for i, o in enumerate(outcomes(["u1"], ["AAA"], n))]


def _writer(sink: MemorySink) -> tuple[BatchWriter[int], list[tuple[int, str]]]:
    """A writer into the sink (no outage retries: the fake never raises Unavailable) and the letters it sends."""
    letters: list[tuple[int, str]] = []

    def write(records: list[TradeRecord]) -> bool:
        sink.write(records)
        return True

    return BatchWriter[int](sink.name, write, lambda src, reason: letters.append((src, reason))), letters


def _ids(sources: Sources) -> set[str]:
    return {record.order_id for record, _ in sources}


def test_records_failing_after_the_sinks_last_write_are_held_and_written_once_it_works_again() -> None:
    """The disk fills midway: the sink takes records 0..3, then fails the rest with an error that is not an outage.
    Nothing tells those from poison records, so none goes to dead_letter: they are held and retried, and written
    once the sink has room again."""
    records = _records(10)
    sink = MemorySink(room=4)
    writer, letters = _writer(sink)
    retried: list[list[int]] = []

    def held(failed: Failed) -> Sources:
        retried.append([src for _, src, _ in failed])
        assert len(retried) <= 2, "held after the sink had room again"
        if len(retried) == 2:
            sink.room = None  # space freed during the second wait
        return []  # nothing new came in: only the held records are written again

    assert writer.settle(records, held) == 10
    assert letters == []
    assert retried == [[4, 5, 6, 7, 8, 9]] * 2
    assert set(sink.stored) == _ids(records)


def test_a_record_failing_before_one_the_sink_takes_goes_to_dead_letter_after_one_more_try() -> None:
    """The sink took a record after it in the same pass, so the record fails on its own: set aside, nothing held."""
    records = _records(5)
    bad = records[1][0].order_id
    sink = MemorySink(poison={bad})
    writer, letters = _writer(sink)

    def held(failed: Failed) -> Sources:
        raise AssertionError(f"held {[src for _, src, _ in failed]}: the pass told them apart")

    assert writer.settle(records, held) == 4
    assert letters == [(1, f"memory failed on this record: InjectedFault: cannot encode {bad}")]
    assert sink.tries[bad] > 2  # in the batch, alone, and once more before it is set aside
    assert set(sink.stored) == _ids(records) - {bad}


def test_a_poison_record_last_in_its_batch_is_held_until_a_later_record_is_written() -> None:
    """Trailing, the record cannot be told from a sink that broke after the records before it; the next record
    read while it is held writes, and that tells: it goes to dead_letter then."""
    records = _records(5)
    first, later = records[:4], records[4:]
    bad = first[-1][0].order_id
    sink = MemorySink(poison={bad})
    writer, letters = _writer(sink)
    retried: list[list[int]] = []

    def held(failed: Failed) -> Sources:
        retried.append([src for _, src, _ in failed])
        assert len(retried) == 1, "held after a later record was written"
        return later

    assert writer.settle(first, held) == 4
    assert retried == [[3]]  # held once, not set aside on a guess
    assert [src for src, _ in letters] == [3]
    assert set(sink.stored) == _ids(records) - {bad}
