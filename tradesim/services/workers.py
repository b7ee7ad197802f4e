"""What a service that runs as several processes needs: metrics all of them add to, and children that die with it.

Used by the API (uvicorn workers) and the market-data service (WebSocket hubs).
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

#: prometheus-client writes every process's metrics to files here when this variable is set at its import
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def use_shared_metrics(path: Path) -> None:
    """Empty `path` (left-overs of an earlier run would add to the counts) and have the children started after this
    write their metrics there; this process too only if prometheus_client is not imported yet (it picks its mode at
    import)."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(path)


def metrics_registry() -> CollectorRegistry:
    """The registry /metrics should serve: every process's files in shared mode, else this process's own."""
    from prometheus_client import REGISTRY, CollectorRegistry, multiprocess

    if MULTIPROC_ENV not in os.environ:
        return REGISTRY

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


def exit_with_parent(parent_pid: int) -> None:
    """Get SIGTERM when the parent dies. Killed with -9, it cannot stop its children, which would keep the port and
    answer with no one to restart them (Linux: PR_SET_PDEATHSIG; elsewhere a no-op)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != parent_pid:  # it died before the call
        os.kill(os.getpid(), signal.SIGTERM)
