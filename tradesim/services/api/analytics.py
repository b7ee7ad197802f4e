"""/analytics: executed volume per symbol and bucket, and a user's realized P&L and equity over time."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Annotated

import anyio
from fastapi import APIRouter, Query

from tradesim.adapters.dynamodb.codec import Portfolio as LedgerItem
from tradesim.domain.events import SYMBOL_RE
from tradesim.domain.money import money_text
from tradesim.domain.pnl import pnl_series
from tradesim.domain.trades import TradeRecord
from tradesim.services.api import metrics
from tradesim.services.api.deps import READ_CHECKS, ReadAs, Res, one_user
from tradesim.services.api.errors import ApiError, responses
from tradesim.services.api.schemas import PnlRow, PnlSeries, Volume, VolumeRow
from tradesim.services.api.windows import FromParam, Interval, ToParam, window

router = APIRouter(prefix="/analytics", tags=["analytics"], dependencies=READ_CHECKS)
IntervalParam = Annotated[Interval, Query(description="bucket length; buckets are aligned to the epoch (days to "
                                          "00:00 UTC)")]


def _now_ms() -> int:
    return int(time.time() * 1000)


@router.get("/volume", response_model=Volume, responses=responses(401, 403, 404, 422, 429, 503))
async def volume(
    reader: ReadAs, res: Res,
    symbol: Annotated[str | None, Query(pattern=f"^{SYMBOL_RE}$", description="only this symbol")] = None,
    interval: IntervalParam = "1h",
    from_: FromParam = None,
    to: ToParam = None,
) -> Volume:
    """Executed shares, notional, trade count and VWAP per symbol and bucket in [from, to) (default: the 24 h
    before `to`, which defaults to now; at most 10,000 buckets). A user sees their own volume; the admin key the
    whole market's, or one user's with `user`."""
    win = window(from_, to, interval, _now_ms())
    with metrics.timed("clickhouse", "volume"):
        buckets = await res.read_model(lambda: res.analytics.volume(
            interval_s=win.interval_s, from_ms=win.from_ms, to_ms=win.to_ms, symbol=symbol, user_id=reader.user_id))
    return Volume(user_id=reader.user_id, interval=interval, from_ms=win.from_ms, to_ms=win.to_ms,
                  buckets=[VolumeRow(symbol=b.symbol, start_ms=b.start_ms, shares=b.shares,
                                     notional=money_text(b.notional), trades=b.trades, vwap=money_text(b.vwap))
                           for b in buckets])


@router.get("/pnl", response_model=PnlSeries, responses=responses(401, 403, 404, 422, 429, 503))
async def pnl(
    reader: ReadAs, res: Res,
    interval: IntervalParam = "1h",
    from_: FromParam = None,
    to: ToParam = None,
) -> PnlSeries:
    """The user's realized P&L and equity at the end of each bucket of [from, to) (defaults as for volume), by
    the average-cost method; positions are marked at the last fill price (any user) before each end. The admin
    key must name a user."""
    user_id = one_user(reader)
    win = window(from_, to, interval, _now_ms())

    async def holdings() -> LedgerItem | None:
        with metrics.timed("dynamodb", "portfolio_get"):
            return await anyio.to_thread.run_sync(res.portfolios.holdings, user_id)

    async def executions() -> list[TradeRecord]:
        with metrics.timed("clickhouse", "executions"):
            return await res.read_model(res.analytics.executions, user_id)

    item, fills = await asyncio.gather(holdings(), executions())
    if item is None:
        raise ApiError(404, "portfolio_missing", f"user {user_id!r} has no portfolio; ask an admin to reset it")
    ends = win.ends()
    symbols = sorted({f.symbol for f in fills if f.decided_at_ms < win.to_ms})
    marks: dict[int, dict[str, Decimal]] = {}
    if symbols and ends:
        with metrics.timed("clickhouse", "marks"):
            marks = await res.read_model(res.analytics.marks, symbols, ends)
    points = pnl_series(fills, item.cash, ends, marks, item.reset_at_ms)
    return PnlSeries(user_id=user_id, interval=interval, from_ms=win.from_ms, to_ms=win.to_ms,
                     cash=money_text(item.cash),
                     points=[PnlRow(end_ms=p.end_ms, realized_pnl=money_text(p.realized),
                                    equity=None if p.equity is None else money_text(p.equity)) for p in points])
