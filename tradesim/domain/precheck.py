"""The order API's advisory pre-check: is the price fresh, and can the user afford the order right now?

Advisory only: the execution job's conditional write on the portfolio is the real guard (cash or shares may be
spent by another order between this check and the fill). Pure functions, no I/O.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import Decimal

from tradesim.domain.errors import DomainError, InsufficientFunds, InsufficientShares
from tradesim.domain.events import OrderType, Side, Tick
from tradesim.domain.fees import FeeModel
from tradesim.domain.money import cash_text, round_cash
from tradesim.domain.portfolio import fill_change


class UnknownSymbol(DomainError):
    """No price was ever seen for the symbol."""


class StalePrice(DomainError):
    """The latest price is older than the staleness limit."""


@dataclass(frozen=True)
class OrderIntent:
    """What a user asked for, before it becomes an `OrderPlaced` event."""

    symbol: str
    side: Side
    qty: int
    order_type: OrderType
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None


def order_id_for(user_id: str, idempotency_key: str) -> str:
    """Deterministic order id of (user, Idempotency-Key): even a lost idempotency claim cannot make two orders."""
    digest = hashlib.sha256(f"{user_id}\x00{idempotency_key}".encode()).hexdigest()
    return "o_" + digest[:32]


#: how far ahead of the reader's clock a price's write time may lie (the writer's clock ahead); further, the write
#: time is no reading (a foreign writer's, a clock set years ahead) and the price as old as can be, else it would
#: count as fresh until then
MAX_CLOCK_SKEW_MS = 5_000


def price_age_ms(updated_ms: int, now_ms: int) -> int:
    """How old a cached price is: since the cache took it (`updated_ms`), never below zero; as old as can be
    (`now_ms`) when unknown (0) or more than MAX_CLOCK_SKEW_MS ahead. Every reader of a price's age goes by this."""
    if updated_ms - now_ms > MAX_CLOCK_SKEW_MS:
        return now_ms
    return max(0, now_ms - updated_ms)


def check_fresh(symbol: str, cached: tuple[Tick, int] | None, now_ms: int, stale_after_s: float) -> Tick:
    """The cached tick if it is fresh; raises UnknownSymbol or StalePrice."""
    if cached is None:
        raise UnknownSymbol(f"no price for {symbol}: unknown symbol")
    tick, updated_ms = cached
    age_s = price_age_ms(updated_ms, now_ms) / 1000
    if age_s > stale_after_s:
        raise StalePrice(f"the last price of {symbol} is {age_s:.0f} s old (limit {stale_after_s:g} s)")
    return tick


def reference_price(intent: OrderIntent, tick: Tick, buffer_pct: Decimal) -> Decimal:
    """Price the order is budgeted at, the one that leaves the least cash: the limit price; else for a buy the ask
    (or last, if higher) plus the buffer, for a sell the bid (or last, if lower) less it."""
    if intent.limit_price is not None:
        return intent.limit_price
    if intent.side == "buy":
        base = max(tick.ask, tick.last)
        if intent.stop_price is not None:
            base = max(base, intent.stop_price)  # a buy stop triggers at or above its stop
        return base * (1 + buffer_pct / Decimal(100))
    base = min(tick.bid, tick.last)
    if intent.stop_price is not None:
        base = min(base, intent.stop_price)  # a sell stop triggers at or below its stop
    return base * (1 - buffer_pct / Decimal(100))


def estimated_cost(intent: OrderIntent, tick: Tick, buffer_pct: Decimal, fees: FeeModel) -> Decimal:
    """Cash the order may consume, fee included, rounded to the cent: a buy's price and fee; a sell's fee less its
    proceeds (negative when the proceeds cover the fee)."""
    change = fill_change(intent.side, intent.qty, reference_price(intent, tick, buffer_pct), fees)
    return round_cash(-change.cash_delta)


def check_affordable(intent: OrderIntent, tick: Tick, cash: Decimal, position: int, *, buffer_pct: Decimal,
                     fees: FeeModel) -> None:
    """Raises InsufficientShares (a sell of more than held) or InsufficientFunds (cash that cannot cover the
    order's estimated cost: a buy's, or the fee of a sell whose proceeds do not cover it), as the job's write
    would refuse it."""
    if intent.side == "sell" and position < intent.qty:
        raise InsufficientShares(f"holding {position} {intent.symbol}, cannot sell {intent.qty}")
    need = estimated_cost(intent, tick, buffer_pct, fees)
    if cash < need:
        what = "price, buffer and fees" if intent.side == "buy" else "fee, less the estimated proceeds"
        raise InsufficientFunds(f"cash {cash_text(cash)} cannot cover the estimated {need} ({what}) of "
                                f"{intent.side}ing {intent.qty} {intent.symbol}")
