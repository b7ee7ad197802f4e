"""DDL of the analytics read model; every statement is valid on clickhouse-server 18.16 and on modern ClickHouse.

Choices (18.16 sets the limits):
- `price`, `fee` are Decimal(18, 4): 18.16 supports Decimal without experimental flags, values come back as
  Python Decimal, and 4 places cover cents and sub-cent ticks. More places are refused by the codec, not rounded.
- time is `executed_at_us` Int64 epoch microseconds (18.16 has no DateTime64; microseconds are Python's own
  resolution, so a round trip is exact) plus `executed_at` DateTime('UTC') for partitioning and ad-hoc SQL.
- ReplacingMergeTree(version) ORDER BY (symbol, trade_id): a re-delivered execution has the same trade_id,
  symbol and month, so it lands in the same partition and `FINAL` shows it once (the highest version wins).
- Analytics read `trades FINAL` instead of a summing materialized view: a view would see every re-delivery
  and count it twice, while FINAL is exact at read-model sizes.
"""

from __future__ import annotations

TRADE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("trade_id", "String"),
    ("order_id", "String"),
    ("user_id", "String"),
    ("symbol", "String"),
    ("side", "Enum8('buy' = 1, 'sell' = 2)"),
    ("qty", "UInt64"),
    ("price", "Decimal(18, 4)"),
    ("fee", "Decimal(18, 4)"),
    ("executed_at", "DateTime('UTC')"),
    ("executed_at_us", "Int64"),
    ("version", "UInt64"),
)
TRADE_COLUMN_NAMES = tuple(name for name, _ in TRADE_COLUMNS)
TRADE_COLUMN_TYPES = tuple(kind for _, kind in TRADE_COLUMNS)


def create_statements(database: str) -> list[str]:
    """Idempotent DDL, in order."""
    columns = ",\n  ".join(f"{name} {kind}" for name, kind in TRADE_COLUMNS)
    return [
        f"CREATE DATABASE IF NOT EXISTS {database}",
        f"CREATE TABLE IF NOT EXISTS {database}.trades (\n  {columns}\n)"
        " ENGINE = ReplacingMergeTree(version)"
        " PARTITION BY toYYYYMM(executed_at)"
        " ORDER BY (symbol, trade_id)",
    ]
