"""Settling an order: the book's decision becomes the order's one terminal `OrderOutcome`, recorded by ONE
conditional write on the user's ledger (the portfolio item) together with its cash/position change. The first
recorded outcome wins: a replay (after a restore, when orders and ticks may interleave differently) re-emits it
instead of the new decision. The ledger is a port (`tradesim.ports.Ledger`); these rules never touch I/O."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from tradesim.domain.book import Decision
from tradesim.domain.errors import (
    InsufficientFunds,
    InsufficientShares,
    InvalidRecord,
    OutcomeAlreadyRecorded,
    PortfolioFull,
    PortfolioNotFound,
    VersionConflict,
)
from tradesim.domain.events import OrderOutcome, OrderPlaced, OrderStatus, RejectReason
from tradesim.domain.fees import FeeModel
from tradesim.domain.portfolio import Written, fill_change

if TYPE_CHECKING:  # the ports layer sits above the domain; its protocols are only types here
    from tradesim.ports import GroupLedger, Ledger


@dataclass(frozen=True)
class RecordedOutcome:
    """An order's outcome as its ledger recorded it: what a replay re-emits. The change and the placing time are
    known on the portfolio item, not in the `Orders` archive (None there)."""

    status: str
    decided_at_ms: int | None = None
    fill_price: Decimal | None = None
    fee: Decimal | None = None
    reason: str | None = None
    cash_delta: Decimal | None = None
    symbol: str | None = None
    qty_delta: int | None = None
    placed_at_ms: int | None = None


@dataclass(frozen=True)
class Settled:
    """One settled decision: the outcome to emit and what the write left (None: nothing was written)."""

    order: OrderPlaced
    outcome: OrderOutcome
    written: Written | None


def _now_ms() -> int:
    return int(time.time() * 1000)


class DecisionClock:
    """The last decision time recorded per user, so that one settler's outcomes for a user get strictly increasing
    `decided_at_ms` in the order the ledger applied them: a group's write decides several orders in one millisecond,
    and readers that fold fills by time would otherwise take the order ids' order. Each new outcome takes the wall
    clock's millisecond, or one past the user's last if that is later (see settle_group), so a user deciding more
    than one order a millisecond runs ahead of the wall clock by as much; a replay re-emits its recorded time and
    takes none."""

    #: a user whose last time is this far behind the clock cannot collide with a new one: dropped (bounded memory;
    #: the margin covers a small step back of the wall clock)
    FORGET_MS = 1000

    def __init__(self, now_ms: Callable[[], int] = _now_ms) -> None:
        self.now_ms = now_ms
        self._last: dict[str, int] = {}
        self._prune_at = 1024

    def last(self, user_id: str) -> int:
        """The user's last recorded decision time; -1 for none kept."""
        return self._last.get(user_id, -1)

    def recorded(self, user_id: str, decided_at_ms: int) -> None:
        """Outcomes of the user up to this time are recorded."""
        if len(self._last) >= self._prune_at:
            now = self.now_ms()
            self._last = {u: t for u, t in self._last.items() if t > now - self.FORGET_MS}
            self._prune_at = max(1024, 2 * len(self._last))
        self._last[user_id] = max(self.last(user_id), decided_at_ms)


def trade_id(order_id: str) -> str:
    return f"{order_id}-1"  # one fill per order today; deterministic so read models collapse re-deliveries


def outcome_of(order: OrderPlaced, **decided: Any) -> OrderOutcome:
    """The order's outcome event: its identity and placing fields from the order, the rest as decided."""
    return OrderOutcome(order_id=order.order_id, user_id=order.user_id, symbol=order.symbol, side=order.side,
                        qty=order.qty, order_type=order.order_type, placed_at_ms=order.placed_at_ms, **decided)


def outcome_from_record(order: OrderPlaced, recorded: RecordedOutcome) -> OrderOutcome:
    """Rebuild the event from what the first writer recorded (replays re-emit exactly this)."""
    if recorded.decided_at_ms is None:
        raise InvalidRecord("decided_at_ms", f"the recorded outcome of {order.order_id!r} has no decision time")
    executed = recorded.status == "executed"
    return outcome_of(
        order, status=recorded.status, reason=recorded.reason or None,
        fill_price=recorded.fill_price if executed else None, fee=recorded.fee if executed else None,
        trade_id=trade_id(order.order_id) if executed else None, decided_at_ms=recorded.decided_at_ms)


def settle(decision: Decision, ledger: Ledger, fees: FeeModel, now_ms: Callable[[], int] = _now_ms) -> Settled:
    """Decide the order's terminal outcome with one conditional write; the first recorded outcome wins.

    Raises Unavailable (retry later: nothing was decided) — never a silent skip.
    """
    assert decision.kind != "rest"  # noqa: S101 - a resting order has no outcome to settle
    order = decision.order
    decided = now_ms()
    if decision.kind == "fill":
        assert decision.price is not None  # noqa: S101 - fills carry a price
        change = fill_change(order.side, order.qty, decision.price, fees)
        details = {"decided_at_ms": str(decided), "fill_price": str(decision.price), "fee": str(change.fee)}
        try:
            after = ledger.apply_fill(order.user_id, order.order_id, change.cash_delta, order.symbol,
                                      change.qty_delta, status="executed", details=details,
                                      placed_at_ms=order.placed_at_ms)
        except OutcomeAlreadyRecorded as exc:
            return _replayed(order, exc)
        except InsufficientFunds:
            return _record(order, ledger, "rejected", "insufficient_funds", decided)
        except InsufficientShares:
            return _record(order, ledger, "rejected", "insufficient_shares", decided)
        except PortfolioNotFound:
            return _record_elsewhere(order, ledger, "invalid", decided)
        except PortfolioFull:
            return _record_elsewhere(order, ledger, "too_many_recent_orders", decided)
        return Settled(order, outcome_of(
            order, status="executed", fill_price=decision.price, fee=change.fee, cash_after=after.cash,
            position_after=after.position(order.symbol), trade_id=trade_id(order.order_id), decided_at_ms=decided,
        ), after)
    status: Literal["rejected", "cancelled", "expired"] = (
        "cancelled" if decision.kind == "cancel" else "expired" if decision.kind == "expire" else "rejected")
    return _record(order, ledger, status, decision.reason, decided)


def decided_before(decision: Decision, ledger: Ledger) -> Settled | None:
    """For an order the book now holds ("rest") that a replay brought again: its outcome, if the ledger recorded
    one before (then lost with the emission: the book restored from before it, and matched the order anew, against
    other ticks, to rest this time). None: it rests. Raises Unavailable."""
    order = decision.order
    recorded = ledger.recorded(order.user_id, order.order_id)
    return None if recorded is None else Settled(order, outcome_from_record(order, recorded), None)


def settle_group(user_id: str, decisions: list[Decision], ledger: GroupLedger, fees: FeeModel,
                 clock: DecisionClock | None = None) -> list[Settled]:
    """Settle one user's queued decisions, in order, with as few writes as the ledger can manage (one, usually):
    the same outcomes as settling them one by one. If the group's write loses to another writer (VersionConflict),
    none of its unwritten changes were written, so they are settled again one by one. Raises Unavailable.
    `clock`: the settler's (kept across groups), so its decision times keep increasing per user."""
    clock = clock or DecisionClock()
    ledger.group(user_id)
    try:
        out = _settle_in_order(user_id, decisions, ledger, fees, clock)
        ledger.flush_group(user_id)
    except VersionConflict:
        ledger.end_group(user_id)
        out = _settle_in_order(user_id, decisions, ledger, fees, clock)  # the lost group's times were not recorded
    except BaseException:
        ledger.end_group(user_id)
        raise
    if out:
        clock.recorded(user_id, max(s.outcome.decided_at_ms for s in out))
    return out


def _settle_in_order(user_id: str, decisions: list[Decision], ledger: Ledger, fees: FeeModel,
                     clock: DecisionClock) -> list[Settled]:
    """Each decision settled with the wall clock's time, or one past the last decided if that is later; a replay
    keeps its recorded time and moves nothing."""
    last = clock.last(user_id)
    out: list[Settled] = []
    for d in decisions:
        settled = settle(d, ledger, fees, lambda: max(clock.now_ms(), last + 1))  # noqa: B023 - called at once
        last = max(last, settled.outcome.decided_at_ms)
        out.append(settled)
    return out


def _replayed(order: OrderPlaced, exc: OutcomeAlreadyRecorded) -> Settled:
    return Settled(order, outcome_from_record(order, exc.outcome or RecordedOutcome(status="")), None)


def _record(order: OrderPlaced, ledger: Ledger, status: OrderStatus, reason: RejectReason | None,
            decided: int) -> Settled:
    details = {"decided_at_ms": str(decided), "reason": reason or ""}
    try:
        written = ledger.apply_fill(order.user_id, order.order_id, Decimal(0), order.symbol, 0, status=status,
                                    details=details, placed_at_ms=order.placed_at_ms)
    except OutcomeAlreadyRecorded as exc:
        return _replayed(order, exc)
    except PortfolioNotFound:
        return _record_elsewhere(order, ledger, reason, decided)
    except PortfolioFull:
        return _record_elsewhere(order, ledger, "too_many_recent_orders", decided)
    return Settled(order, outcome_of(order, status=status, reason=reason, decided_at_ms=decided), written)


def _record_elsewhere(order: OrderPlaced, ledger: Ledger, reason: RejectReason | None, decided: int) -> Settled:
    """A user without a portfolio, or whose item cannot hold another outcome (the API refuses live orders for
    either; a backlog, a scripted order or a producer that bypasses the API gets here): the order is rejected,
    and the ledger records the rejection where a replay looks, or a replay after the item made room would
    execute an order already announced rejected. A replay of an order rejected so re-emits the first rejection."""
    outcome = outcome_of(order, status="rejected", reason=reason or "invalid", decided_at_ms=decided)
    try:
        ledger.record_elsewhere(order, outcome)
    except OutcomeAlreadyRecorded as exc:
        return _replayed(order, exc)
    return Settled(order, outcome, None)
