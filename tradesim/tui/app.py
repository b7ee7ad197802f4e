"""`tradesim tui`: a keyboard-first trading terminal on the public API (HTTP) and the market-data WebSocket.

Frames update the model as they arrive; the panels they touched are repainted once the frames at hand are applied
(watchlist, open orders) or at most every SLOW_REPAINT_S (the rest), so a burst costs one repaint. Measured for
`tradesim bench tui`: `paint_latencies_ms` (a price frame received → the screen refresh that drew it, written to
the terminal) and `first_price_at` (seconds from building the app to the first price drawn). See
docs/design/tui.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from rich.text import Text
from textual import events, on, work
from textual.app import App, ComposeResult
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Static

from tradesim.client.api import Api, ApiError, ApiUnreachable, account_key, call, load_credentials
from tradesim.client.format import cents, signed
from tradesim.domain.events import Bar, OrderOutcome
from tradesim.domain.precheck import order_id_for
from tradesim.services.api.schemas import AccountInfo
from tradesim.settings import Settings, load_settings, redacted
from tradesim.stack.errors import UserError
from tradesim.tui import health
from tradesim.tui.bindings import bindings, keymap, keys_of
from tradesim.tui.commands import TradingCommands
from tradesim.tui.connection import Backoff, Feed
from tradesim.tui.model import (
    BLOTTER,
    CHART,
    ORDERS,
    PANELS,
    PORTFOLIO,
    STATUS,
    SUMMARY,
    WATCH,
    Health,
    Market,
    Model,
    OpenOrder,
    Quote,
    Valuation,
    decided_at_once,
    record_of_order,
    record_of_trade,
)
from tradesim.tui.widgets.chart import CandleChart
from tradesim.tui.widgets.grid import Grid
from tradesim.tui.widgets.screens import AccountScreen, HelpScreen, SymbolScreen, TicketScreen
from tradesim.tui.widgets.tables import Blotter, OpenOrders, Positions, Watchlist, short_id

#: the watchlist and open orders repaint as soon as the frames read in one go are applied; the other panels
#: (chart, portfolio, blotter, status bar: they change with every price of a held symbol, or redraw whole) at most
#: this often, which is still live to the eye and keeps the terminal's work within the budget
SLOW_REPAINT_S = 0.2
FAST = frozenset((WATCH, ORDERS))
SLOW = PANELS - FAST
#: the terminal size the panels are laid out for (README: "a terminal of 100×30 or larger")
MIN_SIZE = (100, 30)
HEALTH_EVERY_S = 5.0
#: without the account channel (market data down, an older service, a refused key), how often orders and portfolio
#: are polled
POLL_EVERY_S = 1.0
#: with it, how often the open orders are loaded again: the channel carries outcomes, not orders placed elsewhere
#: (the CLI, a script) that rest
OPEN_ORDERS_EVERY_S = 5.0
#: orders the open listing dropped with no outcome seen (decided while the account channel was away, and older than
#: the 100 recent orders read) are looked up one by one, at most this many per refill or poll: a refill stays a few
#: reads even when a thousand open orders were decided meanwhile, and the rest are looked up at the next one
LOOKUPS_PER_FETCH = 50
#: how often the watchlist looks for quotes older than the API takes orders on (`Settings.stale_price_after_s`)
STALE_CHECK_EVERY_S = 1.0
API_CHECK_S = 5.0
PAINT_KEEP = 100_000
UNMOUNT_WAIT_S = 3.0
#: a read answered 429 is asked this many times in all, waiting its Retry-After (at most this long) between
PATIENT_TRIES = 6
PATIENT_WAIT_MAX_S = 5.0
T = TypeVar("T")


@dataclass(frozen=True)
class User:
    """An account of the credentials file."""

    name: str
    user_id: str
    api_key: str


async def _patient(call: Callable[[], Awaitable[T]]) -> T:
    """One read, asked again after its Retry-After while the API answers 429: an account with a low rate limit
    still loads (its start-up reads come back to back)."""
    for _ in range(PATIENT_TRIES - 1):
        try:
            return await call()
        except ApiError as exc:
            if exc.status != 429:
                raise
            await asyncio.sleep(min(exc.retry_after_s or 1.0, PATIENT_WAIT_MAX_S))
    return await call()


def resolve_user(settings: Settings, name: str | None) -> User:
    """`name`, else `tui.user`, else the active account of the credentials file; UserError if there is none."""
    return User(*account_key(settings, name or settings.tui.user))


def default_watchlist(settings: Settings, held: list[str]) -> list[str]:
    """`tui.watchlist`, else the live market's symbols (`market.scenario`), then the symbols held."""
    wanted = [s.upper() for s in settings.tui.watchlist]
    if not wanted:
        from tradesim.scenarios.errors import ScenarioError
        from tradesim.scenarios.loader import find_scenario, load_scenario

        try:
            scenario = load_scenario(find_scenario(settings.market.scenario, settings.scenarios_dir),
                                     check_data=False)
            wanted = scenario.symbol_names()
        except ScenarioError:
            wanted = []
    return wanted + [s for s in sorted(held) if s not in wanted]


def check_theme(name: str) -> str:
    """`name` if Textual has that theme; UserError otherwise."""
    from textual.theme import BUILTIN_THEMES

    if name not in BUILTIN_THEMES:
        raise UserError(f"tui.theme: unknown theme {name!r}; themes: {', '.join(sorted(BUILTIN_THEMES))}")
    return name


def _now_ms() -> int:
    return int(time.time() * 1000)


class HealthPolled(Message):
    def __init__(self, health: Health) -> None:
        super().__init__()
        self.health = health


class MainScreen(Screen[None]):
    """Watchlist and chart on top, portfolio and orders below, status bar and keys at the bottom."""

    BINDINGS = bindings()
    DEFAULT_CSS = """
    MainScreen {
        #top, #bottom { height: 1fr; }
        #watchlist, #portfolio, #chart, #right { width: 1fr; }
        #watchlist, #chart, #portfolio, #open-orders, #blotter {
            border: round $foreground 30%; border-title-color: $text-muted; }
        #watchlist:focus, #open-orders:focus, #blotter:focus, #portfolio:focus-within {
            border: round $accent; border-title-color: $text; }
        #chart { padding: 0 1; }
        #summary { height: 2; padding: 0 1; }
        #positions { height: 1fr; }
        #open-orders { height: 2fr; }
        #blotter { height: 3fr; }
        /* one row per line, cut with … where it does not fit: a wrapped links line would push the stack and job
           state off the bar */
        #status { height: 2; padding: 0 1; background: $panel; color: $text-muted;
                  text-wrap: nowrap; text-overflow: ellipsis; }
    }
    """

    def compose(self) -> ComposeResult:
        with Horizontal(id="top"):
            yield Watchlist(id="watchlist")
            yield CandleChart(id="chart")
        with Horizontal(id="bottom"):
            with Vertical(id="portfolio"):
                yield Static("", id="summary")
                yield Positions(id="positions")
            with Vertical(id="right"):
                yield OpenOrders(id="open-orders")
                yield Blotter(id="blotter")
        yield Static("", id="status")
        yield Footer()

    def on_mount(self) -> None:
        titles = {"#watchlist": "Watchlist", "#chart": "Chart", "#portfolio": "Portfolio",
                  "#open-orders": "Open orders", "#blotter": "Executions"}
        for selector, title in titles.items():
            self.query_one(selector).border_title = title
        self.query_one(Watchlist).focus()
        self.tapp.main_ready()

    @property
    def tapp(self) -> TradesimApp:
        return self.app  # type: ignore[return-value]

    def action_buy(self) -> None:
        self.tapp.open_ticket("buy")

    def action_sell(self) -> None:
        self.tapp.open_ticket("sell")

    def action_cancel(self) -> None:
        self.tapp.cancel_selected()

    def action_add_symbol(self) -> None:
        self.tapp.ask_symbol()

    def action_remove_symbol(self) -> None:
        self.tapp.remove_selected()

    def action_interval(self) -> None:
        self.tapp.toggle_interval()

    def action_account(self) -> None:
        self.tapp.ask_account()

    def action_refresh(self) -> None:
        self.tapp.refresh_from_api()

    def action_help(self) -> None:
        self.tapp.push_screen(HelpScreen(self.tapp.settings.tui.bindings))

    async def action_quit(self) -> None:
        self.tapp.exit()

    @on(Grid.RowHighlighted, "#watchlist")
    def _selected(self, event: Grid.RowHighlighted) -> None:
        self.tapp.select(event.key)


class TradesimApp(App[None]):
    """The TUI. `offline=True` opens no connection (snapshot tests feed the model through the `feed_*` hooks).
    `tune_gc`: the app owns its process (`tradesim tui`), so it may freeze what start-up allocated; embedded (a
    test session) it must not, or the host's garbage, leaks included, would never be collected."""

    TITLE = "tradesim"
    COMMANDS = App.COMMANDS | {TradingCommands}

    def __init__(self, settings: Settings, user: User | None, *, watchlist: list[str], offline: bool = False,
                 tune_gc: bool = False) -> None:
        super().__init__()
        self.settings = settings
        self.user = user
        self.offline = offline
        self.tune_gc = tune_gc
        self.model = Model(market=Market(watchlist), user_name=user.name if user else "")
        self.model.selected = watchlist[0] if watchlist else None
        self.paint_latencies_ms: deque[float] = deque(maxlen=PAINT_KEEP)
        self.first_price_at: float | None = None
        self.started_at = time.perf_counter()
        self.api: Api | None = None
        self.feed: Feed | None = None
        self._unpainted: list[float] = []
        self._fast_pending = self._slow_pending = False
        self._history_wanted = True
        self._last_error: str | None = None
        self._told_unknown: set[str] = set()  # symbols the feed said never had a price, once told
        #: the size the user was last told is below MIN_SIZE (None: not small, or not told)
        self._told_small: tuple[int, int] | None = None
        self._main_ready = False
        self._api_wake = asyncio.Event()
        self.set_keymap(keymap(settings.tui.bindings))
        self.theme = check_theme(settings.tui.theme)

    def get_default_screen(self) -> MainScreen:
        return MainScreen()

    def on_resize(self, event: events.Resize) -> None:
        """Say once per shrink that the panels are cut below MIN_SIZE (the README's 100×30), with the size now."""
        size = (event.size.width, event.size.height)
        if size[0] >= MIN_SIZE[0] and size[1] >= MIN_SIZE[1]:
            self._told_small = None
            return
        told = self._told_small
        if told is None or size[0] < told[0] or size[1] < told[1]:
            self.notify(f"the terminal is {size[0]}×{size[1]}: the panels need "
                        f"{MIN_SIZE[0]}×{MIN_SIZE[1]} or more, so some are cut", severity="warning", timeout=8)
            self._told_small = size

    @property
    def main(self) -> MainScreen:
        return self.screen_stack[0]  # type: ignore[return-value]  # the default screen, under any dialog

    # -- lifecycle --------------------------------------------------------------------------------------------

    def main_ready(self) -> None:
        """The main screen is composed: paint it and connect."""
        self._main_ready = True
        # Move what start-up allocated (Textual, widgets, imports) out of the collector's reach: full collections
        # over it paused the screen for 100-160 ms a few times a minute (bench tui: half the p99 refresh latency).
        if self.tune_gc:
            gc.freeze()
        if self.offline or self.user is None:
            self.model.set_link(self.model.market_link, "offline")
            self.model.set_link(self.model.api_link, "offline")
        else:
            self._connect(self.user)
            self._poll_health()
            self.set_interval(HEALTH_EVERY_S, self._poll_health)
            self.set_interval(OPEN_ORDERS_EVERY_S, self._refill_while_live)
            self.set_interval(STALE_CHECK_EVERY_S, self._mark_stale)
        self.model.dirty.update(PANELS)
        self.repaint_now()

    def _connect(self, user: User) -> None:
        self.api = Api(self.settings.api.client_url, user.api_key, place_timeout_s=self.settings.api.order_answer_s)
        self.feed = Feed(self.settings.marketdata.client_ws_url, user.api_key, self)
        self.feed.prices = self._price_symbols()
        self.feed.bars = self._bar_pairs()
        self.run_worker(self.feed.run(), name="market-data feed", group="feed", exclusive=True, exit_on_error=False)
        self.run_worker(self._watch_api(), name="api watch", group="api", exclusive=True, exit_on_error=False)
        self._history_wanted = True
        self._refill()

    async def on_unmount(self) -> None:
        self._main_ready = False
        # Textual cancels workers on exit without awaiting them: awaited here, while the loop runs, so the sockets
        # they close are released (docs/design/tui.md, "Closing leaves no connection behind")
        stopping = [w for w in self.workers if w.group != "health"]
        for worker in stopping:
            worker.cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(w.wait() for w in stopping), return_exceptions=True),
                                   UNMOUNT_WAIT_S)
        if self.api is not None:
            await self.api.aclose()

    # -- what the feed reports (FeedEvents) ----------------------------------------------------------------------

    def feed_state(self, state: str, retry_in_s: float | None, detail: str) -> None:
        self.model.set_link(self.model.market_link, state, retry_in_s, detail)
        if state != "connected":
            self.model.account_feed = "-"  # until the next connection's channel answers
            if not self.offline and not any(w.group == "poll" and w.is_running for w in self.workers):
                self._poll()  # the API may still answer: without the channel, outcomes come from it
        self._schedule()

    def feed_quote(self, symbol: str, quote: Quote, received_at: float, age_s: float) -> None:
        if self.model.on_quote(symbol, quote, received_at, age_s):
            if symbol in self.model.market.watchlist:
                self._unpainted.append(received_at)
            self._schedule()

    def feed_bars(self, symbol: str, interval: str, bars: list[Bar]) -> None:
        self.model.on_bars(symbol, interval, bars)
        self._schedule()

    def feed_bar(self, bar: Bar) -> None:
        self.model.on_bar(bar)
        self._schedule()

    def feed_account(self, state: str) -> None:
        self.model.account_feed = state
        self.model.dirty.add(STATUS)
        self._schedule()
        if state == "refused" and self.user is not None:
            self.notify(f"the market-data service refused the key of {self.user.name}; if it was rotated, "
                        f"{keys_of('refresh', self.settings.tui.bindings)} loads the new one from the credentials "
                        "file", severity="warning", timeout=10)
        if state == "live":
            self._refill()  # what was decided before the ack
        elif not self.offline:
            self._poll()

    def feed_unknown_symbols(self, symbols: list[str]) -> None:
        new = [s for s in symbols if s not in self._told_unknown]  # each reconnect asks again: say it once
        self._told_unknown.update(new)
        if new:
            self.notify(f"no price was ever published for {', '.join(new)}: check the symbol "
                        f"({keys_of('remove_symbol', self.settings.tui.bindings)} removes it)", severity="warning")

    def feed_outcome(self, outcome: OrderOutcome, received_at: float) -> None:
        self.model.on_outcome(outcome, received_at)
        self._sync_feed()
        self._schedule()

    def feed_portfolio(self, data: dict[str, Any]) -> None:
        self.model.on_portfolio_frame(data)
        self._schedule()

    # -- repainting ---------------------------------------------------------------------------------------------

    def _schedule(self) -> None:
        """Repaint what the model marked dirty: the watchlist and open orders once the frames at hand are applied,
        the other panels within SLOW_REPAINT_S."""
        if not self._main_ready:
            return
        dirty = self.model.dirty
        if not self._fast_pending and (dirty & FAST or self._unpainted):
            self._fast_pending = True
            self.call_later(self._repaint_fast)
        if not self._slow_pending and dirty & SLOW:
            self._slow_pending = True
            self.set_timer(SLOW_REPAINT_S, self._repaint_slow)

    def _repaint_fast(self) -> None:
        self._fast_pending = False
        self._repaint(FAST)

    def _repaint_slow(self) -> None:
        self._slow_pending = False
        self._repaint(SLOW)

    def repaint_now(self) -> None:
        """Bring every panel the model marked dirty up to date at once (tests call it; timers do the rest)."""
        self._repaint(PANELS)

    def _repaint(self, panels: frozenset[str]) -> None:
        if not self._main_ready or not self.screen_stack:
            return  # not composed yet, or shutting down
        try:
            self._paint(panels)
        except NoMatches:
            return  # closing: the screen's widgets go (side by side) before the app's unmount clears _main_ready

    def _paint(self, panels: frozenset[str]) -> None:
        main = self.main
        watchlist = main.query_one(Watchlist)
        dirty, symbols = self.model.take_dirty(panels)
        model = self.model
        shown = WATCH in dirty and watchlist.sync(model.market, symbols)
        if PORTFOLIO in dirty or SUMMARY in dirty:
            valuation = model.account.valuation(model.market)
            if PORTFOLIO in dirty:
                main.query_one(Positions).sync(valuation)
            if SUMMARY in dirty:
                main.query_one("#summary", Static).update(_summary(valuation), layout=False)
        if ORDERS in dirty:
            main.query_one(OpenOrders).sync(model.orders.open)
        if CHART in dirty:
            self._paint_chart(main)
        if BLOTTER in dirty:
            main.query_one(Blotter).sync(model.orders.blotter())
        if STATUS in dirty:
            main.query_one("#status", Static).update(self.status_text(), layout=False)
        if WATCH in panels and self._unpainted:
            times, self._unpainted = self._unpainted, []
            if shown:
                watchlist.when_drawn(partial(self._painted, times))
            else:
                self._painted(times)  # nothing new to draw in sight: the screen shows what it can of these frames

    def _paint_chart(self, main: MainScreen) -> None:
        symbol, interval = self.model.selected, self.model.interval
        chart = main.query_one(CandleChart)
        if symbol is None:
            chart.border_title = "Chart"
            chart.show([], None, "no symbol selected")
            return
        chart.border_title = f"{symbol} · {interval} bars"
        bars = self.model.market.bars(symbol, interval)
        chart.show(bars, self.model.market.last(symbol), "no bars yet")

    def _painted(self, received: list[float]) -> None:
        now = time.perf_counter()
        self.paint_latencies_ms.extend((now - t) * 1000 for t in received)
        if self.first_price_at is None:
            self.first_price_at = now - self.started_at

    def summary_text(self) -> str:
        """The portfolio panel's summary lines as plain text."""
        return Text.from_markup(_summary(self.model.account.valuation(self.model.market))).plain

    def status_text(self) -> str:
        return self.model.status_text()

    # -- the API ---------------------------------------------------------------------------------------------

    async def _watch_api(self) -> None:
        """Check the API every few seconds (and at once after a failed call); on its return, fill the gaps."""
        backoff = Backoff()
        link = self.model.api_link
        while self.api is not None:
            api = self.api
            try:
                await api.healthz()
            except (ApiUnreachable, ApiError) as exc:
                delay = backoff.next()
                self.model.set_link(link, "down", delay, str(exc))
                self._schedule()
                await asyncio.sleep(delay)  # pacing retries, not waiting for a condition
                continue
            backoff.reset()
            if link.state != "connected":
                recovered = link.state == "down"
                self.model.set_link(link, "connected")
                self._schedule()
                if recovered:
                    self._refill()
            self._api_wake.clear()
            try:
                await asyncio.wait_for(self._api_wake.wait(), API_CHECK_S)
            except TimeoutError:
                pass

    def _api_failed(self, exc: ApiUnreachable) -> None:
        self.model.set_link(self.model.api_link, "down", None, str(exc))
        self._schedule()
        self._api_wake.set()

    @work(group="refill", exclusive=True, exit_on_error=False)
    async def _refill(self) -> None:
        """Portfolio, open and recent orders (and, once, the executions history) from the API."""
        await self._fetch()

    async def _fetch(self) -> bool:
        api = self.api
        if api is None:
            return False
        started_ms = _now_ms()
        history = self._history_wanted  # kept until loaded: a refill may be cancelled by the next one
        trades: list[dict[str, Any]] = []
        missing_history: str | None = None
        try:
            portfolio = await _patient(api.portfolio)
            open_orders = await _patient(lambda: api.orders(status="accepted", limit=1000))
            recent = await _patient(lambda: api.orders(limit=100))
            if history:
                try:
                    trades = await _patient(lambda: api.trades(size=100))
                except ApiError as exc:  # the search read model alone: the account loads without the history
                    history, missing_history = False, f"could not load the executions history: {exc}"
        except ApiUnreachable as exc:
            self._api_failed(exc)
            return False
        except ApiError as exc:
            self._error_once(f"could not load the account: {exc}")
            return False
        if api is not self.api:
            return False  # the account was switched meanwhile
        if missing_history is None:
            self._last_error = None
        else:
            self._error_once(missing_history)  # tried again at the next refill
        if history:
            self._history_wanted = False
        at = time.perf_counter()
        for doc in trades:
            self.model.on_record(record_of_trade(doc), at)
        for doc in recent:
            record = record_of_order(doc)
            if record is not None:
                self.model.on_record(record, at)
        self.model.on_open_orders([OpenOrder.of(o) for o in open_orders], started_ms)
        self.model.on_portfolio(portfolio)
        self._sync_feed()
        self._schedule()
        await self._settle(api)
        return True

    async def _settle(self, api: Api) -> None:
        """Look up the orders the open listing dropped with no outcome seen (GET /orders/{id}), at most
        LOOKUPS_PER_FETCH; each answer is applied as it comes, so a refill cancelled by the next keeps them."""
        for order_id in list(self.model.orders.unsettled)[:LOOKUPS_PER_FETCH]:
            doc: dict[str, Any] | None
            try:
                doc = await _patient(partial(api.order, order_id))
            except ApiUnreachable as exc:
                self._api_failed(exc)
                return
            except ApiError as exc:
                if exc.status != 404:  # (a 429, a key rotated, a 5xx): looked up again at the next refill or poll
                    return
                doc = None  # no longer stored: there is no outcome to show
            except ValueError:
                doc = None  # not an id a path can carry: no lookup can find it
            if api is not self.api:
                return  # the account was switched meanwhile
            self.model.on_looked_up(order_id, doc, time.perf_counter())
            self._schedule()

    def _error_once(self, message: str) -> None:
        if message != self._last_error:  # polling must not repeat the same toast every second
            self._last_error = message
            self.notify(message, severity="error")

    @work(group="poll", exclusive=True, exit_on_error=False)
    async def _poll(self) -> None:
        """Without the account channel: orders and portfolio from the API every second."""
        while self.model.account_feed != "live" and self.api is not None:
            await self._fetch()
            await asyncio.sleep(POLL_EVERY_S)  # a polling period, not a wait for a condition

    def _mark_stale(self) -> None:
        if self.model.mark_stale(time.perf_counter(), self.settings.stale_price_after_s):
            self._schedule()

    def _refill_while_live(self) -> None:
        if self.model.account_feed == "live":  # else the poll loads them every second
            self._refill()

    def refresh_from_api(self) -> None:
        if self.user is not None and not self.offline:
            try:  # the key again from the credentials file: `accounts rotate-key` gave the account a new one
                current = resolve_user(self.settings, self.user.name)
            except UserError:
                current = self.user
            if current != self.user:
                self.switch_account(current.name)
                return
        if self.api is not None:
            self._last_error = None  # asked for: a failure that repeats is told again
            self._refill()

    # -- actions ---------------------------------------------------------------------------------------------

    async def place_order(self, body: dict[str, Any], idempotency_key: str) -> str:
        """POST /orders; the order id, or ApiError / ApiUnreachable (the ticket shows them)."""
        if self.api is None or self.user is None:
            raise ApiUnreachable("offline: this app has no connection to the API")
        # the account may be switched while the request is out: its answer belongs to this model and API only
        api, model = self.api, self.model
        order_id = order_id_for(self.user.user_id, idempotency_key)
        latency = model.latency
        if decided_at_once(body):  # the others' time is the market's as much as the system's
            latency.sent(order_id, time.perf_counter())
        try:
            answer = await api.place(body, idempotency_key)
        except ApiUnreachable as exc:
            if exc.sent:
                latency.reached(order_id)
            else:
                latency.not_sent(order_id)
            if api is self.api:  # not the next account's link: this one was closed under the request
                self._api_failed(exc)
            raise
        except ApiError as exc:
            if exc.status < 500:
                latency.not_sent(order_id, refused=True)
            else:
                latency.reached(order_id)
            raise
        latency.reached(order_id)
        placed = answer.get("order_id") if isinstance(answer, dict) else None
        if not isinstance(placed, str):  # a 2xx that is not the API's answer: the order's fate is unknown
            raise ApiError(502, "not_tradesim_api", f"the answer to POST /orders has no order id: is "
                           f"{redacted(self.settings.api.client_url)} the tradesim API (api.url)?")
        if model is self.model:  # else another account's now: its order is not listed there
            model.on_placed(OpenOrder(placed, body["symbol"], body["side"], body["qty"], body["type"],
                                      body.get("limit_price"), body.get("stop_price"), body["time_in_force"],
                                      _now_ms()))
            self._schedule()
        return str(placed)

    def open_ticket(self, side: str) -> None:
        if self.user is None:
            self.notify("no account", severity="error")
            return
        owner = self.user.name

        async def place(body: dict[str, Any], idempotency_key: str) -> str:
            # the ticket is its owner's: an account switched meanwhile (the command palette works over a ticket)
            # must not receive the order
            if self.user is None or self.user.name != owner:
                raise ApiError(409, "account_switched", f"this ticket is {owner}'s and the app now trades as "
                               f"{self.user.name if self.user else 'no one'}: close it and open a new one")
            return await self.place_order(body, idempotency_key)

        self.push_screen(TicketScreen(side, self.model.selected or "", place, owner), self._ticket_closed)

    def _ticket_closed(self, order_id: str | None) -> None:
        if order_id:
            self.notify(f"order {order_id} accepted", timeout=3)  # whole: `order show` and `trace` take it

    def cancel_selected(self) -> None:
        """Cancel the open order under the cursor once the user is in that panel: from another panel the first
        row would go without ever being chosen, so `c` there moves to the panel first; and where the cursor fell on
        another order when its own was decided, `c` first says so."""
        grid = self.main.query_one(OpenOrders)
        order_id = grid.selected_key()
        if order_id is None:
            self.notify("no open order selected", severity="warning")
            return
        if not self._in_panel(grid, "the order to cancel in open orders", "cancel"):
            return
        if grid.cursor_fell:  # the chosen order was decided: the one the cursor fell on was never chosen
            grid.cursor_fell = False
            self.notify(f"the order under the cursor was decided; the cursor is now on {short_id(order_id)}: press "
                        f"{keys_of('cancel', self.settings.tui.bindings)} again to cancel it", timeout=4)
            return
        self._cancel(order_id)

    def _in_panel(self, grid: Grid, what: str, action: str) -> bool:
        """Whether the user is in `grid`; else move there and say to choose `what` and press the action's key
        again (a row under a cursor the user never saw is not chosen)."""
        if grid.has_focus:
            return True
        grid.focus()
        self.notify(f"choose {what}, then press {keys_of(action, self.settings.tui.bindings)} again", timeout=4)
        return False

    @work(group="cancel", exit_on_error=False)
    async def _cancel(self, order_id: str) -> None:
        if self.api is None:
            self.notify("offline: cannot cancel", severity="error")
            return
        api, model = self.api, self.model  # as in place_order: the account may be switched while it is out
        try:
            await api.cancel(order_id)
        except ApiUnreachable as exc:
            if api is self.api:
                self._api_failed(exc)
            self.notify(f"cancel {short_id(order_id)}: {exc}", severity="error")
            return
        except ApiError as exc:
            self.notify(f"cancel {short_id(order_id)}: {exc}", severity="error")
            if exc.code == "order_not_open" and model is self.model:  # decided meanwhile, and missed: show it
                self._refill()
            return
        if model is self.model:
            model.orders.cancelling(order_id)
            model.dirty.add(ORDERS)
            self._schedule()

    def select(self, symbol: str) -> None:
        if symbol == self.model.selected:
            return
        self.model.selected = symbol
        self.model.dirty.add(CHART)
        self._schedule()
        if self.model.interval == "1s":
            self._sync_feed()

    def toggle_interval(self) -> None:
        self.model.interval = "1s" if self.model.interval == "1m" else "1m"
        self.model.dirty.add(CHART)
        self._schedule()
        self._sync_feed()

    def ask_symbol(self) -> None:
        self.push_screen(SymbolScreen(), self._add_symbol)

    def _add_symbol(self, symbol: str | None) -> None:
        if symbol and self.model.market.watch(symbol):
            if self.model.selected is None:
                self.model.selected = symbol
            self.model.dirty.update((WATCH, CHART))
            self._schedule()
            self._sync_feed()

    def remove_selected(self) -> None:
        """Remove the symbol under the watchlist's cursor once the user is in that panel (as `c` does for open
        orders: from another panel its row would go without ever being chosen)."""
        grid = self.main.query_one(Watchlist)
        symbol = grid.selected_key()
        if symbol and not self._in_panel(grid, "the symbol to remove in the watchlist", "remove_symbol"):
            return
        if symbol and self.model.market.unwatch(symbol):
            if self.model.selected == symbol:
                self.model.selected = None
            self.model.dirty.update((WATCH, CHART))
            self._schedule()
            self._sync_feed()

    def account_names(self) -> list[str]:
        return sorted(load_credentials(self.settings)["users"])

    def ask_account(self) -> None:
        try:
            names = self.account_names()
        except UserError as exc:  # the credentials file broke since the app started
            self.notify(str(exc), severity="error")
            return
        self.push_screen(AccountScreen(names, self.model.user_name), self._account_picked)

    def _account_picked(self, name: str | None) -> None:
        if name:
            self.switch_account(name)

    def switch_account(self, name: str) -> None:
        try:
            user = resolve_user(self.settings, name)
        except UserError as exc:
            self.notify(str(exc), severity="error")
            return
        if user == self.user:  # the same account with the same key (a rotated key connects again)
            return
        # stop the old user's links first: none of their frames or answers may reach the new user's model
        for group in ("feed", "api", "poll", "refill"):
            self.workers.cancel_group(self, group)
        old_api, self.api, self.feed = self.api, None, None
        self.user = user
        self.model = Model(market=self.model.market, user_name=user.name, selected=self.model.selected,
                           interval=self.model.interval, health=self.model.health)
        self.model.set_link(self.model.market_link, "offline" if self.offline else "connecting")
        self.model.set_link(self.model.api_link, "offline" if self.offline else "connecting")
        self.model.dirty.update(PANELS)
        self._schedule()
        if not self.offline:
            self._reconnect(user, old_api)

    @work(group="switch", exclusive=True, exit_on_error=False)
    async def _reconnect(self, user: User, old_api: Api | None) -> None:
        if old_api is not None:
            await old_api.aclose()
        if self._main_ready:  # not once the app is closing: nothing would stop the new links
            self._connect(user)

    # -- subscriptions and health ----------------------------------------------------------------------------

    def _price_symbols(self) -> set[str]:
        return set(self.model.market.watchlist) | set(self.model.account.held())

    def _bar_pairs(self) -> set[tuple[str, str]]:
        pairs = {(s, "1m") for s in self.model.market.watchlist}
        if self.model.selected and self.model.interval == "1s":
            pairs.add((self.model.selected, "1s"))
        return pairs

    def _sync_feed(self) -> None:
        """Subscribe what the watchlist, holdings and chart need now (a no-op when nothing changed)."""
        feed = self.feed
        if feed is not None and (feed.prices != self._price_symbols() or feed.bars != self._bar_pairs()):
            self._resubscribe()

    @work(group="subscriptions", exit_on_error=False)
    async def _resubscribe(self) -> None:
        feed = self.feed  # an account switch while the prices are sent replaces (or clears) `self.feed`
        if feed is not None:
            await feed.set_prices(self._price_symbols())
            await feed.set_bars(self._bar_pairs())

    @work(thread=True, exclusive=True, group="health", exit_on_error=False)
    def _poll_health(self) -> None:
        self.post_message(HealthPolled(health.poll(self.settings)))

    def on_health_polled(self, message: HealthPolled) -> None:
        self.model.health = message.health
        self.model.dirty.add(STATUS)
        self._schedule()


def _summary(v: Valuation) -> str:
    def c(x: Any) -> str:
        return cents(str(x)) if x is not None else "-"

    def s(x: Any) -> str:
        return signed(str(x)) if x is not None else "-"

    return (f"cash [b]{c(v.cash)}[/b] · equity [b]{c(v.equity)}[/b]\n"
            f"unrealized {s(v.unrealized)} · realized {s(v.realized)}")


def create_app(settings: Settings, user: User | None, *, watchlist: list[str] | None = None,
               offline: bool = False, tune_gc: bool = False) -> TradesimApp:
    """The app, built for a user (or none, offline); raises UserError for a bad binding or theme setting."""
    return TradesimApp(settings, user, watchlist=watchlist or [], offline=offline, tune_gc=tune_gc)


def _checked(user: str | None) -> tuple[Settings, User]:
    """The settings and the account, or UserError for a mistake in either."""
    settings = load_settings()
    keymap(settings.tui.bindings)
    check_theme(settings.tui.theme)
    return settings, resolve_user(settings, user)


def on_a_terminal() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def build(user: str | None) -> TradesimApp:
    """The app `tradesim tui` runs, as `user` (else `tui.user`, else the active account), owning its process.
    UserError (exit 2) for a missing account or a bad setting, StackError (exit 1) when the API does not answer."""
    settings, chosen = _checked(user)
    me = call(settings, "GET", "/accounts/me", chosen.api_key, shape=AccountInfo, timeout_s=5)
    held = [s for s, q in (me.get("positions") or {}).items() if q]
    return create_app(settings, chosen, watchlist=default_watchlist(settings, held), tune_gc=True)


def run(user: str | None) -> None:
    """Open the TUI (see `build`); raises UserError without a terminal to draw on (a redirected run wrote escape
    sequences into its file until killed)."""
    _checked(user)  # a mistake in the settings or the account is the first thing to say
    if not on_a_terminal():
        raise UserError("tradesim tui needs a terminal (its input and output are redirected here)")
    app = build(user)
    _follow_the_terminal_size()
    app.run()


def _follow_the_terminal_size() -> None:
    """Textual sizes itself with shutil.get_terminal_size(), where COLUMNS/LINES in the environment win over the
    terminal: a stale export (GNU readline sets them in its process, and children inherit them) would pin the app
    at that size and ignore every resize. On a terminal, the terminal knows better."""
    if sys.stdout.isatty():
        os.environ.pop("COLUMNS", None)
        os.environ.pop("LINES", None)
