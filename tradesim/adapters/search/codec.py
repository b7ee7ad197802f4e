"""Trade ↔ search document.

Money travels as decimal strings (exact in `_source`, parsed by the `scaled_float` mapping for range queries
and sorting) plus `notional_units`, the notional in 1/10000 units as an integer, which the sum aggregation adds
up exactly (see trades.py for why). Decoding validates every field and names the bad one.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from tradesim.domain.errors import InvalidRecord
from tradesim.domain.money import PRICE_QUANTUM, to_decimal
from tradesim.domain.trades import Trade

#: money is indexed in units of PRICE_QUANTUM (1/10000): scaled_float's scaling_factor and notional_units
MONEY_SCALE = int(1 / PRICE_QUANTUM)
#: the mapping's `integer` type
MAX_QTY = 2**31 - 1
#: largest integer a double (what aggregations sum in) holds exactly
MAX_EXACT_UNITS = 2**53
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TEXT_FIELDS = ("trade_id", "order_id", "user_id", "symbol", "side")


def money_units(value: Decimal, field: str) -> int:
    """`value` in 1/10000 units; refuses finer amounts, which the index would silently round."""
    scaled = value * MONEY_SCALE
    if scaled != scaled.to_integral_value():
        raise InvalidRecord(field, f"{value} has more decimal places than the index keeps ({PRICE_QUANTUM})")
    units = int(scaled)
    if abs(units) >= MAX_EXACT_UNITS:
        raise InvalidRecord(field, f"{value} is too large to aggregate exactly")
    return units


def format_time(moment: datetime) -> str:
    """UTC ISO-8601 with microseconds and a Z (the index keeps milliseconds, `_source` keeps it all)."""
    if moment.utcoffset() is None:
        raise InvalidRecord("executed_at", "must be a timezone-aware datetime")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def encode(trade: Trade) -> dict[str, Any]:
    """The document indexed for a trade; raises InvalidRecord if the index cannot hold it exactly."""
    if trade.qty > MAX_QTY:
        raise InvalidRecord("qty", f"{trade.qty} exceeds the index's integer range")
    money_units(trade.price, "price")
    money_units(trade.fee, "fee")
    return {
        "trade_id": trade.trade_id,
        "order_id": trade.order_id,
        "user_id": trade.user_id,
        "symbol": trade.symbol,
        "side": trade.side,
        "qty": trade.qty,
        "price": format(trade.price, "f"),
        "fee": format(trade.fee, "f"),
        "notional": format(trade.notional, "f"),
        "notional_units": money_units(trade.notional, "notional"),
        "executed_at": format_time(trade.executed_at),
    }


def _parse_time(value: object) -> datetime:
    if isinstance(value, bool):
        raise InvalidRecord("executed_at", f"must be an ISO-8601 string or epoch millis, got {value!r}")
    if isinstance(value, int):
        return _EPOCH + timedelta(milliseconds=value)
    if not isinstance(value, str):
        raise InvalidRecord("executed_at", f"must be an ISO-8601 string or epoch millis, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRecord("executed_at", f"not an ISO-8601 timestamp: {value!r}") from None
    if parsed.utcoffset() is None:
        raise InvalidRecord("executed_at", f"has no timezone: {value!r}")
    return parsed.astimezone(UTC)


def decode(doc: object) -> Trade:
    """A Trade from a document's `_source`; raises InvalidRecord naming the first bad field."""
    if not isinstance(doc, dict):
        raise InvalidRecord("document", f"must be a JSON object, got {type(doc).__name__}")
    missing = [f for f in (*_TEXT_FIELDS, "qty", "price", "fee", "executed_at") if f not in doc]
    if missing:
        raise InvalidRecord(missing[0], "missing")
    for name in _TEXT_FIELDS:
        if not isinstance(doc[name], str):
            raise InvalidRecord(name, f"must be a string, got {doc[name]!r}")
    qty = doc["qty"]
    if isinstance(qty, bool) or not isinstance(qty, int):
        raise InvalidRecord("qty", f"must be an integer, got {qty!r}")
    for name in ("price", "fee"):
        if not isinstance(doc[name], str):
            # A JSON number would have been a float on someone's way in: refuse rather than guess.
            raise InvalidRecord(name, f"must be a decimal string, got {doc[name]!r}")
    trade = Trade(
        trade_id=doc["trade_id"],
        order_id=doc["order_id"],
        user_id=doc["user_id"],
        symbol=doc["symbol"],
        side=doc["side"],
        qty=qty,
        price=to_decimal(doc["price"], "price"),
        fee=to_decimal(doc["fee"], "fee"),
        executed_at=_parse_time(doc["executed_at"]),
    )
    units = doc.get("notional_units")
    if units is not None and units != money_units(trade.notional, "notional"):
        raise InvalidRecord("notional_units", f"{units!r} does not match price × qty = {trade.notional}")
    return trade
