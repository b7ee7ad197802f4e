"""Business errors: what a rule refused, in the trading model's own words."""

from __future__ import annotations


class DomainError(Exception):
    """Base of all business-rule failures."""


class InsufficientFunds(DomainError):
    """Cash would go negative."""


class InsufficientShares(DomainError):
    """A position would go negative (short selling is off)."""


class OutcomeAlreadyRecorded(DomainError):
    """The order already has a terminal outcome; the first recorded one wins."""


class VersionConflict(DomainError):
    """An optimistic-concurrency check failed: someone else wrote the item first."""


class InvalidRecord(DomainError):
    """A record or document is malformed; the message names the field."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")
