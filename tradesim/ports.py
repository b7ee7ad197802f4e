"""Protocols and errors that domain-facing code depends on; adapters implement and raise them.

The execution job settles on a `GroupLedger` (tradesim.adapters.dynamodb.portfolios.PortfolioStore), whose
outcomes leave for an `OutcomeArchive` (tradesim.adapters.dynamodb.orders.OrderStore).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Protocol

from tradesim.domain.events import OrderOutcome, OrderPlaced
from tradesim.domain.portfolio import Written
from tradesim.domain.settlement import RecordedOutcome
from tradesim.domain.trades import TradePage, TradeQuery, TradeRecord, VolumeBucket


class Unavailable(Exception):
    """An external system did not answer within its deadline (down, unreachable, overloaded)."""


class StoreFull(Unavailable):
    """The store answers but refuses writes: it is at its memory cap (Redis at `maxmemory` with nothing it may
    evict)."""


class InjectedFault(Exception):
    """Raised on purpose by a stage configured to fail on a record (`faults.poison`), to drill the guards."""


class Ledger(Protocol):
    """Where an order's outcome is recorded together with its cash/position change, atomically."""

    def apply_fill(self, user_id: str, order_id: str, cash_delta: Decimal, symbol: str, qty_delta: int, *,
                   status: str = "executed", details: Mapping[str, str] | None = None,
                   placed_at_ms: int | None = None) -> Written:
        """Record the outcome and the change in one conditional write. Raises OutcomeAlreadyRecorded (with the
        first outcome), InsufficientFunds, InsufficientShares, PortfolioNotFound, PortfolioFull, VersionConflict,
        Unavailable."""
        ...

    def record_elsewhere(self, order: OrderPlaced, outcome: OrderOutcome) -> None:
        """Record an outcome the user's item cannot hold (it is full, or the user has none) where a replay of the
        order looks, as far as the ledger can (see its implementation for what it cannot). Raises
        OutcomeAlreadyRecorded (with the outcome recorded first), Unavailable."""
        ...

    def recorded(self, user_id: str, order_id: str) -> RecordedOutcome | None:
        """The outcome recorded for the order, wherever the ledger keeps it; None: none. Raises Unavailable."""
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

    def record_first(self, order: OrderPlaced, outcome: OrderOutcome) -> RecordedOutcome | None:
        """Hold the order's outcome unless it holds one: None if this call recorded it, else the first one."""
        ...


class Refused(Exception):
    """A read model refused these records for what they are (a mapping or range it cannot hold): writing them
    again will fail again. Any other failure may pass on a retry."""


class InvalidCursor(ValueError):
    """A search cursor this read model did not hand out (or for another query)."""


class TradeSink(Protocol):
    """A read model the persistence service writes outcomes into. Writing an order id again is a no-op, so a
    batch may be written any number of times (effectively once)."""

    name: str

    def write(self, records: Sequence[TradeRecord]) -> None:
        """All or nothing as far as the caller knows: raises Unavailable (retry the whole batch later), Refused
        or InvalidRecord (a record it can never hold)."""
        ...


class TradeSearch(Protocol):
    """The search read model (OpenSearch)."""

    def search(self, query: TradeQuery) -> TradePage:
        """Raises InvalidCursor, Unavailable."""
        ...


class TradeAnalytics(Protocol):
    """The analytics read model (ClickHouse). Re-delivered outcomes never count twice."""

    def volume(self, *, interval_s: int, from_ms: int, to_ms: int, symbol: str | None = None,
               user_id: str | None = None) -> list[VolumeBucket]:
        """Executed volume per symbol and bucket in [from_ms, to_ms), buckets aligned to the epoch, ordered by
        symbol then start; buckets without trades left out. Raises Unavailable."""
        ...

    def executions(self, user_id: str, *, to_ms: int | None = None) -> list[TradeRecord]:
        """The user's executed orders in decision order (before to_ms if given). Raises Unavailable."""
        ...

    def marks(self, symbols: Sequence[str], bucket_ends: Sequence[int]) -> dict[int, dict[str, Decimal]]:
        """The last fill price (any user) of each symbol before each bucket end. Raises Unavailable."""
        ...


class Rebuildable(Protocol):
    """A read model that can be rebuilt next to its live copy."""

    name: str

    def fresh(self) -> TradeSink:
        """Create an empty copy beside the live one and return a writer into it."""
        ...

    def switch(self) -> None:
        """Make the fresh copy the live one and drop the old (search: one alias move; ClickHouse 18.16: one RENAME,
        during which a reader may briefly find no table and get Unavailable → 503)."""
        ...

    def live(self) -> TradeSink:
        """A writer through the live name."""
        ...

    def discard(self) -> None:
        """Drop the fresh copy when the load or the switch failed, unless the switch may have made it live;
        raises Unavailable."""
        ...
