"""Pilot tests of `tradesim tui` on the real stack: keys pressed, widgets read back, the API asked what happened."""

from __future__ import annotations

import asyncio
import secrets

import httpx
import pytest
from textual.widgets import Select

from tradesim.client.api import save_credentials
from tradesim.domain.precheck import order_id_for
from tradesim.settings import Settings
from tradesim.tui.app import TradesimApp, create_app, resolve_user
from tradesim.tui.widgets.screens import TicketScreen
from tradesim.tui.widgets.tables import Blotter, OpenOrders, Positions

from .conftest import orders_at_the_api, running, until

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


def ticket(app: TradesimApp) -> TicketScreen:
    screen = app.screen
    assert isinstance(screen, TicketScreen), f"the order ticket is not open ({screen!r})"
    return screen


async def test_a_market_order_shows_executed_in_the_blotter_and_moves_the_portfolio(
        app: TradesimApp, symbol: str, account: dict[str, str]) -> None:
    async with running(app) as pilot:
        await until(pilot, lambda: app.model.market.last(symbol) is not None, 15, "the symbol's price")
        await until(pilot, lambda: app.model.account.loaded, 15, "the portfolio")
        cash_before = app.model.account.cash
        await pilot.press("b")
        order_id = order_id_for(account["user_id"], ticket(app).idempotency_key)
        await pilot.press("1", "0", "enter")
        blotter = app.main.query_one(Blotter)
        await until(pilot, lambda: order_id in blotter.keys(), 60, "the outcome in the blotter")
        row = blotter.row_text(order_id)
        assert row[1:5] == [symbol, "buy", "10", "executed"], row
        positions = app.main.query_one(Positions)
        await until(pilot, lambda: symbol in positions.keys(), 15, "the position in the portfolio panel")
        assert positions.row_text(symbol)[1] == "10"
        assert app.model.account.cash is not None
        assert cash_before is not None
        assert app.model.account.cash < cash_before - 1000  # 10 × ~100.02 + fee
        assert "equity" in app.summary_text()
        assert f"{app.model.account.cash:,.2f}" in app.summary_text()
        assert order_id not in app.main.query_one(OpenOrders).keys()


async def test_a_limit_order_rests_in_open_orders_then_is_cancelled(
        app: TradesimApp, symbol: str, account: dict[str, str]) -> None:
    async with running(app) as pilot:
        await until(pilot, lambda: app.model.market.last(symbol) is not None, 15, "the symbol's price")
        await pilot.press("b")
        order_id = order_id_for(account["user_id"], ticket(app).idempotency_key)
        kind = ticket(app).query_one("#type", Select)
        await pilot.press("5", "tab", "enter")  # qty 5, then open the type's list
        await until(pilot, lambda: kind.expanded, 5, "the order types to open")
        await pilot.press("down", "enter")  # market → limit
        await until(pilot, lambda: kind.value == "limit" and not kind.expanded, 5, "the limit type chosen")
        await pilot.press("tab", *"50.00", "enter")
        open_orders = app.main.query_one(OpenOrders)
        await until(pilot, lambda: order_id in open_orders.keys(), 30, "the order in open orders")
        assert open_orders.row_text(order_id)[:5] == [symbol, "buy", "5", "limit", "50.00"]
        open_orders.focus()
        open_orders.move_cursor(row=0)
        await pilot.press("c")
        blotter = app.main.query_one(Blotter)
        await until(pilot, lambda: order_id in blotter.keys(), 60, "the cancellation in the blotter")
        assert blotter.row_text(order_id)[4] == "cancelled"
        await until(pilot, lambda: order_id not in open_orders.keys(), 10, "the order to leave open orders")


async def test_an_invalid_qty_is_shown_next_to_the_field_and_nothing_is_sent(
        app: TradesimApp, symbol: str, account: dict[str, str], settings: Settings) -> None:
    async with running(app) as pilot:
        await until(pilot, lambda: app.model.account.loaded, 15, "the portfolio")
        await pilot.press("b")
        await pilot.press("0", "enter")
        await pilot.pause()
        t = ticket(app)
        assert "greater than 0" in t.error_of("qty")
        await pilot.press("backspace", *"abc", "enter")
        await pilot.pause()
        assert "valid integer" in t.error_of("qty")
        assert t.sent == 0
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, TicketScreen)
        assert await orders_at_the_api(settings, account) == []
        assert app.main.query_one(Blotter).keys() == []
        assert app.main.query_one(OpenOrders).keys() == []


async def test_enter_twice_places_one_order(app: TradesimApp, symbol: str, account: dict[str, str],
                                            settings: Settings) -> None:
    async with running(app) as pilot:
        await until(pilot, lambda: app.model.market.last(symbol) is not None, 15, "the symbol's price")
        await pilot.press("b")
        t = ticket(app)
        await pilot.press("2", "enter", "enter")
        blotter = app.main.query_one(Blotter)
        await until(pilot, lambda: len(blotter.keys()) >= 1, 60, "the outcome in the blotter")
        orders = await orders_at_the_api(settings, account)
        assert [o["order_id"] for o in orders] == [order_id_for(account["user_id"], t.idempotency_key)]
        assert t.sent == 1


@pytest.fixture
def other(api: httpx.Client, admin_key: str, account: dict[str, str], tui_settings: Settings) -> dict[str, str]:
    """A second account in the app's credentials file, beside the active one."""
    answer = api.post("/accounts", json={"name": "tui" + secrets.token_hex(5), "cash": "100000"},
                      headers={"Authorization": f"Bearer {admin_key}"})
    assert answer.status_code == 201, answer.text
    user = {"user_id": answer.json()["user_id"], "api_key": answer.json()["api_key"]}
    save_credentials(tui_settings, {"active": account["user_id"],
                                    "users": {account["user_id"]: account, user["user_id"]: user}})
    return user


async def test_a_ticket_places_only_for_the_account_it_was_opened_for(
        app: TradesimApp, symbol: str, account: dict[str, str], other: dict[str, str], settings: Settings) -> None:
    async with running(app) as pilot:
        await until(pilot, lambda: app.model.account.loaded, 15, "the portfolio")
        await pilot.press("b")
        await pilot.press("1")
        t = ticket(app)
        app.switch_account(other["user_id"])  # what the command palette does, over the open ticket
        await pilot.press("enter")
        await until(pilot, lambda: "account_switched" in t.error_of(""), 15, "the ticket refusing")
        # before: the order went out as the other account, under a ticket titled for the first
        assert await orders_at_the_api(settings, other) == []
        assert await orders_at_the_api(settings, account) == []


@pytest.fixture
def slow_account(api: httpx.Client, admin_key: str, tui_settings: Settings) -> dict[str, str]:
    """An account allowed 1 request/s, the app's active one."""
    answer = api.post("/accounts", json={"name": "tui" + secrets.token_hex(5), "cash": "100000",
                                         "rate_limit_per_s": 1}, headers={"Authorization": f"Bearer {admin_key}"})
    assert answer.status_code == 201, answer.text
    user = {"user_id": answer.json()["user_id"], "api_key": answer.json()["api_key"]}
    save_credentials(tui_settings, {"active": user["user_id"], "users": {user["user_id"]: user}})
    return user


async def test_an_account_with_a_low_rate_limit_still_loads(slow_account: dict[str, str], tui_settings: Settings,
                                                            symbol: str) -> None:
    app = create_app(tui_settings, resolve_user(tui_settings, None), watchlist=[symbol])
    async with running(app) as pilot:
        # its start-up reads come back to back: each answered 429 is asked again after Retry-After (before: the
        # account never loaded)
        await until(pilot, lambda: app.model.account.loaded, 30, "the portfolio")
        assert app.model.account.cash is not None


async def test_an_order_placed_elsewhere_that_rests_shows_in_open_orders(
        app: TradesimApp, symbol: str, account: dict[str, str], api: httpx.Client) -> None:
    """A probe: limit orders placed with the CLI for the TUI's account stayed out of its open orders until `r` (the
    account channel carries outcomes, not orders that rest), so they could not be cancelled there."""
    async with running(app) as pilot:
        await until(pilot, lambda: app.model.account_feed == "live", 30, "the account channel")
        answer = await asyncio.to_thread(
            api.post, "/orders", headers={"Authorization": f"Bearer {account['api_key']}"},
            json={"symbol": symbol, "side": "buy", "qty": 1, "type": "limit", "limit_price": "50.00",
                  "time_in_force": "gtc"})
        assert answer.status_code == 202, answer.text
        order_id = answer.json()["order_id"]
        open_orders = app.main.query_one(OpenOrders)
        await until(pilot, lambda: order_id in open_orders.keys(), 30, "the order placed elsewhere in open orders")
        assert open_orders.row_text(order_id)[:5] == [symbol, "buy", "1", "limit", "50.00"]
