"""Per-record logic of the execution job, in plain Python (unit-tested without Flink).

Stage 1, keyed by symbol — `Book`: the latest quote and the resting orders of one symbol. It turns orders,
cancels and ticks into `Decision`s (fill at a price, expire, cancel, reject) and never touches I/O.

Stage 2, keyed by user — `settle`: turns a decision into the order's one terminal `OrderOutcome` with a single
conditional write on the user's portfolio item (outcome recorded under the order id together with the
cash/position change); `settle_group` settles a user's queued decisions with one write. The first recorded
outcome wins: on a replay (after a restore, when orders and ticks may
interleave differently) the recorded outcome is re-emitted unchanged instead of the new decision.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Generic, Literal, Protocol, TypeVar

from tradesim.adapters.redis.portfolio_view import ViewPatch
from tradesim.domain.errors import (
    InsufficientFunds,
    InsufficientShares,
    InvalidRecord,
    OutcomeAlreadyRecorded,
    PortfolioFull,
    PortfolioNotFound,
    VersionConflict,
)
from tradesim.domain.events import (
    OrderCancelRequested,
    OrderOutcome,
    OrderPlaced,
    RejectReason,
    Tick,
    decode_trade_order,
)
from tradesim.domain.fees import FeeModel
from tradesim.domain.matching import Expire, Fill, Quote, Rest, SlippageModel, decide
from tradesim.domain.orders import NOT_PROCESSED, overdue
from tradesim.domain.portfolio import fill_change

#: "rest": the order now rests in the book — not an outcome; the Orders mirror marks it `in_book`, so readers keep it
#: open past the processing deadline
Kind = Literal["fill", "expire", "cancel", "reject", "rest"]
JOB_NAME = "tradesim-execution"
T = TypeVar("T")


def classify_order(raw: str, source_topic: str) -> tuple[OrderPlaced | OrderCancelRequested | None, str | None]:
    """(event, None) for a valid trade_orders record, (None, dead-letter JSON) for a malformed one; never raises."""
    from tradesim.jobs.bars_logic import dead_letter

    try:
        return decode_trade_order(raw), None
    except InvalidRecord as exc:
        return None, dead_letter(raw, str(exc), source_topic, consumer=JOB_NAME)


@dataclass(frozen=True)
class Decision:
    """What the symbol stage decided for one order; settled by the user stage."""

    order: OrderPlaced
    kind: Kind
    price: Decimal | None = None
    reason: RejectReason | None = None


@dataclass
class Book:
    """One symbol's quote and resting orders (Flink keeps one per key in state)."""

    quote: Quote | None = None
    #: order_id → (order, stop-limit triggered)
    resting: dict[str, tuple[OrderPlaced, bool]] = field(default_factory=dict)
    #: last (run_id, seq) applied, so a re-delivered tick does not act twice
    last_tick: tuple[int, int] = (-1, -1)

    def on_order(self, order: OrderPlaced, slippage: SlippageModel,
                 fallback: Callable[[str], Quote | None] | None = None, *, now_ms: int | None = None,
                 deadline_ms: int | None = None) -> list[Decision]:
        """`deadline_ms`: an order that reaches the book more than this after its placing expires unmatched
        (the job was down, or behind, for longer than users were promised)."""
        if order.order_id in self.resting:
            return []  # a re-delivered order that already rests
        now = _now_ms() if now_ms is None else now_ms
        if deadline_ms is not None and overdue(order.placed_at_ms, now, deadline_ms):
            return [Decision(order, "expire", reason=NOT_PROCESSED)]
        quote = self.quote
        if quote is None and fallback is not None:
            quote = fallback(order.symbol)  # no tick seen yet in this job: the market-data cache knows the price
        if quote is None:
            return [Decision(order, "reject", reason="unknown_symbol")]
        return self._apply(order, quote, slippage, triggered=False, announce=True)

    def on_cancel(self, cancel: OrderCancelRequested) -> list[Decision]:
        held = self.resting.pop(cancel.order_id, None)
        if held is None or held[0].user_id != cancel.user_id:
            if held is not None:
                self.resting[cancel.order_id] = held  # someone else's order: leave it
            return []  # not resting (filled, expired, unknown): nothing to cancel
        return [Decision(held[0], "cancel")]

    def on_tick(self, tick: Tick, slippage: SlippageModel) -> list[Decision]:
        order_key = (tick.run_id, tick.seq)
        if self.quote is not None and tick.run_id == self.last_tick[0] and order_key <= self.last_tick:
            return []
        self.last_tick = order_key
        self.quote = Quote.of(tick)
        out: list[Decision] = []
        for order_id, (order, triggered) in list(self.resting.items()):
            del self.resting[order_id]
            out += self._apply(order, self.quote, slippage, triggered)
        return out

    def _apply(self, order: OrderPlaced, quote: Quote, slippage: SlippageModel, triggered: bool,
               announce: bool = False) -> list[Decision]:
        d = decide(order, quote, slippage, triggered)
        if isinstance(d, Fill):
            return [Decision(order, "fill", price=d.price)]
        if isinstance(d, Expire):
            return [Decision(order, "expire", reason="expired")]
        assert isinstance(d, Rest)  # noqa: S101 - Decision is a closed union
        self.resting[order.order_id] = (order, d.triggered)
        return [Decision(order, "rest")] if announce else []


def parse_tick_or_none(raw: str) -> Tick | None:
    from tradesim.domain.events import decode

    try:
        return decode(Tick, raw)
    except InvalidRecord:
        return None


class OutcomeStore(Protocol):
    """The part of the portfolio store settle needs (tradesim.adapters.dynamodb.portfolios.PortfolioStore)."""

    def apply_fill(self, user_id: str, order_id: str, cash_delta: Decimal, symbol: str, qty_delta: int, *,
                   status: str = "executed", details: Any = None, placed_at_ms: int | None = None) -> Any:
        """Record the outcome + change atomically; raises OutcomeAlreadyRecorded/InsufficientFunds/...."""
        ...


class Recording:
    """An OutcomeStore that keeps what its last write changed, so the settling stage can hand the holdings-view
    patch to a later stage instead of waiting on Redis itself (the settle stage is the job's serial bottleneck)."""

    def __init__(self, store: OutcomeStore) -> None:
        self.store = store
        self._last: ViewPatch | None = None

    def apply_fill(self, user_id: str, order_id: str, cash_delta: Decimal, symbol: str, qty_delta: int, *,
                   status: str = "executed", details: Any = None, placed_at_ms: int | None = None) -> Any:
        applied = self.store.apply_fill(user_id, order_id, cash_delta, symbol, qty_delta, status=status,
                                        details=details, placed_at_ms=placed_at_ms)
        self._last = ViewPatch(user_id, applied.version, applied.cash, applied.n_outcomes, symbol, applied.quantity)
        return applied

    def take(self) -> ViewPatch | None:
        """The last write's patch (None: no write since the last take), and forget it."""
        last, self._last = self._last, None
        return last


class BestEffort(Generic[T]):
    """Hands each non-empty batch to `call`, for the Redis read model the job maintains; a failure pauses it.

    Best effort because the view is advisory: a missed holdings-view patch leaves a version gap, so the next patch
    drops the view and the API reads DynamoDB. After a failure, calls pause for `pause_s` so a Redis outage costs
    the job one timeout, not one per batch."""

    def __init__(self, call: Callable[[list[T]], object], *, pause_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic, on_error: Callable[[Exception], None] | None = None,
                 ) -> None:
        self.call, self.pause_s, self._clock, self._on_error = call, pause_s, clock, on_error
        self._paused_until = 0.0

    def apply(self, batch: list[T]) -> None:
        if not batch or self._clock() < self._paused_until:
            return
        try:
            self.call(batch)
        except Exception as exc:  # noqa: BLE001 - any client fault: the read model is advisory, the write is done
            self._paused_until = self._clock() + self.pause_s
            if self._on_error is not None:
                self._on_error(exc)


def _now_ms() -> int:
    return int(time.time() * 1000)


def trade_id(order_id: str) -> str:
    return f"{order_id}-1"  # one fill per order today; deterministic so read models collapse re-deliveries


def outcome_from_record(order: OrderPlaced, recorded: dict[str, Any]) -> OrderOutcome:
    """Rebuild the event from what the first writer recorded (replays re-emit exactly this)."""
    status = recorded["status"]
    executed = status == "executed"
    return OrderOutcome(
        order_id=order.order_id, user_id=order.user_id, symbol=order.symbol, side=order.side, qty=order.qty,
        status=status, reason=recorded.get("reason") or None,
        fill_price=Decimal(str(recorded["fill_price"])) if executed else None,
        fee=Decimal(str(recorded["fee"])) if executed else None,
        cash_after=Decimal(str(recorded["cash_after"])) if recorded.get("cash_after") not in (None, "") else None,
        position_after=int(recorded["position_after"]) if recorded.get("position_after") not in (None, "") else None,
        trade_id=trade_id(order.order_id) if executed else None,
        decided_at_ms=int(recorded["decided_at_ms"]),
    )


def settle(decision: Decision, store: OutcomeStore, fees: FeeModel, now_ms: Callable[[], int] = _now_ms,
           ) -> OrderOutcome:
    """Decide the order's terminal outcome with one conditional write; the first recorded outcome wins.

    Raises Unavailable (retry later: nothing was decided) — never a silent skip.
    """
    assert decision.kind != "rest"  # noqa: S101 - a resting order has no outcome to settle
    order = decision.order
    decided = now_ms()
    details: dict[str, str] = {"decided_at_ms": str(decided)}
    if decision.kind == "fill":
        assert decision.price is not None  # noqa: S101 - fills carry a price
        change = fill_change(order.side, order.qty, decision.price, fees)
        details |= {"fill_price": str(decision.price), "fee": str(change.fee)}
        try:
            after = store.apply_fill(order.user_id, order.order_id, change.cash_delta, order.symbol,
                                     change.qty_delta, status="executed", details=details,
                                     placed_at_ms=order.placed_at_ms)
            return OrderOutcome(
                order_id=order.order_id, user_id=order.user_id, symbol=order.symbol, side=order.side,
                qty=order.qty, status="executed", fill_price=decision.price, fee=change.fee,
                cash_after=after.cash, position_after=after.position(order.symbol),
                trade_id=trade_id(order.order_id), decided_at_ms=decided)
        except OutcomeAlreadyRecorded as exc:
            return outcome_from_record(order, dict(exc.outcome))
        except InsufficientFunds:
            return _record(order, store, "rejected", "insufficient_funds", decided)
        except InsufficientShares:
            return _record(order, store, "rejected", "insufficient_shares", decided)
        except PortfolioNotFound:
            return _record_nowhere(order, "invalid", decided)
        except PortfolioFull:
            return _record_nowhere(order, "too_many_recent_orders", decided)
    status: Literal["rejected", "cancelled", "expired"] = (
        "cancelled" if decision.kind == "cancel" else "expired" if decision.kind == "expire" else "rejected")
    return _record(order, store, status, decision.reason, decided)


class Grouping(Protocol):
    """Group commit on the portfolio store (tradesim.adapters.dynamodb.portfolios.PortfolioStore.group)."""

    def group(self, user_id: str) -> None: ...
    def flush_group(self, user_id: str) -> None: ...
    def end_group(self, user_id: str) -> None: ...


Settled = tuple[OrderPlaced, OrderOutcome, ViewPatch | None]


def settle_group(user_id: str, decisions: list[Decision], store: Recording, grouping: Grouping, fees: FeeModel,
                 ) -> list[Settled]:
    """Settle one user's queued decisions, in order, with as few writes as the store can manage (one, usually):
    the same outcomes as settling them one by one. If the group's write loses to another writer (VersionConflict),
    none of its unwritten changes were written, so they are settled again one by one. Raises Unavailable."""
    grouping.group(user_id)
    try:
        out = [_settle_one(d, store, fees) for d in decisions]
        grouping.flush_group(user_id)
        return out
    except VersionConflict:
        grouping.end_group(user_id)
    except BaseException:
        grouping.end_group(user_id)
        raise
    return [_settle_one(d, store, fees) for d in decisions]


def _settle_one(decision: Decision, store: Recording, fees: FeeModel) -> Settled:
    store.take()  # a patch left by a failed attempt is not this outcome's
    outcome = settle(decision, store, fees)
    return decision.order, outcome, store.take()


def _record(order: OrderPlaced, store: OutcomeStore, status: str, reason: RejectReason | None,
            decided: int) -> OrderOutcome:
    details = {"decided_at_ms": str(decided), "reason": reason or ""}
    try:
        store.apply_fill(order.user_id, order.order_id, Decimal(0), order.symbol, 0, status=status, details=details,
                         placed_at_ms=order.placed_at_ms)
    except OutcomeAlreadyRecorded as exc:
        return outcome_from_record(order, dict(exc.outcome))
    except PortfolioNotFound:
        return _record_nowhere(order, reason, decided)
    except PortfolioFull:
        return _record_nowhere(order, "too_many_recent_orders", decided)
    return OrderOutcome(order_id=order.order_id, user_id=order.user_id, symbol=order.symbol, side=order.side,
                        qty=order.qty, status=status, reason=reason, decided_at_ms=decided)  # type: ignore[arg-type]


def _record_nowhere(order: OrderPlaced, reason: RejectReason | None, decided: int) -> OrderOutcome:
    """A user without a portfolio, or whose item cannot hold another outcome (the API refuses such orders
    first; only a producer that bypasses it gets here): nothing to record against, the order is rejected."""
    return OrderOutcome(order_id=order.order_id, user_id=order.user_id, symbol=order.symbol, side=order.side,
                        qty=order.qty, status="rejected", reason=reason or "invalid", decided_at_ms=decided)
