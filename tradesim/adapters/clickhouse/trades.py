"""The `trades` read model: idempotent inserts and the analytics queries, the same SQL on every engine."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from typing import Any, NamedTuple

from tradesim.adapters.clickhouse.client import ClickHouseClient
from tradesim.adapters.clickhouse.codec import from_micros, row_to_trade, to_micros, trade_to_row
from tradesim.adapters.clickhouse.errors import translated
from tradesim.adapters.clickhouse.schema import TRADE_COLUMN_NAMES, TRADE_COLUMN_TYPES, create_statements
from tradesim.domain.errors import InvalidRecord
from tradesim.domain.trades import Trade

#: VWAP is notional / volume, both exact; the quotient is rounded half-even to 8 places here, in Python,
#: so every engine returns the same digits (engines disagree on the scale of Decimal division).
VWAP_QUANTUM = Decimal("0.00000001")
MINUTE_US = 60_000_000

# S608 (SQL built from strings) is silenced below with reason "names only": the only spliced text is constants and
# the database name, which client.identifier() restricts to [A-Za-z_][A-Za-z0-9_]*; every value is a parameter.
_READ_COLUMNS = ", ".join(n for n in TRADE_COLUMN_NAMES if n not in ("executed_at", "version"))


class MinuteVolume(NamedTuple):
    """Traded volume of one symbol in one UTC minute."""

    symbol: str
    minute: datetime
    volume: int
    trade_count: int
    vwap: Decimal


def _micros(field: str, when: datetime | None) -> int | None:
    if when is None:
        return None
    if when.utcoffset() is None:
        raise InvalidRecord(field, "must be a timezone-aware datetime")
    return to_micros(when)


class TradeStore:
    """Reads and writes `{database}.trades`; every call raises `Unavailable` when the server does not answer."""

    def __init__(self, client: ClickHouseClient, clock_us: Callable[[], int] = lambda: time.time_ns() // 1000):
        self.client = client
        self.table = f"{client.database}.trades"
        self._clock_us = clock_us

    def create_schema(self) -> None:
        """Create the database and tables if missing (idempotent)."""
        with translated(self.client.address):
            conn = self.client.get()
            for statement in create_statements(self.client.database):
                conn.command(statement)

    def insert(self, trades: Iterable[Trade]) -> int:
        """Insert trades (validated first, so a bad one writes nothing); re-inserting one is harmless."""
        version = self._clock_us()  # a later delivery replaces an earlier one under FINAL
        rows = [trade_to_row(t, version) for t in trades]
        if not rows:
            return 0
        with translated(self.client.address):
            # Explicit column types: the library then skips DESCRIBE, whose 18.16 answer it cannot read.
            self.client.get().insert("trades", rows, database=self.client.database,
                                     column_names=list(TRADE_COLUMN_NAMES),
                                     column_type_names=list(TRADE_COLUMN_TYPES))
        return len(rows)

    def _rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        with translated(self.client.address):
            return [tuple(r) for r in self.client.get().query(sql, parameters=parameters).result_rows]

    def count_final(self) -> int:
        """Number of distinct trades (duplicates collapsed)."""
        return int(self._rows(f"SELECT count() FROM {self.table} FINAL")[0][0])  # noqa: S608 - names only

    def rows_final(self) -> list[Trade]:
        """All trades, duplicates collapsed, ordered by symbol then trade_id."""
        names = _READ_COLUMNS.split(", ")
        sql = f"SELECT {_READ_COLUMNS} FROM {self.table} FINAL ORDER BY symbol, trade_id"  # noqa: S608 - names only
        rows = self._rows(sql)
        return [row_to_trade(dict(zip(names, row, strict=True))) for row in rows]

    def volume_per_minute(self, symbol: str | None = None, start: datetime | None = None,
                          end: datetime | None = None) -> list[MinuteVolume]:
        """Volume, trade count and VWAP per symbol per UTC minute in [start, end), ordered by symbol, minute."""
        where = ["1 = 1"]
        # %(name)s placeholders are bound by the client: 18.16 has no server-side {name:Type} parameters.
        params: dict[str, Any] = {}
        if symbol is not None:
            where.append("symbol = %(symbol)s")
            params["symbol"] = symbol
        if (start_us := _micros("start", start)) is not None:
            where.append("executed_at_us >= %(start_us)s")
            params["start_us"] = start_us
        if (end_us := _micros("end", end)) is not None:
            where.append("executed_at_us < %(end_us)s")
            params["end_us"] = end_us
        sql = (
            "SELECT symbol, intDiv(executed_at_us, 60000000) AS minute_index, sum(qty) AS volume,"  # noqa: S608
            " count() AS trade_count, sum(toDecimal128(price, 4) * qty) AS notional"
            f" FROM {self.table} FINAL WHERE {' AND '.join(where)}"
            " GROUP BY symbol, minute_index ORDER BY symbol, minute_index"
        )
        out = []
        for sym, minute_index, volume, count, notional in self._rows(sql, params or None):
            with localcontext(prec=60):  # notional has up to 38 digits; the default 28 would round it
                vwap = (Decimal(notional) / Decimal(volume)).quantize(VWAP_QUANTUM, rounding=ROUND_HALF_EVEN)
            out.append(MinuteVolume(sym, from_micros(int(minute_index) * MINUTE_US), int(volume), int(count), vwap))
        return out
