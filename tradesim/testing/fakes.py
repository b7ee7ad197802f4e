"""A fake process table and component for unit tests of the supervisor (no real process is started)."""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from pathlib import Path

from tradesim.settings import Settings
from tradesim.stack.component import Component, PortSpec, Unhealthy
from tradesim.stack.process import ProcessHandle
from tradesim.stack.tools import Report


@dataclass
class FakeProcesses:
    """Processes as a dict; ports held by 'foreign' processes, and hosts no port can be bound on, can be declared."""

    alive: dict[int, int] = field(default_factory=dict)  # pid -> start_ticks
    foreign_ports: set[int] = field(default_factory=set)
    unbindable_hosts: set[str] = field(default_factory=set)  # as an address not of this machine (192.0.2.1)
    spawned: list[list[str]] = field(default_factory=list)
    terminated: list[int] = field(default_factory=list)
    next_pid: int = 1000

    def spawn(self, argv: list[str], env: dict[str, str], cwd: Path, log_path: Path) -> ProcessHandle:
        self.next_pid += 1
        self.alive[self.next_pid] = 7
        self.spawned.append(argv)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a") as fh:
            fh.write(f"fake {argv[0]} started\n")
        return ProcessHandle(self.next_pid, 7)

    def is_alive(self, handle: ProcessHandle) -> bool:
        return self.alive.get(handle.pid) == handle.start_ticks

    def pid_exists(self, pid: int) -> bool:
        return pid in self.alive

    def terminate(self, handle: ProcessHandle, grace_s: float) -> None:
        if self.is_alive(handle):
            del self.alive[handle.pid]
            self.terminated.append(handle.pid)

    def port_in_use(self, host: str, port: int) -> bool:
        if host in self.unbindable_hosts:  # what the real bind raises there
            raise OSError(errno.EADDRNOTAVAIL, os.strerror(errno.EADDRNOTAVAIL))
        return port in self.foreign_ports

    def kill(self, pid: int) -> None:
        self.alive.pop(pid, None)


class FakeComponent(Component):
    """Healthy whenever its (fake) process is alive, unless told otherwise."""

    def __init__(self, settings: Settings, name: str, port: int, processes: FakeProcesses) -> None:
        super().__init__(settings)
        self.name = name
        self.host = "127.0.0.1"
        self.port = port
        self.processes = processes
        self.healthy = True
        self.answers_after = 0  # probes that fail before it answers (a server still booting)
        self.provisioned = 0
        self.initialized = 0
        self.fail_provision: Exception | None = None

    def ports(self) -> list[PortSpec]:
        return [PortSpec(self.host, self.port, f"TRADESIM_{self.name.upper()}__PORT")]

    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def version(self) -> str:
        return "1.0"

    def provision(self, report: Report) -> None:
        if self.fail_provision:
            raise self.fail_provision
        self.provisioned += 1

    def configure(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)

    def argv(self) -> list[str]:
        return [f"{self.name}-server"]

    def check_health(self) -> None:
        from tradesim.stack.state import StateFile

        record = StateFile(self.settings.stack_dir).load().components.get(self.name)
        if not self.healthy or record is None or not self.processes.is_alive(record.handle):
            raise Unhealthy("fake: not answering")
        if self.answers_after > 0:
            self.answers_after -= 1
            raise Unhealthy("fake: still booting")

    def initialize(self, report: Report) -> None:
        self.initialized += 1
