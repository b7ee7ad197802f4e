"""The panels that are tables: watchlist, positions, open orders, executions blotter.

Each `sync` touches only what changed: rows are keyed (symbol, order id), a changed value is one `update_cell`,
a new row is one `add_row`; no table is rebuilt on an update. Columns are sized to fit a 100-column terminal
(half of it per panel), one space between columns.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from decimal import Decimal

from rich.text import Text

from tradesim.client.format import cents, price, signed
from tradesim.domain.trades import TradeRecord
from tradesim.tui.model import Market, OpenOrder, Valuation
from tradesim.tui.widgets.grid import Grid, Value, fit_right

SPARK_WIDTH = 7


def _price(value: Decimal | None) -> str:
    return price(str(value)) if value is not None else "-"


def _cents(value: Decimal | None) -> str:
    return cents(str(value)) if value is not None else "-"


def _signed(value: Decimal | None) -> str:
    return signed(str(value)) if value is not None else "-"


class Stamp(Text):
    """A time-of-day cell (UTC) that sorts by its epoch ms."""

    def __init__(self, ms: int) -> None:
        super().__init__(time.strftime("%H:%M:%S", time.gmtime(ms / 1000)) if ms else "-", justify="right")
        self.ms = ms


class Keyed(Grid):
    """A panel's table (see Grid)."""


class Watchlist(Keyed):
    COLUMNS = (("symbol", "symbol", 9, False), ("bid", "bid", 8, True), ("ask", "ask", 8, True),
               ("last", "last", 8, True), ("chg", "chg %", 7, True), ("spark", "trend", SPARK_WIDTH + 1, False))

    def sync(self, market: Market, symbols: Iterable[str]) -> bool:
        """Show the watchlist, updating the rows of `symbols`; False if nothing on screen changes."""
        wanted = market.watchlist
        changed = False
        if len(wanted) != len(self._values) or any(k not in self._values for k in wanted):
            self.drop(k for k in self.keys() if k not in wanted)
            for s in wanted:
                if s not in self._values:
                    changed = self.put(s, self._row(market, s)) or changed
        for s in symbols:
            if s in self._values:
                changed = self.put(s, self._row(market, s)) or changed
        return changed

    @staticmethod
    def _row(market: Market, symbol: str) -> tuple[Value, ...]:
        row = market.rows[symbol]
        q = row.quote
        if q is None:
            return (symbol, "-", "-", "-", "-", "")
        spark = Text(market.spark(symbol, SPARK_WIDTH), style="cyan")
        if row.stale:  # no tick for longer than the API accepts: orders on it are refused (stale_price)
            return (symbol, Text(_price(q.bid), style="dim"), Text(_price(q.ask), style="dim"),
                    Text(_price(q.last), style="dim"), Text("stale", style="yellow"), spark)
        direction = "" if row.previous_last is None or q.last == row.previous_last else (
            "green" if q.last > row.previous_last else "red")
        chg = market.change_pct(symbol)
        chg_text: Value = "-" if chg is None else Text(
            f"{chg:+.2f}", style="green" if chg > 0 else "red" if chg < 0 else "")
        return (symbol, _price(q.bid), _price(q.ask), Text(_price(q.last), style=direction), chg_text, spark)


class Positions(Keyed):
    COLUMNS = (("symbol", "symbol", 9, False), ("qty", "qty", 7, True), ("avg", "avg cost", 9, True),
               ("value", "value", 11, True), ("pnl", "unreal. P&L", 12, True))

    def sync(self, valuation: Valuation) -> None:
        held = {h.symbol: h for h in valuation.holdings}
        self.drop(k for k in self.keys() if k not in held)
        for s, h in held.items():
            self.put(s, (s, f"{h.qty:,}", _price(h.average_cost), _cents(h.market_value), _signed(h.unrealized)))


def short_id(order_id: str) -> str:
    return order_id[-8:]


ORDER_TYPES = {"market": "market", "limit": "limit", "stop": "stop", "stop_limit": "stop lmt"}


class OpenOrders(Keyed):
    COLUMNS = (("symbol", "symbol", 8, False), ("side", "side", 5, False), ("qty", "qty", 6, True),
               ("type", "type", 9, False), ("price", "price", 8, True), ("tif", "tif", 4, False),
               ("state", "state", 8, False))  # 48: see Blotter

    def sync(self, orders: dict[str, OpenOrder]) -> None:
        self.drop(k for k in self.keys() if k not in orders)
        for o in sorted(orders.values(), key=lambda o: (o.placed_at_ms, o.order_id)):
            px = o.limit_price or o.stop_price
            self.put(o.order_id, (o.symbol, o.side, f"{o.qty:,}", ORDER_TYPES.get(o.type, o.type),
                                  _price(Decimal(px)) if px else "-", o.time_in_force,
                                  Text("cancel…", style="yellow") if o.cancelling else "open"))


_INFO_WIDTH = 10  # the blotter's price/why column: a fill price with fewer decimals if it must (fit_right)


class Blotter(Keyed):
    """Outcomes, newest first: the fill price of an execution, the reason of a rejection or expiry."""

    # 48 columns, the panel's inside at the smallest screen (100 wide): a reason in a word or two (REASONS)
    COLUMNS = (("time", "time", 9, True), ("symbol", "symbol", 8, False), ("side", "side", 5, False),
               ("qty", "qty", 6, True), ("status", "status", 10, False), ("info", "price/why", _INFO_WIDTH, False))
    STATUS_STYLE = {"executed": "green", "rejected": "red", "cancelled": "yellow", "expired": "dim"}
    #: an outcome's reason code in at most 9 characters (`tradesim orders` and the API show the code itself)
    REASONS = {"insufficient_funds": "no cash", "insufficient_shares": "no shares", "unknown_symbol": "no symbol",
               "too_many_recent_orders": "too many", "not_processed_in_time": "too late", "internal_error": "error"}

    def sync(self, records: list[TradeRecord]) -> None:
        """`records`: newest first."""
        wanted = {r.order_id for r in records}
        self.drop(k for k in self.keys() if k not in wanted)
        for r in records:
            if r.order_id in self._values:
                continue
            info = (fit_right(_price(r.price), _INFO_WIDTH).lstrip() if r.status == "executed"
                    else self.REASONS.get(r.reason or "", r.reason or ""))
            self.put(r.order_id, (Stamp(r.decided_at_ms), r.symbol, r.side, f"{r.qty:,}",
                                  Text(r.status, style=self.STATUS_STYLE.get(r.status, "")), info),
                     sort_key=(r.decided_at_ms, r.order_id))
