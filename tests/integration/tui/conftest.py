"""The TUI on the real stack: a fresh account with its own credentials file, a symbol with a fresh price, the
execution job running; the app is driven with Textual's pilot."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from textual.pilot import Pilot

from tradesim.adapters.redis.client import connect as redis_connect
from tradesim.adapters.redis.prices import PriceCache
from tradesim.client.api import save_credentials
from tradesim.services.admin_key import load_admin_key
from tradesim.services.ingest.publisher import publish_all
from tradesim.settings import Settings, TuiSettings
from tradesim.stack.jobs import cancel_job, submit_job
from tradesim.testing.factories import tick, unique_symbol
from tradesim.testing.net import TcpSocket, open_tcp, port_of
from tradesim.testing.waiting import wait_for
from tradesim.tui.app import TradesimApp, create_app, resolve_user

SIZE = (120, 36)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # Textual runs on asyncio


@pytest.fixture(scope="package")
def execution_job(settings: Settings) -> Iterator[None]:
    """The execution job decides the orders; left as found (cancelled at the end only if started here)."""
    job_id, new = submit_job(settings, "execution")
    yield
    if new:
        cancel_job(settings, job_id)


@pytest.fixture(scope="session")
def admin_key(settings: Settings) -> str:
    key = load_admin_key(settings, create=False)
    assert key, "the API did not write its admin key"
    return key


@pytest.fixture
def api(settings: Settings) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=settings.api.client_url, timeout=30) as client:
        yield client


@pytest.fixture
def account(api: httpx.Client, admin_key: str) -> dict[str, str]:
    """A new user with 100,000 cash: {user_id, api_key}."""
    name = "tui" + secrets.token_hex(5)
    answer = api.post("/accounts", json={"name": name, "cash": "100000", "rate_limit_per_s": 100_000},
                      headers={"Authorization": f"Bearer {admin_key}"})
    assert answer.status_code == 201, answer.text
    return {"user_id": name, "api_key": answer.json()["api_key"]}


@pytest.fixture
def symbol(settings: Settings) -> str:
    """A symbol only this test trades, with a fresh price (last 100.01, ask 100.02) in the price cache."""
    sym = unique_symbol("U")
    publish_all(settings, [tick(sym, 1)])
    cache = PriceCache(redis_connect(settings.redis))
    wait_for(lambda: cache.latest(sym) is not None, 30, f"{sym} in the price cache")
    return sym


@pytest.fixture
def tui_settings(settings: Settings, tmp_path: Path, account: dict[str, str], symbol: str) -> Settings:
    """The stack's settings with a credentials file holding only the new account, watching only the symbol."""
    custom = settings.model_copy(update={
        "api": settings.api.model_copy(update={"credentials_file": tmp_path / "credentials.json"}),
        "tui": TuiSettings(watchlist=[symbol]),
    })
    save_credentials(custom, {"active": account["user_id"], "users": {account["user_id"]: account}})
    return custom


@pytest.fixture
def app(tui_settings: Settings, symbol: str, execution_job: None) -> TradesimApp:
    return create_app(tui_settings, resolve_user(tui_settings, None), watchlist=[symbol])


@asynccontextmanager
async def running(app: TradesimApp) -> AsyncIterator[Pilot[None]]:
    """The app driven by a pilot. Once it has exited, none of the connections it opened to the API or the
    market-data service may be open: a socket left closing by a cancelled worker is released only if the loop
    still runs (else when collected, and the session fails then on an unraisable ResourceWarning), so this waits
    without running the loop, for the health probe's thread alone to finish a probe."""
    ports = {port_of(app.settings.api.client_url), port_of(app.settings.marketdata.client_ws_url)}
    before = open_tcp([os.getpid()])
    async with app.run_test(size=SIZE) as pilot:
        yield pilot

    def left() -> dict[str, TcpSocket]:
        return {inode: s for inode, s in open_tcp([os.getpid()]).items()
                if s.remote_port in ports and inode not in before}

    try:
        wait_for(lambda: not left(), 5, "no connection left", poll_s=0.1)
    except AssertionError:
        raise AssertionError(f"connections left open by the app: {left()}") from None


async def orders_at_the_api(settings: Settings, account: dict[str, str]) -> list[dict[str, object]]:
    """The account's orders as GET /orders lists them (asked from the test, not through the app)."""
    async with httpx.AsyncClient(base_url=settings.api.client_url, timeout=30) as client:
        answer = await client.get("/orders", headers={"Authorization": f"Bearer {account['api_key']}"})
    assert answer.status_code == 200, answer.text
    return answer.json()["orders"]  # type: ignore[no-any-return]


async def until(pilot: Pilot[None], cond: Callable[[], object], timeout_s: float, what: str) -> None:
    """Let the app run until `cond()` holds; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await pilot.pause(0.05)
