"""/orders: place (validated, idempotent, acknowledged by Kafka before 202), show, list, cancel.

Placing an order, in order: claim the Idempotency-Key (Redis SET NX with the body's hash) → price fresh in Redis
and portfolio able to cover it (advisory: the Redis holdings view, filled from DynamoDB when missing) →
`OrderPlaced` on `trade_orders`, wait for Kafka's ack → one Redis pipeline keeps the answer under the key and
the order as pending → 202. Any failure before the ack releases the claim and answers an error, so nothing is
half-done.

Reading: the `Orders` item the execution job writes (the outcome, or `accepted` once an order rests) is the
truth; until it exists the order is answered from its pending record (`adapters.redis.pending`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any

import anyio
import redis
from fastapi import APIRouter, Header, Path, Query, Response

from tradesim.adapters.dynamodb.accounts import Account
from tradesim.adapters.dynamodb.orders import order_item
from tradesim.adapters.kafka.errors import KafkaDeliveryError
from tradesim.adapters.redis import quotes
from tradesim.adapters.redis.idempotency import Record, record_key
from tradesim.adapters.redis.portfolio_view import Holdings
from tradesim.adapters.redis.portfolio_view import decode as decode_view
from tradesim.domain.errors import InsufficientFunds, InsufficientShares
from tradesim.domain.events import OrderCancelRequested, OrderPlaced, Tick, encode
from tradesim.domain.precheck import (
    OrderIntent,
    StalePrice,
    UnknownSymbol,
    check_affordable,
    check_fresh,
    order_id_for,
)
from tradesim.services.api import metrics
from tradesim.services.api.deps import Authenticated, CurrentUser, Res, rate_limit_of, rate_limited
from tradesim.services.api.errors import ApiError, responses
from tradesim.services.api.resources import Resources
from tradesim.services.api.schemas import CancelAccepted, Order, OrderAccepted, OrderList, OrderRequest, OrderStatusStr

log = logging.getLogger("tradesim.api.orders")
router = APIRouter(prefix="/orders", tags=["orders"])
OrderIdPath = Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$")
TERMINAL = frozenset({"executed", "rejected", "cancelled", "expired"})
_POLL_MIN_S, _POLL_MAX_S = 0.002, 0.05


def request_hash(body: OrderRequest) -> str:
    """Hash of the validated body: the same order sent with other whitespace or key order is the same body."""
    return hashlib.sha256(body.model_dump_json().encode()).hexdigest()


def intent_of(body: OrderRequest) -> OrderIntent:
    return OrderIntent(symbol=body.symbol, side=body.side, qty=body.qty, order_type=body.type,
                       limit_price=None if body.limit_price is None else Decimal(body.limit_price),
                       stop_price=None if body.stop_price is None else Decimal(body.stop_price))


async def _publish(res: Resources, event: OrderPlaced | OrderCancelRequested, encoded: bytes | None = None) -> None:
    start = time.perf_counter()
    try:
        await res.kafka.send(res.settings.topics.trade_orders, event.key, encoded or encode(event))
    except KafkaDeliveryError:
        metrics.KAFKA_ERRORS.labels(event.type).inc()
        raise
    finally:
        metrics.KAFKA_PUBLISH.labels(event.type).observe(time.perf_counter() - start)


async def _holdings(res: Resources, user_id: str) -> Holdings | None:
    """Read the holdings from DynamoDB and fill the view with them (unless a newer one got there first)."""
    with metrics.timed("dynamodb", "portfolio_get"):
        item = await anyio.to_thread.run_sync(res.portfolios.holdings, user_id)
    if item is None:
        return None
    held = Holdings(cash=item.cash, version=item.version, n_outcomes=item.n_outcomes, positions=item.positions)
    try:
        await res.view.fill(user_id, held)
    except redis.RedisError as exc:
        log.warning("could not fill the holdings view", extra={"user_id": user_id, "error": str(exc)})
    return held


@dataclass(frozen=True)
class Gate:
    """What one Redis round trip told about an order request (see `_gate`)."""

    wait_s: float | None          # rate limited: seconds until the window ends
    held: Record | None           # the key's record someone else holds; None: ours now (or no key)
    price: tuple[Tick, int] | None
    view: Holdings | None


async def _gate(res: Resources, user: Account, limit: int, symbol: str, key: str | None, digest: str) -> Gate:
    """Rate limit, Idempotency-Key claim, price and holdings view in one pipeline (one round trip, not four)."""
    pipe = res.redis.pipeline(transaction=False)
    now = res.limiter.queue_hit(pipe, user.api_key_hash[:32]) if limit > 0 else 0.0
    if key is not None:
        res.idempotency.queue_claim(pipe, key, digest)
    quotes.queue_latest(pipe, symbol)
    res.view.queue_get(pipe, user.user_id)
    with metrics.timed("redis", "order_gate"):
        answers = iter(await pipe.execute())  # in the order queued above
    wait_s = None
    if limit > 0:
        count, _expired = next(answers), next(answers)
        wait_s = res.limiter.verdict(count, limit, now)
    held = res.idempotency.claimed(next(answers), next(answers), digest) if key is not None else None
    return Gate(wait_s=wait_s, held=held, price=quotes.decode_latest(next(answers)), view=decode_view(next(answers)))


async def _place(res: Resources, user: Account, body: OrderRequest, order_id: str,
                 gate: Gate | None) -> tuple[OrderPlaced, bytes]:
    """Validate and publish; returns the acknowledged event (and its JSON). Raises ApiError before the ack.

    `gate`: the price and holdings read with the claim; None when the claim came later (re-read them)."""
    trading = res.settings.trading
    intent = intent_of(body)
    if gate is None:
        cached = await metrics.atimed("redis", "price", lambda: quotes.latest(res.redis, body.symbol))
        held = await metrics.atimed("redis", "portfolio_view", lambda: res.view.get(user.user_id))
    else:
        cached, held = gate.price, gate.view
    if held is None:
        held = await _holdings(res, user.user_id)
    now_ms = int(time.time() * 1000)
    try:
        tick = check_fresh(body.symbol, cached, now_ms, res.stale_after_s)
    except UnknownSymbol as exc:
        raise ApiError(422, "unknown_symbol", str(exc)) from None
    except StalePrice as exc:
        raise ApiError(422, "stale_price", str(exc)) from None
    if held is None:
        raise ApiError(409, "portfolio_missing", f"user {user.user_id!r} has no portfolio; ask an admin to reset it")
    if held.n_outcomes >= trading.max_recent_orders:
        # a separate prune (rare: an item too large) lowers the count before the view learns of it
        held = await _holdings(res, user.user_id) or held
    if held.n_outcomes >= trading.max_recent_orders:
        # the portfolio item holds recent outcomes until the job moves them to `Orders`; past this it would
        # outgrow DynamoDB's item limit
        raise ApiError(429, "too_many_recent_orders",
                       f"{held.n_outcomes} recent orders are still being recorded; the limit is "
                       f"{trading.max_recent_orders}", {"Retry-After": "10"})
    try:
        check_affordable(intent, tick, held.cash, held.position(body.symbol), buffer_pct=trading.price_buffer_pct,
                         fees=trading.fee_model(), allow_short=trading.allow_short)
    except InsufficientFunds as exc:
        raise ApiError(422, "insufficient_funds", str(exc)) from None
    except InsufficientShares as exc:
        raise ApiError(422, "insufficient_shares", str(exc)) from None
    event = OrderPlaced(order_id=order_id, user_id=user.user_id, symbol=body.symbol, side=body.side, qty=body.qty,
                        order_type=body.type, limit_price=intent.limit_price, stop_price=intent.stop_price,
                        time_in_force=body.time_in_force, client_order_id=body.client_order_id, placed_at_ms=now_ms)
    encoded = encode(event)
    await _publish(res, event, encoded)
    return event, encoded


async def _remember(res: Resources, event: OrderPlaced, encoded: bytes,
                    idempotent: tuple[str, str, dict[str, Any]] | None) -> None:
    """After the ack: one pipeline keeps the pending order (and the key's answer). The answer is 202 whatever
    happens here; a lost pending record only hides the order until the execution job writes its Orders item."""
    pipe = res.redis.pipeline(transaction=False)
    res.pending.add(pipe, event, encoded.decode())
    if idempotent is not None:
        res.idempotency.finish_on(pipe, *idempotent)
    try:
        with metrics.timed("redis", "order_pending"):
            await pipe.execute()
    except redis.RedisError as exc:
        metrics.ORDER_RECORD_FAILURES.inc()
        # a retry after the key's claim expires republishes the same order id, which the execution job records once
        log.error("order acknowledged by Kafka but its pending record (and idempotent answer) not kept",
                  extra={"order_id": event.order_id, "error": str(exc)})


@router.post("", status_code=202, response_model=OrderAccepted,
             responses=responses(400, 401, 409, 422, 429, 503))
async def place_order(
    body: OrderRequest, user: Authenticated, res: Res, response: Response,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", min_length=1, max_length=255,
                                                  description="same key + same body → the first answer; "
                                                  "same key + another body → 409")] = None,
) -> OrderAccepted:
    """Validate and place an order; 202 once Kafka acknowledged its `OrderPlaced` event."""
    key = None if idempotency_key is None else record_key(user.user_id, idempotency_key)
    digest = request_hash(body) if key is not None else ""
    limit = rate_limit_of(res, user)
    gate = await _gate(res, user, limit, body.symbol, key, digest)
    if gate.wait_s is not None:
        if key is not None and gate.held is None:
            await _release(res, key, digest)  # claimed in the same round trip: give it back
        metrics.ORDERS.labels("rate_limited").inc()
        raise rate_limited(limit, gate.wait_s)
    if key is None:
        try:
            event, encoded = await _place(res, user, body, "o_" + uuid.uuid4().hex, gate)
        except ApiError as exc:
            metrics.ORDERS.labels(exc.code).inc()
            raise
        metrics.ORDERS.labels("accepted").inc()
        await _remember(res, event, encoded, None)
        return OrderAccepted(order_id=event.order_id, status="accepted")
    held, prefetched = gate.held, gate
    deadline = time.monotonic() + res.settings.api.idempotency_wait_s
    pause = _POLL_MIN_S
    while held is not None:
        if held.request_hash != digest:
            metrics.ORDERS.labels("idempotency_mismatch").inc()
            raise ApiError(409, "idempotency_mismatch",
                           "this Idempotency-Key was used with a different request body")
        if held.state == "done":
            response.headers["Idempotent-Replayed"] = "true"
            metrics.ORDERS.labels("replayed").inc()
            return OrderAccepted(**held.body)
        if time.monotonic() > deadline:
            raise ApiError(409, "idempotency_in_progress", "a request with this Idempotency-Key is still running",
                           {"Retry-After": "1"})
        await asyncio.sleep(pause)  # another request holds the key: wait for its answer
        pause = min(_POLL_MAX_S, pause * 2)
        prefetched = None  # the price and holdings read with the first try are old now
        with metrics.timed("redis", "idempotency_claim"):
            held = await res.idempotency.claim(key, digest)
    try:
        event, encoded = await _place(res, user, body, order_id_for(user.user_id, idempotency_key or ""),
                                      prefetched)
    except BaseException as exc:
        # no event was acknowledged: free the key so the client can retry it
        metrics.ORDERS.labels(exc.code if isinstance(exc, ApiError) else "error").inc()
        await _release(res, key, digest)
        raise
    metrics.ORDERS.labels("accepted").inc()
    answer = {"order_id": event.order_id, "status": "accepted"}
    await _remember(res, event, encoded, (key, digest, answer))
    return OrderAccepted(**answer)


async def _release(res: Resources, key: str, digest: str) -> None:
    try:
        await asyncio.shield(res.idempotency.release(key, digest))
    except redis.RedisError:
        log.warning("could not release an idempotency claim; it expires by itself", extra={"key": key})


def _order(item: dict[str, Any]) -> Order:
    text = {k: str(item[k]) for k in ("limit_price", "stop_price", "fill_price", "fee") if item.get(k) is not None}
    return Order(order_id=item["order_id"], user_id=item["user_id"], symbol=item["symbol"], side=item["side"],
                 qty=int(item["qty"]), type=item["order_type"], time_in_force=item.get("time_in_force", "day"),
                 client_order_id=item.get("client_order_id"), status=item.get("status", "accepted"),
                 placed_at_ms=int(item["placed_at_ms"]), reason=item.get("reason"),
                 decided_at_ms=item.get("decided_at_ms"), **text)


async def _own(res: Resources, user: Account, order_id: str) -> dict[str, Any]:
    with metrics.timed("dynamodb", "order_get"):
        item = await anyio.to_thread.run_sync(res.orders.get, order_id)
    if item is None:
        pending = await metrics.atimed("redis", "order_pending_get", lambda: res.pending.get(order_id))
        item = None if pending is None else order_item(pending)
    if item is None:  # the job may have written `Orders` and dropped the pending entry between our two reads
        with metrics.timed("dynamodb", "order_get"):
            item = await anyio.to_thread.run_sync(res.orders.get, order_id)
    if item is None:
        raise ApiError(404, "order_not_found", f"no order {order_id!r}")
    if item.get("user_id") != user.user_id:
        raise ApiError(403, "forbidden", f"order {order_id!r} belongs to another user")
    return item


@router.get("/{order_id}", response_model=Order, responses=responses(401, 403, 404, 422, 429, 503))
async def get_order(user: CurrentUser, res: Res, order_id: str = OrderIdPath) -> Order:
    """One of the caller's orders; status `accepted` until the execution job records its outcome."""
    return _order(await _own(res, user, order_id))


@router.get("", response_model=OrderList, responses=responses(401, 422, 429, 503))
async def list_orders(
    user: CurrentUser, res: Res,
    status: Annotated[OrderStatusStr | None, Query(description="only orders with this status")] = None,
    symbol: Annotated[str | None, Query(pattern=r"^[A-Z][A-Z0-9.\-]{0,15}$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> OrderList:
    """The caller's orders, newest first."""
    with metrics.timed("dynamodb", "orders_by_user"):
        items = await anyio.to_thread.run_sync(
            lambda: res.orders.by_user(user.user_id, status=status, symbol=symbol, limit=limit))
    if status in (None, "accepted"):
        items = await _with_pending(res, user.user_id, items, symbol, limit)
    return OrderList(orders=[_order(i) for i in items])


async def _with_pending(res: Resources, user_id: str, items: list[dict[str, Any]], symbol: str | None,
                        limit: int) -> list[dict[str, Any]]:
    """Add the pending orders the job has not written yet; forget those it has (they are in `Orders` now)."""
    pending = [p for p in await metrics.atimed("redis", "orders_pending", lambda: res.pending.of_user(user_id))
               if symbol is None or p.symbol == symbol]
    listed = {i["order_id"] for i in items}
    unlisted = [p.order_id for p in pending if p.order_id not in listed]
    written = set(listed)
    if unlisted:
        with metrics.timed("dynamodb", "orders_exist"):
            written |= await anyio.to_thread.run_sync(res.orders.existing, unlisted)
    await res.pending.forget(user_id, [p.order_id for p in pending if p.order_id in written])
    merged = items + [order_item(p) for p in pending if p.order_id not in written]
    merged.sort(key=lambda i: int(i["placed_at_ms"]), reverse=True)
    return merged[:limit]


@router.delete("/{order_id}", status_code=202, response_model=CancelAccepted,
               responses=responses(401, 403, 404, 409, 422, 429, 503))
async def cancel_order(user: CurrentUser, res: Res, order_id: str = OrderIdPath) -> CancelAccepted:
    """Ask to cancel a resting order; 202 once Kafka acknowledged `OrderCancelRequested` (the job decides)."""
    item = await _own(res, user, order_id)
    if item.get("status") in TERMINAL:
        raise ApiError(409, "order_not_open", f"order {order_id!r} is already {item['status']}")
    await _publish(res, OrderCancelRequested(order_id=order_id, user_id=user.user_id, symbol=item["symbol"],
                                             requested_at_ms=int(time.time() * 1000)))
    return CancelAccepted(order_id=order_id)
