"""A lazily connected clickhouse-connect client: to the configured server, or to an in-process chdb engine."""

from __future__ import annotations

import re
import threading

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from tradesim.adapters.clickhouse.compat import CompatHttpClient
from tradesim.adapters.clickhouse.errors import translated
from tradesim.settings import ClickHouseSettings, redacted

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def identifier(name: str) -> str:
    """A database name safe to splice into SQL unquoted (the same spelling works on every version)."""
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"ClickHouse database name {name!r} must match {_IDENTIFIER.pattern}")
    return name


class ClickHouseClient:
    """Connects on first use (never in `__init__`), so building one costs nothing and cannot fail."""

    def __init__(self, settings: ClickHouseSettings, *, dsn: str | None = None, connect_timeout_s: int = 2,
                 query_timeout_s: float | None = None) -> None:
        """`dsn="chdb:///path"` selects an in-process chdb engine instead of the server in `settings`;
        `query_timeout_s` defaults to the setting `clickhouse.timeout_s`."""
        self.settings = settings
        self.dsn = dsn
        self.connect_timeout_s = connect_timeout_s
        self.query_timeout_s = query_timeout_s if query_timeout_s is not None else settings.timeout_s
        self.database = identifier(settings.database)
        self._client: Client | None = None
        self._lock = threading.Lock()

    @property
    def address(self) -> str:
        """Where the server is, as messages print it (without a password)."""
        return redacted(self.dsn or self.settings.client_url)

    def get(self) -> Client:
        """The connected client; raises `Unavailable` if the server does not answer within the timeout."""
        with self._lock:
            if self._client is None:
                with translated(self.address):
                    self._client = self._connect()
            return self._client

    def _connect(self) -> Client:
        if self.dsn is not None:
            return clickhouse_connect.get_client(dsn=self.dsn)
        return CompatHttpClient(
            *self.settings.server,
            self.settings.user,
            self.settings.password.get_secret_value(),
            None,  # no default database: it may not exist yet, and every statement names it
            compress=False,  # 18.16 cannot do lz4/zstd over HTTP; gzip would only cost CPU on loopback
            query_retries=0,  # a down server must fail fast; callers decide about retries
            connect_timeout=self.connect_timeout_s,
            # bounds a server that accepts but never answers (a float works: urllib3's timeout; the stub says int)
            send_receive_timeout=self.query_timeout_s,  # type: ignore[arg-type]
            autogenerate_session_id=False,  # sessions serialise concurrent queries and 18.16 locks them
        )

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
