"""The order API's client: the stored user keys (credentials file, 0600), and calls that turn problems into
errors — `call` for the CLI (UserError / StackError), `Api` for asyncio code (ApiError / ApiUnreachable).

Credentials live in `api.credentials_file` (default `<home>/credentials.json`: a key opens an account of one
stack, so two homes keep two files): `{"active": NAME, "users": {NAME: {"user_id", "api_key"}}}`. API 4xx
answers become UserError (exit 2) carrying the problem's message; 5xx answers and an unreachable API become
StackError (exit 1).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import platformdirs
from pydantic import BaseModel, ValidationError

from tradesim.domain.events import PATTERN_WORDS, USER_ID_PATTERN, is_path_id
from tradesim.files import replace_text
from tradesim.settings import Settings, default_home, is_header_safe, redacted
from tradesim.stack.errors import StackError, UserError
from tradesim.text import one_line, validation_message


def credentials_path(settings: Settings) -> Path:
    return settings.api.credentials_file or settings.home / "credentials.json"


def _earlier_path(settings: Settings) -> Path | None:
    """Where tradesim kept the keys of every stack before they moved into the home: still read by the default
    home until it has a file of its own (its first save writes one), so keys made before are not lost."""
    if settings.api.credentials_file is None and settings.home == default_home():
        return Path(platformdirs.user_config_dir("tradesim")) / "credentials.json"
    return None


def load_credentials(settings: Settings) -> dict[str, Any]:
    """The credentials file's content; raises UserError when it cannot be read or is not one (commands that
    create a key read it before they ask for one, so a bad file never costs a key)."""
    path = credentials_path(settings)
    if not path.exists() and (earlier := _earlier_path(settings)) is not None and earlier.exists():
        path = earlier
    if not path.exists():
        return {"active": None, "users": {}}
    if not path.is_file():  # a folder, or a FIFO whose read would block for ever
        raise UserError(f"the credentials file {path} is not a regular file; {_MOVE_AWAY}")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as exc:  # (UnicodeDecodeError is a ValueError)
        raise UserError(f"cannot read the credentials file {path}: {exc}; {_MOVE_AWAY}") from None
    problem = _credentials_problem(data)
    if problem is not None:
        raise UserError(f"the credentials file {path} is not one tradesim wrote ({problem}); {_MOVE_AWAY}")
    data.setdefault("users", {})
    data.setdefault("active", None)
    return data  # type: ignore[no-any-return]


#: client errors raised before any of the request left: the API did nothing
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.UnsupportedProtocol, httpx.ProxyError, httpx.PoolTimeout,
            httpx.LocalProtocolError)
_MOVE_AWAY = ("fix it or move it away (an admin's `tradesim accounts rotate-key NAME` gives an account whose key "
              "is lost a new one)")


def _credentials_problem(data: object) -> str | None:
    if not isinstance(data, dict):
        return f"a JSON {type(data).__name__}, not an object"
    users = data.get("users", {})
    if not isinstance(users, dict):
        return "`users` is not an object"
    for name, user in users.items():
        if not (isinstance(user, dict) and isinstance(user.get("user_id"), str)
                and isinstance(user.get("api_key"), str)):
            return f"user {name!r} has no `user_id` and `api_key` strings"
        if not is_header_safe(user["api_key"]):
            return f"user {name!r}'s `api_key` is not printable ASCII without spaces"
        if not re.fullmatch(USER_ID_PATTERN, user["user_id"]):  # it goes into URL paths (`accounts reset`)
            return f"user {name!r}'s `user_id` {PATTERN_WORDS[USER_ID_PATTERN]}"
    active = data.get("active")
    if active is not None and not isinstance(active, str):
        return "`active` is not a name"
    return None


def save_credentials(settings: Settings, data: dict[str, Any]) -> Path:
    """Write atomically with mode 0600 (the file holds API keys). A change to what is there goes through
    `credentials_update`, which reads it again under a lock."""
    path = credentials_path(settings)
    # a new private file of its own name (never one already there, nor through a link), then renamed over
    replace_text(path, json.dumps(data, indent=2))
    return path


@contextmanager
def credentials_update(settings: Settings) -> Iterator[dict[str, Any]]:
    """Change the credentials file in the `with` block, under a lock the other tradesim processes respect: the
    content is read again under it (a parallel `accounts create` may have added a key since this command read
    it) and written back if the block changed it. Raises UserError for a file that cannot be read, StackError for
    a change that would make it one no command reads (an API answer of another shape), OSError for a file that
    cannot be written."""
    from tradesim.stack.state import file_lock

    path = credentials_path(settings)
    # a file of its own: the credentials file is replaced by a rename, so a lock on it would lock the old one
    with file_lock(path.with_name(f".{path.name}.lock")):
        data = load_credentials(settings)
        before = copy.deepcopy(data)
        yield data
        if data != before:
            if (problem := _credentials_problem(data)) is not None:
                raise StackError(f"not saved: {path} would not be a credentials file tradesim reads ({problem})")
            save_credentials(settings, data)


def account_key(settings: Settings, name: str | None = None) -> tuple[str, str, str]:
    """(name, user_id, api_key) of the account `name`, else of the active one; raises UserError saying which
    account is missing and what to do."""
    data = load_credentials(settings)
    chosen = name or data.get("active")
    if not chosen:
        raise UserError("no active account: run `tradesim accounts create NAME --cash 100000` first")
    found = data["users"].get(chosen)
    if not found:
        known = ", ".join(sorted(data["users"])) or "none"
        if name:
            raise UserError(f"no account {chosen!r} in {credentials_path(settings)} (known: {known}); "
                            "`tradesim accounts create NAME` adds one")
        raise UserError(f"the active account {chosen!r} is not in {credentials_path(settings)} (known: {known}); "
                        "`tradesim accounts use NAME` picks another")
    return chosen, found["user_id"], found["api_key"]


def active_key(settings: Settings) -> tuple[str, str]:
    """(user_id, api_key) of the active user; raises UserError if there is none."""
    _, user_id, api_key = account_key(settings)
    return user_id, api_key


def admin_key(settings: Settings) -> str:
    from tradesim.services.admin_key import AdminKeyError, admin_key_path, load_admin_key

    try:
        key = load_admin_key(settings, create=False)
    except AdminKeyError as exc:
        raise UserError(str(exc)) from None
    if not key:
        raise StackError(f"no admin key at {admin_key_path(settings)}: start the API (`tradesim up`) or set "
                        "TRADESIM_API__ADMIN_KEY")
    return key


class OutcomeUnknown(StackError):
    """The request was sent and nothing says what became of it (no whole answer, or a 5xx): it may have been
    done, so only a retry that is idempotent (the same Idempotency-Key) is safe."""


def _absent(model: BaseModel, at: tuple[str | int, ...] = ()) -> tuple[str | int, ...] | None:
    """Where a validated answer lacks a field of its model (the first), or None. The API writes every field, those
    with a default too (`OrderAccepted.status`), and a command reads them: a default filled in is not the API's."""
    for name in type(model).model_fields:
        if name not in model.model_fields_set:
            return (*at, name)
        value = getattr(model, name)
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        for part, item in [((), value), *(((k,), v) for k, v in items)]:
            if isinstance(item, BaseModel) and (inner := _absent(item, (*at, name, *part))) is not None:
                return inner
    return None


def call(settings: Settings, method: str, path: str, key: str, *, shape: type[BaseModel], json_body: Any = None,
         params: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
         timeout_s: float = 15.0, options: Mapping[str, str] | None = None) -> Any:
    """One request; returns the decoded JSON answer, an object in the route's answer `shape` (its response model,
    so the command reads what it shows without a KeyError from another server). Raises UserError (4xx),
    OutcomeUnknown (5xx, no answer, a 2xx not in that shape) or StackError (unreachable, not the API). Parameters
    whose value is None are left out. `options`: query parameter → the command's option that gave it, named
    instead in a 422 about that parameter."""
    return exchange(settings, method, path, key, shape=shape, json_body=json_body, params=params, headers=headers,
                    timeout_s=timeout_s, options=options)[0]


def exchange(settings: Settings, method: str, path: str, key: str, *, shape: type[BaseModel], json_body: Any = None,
             params: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
             timeout_s: float = 15.0, options: Mapping[str, str] | None = None) -> tuple[Any, httpx.Headers]:
    """`call`, with the answer's headers (e.g. `Idempotent-Replayed`)."""
    url = settings.api.client_url + path
    given = None if params is None else {k: v for k, v in params.items() if v is not None}
    try:
        answer = httpx.request(method, url, json=json_body, params=given, timeout=timeout_s,
                               headers={"Authorization": f"Bearer {key}", **(headers or {})})
    except httpx.InvalidURL as exc:  # built from the command's arguments, e.g. a search text past a URL's length
        raise UserError(f"the request cannot be sent: {one_line(exc)}") from None
    except UnicodeEncodeError:  # an argument holding bytes that are not UTF-8 (the shell passes them as surrogates)
        raise UserError("the request cannot be sent: an argument holds bytes that are not UTF-8 text") from None
    except NOT_SENT as exc:
        raise StackError(f"the API is not reachable at {redacted(settings.api.client_url)}: {exc} (is `tradesim up` "
                         "running?)") from None
    except httpx.HTTPError as exc:  # sent, and no whole answer: the request may or may not have been done
        raise OutcomeUnknown(f"no answer from the API at {redacted(settings.api.client_url)} within {timeout_s:g} s "
                             f"({one_line(exc) or type(exc).__name__}); the request may have been done") from None
    not_ours = (OutcomeUnknown if answer.status_code < 400 else StackError)(  # a 2xx: perhaps done behind it
        f"{method} {redacted(url)} answered {answer.status_code} {answer.reason_phrase} without the tradesim API's "
        f"JSON: is {redacted(settings.api.client_url)} the tradesim API (api.url)?")
    if answer.status_code < 400:
        try:
            body = answer.json()
        except (ValueError, RecursionError):  # RecursionError: nested past the parser's depth
            raise not_ours from None
        if not isinstance(body, dict):  # `[]`, `null`: every answer of the API is an object
            raise not_ours
        try:
            lacking = _absent(shape.model_validate(body, strict=True))
        except ValidationError as exc:  # what the command reads (a key shown once, a table's columns): said once
            lacking = exc.errors()[0]["loc"]
        if lacking is not None:
            where = ".".join(str(part) for part in lacking) or "answer"
            raise OutcomeUnknown(f"{method} {redacted(url)} answered {answer.status_code} {answer.reason_phrase} "
                                 f"without the `{where}` the tradesim API's answer holds (is "
                                 f"{redacted(settings.api.client_url)} the tradesim API, api.url?)") from None
        return body, answer.headers
    try:
        problem = answer.json()
        message = f"{problem['message']} ({problem['code']})"
    except (ValueError, KeyError, TypeError, RecursionError):
        if answer.status_code >= 500:  # a proxy or load balancer in front of an API that is down
            text = one_line(answer.text)[:200]
            raise OutcomeUnknown(f"API error {answer.status_code} {answer.reason_phrase}"
                                 + (f": {text}" if text else "")) from None
        raise not_ours from None
    if answer.status_code >= 500:
        raise OutcomeUnknown(f"API error {answer.status_code}: {message}")
    raise UserError(_in_options_terms(problem, options or {}) or message)


def _in_options_terms(problem: Any, options: Mapping[str, str]) -> str | None:
    """A 422 about a query parameter a command's option gave, as `--option: what is wrong` (None: not one)."""
    errors = problem.get("errors") if isinstance(problem, dict) else None
    first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
    loc = first.get("loc")
    if isinstance(loc, list) and len(loc) == 2 and loc[0] == "query" and loc[1] in options:
        return f"{options[loc[1]]}: {one_line(validation_message(first))}"
    return None


def retry_after(answer: httpx.Response) -> float | None:
    """A 429's or 503's Retry-After in seconds; None without one, or with an HTTP date (the API sends seconds)."""
    value = answer.headers.get("retry-after", "")
    return float(value) if value.isdigit() else None


class ApiError(Exception):
    """A 4xx/5xx problem answer of the API: its status, stable code, message and field errors."""

    def __init__(self, status: int, code: str, message: str, errors: list[dict[str, Any]] | None = None,
                 retry_after_s: float | None = None) -> None:
        self.status, self.code, self.message, self.errors = status, code, message, errors or []
        self.retry_after_s = retry_after_s  # the answer's Retry-After (429, 503), if it had one
        super().__init__(f"{message} ({code})")


class ApiUnreachable(Exception):
    """No answer from the API (refused, timed out, connection lost); `sent`: the request may have reached it."""

    def __init__(self, message: str, *, sent: bool = True) -> None:
        super().__init__(message)
        self.sent = sent


def idempotency_key_error(key: str) -> str | None:
    """Why `key` cannot be an Idempotency-Key (the API takes 1 to 255 characters; a header value is printable
    ASCII, without spaces at its ends), or None."""
    if not (0 < len(key) <= 255 and key.isascii() and key.isprintable() and key == key.strip()):
        return "must be 1 to 255 printable ASCII characters, without spaces at either end"
    return None


class Api:
    """The API calls the TUI makes, on one httpx.AsyncClient; problems become ApiError / ApiUnreachable."""

    def __init__(self, base_url: str, api_key: str, timeout_s: float = 10.0,
                 place_timeout_s: float | None = None) -> None:
        self.base_url = base_url
        self.place_timeout_s = place_timeout_s  # `ApiSettings.order_answer_s`; None: timeout_s
        self._client = httpx.AsyncClient(base_url=base_url, timeout=timeout_s,
                                         headers={"Authorization": f"Bearer {api_key}"})

    async def request(self, method: str, path: str, *, json_body: Any = None, params: dict[str, Any] | None = None,
                      headers: dict[str, str] | None = None, timeout_s: float | None = None) -> Any:
        given = None if params is None else {k: v for k, v in params.items() if v is not None}
        try:
            answer = await self._client.request(method, path, json=json_body, params=given, headers=headers,
                                                timeout=httpx.USE_CLIENT_DEFAULT if timeout_s is None else timeout_s)
        except httpx.HTTPError as exc:
            sent = not isinstance(exc, NOT_SENT)
            what = "did not answer in time" if isinstance(exc, httpx.TimeoutException) and sent else "is not reachable"
            # an httpx timeout's text is often empty: its type names it then
            raise ApiUnreachable(f"the API {what} at {redacted(self.base_url)}: {str(exc) or type(exc).__name__}",
                                 sent=sent) from None
        if answer.status_code < 400:
            try:
                body = answer.json()
            except (ValueError, RecursionError):  # RecursionError: nested past the parser's depth
                body = None
            if isinstance(body, dict):
                return body
            # a proxy's page, another service, `[]`: the callers expect ApiError, never a crash. As a 502: whether
            # what stands behind it did the request is unknown (a ticket holds its order)
            raise ApiError(502, "not_tradesim_api", f"{method} {path} answered {answer.status_code} without "
                               f"the tradesim API's JSON: is {redacted(self.base_url)} the tradesim API (api.url)?"
                               ) from None
        retry_after_s = retry_after(answer)
        try:
            problem = answer.json()
            raise ApiError(answer.status_code, problem["code"], problem["message"], problem.get("errors"),
                           retry_after_s)
        except (ValueError, KeyError, TypeError, RecursionError):
            raise ApiError(answer.status_code, f"http_{answer.status_code}",
                           answer.text.strip() or answer.reason_phrase, retry_after_s=retry_after_s) from None

    async def healthz(self) -> None:
        await self.request("GET", "/healthz")

    async def me(self) -> dict[str, Any]:
        return await self.request("GET", "/accounts/me")  # type: ignore[no-any-return]

    async def portfolio(self) -> dict[str, Any]:
        return await self.request("GET", "/portfolio")  # type: ignore[no-any-return]

    async def orders(self, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        answer = await self.request("GET", "/orders", params={"status": status, "limit": limit})
        return answer["orders"]  # type: ignore[no-any-return]

    async def trades(self, size: int = 100) -> list[dict[str, Any]]:
        answer = await self.request("GET", "/trades/search", params={"size": size})
        return answer["trades"]  # type: ignore[no-any-return]

    async def place(self, body: dict[str, Any], idempotency_key: str) -> dict[str, Any]:
        """Raises ValueError for a key no request can carry (`idempotency_key_error`)."""
        if problem := idempotency_key_error(idempotency_key):
            raise ValueError(f"the Idempotency-Key {problem}, got {idempotency_key!r}")
        return await self.request("POST", "/orders", json_body=body,  # type: ignore[no-any-return]
                                  headers={"Idempotency-Key": idempotency_key}, timeout_s=self.place_timeout_s)

    async def order(self, order_id: str) -> dict[str, Any]:
        """GET /orders/{id}; raises ValueError for a text that is not an order id (it would reach another route)."""
        return await self.request("GET", _order_path(order_id))  # type: ignore[no-any-return]

    async def cancel(self, order_id: str) -> dict[str, Any]:
        """Raises ValueError for a text that is not an order id (it would reach another route)."""
        return await self.request("DELETE", _order_path(order_id))  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        await self._client.aclose()


def _order_path(order_id: str) -> str:
    """`/orders/{order_id}`; raises ValueError for a text that is not an order id."""
    if not is_path_id(order_id):
        raise ValueError(f"{order_id!r} is not an order id (letters, digits and _.:- only, at most 64)")
    return f"/orders/{order_id}"
