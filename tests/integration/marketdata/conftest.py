from __future__ import annotations

import json
import socket
import time
import urllib.request
from collections.abc import Callable

import pytest
from websockets.sync.client import ClientConnection, connect

from tradesim.adapters.redis.client import connect as redis_connect
from tradesim.adapters.redis.prices import PriceCache
from tradesim.settings import Settings
from tradesim.testing.waiting import wait_for  # noqa: F401 - re-exported to the tests


@pytest.fixture
def cache(settings: Settings) -> PriceCache:
    return PriceCache(redis_connect(settings.redis))


def cached_seq(cache: PriceCache, symbol: str) -> int:
    got = cache.latest(symbol)
    return got[0].seq if got else 0


def metric(settings: Settings, name: str) -> float:
    """The service's metric `name`, summed over its label sets (0 when it has none yet)."""
    url = f"http://{settings.marketdata.host}:{settings.marketdata.metrics_port}/metrics"
    body = urllib.request.urlopen(url, timeout=5).read().decode()  # noqa: S310 - our own loopback endpoint
    return sum(float(line.split()[-1]) for line in body.splitlines()
               if line.startswith((name + " ", name + "{")))


def ws_client(settings: Settings, rcvbuf: int | None = None) -> ClientConnection:
    if rcvbuf is None:
        return connect(settings.marketdata.client_ws_url, open_timeout=5)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect((settings.marketdata.host, settings.marketdata.ws_port))
    return connect(settings.marketdata.client_ws_url, sock=sock, open_timeout=5)


def recv_json(ws: ClientConnection, timeout_s: float = 10) -> dict:  # type: ignore[type-arg]
    """The next frame that is not a heartbeat: the server sends one to a client that was quiet for half of
    `heartbeat_s`, at any point between the frames a test expects."""
    deadline = time.monotonic() + timeout_s
    while (frame := json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic()))))["type"] == "heartbeat":
        pass
    return frame


def recv_until(ws: ClientConnection, pred: Callable[[dict], bool], timeout_s: float = 10) -> list[dict]:  # type: ignore[type-arg]
    frames = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        frame = json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
        frames.append(frame)
        if pred(frame):
            return frames
    raise AssertionError("frame never arrived")
