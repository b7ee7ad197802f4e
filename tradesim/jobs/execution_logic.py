"""Per-record glue of the execution job that is not a trading rule, in plain Python (unit-tested without Flink):
parsing records and the best-effort Redis read model. The rules themselves live in the domain: the order book
(`tradesim.domain.book`) and settling (`tradesim.domain.settlement`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Generic, TypeVar

# Book and Decision are pickled into the job's keyed state under this module's name by earlier releases; the
# names stay importable here so such checkpoints and savepoints still restore.
from tradesim.domain.book import Book, Decision  # noqa: F401
from tradesim.domain.errors import InvalidRecord
from tradesim.domain.events import OrderCancelRequested, OrderPlaced, Tick, decode_trade_order
from tradesim.jobs.guard import dead_letter

JOB_NAME = "tradesim-execution"
T = TypeVar("T")


def classify_order(raw: str, source_topic: str) -> tuple[OrderPlaced | OrderCancelRequested | None, str | None]:
    """(event, None) for a valid trade_orders record, (None, dead-letter JSON) for a malformed one; never raises."""
    try:
        return decode_trade_order(raw), None
    except InvalidRecord as exc:
        return None, dead_letter(raw, str(exc), source_topic, consumer=JOB_NAME)


def parse_tick_or_none(raw: str) -> Tick | None:
    from tradesim.domain.events import decode

    try:
        return decode(Tick, raw)
    except InvalidRecord:
        return None


class BestEffort(Generic[T]):
    """Hands each non-empty batch to `call`, for the Redis read model the job maintains; a failure pauses it.

    Best effort because the view is advisory: a missed holdings-view patch leaves a version gap, so the next patch
    drops the view and the API reads DynamoDB. After a failure, calls pause for `pause_s` so a Redis outage costs
    the job one timeout, not one per batch."""

    def __init__(self, call: Callable[[list[T]], object], *, pause_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic, on_error: Callable[[Exception], None] | None = None,
                 ) -> None:
        self.call, self.pause_s, self._clock, self._on_error = call, pause_s, clock, on_error
        self._paused_until = 0.0

    def apply(self, batch: list[T]) -> None:
        if not batch or self._clock() < self._paused_until:
            return
        try:
            self.call(batch)
        except Exception as exc:  # noqa: BLE001 - any client fault: the read model is advisory, the write is done
            self._paused_until = self._clock() + self.pause_s
            if self._on_error is not None:
                self._on_error(exc)
