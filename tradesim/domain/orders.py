"""An order's identity and lifetime outside the book: which body an order id stands for, and when an accepted
order that nobody processed counts as expired."""

from __future__ import annotations

import hashlib
from decimal import Decimal
from typing import Literal

from tradesim.domain.events import OrderPlaced, OrderStatus, RejectReason

#: the reason of an order that waited longer than the processing deadline (see `overdue`)
NOT_PROCESSED: RejectReason = "not_processed_in_time"
ShownStatus = OrderStatus | Literal["accepted"]


def _text(value: Decimal | None) -> str:
    return "" if value is None else str(value.normalize())


def body_hash(order: OrderPlaced) -> str:
    """The hash of what the user asked for (not who, when or under which id): one order id carries one body, so
    a retry with another body is refused, however late it comes. 100 and 100.00 are the same price."""
    fields = (order.symbol, order.side, str(order.qty), order.order_type, _text(order.limit_price),
              _text(order.stop_price), order.time_in_force, order.client_order_id or "")
    return hashlib.sha256("\x1f".join(fields).encode()).hexdigest()


def overdue(placed_at_ms: int, now_ms: int, deadline_ms: int) -> bool:
    """True once an order placed at `placed_at_ms` can no longer start being processed: the execution job expires
    it (reason not_processed_in_time) instead of matching it, and readers show it expired."""
    return now_ms - placed_at_ms > deadline_ms


def shown_status(status: ShownStatus, reached_book: bool, placed_at_ms: int, now_ms: int,
                 deadline_ms: int) -> tuple[ShownStatus, RejectReason | None]:
    """What a reader shows for a stored order: an `accepted` order that never reached the book and is overdue
    is expired — the execution job will decide exactly that if it ever sees the order, and if it never does
    (the record outlived `trade_orders` retention) that is its fate too."""
    if status == "accepted" and not reached_book and overdue(placed_at_ms, now_ms, deadline_ms):
        return "expired", NOT_PROCESSED
    return status, None
