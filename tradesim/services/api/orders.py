"""/orders: place (validated, idempotent, acknowledged by Kafka before 202), show, list, cancel.

Placing an order, in order: claim the Idempotency-Key (Redis SET NX with the body's hash) → price fresh in Redis
and portfolio able to cover it (advisory: the Redis holdings view, filled from DynamoDB when missing) → claim the
order id in `Orders` (a conditional put: the first claim's placing time and body are the order's for good) →
`OrderPlaced` on `trade_orders`, wait for Kafka's ack → keep the key's answer in Redis → 202. A Kafka refusal
releases both claims; an unknown Kafka outcome keeps the order's claim and answers 503 `outcome_unknown`.

The Redis key record is the fast path; the `Orders` claim is what makes a key safe forever: a retry the Redis
record no longer covers finds the claim, gets 409 for another body, or else the first order again (re-published
while it is still `accepted`; the execution job decides each order id once).

Reading: the `Orders` item is the truth (accepted from the claim on; the outcome once the job recorded it).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, TypeVar

import anyio
from fastapi import APIRouter, Header, Path, Query, Response

from tradesim.adapters.dynamodb.accounts import Account
from tradesim.adapters.dynamodb.orders import placed_order, requested_cancel
from tradesim.adapters.kafka.errors import KafkaDeliveryError, KafkaOutcomeUnknown, KafkaUnavailable
from tradesim.adapters.redis import quotes
from tradesim.adapters.redis.client import execute, execute_each, unavailable_on_error
from tradesim.adapters.redis.idempotency import Record, record_key
from tradesim.adapters.redis.portfolio_view import decode as decode_view
from tradesim.adapters.tracing import ORDER_ATTRIBUTE, SpanKind, StatusCode
from tradesim.domain.errors import InsufficientFunds, InsufficientShares
from tradesim.domain.events import (
    ID_RE,
    MAX_EPOCH_MS,
    SYMBOL_RE,
    OrderCancelRequested,
    OrderPlaced,
    Tick,
    encode,
)
from tradesim.domain.money import money_text
from tradesim.domain.orders import (
    awaiting_book,
    body_hash,
    body_hash_of,
    shown_may_differ,
    shown_status,
    stored_statuses,
)
from tradesim.domain.portfolio import Holdings
from tradesim.domain.precheck import (
    OrderIntent,
    StalePrice,
    UnknownSymbol,
    check_affordable,
    check_fresh,
    order_id_for,
)
from tradesim.ports import StoreFull, Unavailable
from tradesim.services.api import metrics
from tradesim.services.api.deps import (
    USER_QUERY_CHECKS,
    Authenticated,
    CurrentUser,
    Res,
    UserQuery,
    count_here,
    limiter_key,
    own_only,
    rate_limit_of,
    rate_limited,
)
from tradesim.services.api.errors import ApiError, responses
from tradesim.services.api.resources import Resources
from tradesim.services.api.schemas import (
    CancelAccepted,
    Order,
    OrderAccepted,
    OrderList,
    OrderRequest,
    OrderStatusStr,
)
from tradesim.services.api.strict_json import StrictJsonRoute

log = logging.getLogger("tradesim.api.orders")
T = TypeVar("T")
router = APIRouter(prefix="/orders", tags=["orders"], route_class=StrictJsonRoute)
OrderIdPath = Path(min_length=1, max_length=64, pattern=f"^{ID_RE}$")
TERMINAL = frozenset({"executed", "rejected", "cancelled", "expired"})
_POLL_MIN_S, _POLL_MAX_S = 0.002, 0.05


def request_hash(body: OrderRequest) -> str:
    """The order's body hash, as the durable claim compares it: the same order sent with other whitespace, key
    order or price spelling (100, 100.00) is the same body for the Redis key record too."""
    intent = intent_of(body)
    return body_hash_of(body.symbol, body.side, body.qty, body.type, intent.limit_price, intent.stop_price,
                        body.time_in_force, body.client_order_id, body.at_ms, body.cancel_at_ms)


def intent_of(body: OrderRequest) -> OrderIntent:
    return OrderIntent(symbol=body.symbol, side=body.side, qty=body.qty, order_type=body.type,
                       limit_price=None if body.limit_price is None else Decimal(body.limit_price),
                       stop_price=None if body.stop_price is None else Decimal(body.stop_price))


async def _publish(res: Resources, event: OrderPlaced | OrderCancelRequested) -> None:
    """Send and await Kafka's ack. A traced order carries its publish span as `traceparent`, in the record's
    headers and (for the execution job, whose Kafka source drops headers) in the event. A cancel is not traced
    on its own: the job's cancel decision joins the order's trace through the order the book holds."""
    start = time.perf_counter()
    topic = res.settings.topics.trade_orders
    traced = isinstance(event, OrderPlaced) and res.tracing.current() is not None
    with res.tracing.span(f"publish {topic}", kind=SpanKind.PRODUCER, attributes={
            ORDER_ATTRIBUTE: event.order_id, "messaging.destination.name": topic}) if traced else nullcontext():
        parent = res.tracing.current() if traced else None
        if parent is not None:
            event = event.model_copy(update={"traceparent": parent})
        try:
            await res.kafka.send(topic, event.key, encode(event),
                                 None if parent is None else [("traceparent", parent.encode())])
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
        await unavailable_on_error(res.view.fill(user_id, held))
    except Unavailable as exc:
        log.warning("could not fill the holdings view", extra={"user_id": user_id, "error": str(exc)})
    return held


@dataclass(frozen=True)
class Gate:
    """What one Redis round trip told about an order request (see `_gate`)."""

    wait_s: float | None          # rate limited: seconds until the window ends
    held: Record | None           # the key's record someone else holds; None: ours now (or no key, or unrecorded)
    unrecorded: bool              # nobody held the key, and Redis had no room for our record of it
    price: tuple[Tick, int] | None
    view: Holdings | None


async def _gate(res: Resources, user: Account, limit: int, symbol: str, key: str | None, digest: str) -> Gate:
    """Rate limit, Idempotency-Key claim, price and holdings view in one pipeline (one round trip, not four).

    A write Redis refuses for memory does not refuse the order (docs/design/redis-full.md): the rate limit is
    counted in this process instead, and a key nobody holds goes on without its Redis record, guarded by the
    order's claim in `Orders` alone (its id derives from the key: a second request with it replays that order)."""
    pipe = res.redis.pipeline(transaction=False)
    now = res.limiter.queue_hit(pipe, limiter_key(user)) if limit > 0 else 0.0
    if key is not None:
        res.idempotency.queue_claim(pipe, key, digest)
    quotes.queue_latest(pipe, symbol)
    res.view.queue_get(pipe, user.user_id)
    with metrics.timed("redis", "order_gate"):
        answers = iter(await execute_each(pipe))  # in the order queued above
    wait_s = None
    if limit > 0:
        count, _expired = next(answers), next(answers)
        refused = isinstance(count, StoreFull)
        wait_s = count_here(res, user, limit) if refused else res.limiter.verdict(count, limit, now)
    claim = (next(answers), next(answers)) if key is not None else None
    price, view = quotes.decode_latest(next(answers), symbol), decode_view(next(answers))
    held, unrecorded = None, False
    if claim is not None:
        try:
            held = res.idempotency.claimed(*claim, digest)
        except StoreFull:
            _unrecorded_key(res)
            unrecorded = True
    return Gate(wait_s=wait_s, held=held, unrecorded=unrecorded, price=price, view=view)


def _unrecorded_key(res: Resources) -> None:
    res.degraded("idempotency", "Idempotency-Key records are not written; the orders' claims in Orders guard the "
                 "keys alone")


@dataclass(frozen=True)
class Placed:
    """An accepted order: this request's, or (`replayed`) the one first placed under the same id."""

    order: OrderPlaced
    replayed: bool = False


async def _place(res: Resources, user: Account, body: OrderRequest, order_id: str, gate: Gate | None, *,
                 keyed: bool) -> Placed:
    """Validate, claim the order id and publish; returns the acknowledged order. Raises ApiError before the ack.

    `gate`: the price and holdings read with the claim; None when the claim came later (re-read them). `keyed`:
    the id comes from an Idempotency-Key, so it may have been placed before."""
    now_ms = int(time.time() * 1000)
    intent = intent_of(body)
    event = _event(user, body, order_id, now_ms)
    try:
        if body.at_ms is None:
            await _check(res, user, body, intent, gate, now_ms)
        else:  # a scripted order is decided on the market's clock: only what the present cannot change is checked
            await _check_scripted(res, body, gate)
    except ApiError:
        # a keyed retry of an order accepted before is that order, whatever the market or the account says now
        placed = await _claimed_before(res, user, body, order_id) if keyed else None
        if placed is None:
            raise
        return placed
    for _ in range(3):
        first = await _claim(res, event)
        if first is None:
            await _send(res, event, owner=True)
            return Placed(event)
        placed = await _replay(res, event, first)
        if placed is not None:
            return placed
    raise ApiError(503, "unavailable", f"order {order_id!r} keeps being claimed and released; retry",
                   {"Retry-After": str(res.settings.api.retry_after_s)})


async def _claim(res: Resources, event: OrderPlaced) -> dict[str, Any] | None:
    """`Orders.claim`. A write DynamoDB did not answer may still land, leaving an order open that nobody sends:
    it is taken back then, and the answer is 503 (not placed). If the claim cannot be taken back (DynamoDB still
    does not answer, or a retry with the key sent the order meanwhile, or the write is still on its way), 503
    `outcome_unknown` with the order id: a retry with the key sends it; a cancel ends it when it comes."""
    try:
        return await _store(res, "order_claim", res.orders.claim, event)
    except Unavailable:
        try:
            released = await _store(res, "order_release", res.orders.release, event)
        except Unavailable:
            released = False
        if not released:
            raise _outcome_unknown(res, event, "DynamoDB") from None
        raise


def _event(user: Account, body: OrderRequest, order_id: str, now_ms: int) -> OrderPlaced:
    intent = intent_of(body)
    return OrderPlaced(order_id=order_id, user_id=user.user_id, symbol=body.symbol, side=body.side, qty=body.qty,
                       order_type=body.type, limit_price=intent.limit_price, stop_price=intent.stop_price,
                       time_in_force=body.time_in_force, client_order_id=body.client_order_id, placed_at_ms=now_ms,
                       at_ms=body.at_ms, cancel_at_ms=body.cancel_at_ms)


async def _claimed_before(res: Resources, user: Account, body: OrderRequest, order_id: str) -> Placed | None:
    """The order a keyed request claimed before, as a replay (sent again while no book or outcome has it); None
    when it was not claimed. Raises ApiError 409 for another body."""
    event = _event(user, body, order_id, int(time.time() * 1000))
    for _ in range(2):  # decided or released between the read and the replay's mark: read it again
        stored = await _store(res, "order_get", res.orders.get, order_id)
        if stored is None:
            return None
        placed = await _replay(res, event, stored)
        if placed is not None:
            return placed
    return None


async def _store(res: Resources, op: str, call: Callable[[Any], T], arg: Any) -> T:
    with metrics.timed("dynamodb", op):
        return await anyio.to_thread.run_sync(call, arg)


async def _replay(res: Resources, event: OrderPlaced, stored: dict[str, Any]) -> Placed | None:
    """This request's order id was claimed before: the same body is that order again, another body is refused.
    While no outcome and no book has it, it is sent again (its first publish may be lost), marked `replayed`
    first so its claimer can no longer release it. A cancel its user asked for meanwhile is sent again first
    (also while a book holds the order). None: the claim is gone (released meanwhile)."""
    first = placed_order(stored)
    if first.user_id != event.user_id or body_hash(first) != body_hash(event):
        raise ApiError(409, "idempotency_mismatch", "this Idempotency-Key was used with a different request body")
    awaiting = awaiting_book(stored.get("status"), bool(stored.get("in_book")))
    if awaiting and not await _store(res, "order_replayed", res.orders.mark_replayed, first):
        return None
    cancel = requested_cancel(stored) if stored.get("status") == "accepted" else None
    if cancel is not None:
        # its user cancelled it meanwhile: the cancel goes first (stamped now), so the book holds it when the order
        # comes, whatever the book did since; and again while the order is in a book (a first send may have failed)
        try:
            await _publish(res, cancel.model_copy(update={"requested_at_ms": int(time.time() * 1000)}))
        except (KafkaDeliveryError, KafkaUnavailable):
            raise ApiError(503, "outcome_unknown", "Kafka did not confirm the cancel this order's user asked for; "
                           "retry with the same Idempotency-Key", {"Retry-After": str(res.settings.api.retry_after_s)},
                           order_id=first.order_id) from None
    if awaiting:
        await _send(res, first, owner=False)  # with the first placing time, by which the job knows the order
    return Placed(first, replayed=True)


def _outcome_unknown(res: Resources, event: OrderPlaced, unconfirmed_by: str) -> ApiError:
    return ApiError(503, "outcome_unknown", f"{unconfirmed_by} did not confirm the order in time; it may or may not "
                    "be placed: look the order up by its id, or retry with the same Idempotency-Key (without one a "
                    "retry is another order)", {"Retry-After": str(res.settings.api.retry_after_s)},
                    order_id=event.order_id)


async def _send(res: Resources, event: OrderPlaced, *, owner: bool) -> None:
    """Publish a claimed order. Certainly not written: the claim's `owner` releases it (unless it was replayed
    meanwhile) and the error answers 503. Perhaps written: the claim stays and the answer says so."""
    try:
        await _publish(res, event)
    except KafkaOutcomeUnknown:
        raise _outcome_unknown(res, event, "Kafka") from None
    except (KafkaDeliveryError, KafkaUnavailable):
        if owner:
            await _store(res, "order_release", res.orders.release, event)
        raise


async def _check_scripted(res: Resources, body: OrderRequest, gate: Gate | None) -> None:
    """A scripted order's pre-check: its symbol has a price (of any age), so no book is opened for a symbol that
    has no ticks; price, cash and holdings are the job's to judge at the order's market time."""
    cached = gate.price if gate is not None else await metrics.atimed(
        "redis", "price", lambda: quotes.latest(res.redis, body.symbol))
    if cached is None:
        raise ApiError(422, "unknown_symbol", f"no price was ever published for {body.symbol}")


async def _check(res: Resources, user: Account, body: OrderRequest, intent: OrderIntent, gate: Gate | None,
                 now_ms: int) -> None:
    """The advisory pre-check: fresh price, portfolio present and not full, order affordable. Raises ApiError."""
    trading = res.settings.trading
    if gate is None:
        cached = await metrics.atimed("redis", "price", lambda: quotes.latest(res.redis, body.symbol))
        held = await metrics.atimed("redis", "portfolio_view", lambda: res.view.get(user.user_id))
    else:
        cached, held = gate.price, gate.view
    if held is None:
        held = await _holdings(res, user.user_id)
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
                         fees=trading.fee_model())
    except InsufficientFunds as exc:
        raise ApiError(422, "insufficient_funds", str(exc)) from None
    except InsufficientShares as exc:
        raise ApiError(422, "insufficient_shares", str(exc)) from None


async def _remember(res: Resources, key: str, digest: str, answer: dict[str, Any]) -> None:
    """After the ack: keep the key's answer, so a retry gets it without a store round trip. The answer is 202
    whatever happens here; a retry without it finds the order's claim in `Orders`."""
    pipe = res.redis.pipeline(transaction=False)
    res.idempotency.finish_on(pipe, key, digest, answer)
    try:
        with metrics.timed("redis", "idempotency_finish"):
            await execute(pipe)
    except Unavailable as exc:
        metrics.ORDER_RECORD_FAILURES.inc()
        log.error("order acknowledged by Kafka but its idempotent answer not kept",
                  extra={"order_id": answer["order_id"], "error": str(exc)})


@router.post("", status_code=202, response_model=OrderAccepted,
             responses=responses(400, 401, 403, 409, 415, 422, 429, 503))
async def place_order(
    body: OrderRequest, user: Authenticated, res: Res, response: Response,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", min_length=1, max_length=255,
                                                  description="same key + same body → the first answer; "
                                                  "same key + another body → 409")] = None,
) -> OrderAccepted:
    """Validate and place an order; 202 once Kafka acknowledged its `OrderPlaced` event."""
    with res.tracing.span("POST /orders", kind=SpanKind.SERVER,
                          attributes={"user.id": user.user_id, "symbol": body.symbol}) as span:
        try:
            answer = await _place_order(body, user, res, response, idempotency_key)
        except ApiError as exc:  # a refusal is the request's answer; only the server's own failures are errors
            span.set_attribute("http.response.status_code", exc.status)
            if exc.status >= 500:
                span.set_status(StatusCode.ERROR, exc.code)
            raise
        except Exception as exc:  # a store or Kafka failure (the app answers 503) or a bug (500)
            span.set_status(StatusCode.ERROR, type(exc).__name__)
            span.record_exception(exc)
            raise
        span.set_attribute("http.response.status_code", 202)
        span.set_attribute(ORDER_ATTRIBUTE, answer.order_id)
        return answer


async def _place_order(body: OrderRequest, user: Account, res: Resources, response: Response,
                       idempotency_key: str | None) -> OrderAccepted:
    key = None if idempotency_key is None else record_key(user.user_id, idempotency_key)
    digest = request_hash(body) if key is not None else ""
    limit = rate_limit_of(res, user)
    gate = await _gate(res, user, limit, body.symbol, key, digest)
    if gate.wait_s is not None:
        if key is not None and gate.held is None and not gate.unrecorded:
            await _release(res, key, digest)  # claimed in the same round trip: give it back
        metrics.ORDERS.labels("rate_limited").inc()
        raise rate_limited(limit, gate.wait_s)
    if key is None:
        try:
            fresh = await _place(res, user, body, "o_" + uuid.uuid4().hex, gate, keyed=False)
        except ApiError as exc:
            metrics.ORDERS.labels(exc.code).inc()
            raise
        metrics.ORDERS.labels("accepted").inc()
        return OrderAccepted(order_id=fresh.order.order_id, status="accepted")
    held, unrecorded = gate.held, gate.unrecorded
    prefetched: Gate | None = gate
    placed: Placed | None = None
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
            # the key's request may have died after claiming the order, or its claim of the key landed though
            # Redis did not answer it (the record stays pending until it expires): the claim in `Orders` is the
            # durable answer, that order again; without one, this request places it. Should the first still run,
            # both claim one order id in `Orders`, conditionally: one places the order, the other replays it
            placed = await _claimed_before(res, user, body, order_id_for(user.user_id, idempotency_key or ""))
            break  # answered (and remembered) below, so later retries get it at once, not after the wait
        await asyncio.sleep(pause)  # another request holds the key: wait for its answer
        pause = min(_POLL_MAX_S, pause * 2)
        prefetched = None  # the price and holdings read with the first try are old now
        try:
            with metrics.timed("redis", "idempotency_claim"):
                held = await res.idempotency.claim(key, digest)
        except StoreFull:  # its holder let it go, and Redis has no room for ours: as in `_gate`
            _unrecorded_key(res)
            held, unrecorded = None, True
    if placed is None:
        try:
            placed = await _place(res, user, body, order_id_for(user.user_id, idempotency_key or ""), prefetched,
                                  keyed=True)
        except BaseException as exc:
            # no event was acknowledged (or, outcome_unknown, perhaps one was): free the key so a retry can ask
            # again
            metrics.ORDERS.labels(exc.code if isinstance(exc, ApiError) else "error").inc()
            if not unrecorded:  # nothing of ours to free (another request's claim may be there by now)
                await _release(res, key, digest)
            raise
    if placed.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    metrics.ORDERS.labels("replayed" if placed.replayed else "accepted").inc()
    answer = {"order_id": placed.order.order_id, "status": "accepted"}
    if not unrecorded:  # Redis just had no room for the key's record: the claim in `Orders` answers retries
        await _remember(res, key, digest, answer)
    return OrderAccepted(**answer)


async def _release(res: Resources, key: str, digest: str) -> None:
    try:
        await asyncio.shield(unavailable_on_error(res.idempotency.release(key, digest)))
    except Unavailable:
        log.warning("could not release an idempotency claim; it expires by itself", extra={"key": key})


def _order(item: dict[str, Any], res: Resources) -> Order:
    """The order an `Orders` item holds. An item edited by hand into a shape no writer leaves (a money field that
    is not a number, an unknown status) is the store's to fix: 503 `store_error` naming it, not a 500."""
    try:
        return _read_order(item, res)
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:  # a pydantic ValidationError is a ValueError
        log.error("unreadable Orders item", extra={"order_id": item.get("order_id"), "error": str(exc)[:500]})
        raise ApiError(503, "store_error", f"order {item.get('order_id')!r} is stored in a shape tradesim cannot "
                       f"read ({type(exc).__name__}); the Orders item needs fixing",
                       {"Retry-After": str(res.settings.api.retry_after_s)}) from None


def _read_order(item: dict[str, Any], res: Resources) -> Order:
    text = {k: money_text(Decimal(str(item[k]))) for k in ("limit_price", "stop_price", "fill_price", "fee")
            if item.get(k) is not None}  # as every route writes money: `/trades/search` shows the same fill price
    placed_at_ms = int(item["placed_at_ms"])
    status, overdue_reason = shown_status(item.get("status", "accepted"), bool(item.get("in_book")), placed_at_ms,
                                          int(time.time() * 1000), res.settings.trading.processing_deadline_ms)
    return Order(order_id=item["order_id"], user_id=item["user_id"], symbol=item["symbol"], side=item["side"],
                 qty=int(item["qty"]), type=item["order_type"], time_in_force=item.get("time_in_force", "day"),
                 client_order_id=item.get("client_order_id"), status=status, placed_at_ms=placed_at_ms,
                 in_book=status == "accepted" and bool(item.get("in_book")),
                 cancel_at_ms=None if item.get("cancel_at_ms") is None else int(item["cancel_at_ms"]),
                 reason=overdue_reason or item.get("reason"), decided_at_ms=item.get("decided_at_ms"), **text)


async def _own(res: Resources, user: Account, order_id: str) -> Order:
    with metrics.timed("dynamodb", "order_get"):
        item = await anyio.to_thread.run_sync(res.orders.get, order_id)
    if item is None:
        raise ApiError(404, "order_not_found", f"no order {order_id!r}")
    if item.get("user_id") != user.user_id:
        raise ApiError(403, "forbidden", f"order {order_id!r} belongs to another user")
    return _order(item, res)


@router.get("/{order_id}", response_model=Order, responses=responses(401, 403, 404, 422, 429, 503))
async def get_order(user: CurrentUser, res: Res, order_id: str = OrderIdPath) -> Order:
    """One of the caller's orders; status `accepted` until the execution job records its outcome."""
    return await _own(res, user, order_id)


@router.get("", response_model=OrderList, responses=responses(401, 403, 422, 429, 503), dependencies=USER_QUERY_CHECKS)
async def list_orders(
    caller: CurrentUser, res: Res,
    status: Annotated[OrderStatusStr | None, Query(description="only orders with this status")] = None,
    symbol: Annotated[str | None, Query(pattern=f"^{SYMBOL_RE}$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    user: UserQuery = None,
) -> OrderList:
    """The caller's orders, newest first; with `status` or `symbol`, those among the newest `api.orders_scan_max`
    — and with `status=accepted`, every order a book holds, however old."""
    own_only(caller, user)
    scan_max = res.settings.api.orders_scan_max
    stored = None if status is None else stored_statuses(status)
    # which stored orders a status keeps shows only once read: read all it may (`scan_max`) before keeping
    # `limit`, so the ones dropped do not use up the limit
    fetch = max(limit, scan_max) if status is not None and shown_may_differ(status) else limit
    with metrics.timed("dynamodb", "orders_by_user"):
        items = await anyio.to_thread.run_sync(
            lambda: res.orders.by_user(caller.user_id, status=stored, symbol=symbol, limit=fetch, scan_max=scan_max))
    if status == "accepted":  # a resting order may be older than the newest `scan_max`: its user must see it
        with metrics.timed("dynamodb", "open_orders_by_user"):
            resting = await anyio.to_thread.run_sync(lambda: res.orders.open_by_user(
                caller.user_id, limit=limit, max_read=max(limit, scan_max), symbol=symbol))
        # the pointed-to copy is the newer read (strongly consistent; the index lags its table)
        fresh = {i["order_id"]: i for i in resting}
        items = [*fresh.values(), *(i for i in items if i["order_id"] not in fresh)]
        items.sort(key=lambda i: (i["placed_at_ms"], i["order_id"]), reverse=True)
    orders = [_order(i, res) for i in items]
    return OrderList(orders=[o for o in orders if status is None or o.status == status][:limit])


@router.delete("/{order_id}", status_code=202, response_model=CancelAccepted,
               responses=responses(401, 403, 404, 409, 422, 429, 503), dependencies=USER_QUERY_CHECKS)
async def cancel_order(
    user: CurrentUser, res: Res, order_id: str = OrderIdPath,
    at_ms: Annotated[int | None, Query(ge=0, le=MAX_EPOCH_MS, description=(
        "market time (tick event time, epoch ms) to cancel at: the book holds the cancel until the tick stream "
        "passes it (a scripted run's strategy cancels this way); the order then shows `cancel_at_ms`"))] = None,
) -> CancelAccepted:
    """Ask to cancel a resting order; 202 once Kafka acknowledged `OrderCancelRequested` (the job decides)."""
    order = await _own(res, user, order_id)
    if order.status in TERMINAL:
        raise ApiError(409, "order_not_open", f"order {order_id!r} is already {order.status}")
    cancel = OrderCancelRequested(order_id=order_id, user_id=user.user_id, symbol=order.symbol,
                                  requested_at_ms=int(time.time() * 1000), at_ms=at_ms)
    kept = False
    try:
        if not order.in_book:  # the book may not have the order yet: a later send of it carries this cancel too
            kept = await _store(res, "order_cancel_mark", res.orders.mark_cancel_requested, cancel)
        await _publish(res, cancel)
    except (Unavailable, KafkaDeliveryError, KafkaUnavailable) as exc:
        refused = isinstance(exc, KafkaUnavailable | KafkaDeliveryError) and not isinstance(exc, KafkaOutcomeUnknown)
        if refused and not kept:
            raise  # certainly not requested: 503, nothing done
        # perhaps on Kafka, perhaps kept on the claim (which a later send of the order carries): it may hold
        store = "DynamoDB" if isinstance(exc, Unavailable) else "Kafka"
        raise ApiError(503, "outcome_unknown", f"{store} did not confirm the cancel; it may or may not be "
                       "requested: cancel again (a second cancel does no harm), or look the order up",
                       {"Retry-After": str(res.settings.api.retry_after_s)}, order_id=order_id) from None
    return CancelAccepted(order_id=order_id)
