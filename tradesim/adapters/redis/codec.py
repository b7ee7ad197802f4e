"""Cached and published values ↔ events: what the price and bar caches hold is read back here, checked."""

from __future__ import annotations

from tradesim.domain.errors import InvalidRecord
from tradesim.domain.events import E, decode


def read_text(raw: bytes | str) -> str:
    """A cached or published value (or a channel's name) as text. Raises InvalidRecord: not UTF-8."""
    try:
        return raw.decode() if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as exc:
        raise InvalidRecord("$", f"not UTF-8: {exc}") from None


def read_event(model: type[E], raw: bytes | str) -> tuple[E, str]:
    """A cached or published event and its JSON text (to send on as is). Raises InvalidRecord: not UTF-8, or not a
    `model` within the schema's bounds (anyone who can reach Redis can write its keys and publish on its channels)."""
    text = read_text(raw)
    return decode(model, text), text
