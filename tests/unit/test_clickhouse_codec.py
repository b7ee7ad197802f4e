"""Trade ↔ ClickHouse row: exact both ways, and malformed rows are refused naming the field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from tradesim.adapters.clickhouse.codec import row_to_trade, to_micros, trade_to_row
from tradesim.adapters.clickhouse.schema import TRADE_COLUMN_NAMES, create_statements
from tradesim.domain.errors import InvalidRecord
from tradesim.domain.trades import Trade


def _trade(**changes: Any) -> Trade:
    base: dict[str, Any] = dict(trade_id="t-1", order_id="o-1", user_id="u-1", symbol="AAPL", side="buy", qty=7,
                                price=Decimal("187.1234"), fee=Decimal("0.0100"),
                                executed_at=datetime(2024, 3, 1, 9, 30, 15, 123456, tzinfo=UTC))
    base.update(changes)
    return Trade(**base)


def _stored(trade: Trade) -> dict[str, Any]:
    """What a SELECT returns for the row the codec wrote."""
    return dict(zip(TRADE_COLUMN_NAMES, trade_to_row(trade, version=1), strict=True))


def test_round_trip_is_exact() -> None:
    trade = _trade()
    back = row_to_trade(_stored(trade))
    assert back == trade
    assert isinstance(back.price, Decimal)
    assert back.price == Decimal("187.1234")
    assert back.executed_at.microsecond == 123456
    assert back.executed_at.utcoffset() == timedelta(0)


def test_other_offsets_keep_the_instant() -> None:
    plus2 = timezone(timedelta(hours=2))
    trade = _trade(executed_at=datetime(2024, 3, 1, 11, 30, 15, 999999, tzinfo=plus2))
    back = row_to_trade(_stored(trade))
    assert back.executed_at == trade.executed_at
    assert back.executed_at.tzinfo == UTC


def test_row_values() -> None:
    row = _stored(_trade())
    assert row["executed_at_us"] == 1709285415123456
    assert row["executed_at"] == datetime(2024, 3, 1, 9, 30, 15, tzinfo=UTC)  # whole seconds
    assert row["version"] == 1
    assert to_micros(datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC)) == 1


def test_trailing_zeros_beyond_four_places_are_fine() -> None:
    assert _stored(_trade(price=Decimal("10.12340000")))["price"] == Decimal("10.1234")


@pytest.mark.parametrize(("change", "field"), [
    ({"price": Decimal("10.12345")}, "price"),
    ({"fee": Decimal("0.00001")}, "fee"),
    ({"price": Decimal("100000000000000")}, "price"),
    ({"qty": 2**64}, "qty"),
    ({"executed_at": datetime(1969, 12, 31, tzinfo=UTC)}, "executed_at"),
])
def test_values_a_column_would_alter_are_refused(change: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRecord) as err:
        trade_to_row(_trade(**change), version=1)
    assert err.value.field == field


@pytest.mark.parametrize(("field", "value"), [
    ("price", 187.12),            # float never passes for money
    ("fee", "0.01"),
    ("qty", "7"),
    ("qty", True),
    ("symbol", None),
    ("side", "hold"),
    ("trade_id", ""),
    ("executed_at_us", 1.5),
    ("executed_at_us", 10**20),   # beyond datetime's range
])
def test_malformed_rows_name_the_field(field: str, value: object) -> None:
    row = _stored(_trade())
    row[field] = value
    with pytest.raises(InvalidRecord) as err:
        row_to_trade(row)
    assert err.value.field == field
    assert str(err.value).startswith(f"{field}:")


def test_missing_column_is_named() -> None:
    row = _stored(_trade())
    del row["fee"]
    with pytest.raises(InvalidRecord, match="^fee: is missing"):
        row_to_trade(row)


def test_schema_uses_only_types_18_16_knows() -> None:
    ddl = "\n".join(create_statements("tradesim"))
    assert "DateTime64" not in ddl
    assert "LowCardinality" not in ddl
    assert "ReplacingMergeTree(version)" in ddl
    assert "ORDER BY (symbol, trade_id)" in ddl
