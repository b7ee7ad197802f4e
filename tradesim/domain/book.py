"""One symbol's order book: the latest quote and the resting orders, turning orders, cancels and ticks into
`Decision`s (fill at a price, expire, cancel, reject, rest). The execution job keeps one per symbol in keyed state;
no I/O here.

Scripted orders carry `at_ms`, a time on the market's clock, and may carry `cancel_at_ms`. The book holds such
an order until a tick past `at_ms` arrives and applies it, in (at_ms, arrival) order, to the quote in effect at
`at_ms` — the one before that tick; once the stream passes `cancel_at_ms` an order still open is cancelled before
that tick is matched. So their outcomes depend on the tick stream alone, not on when the orders arrived. One that
arrives after the stream passed its time is applied on arrival (the scripted runner publishes ticks past a time
only once the book holds every order scripted before it), or cancelled if the stream passed its cancel time too
(expired if its market day ended before that). A cancel with a market time is held the same way, as
the order's `held_cancel_ms` (its `cancel_at_ms` stays as placed: it is part of the order's body).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from tradesim.domain.events import OrderCancelRequested, OrderPlaced, RejectReason, Tick
from tradesim.domain.matching import Expire, Fill, Quote, Rest, SlippageModel, day_over, decide
from tradesim.domain.orders import NOT_PROCESSED, overdue

#: "rest": the order now rests in the book — not an outcome; the Orders mirror marks it `in_book`, so readers keep it
#: open past the processing deadline
Kind = Literal["fill", "expire", "cancel", "reject", "rest"]
#: a book remembers at most this many cancels of orders it had not seen (see `Book.early_cancels`): they are
#: mostly cancels that came just after their order was decided, and the book is state written at every record
EARLY_CANCELS_KEPT = 200
#: ... and each for this long by default (the job keeps them longer if the API's Kafka delivery timeout is
#: longer): a cancel overtakes its order only while the order's own publish is on its way; an order sent again
#: later (a keyed retry) comes after its cancel again (the API keeps the request on the order's claim)
EARLY_CANCEL_WINDOW_MS = 60_000


def _now_ms() -> int:
    return int(time.time() * 1000)


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
    #: last (run_id, seq) applied: a re-delivered tick does not act twice, and a run older than the newest seen
    #: does not move the quote back (the price cache's rule)
    last_tick: tuple[int, int] = (-1, -1)
    #: scripted orders waiting for the tick stream to pass their `at_ms`, in arrival order (a tuple: books
    #: pickled before it existed restore with this class default)
    scheduled: tuple[OrderPlaced, ...] = ()
    #: cancels of orders this book had not seen, as (order_id, user_id, requested_at_ms, at_ms), newest last: an
    #: order whose publish was overtaken by its cancel is cancelled as its user asked when it comes (at the
    #: cancel's market time `at_ms`, if it has one). Kept `EARLY_CANCEL_WINDOW_MS` (books pickled before `at_ms`
    #: was kept hold 3-tuples)
    early_cancels: tuple[tuple[str, str, int] | tuple[str, str, int, int | None], ...] = ()

    def on_order(self, order: OrderPlaced, slippage: SlippageModel,
                 fallback: Callable[[str], Tick | None] | None = None, *, now_ms: int | None = None,
                 deadline_ms: int | None = None, early_window_ms: int = EARLY_CANCEL_WINDOW_MS) -> list[Decision]:
        """`deadline_ms`: an order that reaches the book more than this after its placing expires unmatched
        (the job was down, or behind, for longer than users were promised). `early_window_ms`: how long a cancel
        that came before its order is kept (at least the producers' delivery timeout)."""
        if order.order_id in self.resting or any(o.order_id == order.order_id for o in self.scheduled):
            return []  # a re-delivered order that already rests or waits for its time
        now = _now_ms() if now_ms is None else now_ms
        times = self._take_early_cancels(order, early_window_ms) if self.early_cancels else []
        if deadline_ms is not None and overdue(order.placed_at_ms, now, deadline_ms):
            # before its cancels: readers show it expired since the deadline (`shown_status`), cancelled or not
            return [Decision(order, "expire", reason=NOT_PROCESSED)]
        if times:  # its user cancelled it before it came: now, or at the earliest market time asked
            at_ms = None if None in times else min(t for t in times if t is not None)
            if at_ms is None:
                return [Decision(order, "cancel")]
            order = _cancel_held(order, at_ms)  # held as its cancel would have been, had the order come first
            if not self._waits(order.cancel_due_ms):  # passed already: as its own cancel time would be (below)
                return [_passed_cancel(order)]
        if order.cancel_due_ms is not None and not self._waits(order.cancel_due_ms):
            # the stream passed that before it came: never matched (a live order's day begins on arrival, so no
            # day of its ended before the cancel time; a scripted one's began at its `at_ms`)
            return [_passed_cancel(order)]
        if self._waits(order.at_ms):
            self.scheduled = (*self.scheduled, order)
            return [Decision(order, "rest")]  # held in this book: the Orders mirror shows it in the book
        quote = self.quote
        if quote is None and fallback is not None:
            cached = fallback(order.symbol)  # no tick seen yet in this job: the market-data cache knows the price
            if cached is not None:
                quote = Quote.of(cached)
                if not self.scheduled:  # the book's own, with its run: an older run's ticks must not move it back
                    # (not while scripted orders wait: they are decided on the stream's quotes, from its first)
                    self.quote, self.last_tick = quote, (cached.run_id, cached.seq)
        if quote is None:
            return [Decision(order, "reject", reason="unknown_symbol")]
        if order.cancel_due_ms is not None and order.cancel_due_ms < quote.event_time_ms:
            return [Decision(order, "cancel")]  # the cached quote is past its cancel time (a live order: no day yet)
        if order.time_in_force == "day" and order.at_ms is None and order.session_ms is None:
            order = order.model_copy(update={"session_ms": quote.event_time_ms})  # its session: the market's day
        return self._apply(order, quote, slippage, triggered=False, announce=True)

    def on_cancel(self, cancel: OrderCancelRequested, *,
                  early_window_ms: int = EARLY_CANCEL_WINDOW_MS) -> list[Decision]:
        """Cancel an open order of the cancel's user now; one with a market time the stream has not passed yet
        becomes the order's `held_cancel_ms` instead (if earlier than its due cancel), announced as "rest" so the
        mirror shows it. A cancel of a lost order (`lost_order`) cancels it only if this book does not hold it."""
        if cancel.lost_order is not None:
            return self._cancel_lost(cancel, cancel.lost_order, early_window_ms)
        if cancel.at_ms is not None and self._waits(cancel.at_ms):
            return self._cancel_later(cancel, cancel.at_ms, early_window_ms)
        for waiting in self.scheduled:
            if waiting.order_id == cancel.order_id and waiting.user_id == cancel.user_id:
                self.scheduled = tuple(w for w in self.scheduled if w is not waiting)
                return [Decision(waiting, "cancel")]
        held = self.resting.pop(cancel.order_id, None)
        if held is None:  # not resting (filled, expired, or not here yet): nothing to cancel now
            self._keep_early_cancel(cancel, cancel.at_ms, early_window_ms)  # a time passed: judged as the order comes
            return []
        if held[0].user_id != cancel.user_id:
            self.resting[cancel.order_id] = held  # someone else's order: leave it
            return []
        return [Decision(held[0], "cancel")]

    def _cancel_lost(self, cancel: OrderCancelRequested, lost: OrderPlaced, window_ms: int) -> list[Decision]:
        """An order an earlier run's book held, sent after this run started without that state. Held here (this
        run read it again), it is this run's and stays; otherwise it is cancelled from the order the cancel carries
        (if it was decided after all, settling keeps that first outcome), and the cancel is kept for a later copy
        (as early cancels are: the newest `EARLY_CANCELS_KEPT` of the book)."""
        if cancel.order_id in self.resting or any(o.order_id == cancel.order_id for o in self.scheduled):
            return []
        self._keep_early_cancel(cancel, None, window_ms)
        return [Decision(lost, "cancel")]

    def _keep_early_cancel(self, cancel: OrderCancelRequested, at_ms: int | None, window_ms: int) -> None:
        now = cancel.requested_at_ms
        kept = [e for e in self.early_cancels[-(EARLY_CANCELS_KEPT - 1):] if not overdue(e[2], now, window_ms)]
        self.early_cancels = (*kept, (cancel.order_id, cancel.user_id, now, at_ms))

    def _take_early_cancels(self, order: OrderPlaced, window_ms: int) -> list[int | None]:
        """The market times (None: at once) of the cancels the order's user sent before it came, taken from the
        book; forgets the cancels requested a window before this order was placed. The times compared are the
        records' own, not the clock's: a job restored from a checkpoint replays them minutes later in the same
        order, and must decide the same."""
        kept = tuple(e for e in self.early_cancels if not overdue(e[2], order.placed_at_ms, window_ms))
        self.early_cancels = tuple(e for e in kept if (e[0], e[1]) != (order.order_id, order.user_id))
        return [e[3] if len(e) > 3 else None for e in kept if (e[0], e[1]) == (order.order_id, order.user_id)]

    def on_tick(self, tick: Tick, slippage: SlippageModel) -> list[Decision]:
        order_key = (tick.run_id, tick.seq)
        if self.quote is not None and order_key <= self.last_tick:
            return []  # a re-delivery, or an older replay run's tick: the newer run owns the quote (as in Redis)
        self.last_tick = order_key
        out = self._release(tick.event_time_ms, slippage, Quote.of(tick))
        self.quote = Quote.of(tick)
        for order_id, (order, triggered) in list(self.resting.items()):
            del self.resting[order_id]
            out += self._apply(order, self.quote, slippage, triggered)
        return out

    def _cancel_later(self, cancel: OrderCancelRequested, at_ms: int, early_window_ms: int) -> list[Decision]:
        for i, waiting in enumerate(self.scheduled):
            if waiting.order_id == cancel.order_id and waiting.user_id == cancel.user_id:
                order = _cancel_held(waiting, at_ms)
                self.scheduled = (*self.scheduled[:i], order, *self.scheduled[i + 1:])
                return [Decision(order, "rest")]
        held = self.resting.get(cancel.order_id)
        if held is None:  # not here yet (or decided): kept, in case it comes
            self._keep_early_cancel(cancel, at_ms, early_window_ms)
            return []
        if held[0].user_id != cancel.user_id:
            return []
        order = _cancel_held(held[0], at_ms)
        self.resting[cancel.order_id] = (order, held[1])
        return [Decision(order, "rest")]

    def _waits(self, at_ms: int | None) -> bool:
        """A scripted time the tick stream has not passed yet (the quote in effect then may still change)."""
        return at_ms is not None and (self.quote is None or self.quote.event_time_ms <= at_ms)

    def _release(self, now_ms: int, slippage: SlippageModel, first: Quote) -> list[Decision]:
        """Before the tick at `now_ms` applies: apply the held orders whose time it passes, on the quote in effect
        then (the current one, or `first` when the symbol had none: a time before the first tick means that tick),
        then cancel the open orders whose cancel time (`cancel_due_ms`) it passes."""
        out: list[Decision] = []
        due = [o for o in self.scheduled if o.at_ms is not None and o.at_ms < now_ms]
        if due:
            self.scheduled = tuple(o for o in self.scheduled if o not in due)
            quote = self.quote or first
            for order in sorted(due, key=lambda o: o.at_ms or 0):  # stable: arrival order within one time
                cancel_ms = order.cancel_due_ms
                # the time of the quote it meets: its own, or (matched on `first`) that tick's
                meets_ms = now_ms if self.quote is None else order.at_ms
                if cancel_ms is not None and meets_ms is not None and cancel_ms < meets_ms:
                    out.append(_cancelled(order, cancel_ms))  # before the quote it would meet: never enters
                else:
                    out += self._apply(order, quote, slippage, triggered=False)
        for order_id, (order, _) in list(self.resting.items()):
            cancel_ms = order.cancel_due_ms
            if cancel_ms is not None and cancel_ms < now_ms:
                del self.resting[order_id]
                out.append(_cancelled(order, cancel_ms))
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


def _cancelled(order: OrderPlaced, cancel_ms: int) -> Decision:
    """An open order whose cancel time the stream passed: cancelled, or expired if its market day ended first."""
    return Decision(order, "expire", reason="expired") if day_over(order, cancel_ms) else Decision(order, "cancel")


def _passed_cancel(order: OrderPlaced) -> Decision:
    """An order that came after the stream passed its cancel time: a scripted one as if it had come first (expired if
    its market day, begun at its `at_ms`, ended before that), a live one cancelled (its day begins on arrival)."""
    cancel_ms = order.cancel_due_ms
    if order.at_ms is None or cancel_ms is None:
        return Decision(order, "cancel")
    return _cancelled(order, cancel_ms)


def _cancel_held(order: OrderPlaced, at_ms: int) -> OrderPlaced:
    """The order with a cancel at market time `at_ms` held, unless it is due to be cancelled no later."""
    cancel_ms = order.cancel_due_ms
    if cancel_ms is not None and cancel_ms <= at_ms:
        return order
    # not re-validated: a cancel at the order's own market time may equal its at_ms
    return order.model_copy(update={"held_cancel_ms": at_ms})
