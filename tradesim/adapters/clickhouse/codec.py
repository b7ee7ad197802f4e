"""Trade ↔ ClickHouse row, exact: Decimal stays Decimal, time is integer microseconds."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from tradesim.domain.errors import InvalidRecord
from tradesim.domain.trades import Trade

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_US = timedelta(microseconds=1)
MONEY_PLACES = 4
MONEY_LIMIT = Decimal(10) ** (18 - MONEY_PLACES)  # Decimal(18, 4) holds |x| < 10^14
UINT64_LIMIT = 2**64
#: DateTime (UInt32 seconds) covers 1970 … 2106
DATETIME_RANGE = (EPOCH, datetime(2106, 2, 7, 6, 28, 15, tzinfo=UTC))


def to_micros(when: datetime) -> int:
    """Epoch microseconds of an aware datetime, computed without float."""
    return (when - EPOCH) // ONE_US


def from_micros(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def _money(field: str, value: Decimal) -> Decimal:
    exponent = value.as_tuple().exponent
    if not isinstance(exponent, int):
        raise InvalidRecord(field, f"must be a finite Decimal, got {value!r}")
    if abs(value) >= MONEY_LIMIT:
        raise InvalidRecord(field, f"is out of range for Decimal(18, {MONEY_PLACES}): {value}")
    if exponent < -MONEY_PLACES and value != value.quantize(Decimal(1).scaleb(-MONEY_PLACES)):
        raise InvalidRecord(field, f"has more than {MONEY_PLACES} decimal places ({value}); it would be rounded")
    return value


def trade_to_row(trade: Trade, version: int) -> list[Any]:
    """One row in `TRADE_COLUMN_NAMES` order; raises InvalidRecord for values the column would alter."""
    if trade.qty >= UINT64_LIMIT:
        raise InvalidRecord("qty", f"is out of range for UInt64: {trade.qty}")
    if not DATETIME_RANGE[0] <= trade.executed_at <= DATETIME_RANGE[1]:
        raise InvalidRecord("executed_at", f"must be within {DATETIME_RANGE[0]} … {DATETIME_RANGE[1]}")
    us = to_micros(trade.executed_at)
    return [
        trade.trade_id,
        trade.order_id,
        trade.user_id,
        trade.symbol,
        trade.side,
        trade.qty,
        _money("price", trade.price),
        _money("fee", trade.fee),
        from_micros(us - us % 1_000_000),  # whole seconds; the exact instant is executed_at_us
        us,
        version,
    ]


def _get(row: Mapping[str, Any], field: str, kind: type | tuple[type, ...]) -> Any:
    if field not in row:
        raise InvalidRecord(field, "is missing")
    value = row[field]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise InvalidRecord(field, f"has type {type(value).__name__}, expected {_kind_name(kind)}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def row_to_trade(row: Mapping[str, Any]) -> Trade:
    """A Trade from a named row (column → value); raises InvalidRecord naming the first bad field."""
    return Trade(
        trade_id=_get(row, "trade_id", str),
        order_id=_get(row, "order_id", str),
        user_id=_get(row, "user_id", str),
        symbol=_get(row, "symbol", str),
        side=_get(row, "side", str),
        qty=_get(row, "qty", int),
        price=_get(row, "price", Decimal),
        fee=_get(row, "fee", Decimal),
        executed_at=_instant(_get(row, "executed_at_us", int)),
    )


def _instant(us: int) -> datetime:
    try:
        return from_micros(us)
    except OverflowError:
        raise InvalidRecord("executed_at_us", f"is out of datetime range: {us}") from None

