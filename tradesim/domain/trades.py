"""An executed trade: the row every read model (search, ClickHouse) stores, one per trade_id."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal

from tradesim.domain.errors import InvalidRecord

Side = Literal["buy", "sell"]


@dataclass(frozen=True)
class Trade:
    """A fill of an order. `trade_id` is deterministic (derived from the order id), so re-deliveries collapse."""

    trade_id: str
    order_id: str
    user_id: str
    symbol: str
    side: Side
    qty: int
    price: Decimal
    fee: Decimal
    executed_at: datetime  # timezone-aware UTC

    def __post_init__(self) -> None:
        for name in ("trade_id", "order_id", "user_id", "symbol"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise InvalidRecord(name, "must be a non-empty string")
        if self.side not in ("buy", "sell"):
            raise InvalidRecord("side", f"must be 'buy' or 'sell', got {self.side!r}")
        if isinstance(self.qty, bool) or not isinstance(self.qty, int) or self.qty <= 0:
            raise InvalidRecord("qty", f"must be a positive integer, got {self.qty!r}")
        if not isinstance(self.price, Decimal) or self.price <= 0:
            raise InvalidRecord("price", f"must be a positive Decimal, got {self.price!r}")
        if not isinstance(self.fee, Decimal) or self.fee < 0:
            raise InvalidRecord("fee", f"must be a non-negative Decimal, got {self.fee!r}")
        if not isinstance(self.executed_at, datetime) or self.executed_at.utcoffset() is None:
            raise InvalidRecord("executed_at", "must be a timezone-aware datetime")

    @property
    def notional(self) -> Decimal:
        return self.price * self.qty
