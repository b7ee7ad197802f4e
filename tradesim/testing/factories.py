"""Factories for test data shared by unit and integration tests."""

from __future__ import annotations

import random
import secrets
import string
from decimal import Decimal

from tradesim.domain.events import OrderOutcome, Tick

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


def outcomes(users: list[str], symbols: list[str], n: int, *, seed: int = 1,
             start_ms: int = BASE_MS) -> list[OrderOutcome]:
    """n outcomes of distinct orders, spread over users and symbols, every status; the same values per seed, but
    order ids new on every call (a stack outlives test runs, and a known id is a repeat to the read models)."""
    rng = random.Random(seed)  # noqa: S311 - test data, not crypto
    tag = secrets.token_hex(5)
    out = []
    for i in range(n):
        status = rng.choice(("executed", "executed", "executed", "rejected", "cancelled", "expired"))
        executed = status == "executed"
        price = Decimal(rng.randint(5_000, 20_000)) / 100
        qty = rng.randint(1, 500)
        out.append(OrderOutcome(
            order_id=f"o-{tag}-{i}", user_id=users[i % len(users)], symbol=symbols[i % len(symbols)],
            side=rng.choice(("buy", "sell")), qty=qty, status=status,
            reason="insufficient_funds" if status == "rejected" else None,
            fill_price=price if executed else None,
            fee=(price * qty / 10_000).quantize(Decimal("0.0001")) if executed else None,
            trade_id=f"o-{tag}-{i}-1" if executed else None, decided_at_ms=start_ms + i * 7,
            order_type=rng.choice(("market", "limit", "stop", "stop_limit")), placed_at_ms=start_ms + i * 7 - 3))
    return out
