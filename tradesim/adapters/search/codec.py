"""TradeRecord ↔ search document, and the opaque cursor of a search.

Money travels as decimal strings (exact in `_source`, parsed by the `scaled_float` mapping for range queries)
plus `notional_units`, the notional in 1/10000 units as a long, which sorts exactly (see
docs/design/search-model.md). Times are epoch milliseconds. Decoding validates every field and names the bad one.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from tradesim.domain.errors import InvalidRecord
from tradesim.domain.money import PRICE_QUANTUM, to_decimal
from tradesim.domain.trades import TradeRecord
from tradesim.ports import InvalidCursor

#: money is indexed in units of PRICE_QUANTUM (1/10000): scaled_float's scaling_factor and notional_units
MONEY_SCALE = int(1 / PRICE_QUANTUM)
#: the mapping's `long`
MAX_LONG = 2**63 - 1
CURSOR_VERSION = 1

_REQUIRED_TEXT = ("order_id", "user_id", "symbol", "side", "status")
_OPTIONAL_TEXT = ("order_type", "reason")


def money_units(value: Decimal, field: str) -> int:
    """`value` in 1/10000 units; refuses finer amounts, which the index would silently round."""
    scaled = value * MONEY_SCALE
    if scaled != scaled.to_integral_value():
        raise InvalidRecord(field, f"{value} has more decimal places than the index keeps ({PRICE_QUANTUM})")
    return int(scaled)


def notional_units(notional: Decimal) -> int:
    """The `notional_desc` sort key: saturates at the long's range, so the few notionals the domain allows above
    it (~9.2 × 10^14) sort as equals (then by time) instead of being refused."""
    return min(money_units(notional, "notional"), MAX_LONG)


def encode(record: TradeRecord) -> dict[str, Any]:
    """The document indexed for an outcome; raises InvalidRecord if the index cannot hold it exactly.
    Fields that are None are left out."""
    if record.qty > MAX_LONG:
        raise InvalidRecord("qty", f"{record.qty} exceeds the index's long range")
    doc: dict[str, Any] = {
        "order_id": record.order_id,
        "user_id": record.user_id,
        "symbol": record.symbol,
        "side": record.side,
        "status": record.status,
        "qty": record.qty,
        "decided_at": record.decided_at_ms,
    }
    optional = {"order_type": record.order_type, "placed_at": record.placed_at_ms, "reason": record.reason}
    doc.update({k: v for k, v in optional.items() if v is not None})
    for name, money in (("price", record.price), ("fee", record.fee)):
        if money is not None:
            money_units(money, name)
            doc[name] = format(money, "f")
    doc["notional"] = format(record.notional, "f")
    doc["notional_units"] = notional_units(record.notional)
    return doc


def _int(doc: dict[str, Any], name: str) -> int:
    value = doc.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRecord(name, f"must be an integer, got {value!r}")
    return value


def _optional_int(doc: dict[str, Any], name: str) -> int | None:
    return None if doc.get(name) is None else _int(doc, name)


def _money(doc: dict[str, Any], name: str) -> Decimal | None:
    value = doc.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        # A JSON number would have been a float on someone's way in: refuse rather than guess.
        raise InvalidRecord(name, f"must be a decimal string, got {value!r}")
    return to_decimal(value, name)


def decode(doc: object) -> TradeRecord:
    """A TradeRecord from a document's `_source`; raises InvalidRecord naming the first bad field."""
    if not isinstance(doc, dict):
        raise InvalidRecord("document", f"must be a JSON object, got {type(doc).__name__}")
    missing = [f for f in (*_REQUIRED_TEXT, "qty", "decided_at") if f not in doc]
    if missing:
        raise InvalidRecord(missing[0], "missing")
    for name in _REQUIRED_TEXT:
        if not isinstance(doc[name], str):
            raise InvalidRecord(name, f"must be a string, got {doc[name]!r}")
    for name in _OPTIONAL_TEXT:
        if doc.get(name) is not None and not isinstance(doc[name], str):
            raise InvalidRecord(name, f"must be a string, got {doc[name]!r}")
    record = TradeRecord(
        order_id=doc["order_id"], user_id=doc["user_id"], symbol=doc["symbol"], side=doc["side"],
        qty=_int(doc, "qty"), status=doc["status"], decided_at_ms=_int(doc, "decided_at"),
        order_type=doc.get("order_type"), placed_at_ms=_optional_int(doc, "placed_at"), reason=doc.get("reason"),
        price=_money(doc, "price"), fee=_money(doc, "fee"),
    )
    units = doc.get("notional_units")
    if units is not None and units != notional_units(record.notional):
        raise InvalidRecord("notional_units", f"{units!r} does not match price × qty = {record.notional}")
    return record


def encode_cursor(after: Sequence[object], digest: str) -> str:
    """The opaque token of a position in a result list: the last hit's sort values and the query's digest."""
    raw = json.dumps([CURSOR_VERSION, list(after), digest], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, digest: str, kinds: Sequence[type]) -> list[object]:
    """The sort values a cursor carries, checked against the query it is used with (its digest) and the sort's
    value types; raises InvalidCursor."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        version, after, issued_for = json.loads(raw)
    except (binascii.Error, ValueError, TypeError, RecursionError):  # (RecursionError: JSON nested too deep)
        raise InvalidCursor("the cursor is not one this service handed out") from None
    if version != CURSOR_VERSION or not isinstance(after, list) or not isinstance(issued_for, str):
        raise InvalidCursor("the cursor is not one this service handed out")
    if issued_for != digest:
        raise InvalidCursor("the cursor belongs to a search with other filters or another sort")
    if len(after) != len(kinds) or not all(
            isinstance(v, k) and not isinstance(v, bool) for v, k in zip(after, kinds, strict=True)):
        raise InvalidCursor("the cursor is not one this service handed out")
    if any(isinstance(v, int) and not -(2**63) <= v < 2**63 for v in after):  # a long is all the engine sorts by
        raise InvalidCursor("the cursor is not one this service handed out")
    return after
