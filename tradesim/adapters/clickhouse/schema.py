"""DDL of the analytics read model; every statement is valid on clickhouse-server 18.16 and on modern ClickHouse.

One row per order id, whatever the outcome (see docs/design/analytics-model.md for the reasons):
- ReplacingMergeTree(version) PARTITION BY toYYYYMM(decided_at) ORDER BY (symbol, decided_at_ms, order_id):
  an order's outcome is decided once (the ledger's conditional write), so every delivered copy has the same
  symbol and decision time and lands in the same partition under the same key; reads collapse copies (FINAL).
- `price`, `fee` are Decimal(18, 4), 0 when the order did not execute; more places are refused by the codec.
- time is `decided_at_ms` Int64 epoch ms (18.16 has no DateTime64) plus `decided_at` DateTime('UTC') for
  partitioning and ad-hoc SQL; Nullable columns hold what a record may lack (order type, reason, placing time).
"""

from __future__ import annotations

from tradesim.domain.trades import STATUSES

#: the live table's name; a rebuild fills another table and swaps it in (TradeStore.swap)
TABLE = "trades"


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
ENGINE = ("ENGINE = ReplacingMergeTree(version) PARTITION BY toYYYYMM(decided_at)"
          " ORDER BY (symbol, decided_at_ms, order_id)")


def create_table_statement(database: str, table: str = TABLE) -> str:
    """CREATE TABLE IF NOT EXISTS of the trades table under `table` (names are checked by the caller)."""
    columns = ",\n  ".join(f"{name} {kind}" for name, kind in TRADE_COLUMNS)
    return f"CREATE TABLE IF NOT EXISTS {database}.{table} (\n  {columns}\n) {ENGINE}"


def create_statements(database: str, table: str = TABLE) -> list[str]:
    """Idempotent DDL, in order."""
    return [f"CREATE DATABASE IF NOT EXISTS {database}", create_table_statement(database, table)]
