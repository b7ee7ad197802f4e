"""The keyboard, driven with Textual's pilot on an app with no connection: dialogs, watchlist edits, the chart's
interval, the command palette, overridden bindings, switching account, and what the status bar says when the
servers cannot be reached."""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from textual.command import CommandList
from textual.pilot import Pilot
from textual.widgets import Input

from tradesim.client.api import ApiUnreachable
from tradesim.settings import Settings, TuiSettings
from tradesim.testing.foreign import foreign_server, scripted_server
from tradesim.testing.net import free_port
from tradesim.tui.app import TradesimApp, User, create_app
from tradesim.tui.widgets.chart import CandleChart
from tradesim.tui.widgets.screens import AccountScreen, HelpScreen, SymbolScreen, TicketScreen
from tradesim.tui.widgets.tables import OpenOrders, Watchlist

from .conftest import CALM, feed

pytestmark = pytest.mark.anyio
SIZE = (120, 36)


async def until(pilot: Pilot[None], cond: Callable[[], object], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await pilot.pause(0.02)


async def test_watchlist_symbols_are_added_and_removed(offline_app: TradesimApp) -> None:
    app = offline_app
    async with app.run_test(size=SIZE) as pilot:
        feed(app)
        await pilot.press("a")
        assert isinstance(app.screen, SymbolScreen)
        await pilot.press(*"no way", "enter")
        assert isinstance(app.screen, SymbolScreen)  # not a symbol: the dialog stays and says so
        await pilot.press(*["backspace"] * 6, *"nvda", "enter")
        await pilot.pause()
        watchlist = app.main.query_one(Watchlist)
        assert watchlist.keys() == [*CALM.symbol_names(), "NVDA"]
        assert watchlist.row_text("NVDA")[1:4] == ["-", "-", "-"]
        await pilot.press("d")  # the cursor is on the first row
        await pilot.pause()
        assert watchlist.keys() == [*CALM.symbol_names()[1:], "NVDA"]


async def test_d_from_another_panel_moves_to_the_watchlist_first(offline_app: TradesimApp) -> None:
    """A probe: `d` removed the watchlist's row under its cursor while another panel had the focus (the row was
    never chosen); as `c` does for open orders, the first press moves to the panel."""
    app = offline_app
    async with app.run_test(size=SIZE) as pilot:
        feed(app)
        watchlist = app.main.query_one(Watchlist)
        app.main.query_one(OpenOrders).focus()
        await pilot.pause()
        await pilot.press("d")
        await pilot.pause()
        assert watchlist.keys() == CALM.symbol_names()
        assert watchlist.has_focus
        await pilot.press("d")
        await pilot.pause()
        assert watchlist.keys() == CALM.symbol_names()[1:]


async def test_the_chart_follows_the_selection_and_switches_interval(offline_app: TradesimApp) -> None:
    app = offline_app
    async with app.run_test(size=SIZE) as pilot:
        feed(app)
        chart = app.main.query_one(CandleChart)
        assert chart.border_title == "AAPL · 1m bars"
        assert len(chart.bars) == 10
        await pilot.press("down")
        await until(pilot, lambda: chart.border_title == "MSFT · 1m bars", 2, "the chart to show MSFT")
        await pilot.press("i")
        await until(pilot, lambda: chart.border_title == "MSFT · 1s bars", 2, "1 s bars")
        assert chart.bars == []
        assert chart.note == "no bars yet"


async def test_help_lists_the_bindings_with_their_overrides(settings: Settings) -> None:
    custom = settings.model_copy(update={"tui": TuiSettings(bindings={"buy": "f2", "help": "h"})})
    app = create_app(custom, User("alice", "alice", "key"), watchlist=["AAPL"], offline=True)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("b")
        assert not isinstance(app.screen, TicketScreen)  # b is no longer buy
        await pilot.press("f2")
        assert isinstance(app.screen, TicketScreen)
        await pilot.press("escape", "h")
        assert isinstance(app.screen, HelpScreen)
        assert ("f2", "order ticket to buy the selected symbol") in app.screen.rows
        assert ("h", "this list") in app.screen.rows
        await pilot.pause()
        # a probe: the last line was cut at the dialog's edge ("… open orde"), the bindings hint never seen
        shown = re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]*>", "", app.export_screenshot())).replace("\xa0", " "))
        assert "Bindings: tui.bindings in tradesim.toml." in shown


async def test_the_command_palette_opens_a_ticket(offline_app: TradesimApp) -> None:
    app = offline_app
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+p", *"sell aapl")
        await until(pilot, lambda: any("Sell AAPL" in str(o.prompt) for o in app.screen.query_one(CommandList).options),
                    5, "the palette to find the command")  # it searches in a worker
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, TicketScreen), 5, "the ticket")
        assert app.screen.side == "sell"  # type: ignore[attr-defined]
        assert app.screen.form()["symbol"] == "AAPL"  # type: ignore[attr-defined]


async def test_the_command_palette_keeps_its_trading_commands_when_the_credentials_file_breaks(
        settings: Settings, tmp_path: Path) -> None:
    """A probe: the palette listed the accounts from the credentials file, and a broken file emptied it silently
    (buy, sell and cancel gone)."""
    creds = tmp_path / "credentials.json"
    creds.write_text("{not json")
    custom = settings.model_copy(update={"api": settings.api.model_copy(update={"credentials_file": creds})})
    app = create_app(custom, User("alice", "alice", "k1"), watchlist=CALM.symbol_names(), offline=True)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+p", *"sell aapl")
        await until(pilot, lambda: any("Sell AAPL" in str(o.prompt) for o in app.screen.query_one(CommandList).options),
                    5, "the palette to find the command")


async def test_a_ticket_sends_one_key_however_often_it_is_submitted(offline_app: TradesimApp) -> None:
    keys: list[str] = []

    async def place(body: dict[str, Any], key: str) -> str:
        keys.append(key)
        raise ApiUnreachable("not now")

    async with offline_app.run_test(size=SIZE) as pilot:
        ticket = TicketScreen("buy", "AAPL", place, "alice")
        await offline_app.push_screen(ticket)
        await pilot.press(*"7", "enter")
        await until(pilot, lambda: len(keys) == 1 and not ticket.sending, 2, "the first try")
        assert "enter tries again" in ticket.error_of("")
        # perhaps placed: the body its key carries can no longer change (before: editable, then refused 409)
        assert ticket.query_one("#qty", Input).disabled
        await pilot.press("backspace", "9")
        assert ticket.form()["qty"] == "7"
        await pilot.press("enter")
        await until(pilot, lambda: len(keys) == 2 and not ticket.sending, 2, "the retry")
        assert keys[0] == keys[1] == ticket.idempotency_key
        assert TicketScreen("buy", "AAPL", place, "alice").idempotency_key != ticket.idempotency_key


async def test_switching_account_starts_over_as_the_other_user(settings: Settings, tmp_path: Path) -> None:
    creds = tmp_path / "credentials.json"
    creds.write_text(json.dumps({"active": "alice", "users": {
        "alice": {"user_id": "alice", "api_key": "k1"}, "bob": {"user_id": "bob", "api_key": "k2"}}}))
    custom = settings.model_copy(update={"api": settings.api.model_copy(update={"credentials_file": creds})})
    app = create_app(custom, User("alice", "alice", "k1"), watchlist=CALM.symbol_names(), offline=True)
    async with app.run_test(size=SIZE) as pilot:
        feed(app)
        assert app.model.orders.outcomes
        await pilot.press("u")
        assert isinstance(app.screen, AccountScreen)
        await pilot.press("down", "enter")
        await until(pilot, lambda: app.model.user_name == "bob", 2, "the switch")
        assert app.user is not None
        assert app.user.api_key == "k2"
        assert not app.model.orders.outcomes  # alice's outcomes are not bob's
        assert app.model.market.last("AAPL") is not None  # prices are everyone's
        await until(pilot, lambda: app.status_text().startswith("bob ·"), 2, "the status bar to name bob")


async def test_unreachable_servers_are_shown_and_retried(settings: Settings) -> None:
    custom = settings.model_copy(update={
        "marketdata": settings.marketdata.model_copy(update={"ws_url": f"ws://127.0.0.1:{free_port()}/"}),
        "api": settings.api.model_copy(update={"url": f"http://127.0.0.1:{free_port()}"})})
    app = create_app(custom, User("alice", "alice", "key"), watchlist=["AAPL"])
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: "market data: disconnected (reconnecting in" in app.status_text()
                    and "api: disconnected (reconnecting in" in app.status_text(), 10, "both links shown down")
        first = app.model.market_link.retry_in_s
        await until(pilot, lambda: (app.model.market_link.retry_in_s or 0) > (first or 0), 10, "a longer backoff")


@pytest.mark.parametrize(("body", "content_type"), [(b"<html>a proxy</html>", "text/html"),
                                                    (b'{"status": "accepted"}', "application/json")])
async def test_a_ticket_answered_by_something_else_than_the_api_says_so(settings: Settings, body: bytes,
                                                                        content_type: str) -> None:
    """Before: a 2xx that was not JSON, or JSON without an order id, crashed the app with a traceback."""
    with foreign_server(200, body, content_type) as url:
        custom = settings.model_copy(update={
            "marketdata": settings.marketdata.model_copy(update={"ws_url": f"ws://127.0.0.1:{free_port()}/"}),
            "api": settings.api.model_copy(update={"url": url})})
        app = create_app(custom, User("alice", "alice", "key"), watchlist=["AAPL"])
        async with app.run_test(size=SIZE) as pilot:
            ticket = TicketScreen("buy", "AAPL", app.place_order, "alice")
            await app.push_screen(ticket)
            await pilot.press(*"7", "enter")
            await until(pilot, lambda: ticket.sent == 1 and not ticket.sending, 5, "the answer")
            assert "the tradesim API (api.url)" in ticket.error_of("")
            assert app.screen is ticket
            # perhaps placed by what stands behind it: the order is held for a retry with its key
            assert ticket.query_one("#qty", Input).disabled


async def test_the_account_loads_when_the_search_read_model_does_not_answer(settings: Settings) -> None:
    """A probe: the executions history (`/trades/search`) was read with the portfolio and orders, so OpenSearch down
    kept the whole account from loading (cash `-`, no open orders) at every refill."""
    portfolio = {"user_id": "alice", "as_of_ms": 1, "cash": "1234.50", "positions": [], "realized_pnl": "0.00"}
    ok = "application/json"
    routes = {"/": (200, b"{}", ok), "/portfolio": (200, json.dumps(portfolio).encode(), ok),
              "/orders": (200, b'{"orders": []}', ok),
              "/trades/search": (503, b'{"code": "unavailable", "message": "OpenSearch is down"}', ok)}
    with scripted_server(routes) as url:
        custom = settings.model_copy(update={
            "marketdata": settings.marketdata.model_copy(update={"ws_url": f"ws://127.0.0.1:{free_port()}/"}),
            "api": settings.api.model_copy(update={"url": url})})
        app = create_app(custom, User("alice", "alice", "key"), watchlist=["AAPL"])
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.model.account.cash == Decimal("1234.50"), 10, "the portfolio loaded")
            await until(pilot, lambda: any("could not load the executions history" in str(n.message)
                                           for n in app._notifications), 5, "the history's failure told")
            assert not any("could not load the account" in str(n.message) for n in app._notifications)


async def test_a_credentials_file_broken_while_running_is_reported_when_switching(settings: Settings,
                                                                                   tmp_path: Path) -> None:
    creds = tmp_path / "credentials.json"
    creds.write_text(json.dumps({"active": "alice", "users": {"alice": {"user_id": "alice", "api_key": "k1"}}}))
    custom = settings.model_copy(update={"api": settings.api.model_copy(update={"credentials_file": creds})})
    app = create_app(custom, User("alice", "alice", "k1"), watchlist=CALM.symbol_names(), offline=True)
    async with app.run_test(size=SIZE) as pilot:
        creds.write_text("{not json")
        await pilot.press("u")  # before: UserError's traceback ended the app
        await pilot.pause()
        assert not isinstance(app.screen, AccountScreen)
        assert any("credentials" in str(n.message) for n in app._notifications)


async def test_c_cancels_only_an_order_chosen_in_open_orders(offline_app: TradesimApp) -> None:
    """A probe: `c` with the watchlist focused cancelled the first open order, which the user never chose."""
    app = offline_app
    asked: list[str] = []
    app._cancel = asked.append  # type: ignore[method-assign,assignment]  # the API call is not what this tests
    async with app.run_test(size=SIZE) as pilot:
        feed(app)
        await pilot.pause()
        open_orders = app.main.query_one(OpenOrders)
        assert len(open_orders.keys()) == 2
        assert app.focused is not open_orders
        await pilot.press("c")
        await pilot.pause()
        assert asked == []
        assert app.focused is open_orders
        await pilot.press("down", "c")
        await pilot.pause()
        assert asked == [open_orders.keys()[1]]


async def test_an_order_the_api_never_got_starts_its_latency_at_the_retry(settings: Settings) -> None:
    """A probe: a ticket held while the API was down, placed on a retry 16 s later, showed 16,426 ms
    order→outcome (the first, unsent try's time was kept)."""
    nowhere = settings.model_copy(update={
        "api": settings.api.model_copy(update={"url": f"http://127.0.0.1:{free_port()}"})})
    app = create_app(nowhere, User("alice", "alice", "key"), watchlist=["AAPL"])
    async with app.run_test(size=SIZE):
        with pytest.raises(ApiUnreachable) as exc:
            await app.place_order({"symbol": "AAPL", "side": "buy", "qty": 1, "type": "market",
                                   "time_in_force": "day"}, "k-1")
        assert exc.value.sent is False
        assert app.model.latency.pending == {}


async def test_a_terminal_below_the_layouts_size_is_told_once_per_shrink(settings: Settings) -> None:
    """A probe: under an 80×24 terminal the TUI drew its panels cut, without a word."""
    def told(app: TradesimApp) -> int:
        return sum("panels need 100×30" in str(n.message) for n in app._notifications)

    small = create_app(settings, None, watchlist=CALM.symbol_names(), offline=True)
    async with small.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert told(small) == 1
        await pilot.resize_terminal(90, 24)  # still small: not told again
        await pilot.pause()
        assert told(small) == 1
        await pilot.resize_terminal(40, 12)  # smaller still: told with the size now (a probe saw 80×24 at 40×12)
        await pilot.pause()
        assert told(small) == 2
        assert any("the terminal is 40×12" in str(n.message) for n in small._notifications)
    large = create_app(settings, None, watchlist=CALM.symbol_names(), offline=True)
    async with large.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert told(large) == 0


async def test_refresh_loads_a_rotated_key_from_the_credentials_file(settings: Settings, tmp_path: Path) -> None:
    """A probe: after `tradesim accounts rotate-key demo` the TUI kept the old key; `r` and choosing the same account
    changed nothing, and only a restart (or another account and back) took the new key."""
    from tradesim.client.api import save_credentials

    mine = settings.model_copy(update={"api": settings.api.model_copy(update={
        "url": f"http://127.0.0.1:{free_port()}", "credentials_file": tmp_path / "credentials.json"})})
    save_credentials(mine, {"active": "alice", "users": {"alice": {"user_id": "alice", "api_key": "old"}}})
    app = create_app(mine, User("alice", "alice", "old"), watchlist=["AAPL"])
    async with app.run_test(size=SIZE) as pilot:
        app.refresh_from_api()
        assert app.user == User("alice", "alice", "old")  # the same key: nothing to change
        save_credentials(mine, {"active": "alice", "users": {"alice": {"user_id": "alice", "api_key": "new"}}})
        await pilot.press("r")
        await until(pilot, lambda: app.user is not None and app.user.api_key == "new", 5, "the new key")


async def test_the_stack_line_stays_on_the_status_bar_when_the_links_line_is_long(offline_app: TradesimApp) -> None:
    """A probe: at 100 columns (and up to 121) with both links down, the links line wrapped onto the status bar's
    second row and pushed the stack and job state, what a user then looks for, out of sight."""
    from textual.geometry import Region

    from tradesim.tui.model import Health

    app = offline_app
    async with app.run_test(size=(100, 30)) as pilot:
        model = app.model
        model.set_link(model.market_link, "down", 10.0)
        model.set_link(model.api_link, "down", 10.0)
        model.health = Health(components=[("kafka", "stopped", False), ("api", "running", True)],
                              jobs_error="flink down")
        app.repaint_now()
        await pilot.pause()
        status = app.main.query_one("#status")
        rows = [strip.text.strip() for strip in status.render_lines(Region(0, 0, *status.outer_size))]
        assert rows[0].startswith("alice · market data: disconnected (reconnecting in 10.0 s) · api: disconnected")
        assert rows[0].endswith("…")  # cut where it does not fit, on its own row
        assert rows[1].startswith("stack: kafka stopped · jobs: flink down · order→outcome: -")


def _alice_then_bob(settings: Settings, tmp_path: Path) -> TradesimApp:
    """An offline app as alice, with bob's key stored beside hers to switch to."""
    creds = tmp_path / "credentials.json"
    creds.write_text(json.dumps({"active": "alice", "users": {
        "alice": {"user_id": "alice", "api_key": "k1"}, "bob": {"user_id": "bob", "api_key": "k2"}}}))
    custom = settings.model_copy(update={"api": settings.api.model_copy(update={"credentials_file": creds})})
    return create_app(custom, User("alice", "alice", "k1"), watchlist=["AAPL"], offline=True)


async def test_an_order_answered_after_an_account_switch_is_not_listed_as_the_new_accounts(
        settings: Settings, tmp_path: Path) -> None:
    """A probe: alice's ticket sent, then bob chosen (the command palette works over a ticket) before the API
    answered: alice's order was listed in bob's open orders, where `c` could only fail on it."""
    import asyncio

    app = _alice_then_bob(settings, tmp_path)
    asked, answer = asyncio.Event(), asyncio.Event()

    class SlowApi:
        async def place(self, body: dict[str, Any], key: str) -> dict[str, Any]:
            asked.set()
            await answer.wait()
            return {"order_id": "o_alices", "status": "accepted"}

    async with app.run_test(size=SIZE) as pilot:
        app.api = SlowApi()  # type: ignore[assignment]  # the answer's timing is what this tests, not HTTP
        placing = asyncio.ensure_future(app.place_order(
            {"symbol": "AAPL", "side": "buy", "qty": 1, "type": "market", "time_in_force": "day"}, "k-1"))
        await asyncio.wait_for(asked.wait(), 2)
        app.switch_account("bob")
        answer.set()
        assert await placing == "o_alices"  # alice's ticket is told its order was accepted
        app.repaint_now()
        await pilot.pause()
        assert app.model.user_name == "bob"
        assert app.model.orders.open == {}
        assert app.main.query_one(OpenOrders).keys() == []


async def test_a_cancel_answered_after_an_account_switch_leaves_the_new_account_alone(
        settings: Settings, tmp_path: Path) -> None:
    """A review: as place_order's, a cancel sent as alice and failing after bob was chosen marked bob's API link
    down (the old link was closed under it)."""
    import asyncio

    app = _alice_then_bob(settings, tmp_path)
    asked, answer = asyncio.Event(), asyncio.Event()

    class ClosedUnderIt:
        async def cancel(self, order_id: str) -> None:
            asked.set()
            await answer.wait()
            raise ApiUnreachable("the connection was closed")

    async with app.run_test(size=SIZE):
        app.api = ClosedUnderIt()  # type: ignore[assignment]
        cancelling = app._cancel("o_alices")
        await asyncio.wait_for(asked.wait(), 2)
        app.switch_account("bob")
        answer.set()
        await asyncio.wait_for(cancelling.wait(), 2)
        assert app.model.user_name == "bob"
        assert app.model.api_link.state == "offline"  # before: "down", from alice's closed link


async def test_c_does_not_cancel_the_order_the_cursor_fell_on_when_the_chosen_one_was_decided(
        offline_app: TradesimApp) -> None:
    """A probe: the order under the cursor was decided as `c` was pressed, its row went, the cursor fell on the
    next order, and `c` cancelled that one, which the user never chose."""
    from tradesim.domain.trades import TradeRecord

    app = offline_app
    asked: list[str] = []
    app._cancel = asked.append  # type: ignore[method-assign,assignment]  # the API call is not what this tests
    async with app.run_test(size=SIZE) as pilot:
        feed(app)
        await pilot.pause()
        open_orders = app.main.query_one(OpenOrders)
        open_orders.focus()
        await pilot.pause()
        chosen, other = open_orders.keys()
        assert open_orders.selected_key() == chosen
        app.model.on_record(TradeRecord(chosen, "alice", "GOOG", "buy", 10, "executed", CALM.start_ms + 9_000,
                                        "limit", price=Decimal("139.50"), fee=Decimal("1.00")), 0.0)
        app.repaint_now()
        assert open_orders.selected_key() == other
        await pilot.press("c")
        await pilot.pause()
        assert asked == []
        assert any("press c again" in str(n.message) for n in app._notifications)
        await pilot.press("c")  # now seen under the cursor: chosen
        await pilot.pause()
        assert asked == [other]


async def test_prices_of_rows_below_the_watchlists_fold_leave_no_paint_waiting(settings: Settings) -> None:
    """A probe: with more symbols than the panel shows, each repaint for a price of a row out of sight waited for a
    draw of that row that never came: the waits piled up (one per repaint, with their frames' times) for as long
    as no row in sight changed, and those frames were then timed to an unrelated row's draw."""
    from tradesim.tui.model import Quote

    symbols = [f"S{i:02d}" for i in range(40)]
    app = create_app(settings, User("alice", "alice", "key"), watchlist=symbols, offline=True)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        watchlist = app.main.query_one(Watchlist)
        assert watchlist.size.height < len(symbols)  # S39 is out of sight
        for seq in range(1, 31):
            price = Decimal(100 + seq)
            app.feed_quote("S39", Quote(price, price + 1, price, 0, 1, seq), time.perf_counter(), 0.0)
            await pilot.pause()
        await until(pilot, lambda: len(app.paint_latencies_ms) == 30, 2, "every frame accounted for")
        assert watchlist.row_text("S39")[3] == "130.00"


async def test_a_ticket_is_not_closed_while_its_order_is_out(offline_app: TradesimApp) -> None:
    """A probe: esc while the ticket was placing closed it and cancelled the request, which the API may have acted
    on: the order was placed with nobody told (no "accepted", not listed until a refill), and a new ticket has a new
    Idempotency-Key, so placing it again made a second order."""
    import asyncio

    asked, answer = asyncio.Event(), asyncio.Event()

    async def place(body: dict[str, Any], key: str) -> str:
        asked.set()
        await answer.wait()
        return "o_placed"

    app = offline_app
    async with app.run_test(size=SIZE) as pilot:
        ticket = TicketScreen("buy", "AAPL", place, "alice")
        await app.push_screen(ticket, app._ticket_closed)
        await pilot.press("7", "enter")
        await asyncio.wait_for(asked.wait(), 2)
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is ticket
        assert "placing" in ticket.error_of("")
        answer.set()
        await until(pilot, lambda: app.screen is not ticket, 2, "the ticket closed by its answer")
        await until(pilot, lambda: any("order o_placed accepted" in str(n.message) for n in app._notifications), 2,
                    "the order told accepted")
