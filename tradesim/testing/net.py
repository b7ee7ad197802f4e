"""Loopback ports for tests and benchmarks that start a server of their own or need one nothing listens on."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A loopback port that was free a moment ago: bound, read and released, so a server started next can take it
    and a client connecting to it meanwhile is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
