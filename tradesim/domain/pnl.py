"""Profit and loss from a user's executions, by the average-cost method: a buy adds what it cost in cash (notional
and fee, as the ledger charged them) to the position's cost basis; a sell takes the average cost of the shares sold
out of it and realizes its cash proceeds (notional − fee) − that cost. So equity − cash before the trades =
realized + unrealized, to the cent."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_EVEN, Decimal

from tradesim.domain.money import round_cash
from tradesim.domain.trades import ZERO, TradeRecord

COST_QUANTUM = Decimal("0.00000001")


@dataclass(frozen=True)
class PositionCost:
    """Shares held, their cost basis (fees included) and the P&L their sales realized."""

    symbol: str
    qty: int = 0
    cost: Decimal = ZERO
    realized: Decimal = ZERO

    @property
    def average_cost(self) -> Decimal | None:
        return (self.cost / self.qty).quantize(COST_QUANTUM, ROUND_HALF_EVEN) if self.qty else None

    def after(self, fill: TradeRecord) -> PositionCost:
        if fill.side == "buy":
            return replace(self, qty=self.qty + fill.qty, cost=self.cost - cash_delta(fill))
        sold = min(fill.qty, self.qty)  # the ledger refuses short sales; a partial history must not go negative
        removed = (self.cost * sold / self.qty).quantize(COST_QUANTUM, ROUND_HALF_EVEN) if self.qty else ZERO
        return replace(self, qty=self.qty - sold, cost=self.cost - removed,
                       realized=self.realized + cash_delta(fill) - removed)


def cash_delta(fill: TradeRecord) -> Decimal:
    """What a fill did to the ledger's cash (its rule: the notional rounded to cents, then the fee):
    −(notional + fee) for a buy, notional − fee for a sell."""
    notional, fee = round_cash(fill.notional), fill.fee or ZERO
    return -(notional + fee) if fill.side == "buy" else notional - fee


def positions(executions: Iterable[TradeRecord], since_ms: int = 0) -> dict[str, PositionCost]:
    """Fold executions (in decision order; other statuses are skipped) into a cost position per symbol; those
    decided before `since_ms` (the account's last reset) are of the account before it and are skipped too."""
    out: dict[str, PositionCost] = {}
    for fill in executions:
        if fill.executed and fill.decided_at_ms >= since_ms:
            out[fill.symbol] = out.get(fill.symbol, PositionCost(fill.symbol)).after(fill)
    return out


@dataclass(frozen=True)
class Valued:
    """A position at a price: market value and unrealized P&L are None without a price. `cost` is the cost basis
    itself: a client that rebuilt it as average cost × qty would be off by the average's rounding times qty."""

    symbol: str
    qty: int
    average_cost: Decimal | None
    price: Decimal | None
    market_value: Decimal | None
    unrealized: Decimal | None
    realized: Decimal
    day_change: Decimal | None
    cost: Decimal | None = None


def value(position: PositionCost, qty: int, price: Decimal | None, open_price: Decimal | None) -> Valued:
    """Value `qty` shares (the ledger's count, authoritative) with the cost basis of `position`. While the
    executions behind `position` lag the ledger (other share counts), its cost basis is of other shares: average
    cost and unrealized P&L are then None."""
    market = price * qty if price is not None else None
    known = qty == position.qty
    unrealized = market - position.cost if market is not None and known else None
    day = (price - open_price) * qty if price is not None and open_price is not None else None
    return Valued(position.symbol, qty, position.average_cost if known else None, price, market, unrealized,
                  position.realized, day, position.cost if known else None)


@dataclass(frozen=True)
class PnlPoint:
    """The account at the end of one bucket: realized P&L so far and equity at the marks of that time."""

    end_ms: int
    realized: Decimal
    equity: Decimal | None


def pnl_series(executions: Sequence[TradeRecord], cash_now: Decimal, bucket_ends: Sequence[int],
               marks: Mapping[int, Mapping[str, Decimal]], since_ms: int = 0) -> list[PnlPoint]:
    """Realized P&L and equity at each bucket end (ascending). Cash then = cash now minus the cash deltas of the
    fills after it (no deposit comes between fills: a reset, which sets the cash, starts the series over at
    `since_ms`); positions are marked at `marks[end]` (equity is None when a held symbol has no mark). A bucket
    that ends at or before `since_ms` was the account before its reset: no equity, no realized P&L."""
    fills = sorted((f for f in executions if f.executed and f.decided_at_ms >= since_ms),
                   key=lambda f: f.decided_at_ms)
    cash = cash_now - sum((cash_delta(f) for f in fills), ZERO)
    held: dict[str, PositionCost] = {}
    out: list[PnlPoint] = []
    i = 0
    for end in bucket_ends:
        if end <= since_ms:
            out.append(PnlPoint(end, ZERO, None))
            continue
        while i < len(fills) and fills[i].decided_at_ms < end:
            fill = fills[i]
            held[fill.symbol] = held.get(fill.symbol, PositionCost(fill.symbol)).after(fill)
            cash += cash_delta(fill)
            i += 1
        realized = sum((p.realized for p in held.values()), ZERO)
        at = marks.get(end, {})
        open_positions = [p for p in held.values() if p.qty]
        equity = (cash + sum((at[p.symbol] * p.qty for p in open_positions), ZERO)
                  if all(p.symbol in at for p in open_positions) else None)
        out.append(PnlPoint(end, realized, equity))
    return out
