"""Two engines for one adapter: the 18.16 server the stack runs, and chdb (modern ClickHouse in-process).

Every test that takes `store` runs once per engine, so SQL that only one engine accepts fails here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tradesim.adapters.clickhouse.client import ClickHouseClient
from tradesim.adapters.clickhouse.trades import TradeStore
from tradesim.settings import Settings

#: a database of this test process only: tests never touch the `tradesim` database of a running stack, nor the
#: database of another test run against the same server
TEST_DATABASE = f"tradesim_contract_{os.getpid()}"
ENGINES = ["server", "chdb"]


def reset(store: TradeStore) -> TradeStore:
    store.client.get().command(f"DROP DATABASE IF EXISTS {store.client.database}")
    store.create_schema()
    return store


@pytest.fixture(scope="session")
def server_client(settings: Settings) -> Iterator[ClickHouseClient]:
    client = ClickHouseClient(settings.clickhouse.model_copy(update={"database": TEST_DATABASE}))
    yield client
    try:
        client.get().command(f"DROP DATABASE IF EXISTS {TEST_DATABASE}")
    finally:
        client.close()


@pytest.fixture(scope="session")
def chdb_client(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseClient]:
    pytest.importorskip("chdb", reason="chdb is a dev dependency: pip install -e '.[dev]'")
    path: Path = tmp_path_factory.mktemp("chdb")
    # clickhouse-connect 1.12: a dsn with the chdb scheme selects its embedded chdb backend (`chdb:///abs/path`)
    client = ClickHouseClient(settings.clickhouse.model_copy(update={"database": TEST_DATABASE}),
                              dsn=f"chdb://{path}")
    yield client
    client.close()


@pytest.fixture
def clients(request: pytest.FixtureRequest) -> dict[str, ClickHouseClient]:
    return {name: request.getfixturevalue(f"{name}_client") for name in ENGINES}


@pytest.fixture(params=ENGINES)
def store(request: pytest.FixtureRequest) -> TradeStore:
    """An empty `trades` table on one engine."""
    client: ClickHouseClient = request.getfixturevalue(f"{request.param}_client")
    return reset(TradeStore(client))
