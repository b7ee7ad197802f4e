"""The `trades` read model (`trades` + `trades_by_user`): idempotent writes, the analytics queries and rebuild swaps,
the same SQL on every engine.

SQL is built from strings in one way only: table and database names pass `identifier()` ([A-Za-z_][A-Za-z0-9_]*)
and are spliced in; every value is a `%(name)s` placeholder, bound by the client because 18.16 has no
server-side `{name:Type}` parameters. The `# noqa: S608` marks below stand for exactly that ("names only").
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from typing import Any, Literal

from tradesim.adapters.clickhouse.client import ClickHouseClient, identifier
from tradesim.adapters.clickhouse.codec import record_to_row, row_to_record
from tradesim.adapters.clickhouse.errors import translated
from tradesim.adapters.clickhouse.schema import (
    BY_USER_ENGINE,
    ENGINE,
    TABLE,
    TRADE_COLUMN_NAMES,
    TRADE_COLUMN_TYPES,
    by_user,
    create_pair_statements,
    create_statements,
    create_table_statement,
)
from tradesim.domain.trades import Totals, TradeRecord, VolumeBucket
from tradesim.settings import ClickHouseSettings

#: VWAP is notional / shares, both exact; the quotient is rounded half-even to 8 places here, in Python,
#: so every engine returns the same digits (engines disagree on the scale of Decimal division).
VWAP_QUANTUM = Decimal("0.00000001")
MAX_DATETIME_S = 2**32 - 1
_READ_COLUMNS = ", ".join(n for n in TRADE_COLUMN_NAMES if n not in ("decided_at", "version"))
_ALL_COLUMNS = ", ".join(TRADE_COLUMN_NAMES)
_EXECUTED = "status = 'executed'"
#: deadline of the upgrade fill (one INSERT ... SELECT of the whole table): it takes as long as the table is big,
#: and a fill cut off by the usual query deadline would be started again, and cut off again, at every `up`
FILL_TIMEOUT_S = 3600.0
#: notional without overflow: Decimal(18, 4) × UInt64 can exceed Decimal64, so the product is taken in Decimal128
_NOTIONAL = "toDecimal128(price, 4) * qty"


def _clock_us() -> int:
    return time.time_ns() // 1000


class TradeStore:
    """`{database}.{table}` and its by-user copy `{table}_by_user`: the analytics read model, a `TradeSink` and a
    `TradeAnalytics`. Every call raises `Unavailable` when the server does not answer (or cannot serve now)."""

    name = "analytics"

    def __init__(self, client: ClickHouseClient, table: str = TABLE, clock_us: Callable[[], int] = _clock_us) -> None:
        self.client = client
        self.table = identifier(table)
        self._clock_us = clock_us

    @classmethod
    def from_settings(cls, settings: ClickHouseSettings, table: str = TABLE) -> TradeStore:
        """A store on the configured server; it connects on first use."""
        return cls(ClickHouseClient(settings), table)

    def close(self) -> None:
        self.client.close()

    @property
    def qualified(self) -> str:
        return f"{self.client.database}.{self.table}"

    @property
    def by_user_table(self) -> str:
        return by_user(self.table)

    @property
    def by_user_qualified(self) -> str:
        return f"{self.client.database}.{self.by_user_table}"

    @property
    def tables(self) -> tuple[str, str]:
        """The pair: (`table`, its by-user copy)."""
        return self.table, self.by_user_table

    def _command(self, sql: str, parameters: dict[str, Any] | None = None) -> None:
        with translated(self.client.address):
            self.client.get().command(sql, parameters=parameters)

    def _rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        with translated(self.client.address):
            return [tuple(r) for r in self.client.get().query(sql, parameters=parameters).result_rows]

    # --- schema and rebuilds -----------------------------------------------------------------------------------

    def _columns(self, table: str | None = None) -> set[str]:
        rows = self._rows("SELECT name FROM system.columns WHERE database = %(db)s AND table = %(table)s",
                          {"db": self.client.database, "table": table or self.table})
        return {str(r[0]) for r in rows}

    def table_names(self) -> set[str]:
        """Every table of this store's database."""
        return {str(r[0]) for r in self._rows("SELECT name FROM system.tables WHERE database = %(db)s",
                                              {"db": self.client.database})}

    def clock_us(self) -> int:
        """This store's clock (row versions, table stamps), in microseconds."""
        return self._clock_us()

    def exists(self) -> bool:
        """Whether both tables of the pair exist."""
        return all(self._columns(t) for t in self.tables)

    def _rename(self, moves: Sequence[tuple[str, str]]) -> None:
        db = self.client.database
        self._command("RENAME TABLE " + ", ".join(f"{db}.{a} TO {db}.{b}" for a, b in moves))

    def create_schema(self) -> str | None:
        """Create the database and the pair of tables if missing (idempotent); returns the legacy name below, or None.

        A pair with a table of an older layout is renamed away whole (`<table>_legacy_<utc stamp>` and its
        `_by_user`, kept for inspection; `tradesim rebuild analytics` refills the new pair). When only one table of
        the pair exists (an upgrade from the version without `trades_by_user`), the other is created and filled
        from it with one INSERT ... SELECT, so portfolios keep their cost basis."""
        db = self.client.database
        self._command(create_statements(db, self.table)[0])
        found = {t: self._columns(t) for t in self.tables}
        legacy = None
        if any(cols and cols != set(TRADE_COLUMN_NAMES) for cols in found.values()):
            legacy = identifier(f"{self.table}_legacy_{datetime.now(UTC):%Y%m%d%H%M%S}")
            self._rename([(t, name) for t, name in zip(self.tables, (legacy, by_user(legacy)), strict=True)
                          if found[t]])
            found = {t: set() for t in self.tables}
        have = [t for t in self.tables if found[t]]
        if len(have) == 1:
            missing = next(t for t in self.tables if t != have[0])
            self._fill(missing, source=have[0])
        for statement in create_pair_statements(db, self.table):
            self._command(statement)
        return legacy

    def _fill(self, table: str, *, source: str) -> None:
        """Create `table` as a copy of `source` (the other table of the pair). The copy is filled under a staging
        name and renamed into place, so an interrupted fill leaves `table` missing and the next create_schema()
        starts it again. Writes meanwhile fail on the missing table (Unavailable) and are delivered again."""
        db = self.client.database
        staging = identifier(f"{table}_fill")
        self._command(f"DROP TABLE IF EXISTS {db}.{staging}")
        engine = BY_USER_ENGINE if table == self.by_user_table else ENGINE
        self._command(create_table_statement(db, staging, engine=engine))
        patient = ClickHouseClient(self.client.settings, dsn=self.client.dsn, query_timeout_s=FILL_TIMEOUT_S)
        try:
            with translated(patient.address):
                patient.get().command(f"INSERT INTO {db}.{staging} ({_ALL_COLUMNS})"  # noqa: S608 - names only
                                      f" SELECT {_ALL_COLUMNS} FROM {db}.{source}")
        finally:
            patient.close()
        self._rename([(staging, table)])

    def _overlaps(self, table: str) -> bool:
        return bool({table, by_user(table)} & set(self.tables))

    def fresh(self, table: str) -> TradeStore:
        """An empty pair `table` + `{table}_by_user` with this store's layout, in the same database (dropped first
        if it exists): where a rebuild writes before `swap`."""
        store = TradeStore(self.client, table, self._clock_us)
        if self._overlaps(store.table):
            raise ValueError(f"a rebuild table must not be the live table {self.table!r} or its by-user copy")
        store.drop()
        for statement in create_pair_statements(self.client.database, store.table):
            store._command(statement)
        return store

    def drop(self) -> None:
        """Drop both tables with their rows (a read model is rebuilt from the event log); the by-user copy first,
        so an interrupted drop leaves `table`, from which create_schema() would refill the copy."""
        for table in reversed(self.tables):
            self._command(f"DROP TABLE IF EXISTS {self.client.database}.{table}")

    def swap(self, rebuilt: TradeStore) -> None:
        """Make `rebuilt`'s pair this store's pair and drop the old one. All renames are one RENAME statement, both
        live tables out first, then both new ones in: 18.16 applies them one after the other, so a reader finds the
        old pair, the new pair or a missing table (UNKNOWN_TABLE reads as Unavailable: retry), never a new `trades`
        beside an old `trades_by_user`. `rebuilt` then names nothing."""
        if rebuilt.client.database != self.client.database or self._overlaps(rebuilt.table):
            raise ValueError(f"cannot swap {rebuilt.qualified} into {self.qualified}")
        db = self.client.database
        for table in rebuilt.tables:
            if not self._columns(table):
                raise ValueError(f"{db}.{table} does not exist")
        old = identifier(f"{self.table}_old_{self._clock_us()}")
        olds = (old, by_user(old))
        moves = [(live, gone) for live, gone in zip(self.tables, olds, strict=True) if self._columns(live)]
        self._rename([*moves, *zip(rebuilt.tables, self.tables, strict=True)])
        for gone in olds:
            self._command(f"DROP TABLE IF EXISTS {db}.{gone}")

    # --- TradeSink ---------------------------------------------------------------------------------------------

    def write(self, records: Sequence[TradeRecord]) -> None:
        """Insert the records into both tables, one INSERT each (validated first, so a bad one writes nothing).
        Writing an order id again adds a copy that reads collapse; within a batch only the first copy is sent."""
        version = self._clock_us()
        seen: set[str] = set()
        rows = []
        for record in records:
            if record.order_id not in seen:
                seen.add(record.order_id)
                rows.append(record_to_row(record, version))
        if not rows:
            return
        # Explicit writes, not a materialized view: a rebuild swaps the pair by RENAME, and a view would keep
        # feeding the table it was created for. `trades` first, then the by-user copy; if the process or the server
        # fails between the two, the batch is in one table only until it is delivered again, which it is: the
        # persistence service commits a batch only after write() returns, and the copies collapse. So either order
        # is safe; this one keeps the volume and marks table ahead of the portfolios, never behind.
        with translated(self.client.address):
            client = self.client.get()
            for table in self.tables:
                # Explicit column types: the library then skips DESCRIBE, whose 18.16 answer it cannot read.
                client.insert(table, rows, database=self.client.database, column_names=list(TRADE_COLUMN_NAMES),
                              column_type_names=list(TRADE_COLUMN_TYPES))

    # --- collapsed reads ---------------------------------------------------------------------------------------

    def count_final(self) -> int:
        """Number of distinct order ids (copies collapsed)."""
        return int(self._rows(f"SELECT count() FROM {self.qualified} FINAL")[0][0])  # noqa: S608 - names only

    def rows_final(self, *, by_user: bool = False) -> list[TradeRecord]:
        """All records, copies collapsed, in decision order (then order id); from the by-user copy if asked."""
        source = self.by_user_qualified if by_user else self.qualified
        sql = (f"SELECT {_READ_COLUMNS} FROM {source} FINAL"  # noqa: S608 - names only
               " ORDER BY decided_at_ms, order_id")
        return self._records(sql)

    def _records(self, sql: str, parameters: dict[str, Any] | None = None) -> list[TradeRecord]:
        names = _READ_COLUMNS.split(", ")
        return [row_to_record(dict(zip(names, row, strict=True))) for row in self._rows(sql, parameters)]

    def totals(self, key: Literal["symbol", "user_id"]) -> dict[str, Totals]:
        """What `tradesim.domain.trades.fold(records, key)` gives for the records written: the convergence check."""
        if key not in ("symbol", "user_id"):
            raise ValueError(f"key must be 'symbol' or 'user_id', got {key!r}")
        sql = (f"SELECT {key}, count(), countIf({_EXECUTED}), sumIf(qty, {_EXECUTED}),"  # noqa: S608 - names only
               f" sum({_NOTIONAL}), sum(toDecimal128(fee, 4)) FROM {self.qualified} FINAL GROUP BY {key}")
        return {str(k): Totals(int(orders), int(executions), int(qty), Decimal(notional), Decimal(fees))
                for k, orders, executions, qty, notional, fees in self._rows(sql)}

    # --- TradeAnalytics ----------------------------------------------------------------------------------------

    def volume(self, *, interval_s: int, from_ms: int, to_ms: int, symbol: str | None = None,
               user_id: str | None = None) -> list[VolumeBucket]:
        """Executed volume per symbol and bucket in [from_ms, to_ms), buckets aligned to the epoch, ordered by
        symbol then start; VWAP = notional / shares, half-even to 8 places."""
        if isinstance(interval_s, bool) or not isinstance(interval_s, int) or interval_s <= 0:
            raise ValueError(f"interval_s must be a positive integer, got {interval_s!r}")
        if from_ms >= to_ms:
            return []
        interval_ms = interval_s * 1000
        where, params = _window(from_ms, to_ms)
        params["interval_ms"] = interval_ms
        for column, value in (("symbol", symbol), ("user_id", user_id)):
            if value is not None:
                where.append(f"{column} = %({column})s")
                params[column] = value
        # A user's rows are few and contiguous in the by-user copy: collapse them after the filter. Without a user,
        # FINAL over the key range is the fastest exact plan measured (docs/design/analytics-model.md).
        source = (self._collapsed("symbol, decided_at_ms, qty, price", where) if user_id is not None
                  else f"{self.qualified} FINAL WHERE {' AND '.join(where)}")
        sql = (
            "SELECT symbol, intDiv(decided_at_ms, %(interval_ms)s) AS bucket, sum(qty), count(),"  # noqa: S608
            f" sum({_NOTIONAL}) FROM {source} GROUP BY symbol, bucket ORDER BY symbol, bucket"
        )
        out = []
        with localcontext(prec=60):  # notional has up to 38 digits; the default 28 would round the quotient
            for sym, bucket, shares, trades, notional in self._rows(sql, params):
                vwap = (notional / shares).quantize(VWAP_QUANTUM, rounding=ROUND_HALF_EVEN)
                out.append(VolumeBucket(sym, bucket * interval_ms, shares, notional, trades, vwap))
        return out

    def _collapsed(self, columns: str, where: list[str]) -> str:
        """A user's rows matching `where` (which names `user_id`), one per order id (the highest version, as FINAL
        would keep), read from the by-user copy, whose key starts with user_id: exact because every copy of an
        order has the same values."""
        return (f"(SELECT {columns} FROM {self.by_user_qualified}"  # noqa: S608 - names only
                f" WHERE {' AND '.join(where)} ORDER BY order_id, version DESC LIMIT 1 BY order_id)")

    def executions(self, user_id: str, *, to_ms: int | None = None) -> list[TradeRecord]:
        """The user's executed orders in decision order (then order id), before to_ms if given."""
        where = [_EXECUTED, "user_id = %(user_id)s"]
        params: dict[str, Any] = {"user_id": user_id}
        if to_ms is not None:
            where.append("decided_at_ms < %(to_ms)s")
            params["to_ms"] = to_ms
        # the by-user copy: its key starts with user_id, so the read is a key range and does not grow with other
        # users' volume
        sql = (f"SELECT {_READ_COLUMNS} FROM {self.by_user_qualified}"  # noqa: S608 - names only
               f" WHERE {' AND '.join(where)} ORDER BY decided_at_ms, order_id, version DESC LIMIT 1 BY order_id")
        return self._records(sql, params)

    def marks(self, symbols: Sequence[str], bucket_ends: Sequence[int]) -> dict[int, dict[str, Decimal]]:
        """end → {symbol: price of the last execution (any user) decided strictly before end}; a symbol without
        one is absent. One query: the last price per symbol per bucket, carried forward here. No FINAL: copies of
        an order have the same time, id and price, so they cannot change a maximum."""
        ends = sorted(set(bucket_ends))
        if not ends or not symbols:
            return {end: {} for end in bucket_ends}
        params: dict[str, Any] = {"symbols": tuple(sorted(set(symbols))), "last_end": ends[-1]}
        # index of the first end after the decision: arithmetic when the ends are evenly spaced but for a shorter
        # last bucket (a window's, cut at `to`: the API's every request), else a scan of the list of ends per row,
        # whose memory grows as rows × ends (1,440 one-minute ends over 300,000 fills exceeded the server's limit)
        steps = [b - a for a, b in zip(ends, ends[1:], strict=False)]
        step = steps[0] if steps else 1
        if all(s == step for s in steps[:-1]) and (not steps or steps[-1] <= step):
            params |= {"first_end": ends[0], "step": step}
            # a decision in the last bucket (before last_end, so less than a step after the one before) gets its
            # index from the same division
            bucket = "if(decided_at_ms < %(first_end)s, 0, intDiv(decided_at_ms - %(first_end)s, %(step)s) + 1)"
        else:
            params["ends"] = ends
            bucket = "arrayFirstIndex(e -> e > decided_at_ms, %(ends)s) - 1"
        sql = (
            f"SELECT symbol, {bucket} AS b, argMax(price, (decided_at_ms, order_id))"  # noqa: S608 - names only
            f" FROM {self.qualified} WHERE {_EXECUTED} AND symbol IN %(symbols)s"
            " AND decided_at_ms < %(last_end)s GROUP BY symbol, b"
        )
        last: dict[int, dict[str, Decimal]] = {}
        for sym, b, price in self._rows(sql, params):
            last.setdefault(int(b), {})[str(sym)] = Decimal(price)
        carried: dict[str, Decimal] = {}
        at: dict[int, dict[str, Decimal]] = {}
        for i, end in enumerate(ends):
            carried.update(last.get(i, {}))
            at[end] = dict(carried)
        return {end: at[end] for end in bucket_ends}


def _window(from_ms: int, to_ms: int) -> tuple[list[str], dict[str, Any]]:
    """Executed rows decided in [from_ms, to_ms); the `decided_at` bounds let the server skip whole partitions
    (its partition index knows `decided_at`, not `decided_at_ms`)."""
    where = [_EXECUTED, "decided_at_ms >= %(from_ms)s", "decided_at_ms < %(to_ms)s",
             "decided_at >= toDateTime(%(from_s)s)", "decided_at <= toDateTime(%(last_s)s)"]
    params: dict[str, Any] = {
        "from_ms": from_ms, "to_ms": to_ms,
        "from_s": min(max(from_ms // 1000, 0), MAX_DATETIME_S),
        "last_s": min(max((to_ms - 1) // 1000, 0), MAX_DATETIME_S),
    }
    return where, params



#: where a rebuild loads before the swap, with its by-user copy: `trades_rebuild_<µs>`, a pair of its own, so two
#: rebuilds at once cannot load into (or drop) each other's tables
REBUILD_PREFIX = f"{TABLE}_rebuild"


class Rebuild:
    """One rebuild of the analytics read model, in the shape `tradesim rebuild` drives: fresh() creates and returns
    the writer of an empty pair of its own, switch() swaps it in for the `trades` pair, live() writes through
    `trades`."""

    name = "analytics"
    #: a pair a rebuild left this long ago (it was killed before switch or discard) is dropped by the next one
    STALE_US = 24 * 3600 * 1_000_000

    def __init__(self, store: TradeStore, prefix: str = REBUILD_PREFIX) -> None:
        self.store = store
        self.prefix = prefix
        self.new: TradeStore | None = None

    def fresh(self) -> TradeStore:
        self.store.create_schema()  # the database may not exist yet (an external server never `up`ped)
        now_us = self.store.clock_us()
        self._drop_stale(now_us)
        self.new = self.store.fresh(identifier(f"{self.prefix}_{now_us}"))
        return self.new

    def _drop_stale(self, now_us: int) -> None:
        # a loaded pair (or its by-user half a stopped swap left), the one pair every rebuild loaded before they
        # had their own (the prefix alone), an old pair a swap did not get to drop
        left = re.compile(rf"(?P<pair>(?:{re.escape(self.prefix)}|{re.escape(self.store.table)}_old)(?:_(?P<us>\d+))?)"
                          rf"(?:{re.escape(by_user(''))})?")
        for name in self.store.table_names():
            found = left.fullmatch(name)
            if found and (found["us"] is None or int(found["us"]) < now_us - self.STALE_US):
                TradeStore(self.store.client, found["pair"]).drop()

    def discard(self) -> None:
        """Drop the loaded pair unless a switch may have begun renaming it in (then the live pair is missing a
        table, and the loaded one is what `trades` is to become: kept, as a failed swap leaves it)."""
        if self.new is not None and self.store.exists():
            self.new.drop()
            self.new = None

    def switch(self) -> None:
        if self.new is None:
            raise RuntimeError("switch() before fresh(): there is no new table to switch to")
        self.store.swap(self.new)
        self.new = None

    def live(self) -> TradeStore:
        return self.store
