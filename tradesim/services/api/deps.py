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


def _resources(request: Request) -> Resources:
    res: Resources = request.app.state.resources
    return res


Res = Annotated[Resources, Depends(_resources)]
_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <API key>` (user or admin key)")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def _current_user(res: Res, creds: Credentials) -> Account:
    if creds is None or not creds.credentials:
        raise unauthorized()
    key_hash = hash_key(creds.credentials)
    account = await res.account_for(key_hash)
    if account is None:
        raise unauthorized("unknown API key")
    limit = account.rate_limit_per_s or res.settings.api.rate_limit_per_s
    if limit > 0:
        with metrics.timed("redis", "rate_limit"):
            wait_s = await res.limiter.hit(key_hash[:32], limit)
        if wait_s is not None:
            raise ApiError(429, "rate_limited", f"more than {limit} requests/s with this key",
                           {"Retry-After": str(max(1, math.ceil(wait_s)))})
    return account


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
