"""Portfolio maths: what a fill does to cash and positions, and the fold of outcomes into a portfolio."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from tradesim.domain.errors import InsufficientFunds, InsufficientShares, InvalidRecord
from tradesim.domain.events import OrderOutcome, Side
from tradesim.domain.fees import FeeModel
from tradesim.domain.money import round_cash


@dataclass(frozen=True)
class Change:
    """The cash and position deltas of one fill (what the conditional write applies)."""

    cash_delta: Decimal
    qty_delta: int
    fee: Decimal


def fill_change(side: Side, qty: int, price: Decimal, fees: FeeModel) -> Change:
    fee = fees.fee(qty, price)
    notional = round_cash(qty * price)
    if side == "buy":
        return Change(cash_delta=-(notional + fee), qty_delta=qty, fee=fee)
    return Change(cash_delta=notional - fee, qty_delta=-qty, fee=fee)


@dataclass
class Holdings:
    """cash and positions of one account, e.g. folded from its outcomes."""

    cash: Decimal
    positions: dict[str, int] = field(default_factory=dict)

    def check(self, symbol: str, change: Change) -> None:
        """Raise if the change would leave negative cash or a negative position (there is no short selling)."""
        if self.cash + change.cash_delta < 0:
            raise InsufficientFunds(f"cash {self.cash} cannot cover {-change.cash_delta}")
        if self.positions.get(symbol, 0) + change.qty_delta < 0:
            raise InsufficientShares(f"holds {self.positions.get(symbol, 0)} {symbol}, needs {-change.qty_delta}")

    def apply(self, symbol: str, change: Change) -> None:
        self.check(symbol, change)
        self.cash += change.cash_delta
        qty = self.positions.get(symbol, 0) + change.qty_delta
        if qty:
            self.positions[symbol] = qty
        else:
            self.positions.pop(symbol, None)


def fold(starting_cash: Decimal, outcomes: Iterable[OrderOutcome]) -> Holdings:
    """The holdings an account must have after these outcomes (each order counted once, by order_id)."""
    h = Holdings(cash=starting_cash)
    seen: set[str] = set()
    for o in outcomes:
        if o.order_id in seen or o.status != "executed":
            seen.add(o.order_id)
            continue
        seen.add(o.order_id)
        if o.fill_price is None or o.fee is None:
            raise InvalidRecord("fill_price", f"executed outcome {o.order_id} lacks its fill price or fee")
        notional = round_cash(o.qty * o.fill_price)
        delta = -(notional + o.fee) if o.side == "buy" else notional - o.fee
        h.apply(o.symbol, Change(cash_delta=delta, qty_delta=o.qty if o.side == "buy" else -o.qty, fee=o.fee))
    return h
