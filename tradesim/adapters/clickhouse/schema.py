"""DDL of the analytics read model; every statement is valid on clickhouse-server 18.16 and on modern ClickHouse.

One row per order id, whatever the outcome, in two tables with the same columns and rows (see
docs/design/analytics-model.md for the reasons):
- `trades`: ReplacingMergeTree(version) PARTITION BY toYYYYMM(decided_at) ORDER BY (symbol, decided_at_ms,
  order_id), for volume and marks; `trades_by_user`: the same rows ORDER BY (user_id, decided_at_ms, order_id),
  for a user's executions. An order's outcome is decided once (the ledger's conditional write), so every
  delivered copy has the same user, symbol and decision time and lands in the same partition under the same key;
  reads collapse copies.
- `price`, `fee` are Decimal(18, 4), 0 when the order did not execute; more places are refused by the codec.
- time is `decided_at_ms` Int64 epoch ms (18.16 has no DateTime64) plus `decided_at` DateTime('UTC') for
  partitioning and ad-hoc SQL; Nullable columns hold what a record may lack (order type, reason, placing time).
"""

from __future__ import annotations

from tradesim.domain.trades import STATUSES

#: the live table's name; a rebuild fills another pair of tables and swaps it in (TradeStore.swap)
TABLE = "trades"
#: the by-user copy of table `t` is `t` + this suffix: `trades_by_user`, `trades_rebuild_by_user`
BY_USER_SUFFIX = "_by_user"


def _enum(values: tuple[str, ...]) -> str:
    return "Enum8(" + ", ".join(f"'{v}' = {i}" for i, v in enumerate(values, start=1)) + ")"


TRADE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("order_id", "String"),
    ("user_id", "String"),
    ("symbol", "String"),
    ("side", _enum(("buy", "sell"))),
    ("order_type", "Nullable(String)"),
    ("status", _enum(STATUSES)),
    ("reason", "Nullable(String)"),
    ("qty", "UInt64"),
    ("price", "Decimal(18, 4)"),
    ("fee", "Decimal(18, 4)"),
    ("decided_at", "DateTime('UTC')"),
    ("decided_at_ms", "Int64"),
    ("placed_at_ms", "Nullable(Int64)"),
    ("version", "UInt64"),
)
TRADE_COLUMN_NAMES = tuple(name for name, _ in TRADE_COLUMNS)
TRADE_COLUMN_TYPES = tuple(kind for _, kind in TRADE_COLUMNS)
_PARTITIONED = "ENGINE = ReplacingMergeTree(version) PARTITION BY toYYYYMM(decided_at)"
ENGINE = f"{_PARTITIONED} ORDER BY (symbol, decided_at_ms, order_id)"
#: by month like `trades`: copies of an order share `decided_at`, so they meet in one partition and merges stay
#: bounded. A user's read is one short key range per part, read in whole granules: 1,024 rows instead of the
#: default 8,192 read 6x fewer rows (measured: docs/design/analytics-model.md) for an index 8x larger (~1 MB per
#: 25 M rows of this key)
BY_USER_ENGINE = f"{_PARTITIONED} ORDER BY (user_id, decided_at_ms, order_id) SETTINGS index_granularity = 1024"


def by_user(table: str) -> str:
    """The name of `table`'s by-user copy."""
    return f"{table}{BY_USER_SUFFIX}"


def create_table_statement(database: str, table: str = TABLE, *, engine: str = ENGINE) -> str:
    """CREATE TABLE IF NOT EXISTS of one table of the pair under `table` (names are checked by the caller)."""
    columns = ",\n  ".join(f"{name} {kind}" for name, kind in TRADE_COLUMNS)
    return f"CREATE TABLE IF NOT EXISTS {database}.{table} (\n  {columns}\n) {engine}"


def create_pair_statements(database: str, table: str = TABLE) -> list[str]:
    """CREATE TABLE IF NOT EXISTS of `table` and of its by-user copy."""
    return [create_table_statement(database, table),
            create_table_statement(database, by_user(table), engine=BY_USER_ENGINE)]


def create_statements(database: str, table: str = TABLE) -> list[str]:
    """Idempotent DDL, in order: the database, `table`, its by-user copy."""
    return [f"CREATE DATABASE IF NOT EXISTS {database}", *create_pair_statements(database, table)]
