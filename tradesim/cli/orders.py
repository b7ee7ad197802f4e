"""`tradesim order buy|sell|cancel|show` and `tradesim orders`: trade as the active user over the order API."""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any

import typer
from rich.table import Table

from tradesim.cli.errors import cli_errors, said_if_unknown
from tradesim.cli.readout import console, order_id_param, symbol_param
from tradesim.client.format import WHEN_MIN_WIDTH, when
from tradesim.domain.events import MAX_QTY
from tradesim.domain.money import plain_decimal, price_error
from tradesim.settings import load_settings
from tradesim.stack.errors import UserError

app = typer.Typer(help="Place, show and cancel orders as the active user.", no_args_is_help=True)
out = console()
_TIFS = ("day", "gtc", "ioc")
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the API's JSON answer.")]


def order_body(side: str, symbol: str, qty: str, limit: str | None, stop: str | None, tif: str) -> dict[str, Any]:
    """The POST /orders body for the CLI's arguments; raises UserError naming the bad one."""
    sym = symbol_param(symbol)
    # ASCII digits ("²".isdigit() is True; int() refuses it), and few of them (int() refuses 4,300 and more)
    digits = qty.lstrip("0")
    if (not (qty.isascii() and qty.isdigit()) or not 0 < len(digits) <= len(str(MAX_QTY))
            or int(digits) > MAX_QTY):
        raise UserError(f"QTY must be a positive whole number of shares, at most {MAX_QTY}, got {qty!r}")
    if tif not in _TIFS:
        raise UserError(f"--tif must be one of {', '.join(_TIFS)}, got {tif!r}")
    body: dict[str, Any] = {"symbol": sym, "side": side, "qty": int(digits), "time_in_force": tif}
    for name, value in (("limit_price", limit), ("stop_price", stop)):
        if value is None:
            continue
        price = plain_decimal(value)
        if price is None:
            raise UserError(f"--{name.split('_')[0]} must be a number like 101.25, got {value!r}")
        if problem := price_error(price):
            raise UserError(f"--{name.split('_')[0]} {problem}, got {value!r}")
        body[name] = format(price.normalize(), "f")  # 1e2 and 100.00000 are 100: as the API spells prices
    body["type"] = {(True, True): "stop_limit", (True, False): "limit", (False, True): "stop"}.get(
        (limit is not None, stop is not None), "market")
    return body


def _place(side: str, symbol: str, qty: str, limit: str | None, stop: str | None, tif: str, as_json: bool,
           idempotency_key: str | None) -> None:
    from tradesim.client.api import active_key, exchange, idempotency_key_error
    from tradesim.services.api.schemas import OrderAccepted

    body = order_body(side, symbol, qty, limit, stop, tif)
    if idempotency_key is not None and (problem := idempotency_key_error(idempotency_key)):
        raise UserError(f"--idempotency-key {problem}, got {idempotency_key!r}")
    settings = load_settings()
    key = idempotency_key or uuid.uuid4().hex
    user_key = active_key(settings)[1]
    # no answer, a 5xx such as outcome_unknown, or Ctrl-C while waiting: the order may have been placed
    with said_if_unknown(f"to retry without a risk of placing it twice, run the same command with "
                         f"--idempotency-key {key}"):
        answer, answered = exchange(settings, "POST", "/orders", user_key, json_body=body,
                                    headers={"Idempotency-Key": key}, timeout_s=settings.api.order_answer_s,
                                    shape=OrderAccepted)
    if as_json:
        out.print(json.dumps(answer))
        return
    price = {"limit": f" limit {body.get('limit_price')}", "stop": f" stop {body.get('stop_price')}",
             "stop_limit": f" stop {body.get('stop_price')} limit {body.get('limit_price')}"}.get(body["type"], "")
    again = (" (placed before with this --idempotency-key: the same order, not placed again)"
             if answered.get("idempotent-replayed") == "true" else "")
    out.print(f"{answer['status']}: {side} {body['qty']} {body['symbol']} {price.strip() or body['type']} "
              f"({body['time_in_force']}) — order {answer['order_id']}{again}")


Limit = Annotated[str | None, typer.Option("--limit", help="Limit price (limit / stop-limit order).")]
Stop = Annotated[str | None, typer.Option("--stop", help="Stop price (stop / stop-limit order).")]
Tif = Annotated[str, typer.Option("--tif", help="Time in force: day, gtc or ioc.")]
IdemKey = Annotated[str | None, typer.Option("--idempotency-key", help="Reuse to retry safely; default: new.")]


@app.command("buy")
def buy(symbol: str, qty: str, limit: Limit = None, stop: Stop = None, tif: Tif = "day", as_json: JsonOpt = False,
        idempotency_key: IdemKey = None) -> None:
    """Buy QTY shares of SYMBOL (market unless --limit/--stop)."""
    cli_errors(_place)("buy", symbol, qty, limit, stop, tif, as_json, idempotency_key)


@app.command("sell")
def sell(symbol: str, qty: str, limit: Limit = None, stop: Stop = None, tif: Tif = "day", as_json: JsonOpt = False,
         idempotency_key: IdemKey = None) -> None:
    """Sell QTY shares of SYMBOL (market unless --limit/--stop)."""
    cli_errors(_place)("sell", symbol, qty, limit, stop, tif, as_json, idempotency_key)


@app.command("cancel")
def cancel(order_id: str, as_json: JsonOpt = False) -> None:
    """Ask to cancel a resting order."""
    cli_errors(_cancel)(order_id, as_json)


def _cancel(order_id: str, as_json: bool) -> None:
    from tradesim.client.api import active_key, call
    from tradesim.services.api.schemas import CancelAccepted

    settings = load_settings()
    answer = call(settings, "DELETE", f"/orders/{order_id_param(order_id)}", active_key(settings)[1],
                  shape=CancelAccepted)
    out.print(json.dumps(answer) if as_json else f"cancel requested for order {answer['order_id']}")


@app.command("show")
def show(order_id: str, as_json: JsonOpt = False) -> None:
    """One order and its status."""
    cli_errors(_show)(order_id, as_json)


def _show(order_id: str, as_json: bool) -> None:
    from tradesim.client.api import active_key, call
    from tradesim.services.api.schemas import Order

    settings = load_settings()
    o = call(settings, "GET", f"/orders/{order_id_param(order_id)}", active_key(settings)[1], shape=Order)
    if as_json:
        out.print(json.dumps(o))
        return
    lines = [f"order {o['order_id']}: {o['status']}", f"  {o['side']} {o['qty']} {o['symbol']} {o['type']} "
             f"({o['time_in_force']})", f"  placed {_when(o['placed_at_ms'])}"]
    for field in ("limit_price", "stop_price", "fill_price", "fee", "reason", "client_order_id"):
        if o.get(field) is not None:
            lines.append(f"  {field.replace('_', ' ')}: {o[field]}")
    out.print("\n".join(lines))


def _when(ms: int) -> str:
    return f"{when(ms)} UTC"


def orders(open_only: Annotated[bool, typer.Option("--open", help="Only orders still open (accepted).")] = False,
           symbol: Annotated[str | None, typer.Option("--symbol", help="Only this symbol.")] = None,
           limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="At most this many.")] = 50,
           as_json: JsonOpt = False) -> None:
    """The active user's orders, newest first."""
    cli_errors(_orders)(open_only, symbol, limit, as_json)


def _orders(open_only: bool, symbol: str | None, limit: int, as_json: bool) -> None:
    from tradesim.client.api import active_key, call
    from tradesim.services.api.schemas import OrderList

    settings = load_settings()
    params: dict[str, Any] = {"limit": limit}
    if open_only:
        params["status"] = "accepted"
    if symbol is not None:  # (before: "" listed every symbol's orders)
        params["symbol"] = symbol_param(symbol)
    answer = call(settings, "GET", "/orders", active_key(settings)[1], shape=OrderList, params=params)
    if as_json:
        out.print(json.dumps(answer))
        return
    table = Table(title="orders")
    id_width = max((len(o["order_id"]) for o in answer["orders"]), default=5)
    for col in ("order", "placed (UTC)", "side", "qty", "symbol", "type", "price", "status"):
        # as in `trades`: the id whole, the rest folded rather than cut (a pipe prints 80 columns)
        table.add_column(col, min_width={"order": id_width, "placed (UTC)": WHEN_MIN_WIDTH}.get(col), overflow="fold")
    for o in answer["orders"]:
        price = o.get("fill_price") or o.get("limit_price") or o.get("stop_price") or "-"
        table.add_row(o["order_id"], when(o["placed_at_ms"]), o["side"], str(o["qty"]), o["symbol"],
                      o["type"], str(price), o["status"])
    out.print(table)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="order")
    root.command("orders")(orders)
