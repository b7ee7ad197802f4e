"""Factories for test data shared by unit and integration tests."""

from __future__ import annotations

import secrets
import string
from decimal import Decimal

from tradesim.domain.events import Tick

BASE_MS = 1_790_000_000_000


def unique_symbol(prefix: str = "T") -> str:
    """A symbol no other test uses, so tests sharing one stack never see each other's prices."""
    return prefix + "".join(secrets.choice(string.ascii_uppercase) for _ in range(7))


def tick(symbol: str, seq: int, *, price: Decimal | str = "100.00", run_id: int = 1, size: int = 100,
         event_time_ms: int | None = None, scenario_id: str = "test") -> Tick:
    last = Decimal(price) + Decimal(seq) / 100
    return Tick(symbol=symbol, bid=last - Decimal("0.01"), ask=last + Decimal("0.01"), last=last, size=size,
                event_time_ms=event_time_ms if event_time_ms is not None else BASE_MS + seq * 100,
                seq=seq, scenario_id=scenario_id, run_id=run_id)


def ticks(symbol: str, first: int, last: int, **kw: object) -> list[Tick]:
    return [tick(symbol, s, **kw) for s in range(first, last + 1)]  # type: ignore[arg-type]
