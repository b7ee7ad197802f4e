"""SimClock: paces event time against a (fake) wall clock at the speed factor."""

from __future__ import annotations

import pytest

from tradesim.domain.events import Tick
from tradesim.scenarios.runner import SimClock, paced


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _clock(speed: float | None, fake: FakeTime) -> SimClock:
    return SimClock(speed, start_ms=1_000_000, monotonic=fake.monotonic, sleep=fake.sleep)


def test_speed_ten_sleeps_a_tenth_of_simulated_time() -> None:
    fake = FakeTime()
    clock = _clock(10, fake)
    for t in (1_000_000, 1_001_000, 1_003_000, 1_003_000):
        clock.wait_until(t)
    assert fake.sleeps == pytest.approx([0.1, 0.2])
    assert clock.now_ms() == 1_003_000


def test_as_fast_as_possible_never_sleeps_but_tracks_time() -> None:
    fake = FakeTime()
    clock = _clock(None, fake)
    clock.wait_until(1_060_000)
    assert fake.sleeps == []
    assert clock.now_ms() == 1_060_000
    assert clock.delay_s(2_000_000) == 0.0


def test_a_late_consumer_is_not_slowed_further_and_time_never_goes_back() -> None:
    fake = FakeTime()
    clock = _clock(1, fake)
    clock.wait_until(1_000_000)
    fake.now += 5.0  # the caller spent 5 s elsewhere
    clock.wait_until(1_002_000)
    assert fake.sleeps == []
    clock.wait_until(1_001_000)
    assert clock.now_ms() == 1_002_000
    clock.wait_until(1_010_000)
    assert fake.sleeps == pytest.approx([5.0])


def test_paced_yields_every_tick_in_order() -> None:
    fake = FakeTime()
    ticks = [Tick(symbol="AAA", bid="1", ask="2", last="1", size=1, event_time_ms=1_000_000 + 500 * i, seq=i + 1,
                  scenario_id="t") for i in range(3)]
    assert list(paced(ticks, _clock(2, fake))) == ticks
    assert fake.sleeps == pytest.approx([0.25, 0.25])


def test_without_a_start_time_starts_at_the_first_event() -> None:
    fake = FakeTime()
    clock = SimClock(speed=4, monotonic=fake.monotonic, sleep=fake.sleep)
    assert clock.now_ms() is None
    clock.wait_until(5_000)
    clock.wait_until(7_000)
    assert fake.sleeps == pytest.approx([0.5])
    assert clock.now_ms() == 7_000


@pytest.mark.parametrize("speed", [0, -1])
def test_speed_must_be_positive(speed: float) -> None:
    with pytest.raises(ValueError, match="speed must be > 0"):
        SimClock(speed)
