"""The process layer: spawn detached servers, tell whether a recorded pid is still *our* process, stop it.

A pid alone is not an identity (the kernel reuses pids), so a handle also keeps the process start time
from /proc; a live pid with another start time is an unrelated process and is never signalled.
"""

from __future__ import annotations

import atexit
import errno
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class ProcessHandle:
    """A started server process."""

    pid: int
    start_ticks: int


class ProcessTable(Protocol):
    """What the supervisor needs from the OS; faked in unit tests."""

    def spawn(self, argv: list[str], env: dict[str, str], cwd: Path, log_path: Path) -> ProcessHandle:
        """Start a detached process writing stdout+stderr to log_path; raises OSError if it cannot run."""
        ...

    def is_alive(self, handle: ProcessHandle) -> bool:
        """True if the pid runs and is the same process that was spawned (not a reused pid)."""
        ...

    def pid_exists(self, pid: int) -> bool:
        """True if any process has this pid."""
        ...

    def terminate(self, handle: ProcessHandle, grace_s: float) -> None:
        """SIGTERM, wait up to grace_s, then SIGKILL; never signals a reused pid."""
        ...

    def port_in_use(self, host: str, port: int) -> bool:
        """True if something listens on (or holds) host:port."""
        ...


def _start_ticks(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 2 (comm) may contain spaces; everything after the last ')' is space-separated.
    fields = stat.rsplit(")", 1)[1].split()
    state = fields[0]
    if state == "Z":  # a zombie has exited; only its parent has not reaped it yet
        return None
    return int(fields[19])  # field 22 overall: starttime in clock ticks since boot


class OsProcessTable:
    """The real process table (Linux /proc)."""

    # Servers outlive the Popen objects that started them; keeping the objects stops Python from warning
    # "subprocess is still running" when they are collected, and lets us reap children we started.
    _children: dict[int, subprocess.Popen[bytes]] = {}

    def spawn(self, argv: list[str], env: dict[str, str], cwd: Path, log_path: Path) -> ProcessHandle:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # survives the CLI and is not hit by its Ctrl-C
            )
        self._children[proc.pid] = proc
        ticks = _start_ticks(proc.pid)
        return ProcessHandle(pid=proc.pid, start_ticks=ticks if ticks is not None else -1)

    def is_alive(self, handle: ProcessHandle) -> bool:
        ticks = _start_ticks(handle.pid)
        return ticks is not None and ticks == handle.start_ticks

    def pid_exists(self, pid: int) -> bool:
        return _start_ticks(pid) is not None

    def terminate(self, handle: ProcessHandle, grace_s: float) -> None:
        if not self.is_alive(handle):
            return
        self._signal(handle.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            self._reap(handle.pid)
            if not self.is_alive(handle):
                return
            time.sleep(0.1)
        if self.is_alive(handle):
            self._signal(handle.pid, signal.SIGKILL)
            kill_deadline = time.monotonic() + 10
            while self.is_alive(handle) and time.monotonic() < kill_deadline:
                self._reap(handle.pid)
                time.sleep(0.05)

    @staticmethod
    def _signal(pid: int, sig: signal.Signals) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    @classmethod
    def reap_exited(cls) -> None:
        """Reap every child started here that has exited: a long-lived starter (the watchdog) otherwise keeps one
        zombie per server that died after it restarted it."""
        for pid in list(cls._children):
            cls._reap(pid)

    @classmethod
    def _reap(cls, pid: int) -> None:
        # Reap our own children (spawned in this same process) so they do not linger as zombies.
        proc = cls._children.get(pid)
        if proc is not None and proc.poll() is not None:
            del cls._children[pid]

    def port_in_use(self, host: str, port: int) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError as exc:
                if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                    return True
                raise
        return False


@atexit.register
def _detach_children() -> None:
    # Servers outlive the CLI by design. Mark their Popen objects finished so Python does not warn
    # "subprocess is still running" when it tears them down at exit.
    for proc in OsProcessTable._children.values():
        if proc.returncode is None:
            proc.returncode = 0
