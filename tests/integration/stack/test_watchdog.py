"""The watchdog `tradesim up` leaves: kill -9 of a component → healthy again within 30 s without `up`; a component
that keeps dying is given up on, with the reason in `tradesim status`; `tradesim down` stops it first."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from tradesim.settings import Settings
from tradesim.stack import watchdog
from tradesim.stack.process import OsProcessTable
from tradesim.stack.supervisor import ComponentStatus, Supervisor
from tradesim.testing.waiting import wait_for

pytestmark = pytest.mark.integration


def _row(supervisor: Supervisor, name: str) -> ComponentStatus:
    return next(r for r in supervisor.status() if r.name == name)


@pytest.fixture
def dog(settings: Settings, stack: Supervisor) -> Iterator[None]:
    watchdog.start(settings)
    yield
    assert watchdog.stop(settings), "the watchdog died during the test"


# the services first, then the servers under them (each kill also tests that the rest rides it out)
@pytest.mark.parametrize("name", ["marketdata", "api", "dynamodb", "redis", "kafka"])
def test_a_killed_component_is_restarted_without_up(dog: None, supervisor: Supervisor, name: str) -> None:
    record = supervisor.state_file.load().components[name]
    before = _row(supervisor, name).restarts
    os.kill(record.pid, signal.SIGKILL)
    wait_for(lambda: not OsProcessTable().is_alive(record.handle), 10, f"{name} gone")

    def back() -> bool:
        row = _row(supervisor, name)
        return row.state == "running" and row.healthy and row.pid != record.pid

    wait_for(back, 30, f"{name} restarted by the watchdog and healthy", poll_s=0.25)
    assert _row(supervisor, name).restarts == before + 1
    try:
        wait_for(lambda: all(r.healthy for r in supervisor.status()), 60, "the whole stack healthy again", poll_s=0.5)
    except AssertionError:
        raise AssertionError(f"not healthy 60 s after {name} came back: {_unhealthy(supervisor)}") from None


def _unhealthy(supervisor: Supervisor) -> str:
    return "; ".join(f"{r.name}: {r.state} {r.detail}" for r in supervisor.status() if not r.healthy)


def test_a_component_that_keeps_dying_is_given_up_on(settings: Settings, supervisor: Supervisor) -> None:
    strict = settings.model_copy(update={"stack": settings.stack.model_copy(update={"watchdog_max_restarts": 1})})
    watchdog.start(strict)
    try:
        for attempt in (1, 2):
            record = supervisor.state_file.load().components["redis"]
            os.kill(record.pid, signal.SIGKILL)
            wait_for(lambda r=record: not OsProcessTable().is_alive(r.handle), 10, "redis gone")
            if attempt == 1:
                wait_for(lambda r=record: _row(supervisor, "redis").healthy
                         and _row(supervisor, "redis").pid != r.pid, 30, "the first restart")
        wait_for(lambda: "watchdog gave up" in (_row(supervisor, "redis").detail or ""), 30, "the give-up")
        row = _row(supervisor, "redis")
        assert row.state == "down"
        assert "died 2 times in 600 s" in (row.detail or "")
    finally:
        assert watchdog.stop(strict)
        supervisor.up()  # what `tradesim up` does for the user
    assert _row(supervisor, "redis").healthy


def test_the_watchdog_is_known_by_its_process_and_stops(settings: Settings, stack: Supervisor) -> None:
    handle = watchdog.start(settings)
    assert watchdog.running(settings) == handle
    assert watchdog.stop(settings)
    assert watchdog.running(settings) is None
    assert not OsProcessTable().is_alive(handle)


def test_for_the_logs_only_it_trims_a_running_servers_log_and_leaves_a_killed_one_down(
        settings: Settings, supervisor: Supervisor) -> None:
    """`stack.watchdog` off (as these tests run): `tradesim up` still leaves a watchdog, for the logs only, so a
    long run's logs stay bounded; it must not bring back what was killed on purpose."""
    logs = {c.name: c.log_path for c in supervisor.components}
    # a limit no server reaches on its own during the test: only the lines written here cross it
    limit = max((p.stat().st_size for p in logs.values() if p.exists()), default=0) + 256 * 1024
    small = settings.model_copy(update={"stack": settings.stack.model_copy(update={"log_rotate_mb": limit / 2**20})})
    victim = supervisor.state_file.load().components["marketdata"]
    watchdog.start(small, restarting=False)  # (replaces one a test's `up` left with the usual limit)
    try:
        os.kill(victim.pid, signal.SIGKILL)
        wait_for(lambda: not OsProcessTable().is_alive(victim.handle), 10, "marketdata gone")
        marker = f"line written by the test {os.getpid()}\n".encode()
        with open(logs["api"], "ab") as fh:  # as the running API appends to it
            fh.write(marker * (limit // len(marker) + 1))
        older = logs["api"].with_name("server.log.1")
        wait_for(lambda: older.exists() and marker in older.read_bytes(), 30, "the API's log copied aside",
                 poll_s=0.25)
        assert logs["api"].stat().st_size < limit
        # the pass that trimmed came after the kill, and a restarting watchdog restarts before it trims
        assert _row(supervisor, "marketdata").state == "down"
    finally:
        stopped = watchdog.stop(small)
        supervisor.up()
    assert stopped, "the watchdog died during the test"
    assert _row(supervisor, "marketdata").healthy
