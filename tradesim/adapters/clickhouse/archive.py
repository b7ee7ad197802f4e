"""ClickHouse tables to files and back in the Native format (streamed both ways; every server version reads it).
The ClickHouse of the native stack (18.16) has no BACKUP statement."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path
from typing import BinaryIO, cast

from tradesim.adapters.clickhouse.client import ClickHouseClient, identifier
from tradesim.adapters.clickhouse.errors import translated

_CHUNK = 1 << 20


def _qualified(client: ClickHouseClient, table: str) -> str:
    return f"{client.database}.{identifier(table)}"


def row_count(client: ClickHouseClient, table: str) -> int:
    with translated(client.address):
        count = client.get().command(f"SELECT count() FROM {_qualified(client, table)}")  # noqa: S608 - checked names
        return int(cast(int, count))


def export_table(client: ClickHouseClient, table: str, path: Path) -> int:
    """Write every row of `table` (parts not yet merged included) to `path`; returns the row count written."""
    rows = row_count(client, table)
    with translated(client.address):
        stream = client.get().raw_stream(f"SELECT * FROM {_qualified(client, table)}",  # noqa: S608 - checked names
                                         fmt="Native")
        with stream, gzip.open(path, "wb", compresslevel=3) as f:
            shutil.copyfileobj(cast(BinaryIO, stream), f, _CHUNK)
    return rows


def import_table(client: ClickHouseClient, table: str, path: Path) -> None:
    """Insert the rows of `path` into `table` (same columns)."""
    with translated(client.address), gzip.open(path, "rb") as f:
        client.get().raw_insert(_qualified(client, table), insert_block=cast(BinaryIO, f), fmt="Native")
