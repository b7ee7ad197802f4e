"""The TUI outlives the market-data service: kill -9 it under a running app, the status bar says the link is
lost, the Supervisor brings the service back, and a price published afterwards is on screen."""

from __future__ import annotations

import asyncio
import html
import os
import re
import signal
import time
from collections.abc import Iterator

import httpx
import pytest

from tradesim.adapters.redis.client import connect as redis_connect
from tradesim.adapters.redis.prices import PriceCache
from tradesim.domain.events import encode
from tradesim.services.ingest.publisher import publish_all
from tradesim.settings import Settings
from tradesim.stack import registry
from tradesim.stack.process import OsProcessTable
from tradesim.stack.supervisor import Supervisor
from tradesim.testing.factories import tick, unique_symbol
from tradesim.testing.waiting import wait_for
from tradesim.tui.app import TradesimApp
from tradesim.tui.widgets.tables import Blotter

from .conftest import running, until

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


#: the restarted service's cache consumer gets its partitions only once the killed one's consumer-group session has
#: expired (librdkafka's session.timeout.ms, 45 s): until then prices stay in Kafka (measured: 43 s after the restart)
REJOIN_S = 90


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def symbol(settings: Settings) -> str:
    """A symbol only this test watches, with a price in the cache; seven characters, as many as the watchlist's
    symbol column shows (this test reads the screen)."""
    sym = unique_symbol("U")[:7]
    publish_all(settings, [tick(sym, 1)])
    cache = PriceCache(redis_connect(settings.redis))
    wait_for(lambda: cache.latest(sym) is not None, 30, f"{sym} in the price cache")
    return sym


@pytest.fixture
def marketdata(settings: Settings) -> Iterator[Supervisor]:
    """The stack's market-data service, running again after the test whatever happened in it."""
    supervisor = Supervisor(settings, registry.build(settings, ["marketdata"]))
    supervisor.up()
    try:
        yield supervisor
    finally:
        supervisor.up()  # a no-op when it runs healthy


def screen_text(app: TradesimApp) -> str:
    """What the screen shows now, as plain text (rendered by the compositor, as for a screenshot)."""
    svg = app.export_screenshot()
    return html.unescape(re.sub(r"<[^>]*>", "", svg)).replace("\xa0", " ")


async def test_killing_the_market_data_service_shows_on_the_status_bar_and_prices_flow_again_once_it_is_back(
        app: TradesimApp, symbol: str, settings: Settings, marketdata: Supervisor) -> None:
    async with running(app) as pilot:
        await until(pilot, lambda: "market data: connected" in screen_text(app), 15, "the link up on the status bar")
        await until(pilot, lambda: re.search(rf"{symbol}\s+100\.00\s+100\.02\s+100\.01", screen_text(app)), 15,
                    "the symbol's price in the watchlist")

        record = marketdata.state_file.load().components["marketdata"]
        assert OsProcessTable().is_alive(record.handle), "the state file must name the running service"
        os.kill(record.pid, signal.SIGKILL)
        await until(pilot, lambda: not OsProcessTable().is_alive(record.handle), 10, "the killed service to be gone")
        await until(pilot, lambda: "market data: disconnected (reconnecting in" in screen_text(app), 10,
                    "the lost link on the status bar")

        (row,) = await asyncio.to_thread(marketdata.up)
        assert row.state == "running", row
        assert row.pid != record.pid
        await until(pilot, lambda: "market data: connected" in screen_text(app), 30,
                    "the link up again on the status bar")
        await asyncio.to_thread(publish_all, settings, [tick(symbol, 2, price="123.40")])
        await until(pilot, lambda: re.search(rf"{symbol}\s+123\.41\s+123\.43\s+123\.42", screen_text(app)),
                    REJOIN_S, "the price published after the restart in the watchlist")


async def test_with_market_data_down_the_account_is_polled_from_the_api(
        app: TradesimApp, symbol: str, account: dict[str, str], settings: Settings, marketdata: Supervisor) -> None:
    """A probe: with the market-data service stopped, an order placed from the TUI showed "open" for good although
    it had executed (the API answered all along): only a lost account channel's refusal started the polling."""
    async with running(app) as pilot:
        await until(pilot, lambda: app.model.account_feed == "live", 30, "the account channel")
        await asyncio.to_thread(marketdata.down)
        await until(pilot, lambda: app.model.market_link.state == "down", 15, "the lost link")
        # a fresh price, as the stopped service would have written it: the API's pre-check wants one
        fresh = tick(symbol, 2)
        await asyncio.to_thread(PriceCache(redis_connect(settings.redis)).apply, [(fresh, encode(fresh))],
                                int(time.time() * 1000))
        async with httpx.AsyncClient(base_url=settings.api.client_url, timeout=30) as client:
            answer = await client.post("/orders", headers={"Authorization": f"Bearer {account['api_key']}"},
                                       json={"symbol": symbol, "side": "buy", "qty": 1})
        assert answer.status_code == 202, answer.text
        order_id = answer.json()["order_id"]
        blotter = app.main.query_one(Blotter)
        await until(pilot, lambda: order_id in blotter.keys(), 60, "the outcome, polled from the API, in the blotter")
        assert blotter.row_text(order_id)[4] == "executed"
