"""`tradesim trades`: the active user's order outcomes from the search read model, newest first."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from tradesim.cli.errors import cli_errors
from tradesim.cli.readout import OPTIONS, JsonOpt, Since, console, since_param, symbol_param
from tradesim.client.format import WHEN_MIN_WIDTH, cents, price, when
from tradesim.domain.trades import MAX_PAGE_SIZE, STATUSES
from tradesim.settings import load_settings
from tradesim.stack.errors import UserError

out = console()
#: the most `--limit` pages through (in pages of MAX_PAGE_SIZE)
MAX_LIMIT = 10_000


def params_of(symbol: str | None, side: str | None, status: str | None, since: str | None,
              q: str | None) -> dict[str, Any]:
    """The /trades/search filters for the CLI's options; raises UserError naming a bad one."""
    params: dict[str, Any] = {}
    if symbol is not None:
        params["symbol"] = symbol_param(symbol)
    if side is not None:
        if side not in ("buy", "sell"):
            raise UserError(f"--side must be buy or sell, got {side!r}")
        params["side"] = side
    if status is not None:
        if status not in STATUSES:
            raise UserError(f"--status must be one of {', '.join(STATUSES)}, got {status!r}")
        params["status"] = status
    params["from"] = since_param(since)
    if q is not None and not q.strip():  # (before: dropped, so every trade was listed)
        raise UserError("--q needs a word to find")
    params["q"] = q
    return params


def trades(symbol: Annotated[str | None, typer.Option("--symbol", help="Only this symbol.")] = None,
           side: Annotated[str | None, typer.Option("--side", help="Only buy or sell.")] = None,
           status: Annotated[str | None, typer.Option(
               "--status", help="Only executed, rejected, cancelled or expired.")] = None,
           since: Since = None,
           q: Annotated[str | None, typer.Option("--q", help="Words to find in order id, symbol, status, reason.")]
           = None,
           limit: Annotated[int, typer.Option("--limit", min=1, max=MAX_LIMIT, help="At most this many.")] = 50,
           as_json: JsonOpt = False) -> None:
    """The active user's trades (every order outcome), newest first."""
    cli_errors(_trades)(symbol, side, status, since, q, limit, as_json)


def _trades(symbol: str | None, side: str | None, status: str | None, since: str | None, q: str | None,
            limit: int, as_json: bool) -> None:
    from tradesim.client.api import active_key, call
    from tradesim.services.api.schemas import TradeList

    params = params_of(symbol, side, status, since, q)
    settings = load_settings()
    key = active_key(settings)[1]
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    total = 0
    while True:
        page = call(settings, "GET", "/trades/search", key, shape=TradeList,
                    params={**params, "size": min(MAX_PAGE_SIZE, limit - len(found)), "cursor": cursor},
                    options=OPTIONS)
        found += page["trades"]
        cursor, total = page["next_cursor"], page["total"]
        if cursor is None or len(found) >= limit:
            break
    if as_json:
        out.print(json.dumps({"trades": found, "next_cursor": cursor, "total": total}))
        return
    # light borders: a row is ~115 columns wide (the order id alone takes 34); `--json` for narrow terminals
    table = Table(title=f"trades ({len(found)} of {total})" if cursor else "trades", box=box.SIMPLE_HEAD,
                  pad_edge=False, collapse_padding=True)
    id_width = max((len(t["order_id"]) for t in found), default=5)
    for col in ("decided (UTC)", "order", "side", "qty", "symbol", "type", "status", "price", "notional", "fee"):
        # the order id whole (it is what `order show` takes); every other cell folds on a narrow screen or a pipe
        # (80 columns), never cut to an ellipsis (`1,012.…`)
        table.add_column(col, justify="right" if col in ("qty", "price", "notional", "fee") else "left",
                         min_width={"order": id_width, "decided (UTC)": WHEN_MIN_WIDTH}.get(col), overflow="fold")
    for t in found:
        status = t["status"] if t["reason"] is None else f"{t['status']}: {t['reason']}"
        table.add_row(when(t["decided_at_ms"]), t["order_id"], t["side"], f"{t['qty']:,}", t["symbol"],
                      t["order_type"] or "-", status, price(t["price"]), cents(t["notional"]), cents(t["fee"]))
    out.print(table)
