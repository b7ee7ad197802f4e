"""The persistence sinks' fetches: the broker may hold one for part of the batch window, never past it."""

from __future__ import annotations

from tradesim.services.persistence.pipeline import FETCH_WAIT_MS, fetch_held_ms
from tradesim.settings import Settings


def _with_flush(flush_ms: int) -> Settings:
    s = Settings()
    return s.model_copy(update={"persistence": s.persistence.model_copy(update={"flush_ms": flush_ms})})


def test_a_batch_window_of_a_second_lets_the_broker_hold_a_fetch() -> None:
    held = fetch_held_ms(_with_flush(1000))
    assert held == FETCH_WAIT_MS
    assert 0 < held < 1000


def test_a_short_window_keeps_fetches_answered_per_record() -> None:
    """Else a 1 ms window would make a consumer fetch a thousand times a second with nothing to read."""
    assert fetch_held_ms(_with_flush(2 * FETCH_WAIT_MS - 1)) == 0
    assert fetch_held_ms(_with_flush(1)) == 0
