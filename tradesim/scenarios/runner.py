"""The simulated clock: paces a scenario's event times against the wall clock at a speed factor.

Sleeping here is pacing (replaying at 10× means waiting), not polling for a condition, so this is the one
place in the scenarios package that sleeps.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator

from tradesim.domain.events import Tick


class SimClock:
    """Simulated time paced against the wall clock; `speed` 10 runs ten times faster than real time.

    `speed=None` runs as fast as possible (no sleeping; `now_ms` still follows the events). Simulated time
    starts at `start_ms` (a scenario's start) or, if omitted, at the first event waited for; the real-time
    anchor is taken at that first wait, so building the clock early costs nothing. A consumer that falls
    behind is not slowed further: late events are released at once.
    """

    def __init__(self, speed: float | None = None, *, start_ms: int | None = None,
                 monotonic: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if speed is not None and not speed > 0:
            raise ValueError(f"speed must be > 0 (or None for as fast as possible), got {speed}")
        self.speed = speed
        self.start_ms = start_ms
        self._now_ms = start_ms
        self._monotonic = monotonic
        self._sleep = sleep
        self._anchor: float | None = None

    def now_ms(self) -> int | None:
        """Simulated now: the latest event time waited for (never moves backwards); None before any."""
        return self._now_ms

    def delay_s(self, event_time_ms: int) -> float:
        """Real seconds until `event_time_ms` is due (0 if due or unpaced); for async callers to await."""
        if self.speed is None:
            return 0.0
        if self.start_ms is None:
            self.start_ms = event_time_ms
        if self._anchor is None:
            self._anchor = self._monotonic()
        due = self._anchor + (event_time_ms - self.start_ms) / 1000.0 / self.speed
        return max(0.0, due - self._monotonic())

    def advance(self, event_time_ms: int) -> None:
        """Move simulated time forward without sleeping (after an async caller has waited `delay_s`)."""
        self._now_ms = event_time_ms if self._now_ms is None else max(self._now_ms, event_time_ms)

    def wait_until(self, event_time_ms: int) -> None:
        """Sleep the real-time equivalent of the simulated time still to go, then advance to it."""
        delay = self.delay_s(event_time_ms)
        if delay > 0:
            self._sleep(delay)
        self.advance(event_time_ms)


def paced(ticks: Iterable[Tick], clock: SimClock) -> Iterator[Tick]:
    """Yield each tick when the clock says it is due."""
    for tick in ticks:
        clock.wait_until(tick.event_time_ms)
        yield tick
