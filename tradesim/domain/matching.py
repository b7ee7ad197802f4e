"""Order matching against the latest quote: when an order fills, at what price, and when it expires.

Pure functions of (order, quote): the Flink execution job keeps the quote and the resting orders in keyed state
and calls these; the rules never touch I/O.

Rules
- market: buy at ask, sell at bid, worsened by a seeded slippage of at most `slippage_bps` (deterministic per
  order id, so a recomputation after a restore gives the same price; see `seed_of` for scripted orders), and
  never below 0.0001 (a large slippage on a bid of a cent or so would round a sale's price to 0).
- limit: buy fills when ask <= limit at min(ask, limit); sell fills when bid >= limit at max(bid, limit) —
  never worse than the limit, and no slippage (a limit is a price guarantee).
- stop: triggers when last crosses the stop (buy: last >= stop, sell: last <= stop), then fills as a market order.
- stop_limit: triggers like a stop, then rests as a limit order.
- time in force: ioc fills on the first quote it meets or expires; day expires when the quote's event time passes
  the end of the market's UTC day the order entered (the quote time the book received it at; a scripted order:
  the day of its `at_ms`); gtc rests until filled or
  cancelled.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from tradesim.domain.events import OrderPlaced, Tick

PRICE_QUANTUM = Decimal("0.0001")
DAY_MS = 86_400_000


@dataclass(frozen=True)
class Quote:
    bid: Decimal
    ask: Decimal
    last: Decimal
    event_time_ms: int

    @classmethod
    def of(cls, tick: Tick) -> Quote:
        return cls(bid=tick.bid, ask=tick.ask, last=tick.last, event_time_ms=tick.event_time_ms)


def seed_of(order: OrderPlaced) -> str:
    """What an order's slippage is drawn from: its id; for a scripted order its client id and market time, which
    a repeated scenario run keeps (its ids change with the run's accounts), so the run repeats exactly."""
    if order.at_ms is not None:
        return f"scripted:{order.client_order_id or ''}:{order.at_ms}"
    return order.order_id


@dataclass(frozen=True)
class SlippageModel:
    max_bps: Decimal = Decimal("2")
    seed: int = 7

    def fraction(self, order_id: str) -> Decimal:
        """A deterministic fraction in [0, max_bps / 10 000) for this order."""
        digest = hashlib.sha256(f"{self.seed}:{order_id}".encode()).digest()
        unit = Decimal(int.from_bytes(digest[:8], "big")) / Decimal(2**64)
        return unit * self.max_bps / Decimal(10_000)

    def market_price(self, order: OrderPlaced, quote: Quote) -> Decimal:
        slip = self.fraction(seed_of(order))
        raw = quote.ask * (1 + slip) if order.side == "buy" else quote.bid * (1 - slip)
        # a fill is at one tick at least: a large `slippage_bps` on a bid of a cent or so rounds to 0, which no outcome
        # takes (the ledger wrote the sale, then every settle of the order raised on its outcome)
        return max(PRICE_QUANTUM, raw.quantize(PRICE_QUANTUM, rounding=ROUND_HALF_EVEN))


@dataclass(frozen=True)
class Fill:
    price: Decimal


@dataclass(frozen=True)
class Expire:
    pass


@dataclass(frozen=True)
class Rest:
    """Keep waiting; `triggered` is True once a stop-limit's stop has been hit (it now rests as a limit)."""

    triggered: bool = False


Decision = Fill | Expire | Rest


def day_end_ms(order: OrderPlaced) -> int:
    """The end of the UTC day, on the market's clock, of the session the order entered: its `at_ms` (scripted),
    else the quote time the book stamped on it (`session_ms`), else (never stamped) its wall-clock placing time."""
    placed = order.at_ms
    if placed is None:
        placed = getattr(order, "session_ms", None)  # an order pickled in a book before the field existed
    if placed is None:
        placed = order.placed_at_ms
    return (placed // DAY_MS + 1) * DAY_MS


def _limit_fill(order: OrderPlaced, quote: Quote) -> Fill | None:
    limit = order.limit_price
    assert limit is not None  # noqa: S101 - OrderPlaced's validator guarantees it for limit types
    if order.side == "buy" and quote.ask <= limit:
        return Fill(min(quote.ask, limit))
    if order.side == "sell" and quote.bid >= limit:
        return Fill(max(quote.bid, limit))
    return None


def _stop_hit(order: OrderPlaced, quote: Quote) -> bool:
    stop = order.stop_price
    assert stop is not None  # noqa: S101 - guaranteed by OrderPlaced for stop types
    return quote.last >= stop if order.side == "buy" else quote.last <= stop


def day_over(order: OrderPlaced, at_ms: int) -> bool:
    """Whether a DAY order's market day ended by market time `at_ms` (it expires; a market order never rests)."""
    return order.time_in_force == "day" and order.order_type != "market" and at_ms >= day_end_ms(order)


def decide(order: OrderPlaced, quote: Quote, slippage: SlippageModel, triggered: bool = False) -> Decision:
    """What happens to `order` on `quote`. `triggered`: a stop-limit whose stop was hit on an earlier quote."""
    if day_over(order, quote.event_time_ms):
        return Expire()
    kind = order.order_type
    fill: Fill | None = None
    if kind == "market":
        fill = Fill(slippage.market_price(order, quote))
    elif kind == "limit":
        fill = _limit_fill(order, quote)
    elif kind == "stop":
        if _stop_hit(order, quote):
            fill = Fill(slippage.market_price(order, quote))
    else:  # stop_limit
        triggered = triggered or _stop_hit(order, quote)
        if triggered:
            fill = _limit_fill(order, quote)
    if fill is not None:
        return fill
    if order.time_in_force == "ioc":
        return Expire()
    return Rest(triggered=triggered)
