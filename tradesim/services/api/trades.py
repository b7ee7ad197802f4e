"""/trades/search: order outcomes from the search read model, filtered, sorted, paged with an opaque cursor."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from tradesim.domain.events import SYMBOL_RE, Side
from tradesim.domain.money import money_text
from tradesim.domain.trades import MAX_PAGE_SIZE, TradeQuery, TradeRecord
from tradesim.ports import InvalidCursor
from tradesim.services.api import metrics
from tradesim.services.api.deps import READ_CHECKS, ReadAs, Res
from tradesim.services.api.errors import ApiError, responses
from tradesim.services.api.schemas import SortStr, Trade, TradeList, TradeStatusStr
from tradesim.services.api.windows import FromParam, ToParam, invalid, time_range

router = APIRouter(prefix="/trades", tags=["trades"], dependencies=READ_CHECKS)


def trade_of(record: TradeRecord) -> Trade:
    return Trade(order_id=record.order_id, user_id=record.user_id, symbol=record.symbol, side=record.side,
                 qty=record.qty, status=record.status, order_type=record.order_type,
                 placed_at_ms=record.placed_at_ms, decided_at_ms=record.decided_at_ms, reason=record.reason,
                 price=None if record.price is None else money_text(record.price),
                 fee=None if record.fee is None else money_text(record.fee),
                 notional=money_text(record.notional) if record.executed else None)


@router.get("/search", response_model=TradeList, responses=responses(400, 401, 403, 404, 422, 429, 503))
async def search_trades(
    reader: ReadAs, res: Res,
    symbol: Annotated[str | None, Query(pattern=f"^{SYMBOL_RE}$", description="only this symbol")] = None,
    side: Annotated[Side | None, Query(description="only buys or sells")] = None,
    status: Annotated[TradeStatusStr | None, Query(description="only this outcome")] = None,
    from_: FromParam = None,
    to: ToParam = None,
    q: Annotated[str | None, Query(min_length=1, max_length=200, description="words matched against order id, "
                                   "symbol, status and reason")] = None,
    sort: Annotated[SortStr, Query(description="order of the results")] = "decided_desc",
    size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="trades per page")] = 50,
    cursor: Annotated[str | None, Query(min_length=1, max_length=4096, description="`next_cursor` of the previous "
                                        "page; only valid with the same filters and sort")] = None,
) -> TradeList:
    """Order outcomes (executed, rejected, cancelled, expired) by decision time, newest first by default. A user
    sees their own; the admin key everyone's, or one user's with `user`. Pages never repeat or skip a trade
    while new ones arrive."""
    if q is not None and not any(c.isalnum() for c in q):  # the index splits words at all else: a `q` of none
        # matched every trade (spaces: the search drops a blank text) or none (`_`, `--`)
        raise invalid("q", "must hold a word to find (a letter or digit; the search splits words at anything else)")
    from_ms, to_ms = time_range(from_, to)
    query = TradeQuery(user_id=reader.user_id, symbol=symbol, side=side, status=status, from_ms=from_ms,
                       to_ms=to_ms, text=q, sort=sort, size=size, cursor=cursor)
    try:
        with metrics.timed("opensearch", "trades_search"):
            page = await res.read_model(res.search.search, query)
    except InvalidCursor as exc:
        raise ApiError(400, "invalid_cursor", str(exc)) from None
    return TradeList(trades=[trade_of(r) for r in page.records], next_cursor=page.next_cursor, total=page.total)
