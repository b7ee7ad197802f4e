"""The /accounts routes on an app of their own, over doubles of the account and portfolio stores: no server.

Two requests' store calls are made to meet in a chosen order by a `Script` (see there), not by timing.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import replace
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import httpx
from fastapi import FastAPI

from tradesim.adapters.dynamodb.accounts import Account, AccountExists
from tradesim.adapters.dynamodb.codec import Portfolio
from tradesim.domain.errors import PortfolioExists, PortfolioNotFound
from tradesim.services.api import errors
from tradesim.services.api.accounts import router
from tradesim.services.api.deps import _admin

#: which request a store call is made for (context variables follow a request into its worker threads)
caller: ContextVar[str] = ContextVar("caller", default="")
#: how long a scripted call waits for its turn before the test fails (a bound, not a pause)
TURN_WAIT_S = 10


class Script:
    """The order in which named requests' store calls run: a call listed as (request, call) waits until every
    listed call before it has returned; calls not listed run as they come."""

    def __init__(self, *steps: tuple[str, str]) -> None:
        self.steps = list(steps)
        self.turn = threading.Condition()

    @contextmanager
    def step(self, call: str) -> Iterator[None]:
        me = (caller.get(), call)
        with self.turn:
            if me in self.steps:
                assert self.turn.wait_for(lambda: self.steps[0] == me, TURN_WAIT_S), f"{me} never had its turn"
        try:
            yield
        finally:
            with self.turn:
                if self.steps and self.steps[0] == me:
                    self.steps.pop(0)
                    self.turn.notify_all()


class Stores:
    """AccountStore's and PortfolioStore's contracts over dicts: each call reads or writes under one lock, as each
    is one (conditional) request to DynamoDB. `fail[call]` is raised by the next such call instead."""

    def __init__(self, script: Script | None = None) -> None:
        self.script = script or Script()
        self.accounts: dict[str, Account] = {}
        self.portfolios: dict[str, Portfolio] = {}
        self.fail: dict[str, Exception] = {}
        self.lock = threading.Lock()

    @contextmanager
    def call(self, name: str) -> Iterator[None]:
        with self.script.step(name), self.lock:
            if name in self.fail:
                raise self.fail.pop(name)
            yield


class Accounts:
    def __init__(self, stores: Stores) -> None:
        self.s = stores

    def create(self, account: Account) -> None:
        with self.s.call("accounts.create"):
            if account.user_id in self.s.accounts:
                raise AccountExists(account.user_id)
            self.s.accounts[account.user_id] = account

    def get(self, user_id: str) -> Account | None:
        with self.s.call("accounts.get"):
            return self.s.accounts.get(user_id)

    def set_key_hash(self, user_id: str, api_key_hash: str) -> bool:
        with self.s.call("accounts.set_key_hash"):
            if user_id not in self.s.accounts:
                return False
            self.s.accounts[user_id] = replace(self.s.accounts[user_id], api_key_hash=api_key_hash)
            return True

    def reset_portfolio(self, user_id: str, cash: Decimal, now_ms: Callable[[], int], attempts: int = 5) -> int:
        with self.s.call("accounts.reset_portfolio"):
            item = self.s.portfolios.get(user_id)
            if item is None:
                raise PortfolioNotFound(user_id)
            self.s.portfolios[user_id] = replace(item, cash=cash, positions={}, version=item.version + 1,
                                                 reset_at_ms=now_ms())
            return item.version + 1


class Portfolios:
    def __init__(self, stores: Stores) -> None:
        self.s = stores

    def create(self, user_id: str, cash: Decimal, reset_at_ms: int = 0) -> Portfolio:
        with self.s.call("portfolios.create"):
            if user_id in self.s.portfolios:
                raise PortfolioExists(user_id)
            self.s.portfolios[user_id] = Portfolio(user_id=user_id, cash=cash, reset_at_ms=reset_at_ms)
            return self.s.portfolios[user_id]

    def holdings(self, user_id: str) -> Portfolio | None:
        with self.s.call("portfolios.holdings"):
            return self.s.portfolios.get(user_id)


class View:
    def __init__(self) -> None:
        self.dropped: list[str] = []

    async def drop(self, user_id: str) -> None:
        self.dropped.append(user_id)


def _app(stores: Stores) -> FastAPI:
    app = FastAPI()
    errors.install(app, 1)
    app.include_router(router)
    app.dependency_overrides[_admin] = lambda: None
    app.state.resources = SimpleNamespace(accounts=Accounts(stores), portfolios=Portfolios(stores), view=View(),
                                          forget_keys_of=lambda user_id: None)
    return app


def _post(stores: Stores, *requests: tuple[str, str, dict[str, Any] | None]) -> list[httpx.Response]:
    """POST each (request name, path, body) at once; the answers in the same order."""

    async def post(client: httpx.AsyncClient, name: str, path: str, body: dict[str, Any] | None) -> httpx.Response:
        caller.set(name)
        return await client.post(path, json=body)

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=_app(stores), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return list(await asyncio.gather(*(post(client, *r) for r in requests)))

    return asyncio.run(run())


def _account(user_id: str, cash: str = "1000") -> Account:
    return Account(user_id=user_id, api_key_hash="h-" + user_id, starting_cash=Decimal(cash), created_at_ms=1)


def test_two_resets_of_a_missing_portfolio_both_succeed_and_the_second_resets_what_the_first_made() -> None:
    """A probe: both found the item missing and both made it; the second's make found the first's item and the
    PortfolioExists it raised was a 500."""
    script = Script(("first", "accounts.reset_portfolio"), ("second", "accounts.reset_portfolio"),
                    ("first", "portfolios.create"), ("second", "portfolios.create"))
    stores = Stores(script)
    stores.accounts["bob"] = _account("bob", "1000")
    first, second = _post(stores, ("first", "/accounts/bob/reset", None), ("second", "/accounts/bob/reset", None))
    assert not script.steps  # the calls met in the scripted order
    assert (first.status_code, first.json()) == (200, {"user_id": "bob", "cash": "1000.00", "version": 0})
    assert (second.status_code, second.json()) == (200, {"user_id": "bob", "cash": "1000.00", "version": 1})
    item = stores.portfolios["bob"]
    assert (item.cash, item.positions, item.version) == (Decimal("1000"), {}, 1)
    assert item.reset_at_ms > 0
