"""Await a condition with a deadline (tests never sleep for a fixed time where a condition can be polled)."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(cond: Callable[[], object], timeout_s: float = 30, what: str | Callable[[], str] = "condition",
             poll_s: float = 0.02) -> None:
    """`what` names the condition in the error; a callable is asked at the timeout (to show what was last seen)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what() if callable(what) else what}")
