"""`tradesim portfolio`: the active user's cash, positions at the latest prices, P&L and equity."""

from __future__ import annotations

import json
from typing import Any

from rich import box
from rich.table import Table
from rich.text import Text

from tradesim.cli.errors import cli_errors, err
from tradesim.cli.readout import JsonOpt, console
from tradesim.client.format import age, cents, price, signed_text
from tradesim.settings import load_settings

out = console()


def portfolio(as_json: JsonOpt = False) -> None:
    """Cash, positions (average cost, last price, market value, P&L, day change) and equity."""
    cli_errors(_portfolio)(as_json)


def _portfolio(as_json: bool) -> None:
    from tradesim.client.api import active_key, call
    from tradesim.services.api.schemas import Portfolio

    settings = load_settings()
    answer = call(settings, "GET", "/portfolio", active_key(settings)[1], shape=Portfolio)
    if as_json:
        out.print(json.dumps(answer))
        return
    render(answer)


def render(p: dict[str, Any]) -> None:
    # light borders and folding instead of ellipses: on a narrow terminal a figure wraps, it is never cut
    table = Table(title=f"portfolio of {p['user_id']}", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for col in ("symbol", "qty", "avg cost", "last", "age", "value", "unrealized", "realized", "today"):
        table.add_column(col, justify="left" if col == "symbol" else "right", overflow="fold")
    for pos in p["positions"]:
        stale = ("*", "yellow") if pos["price_stale"] and pos["last_price"] is not None else ""
        table.add_row(pos["symbol"], f"{pos['qty']:,}", price(pos["average_cost"]),
                      Text.assemble(price(pos["last_price"]), stale),
                      age(pos["price_age_ms"]), cents(pos["market_value"]), signed_text(pos["unrealized_pnl"]),
                      signed_text(pos["realized_pnl"]), signed_text(pos["day_change"]))
    if p["positions"]:
        out.print(table)
    else:
        out.print(f"{p['user_id']} holds no shares")
    out.print(Text.assemble(f"cash {cents(p['cash'])} · market value {cents(p['market_value'])} · equity ",
                            (cents(p["equity"]), "bold")))
    out.print(Text.assemble("P&L realized ", signed_text(p["realized_pnl"]), " · unrealized ",
                            signed_text(p["unrealized_pnl"]), " · today ", signed_text(p["day_change"])))
    if any(pos["price_stale"] and pos["last_price"] is not None for pos in p["positions"]):
        out.print(Text.assemble(("*", "yellow"), " stale: older than the order check accepts"))
    if p["degraded"]:
        err.print(f"warning: {', '.join(p['degraded'])} did not answer: cost basis and P&L are unknown for now")
