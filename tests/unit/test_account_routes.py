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
import pytest
import redis
from fastapi import FastAPI

from tradesim.adapters.dynamodb.accounts import Account, AccountExists, AccountTakenOver, AccountUnfinished, hash_key
from tradesim.adapters.dynamodb.codec import Portfolio
from tradesim.domain.errors import PortfolioExists, PortfolioNotFound, VersionConflict
from tradesim.ports import Unavailable
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
    is one (conditional) request to DynamoDB. `fail[call]` is raised by the next such call instead of doing it,
    `lose[call]` after doing it (an answer lost on the way back); `then[(request, call)]` runs right after that
    request's call, before the script lets the next call go (another writer of the stores, e.g. a settled order)."""

    def __init__(self, script: Script | None = None) -> None:
        self.script = script or Script()
        self.accounts: dict[str, Account] = {}
        self.portfolios: dict[str, Portfolio] = {}
        self.fail: dict[str, Exception] = {}
        self.lose: dict[str, Exception] = {}
        self.then: dict[tuple[str, str], Callable[[], None]] = {}
        self.lock = threading.Lock()

    @contextmanager
    def call(self, name: str) -> Iterator[None]:
        with self.script.step(name), self.lock:
            if name in self.fail:
                raise self.fail.pop(name)
            try:
                yield
            finally:
                if (after := self.then.pop((caller.get(), name), None)) is not None:
                    after()
            if name in self.lose:
                raise self.lose.pop(name)


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

    def list(self) -> list[Account]:
        return sorted(self.s.accounts.values(), key=lambda a: a.user_id)

    def take_over(self, account: Account, seen: Account) -> bool:
        with self.s.call("accounts.take_over"):
            current = self.s.accounts.get(account.user_id)
            if (current is None or not current.pending
                    or (current.api_key_hash, current.generation) != (seen.api_key_hash, seen.generation)):
                return False
            self.s.accounts[account.user_id] = account
            return True

    def finish(self, user_id: str, api_key_hash: str, generation: int) -> bool:
        with self.s.call("accounts.finish"):
            current = self.s.accounts.get(user_id)
            if current is None or (current.api_key_hash, current.generation) != (api_key_hash, generation):
                return False
            self.s.accounts[user_id] = replace(current, pending=False)
            return True

    def set_key_hash(self, user_id: str, api_key_hash: str) -> bool:
        with self.s.call("accounts.set_key_hash"):
            current = self.s.accounts.get(user_id)
            if current is None:
                return False
            if current.pending:
                raise AccountUnfinished(current)
            self.s.accounts[user_id] = replace(current, api_key_hash=api_key_hash)
            return True

    def reset_portfolio(self, user_id: str, cash: Decimal, now_ms: Callable[[], int], attempts: int = 5, *,
                        generation: int | None = None) -> int:
        with self.s.call("accounts.reset_portfolio"):
            item = self.s.portfolios.get(user_id)
            if item is None:
                raise PortfolioNotFound(user_id)
            if generation is not None and item.create_generation > generation:
                raise AccountTakenOver(user_id)
            stamp = item.create_generation if generation is None else generation
            self.s.portfolios[user_id] = replace(item, cash=cash, positions={}, version=item.version + 1,
                                                 reset_at_ms=now_ms(), create_generation=stamp)
            return item.version + 1


class Portfolios:
    def __init__(self, stores: Stores) -> None:
        self.s = stores

    def create(self, user_id: str, cash: Decimal, reset_at_ms: int = 0, create_generation: int = 0) -> Portfolio:
        with self.s.call("portfolios.create"):
            if user_id in self.s.portfolios:
                raise PortfolioExists(user_id)
            self.s.portfolios[user_id] = Portfolio(user_id=user_id, cash=cash, reset_at_ms=reset_at_ms,
                                                   create_generation=create_generation)
            return self.s.portfolios[user_id]

    def holdings(self, user_id: str) -> Portfolio | None:
        with self.s.call("portfolios.holdings"):
            return self.s.portfolios.get(user_id)


class View:
    def __init__(self, stores: Stores) -> None:
        self.s = stores
        self.dropped: list[str] = []

    async def drop(self, user_id: str) -> None:
        if "view.drop" in self.s.fail:
            raise self.s.fail.pop("view.drop")
        self.dropped.append(user_id)


def _app(stores: Stores) -> FastAPI:
    app = FastAPI()
    errors.install(app, 1)
    app.include_router(router)
    app.dependency_overrides[_admin] = lambda: None
    app.state.resources = SimpleNamespace(accounts=Accounts(stores), portfolios=Portfolios(stores), view=View(stores),
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


def _key_of(stores: Stores, answer: httpx.Response) -> bool:
    """The answer's key is the account's, and the account is finished."""
    account = stores.accounts[answer.json()["user_id"]]
    return account.api_key_hash == hash_key(answer.json()["api_key"]) and not account.pending


@pytest.mark.parametrize(("call", "error", "status", "code"), [
    ("accounts.reset_portfolio", Unavailable("DynamoDB did not answer reset portfolio 'bob'"), 503, "unavailable"),
    ("accounts.reset_portfolio", VersionConflict("reset portfolio 'bob': the portfolio kept changing; retry"), 409,
     "conflict"),
    ("view.drop", redis.ConnectionError("Connection refused"), 503, "unavailable"),
])
def test_a_create_that_failed_after_its_account_write_is_finished_by_the_same_create_again(
        call: str, error: Exception, status: int, code: str) -> None:
    """A probe: an orphan portfolio taken over, its reset (or the view's drop) failing after the account write: a
    503 (a 500 for a VersionConflict), the account made with a key nobody was shown, and every create again a
    409 `account_exists`."""
    stores = Stores()
    stores.portfolios["bob"] = Portfolio(user_id="bob", cash=Decimal("5"), positions={"ACME": 3}, version=4)
    stores.fail[call] = error
    body = {"name": "bob", "cash": "700", "rate_limit_per_s": 9}
    [failed] = _post(stores, ("first", "/accounts", body))
    assert (failed.status_code, failed.json()["code"]) == (status, code)
    assert stores.accounts["bob"].pending  # its key was never shown

    [again] = _post(stores, ("again", "/accounts", body))
    assert again.status_code == 201, again.text
    assert again.json() == {"user_id": "bob", "api_key": again.json()["api_key"], "starting_cash": "700.00"}
    assert _key_of(stores, again)
    assert stores.accounts["bob"].rate_limit_per_s == 9
    item = stores.portfolios["bob"]
    assert (item.cash, item.positions) == (Decimal("700"), {})
    [third] = _post(stores, ("third", "/accounts", body))
    assert (third.status_code, third.json()["code"]) == (409, "account_exists")  # finished: the name is taken


def test_a_create_whose_account_write_answer_was_lost_is_finished_by_the_same_create_again() -> None:
    """The account was written, the answer lost (a read timeout): a 503, and a create again found the name taken."""
    stores = Stores()
    stores.lose["accounts.create"] = Unavailable("DynamoDB did not answer create account 'bob'")
    [lost] = _post(stores, ("first", "/accounts", {"name": "bob", "cash": "700"}))
    assert (lost.status_code, lost.json()["code"]) == (503, "unavailable")
    [again] = _post(stores, ("again", "/accounts", {"name": "bob", "cash": "700"}))
    assert again.status_code == 201, again.text
    assert _key_of(stores, again)
    assert (stores.portfolios["bob"].cash, stores.portfolios["bob"].positions) == (Decimal("700"), {})


def test_an_unfinished_create_is_taken_over_only_by_one_of_the_same_cash_and_rate_limit() -> None:
    stores = Stores()
    stores.portfolios["bob"] = Portfolio(user_id="bob", cash=Decimal("5"))
    stores.fail["accounts.reset_portfolio"] = Unavailable("DynamoDB did not answer reset portfolio 'bob'")
    assert _post(stores, ("first", "/accounts", {"name": "bob", "cash": "700"}))[0].status_code == 503
    for other in ({"name": "bob", "cash": "800"}, {"name": "bob", "cash": "700", "rate_limit_per_s": 5}):
        [refused] = _post(stores, ("other", "/accounts", other))
        assert (refused.status_code, refused.json()["code"]) == (409, "account_unfinished")
        assert refused.json()["message"] == ("the create of 'bob' has not finished: create it again with cash 700.00 "
                                             "and rate limit the default to finish it (it answers with a new key)")
    assert stores.portfolios["bob"].cash == Decimal("5")  # a create of other cash changed nothing
    [rotated] = _post(stores, ("admin", "/accounts/bob/rotate-key", None))
    assert (rotated.status_code, rotated.json()["code"]) == (409, "account_unfinished")
    assert _post(stores, ("again", "/accounts", {"name": "bob", "cash": "700.00"}))[0].status_code == 201


def test_two_creates_taking_over_one_unfinished_create_hand_out_one_key() -> None:
    """The first takes the pending account over, the second takes it over from the first before the first
    finishes: the first's finish finds another key and generation and answers 409 `account_taken_over`; the
    second's key is the account's. (The pending account here was written before generations: read as 0.) The
    first's reset goes before the second's take-over: else it may come after the second's reset, and the refusal is
    the reset's, before the finish (a flaky test)."""
    script = Script(("first", "accounts.take_over"), ("first", "accounts.reset_portfolio"), ("second", "accounts.get"),
                    ("second", "accounts.take_over"), ("first", "accounts.finish"))
    stores = Stores(script)
    stores.accounts["bob"] = replace(_account("bob", "700"), pending=True)
    stores.portfolios["bob"] = Portfolio(user_id="bob", cash=Decimal("5"))
    body = {"name": "bob", "cash": "700"}
    first, second = _post(stores, ("first", "/accounts", body), ("second", "/accounts", body))
    assert not script.steps
    assert (first.status_code, first.json()["code"]) == (409, "account_taken_over")
    assert second.status_code == 201, second.text
    assert _key_of(stores, second)
    assert stores.accounts["bob"].generation == 2
    assert (stores.portfolios["bob"].cash, stores.portfolios["bob"].create_generation) == (Decimal("700"), 2)


def _trade(stores: Stores, user_id: str) -> Callable[[], None]:
    """An order settled on the user's item as the execution job writes it: every other attribute kept."""

    def settle() -> None:
        item = stores.portfolios[user_id]
        stores.portfolios[user_id] = replace(item, cash=item.cash - Decimal("101"), positions={"ACME": 1},
                                             version=item.version + 1)
    return settle


@pytest.mark.parametrize("stalled", ["after its take-over", "after its account write"])
def test_a_create_that_stalls_before_its_reset_changes_nothing_once_another_finished_and_the_user_traded(
        stalled: str) -> None:
    """The hole this closes: the first create takes the pending account over (or, the name free, writes it) and
    stalls before its portfolio reset; the second takes it over, resets the portfolio, finishes, and its user
    trades; then the first's reset would have put the starting cash back over the trade. It is refused: 409
    `account_taken_over`, and the account, its key and the traded portfolio are as the second left them."""
    body = {"name": "bob", "cash": "700"}
    stores = Stores()
    stores.portfolios["bob"] = Portfolio(user_id="bob", cash=Decimal("5"))  # an orphan: a create failed
    if stalled == "after its take-over":  # ... after its account write, which the first takes over
        stores.accounts["bob"] = replace(_account("bob", "700"), pending=True, generation=1)
        first_write = ("first", "accounts.take_over")
    else:
        first_write = ("first", "accounts.create")
    stores.script = script = Script(first_write, ("second", "accounts.create"), ("second", "accounts.get"),
                                    ("second", "accounts.finish"), ("first", "accounts.reset_portfolio"))
    stores.then[("second", "accounts.finish")] = _trade(stores, "bob")
    first, second = _post(stores, ("first", "/accounts", body), ("second", "/accounts", body))
    assert not script.steps  # the calls met in the scripted order

    assert second.status_code == 201, second.text
    assert (first.status_code, first.json()["code"]) == (409, "account_taken_over"), first.text
    assert first.json()["message"] == ("a later create of 'bob' took it over before this one finished; this one "
                                       "stopped there and has no key (the account is the later create's)")
    assert _key_of(stores, second)
    taken = stores.accounts["bob"].generation
    assert taken == (3 if stalled == "after its take-over" else 2)
    item = stores.portfolios["bob"]
    assert (item.cash, item.positions, item.create_generation) == (Decimal("599"), {"ACME": 1}, taken)
    [third] = _post(stores, ("third", "/accounts", body))
    assert (third.status_code, third.json()["code"]) == (409, "account_exists")


def test_a_create_that_stalls_before_its_finish_changes_nothing_once_another_finished() -> None:
    """The first resets the portfolio and stalls before finishing; the second takes over, resets, finishes and
    its user trades: the first's finish is refused (409 `account_taken_over`), the trade stays."""
    script = Script(("first", "accounts.reset_portfolio"), ("second", "accounts.get"), ("second", "accounts.finish"),
                    ("first", "accounts.finish"))
    stores = Stores(script)
    stores.accounts["bob"] = replace(_account("bob", "700"), pending=True, generation=4)
    stores.portfolios["bob"] = Portfolio(user_id="bob", cash=Decimal("5"), create_generation=4)
    stores.then[("second", "accounts.finish")] = _trade(stores, "bob")
    body = {"name": "bob", "cash": "700"}
    first, second = _post(stores, ("first", "/accounts", body), ("second", "/accounts", body))
    assert not script.steps
    assert (first.status_code, first.json()["code"]) == (409, "account_taken_over")
    assert second.status_code == 201, second.text
    assert _key_of(stores, second)
    assert stores.accounts["bob"].generation == 6
    item = stores.portfolios["bob"]
    assert (item.cash, item.positions, item.create_generation) == (Decimal("599"), {"ACME": 1}, 6)


def test_an_admin_reset_keeps_the_create_stamp_and_a_missing_item_is_made_with_the_accounts_generation() -> None:
    """The owner's reset of a live account is not a create's: never refused by the stamp, and it keeps it (so a
    create stalled since is still refused); an item made again carries the account's generation."""
    stores = Stores()
    stores.accounts["bob"] = replace(_account("bob", "700"), generation=3)
    stores.portfolios["bob"] = Portfolio(user_id="bob", cash=Decimal("5"), positions={"ACME": 2}, version=7,
                                         create_generation=3)
    [reset] = _post(stores, ("admin", "/accounts/bob/reset", None))
    assert (reset.status_code, reset.json()) == (200, {"user_id": "bob", "cash": "700.00", "version": 8})
    item = stores.portfolios["bob"]
    assert (item.cash, item.positions, item.create_generation) == (Decimal("700"), {}, 3)
    del stores.portfolios["bob"]
    [made] = _post(stores, ("admin", "/accounts/bob/reset", None))
    assert (made.status_code, made.json()["version"]) == (200, 0)
    assert stores.portfolios["bob"].create_generation == 3


def test_creates_write_the_first_generation_and_each_take_over_the_next() -> None:
    stores = Stores()
    [created] = _post(stores, ("first", "/accounts", {"name": "carol", "cash": "250"}))
    assert created.status_code == 201, created.text
    assert (stores.accounts["carol"].generation, stores.portfolios["carol"].create_generation) == (1, 0)  # made
    stores.portfolios["bob"] = Portfolio(user_id="bob", cash=Decimal("5"))
    stores.fail["accounts.finish"] = Unavailable("DynamoDB did not answer finish account 'bob'")
    assert _post(stores, ("first", "/accounts", {"name": "bob", "cash": "700"}))[0].status_code == 503
    assert (stores.accounts["bob"].generation, stores.portfolios["bob"].create_generation) == (1, 1)
    assert _post(stores, ("again", "/accounts", {"name": "bob", "cash": "700"}))[0].status_code == 201
    assert (stores.accounts["bob"].generation, stores.portfolios["bob"].create_generation) == (2, 2)


def test_a_create_of_a_new_name_writes_its_account_pending_and_finishes_it() -> None:
    stores = Stores()
    [created] = _post(stores, ("first", "/accounts", {"name": "carol", "cash": "250.5"}))
    assert created.status_code == 201, created.text
    assert _key_of(stores, created)
    item = stores.portfolios["carol"]
    assert (item.cash, item.version) == (Decimal("250.5"), 0)  # made by this create: not reset
    [again] = _post(stores, ("again", "/accounts", {"name": "carol", "cash": "250.5"}))
    assert (again.status_code, again.json()["code"]) == (409, "account_exists")


def test_the_account_list_marks_a_pending_account() -> None:
    """A probe: an account whose create had not finished was listed like a finished one."""
    from dataclasses import replace

    stores = Stores()
    stores.accounts["bob"] = replace(_account("bob"), pending=True)
    stores.accounts["carol"] = _account("carol")

    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=_app(stores))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.get("/accounts")

    answer = asyncio.run(run())
    assert answer.status_code == 200
    assert [(a["user_id"], a["pending"]) for a in answer.json()["accounts"]] == [("bob", True), ("carol", False)]
