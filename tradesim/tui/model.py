"""What the TUI knows, as plain data: quotes, bars, the account, orders, outcomes, link states.

No Textual and no I/O: the connection feeds decoded frames and API answers in, the widgets read views out, and
`dirty` says which panels changed since they were last painted (the app repaints them soon after, so a burst of
frames costs one repaint). Times are passed in, never read from a clock, so a test or a snapshot controls them.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import ValidationError

from tradesim.domain.events import Bar, OrderOutcome, typed_symbol
from tradesim.domain.matching import DAY_MS
from tradesim.domain.pnl import PositionCost, value
from tradesim.domain.trades import TradeRecord, record_of
from tradesim.services.api.schemas import OrderRequest, field_message
from tradesim.text import validation_message

#: bars kept per symbol and interval (what the server's history holds)
CANDLES_KEEP = 300
BLOTTER_KEEP = 500
LATENCY_KEEP = 200
SPARK_LEVELS = "▁▂▃▄▅▆▇█"
#: the panels `dirty` names
WATCH, CHART, PORTFOLIO, SUMMARY, ORDERS, BLOTTER, STATUS = (
    "watch", "chart", "portfolio", "summary", "orders", "blotter", "status")
PANELS = frozenset((WATCH, CHART, PORTFOLIO, SUMMARY, ORDERS, BLOTTER, STATUS))
#: what moves when the account or a held symbol's price moves: the positions table and the totals above it
HOLDINGS = (PORTFOLIO, SUMMARY)


@dataclass(frozen=True)
class Quote:
    bid: Decimal
    ask: Decimal
    last: Decimal
    event_time_ms: int
    run_id: int
    seq: int


@dataclass
class Row:
    """A symbol with a price subscription: its latest quote and what the change % is measured from."""

    symbol: str
    quote: Quote | None = None
    previous_last: Decimal | None = None
    first_last: Decimal | None = None
    #: (UTC day, open of that day's first 1m bar), recomputed when the bars or the day change
    session: tuple[int, Decimal | None] | None = None
    #: when the quote's price was new (time.perf_counter(): its arrival, less a snapshot's age); past
    #: `Settings.stale_price_after_s` the row shows it is stale
    priced_at: float = 0.0
    stale: bool = False


def parse_quote(data: Mapping[str, Any]) -> tuple[str, Quote]:
    """(symbol, quote) of a tick frame's data; raises KeyError/ValueError/InvalidOperation on a broken one (a price
    that is not a finite number too: NaN cannot even be compared with the last one)."""
    bid, ask, last = (Decimal(data[name]) for name in ("bid", "ask", "last"))
    if not (bid.is_finite() and ask.is_finite() and last.is_finite()):
        raise ValueError(f"prices must be finite numbers: {bid} {ask} {last}")
    return data["symbol"], Quote(bid, ask, last, int(data["event_time_ms"]), int(data.get("run_id", 0)),
                                 int(data["seq"]))


class Market:
    """Quotes and candles per symbol; `watchlist` is the shown subset, in order."""

    def __init__(self, watchlist: Iterable[str] = ()) -> None:
        self.watchlist: list[str] = []
        self.rows: dict[str, Row] = {}
        self.candles: dict[tuple[str, str], list[Bar]] = {}
        for s in watchlist:
            self.watch(s)

    def watch(self, symbol: str) -> bool:
        """Show a symbol; False if it already is."""
        self.rows.setdefault(symbol, Row(symbol))
        if symbol in self.watchlist:
            return False
        self.watchlist.append(symbol)
        return True

    def unwatch(self, symbol: str) -> bool:
        if symbol not in self.watchlist:
            return False
        self.watchlist.remove(symbol)
        return True

    def track(self, symbol: str) -> None:
        """Keep a price for a symbol without showing it (a holding outside the watchlist)."""
        self.rows.setdefault(symbol, Row(symbol))

    def last(self, symbol: str) -> Decimal | None:
        row = self.rows.get(symbol)
        return row.quote.last if row and row.quote else None

    def tick(self, symbol: str, quote: Quote, received_at: float, age_s: float = 0.0) -> bool:
        """Apply a snapshot or tick received at `received_at` (time.perf_counter()), `age_s` old already then (a
        snapshot's price); False for one older than the quote held (a newer run wins, then seq)."""
        row = self.rows.setdefault(symbol, Row(symbol))
        held = row.quote
        if held is not None and (quote.run_id, quote.seq) <= (held.run_id, held.seq):
            return False
        row.previous_last = held.last if held else None
        row.quote = quote
        row.priced_at, row.stale = received_at - age_s, False
        if row.first_last is None:
            row.first_last = quote.last
        return True

    def bars(self, symbol: str, interval: str) -> list[Bar]:
        return self.candles.get((symbol, interval), [])

    def set_bars(self, symbol: str, interval: str, bars: Iterable[Bar]) -> None:
        """A history (oldest first) replaces what is held."""
        kept = sorted(bars, key=lambda b: b.window_start_ms)[-CANDLES_KEEP:]
        self.candles[(symbol, interval)] = kept
        self._bars_changed(symbol, interval)

    def add_bar(self, bar: Bar) -> None:
        """A new bar: replaces its window, or starts over when it is older than the newest (a new run)."""
        held = self.candles.setdefault((bar.symbol, bar.interval), [])
        if held and bar.window_start_ms < held[-1].window_start_ms:
            found = next((i for i, b in enumerate(held) if b.window_start_ms == bar.window_start_ms), None)
            if found is None:
                held.clear()  # the market's clock went back: another run; never mix two runs in one chart
                held.append(bar)
            else:
                held[found] = bar
        elif held and bar.window_start_ms == held[-1].window_start_ms:
            held[-1] = bar
        else:
            held.append(bar)
            del held[:-CANDLES_KEEP]
        self._bars_changed(bar.symbol, bar.interval)

    def _bars_changed(self, symbol: str, interval: str) -> None:
        if interval == "1m" and symbol in self.rows:
            self.rows[symbol].session = None

    def session_open(self, symbol: str) -> Decimal | None:
        """Open of the first 1m bar of the latest tick's (simulated, UTC) day, if a bar of that day is held."""
        row = self.rows.get(symbol)
        if row is None or row.quote is None:
            return None
        day = row.quote.event_time_ms // DAY_MS
        if row.session is None or row.session[0] != day:
            first = next((b for b in self.bars(symbol, "1m") if b.window_start_ms // DAY_MS == day), None)
            row.session = (day, first.open if first else None)
        return row.session[1]

    def change_pct(self, symbol: str) -> Decimal | None:
        """Change since the session open, else since the first price this app saw, in percent."""
        row = self.rows.get(symbol)
        if row is None or row.quote is None:
            return None
        ref = self.session_open(symbol) or row.first_last
        if not ref:
            return None
        return (row.quote.last - ref) / ref * 100

    def spark(self, symbol: str, width: int) -> str:
        """The closes of the latest 1m bars and the last price as block characters, `width` at most."""
        if width <= 0:
            return ""
        closes = [b.close for b in self.bars(symbol, "1m")[-(width - 1):]] if width > 1 else []
        if not closes:
            return ""
        last = self.last(symbol)
        if last is not None:
            closes.append(last)
        return sparkline(closes[-width:])


def sparkline(values: list[Decimal]) -> str:
    low, high = min(values), max(values)
    if high == low:
        return SPARK_LEVELS[len(SPARK_LEVELS) // 2 - 1] * len(values)
    top = len(SPARK_LEVELS) - 1
    return "".join(SPARK_LEVELS[int((v - low) / (high - low) * top + Decimal("0.5"))] for v in values)


@dataclass
class Holding:
    """Shares of one symbol: the ledger's count, and their cost position when it is known to match."""

    symbol: str
    qty: int
    cost: PositionCost | None
    api_last: Decimal | None = None
    as_of_ms: int = 0


@dataclass(frozen=True)
class ValuedHolding:
    symbol: str
    qty: int
    average_cost: Decimal | None
    last: Decimal | None
    market_value: Decimal | None
    unrealized: Decimal | None


@dataclass(frozen=True)
class Valuation:
    cash: Decimal | None
    holdings: list[ValuedHolding]
    market_value: Decimal | None
    equity: Decimal | None
    unrealized: Decimal | None
    realized: Decimal | None


def _dec(value: object) -> Decimal | None:
    if value is None:
        return None
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


class Account:
    """Cash and positions: loaded from GET /portfolio, then moved by outcomes and portfolio frames."""

    def __init__(self) -> None:
        self.user_id: str | None = None
        self.cash: Decimal | None = None
        self.cash_as_of_ms = 0
        self.holdings: dict[str, Holding] = {}
        #: what the symbols the last answer did not list (closed positions) realized; None: not known
        self.realized_closed: Decimal | None = Decimal(0)
        self.realized_as_of_ms = 0
        self.loaded = False

    def load(self, doc: Mapping[str, Any]) -> None:
        """A GET /portfolio answer; fields a newer frame already moved (by `as_of_ms`) are kept."""
        as_of = int(doc.get("as_of_ms", 0))
        self.user_id = doc.get("user_id", self.user_id)
        if as_of >= self.cash_as_of_ms:
            self.cash = _dec(doc.get("cash"))
            self.cash_as_of_ms = as_of
        seen = set()
        listed: list[Decimal | None] = []
        for p in doc.get("positions", []):
            symbol, qty = p["symbol"], int(p["qty"])
            seen.add(symbol)
            listed.append(_dec(p.get("realized_pnl")))
            held = self.holdings.get(symbol)
            if held is not None and held.as_of_ms > as_of:
                continue
            avg = _dec(p.get("average_cost"))
            realized = _dec(p.get("realized_pnl"))
            # the answer's cost basis, not average cost × qty: the average is rounded to 8 places, and times qty
            # that rounding moved unrealized (and, after a sale here, realized) P&L off the API's by cents;
            # average × qty only for an answer without the field (an API before it)
            basis = _dec(p.get("cost_basis")) if "cost_basis" in p else None if avg is None else avg * qty
            cost = PositionCost(symbol, qty, basis, realized or Decimal(0)) if basis is not None else None
            self.holdings[symbol] = Holding(symbol, qty, cost, _dec(p.get("last_price")), as_of)
        for symbol in [s for s, h in self.holdings.items() if s not in seen and h.as_of_ms <= as_of]:
            del self.holdings[symbol]
        if as_of >= self.realized_as_of_ms:  # an older answer (two fetches crossing) does not undo a newer one
            total = _dec(doc.get("realized_pnl"))
            # the answer's total counts closed positions too; a position it did not list that a newer frame keeps
            # would be counted twice (in the total and in its holding), so the figure is then unknown
            kept = any(s not in seen for s in self.holdings)
            self.realized_closed = (total - sum((r for r in listed if r is not None), Decimal(0))
                                    if total is not None and None not in listed and not kept else None)
            self.realized_as_of_ms = as_of
        self.loaded = True

    def fill(self, record: TradeRecord, cash_after: Decimal | None, position_after: int | None,
             as_of_ms: int) -> None:
        """An executed outcome: cash and shares after it, and the fill folded into the cost position when the
        shares held before are exactly the ones it started from (so a fill already counted is not counted twice; the
        same count after it at another time is a round trip missed, not this fill)."""
        held = self.holdings.get(record.symbol) or Holding(record.symbol, 0, PositionCost(record.symbol))
        if position_after is not None and as_of_ms >= held.as_of_ms:
            before = position_after - record.qty if record.side == "buy" else position_after + record.qty
            if held.qty == before:
                cost = held.cost.after(record) if held.cost is not None else None
            elif held.qty == position_after and held.as_of_ms == as_of_ms:
                cost = held.cost  # this very fill, counted already (outcomes come at least once)
            else:
                cost = None  # our view missed something: show no cost basis rather than a wrong one
            self._set_qty(replace(held, cost=cost), position_after, as_of_ms)
        if cash_after is not None and as_of_ms >= self.cash_as_of_ms:
            self.cash, self.cash_as_of_ms = cash_after, as_of_ms

    def frame(self, data: Mapping[str, Any]) -> None:
        """A portfolio frame of the account channel: cash and one symbol's shares after an execution."""
        as_of = int(data.get("as_of_ms", 0))
        symbol = data.get("symbol")
        if symbol is not None and data.get("position") is not None:
            held = self.holdings.get(symbol) or Holding(symbol, 0, PositionCost(symbol))
            qty = int(data["position"])
            if as_of >= held.as_of_ms and qty != held.qty:
                self._set_qty(replace(held, cost=None), qty, as_of)
        cash = _dec(data.get("cash"))
        if cash is not None and as_of >= self.cash_as_of_ms:
            self.cash, self.cash_as_of_ms = cash, as_of

    def _set_qty(self, held: Holding, qty: int, as_of_ms: int) -> None:
        # a sold-out position stays (with 0 shares) so its time still outranks an older API answer
        self.holdings[held.symbol] = replace(held, qty=qty, as_of_ms=as_of_ms)

    def held(self) -> dict[str, Holding]:
        """The positions with shares."""
        return {s: h for s, h in self.holdings.items() if h.qty}

    def valuation(self, market: Market) -> Valuation:
        """Positions at the latest prices this app has (else the API's), equity and P&L."""
        rows = []
        held = self.held()
        for symbol in sorted(held):
            h = held[symbol]
            price = market.last(symbol) or h.api_last
            if h.cost is not None and h.cost.qty == h.qty:
                v = value(h.cost, h.qty, price, None)
                rows.append(ValuedHolding(symbol, h.qty, v.average_cost, price, v.market_value, v.unrealized))
            else:
                rows.append(ValuedHolding(symbol, h.qty, None, price, price * h.qty if price is not None else None,
                                          None))
        market_value = _total([r.market_value for r in rows])
        unrealized = _total([r.unrealized for r in rows])
        known = [h.cost.realized for h in self.holdings.values() if h.cost is not None]
        realized = (self.realized_closed + sum(known, Decimal(0))
                    if self.loaded and self.realized_closed is not None and len(known) == len(self.holdings)
                    else None)
        equity = self.cash + market_value if self.cash is not None and market_value is not None else None
        return Valuation(self.cash, rows, market_value, equity, unrealized, realized)


def _total(values: list[Decimal | None]) -> Decimal | None:
    return None if any(v is None for v in values) else sum((v for v in values if v is not None), Decimal(0))


@dataclass(frozen=True)
class OpenOrder:
    order_id: str
    symbol: str
    side: str
    qty: int
    type: str
    limit_price: str | None
    stop_price: str | None
    time_in_force: str
    placed_at_ms: int
    cancelling: bool = False

    @staticmethod
    def of(doc: Mapping[str, Any]) -> OpenOrder:
        """From an Order of GET /orders."""
        return OpenOrder(doc["order_id"], doc["symbol"], doc["side"], int(doc["qty"]), doc["type"],
                         doc.get("limit_price"), doc.get("stop_price"), doc.get("time_in_force", "day"),
                         int(doc.get("placed_at_ms", 0)))


def record_of_order(doc: Mapping[str, Any]) -> TradeRecord | None:
    """The outcome of a terminal Order of GET /orders; None while it is open."""
    if doc.get("status") not in ("executed", "rejected", "cancelled", "expired"):
        return None
    return TradeRecord(order_id=doc["order_id"], user_id=doc["user_id"], symbol=doc["symbol"], side=doc["side"],
                       qty=int(doc["qty"]), status=doc["status"], decided_at_ms=int(doc.get("decided_at_ms") or 0),
                       order_type=doc.get("type"), placed_at_ms=doc.get("placed_at_ms"), reason=doc.get("reason"),
                       price=_dec(doc.get("fill_price")) if doc["status"] == "executed" else None,
                       fee=_dec(doc.get("fee")) if doc["status"] == "executed" else None)


def record_of_trade(doc: Mapping[str, Any]) -> TradeRecord:
    """A Trade of GET /trades/search."""
    executed = doc["status"] == "executed"
    return TradeRecord(order_id=doc["order_id"], user_id=doc["user_id"], symbol=doc["symbol"], side=doc["side"],
                       qty=int(doc["qty"]), status=doc["status"], decided_at_ms=int(doc["decided_at_ms"]),
                       order_type=doc.get("order_type"), placed_at_ms=doc.get("placed_at_ms"),
                       reason=doc.get("reason"), price=_dec(doc.get("price")) if executed else None,
                       fee=_dec(doc.get("fee")) if executed else None)


class Orders:
    """Open orders by id, and the blotter: each order's outcome once, newest first."""

    def __init__(self) -> None:
        self.open: dict[str, OpenOrder] = {}
        self.outcomes: dict[str, TradeRecord] = {}
        #: orders the open listing dropped with no outcome seen (decided while the account channel was away, and
        #: older than the recent orders read): the app looks each up
        self.unsettled: dict[str, OpenOrder] = {}

    def placed(self, order: OpenOrder) -> bool:
        """An order the API accepted; ignored when its outcome is already known (it can arrive first)."""
        if order.order_id in self.outcomes or order.order_id in self.open or order.order_id in self.unsettled:
            return False
        self.open[order.order_id] = order
        return True

    def replace_open(self, orders: Iterable[OpenOrder], fetched_from_ms: int) -> None:
        """The open orders the API listed: orders it did not list and that were placed before the listing
        started are decided (while we did not listen), and unsettled until their outcome is known; later ones may
        just be newer than the listing."""
        listed = {o.order_id: o for o in orders if o.order_id not in self.outcomes}
        for oid, o in list(self.open.items()):
            if oid not in listed and o.placed_at_ms < fetched_from_ms:
                self.unsettled[oid] = self.open.pop(oid)
        for oid, o in listed.items():
            self.unsettled.pop(oid, None)
            held = self.open.get(oid)
            self.open[oid] = replace(o, cancelling=held.cancelling) if held else o

    def cancelling(self, order_id: str) -> None:
        if order_id in self.open:
            self.open[order_id] = replace(self.open[order_id], cancelling=True)

    def still_open(self, order: OpenOrder) -> None:
        """An unsettled order the API holds open after all (the listing lagged the order): open again."""
        held = self.unsettled.pop(order.order_id, None)
        if held is not None:
            self.open[order.order_id] = replace(order, cancelling=held.cancelling)

    def gone(self, order_id: str) -> None:
        """An unsettled order the API no longer has: there is no outcome to show."""
        self.unsettled.pop(order_id, None)

    def outcome(self, record: TradeRecord) -> bool:
        """Record an outcome; False for one already known (outcomes are delivered at least once)."""
        self.open.pop(record.order_id, None)
        self.unsettled.pop(record.order_id, None)
        if record.order_id in self.outcomes:
            return False
        self.outcomes[record.order_id] = record
        if len(self.outcomes) > BLOTTER_KEEP:
            oldest = min(self.outcomes.values(), key=lambda r: (r.decided_at_ms, r.order_id))
            del self.outcomes[oldest.order_id]
        return True

    def blotter(self) -> list[TradeRecord]:
        return sorted(self.outcomes.values(), key=lambda r: (r.decided_at_ms, r.order_id), reverse=True)


def decided_at_once(body: Mapping[str, Any]) -> bool:
    """Whether an order is decided on the first quote the job has (a market or IOC order), so its order → outcome
    time is the system's; a limit or stop order may rest, and then its time is the market's."""
    return body.get("type") == "market" or body.get("time_in_force") == "ioc"


class Latency:
    """Order → outcome latency: from sending the order to seeing its outcome, in ms (perf_counter times)."""

    def __init__(self) -> None:
        self.pending: dict[str, float] = {}
        self.samples: deque[float] = deque(maxlen=LATENCY_KEEP)
        #: orders an attempt may have reached the API with: their time runs from that attempt
        self.maybe_placed: set[str] = set()

    def sent(self, order_id: str, at: float) -> None:
        self.pending.setdefault(order_id, at)

    def not_sent(self, order_id: str, *, refused: bool = False) -> None:
        """An attempt that made no order (nothing left, or the API refused it): the next one's send is where the
        time starts, unless an earlier attempt may have placed it."""
        if refused or order_id not in self.maybe_placed:
            self.pending.pop(order_id, None)

    def reached(self, order_id: str) -> None:
        if order_id in self.pending:  # else its outcome came first (or it is not timed): nothing to keep
            self.maybe_placed.add(order_id)

    def forget(self, order_id: str) -> None:
        """No sample for this order: its outcome was read from the API (when a poll or a refresh came, not when
        the outcome did)."""
        self.maybe_placed.discard(order_id)
        self.pending.pop(order_id, None)

    def seen(self, order_id: str, at: float) -> float | None:
        self.maybe_placed.discard(order_id)
        sent = self.pending.pop(order_id, None)
        if sent is None:
            return None
        ms = (at - sent) * 1000
        self.samples.append(ms)
        return ms

    def text(self, count: int = 3) -> str:
        if not self.samples:
            return "order→outcome: -"
        return "order→outcome: " + " · ".join(f"{ms:.0f} ms" for ms in list(self.samples)[-count:][::-1])


@dataclass
class Link:
    """A connection's state as the status bar says it."""

    name: str
    state: str = "connecting"  # connecting | connected | down | offline
    retry_in_s: float | None = None
    detail: str = ""

    def text(self) -> str:
        if self.state == "connected":
            return f"{self.name}: connected"
        if self.state == "down":
            retry = f" (reconnecting in {self.retry_in_s:.1f} s)" if self.retry_in_s is not None else ""
            return f"{self.name}: disconnected{retry}"
        if self.state == "offline":
            return f"{self.name}: offline"
        return f"{self.name}: connecting…"


@dataclass
class Health:
    """Stack and job state from the poller; None until it answered once."""

    components: list[tuple[str, str, bool]] | None = None
    jobs: list[tuple[str, str]] | None = None
    jobs_error: str | None = None
    error: str | None = None

    def text(self) -> str:
        if self.error:
            stack = f"stack: {self.error}"
        elif self.components is None:
            stack = "stack: -"
        else:
            bad = [f"{n} {s}" for n, s, ok in self.components if not ok]
            stack = (f"stack: ok ({len(self.components)})" if not bad else "stack: " + ", ".join(bad))
        if self.jobs_error:
            jobs = f"jobs: {self.jobs_error}"
        elif self.jobs is None:
            jobs = "jobs: -"
        elif not self.jobs:
            jobs = "jobs: none running"
        else:
            jobs = "jobs: " + ", ".join(f"{n} {s.lower()}" for n, s in self.jobs)
        return f"{stack} · {jobs}"


@dataclass
class Model:
    """Everything on screen, and which panels changed since the last repaint."""

    market: Market = field(default_factory=Market)
    account: Account = field(default_factory=Account)
    orders: Orders = field(default_factory=Orders)
    latency: Latency = field(default_factory=Latency)
    market_link: Link = field(default_factory=lambda: Link("market data"))
    api_link: Link = field(default_factory=lambda: Link("api"))
    #: live (account channel), polling (the server has none: REST every second), refused, or - (not yet)
    account_feed: str = "-"
    health: Health = field(default_factory=Health)
    user_name: str = ""
    selected: str | None = None
    interval: str = "1m"
    dirty: set[str] = field(default_factory=set)
    dirty_symbols: set[str] = field(default_factory=set)

    def on_quote(self, symbol: str, quote: Quote, received_at: float, age_s: float = 0.0) -> bool:
        if not self.market.tick(symbol, quote, received_at, age_s):
            return False
        self.dirty_symbols.add(symbol)
        self.dirty.add(WATCH)
        if symbol == self.selected:
            self.dirty.add(CHART)
        if symbol in self.account.holdings and self.account.holdings[symbol].qty:
            self.dirty.update(HOLDINGS)
        return True

    def mark_stale(self, now: float, after_s: float) -> bool:
        """Mark the watched quotes that came more than `after_s` before `now` (the API refuses orders on such a
        price: `stale_price`); True if a row changed. A new quote makes its row fresh again."""
        changed = False
        for symbol in self.market.watchlist:
            row = self.market.rows[symbol]
            if row.quote is not None and not row.stale and now - row.priced_at > after_s:
                row.stale = changed = True
                self.dirty_symbols.add(symbol)
        if changed:
            self.dirty.add(WATCH)
        return changed

    def on_bars(self, symbol: str, interval: str, bars: Iterable[Bar]) -> None:
        self.market.set_bars(symbol, interval, bars)
        self._bars_dirty(symbol, interval)

    def on_bar(self, bar: Bar) -> None:
        self.market.add_bar(bar)
        self._bars_dirty(bar.symbol, bar.interval)

    def _bars_dirty(self, symbol: str, interval: str) -> None:
        if interval == "1m":
            self.dirty_symbols.add(symbol)
            self.dirty.add(WATCH)
        if symbol == self.selected and interval == self.interval:
            self.dirty.add(CHART)

    def on_outcome(self, outcome: OrderOutcome, at: float) -> bool:
        """An outcome of the account channel; False if it was known already."""
        record = record_of(outcome)
        new = self.on_record(record, at, timed=True)
        if outcome.status == "executed":
            self.account.fill(record, outcome.cash_after, outcome.position_after, outcome.decided_at_ms)
            self.market.track(outcome.symbol)
            self.dirty.update(HOLDINGS)
        return new

    def on_record(self, record: TradeRecord, at: float, *, timed: bool = False) -> bool:
        """An outcome from any source (channel, GET /orders, search); `timed`: it came as it was decided (the
        account channel), so `at` ends its order → outcome latency."""
        was_open = record.order_id in self.orders.open
        new = self.orders.outcome(record)
        if timed:
            self.latency.seen(record.order_id, at)
        else:
            self.latency.forget(record.order_id)
        if new:
            self.dirty.update((BLOTTER, STATUS))
        if was_open:
            self.dirty.add(ORDERS)
        return new

    def on_portfolio(self, doc: Mapping[str, Any]) -> None:
        self.account.load(doc)
        for symbol in self.account.held():
            self.market.track(symbol)
        self.dirty.update(HOLDINGS)

    def on_portfolio_frame(self, data: Mapping[str, Any]) -> None:
        self.account.frame(data)
        self.dirty.update(HOLDINGS)

    def on_placed(self, order: OpenOrder) -> None:
        if self.orders.placed(order):
            self.dirty.add(ORDERS)

    def on_open_orders(self, orders: Iterable[OpenOrder], fetched_from_ms: int) -> None:
        self.orders.replace_open(orders, fetched_from_ms)
        self.dirty.add(ORDERS)

    def on_looked_up(self, order_id: str, doc: Mapping[str, Any] | None, at: float) -> None:
        """The answer to looking up an unsettled order: the Order of GET /orders/{id}, or None when there is none."""
        if doc is None:
            self.orders.gone(order_id)
            self.latency.forget(order_id)
            return
        record = record_of_order(doc)
        if record is not None:
            self.on_record(record, at)
        else:
            self.orders.still_open(OpenOrder.of(doc))
            self.dirty.add(ORDERS)

    def set_link(self, link: Link, state: str, retry_in_s: float | None = None, detail: str = "") -> None:
        link.state, link.retry_in_s, link.detail = state, retry_in_s, detail
        self.dirty.add(STATUS)

    def status_text(self) -> str:
        """The status bar: who, the links, then the stack, the jobs and the latest order → outcome latencies."""
        links = " · ".join((self.user_name or "no account", self.market_link.text(), self.api_link.text(),
                            f"account: {self.account_feed}"))
        return f"{links}\n{self.health.text()} · {self.latency.text()}"

    def take_dirty(self, panels: Iterable[str] = PANELS) -> tuple[set[str], set[str]]:
        """The dirty ones of `panels` (now clean), and the symbols whose watchlist rows changed (when WATCH is
        among them)."""
        taken = self.dirty & set(panels)
        self.dirty -= taken
        symbols: set[str] = set()
        if WATCH in taken:
            symbols, self.dirty_symbols = self.dirty_symbols, set()
        return taken, symbols


ORDER_FIELDS = ("side", "symbol", "qty", "type", "limit_price", "stop_price", "time_in_force")
#: API error codes that are about one ticket field
CODE_FIELDS = {"stale_price": "symbol", "unknown_symbol": "symbol", "insufficient_funds": "qty",
               "insufficient_shares": "qty"}
#: the API's pattern errors quote a regular expression; these say it in words
def _symbol(text: str) -> str:
    """The ticket's symbol in upper case; as typed when it is not one, for the request model to refuse."""
    return typed_symbol(text.strip()) or text.strip()


def order_body(form: Mapping[str, str]) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """(the POST /orders body, {}) or (None, {field: message}) for a ticket's texts, checked by the API's own
    request model, so what would be refused is shown next to its field and never sent."""
    prices = {"limit_price": form.get("type") in ("limit", "stop_limit"),
              "stop_price": form.get("type") in ("stop", "stop_limit")}
    qty_text = form.get("qty", "").strip()
    body: dict[str, Any] = {"symbol": _symbol(form.get("symbol", "")), "side": form.get("side"),
                            # ASCII digits only: int() refuses "--1", "²" and 5,000 digits, and reads "١٢" as 12;
                            # up to 40, so a number too large is told the limit, not "a valid integer"
                            "qty": int(qty_text) if re.fullmatch(r"-?[0-9]{1,40}", qty_text) else qty_text,
                            "type": form.get("type"), "time_in_force": form.get("time_in_force")}
    for name, needed in prices.items():
        text = form.get(name, "").strip()
        if needed:
            body[name] = text or None
    try:
        OrderRequest.model_validate(body)
    except ValidationError as exc:
        return None, field_errors([{"loc": list(e["loc"]), "msg": field_message(dict(e)), "type": e["type"]}
                                   for e in exc.errors()])
    return body, {}


def field_errors(errors: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """{ticket field: message} of pydantic-style errors (an API 422's `errors`, or the local check's)."""
    out: dict[str, str] = {}
    for e in errors:
        loc = [p for p in e.get("loc", []) if p != "body"]
        msg = validation_message(dict(e))
        name = str(loc[0]) if loc else next((f for f in ORDER_FIELDS if f in msg), "")
        out.setdefault(name if name in ORDER_FIELDS else "", msg)
    return out
