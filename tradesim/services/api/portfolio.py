"""/portfolio: cash and positions from the ledger, valued at the cached prices, with average-cost P&L.

Cash and shares come from the portfolio item (a strongly consistent read), so they are right even while the read
models lag. The cost basis and realized P&L are the fold of the user's executions in the analytics read model
(domain/pnl.py); if it does not answer, the portfolio still answers, with those fields null and `degraded` saying
why: what the user owns does not depend on the read model.
"""

from __future__ import annotations

import asyncio
import logging
import time
from decimal import Decimal

import anyio
from fastapi import APIRouter

from tradesim.adapters.clickhouse.errors import ClickHouseRefused
from tradesim.adapters.redis import quotes
from tradesim.domain.events import Tick
from tradesim.domain.money import money_text
from tradesim.domain.pnl import PositionCost, Valued, positions, value
from tradesim.domain.precheck import price_age_ms
from tradesim.domain.trades import ZERO
from tradesim.ports import Unavailable
from tradesim.services.api import metrics
from tradesim.services.api.deps import READ_CHECKS, ReadAs, Res, one_user
from tradesim.services.api.errors import ApiError, responses
from tradesim.services.api.resources import Resources
from tradesim.services.api.schemas import Portfolio, Position
from tradesim.services.api.windows import DAY_MS

log = logging.getLogger("tradesim.api.portfolio")
router = APIRouter(prefix="/portfolio", tags=["portfolio"], dependencies=READ_CHECKS)


async def prices(res: Resources, symbols: list[str]) -> dict[str, tuple[Tick, int]]:
    """The cached tick and its write time of each symbol that has one, in one round trip."""
    with metrics.timed("redis", "prices"):
        return await quotes.latest_many(res.redis, symbols)


async def costs(res: Resources, user_id: str, symbols: list[str], day_start_ms: int,
                since_ms: int) -> tuple[dict[str, PositionCost], dict[str, Decimal]] | None:
    """The user's cost positions since `since_ms` (the last reset) and the previous close of `symbols`; None if
    the analytics model is down."""

    async def executions() -> dict[str, PositionCost]:
        with metrics.timed("clickhouse", "executions"):
            return positions(await res.read_model(res.analytics.executions, user_id), since_ms)

    async def closes() -> dict[str, Decimal]:
        if not symbols:
            return {}
        with metrics.timed("clickhouse", "marks"):
            marks = await res.read_model(res.analytics.marks, symbols, [day_start_ms])
        return marks.get(day_start_ms, {})

    try:
        held, close = await asyncio.gather(executions(), closes())
    except Unavailable:
        return None
    except ClickHouseRefused as exc:  # another server at its address: the operator's to fix, logged as the 503s are
        log.error("read model refused a request", extra={"error": str(exc), "path": "/portfolio"})
        return None
    return held, close


def _sum(values: list[Decimal | None]) -> Decimal | None:
    return None if any(v is None for v in values) else sum((v for v in values if v is not None), ZERO)


def _text(amount: Decimal | None) -> str | None:
    return None if amount is None else money_text(amount)


@router.get("", response_model=Portfolio, responses=responses(401, 403, 404, 422, 429, 503))
async def portfolio(reader: ReadAs, res: Res) -> Portfolio:
    """Cash, positions at the latest prices, average cost, realized and unrealized P&L, day change, equity."""
    user_id = one_user(reader)
    read_ms = int(time.time() * 1000)  # before the read: a client keeps what a decision stamped later told it
    with metrics.timed("dynamodb", "portfolio_get"):
        item = await anyio.to_thread.run_sync(res.portfolios.holdings, user_id)
    if item is None:
        raise ApiError(404, "portfolio_missing", f"user {user_id!r} has no portfolio; ask an admin to reset it")
    held = {s: q for s, q in sorted(item.positions.items()) if q}
    now_ms = int(time.time() * 1000)
    symbols = list(held)
    day_start_ms = now_ms - now_ms % DAY_MS
    cached, folded = await asyncio.gather(prices(res, symbols), costs(res, user_id, symbols, day_start_ms,
                                                                      item.reset_at_ms))
    fold, close = folded if folded is not None else ({}, {})
    stale_ms = res.stale_after_s * 1000
    rows: list[Position] = []
    valued: list[Valued] = []
    for symbol, qty in held.items():
        tick, updated_ms = cached.get(symbol, (None, None))
        cost = fold.get(symbol, PositionCost(symbol))
        v = value(cost, qty, tick.last if tick else None, close.get(symbol))
        valued.append(v)
        age_ms = None if updated_ms is None else price_age_ms(updated_ms, now_ms)
        rows.append(Position(
            symbol=symbol, qty=qty, average_cost=_text(v.average_cost), cost_basis=_text(v.cost),
            realized_pnl=_text(v.realized if folded is not None else None), last_price=_text(v.price),
            price_age_ms=age_ms, price_stale=age_ms is None or age_ms > stale_ms, market_value=_text(v.market_value),
            unrealized_pnl=_text(v.unrealized), day_reference_price=_text(close.get(symbol)),
            day_change=_text(v.day_change)))
    market = _sum([v.market_value for v in valued])
    realized = sum((p.realized for p in fold.values()), ZERO) if folded is not None else None
    return Portfolio(
        user_id=user_id, as_of_ms=read_ms, cash=money_text(item.cash), positions=rows, market_value=_text(market),
        equity=_text(None if market is None else item.cash + market), realized_pnl=_text(realized),
        unrealized_pnl=_text(_sum([v.unrealized for v in valued])),
        day_change=_text(_sum([v.day_change for v in valued])),
        degraded=[] if folded is not None else ["analytics"])
