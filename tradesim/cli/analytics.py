"""`tradesim analytics volume|pnl`: traded volume per symbol and bucket, and the active user's P&L over time."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from tradesim.cli.errors import cli_errors
from tradesim.cli.readout import OPTIONS, Interval, JsonOpt, console, interval_param, since_param, symbol_param
from tradesim.client.format import cents, price, signed_text, when
from tradesim.settings import load_settings

app = typer.Typer(help="Volume and P&L over time, from the analytics read model.", no_args_is_help=True)
out = console()


@app.command("volume")
def volume(symbol: Annotated[str | None, typer.Option("--symbol", help="Only this symbol.")] = None,
           interval: Interval = "1h",
           since: Annotated[str | None, typer.Option(
               "--since", help="From this long ago (15m, 1h, 2d) or this ISO-8601 time; default 24 h.")] = None,
           market: Annotated[bool, typer.Option(
               "--market", help="Everyone's volume (uses the admin key), not the active user's.")] = False,
           as_json: JsonOpt = False) -> None:
    """Shares, notional, trades and VWAP per symbol and bucket (the active user's, or with --market everyone's)."""
    cli_errors(_volume)(symbol, interval, since, market, as_json)


def _volume(symbol: str | None, interval: str, since: str | None, market: bool, as_json: bool) -> None:
    from tradesim.client.api import active_key, admin_key, call
    from tradesim.services.api.schemas import Volume

    params: dict[str, Any] = {"interval": interval_param(interval), "from": since_param(since)}
    if symbol is not None:
        params["symbol"] = symbol_param(symbol)
    settings = load_settings()
    key = admin_key(settings) if market else active_key(settings)[1]
    answer = call(settings, "GET", "/analytics/volume", key, shape=Volume, params=params, options=OPTIONS)
    if as_json:
        out.print(json.dumps(answer))
        return
    whose = "market" if answer["user_id"] is None else answer["user_id"]
    table = Table(title=f"{whose} volume per {answer['interval']}, {when(answer['from_ms'], False)} to "
                  f"{when(answer['to_ms'], False)} UTC", box=box.SIMPLE_HEAD)
    for col in ("symbol", "from (UTC)", "shares", "notional", "trades", "vwap"):
        table.add_column(col, justify="left" if col in ("symbol", "from (UTC)") else "right")
    for b in answer["buckets"]:
        table.add_row(b["symbol"], when(b["start_ms"], False), f"{b['shares']:,}", cents(b["notional"]),
                      f"{b['trades']:,}", price(b["vwap"]))
    out.print(table if answer["buckets"] else "no executed trades in this window")


@app.command("pnl")
def pnl(interval: Interval = "1h",
        since: Annotated[str | None, typer.Option(
            "--since", help="From this long ago (15m, 1h, 2d) or this ISO-8601 time; default 24 h.")] = None,
        as_json: JsonOpt = False) -> None:
    """The active user's realized P&L and equity at the end of each bucket."""
    cli_errors(_pnl)(interval, since, as_json)


def _pnl(interval: str, since: str | None, as_json: bool) -> None:
    from tradesim.client.api import active_key, call
    from tradesim.services.api.schemas import PnlSeries

    params = {"interval": interval_param(interval), "from": since_param(since)}
    settings = load_settings()
    answer = call(settings, "GET", "/analytics/pnl", active_key(settings)[1], shape=PnlSeries, params=params,
                  options=OPTIONS)
    if as_json:
        out.print(json.dumps(answer))
        return
    table = Table(title=f"P&L of {answer['user_id']} per {answer['interval']} (cash now {cents(answer['cash'])})",
                  box=box.SIMPLE_HEAD)
    for col in ("until (UTC)", "realized", "equity"):
        table.add_column(col, justify="left" if col == "until (UTC)" else "right")
    for p in answer["points"]:
        table.add_row(when(p["end_ms"], False), signed_text(p["realized_pnl"]), cents(p["equity"]))
    out.print(table)
