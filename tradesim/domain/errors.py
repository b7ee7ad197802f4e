"""Business errors: what a rule refused, in the trading model's own words."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tradesim.domain.settlement import RecordedOutcome


class DomainError(Exception):
    """Base of all business-rule failures."""


class InsufficientFunds(DomainError):
    """Cash would go negative."""


class InsufficientShares(DomainError):
    """A position would go negative (there is no short selling)."""


class OutcomeAlreadyRecorded(DomainError):
    """The order already has a terminal outcome; the first recorded one wins."""

    def __init__(self, order_id: str = "", outcome: RecordedOutcome | None = None) -> None:
        self.order_id = order_id
        #: the outcome recorded first, so a replay can re-emit it instead of recomputing
        self.outcome = outcome
        super().__init__(f"order {order_id!r} already has a recorded outcome" if order_id else
                         "the order already has a recorded outcome")


class PortfolioNotFound(DomainError):
    """No portfolio exists for the user."""


class PortfolioFull(DomainError):
    """The portfolio item cannot record another outcome: too many recent orders (the store's item-size limit)."""


class PortfolioExists(DomainError):
    """A portfolio for the user was already created."""


class VersionConflict(DomainError):
    """An optimistic-concurrency check failed: someone else wrote the item first."""


class InvalidRecord(DomainError):
    """A record or document is malformed; the message names the field."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")
