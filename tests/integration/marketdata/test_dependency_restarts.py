"""Services ride out a dependency's restart: kill -9 of Kafka, Redis or DynamoDB under load, then its restart,
ends neither the market-data service, nor the API, nor the persistence service, nor a Flink job; a WebSocket
client stays connected and gets prices again within 10 s of the dependency's return."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time

import httpx
import pytest
from websockets.sync.client import ClientConnection

from tradesim.adapters.kafka.errors import KafkaDeliveryError
from tradesim.adapters.redis.prices import PriceCache
from tradesim.services.ingest.publisher import TickPublisher, publish_all
from tradesim.settings import Settings
from tradesim.stack import registry
from tradesim.stack.flink import Flink
from tradesim.stack.jobs import submit_standard_jobs
from tradesim.stack.process import OsProcessTable
from tradesim.stack.supervisor import Supervisor
from tradesim.testing.factories import tick, unique_symbol

from .conftest import cached_seq, recv_json, wait_for, ws_client

pytestmark = pytest.mark.integration
SERVICES = ("marketdata", "api", "persistence")


class Load:
    """Throughout: a tick feed of ~100/s on its own symbol and API reads, neither of which may stop a service."""

    def __init__(self, settings: Settings) -> None:
        self.settings, self.stop, self.reads = settings, threading.Event(), 0
        self.threads = [threading.Thread(target=self._reads, daemon=True),
                        threading.Thread(target=self._ticks, daemon=True)]

    def _reads(self) -> None:
        with httpx.Client(base_url=self.settings.api.client_url, timeout=5) as http:
            while not self.stop.is_set():
                try:
                    http.get("/readyz")  # 503 while a dependency is down is right; a dead API is not
                    self.reads += 1
                except httpx.HTTPError:
                    pass
                self.stop.wait(0.02)

    def _ticks(self) -> None:
        symbol, seq = unique_symbol("L"), 0
        publisher = TickPublisher(self.settings, paced=True)  # buffers while Kafka is down
        while not self.stop.is_set():
            seq += 1
            publisher.publish(tick(symbol, seq, run_id=1))
            publisher.poll(0)
            self.stop.wait(0.01)
        with contextlib.suppress(KafkaDeliveryError):  # the load's own ticks lost in the outage are not asserted
            publisher.close(10)

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)


@pytest.fixture
def jobs(settings: Settings) -> list[str]:
    submit_standard_jobs(settings)
    rest = Flink(settings).rest()
    return sorted({j.name for j in rest.jobs(with_checkpoints=False) if j.active})


def _price_seq(ws: ClientConnection, symbol: str, after: int, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        frame = recv_json(ws, max(0.05, deadline - time.monotonic()))
        data = frame.get("data") or {}
        if frame.get("type") in ("tick", "snapshot") and data.get("symbol") == symbol and data["seq"] > after:
            return int(data["seq"])
    raise AssertionError(f"no price of {symbol} after seq {after} within {timeout_s} s")


@pytest.mark.parametrize("dependency", ["redis", "dynamodb", "kafka"])
def test_services_ride_out_a_dependency_restart(settings: Settings, supervisor: Supervisor, jobs: list[str],
                                                cache: PriceCache, dependency: str) -> None:
    state = supervisor.state_file.load().components
    services = {name: state[name].handle for name in SERVICES}
    symbol = unique_symbol("R")
    publish_all(settings, [tick(symbol, 1)], run_id=1)
    wait_for(lambda: cached_seq(cache, symbol) == 1, 30, "the first price cached (a symbol never priced is unknown)")
    only = Supervisor(settings, registry.build(settings, [dependency]))
    with ws_client(settings) as ws, Load(settings) as load:
        ws.send(json.dumps({"op": "subscribe", "symbols": [symbol]}))
        wait_for(lambda: recv_json(ws)["type"] == "subscribed", 10, "subscribed")
        assert _price_seq(ws, symbol, 0, 10) >= 1
        record = state[dependency]
        os.kill(record.pid, signal.SIGKILL)
        wait_for(lambda: not OsProcessTable().is_alive(record.handle), 10, f"{dependency} gone")
        (row,) = only.up()
        assert row.healthy, row
        back = time.monotonic()
        publish_all(settings, [tick(symbol, s) for s in range(2, 5)], run_id=1)
        assert _price_seq(ws, symbol, 1, 10) > 1  # the same connection, prices again
        assert time.monotonic() - back < 10
        assert load.reads > 0
    for name, handle in services.items():
        assert OsProcessTable().is_alive(handle), f"{name} ended when {dependency} restarted"
    rest = Flink(settings).rest()
    wait_for(lambda: {j.name for j in rest.jobs(with_checkpoints=False) if j.state == "RUNNING"} >= set(jobs), 120,
             "every job running (Flink restarts a job's tasks itself; the job never ends)")
