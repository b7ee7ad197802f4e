"""A process that must not outlive its parent (Linux): a uvicorn worker of the API, a JVM of flink_proc. Killed
with -9, a parent cannot stop its children, which would keep its ports with no one to restart them. Stdlib only."""

from __future__ import annotations

import ctypes
import os
import sys

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
