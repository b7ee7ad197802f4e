"""Dependencies of the routers, as `Annotated[..., Depends()]` aliases."""

from __future__ import annotations

import math
import secrets
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tradesim.adapters.dynamodb.accounts import Account
from tradesim.services.api import metrics
from tradesim.services.api.errors import ApiError, unauthorized
from tradesim.services.api.resources import Resources, hash_key


async def _resources(request: Request) -> Resources:
    # async on purpose: FastAPI runs a plain-def dependency in a worker thread, a thread hop on every request
    res: Resources = request.app.state.resources
    return res


Res = Annotated[Resources, Depends(_resources)]
_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <API key>` (user or admin key)")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def _authenticated(res: Res, creds: Credentials) -> Account:
    if creds is None or not creds.credentials:
        raise unauthorized()
    account = await res.account_for(hash_key(creds.credentials))
    if account is None:
        raise unauthorized("unknown API key")
    return account


#: the caller's account, not yet counted against its rate limit (POST /orders counts it in its own Redis round trip)
Authenticated = Annotated[Account, Depends(_authenticated)]


def rate_limit_of(res: Resources, account: Account) -> int:
    return account.rate_limit_per_s or res.settings.api.rate_limit_per_s


def rate_limited(limit: int, wait_s: float) -> ApiError:
    return ApiError(429, "rate_limited", f"more than {limit} requests/s with this key",
                    {"Retry-After": str(max(1, math.ceil(wait_s)))})


async def _current_user(res: Res, account: Authenticated) -> Account:
    limit = rate_limit_of(res, account)
    if limit > 0:
        with metrics.timed("redis", "rate_limit"):
            wait_s = await res.limiter.hit(account.api_key_hash[:32], limit)
        if wait_s is not None:
            raise rate_limited(limit, wait_s)
    return account


#: the caller's account, counted against its rate limit
CurrentUser = Annotated[Account, Depends(_current_user)]


async def _admin(res: Res, creds: Credentials) -> None:
    if creds is None or not creds.credentials:
        raise unauthorized("this operation needs the admin key (send `Authorization: Bearer <admin key>`)")
    if res.admin_key and secrets.compare_digest(creds.credentials.encode(), res.admin_key.encode()):
        return
    if await res.account_for(hash_key(creds.credentials)) is not None:
        raise ApiError(403, "admin_required", "this operation needs the admin key, not a user key")
    raise unauthorized("unknown API key")


Admin = Annotated[None, Depends(_admin)]
