"""The API's front door, before routing and before a body is read: the body size limit (413) and the time it may
take to arrive (408), headers that may come only once (400), and the API key (401 for a missing or unknown key on
routes that need one, 429 when an address looks up too many unknown keys).

Pure ASGI, so nothing of a refused request's body is read or parsed. The key it resolves is left in the request
state for the route's own checks (admin or user), which then cost no second lookup.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tradesim.adapters.dynamodb.accounts import Account, hash_key
from tradesim.services.api.errors import problem_bytes
from tradesim.services.api.resources import LookupsExhausted, Resources

#: routes anyone may call: no key needed, none checked
PUBLIC = frozenset({"/healthz", "/readyz", "/metrics", "/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"})
ADMIN = "admin"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
#: headers whose second copy would be ignored (the first wins): a request that repeats one is ambiguous
_ONCE = {b"authorization": "Authorization", b"idempotency-key": "Idempotency-Key"}


def bearer(scope: Scope) -> str | None:
    """The Bearer credential of the request, or None."""
    raw = next((v for k, v in scope["headers"] if k == b"authorization"), None)
    if raw is None:
        return None
    scheme, _, key = raw.decode("latin-1").partition(" ")
    return key.strip() or None if scheme.lower() == "bearer" else None


async def resolve(res: Resources, scope: Scope, key: str) -> Account | str | None:
    """ADMIN, the key's account, or None (unknown); cached in the request state. Raises LookupsExhausted."""
    state = scope.setdefault("state", {})
    if "auth" not in state:
        if res.admin_key and secrets.compare_digest(key.encode(), res.admin_key.encode()):
            state["auth"] = ADMIN
        else:
            client = scope.get("client")
            state["auth"] = await res.account_for(hash_key(key), client[0] if client else "?")
    found: Account | str | None = state["auth"]
    return found


class Gate:
    def __init__(self, app: ASGIApp, max_body_bytes: int, body_timeout_s: float) -> None:
        self.app = app
        self.max_body = max_body_bytes
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            await _answer(scope, send, 413, "payload_too_large",
                          f"the request body is over the limit of {self.max_body} bytes (api.max_body_bytes)")
            return
        once = [k for k, _ in scope["headers"] if k in _ONCE]
        if len(once) != len(set(once)):
            name = _ONCE[next(k for k in once if once.count(k) > 1)]
            await _answer(scope, send, 400, "bad_request", f"the {name} header comes more than once; send it once")
            return
        if scope["path"] not in PUBLIC:
            refused = await self._check_key(scope)
            if refused is not None:
                await _answer(scope, send, *refused)
                return
        seen = 0
        started = answered = False
        body_done = False
        deadline = asyncio.get_running_loop().time() + self.body_timeout_s

        async def counted() -> Message:
            """The body as it arrives; past the limit, answer 413, past the deadline 408, and tell the app the
            client left (a client that sends less than its Content-Length must not hold the request for ever)."""
            nonlocal seen, answered, body_done
            if answered:
                return {"type": "http.disconnect"}
            if body_done:
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                answered = True
                if not started:
                    await _answer(scope, send, 408, "request_timeout",
                                  f"the request body did not arrive within {self.body_timeout_s:g} s "
                                  "(api.body_timeout_s)", {"Connection": "close"})
                return {"type": "http.disconnect"}
            if message["type"] == "http.request":
                body_done = not message.get("more_body", False)
                seen += len(message.get("body", b""))
                if seen > self.max_body and not started:
                    answered = True
                    await _answer(scope, send, 413, "payload_too_large",
                                  f"the request body is over the limit of {self.max_body} bytes (api.max_body_bytes)")
                    return {"type": "http.disconnect"}
            return message

        async def send_tracked(message: Message) -> None:
            nonlocal started
            if answered:
                return  # the app's own answer to the cut-off body: the client has the 413
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counted, send_tracked)

    async def _check_key(self, scope: Scope) -> tuple[Any, ...] | None:
        key = bearer(scope)
        if key is None:
            if scope["method"] in _BODY_METHODS:
                return 401, "unauthorized", "missing API key (send `Authorization: Bearer <key>`)", \
                    {"WWW-Authenticate": "Bearer"}
            return None  # the route says what it needs
        res: Resources = scope["app"].state.resources
        try:
            found = await resolve(res, scope, key)
        except LookupsExhausted as exc:
            return 429, "rate_limited", f"{exc} (api.unknown_keys_per_s)", {"Retry-After": "1"}
        except Exception:  # noqa: BLE001 - a store failure: the route's own lookup answers it (503) as usual
            return None
        if found is None:
            return 401, "unauthorized", "unknown API key", {"WWW-Authenticate": "Bearer"}
        return None


async def _answer(scope: Scope, send: Send, status: int, code: str, message: str,
                  headers: dict[str, str] | None = None) -> None:
    body = problem_bytes(code, message, scope.get("state", {}).get("request_id"))
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
