"""/accounts: create (admin, returns the API key once), list (admin), me, reset (admin)."""

from __future__ import annotations

import secrets
import time
from dataclasses import replace
from decimal import Decimal
from functools import partial

import anyio
from fastapi import APIRouter, Path

from tradesim.adapters.dynamodb.accounts import Account, AccountExists, AccountTakenOver, AccountUnfinished, hash_key
from tradesim.domain.errors import PortfolioExists, PortfolioNotFound, VersionConflict
from tradesim.domain.money import round_cash
from tradesim.services.api import metrics
from tradesim.services.api.deps import Admin, CurrentUser, Res
from tradesim.services.api.errors import ApiError, responses
from tradesim.services.api.resources import Resources
from tradesim.services.api.schemas import (
    AccountCreate,
    AccountCreated,
    AccountInfo,
    AccountList,
    KeyRotated,
    ResetDone,
)
from tradesim.services.api.strict_json import StrictJsonRoute


def _now_ms() -> int:
    return int(time.time() * 1000)


router = APIRouter(prefix="/accounts", tags=["accounts"], route_class=StrictJsonRoute)
UserPath = Path(pattern=r"^[a-z0-9][a-z0-9_.\-]{0,39}$")
#: reset → make → reset ...: past the first round only if the item went again after another request made it
_RESET_ATTEMPTS = 3


def new_api_key() -> str:
    return "ts_" + secrets.token_urlsafe(32)


def _money(amount: Decimal) -> str:
    return str(round_cash(amount))


async def _info(res: Resources, account: Account) -> AccountInfo:
    with metrics.timed("dynamodb", "portfolio_get"):
        portfolio = await anyio.to_thread.run_sync(res.portfolios.holdings, account.user_id)
    return AccountInfo(user_id=account.user_id, starting_cash=_money(account.starting_cash),
                       created_at_ms=account.created_at_ms,
                       cash=None if portfolio is None else _money(portfolio.cash),
                       positions={} if portfolio is None else {s: q for s, q in portfolio.positions.items() if q},
                       pending=account.pending)


async def _reset_portfolio(res: Resources, user_id: str, cash: Decimal, generation: int, *, by_create: bool) -> int:
    """Back to `cash` with no positions; a missing item is made again, marked as reset too (the user's executions
    so far are of before) and stamped with `generation`, the account's (a create's own). Returns the new version;
    raises ApiError 409 `conflict`, or `account_taken_over` (a create's reset only).

    A create's reset (`by_create`) stamps the item with its generation and is refused once a later create of the
    name stamped it (that one's reset came after this create's take-over: its user may be trading already); an
    admin's reset of a live account keeps the stamp.

    Two resets of a missing item both see it missing and both make it; the one whose make finds the other's item
    resets that item, so both succeed, each writing after it was asked (the item the other made may hold an
    execution already)."""
    fence = generation if by_create else None
    for _ in range(_RESET_ATTEMPTS):
        try:
            return await anyio.to_thread.run_sync(
                partial(res.accounts.reset_portfolio, user_id, cash, _now_ms, generation=fence))
        except PortfolioNotFound:
            pass
        except AccountTakenOver:
            raise _taken_over(user_id) from None
        except VersionConflict as exc:
            raise ApiError(409, "conflict", str(exc)) from None
        try:
            await anyio.to_thread.run_sync(res.portfolios.create, user_id, cash, _now_ms(), generation)
        except PortfolioExists:
            continue  # made by another request since it was found missing: reset that one
        return 0
    raise ApiError(409, "conflict", f"reset portfolio {user_id!r}: it kept appearing and going; retry")


@router.post("", status_code=201, response_model=AccountCreated,
             responses=responses(400, 401, 403, 409, 415, 422, 503))
async def create_account(body: AccountCreate, res: Res, _: Admin) -> AccountCreated:
    """Create a user with starting cash; the answer carries its API key, which is never shown again."""
    api_key = new_api_key()
    cash = Decimal(body.cash)
    account = Account(user_id=body.name, api_key_hash=hash_key(api_key), starting_cash=cash,
                      created_at_ms=int(time.time() * 1000), rate_limit_per_s=body.rate_limit_per_s, pending=True,
                      generation=1)
    # The portfolio first, then the account, `pending` until its portfolio is right and this answer can carry its
    # key. A create that fails or stops on the way (its key never shown: only the hash is stored, so it cannot be
    # shown later either) leaves an orphan portfolio, which the next create of the name takes over, or a pending
    # account, which a create of it again (same cash and rate limit) takes over; each with a key of its own, never
    # a finished account whose key nobody has. The portfolio is reset only once the account write made the name
    # ours, and only by creates of the same cash, so a concurrent create of the name cannot change our cash.
    # Each create of the name has a generation of its own (the first 1, each take-over one more): its reset and
    # its finish hold only while no later create took the name over, so a create that stalled after its account
    # write changes nothing once a later one reset the portfolio (whose user may be trading by then).
    try:
        await anyio.to_thread.run_sync(res.portfolios.create, body.name, cash)
        made = True
    except PortfolioExists:
        made = False
    try:
        await anyio.to_thread.run_sync(res.accounts.create, account)
    except AccountExists:
        account = await _take_over(res, account)
        made = False  # the portfolio may be the unfinished create's, with its cash
    if not made:
        await _reset_portfolio(res, body.name, cash, account.generation, by_create=True)
        await res.view.drop(body.name)
    if not await anyio.to_thread.run_sync(res.accounts.finish, body.name, account.api_key_hash, account.generation):
        raise _taken_over(body.name)
    return AccountCreated(user_id=body.name, api_key=api_key, starting_cash=_money(cash))


async def _take_over(res: Resources, account: Account) -> Account:
    """Make `account` the one of its name, if the one there is pending (its create did not finish) with the same
    cash and rate limit, as the next generation; returns it so. Else raises ApiError 409 `account_exists` or
    `account_unfinished`."""
    current = await anyio.to_thread.run_sync(res.accounts.get, account.user_id)
    if current is None or not current.pending:
        raise ApiError(409, "account_exists", f"an account named {account.user_id!r} exists already")
    if (current.starting_cash, current.rate_limit_per_s) != (account.starting_cash, account.rate_limit_per_s):
        raise _unfinished(current)
    account = replace(account, generation=current.generation + 1)
    if not await anyio.to_thread.run_sync(res.accounts.take_over, account, current):
        raise ApiError(409, "account_exists", f"another create of {account.user_id!r} is finishing it")
    return account


def _taken_over(user_id: str) -> ApiError:
    """A create whose account a later create of the name took over: it stops before changing anything more."""
    return ApiError(409, "account_taken_over", f"a later create of {user_id!r} took it over before this one "
                    "finished; this one stopped there and has no key (the account is the later create's)")


def _unfinished(account: Account) -> ApiError:
    limit = "the default" if account.rate_limit_per_s is None else str(account.rate_limit_per_s)
    return ApiError(409, "account_unfinished", f"the create of {account.user_id!r} has not finished: create it again "
                    f"with cash {_money(account.starting_cash)} and rate limit {limit} to finish it (it answers "
                    "with a new key)")


@router.get("", response_model=AccountList, responses=responses(401, 403, 503))
async def list_accounts(res: Res, _: Admin) -> AccountList:
    """Every account with its cash and positions (admin)."""
    accounts = await anyio.to_thread.run_sync(res.accounts.list)
    return AccountList(accounts=[await _info(res, a) for a in accounts])


@router.get("/me", response_model=AccountInfo, responses=responses(401, 403, 429, 503))
async def me(user: CurrentUser, res: Res) -> AccountInfo:
    """The caller's account: starting cash, cash and positions."""
    return await _info(res, user)


@router.post("/{user_id}/rotate-key", response_model=KeyRotated,
             responses=responses(401, 403, 404, 409, 422, 503))
async def rotate_key(res: Res, _: Admin, user_id: str = UserPath) -> KeyRotated:
    """A new API key for the user (admin); the old key is refused once every API process's key cache let it go
    (`api.auth_cache_s`)."""
    api_key = new_api_key()
    try:
        if not await anyio.to_thread.run_sync(res.accounts.set_key_hash, user_id, hash_key(api_key)):
            raise ApiError(404, "account_not_found", f"no account {user_id!r}")
    except AccountUnfinished as exc:
        raise _unfinished(exc.account) from None
    except VersionConflict as exc:
        raise ApiError(409, "conflict", str(exc)) from None
    res.forget_keys_of(user_id)  # this process at once; the others within api.auth_cache_s
    return KeyRotated(user_id=user_id, api_key=api_key)


@router.post("/{user_id}/reset", response_model=ResetDone, responses=responses(401, 403, 404, 409, 422, 503))
async def reset_account(res: Res, _: Admin, user_id: str = UserPath) -> ResetDone:
    """Back to the starting cash with no positions (admin); recorded order outcomes are kept."""
    account = await anyio.to_thread.run_sync(res.accounts.get, user_id)
    if account is None:
        raise ApiError(404, "account_not_found", f"no account {user_id!r}")
    version = await _reset_portfolio(res, user_id, account.starting_cash, account.generation, by_create=False)
    await res.view.drop(user_id)  # the order API's holdings view: the next order reads the reset item
    return ResetDone(user_id=user_id, cash=_money(account.starting_cash), version=version)
