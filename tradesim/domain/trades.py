"""An order's terminal outcome as the read models (search, ClickHouse) store it: one row per order id, whatever
the status, so a re-delivered outcome collapses onto its first copy."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, get_args

from tradesim.domain.errors import InvalidRecord
from tradesim.domain.events import OrderOutcome, OrderStatus, OrderType

Side = Literal["buy", "sell"]
STATUSES: tuple[str, ...] = get_args(OrderStatus)
ORDER_TYPES: tuple[str, ...] = get_args(OrderType)
ZERO = Decimal(0)


@dataclass(frozen=True)
class TradeRecord:
    """One order's outcome. `price` and `fee` are set for, and only for, executed orders; `order_type` and
    `placed_at_ms` are None for outcomes published before the event carried them."""

    order_id: str
    user_id: str
    symbol: str
    side: Side
    qty: int
    status: str
    decided_at_ms: int
    order_type: str | None = None
    placed_at_ms: int | None = None
    reason: str | None = None
    price: Decimal | None = None
    fee: Decimal | None = None

    def __post_init__(self) -> None:
        for name in ("order_id", "user_id", "symbol"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise InvalidRecord(name, "must be a non-empty string")
        if self.side not in ("buy", "sell"):
            raise InvalidRecord("side", f"must be 'buy' or 'sell', got {self.side!r}")
        if self.status not in STATUSES:
            raise InvalidRecord("status", f"must be one of {', '.join(STATUSES)}, got {self.status!r}")
        if self.order_type is not None and self.order_type not in ORDER_TYPES:
            raise InvalidRecord("order_type", f"must be one of {', '.join(ORDER_TYPES)}, got {self.order_type!r}")
        if isinstance(self.qty, bool) or not isinstance(self.qty, int) or self.qty <= 0:
            raise InvalidRecord("qty", f"must be a positive integer, got {self.qty!r}")
        for name in ("decided_at_ms", "placed_at_ms"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise InvalidRecord(name, f"must be a non-negative integer (epoch ms), got {value!r}")
        executed = self.status == "executed"
        if executed != (self.price is not None and self.fee is not None):
            raise InvalidRecord("price", "price and fee are required for, and only for, executed orders")
        if self.price is not None and (not isinstance(self.price, Decimal) or self.price <= 0):
            raise InvalidRecord("price", f"must be a positive Decimal, got {self.price!r}")
        if self.fee is not None and (not isinstance(self.fee, Decimal) or self.fee < 0):
            raise InvalidRecord("fee", f"must be a non-negative Decimal, got {self.fee!r}")

    @property
    def executed(self) -> bool:
        return self.status == "executed"

    @property
    def notional(self) -> Decimal:
        """price × qty of a fill; 0 for an order that did not execute."""
        return self.price * self.qty if self.price is not None else ZERO


def record_of(outcome: OrderOutcome) -> TradeRecord:
    """The read-model row of an outcome event."""
    return TradeRecord(
        order_id=outcome.order_id, user_id=outcome.user_id, symbol=outcome.symbol, side=outcome.side,
        qty=outcome.qty, status=outcome.status, decided_at_ms=outcome.decided_at_ms, order_type=outcome.order_type,
        placed_at_ms=outcome.placed_at_ms, reason=outcome.reason, price=outcome.fill_price, fee=outcome.fee)


@dataclass(frozen=True)
class Totals:
    """What a group of executions adds up to; the read models must show the same."""

    orders: int = 0
    executions: int = 0
    qty: int = 0
    notional: Decimal = ZERO
    fees: Decimal = ZERO

    def plus(self, record: TradeRecord) -> Totals:
        if not record.executed:
            return Totals(self.orders + 1, self.executions, self.qty, self.notional, self.fees)
        return Totals(self.orders + 1, self.executions + 1, self.qty + record.qty, self.notional + record.notional,
                      self.fees + (record.fee or ZERO))


def fold(records: Iterable[TradeRecord], key: Literal["symbol", "user_id"]) -> dict[str, Totals]:
    """Totals per symbol or per user of the distinct orders among `records` (the first copy of each id counts)."""
    seen: set[str] = set()
    out: dict[str, Totals] = {}
    for record in records:
        if record.order_id in seen:
            continue
        seen.add(record.order_id)
        group = getattr(record, key)
        out[group] = out.get(group, Totals()).plus(record)
    return out


Sort = Literal["decided_desc", "decided_asc", "qty_desc", "notional_desc"]
SORTS: tuple[str, ...] = get_args(Sort)
MAX_PAGE_SIZE = 500


@dataclass(frozen=True)
class TradeQuery:
    """A search over the read model: every given filter must match. `text` matches order id, symbol, status or
    reason words; times are [from_ms, to_ms) on the decision time; `cursor` is the previous page's next_cursor,
    only valid with the same filters and sort."""

    user_id: str | None = None
    symbol: str | None = None
    side: Side | None = None
    status: str | None = None
    from_ms: int | None = None
    to_ms: int | None = None
    text: str | None = None
    sort: Sort = "decided_desc"
    size: int = 50
    cursor: str | None = None


@dataclass(frozen=True)
class TradePage:
    """One page, in the query's order; `next_cursor` is None on the last page."""

    records: list[TradeRecord]
    next_cursor: str | None
    total: int


@dataclass(frozen=True)
class VolumeBucket:
    """Executed volume of one symbol in one time bucket [start_ms, start_ms + interval)."""

    symbol: str
    start_ms: int
    shares: int
    notional: Decimal
    trades: int
    vwap: Decimal
