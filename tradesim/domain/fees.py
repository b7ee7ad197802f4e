"""The fee model, shared by the order API (affordability estimate) and the execution job (the real charge)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from tradesim.domain.money import round_cash


@dataclass(frozen=True)
class FeeModel:
    """fee = max(minimum, qty × per_share + notional × bps / 10 000), rounded half-even to the cent."""

    per_share: Decimal = Decimal("0.005")
    bps: Decimal = Decimal("1")
    minimum: Decimal = Decimal("1.00")

    def fee(self, qty: int, price: Decimal) -> Decimal:
        raw = qty * self.per_share + qty * price * self.bps / Decimal(10_000)
        return round_cash(max(self.minimum, raw))

    def buy_cost(self, qty: int, price: Decimal) -> Decimal:
        """Cash a buy of qty at price consumes, fee included."""
        return round_cash(qty * price) + self.fee(qty, price)
