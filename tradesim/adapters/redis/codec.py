"""Cached and published values ↔ events: what the price and bar caches hold is read back here, checked."""

from __future__ import annotations

from tradesim.domain.errors import InvalidRecord
from tradesim.domain.events import E, decode


def read_event(model: type[E], raw: bytes | str) -> tuple[E, str]:
    """A cached or published event and its JSON text (to send on as is). Raises InvalidRecord: not UTF-8, or not a
    `model` within the schema's bounds (anyone who can reach Redis can write its keys and publish on its channels)."""
    try:
        text = raw.decode() if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as exc:
        raise InvalidRecord("$", f"not UTF-8: {exc}") from None
    return decode(model, text), text
