"""A process that must not outlive its parent (Linux): a uvicorn worker of the API, a JVM of flink_proc. Killed
with -9, a parent cannot stop its children, which would keep its ports with no one to restart them. And the
children a command runs in sessions of their own (out of reach of the terminal's Ctrl-C), which it stops itself
when it ends at once. Stdlib only."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator

#: prctl(2)'s PR_SET_PDEATHSIG
_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int, sig: int) -> None:
    """Have the kernel send `sig` to this process when `parent` (its parent) dies; the setting survives exec. If
    the parent died before the call, `sig` comes now. Elsewhere than Linux: nothing."""
    if not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, sig)
    if os.getppid() != parent:
        os.kill(os.getpid(), sig)


_CHILDREN: set[subprocess.Popen[str]] = set()
#: re-entrant: `stop_children` runs in a signal handler, which may interrupt the main thread holding it
_CHILDREN_LOCK = threading.RLock()


@contextlib.contextmanager
def own_session_child(proc: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    """A child started with `start_new_session=True`, known to `stop_children` while the block runs; killed (its
    whole session) when the block ends by an exception, e.g. the Ctrl-C of a command that waited on it."""
    with _CHILDREN_LOCK:
        _CHILDREN.add(proc)
    try:
        yield proc
    except BaseException:
        kill_session(proc)
        raise
    finally:
        with _CHILDREN_LOCK:
            _CHILDREN.discard(proc)


def stop_children() -> int:
    """Kill every child of `own_session_child` still running (a command ending at once: what it started must not
    go on without it); returns how many."""
    with _CHILDREN_LOCK:
        running = [p for p in _CHILDREN if p.poll() is None]
    for proc in running:
        kill_session(proc)
    return len(running)


def kill_session(proc: subprocess.Popen[str]) -> None:
    """Kill a child started with `start_new_session=True` and everything in its session (go's compiler, dpkg)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)
