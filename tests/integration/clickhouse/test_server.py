"""The native ClickHouse server: loopback-only sockets, persistence across down/up, bounded failures."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.integration.clickhouse.test_trades_contract import DATASET, T0, by_decision
from tradesim.adapters.clickhouse.client import ClickHouseClient
from tradesim.adapters.clickhouse.trades import TradeStore
from tradesim.ports import Unavailable
from tradesim.settings import Settings
from tradesim.stack.state import StateFile
from tradesim.stack.supervisor import Supervisor
from tradesim.testing.net import LISTEN, free_port, open_tcp

pytestmark = pytest.mark.integration


def _server_pid(settings: Settings) -> int:
    record = StateFile(settings.stack_dir).load().components.get("clickhouse")
    assert record is not None, "the clickhouse component is not running from this TRADESIM_HOME"
    return record.pid


def test_server_listens_only_on_its_loopback_ports(settings: Settings) -> None:
    c = settings.clickhouse
    sockets = open_tcp([_server_pid(settings)]).values()
    listening = {(s.local_address, s.local_port) for s in sockets if s.state == LISTEN}
    assert listening == {("127.0.0.1", c.http_port), ("127.0.0.1", c.tcp_port)}


def test_database_and_table_exist_after_up(settings: Settings) -> None:
    client = ClickHouseClient(settings.clickhouse)
    try:
        tables = client.get().query(f"SHOW TABLES FROM {client.database}").result_rows
    finally:
        client.close()
    assert ("trades",) in [tuple(r) for r in tables]


def test_data_survives_down_and_up(settings: Settings, supervisor: Supervisor,
                                   server_client: ClickHouseClient) -> None:
    from tests.integration.clickhouse.conftest import reset

    only_clickhouse = Supervisor(settings, [c for c in supervisor.components if c.name == "clickhouse"],
                                 supervisor.processes, supervisor.progress)
    store = reset(TradeStore(server_client))
    store.write(DATASET)
    store.write(DATASET[:2])
    before = store.volume(interval_s=60, from_ms=0, to_ms=2 * T0)
    pid_before = _server_pid(settings)

    only_clickhouse.down()
    server_client.close()  # drop pooled connections to the old process
    with pytest.raises(Unavailable):
        store.count_final()
    server_client.close()

    only_clickhouse.up()
    assert _server_pid(settings) != pid_before
    assert store.count_final() == len(DATASET)
    assert store.rows_final() == by_decision(DATASET)
    assert store.volume(interval_s=60, from_ms=0, to_ms=2 * T0) == before


def test_closed_port_raises_unavailable_quickly(settings: Settings) -> None:
    client = ClickHouseClient(settings.clickhouse.model_copy(update={"http_port": free_port()}))
    started = time.monotonic()
    with pytest.raises(Unavailable, match="did not answer"):
        TradeStore(client).count_final()
    with pytest.raises(Unavailable, match="did not answer") as refused:
        TradeStore(client).write(DATASET)
    assert time.monotonic() - started < 3
    # a probe: the API's 503 and the CLI's `error:` line carried the client's ~600 characters (URL, query, retries)
    assert str(refused.value).endswith("did not answer (connection refused)"), str(refused.value)


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A socket that accepts connections and never answers: the hung-server case."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(listener.getsockname()[1])
    stop.set()
    thread.join(timeout=2)
    for conn in held:
        conn.close()
    listener.close()


def test_hung_server_raises_unavailable_within_the_deadline(settings: Settings, silent_server: int) -> None:
    client = ClickHouseClient(settings.clickhouse.model_copy(update={"http_port": silent_server}),
                              connect_timeout_s=1, query_timeout_s=1)
    started = time.monotonic()
    with pytest.raises(Unavailable):
        TradeStore(client).count_final()
    assert time.monotonic() - started < 5
