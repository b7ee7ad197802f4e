"""Flink errors in tradesim's terms."""

from __future__ import annotations


class FlinkUnavailable(Exception):
    """No Flink REST API answered at the configured endpoint."""


class FlinkRequestError(Exception):
    """The cluster answered but refused or failed the request; the message carries its reason."""
