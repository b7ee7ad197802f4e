"""One real-terminal run: `tradesim tui` in a detached tmux session of fixed size, driven with `send-keys` and
read back with `capture-pane` — what a user sees, through the real terminal driver, on the real stack."""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tradesim.adapters.redis.client import connect as redis_connect
from tradesim.adapters.redis.prices import PriceCache
from tradesim.client.format import price
from tradesim.services.ingest.publisher import publish_all
from tradesim.settings import Settings
from tradesim.testing.factories import tick, unique_symbol
from tradesim.testing.waiting import wait_for

from .conftest import SIZE

pytestmark = pytest.mark.integration

TMUX = "/usr/bin/tmux"
#: tmux's own settings for the test server: no status line (the pane is the whole 120×36), keep a dead pane on
#: screen (a crash's traceback is what the failure message shows), no wait after an escape key
TMUX_CONF = "set -g status off\nset -g remain-on-exit on\nset -s escape-time 0\n"


class Terminal:
    """A tmux server of its own (`-L` socket) running one command in a detached session of a fixed size."""

    def __init__(self, tmp: Path, size: tuple[int, int]) -> None:
        self.socket = "tradesim-test-" + secrets.token_hex(4)
        self.size = size
        self.conf = tmp / "tmux.conf"
        self.conf.write_text(TMUX_CONF)
        self.pane_pid: int | None = None

    def tmux(self, *args: str) -> str:
        done = subprocess.run([TMUX, "-L", self.socket, "-f", str(self.conf), *args],  # noqa: S603 - fixed argv
                              capture_output=True, text=True, timeout=10, check=True)
        return done.stdout

    def start(self, argv: list[str], env: dict[str, str]) -> None:
        width, height = self.size
        # without COLUMNS and LINES the app asks the pty for its size: a library loaded into the test process sets
        # them to 80×24 in the C environment (not in os.environ), and the tmux server passes them on
        command = " ".join(["env", "-u", "COLUMNS", "-u", "LINES",
                            *(f"{k}={shlex.quote(v)}" for k, v in env.items()), *map(shlex.quote, argv)])
        self.tmux("new-session", "-d", "-s", "tui", "-x", str(width), "-y", str(height), command)
        self.pane_pid = int(self.tmux("display-message", "-p", "-t", "tui", "#{pane_pid}").strip())

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "tui")

    def keys(self, *keys: str, literal: bool = False) -> None:
        self.tmux("send-keys", "-t", "tui", *(["-l"] if literal else []), *keys)

    def wait_for(self, pattern: str, timeout_s: float, what: str) -> re.Match[str]:
        """Poll the pane until `pattern` is on it; the failure names `what` and shows the last screen."""
        found: list[re.Match[str]] = []

        def on_screen() -> bool:
            match = re.search(pattern, self.screen())
            if match:
                found.append(match)
            return match is not None

        try:
            wait_for(on_screen, timeout_s, what, poll_s=0.1)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the screen:\n{self.screen()}") from None
        return found[0]

    def close(self) -> None:
        """Stop the tmux server; the app goes with it (SIGHUP), and is killed if it outlives that."""
        subprocess.run([TMUX, "-L", self.socket, "kill-server"], capture_output=True, timeout=10,  # noqa: S603
                       check=False)
        pid = self.pane_pid
        if pid is None:
            return
        try:
            wait_for(lambda: not _alive(pid), 5, "the TUI to exit after its terminal closed")
        except AssertionError:
            os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def symbol(settings: Settings) -> str:
    """A symbol only this test trades, with a price in the cache. Seven characters: the watchlist's symbol column
    shows at most seven (an eighth is cut to "…"), and this test reads the screen."""
    sym = unique_symbol("U")[:7]
    publish_all(settings, [tick(sym, 1)])
    cache = PriceCache(redis_connect(settings.redis))
    wait_for(lambda: cache.latest(sym) is not None, 30, f"{sym} in the price cache")
    return sym


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    term = Terminal(tmp_path, SIZE)
    try:
        yield term
    finally:
        term.close()


def test_the_tui_in_a_real_terminal_shows_live_prices_and_a_market_buy_placed_from_its_ticket(
        terminal: Terminal, tui_settings: Settings, settings: Settings, symbol: str, account: dict[str, str],
        api: httpx.Client, execution_job: None) -> None:
    credentials = tui_settings.api.credentials_file
    assert credentials is not None
    tradesim = str(Path(sys.executable).with_name("tradesim"))
    terminal.start([tradesim, "tui"], {"TRADESIM_API__CREDENTIALS_FILE": str(credentials),
                                       "TRADESIM_TUI__WATCHLIST": json.dumps([symbol])})
    # the cached price (bid 100.00, ask 100.02, last 100.01), then a live one published while the app runs
    terminal.wait_for(rf"│ {symbol}\s+100\.00\s+100\.02\s+100\.01\s", 30, f"{symbol}'s cached price in the watchlist")
    terminal.wait_for(r"market data: connected", 10, "the status bar's market-data link")
    publish_all(settings, [tick(symbol, 2, price="123.40")])
    terminal.wait_for(rf"│ {symbol}\s+123\.41\s+123\.43\s+123\.42\s", 30, f"{symbol}'s live price in the watchlist")
    terminal.wait_for(r"cash 100,000\.00", 15, "the portfolio's cash")

    terminal.keys("b")
    terminal.wait_for(rf"Order ticket · {account['user_id']}", 10, "the order ticket")
    terminal.wait_for(rf"symbol\s+{symbol}\s", 5, "the selected symbol in the ticket")
    terminal.keys("10", literal=True)
    terminal.wait_for(r"qty\s+10\s", 5, "the typed quantity")
    terminal.keys("Enter")

    row = terminal.wait_for(rf"\d\d:\d\d:\d\d {symbol}\s+buy\s+10 executed\s+(\d+\.\d+)", 60,
                            "the execution in the blotter")
    orders = api.get("/orders", params={"symbol": symbol},
                     headers={"Authorization": f"Bearer {account['api_key']}"}).json()["orders"]
    assert [(o["side"], o["qty"], o["type"], o["status"]) for o in orders] == [("buy", 10, "market", "executed")]
    assert row.group(1) == price(orders[0]["fill_price"]), "the blotter shows the fill price the API recorded"
    terminal.wait_for(rf"│ {symbol}\s+10\s+\d+\.\d+\s+1,234\.20\s", 15,
                      "the position at the last price (10 × 123.42) in the portfolio panel")
    assert "Order ticket" not in terminal.screen(), "the ticket closes once the API accepted the order"
