"""Portfolio maths: what a fill does to cash and positions, the holdings it leaves, and the fold of outcomes into
a portfolio."""

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
    """Cash and positions of one account (e.g. folded from its outcomes, or read for the API's pre-check), with
    the version and the count of recent outcomes of the stored item they come from."""

    cash: Decimal
    positions: dict[str, int] = field(default_factory=dict)
    version: int = 0
    n_outcomes: int = 0

    def position(self, symbol: str) -> int:
        return self.positions.get(symbol, 0)

    def check(self, symbol: str, change: Change) -> None:
        """Raise if the change would leave a negative position (there is no short selling) or negative cash: the
        shares first, as the API's pre-check (a sale of shares never held is that, whatever the fee)."""
        if self.positions.get(symbol, 0) + change.qty_delta < 0:
            raise InsufficientShares(f"holds {self.positions.get(symbol, 0)} {symbol}, needs {-change.qty_delta}")
        if self.cash + change.cash_delta < 0:
            raise InsufficientFunds(f"cash {self.cash} cannot cover {-change.cash_delta}")

    def apply(self, symbol: str, change: Change) -> None:
        self.check(symbol, change)
        self.cash += change.cash_delta
        qty = self.positions.get(symbol, 0) + change.qty_delta
        if qty:
            self.positions[symbol] = qty
        else:
            self.positions.pop(symbol, None)


@dataclass(frozen=True)
class Written:
    """What one write of a user's portfolio left: the cash, the order symbol's position, the item's version and
    its count of recent outcomes (the execution job patches the API's holdings view with it)."""

    user_id: str
    cash: Decimal
    symbol: str
    #: the symbol's position after the write; None when the write did not change it (a recorded refusal)
    quantity: int | None
    version: int
    n_outcomes: int

    def position(self, symbol: str) -> int:
        if symbol != self.symbol or self.quantity is None:
            raise ValueError(f"this write did not change the position in {symbol}")
        return self.quantity


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
