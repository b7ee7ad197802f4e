"""A rebuild's copy of `trade_executed`: a consume returns early only once its batch is full (otherwise it waits out
its timeout), so each one asks for no more records than the offsets still due and a pass ends as soon as its last
record arrives."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from tests.unit.kafka_fakes import FakeConsumer
from tradesim.domain.events import encode
from tradesim.domain.trades import TradeRecord
from tradesim.services.persistence.rebuild import _copy
from tradesim.testing.factories import outcomes


@dataclass
class Sink:
    name: str = "fake"
    written: list[TradeRecord] = field(default_factory=list)

    def write(self, records: Sequence[TradeRecord]) -> None:
        self.written += records


def test_a_pass_asks_for_no_more_than_is_due() -> None:
    made = outcomes(["u1"], ["AAA"], 9)
    good = [encode(o) for o in made]
    logs = {0: good[:6] + [b"not an outcome"] * 4, 1: good[6:] + [b"{}"] * 2, 2: []}
    consumer, sink = FakeConsumer(logs), Sink()
    start, end = {0: 2, 1: 0}, {0: 10, 1: 5, 2: 0}
    read, written, skipped = _copy(consumer, "t", start, end, sink, 4, 1.0,  # type: ignore[arg-type]
                                   lambda _done, _total: None, 0, 13)
    assert (read, written, skipped) == (13, 7, 6)
    assert sorted(r.order_id for r in sink.written) == sorted(o.order_id for o in made[2:])
    assert consumer.waits == 0
