"""Loopback ports for tests and benchmarks that start a server of their own or need one nothing listens on."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

ESTABLISHED, LISTEN = "01", "0A"  # TCP states as /proc/net/tcp writes them


def port_of(url: str) -> int:
    """The port a URL connects to, its scheme's default when it names none."""
    parts = urlsplit(url)
    return parts.port or {"http": 80, "ws": 80, "https": 443, "wss": 443}[parts.scheme]


def free_port() -> int:
    """A loopback port that was free a moment ago: bound, read and released, so a server started next can take it
    and a client connecting to it meanwhile is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TcpSocket(NamedTuple):
    """One TCP socket as /proc/net/tcp{,6} shows it; `state` as written there (ESTABLISHED, LISTEN)."""

    local_address: str
    local_port: int
    remote_port: int
    state: str


def open_tcp(pids: Iterable[int]) -> dict[str, TcpSocket]:
    """The TCP sockets the processes hold open, by socket inode. Read from /proc/<pid>/fd and /proc/net/tcp{,6};
    a process gone meanwhile holds none."""
    inodes: set[str] = set()
    tables: list[str] = []
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
            tables = tables or [Path(f"/proc/{pid}/net/{t}").read_text() for t in ("tcp", "tcp6")]
        except OSError:
            continue  # gone meanwhile
        for fd in fds:
            try:
                link = os.readlink(fd)
            except OSError:
                continue  # closed meanwhile
            if link.startswith("socket:["):
                inodes.add(link[len("socket:["):-1])
    found: dict[str, TcpSocket] = {}
    for table in tables:
        for line in table.splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                address, port = fields[1].split(":")
                found[fields[9]] = TcpSocket(_address(address), int(port, 16), int(fields[2].rsplit(":", 1)[1], 16),
                                             fields[3])
    return found


def _address(hex_address: str) -> str:
    """/proc's spelling of an address: 32-bit words, each in the host's (little-endian) byte order."""
    raw = b"".join(bytes.fromhex(hex_address[i:i + 8])[::-1] for i in range(0, len(hex_address), 8))
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)
