"""Flink errors in tradesim's terms."""

from __future__ import annotations


class FlinkUnavailable(Exception):
    """No Flink REST API answered at the configured endpoint."""


class FlinkRequestError(Exception):
    """The cluster answered but refused or failed the request; the message carries its reason, `status` the HTTP
    status where there was one (so callers can tell "no such job" from a failure without parsing the text)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
