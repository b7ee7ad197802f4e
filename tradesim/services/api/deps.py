"""Dependencies of the routers, as `Annotated[..., Depends()]` aliases."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

import anyio
from fastapi import Depends, Query, Request
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tradesim.adapters.dynamodb.accounts import Account
from tradesim.domain.events import USER_ID_PATTERN
from tradesim.ports import StoreFull
from tradesim.services.api import metrics
from tradesim.services.api.errors import ApiError, unauthorized
from tradesim.services.api.gate import ADMIN, resolve
from tradesim.services.api.resources import LookupsExhausted, Resources
from tradesim.services.api.windows import invalid


async def _resources(request: Request) -> Resources:
    # async on purpose: FastAPI runs a plain-def dependency in a worker thread, a thread hop on every request
    res: Resources = request.app.state.resources
    return res


Res = Annotated[Resources, Depends(_resources)]
_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <API key>` (user or admin key)")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def _lookup(res: Resources, request: Request, key: str) -> Account | str | None:
    """gate.ADMIN, the key's account or None; resolved once per request (the gate usually did it already)."""
    try:
        return await resolve(res, request.scope, key)
    except LookupsExhausted as exc:
        raise ApiError(429, "rate_limited", f"{exc} (api.unknown_keys_per_s)", {"Retry-After": "1"}) from None


async def _authenticated(res: Res, request: Request, creds: Credentials) -> Account:
    if creds is None or not creds.credentials:
        raise unauthorized()
    account = await _lookup(res, request, creds.credentials)
    if account is None:
        raise unauthorized("unknown API key")
    if not isinstance(account, Account):  # the admin key: known, but no user's
        raise ApiError(403, "forbidden", "this route takes a user key, not the admin key")
    return account


#: the caller's account, not yet counted against its rate limit (POST /orders counts it in its own Redis round trip)
Authenticated = Annotated[Account, Depends(_authenticated)]


def rate_limit_of(res: Resources, account: Account) -> int:
    return account.rate_limit_per_s or res.settings.api.rate_limit_per_s


def rate_limited(limit: int, wait_s: float) -> ApiError:
    return ApiError(429, "rate_limited", f"more than {limit} requests/s with this key",
                    {"Retry-After": str(max(1, math.ceil(wait_s)))})


def limiter_key(account: Account) -> str:
    return account.api_key_hash[:32]


def count_here(res: Resources, account: Account, limit: int) -> float | None:
    """Redis refused the shared rate-limit count for memory: count in this process instead. Refusing every request
    would turn a full cache into an outage, counting none would drop the protection when the system is already
    strained; each API process counting its own share keeps the limit, `api.workers` times over at most."""
    res.degraded("rate_limit", "rate limits are counted in each API process alone")
    return res.limiter.hit_here(limiter_key(account), limit)


async def _count(res: Resources, account: Account) -> None:
    """Count one request against the account's rate limit; raises 429 past it."""
    limit = rate_limit_of(res, account)
    if limit > 0:
        try:
            with metrics.timed("redis", "rate_limit"):
                wait_s = await res.limiter.hit(limiter_key(account), limit)
        except StoreFull:
            wait_s = count_here(res, account, limit)
        if wait_s is not None:
            raise rate_limited(limit, wait_s)


async def _current_user(res: Res, account: Authenticated) -> Account:
    await _count(res, account)
    return account


#: the caller's account, counted against its rate limit
CurrentUser = Annotated[Account, Depends(_current_user)]


async def _admin(res: Res, request: Request, creds: Credentials) -> None:
    if creds is None or not creds.credentials:
        raise unauthorized("this operation needs the admin key (send `Authorization: Bearer <admin key>`)")
    found = await _lookup(res, request, creds.credentials)
    if found == ADMIN:
        return
    if found is not None:
        raise ApiError(403, "admin_required", "this operation needs the admin key, not a user key")
    raise unauthorized("unknown API key")


Admin = Annotated[None, Depends(_admin)]


@dataclass(frozen=True)
class Reader:
    """Whose data a read shows: the caller's own (user key), or with the admin key the named user's, or
    everyone's (`user_id` None)."""

    user_id: str | None


UserQuery = Annotated[str | None, Query(
    pattern=USER_ID_PATTERN, examples=["alice"],
    description="whose data: the admin key may name any user; a user key only itself (another user: 403)")]


async def _reader(res: Res, request: Request, creds: Credentials, user: UserQuery = None) -> Reader:
    if creds is None or not creds.credentials:
        raise unauthorized()
    found = await _lookup(res, request, creds.credentials)
    if found == ADMIN:
        if user is not None:
            with metrics.timed("dynamodb", "account_get"):
                found = await anyio.to_thread.run_sync(res.accounts.get, user)
            if found is None:
                raise ApiError(404, "account_not_found", f"no account {user!r}")
        return Reader(user)
    if not isinstance(found, Account):
        raise unauthorized("unknown API key")
    account = found
    await _count(res, account)
    own_only(account, user)
    return Reader(account.user_id)


def own_only(account: Account, user: str | None) -> None:
    """A user key names only itself in `?user=` (403 otherwise)."""
    if user is not None and user != account.user_id:
        raise ApiError(403, "forbidden", f"a user key reads only its own data; {user!r} is another user")


#: who reads what: a user key its own data (rate limited), the admin key anyone's (`?user=`) or everyone's
ReadAs = Annotated[Reader, Depends(_reader)]


def one_user(reader: Reader) -> str:
    """The user a per-user read is about; the admin key must name one (422)."""
    if reader.user_id is None:
        raise invalid("user", "the admin key must name a user (`?user=`)", "missing")
    return reader.user_id


def _query_names(route: APIRoute) -> frozenset[str]:
    """The query parameters of the route and of its dependencies."""
    names: set[str] = set()
    pending = [route.dependant]
    while pending:
        dependant = pending.pop()
        names.update(p.alias for p in dependant.query_params)
        pending.extend(dependant.dependencies)
    return frozenset(names)


async def _exact_query(request: Request) -> None:
    """422 for a query parameter the route does not take, or one given twice: a misspelt filter was dropped and a
    repeated one overridden, so the answer covered something else than was asked, with a 200."""
    if not request.query_params:
        return
    route = request.scope.get("route")
    taken = _query_names(route) if isinstance(route, APIRoute) else frozenset()
    seen: set[str] = set()
    for name, _ in request.query_params.multi_items():
        if name not in taken:
            why = f"not a parameter of this route (it takes: {', '.join(sorted(taken)) or 'none'})"
        elif name in seen:
            why = "given more than once; give it once"
        else:
            seen.add(name)
            continue
        raise invalid(name, why, "extra_forbidden")


#: for routes with query parameters: their names are checked, see `_exact_query`
EXACT_QUERY = Depends(_exact_query)
#: the `dependencies` of routes with query parameters: the caller first (a request without a key is 401 whatever
#: its query), then the query's names; the route's own ReadAs or CurrentUser parameter reuses the first result
READ_CHECKS = [Depends(_reader), EXACT_QUERY]
USER_QUERY_CHECKS = [Depends(_current_user), EXACT_QUERY]
