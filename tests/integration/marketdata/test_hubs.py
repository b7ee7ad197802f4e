"""The service's processes (the consumers' and `marketdata.hubs` WebSocket hubs): a service copy of its own on free
ports, against the real Kafka and Redis of the stack; it shares the ticks' pub/sub with the stack's copy."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest
from websockets.sync.client import ClientConnection

from tradesim.adapters.redis.prices import PriceCache
from tradesim.services.ingest.publisher import publish_all
from tradesim.settings import Settings, settings_to_env
from tradesim.testing.factories import tick, unique_symbol

from .conftest import cached_seq, free_port, recv_json, recv_until, wait_for, ws_client

pytestmark = pytest.mark.integration
CLIENTS = 32  # spread by the kernel's hash: all on one of two hubs has a chance of 2 × 2⁻³²


def _metrics(settings: Settings) -> str:
    url = f"http://{settings.marketdata.host}:{settings.marketdata.metrics_port}/metrics"
    return urllib.request.urlopen(url, timeout=5).read().decode()  # type: ignore[no-any-return]  # noqa: S310


def _metric(settings: Settings, name: str) -> float | None:
    try:
        body = _metrics(settings)
    except OSError:
        return None
    values = [float(line.split()[1]) for line in body.splitlines() if line.startswith(name + " ")]
    return values[0] if values else None


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _hub_pids(parent: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if b"--hub" in argv and str(parent).encode() in argv:
                found.append(int(entry))
    return found


def _peer_ports(pid: int, port: int, state: str = "01") -> set[int]:
    """The client ports of the connections to `port` in `state` (01 established, 0A listening: port 0) that the
    process `pid` holds."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(int(link[8:-1]))
    peers = set()
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], int(fields[9])
            if fields[3] == state and int(local.split(":")[1], 16) == port and inode in inodes:
                peers.add(int(remote.split(":")[1], 16))
    return peers


@contextmanager
def service(settings: Settings, hubs: int) -> Iterator[tuple[Settings, subprocess.Popen[bytes]]]:
    md = settings.marketdata.model_copy(update={
        "ws_port": free_port(), "metrics_port": free_port(), "ws_url": None, "hubs": hubs,
        "group_id": f"test-hubs-{uuid.uuid4().hex[:8]}"})
    custom = settings.model_copy(update={"marketdata": md})
    proc = subprocess.Popen([sys.executable, "-m", "tradesim.services.marketdata"],
                            env={**os.environ, **settings_to_env(custom)})
    try:
        def listening() -> bool:
            pids = _hub_pids(proc.pid)
            return len(pids) == hubs and all(_peer_ports(pid, md.ws_port, "0A") for pid in pids)

        wait_for(lambda: listening() and _metric(custom, "tradesim_marketdata_clients") is not None, 30,
                 "the service's metrics and every hub's WebSocket port")
        yield custom, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait(15)


def _publish(settings: Settings, symbol: str, seq: int) -> None:
    publish_all(settings, [tick(symbol, seq)], run_id=1)


def test_two_hubs_share_the_port_and_every_client_gets_every_tick(settings: Settings, cache: PriceCache) -> None:
    symbol = unique_symbol()
    _publish(settings, symbol, 1)
    wait_for(lambda: cached_seq(cache, symbol) == 1, what="the first tick in the cache")
    with service(settings, hubs=2) as (custom, proc), ExitStack() as stack:
        clients: list[ClientConnection] = [stack.enter_context(ws_client(custom)) for _ in range(CLIENTS)]
        for ws in clients:
            ws.send(json.dumps({"op": "subscribe", "symbols": [symbol]}))
            assert recv_json(ws) == {"type": "subscribed", "symbols": [symbol]}
            assert recv_json(ws)["type"] == "snapshot"
        port = custom.marketdata.ws_port
        mine = {ws.socket.getsockname()[1] for ws in clients}
        first, second = (_peer_ports(hub, port) & mine for hub in _hub_pids(proc.pid))
        assert first, "the kernel spreads connections over both hubs"
        assert second, "the kernel spreads connections over both hubs"
        assert first | second == mine
        assert not first & second
        assert not _peer_ports(proc.pid, port), "the consumers' process serves no client"
        wait_for(lambda: _metric(custom, "tradesim_marketdata_clients") == CLIENTS, 10,
                 "the first process's /metrics to count both hubs' clients")

        _publish(settings, symbol, 2)
        for ws in clients:
            recv_until(ws, lambda f: f["type"] == "tick" and f["data"]["seq"] == 2)
        # acks, snapshots and the tick, from both hubs
        wait_for(lambda: (_metric(custom, "tradesim_marketdata_updates_out_total") or 0) >= 3 * CLIENTS, 10,
                 "every frame sent counted")


def test_a_hub_that_dies_stops_the_service_and_the_hubs_die_with_it(settings: Settings) -> None:
    with service(settings, hubs=2) as (_, proc):
        hubs = _hub_pids(proc.pid)
        os.kill(hubs[0], signal.SIGKILL)
        proc.wait(15)  # the service stops, so the stack restarts it whole
        wait_for(lambda: not _alive(hubs[1]), 10, "the other hub to stop with it")
    with service(settings, hubs=2) as (custom, proc):
        hubs = _hub_pids(proc.pid)
        proc.kill()
        wait_for(lambda: not any(_alive(h) for h in hubs), 10, "the hubs to exit after kill -9 of their parent")
        with pytest.raises(ConnectionRefusedError):
            ws_client(custom).close()
