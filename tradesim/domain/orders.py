"""An order's identity and lifetime outside the book: which body an order id stands for, and when an accepted
order that nobody processed counts as expired."""

from __future__ import annotations

import hashlib
from decimal import Decimal
from typing import Literal

from tradesim.domain.events import OrderPlaced, OrderStatus, OrderType, RejectReason, Side, TimeInForce

#: the reason of an order that waited longer than the processing deadline (see `overdue`)
NOT_PROCESSED: RejectReason = "not_processed_in_time"
ShownStatus = OrderStatus | Literal["accepted"]


def price_problems(order_type: OrderType, has_limit: bool, has_stop: bool) -> list[tuple[str, str]]:
    """Which price fields an order type needs, as (field, problem) for each one missing or not allowed: limit and
    stop_limit orders need a limit_price, stop and stop_limit orders a stop_price, nothing else takes either."""
    needs = {"limit_price": order_type in ("limit", "stop_limit"), "stop_price": order_type in ("stop", "stop_limit")}
    has = {"limit_price": has_limit, "stop_price": has_stop}
    return [(name, f"{'required' if needed else 'not allowed'} for a {order_type} order")
            for name, needed in needs.items() if needed != has[name]]


def _text(value: Decimal | None) -> str:
    return "" if value is None else str(value.normalize())


def body_hash_of(symbol: str, side: Side, qty: int, order_type: OrderType, limit_price: Decimal | None,
                 stop_price: Decimal | None, time_in_force: TimeInForce, client_order_id: str | None,
                 at_ms: int | None = None, cancel_at_ms: int | None = None) -> str:
    """The hash of what the user asked for (not who, when or under which id): one order id carries one body, so
    a retry with another body is refused, however late it comes. 100 and 100.00 are the same price. A scripted
    order's market times are part of it; orders without them hash as they did before they existed."""
    fields = [symbol, side, str(qty), order_type, _text(limit_price), _text(stop_price), time_in_force,
              client_order_id or ""]
    if at_ms is not None:
        fields.append(f"at={at_ms}")
    if cancel_at_ms is not None:
        fields.append(f"cancel_at={cancel_at_ms}")
    return hashlib.sha256("\x1f".join(fields).encode()).hexdigest()


def body_hash(order: OrderPlaced) -> str:
    return body_hash_of(order.symbol, order.side, order.qty, order.order_type, order.limit_price,
                        order.stop_price, order.time_in_force, order.client_order_id, order.at_ms,
                        order.cancel_at_ms)


def may_rest(order: OrderPlaced) -> bool:
    """Whether a book can hold the order past its arrival: a scripted order waits for its market time, a limit or
    stop order for its price; an unscripted market order and an IOC order are decided as they arrive."""
    return order.at_ms is not None or (order.order_type != "market" and order.time_in_force != "ioc")


def overdue(placed_at_ms: int, now_ms: int, deadline_ms: int) -> bool:
    """True once an order placed at `placed_at_ms` can no longer start being processed: the execution job expires
    it (reason not_processed_in_time) instead of matching it."""
    return now_ms - placed_at_ms > deadline_ms


def read_grace_ms(deadline_ms: int) -> int:
    """How much longer than the deadline readers wait before they show an unprocessed order expired: the job may
    have taken it just in time and not yet written so (a tenth of the deadline, at most a minute)."""
    return min(60_000, deadline_ms // 10)


def stored_statuses(shown: ShownStatus) -> tuple[ShownStatus, ...]:
    """The stored statuses an order shown as `shown` may have (see shown_status): an expired one may still be
    stored as accepted."""
    return ("expired", "accepted") if shown == "expired" else (shown,)


def shown_may_differ(shown: ShownStatus) -> bool:
    """Whether a stored order's shown status can differ from `shown` after reading it (see shown_status): a
    filter on such a status keeps only some of what the store returns for it."""
    return shown in ("accepted", "expired")


def awaiting_book(status: str | None, reached_book: bool) -> bool:
    """Accepted, but neither decided nor in a book: the execution job may not have the order's record yet, so the
    record may be sent (again) — the job decides each order id once."""
    return status == "accepted" and not reached_book


def shown_status(status: ShownStatus, reached_book: bool, placed_at_ms: int, now_ms: int,
                 deadline_ms: int) -> tuple[ShownStatus, RejectReason | None]:
    """What a reader shows for a stored order: an `accepted` order that never reached the book and is overdue
    is expired — the execution job will decide exactly that if it ever sees the order, and if it never does
    (the record outlived `trade_orders` retention) that is its fate too."""
    if status == "accepted" and not reached_book and overdue(placed_at_ms, now_ms,
                                                             deadline_ms + read_grace_ms(deadline_ms)):
        return "expired", NOT_PROCESSED
    return status, None
