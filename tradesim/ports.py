"""Protocols and errors that domain-facing code depends on; adapters implement and raise them."""

from __future__ import annotations


class Unavailable(Exception):
    """An external system did not answer within its deadline (down, unreachable, overloaded)."""
