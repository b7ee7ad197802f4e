"""The watchdog's put-back of what a restarted component ran (Flink's jobs): retried while it fails, never dropped
by a second restart. A stand-in component records the calls; nothing is started."""

from __future__ import annotations

import threading
from concurrent.futures import wait
from pathlib import Path

import pytest

from tradesim.settings import load_settings
from tradesim.stack.errors import StackError
from tradesim.stack.tools import Report
from tradesim.stack.watchdog import PUT_BACK_TRIES, Watchdog


class _Flink:
    name = "flink"

    def __init__(self, fail_first: int = 0) -> None:
        self.calls = 0
        self.fail_first = fail_first
        self.release = threading.Event()
        self.release.set()

    def after_restart(self, report: Report) -> None:
        self.calls += 1
        self.release.wait(10)
        if self.calls <= self.fail_first:
            raise StackError("Kafka is not back yet")


@pytest.fixture
def dog(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Watchdog:
    monkeypatch.setenv("TRADESIM_HOME", str(tmp_path))
    return Watchdog(load_settings())


def _settle(dog: Watchdog, now: float) -> None:
    """Run a pass, then let the attempt it started finish."""
    dog._put_back_next(now)
    if dog._putting_back is not None:
        wait([dog._putting_back[2]], timeout=10)


def test_a_failed_put_back_is_tried_again_after_a_backoff(dog: Watchdog) -> None:
    comp = _Flink(fail_first=1)
    dog.supervisor.components = [comp]  # type: ignore[list-item]
    dog.put_back["flink"] = (0, 0.0)
    _settle(dog, 0.0)
    _settle(dog, 1.0)  # collects the failure
    tries, when = dog.put_back["flink"]
    assert (tries, comp.calls) == (1, 1)
    assert when > 1.0
    _settle(dog, when - 0.1)  # not yet
    assert comp.calls == 1
    _settle(dog, when)
    _settle(dog, when + 1)
    assert comp.calls == 2
    assert dog.put_back == {}
    assert not dog.busy()


def test_a_put_back_that_keeps_failing_is_given_up(dog: Watchdog) -> None:
    comp = _Flink(fail_first=100)
    dog.supervisor.components = [comp]  # type: ignore[list-item]
    dog.put_back["flink"] = (0, 0.0)
    for step in range(3 * PUT_BACK_TRIES):
        _settle(dog, 1000.0 * step)
    assert comp.calls == PUT_BACK_TRIES
    assert dog.put_back == {}


def test_a_restart_while_a_put_back_runs_gets_one_of_its_own(dog: Watchdog) -> None:
    comp = _Flink()
    comp.release.clear()
    dog.supervisor.components = [comp]  # type: ignore[list-item]
    dog.put_back["flink"] = (0, 0.0)
    dog._put_back_next(0.0)  # the attempt for the first restart, still running
    assert dog.busy()
    dog.put_back["flink"] = (0, 0.0)  # the server died and was restarted again meanwhile
    comp.release.set()
    _settle(dog, 1.0)  # the first attempt succeeded: the second restart's is started all the same
    _settle(dog, 2.0)
    assert comp.calls == 2
    assert dog.put_back == {}
