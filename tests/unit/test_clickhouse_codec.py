"""TradeRecord ↔ ClickHouse row: exact both ways, malformed rows refused naming the field; errors translated."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from tradesim.adapters.clickhouse.client import ClickHouseClient
from tradesim.adapters.clickhouse.codec import MAX_DECIDED_MS, record_to_row, row_to_record
from tradesim.adapters.clickhouse.errors import ClickHouseRefused, error_code, translated
from tradesim.adapters.clickhouse.schema import TRADE_COLUMN_NAMES, by_user, create_statements
from tradesim.adapters.clickhouse.trades import TradeStore
from tradesim.domain.errors import InvalidRecord
from tradesim.domain.trades import TradeRecord
from tradesim.ports import Unavailable
from tradesim.settings import Settings

DECIDED = 1709285415123  # 2024-03-01T09:30:15.123Z


def _record(**changes: Any) -> TradeRecord:
    base: dict[str, Any] = dict(order_id="o-1", user_id="u-1", symbol="AAPL", side="buy", qty=7, status="executed",
                                decided_at_ms=DECIDED, order_type="limit", placed_at_ms=DECIDED - 5,
                                price=Decimal("187.1234"), fee=Decimal("0.0100"))
    base.update(changes)
    return TradeRecord(**base)


REJECTED = dict(status="rejected", reason="insufficient_funds", price=None, fee=None)


def _stored(record: TradeRecord) -> dict[str, Any]:
    """What a SELECT returns for the row the codec wrote."""
    return dict(zip(TRADE_COLUMN_NAMES, record_to_row(record, version=1), strict=True))


@pytest.mark.parametrize("record", [
    _record(),
    _record(**REJECTED),
    _record(status="cancelled", price=None, fee=None, order_type=None, placed_at_ms=None),
    _record(status="expired", price=None, fee=None, reason=""),
    _record(fee=Decimal(0), side="sell", order_type="stop_limit", placed_at_ms=0),
], ids=["executed", "rejected", "cancelled-old-event", "expired-empty-reason", "sell-no-fee"])
def test_round_trip_is_exact(record: TradeRecord) -> None:
    back = row_to_record(_stored(record))
    assert back == record
    if back.price is not None:
        assert isinstance(back.price, Decimal)


def test_row_values() -> None:
    row = _stored(_record())
    assert row["decided_at_ms"] == DECIDED
    assert row["decided_at"] == datetime(2024, 3, 1, 9, 30, 15, tzinfo=UTC)  # whole seconds, for partitioning
    assert row["version"] == 1
    rejected = _stored(_record(**REJECTED))
    assert (rejected["price"], rejected["fee"]) == (Decimal(0), Decimal(0))  # not NULL: sums stay plain
    assert rejected["reason"] == "insufficient_funds"


def test_trailing_zeros_beyond_four_places_are_fine() -> None:
    assert _stored(_record(price=Decimal("10.12340000")))["price"] == Decimal("10.1234")


@pytest.mark.parametrize(("change", "field"), [
    ({"price": Decimal("10.12345")}, "price"),
    ({"fee": Decimal("0.00001")}, "fee"),
    ({"price": Decimal("100000000000000")}, "price"),
    ({"qty": 2**64}, "qty"),
    ({"decided_at_ms": MAX_DECIDED_MS + 1}, "decided_at_ms"),
    ({"placed_at_ms": 2**63}, "placed_at_ms"),
])
def test_values_a_column_would_alter_are_refused(change: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRecord) as err:
        record_to_row(_record(**change), version=1)
    assert err.value.field == field


@pytest.mark.parametrize(("field", "value"), [
    ("price", 187.12),            # float never passes for money
    ("fee", "0.01"),
    ("qty", "7"),
    ("qty", True),
    ("symbol", None),
    ("side", "hold"),
    ("status", "filled"),
    ("order_id", ""),
    ("decided_at_ms", 1.5),
    ("placed_at_ms", "0"),
    ("order_type", 3),
])
def test_malformed_rows_name_the_field(field: str, value: object) -> None:
    row = _stored(_record())
    row[field] = value
    with pytest.raises(InvalidRecord) as err:
        row_to_record(row)
    assert err.value.field == field
    assert str(err.value).startswith(f"{field}:")


def test_missing_column_is_named() -> None:
    row = _stored(_record())
    del row["fee"]
    with pytest.raises(InvalidRecord, match="^fee: is missing"):
        row_to_record(row)


def test_schema_uses_only_types_18_16_knows() -> None:
    ddl = "\n".join(create_statements("tradesim"))
    assert "DateTime64" not in ddl
    assert "LowCardinality" not in ddl
    assert "ReplacingMergeTree(version)" in ddl
    assert "'executed' = 1" in ddl


def test_the_pair_has_the_same_columns_under_two_keys() -> None:
    database, trades, copy = create_statements("tradesim")
    assert database == "CREATE DATABASE IF NOT EXISTS tradesim"
    assert trades.startswith("CREATE TABLE IF NOT EXISTS tradesim.trades (")
    assert trades.endswith("ORDER BY (symbol, decided_at_ms, order_id)")
    assert copy.startswith("CREATE TABLE IF NOT EXISTS tradesim.trades_by_user (")
    assert copy.endswith("ORDER BY (user_id, decided_at_ms, order_id) SETTINGS index_granularity = 1024")
    columns = trades[trades.index("("):trades.index(") ENGINE")]
    assert copy[copy.index("("):copy.index(") ENGINE")] == columns
    assert "PARTITION BY toYYYYMM(decided_at)" in trades
    assert "PARTITION BY toYYYYMM(decided_at)" in copy


def test_a_rebuild_pair_gets_the_same_ddl() -> None:
    live, rebuild = create_statements("db")[1:], create_statements("db", "trades_rebuild")[1:]
    assert rebuild == [live[0].replace("db.trades (", "db.trades_rebuild ("),
                       live[1].replace("db.trades_by_user (", "db.trades_rebuild_by_user (")]
    assert by_user("trades_rebuild") == "trades_rebuild_by_user"


@pytest.mark.parametrize(("exc", "unavailable"), [
    (OperationalError("Network Error: connection refused"), True),
    (DatabaseError("server response: Code: 252, e.displayText() = DB::Exception: Too many parts"), True),
    (DatabaseError("boom", code=60), True),
    # the database is gone (a wiped or never `up`ped server): before, a 500 on /portfolio instead of its degraded answer
    (DatabaseError("Code: 81. DB::Exception: Database tradesim does not exist. (UNKNOWN_DATABASE)"), True),
    (DatabaseError("server response: Code: 62, e.displayText() = DB::Exception: Syntax error"), False),
    (DatabaseError("no code at all"), False),
    # a gateway before a restarting server: later, not a setting to fix
    (DatabaseError("HTTP driver received HTTP status 503, server response: <html>down</html>"), True),
    (DatabaseError("HTTP driver received HTTP status 401, server response: key please"), ClickHouseRefused),
    # ClickHouse itself refusing the password (a setting to fix): before, a DatabaseError, a 500 on /portfolio
    (DatabaseError("Code: 516. DB::Exception: default: Authentication failed: password is incorrect, or there is "
                   "no user with such name. (AUTHENTICATION_FAILED)"), ClickHouseRefused),
    (DatabaseError("server response: Code: 193, e.displayText() = DB::Exception: Wrong password for user default"),
     ClickHouseRefused),
    # a table replaced or altered by hand (a probe: every analytics route and /portfolio answered 500)
    (DatabaseError("HTTP driver received HTTP status 404, server response: Code: 47, e.displayText() = "
                   "DB::Exception: Unknown identifier: version"), ClickHouseRefused),
    (DatabaseError("server response: Code: 16, e.displayText() = DB::Exception: No such column user_id in table "
                   "trades_by_user"), ClickHouseRefused),
    (DatabaseError("server response: Code: 181, e.displayText() = DB::Exception: Storage Memory doesn't support "
                   "FINAL"), ClickHouseRefused),
])
def test_transient_errors_become_unavailable(exc: Exception, unavailable: bool | type[Exception]) -> None:
    expected: type[Exception] = (unavailable if not isinstance(unavailable, bool)
                                 else Unavailable if unavailable else DatabaseError)
    with pytest.raises(expected), translated("http://x"):
        raise exc


def test_error_code_prefers_the_client_field() -> None:
    assert error_code(DatabaseError("Code: 62", code=241)) == 241
    assert error_code(ValueError("plain")) is None


def test_store_from_settings_connects_lazily(settings: Settings) -> None:
    store = TradeStore.from_settings(settings.clickhouse.model_copy(update={"database": "elsewhere"}))
    assert store.name == "analytics"
    assert store.qualified == "elsewhere.trades"
    assert store.by_user_qualified == "elsewhere.trades_by_user"
    assert store.tables == ("trades", "trades_by_user")
    assert isinstance(store.client, ClickHouseClient)
    assert store.client._client is None
    with pytest.raises(ValueError, match="must match"):
        TradeStore(store.client, table="trades; DROP")


@pytest.mark.parametrize("error", [
    # a server wiped (or an external one never `up`ped) has no database
    "HTTPDriver for http://127.0.0.1:8123 returned response code 404)\n Code: 81. DB::Exception: Database tradesim "
    "does not exist. (UNKNOWN_DATABASE)",
    # `clickhouse.password` changed without the server's
    "HTTPDriver for http://127.0.0.1:8123 returned response code 516)\n Code: 516. DB::Exception: default: "
    "Authentication failed: password is incorrect, or there is no user with such name. (AUTHENTICATION_FAILED)",
], ids=["database-gone", "wrong-password"])
def test_a_portfolio_degrades_while_analytics_cannot_serve(settings: Settings, error: str) -> None:
    """Before, GET /portfolio answered 500 (a DatabaseError escaped) instead of its `degraded` answer."""
    import asyncio
    from collections.abc import Callable
    from types import SimpleNamespace

    from tradesim.services.api.portfolio import costs

    class Gone:
        def query(self, *_: object, **__: object) -> None:
            raise DatabaseError(error)

    store = TradeStore.from_settings(settings.clickhouse)
    store.client._client = Gone()  # type: ignore[assignment]

    async def read_model(call: Callable[..., object], *args: object) -> object:
        return call(*args)

    res = SimpleNamespace(analytics=store, read_model=read_model)
    assert asyncio.run(costs(res, "u-1", ["AAPL"], 0, 0)) is None  # type: ignore[arg-type]
