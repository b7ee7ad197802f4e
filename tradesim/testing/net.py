"""Loopback ports for tests and benchmarks that start a server of their own or need one nothing listens on."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from pathlib import Path

ESTABLISHED = "01"  # a TCP state as /proc/net/tcp writes it


def free_port() -> int:
    """A loopback port that was free a moment ago: bound, read and released, so a server started next can take it
    and a client connecting to it meanwhile is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def open_tcp(pids: Iterable[int]) -> dict[str, tuple[int, str]]:
    """The TCP sockets the processes hold open, by socket inode: (remote port, state as /proc writes it, e.g.
    ESTABLISHED). Read from /proc/<pid>/fd and /proc/net/tcp{,6}; a process gone meanwhile holds none."""
    inodes: set[str] = set()
    netns_pid = None
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue  # gone meanwhile
        netns_pid = netns_pid or pid
        for fd in fds:
            try:
                link = os.readlink(fd)
            except OSError:
                continue  # closed meanwhile
            if link.startswith("socket:["):
                inodes.add(link[len("socket:["):-1])
    found: dict[str, tuple[int, str]] = {}
    if netns_pid is None:
        return found
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{netns_pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                found[fields[9]] = (int(fields[2].rsplit(":", 1)[1], 16), fields[3])
    return found
