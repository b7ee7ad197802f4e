"""TradeRecord ↔ ClickHouse row, exact: Decimal stays Decimal, time is integer epoch milliseconds."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from tradesim.domain.errors import InvalidRecord
from tradesim.domain.trades import ZERO, TradeRecord

MONEY_PLACES = 4
MONEY_QUANTUM = Decimal(1).scaleb(-MONEY_PLACES)
MONEY_LIMIT = Decimal(10) ** (18 - MONEY_PLACES)  # Decimal(18, 4) holds |x| < 10^14
UINT64_LIMIT = 2**64
INT64_LIMIT = 2**63
#: DateTime is UInt32 seconds: 1970-01-01 … 2106-02-07 06:28:15 UTC
MAX_DECIDED_MS = (2**32 - 1) * 1000 + 999


def _money(field: str, value: Decimal) -> Decimal:
    exponent = value.as_tuple().exponent
    if not isinstance(exponent, int):
        raise InvalidRecord(field, f"must be a finite Decimal, got {value!r}")
    if abs(value) >= MONEY_LIMIT:
        raise InvalidRecord(field, f"is out of range for Decimal(18, {MONEY_PLACES}): {value}")
    if exponent < -MONEY_PLACES and value != value.quantize(MONEY_QUANTUM):
        raise InvalidRecord(field, f"has more than {MONEY_PLACES} decimal places ({value}); it would be rounded")
    return value


def record_to_row(record: TradeRecord, version: int) -> list[Any]:
    """One row in `TRADE_COLUMN_NAMES` order; raises InvalidRecord for values a column would alter."""
    if record.qty >= UINT64_LIMIT:
        raise InvalidRecord("qty", f"is out of range for UInt64: {record.qty}")
    if record.decided_at_ms > MAX_DECIDED_MS:
        raise InvalidRecord("decided_at_ms", f"is beyond DateTime's range (2106): {record.decided_at_ms}")
    if record.placed_at_ms is not None and record.placed_at_ms >= INT64_LIMIT:
        raise InvalidRecord("placed_at_ms", f"is out of range for Int64: {record.placed_at_ms}")
    return [
        record.order_id,
        record.user_id,
        record.symbol,
        record.side,
        record.order_type,
        record.status,
        record.reason,
        record.qty,
        _money("price", record.price) if record.price is not None else ZERO,  # 0: the order did not execute
        _money("fee", record.fee) if record.fee is not None else ZERO,
        datetime.fromtimestamp(record.decided_at_ms // 1000, UTC),  # whole seconds; the instant is decided_at_ms
        record.decided_at_ms,
        record.placed_at_ms,
        version,
    ]


def _get(row: Mapping[str, Any], field: str, kind: type | tuple[type, ...], optional: bool = False) -> Any:
    if field not in row:
        raise InvalidRecord(field, "is missing")
    value = row[field]
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, kind):
        raise InvalidRecord(field, f"has type {type(value).__name__}, expected {_kind_name(kind)}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def row_to_record(row: Mapping[str, Any]) -> TradeRecord:
    """A TradeRecord from a named row (column → value); raises InvalidRecord naming the first bad field."""
    status = _get(row, "status", str)
    executed = status == "executed"
    price = _get(row, "price", Decimal)
    fee = _get(row, "fee", Decimal)
    return TradeRecord(
        order_id=_get(row, "order_id", str),
        user_id=_get(row, "user_id", str),
        symbol=_get(row, "symbol", str),
        side=_get(row, "side", str),
        qty=_get(row, "qty", int),
        status=status,
        decided_at_ms=_get(row, "decided_at_ms", int),
        order_type=_get(row, "order_type", str, optional=True),
        placed_at_ms=_get(row, "placed_at_ms", int, optional=True),
        reason=_get(row, "reason", str, optional=True),
        price=price if executed else None,
        fee=fee if executed else None,
    )
