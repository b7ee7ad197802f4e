"""Children in sessions of their own: out of reach of the terminal's Ctrl-C, killed when their caller stops waiting
or the command ends at once (a review of an interrupted backup: its orphaned `flink run` clients submitted jobs
after the command had said it stopped)."""

from __future__ import annotations

import signal
import subprocess
import threading

import pytest

from tradesim.lifetime import own_session_child, stop_children


def _sleeper() -> subprocess.Popen[str]:
    return subprocess.Popen(["sleep", "60"], start_new_session=True, text=True)


def test_a_child_whose_caller_stops_waiting_is_killed() -> None:
    proc = _sleeper()
    with pytest.raises(KeyboardInterrupt), own_session_child(proc):
        raise KeyboardInterrupt
    assert proc.poll() == -signal.SIGKILL


def test_stop_children_kills_what_other_threads_wait_on_and_only_that() -> None:
    proc, done = _sleeper(), threading.Event()
    finished = _sleeper()
    finished.kill()
    finished.wait()

    def wait_in_a_thread() -> None:
        with own_session_child(proc):
            proc.wait()
        done.set()

    waiter = threading.Thread(target=wait_in_a_thread)
    waiter.start()
    with own_session_child(finished):
        assert stop_children() == 1  # the finished one is not counted
    assert done.wait(10)
    waiter.join(10)
    assert proc.returncode == -signal.SIGKILL
    assert stop_children() == 0  # nothing registered any more
