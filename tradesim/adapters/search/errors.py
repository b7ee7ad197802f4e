"""Search errors in tradesim's terms; the client maps every vendor exception onto these."""

from __future__ import annotations

from tradesim.ports import Unavailable

#: HTTP statuses that mean "the cluster cannot serve now" rather than "this request is wrong"
UNAVAILABLE_STATUSES = frozenset({429, 502, 503, 504})


class SearchUnavailable(Unavailable):
    """The search cluster did not answer within the deadline, or said it cannot serve now."""


class SearchRequestError(Exception):
    """The cluster answered and refused the request (bad query, mapping conflict, missing index)."""

    def __init__(self, what: str, status: int | None, error_type: str, reason: str) -> None:
        self.status = status
        self.error_type = error_type
        self.reason = reason
        super().__init__(f"{what}: {error_type} (HTTP {status}): {reason}")


class IndexingFailed(Exception):
    """Some documents of a bulk request were rejected; `failures` maps document id → reason."""

    def __init__(self, failures: dict[str, str]) -> None:
        self.failures = failures
        first = next(iter(failures.items()))
        super().__init__(f"{len(failures)} document(s) rejected, e.g. {first[0]}: {first[1]}")


def from_status(what: str, status: int | None, error_type: str, reason: str) -> Exception:
    """The exception an HTTP error answer stands for: unavailable (retry later) or a refused request."""
    if status in UNAVAILABLE_STATUSES:
        return SearchUnavailable(f"{what}: cluster cannot serve (HTTP {status} {error_type}): {reason}")
    return SearchRequestError(what, status, error_type, reason)
