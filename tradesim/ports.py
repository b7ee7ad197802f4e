"""Protocols and errors that domain-facing code depends on; adapters implement and raise them.

The execution job settles on a `GroupLedger` (tradesim.adapters.dynamodb.portfolios.PortfolioStore), whose
outcomes leave for an `OutcomeArchive` (tradesim.adapters.dynamodb.orders.OrderStore).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Protocol

from tradesim.domain.portfolio import Written
from tradesim.domain.settlement import RecordedOutcome


class Unavailable(Exception):
    """An external system did not answer within its deadline (down, unreachable, overloaded)."""


class Ledger(Protocol):
    """Where an order's outcome is recorded together with its cash/position change, atomically."""

    def apply_fill(self, user_id: str, order_id: str, cash_delta: Decimal, symbol: str, qty_delta: int, *,
                   status: str = "executed", details: Mapping[str, str] | None = None,
                   placed_at_ms: int | None = None) -> Written:
        """Record the outcome and the change in one conditional write. Raises OutcomeAlreadyRecorded (with the
        first outcome), InsufficientFunds, InsufficientShares, PortfolioNotFound, PortfolioFull, VersionConflict,
        Unavailable."""
        ...


class GroupLedger(Ledger, Protocol):
    """A ledger with group commit: apply_fill between group() and flush_group() is written once, at the flush."""

    def group(self, user_id: str) -> None: ...

    def flush_group(self, user_id: str) -> None:
        """Raises VersionConflict (nothing of the group was written) or Unavailable."""
        ...

    def end_group(self, user_id: str) -> None: ...


class OutcomeArchive(Protocol):
    """Where recorded outcomes stay once they leave the ledger's item."""

    def decided(self, order_ids: list[str]) -> dict[str, RecordedOutcome]:
        """order id → its recorded outcome, for those the archive holds."""
        ...
