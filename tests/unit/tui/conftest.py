"""An offline TUI fed fixed frames: the calm scenario's ticks and 1m bars (seeded, so the same every run), a
portfolio, open orders and outcomes. Nothing on screen reads the wall clock (times shown are the data's)."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from tradesim.domain.trades import TradeRecord
from tradesim.jobs.bars_logic import reference_bars
from tradesim.scenarios.generators import generate
from tradesim.scenarios.loader import load_scenario
from tradesim.settings import REPO_SCENARIOS, Settings
from tradesim.tui.app import TradesimApp, User, create_app
from tradesim.tui.model import Health, OpenOrder, parse_quote

CALM = load_scenario(REPO_SCENARIOS / "calm.yaml")
START = CALM.start_ms


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # Textual runs on asyncio


@pytest.fixture
def offline_app(settings: Settings) -> TradesimApp:
    return create_app(settings, User("alice", "alice", "key"), watchlist=CALM.symbol_names(), offline=True)


def feed(app: TradesimApp) -> None:
    """What a session would have received: prices, bars, the account, orders, outcomes, stack state."""
    ticks = list(generate(CALM))
    for bar in reference_bars(ticks, "1m"):
        app.feed_bar(bar)
    for t in ticks:
        symbol, quote = parse_quote(t.model_dump(mode="json"))
        app.feed_quote(symbol, quote, time.perf_counter(), 0.0)
    model = app.model
    model.on_portfolio({"user_id": "alice", "as_of_ms": START, "cash": "81234.56", "positions": [
        {"symbol": "AAPL", "qty": 50, "average_cost": "185.1234", "realized_pnl": "0", "last_price": None},
        {"symbol": "MSFT", "qty": 20, "average_cost": "369.5", "realized_pnl": "12.5", "last_price": None}],
        "realized_pnl": "12.5"})
    model.on_open_orders([
        OpenOrder("o_limit", "GOOG", "buy", 10, "limit", "139.50", None, "gtc", START + 1_000),
        OpenOrder("o_stop", "AAPL", "sell", 25, "stop_limit", "180.00", "181.00", "day", START + 2_000)], START)
    outcomes = [
        TradeRecord("o1", "alice", "AAPL", "buy", 50, "executed", START + 65_000, "market", price=Decimal("185.12"),
                    fee=Decimal("1.00")),
        TradeRecord("o2", "alice", "MSFT", "buy", 20, "executed", START + 130_500, "limit", price=Decimal("369.45"),
                    fee=Decimal("1.00")),
        TradeRecord("o3", "alice", "JPM", "buy", 900, "rejected", START + 200_250, "market",
                    reason="insufficient_funds"),
        TradeRecord("o4", "alice", "AMZN", "sell", 5, "cancelled", START + 310_000, "limit")]
    for r in outcomes:
        model.on_record(r, 0.0)
    model.latency.samples.extend([41.0, 37.5, 52.25])
    model.health = Health(components=[(n, "running", True) for n in ("kafka", "redis", "dynamodb", "api")],
                          jobs=[("execution", "RUNNING"), ("bars", "RUNNING")])
    model.dirty.add("status")
    app.repaint_now()
