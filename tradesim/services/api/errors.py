"""Every error is a JSON problem body `{"code", "message", "request_id", ...}` with a stable `code`."""

from __future__ import annotations

import json
import logging
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from tradesim.adapters.clickhouse.errors import ClickHouseRefused
from tradesim.adapters.dynamodb.errors import DynamoDBError
from tradesim.adapters.kafka.errors import KafkaDeliveryError, KafkaUnavailable
from tradesim.adapters.search.errors import SearchRequestError
from tradesim.ports import StoreFull, Unavailable
from tradesim.services.api.schemas import field_message
from tradesim.services.api.strict_json import NotStrictJson
from tradesim.services.api.windows import TIME_PATTERN, not_a_time

log = logging.getLogger("tradesim.api.errors")


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    """An error answer."""

    code: str = Field(description="stable machine-readable error code, e.g. `insufficient_funds`")
    message: str = Field(description="what went wrong, for people")
    request_id: str | None = Field(None, description="the request's X-Request-ID")
    errors: list[FieldError] | None = Field(None, description="field errors of a 422 `invalid_request`")
    order_id: str | None = Field(None, description="the order of a 503 `outcome_unknown`: retry with the same "
                                 "Idempotency-Key, or look it up")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None,
                 **extra: Any) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.extra = extra  # more fields of the body, e.g. the order id of `outcome_unknown`
        super().__init__(f"{status} {code}: {message}")


def unauthorized(message: str = "missing or unknown API key (send `Authorization: Bearer <key>`)") -> ApiError:
    return ApiError(401, "unauthorized", message, {"WWW-Authenticate": "Bearer"})


def problem_bytes(code: str, message: str, request_id: str | None) -> bytes:
    """A problem body as bytes, for the answers given below FastAPI (the key gate, the HTTP protocol)."""
    return json.dumps({"code": code, "message": message, "request_id": request_id}).encode()


def problem(request: Request, status: int, code: str, message: str, headers: dict[str, str] | None = None,
            **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message,
                            "request_id": getattr(request.state, "request_id", None)}
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, headers=headers)


_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 406: "not_acceptable", 413: "payload_too_large",
               415: "unsupported_media_type"}


def _message(error: dict[str, Any]) -> str:
    """A request field's message (`field_message`), a time query parameter's included."""
    if (error.get("ctx") or {}).get("pattern") == TIME_PATTERN:
        return not_a_time(error.get("input"))
    return field_message(error)


def install(app: FastAPI, retry_after_s: int) -> None:
    """Register the handlers that turn every failure into a problem body."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return problem(request, exc.status, exc.code, exc.message, exc.headers, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        if any(e.get("type") == "json_invalid" for e in errors):
            return problem(request, 400, "malformed_json", "the request body is not valid JSON")
        if any(tuple(e.get("loc", ())) == ("body",) and e.get("type") == "missing" for e in errors):
            return problem(request, 400, "malformed_json", "the request body is empty; send a JSON object")
        if any(tuple(e.get("loc", ())) == ("body",) and isinstance(e.get("input"), bytes) for e in errors):
            # FastAPI reads a body without a JSON content type as bytes, which no model takes
            return problem(request, 415, "unsupported_media_type",
                           "send the body as JSON with `Content-Type: application/json`")
        fields = [{"loc": [p for p in e.get("loc", ()) if isinstance(p, str | int)], "msg": _message(e),
                   "type": str(e.get("type", ""))} for e in errors]
        first = fields[0] if fields else {"loc": [], "msg": "invalid"}
        where = ".".join(str(p) for p in first["loc"] if p != "body") or "request"
        return problem(request, 422, "invalid_request", f"{where}: {first['msg']}", errors=fields)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and isinstance(exc.__cause__, NotStrictJson):
            return problem(request, 400, "malformed_json", str(exc.__cause__))
        if exc.status_code == 400 and isinstance(exc.__cause__, ValueError | RecursionError):
            # FastAPI's body parse failing past the JSON decoder: nested too deep, a number too long to read
            reason = ("nested too deep" if isinstance(exc.__cause__, RecursionError)
                      else "a number too long to read (over 4,300 digits)" if "digits" in str(exc.__cause__)
                      else str(exc.__cause__))
            return problem(request, 400, "malformed_json", f"the request body is not valid JSON: {reason}")
        code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        return problem(request, exc.status_code, code, str(exc.detail), dict(exc.headers or {}))

    async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
        cause = exc.__cause__  # the client's own words, which the answer leaves out (a URL, retry state)
        log.warning("dependency unavailable", extra={"error": str(exc), "path": request.url.path,
                                                     "cause": None if cause is None else str(cause)[:2000]})
        return problem(request, 503, "unavailable", f"a backing service is unavailable, retry later: {exc}",
                       {"Retry-After": str(retry_after_s)})

    for exc_type in (Unavailable, redis.RedisError, KafkaUnavailable, KafkaDeliveryError):
        app.add_exception_handler(exc_type, _unavailable)

    async def _full(request: Request, exc: Exception) -> JSONResponse:
        # a write Redis refused for memory that no route went on without: say so, not the pipeline's own words
        log.warning("redis refused a write for memory", extra={"error": str(exc)[:2000], "path": request.url.path})
        return problem(request, 503, "store_full", "Redis is at its memory cap and refuses writes; retry later",
                       {"Retry-After": str(retry_after_s)})

    for exc_type in (StoreFull, redis.exceptions.OutOfMemoryError):
        app.add_exception_handler(exc_type, _full)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error", exc_info=exc, extra={"path": request.url.path})
        # Starlette re-raises after this answer and uvicorn then closes the connection: say so, or a client's next
        # request on it (perhaps a POST) fails as a reset
        return problem(request, 500, "internal_error", "an unexpected error occurred; see the server log",
                       {"Connection": "close"})

    @app.exception_handler(DynamoDBError)
    async def _store(request: Request, exc: DynamoDBError) -> JSONResponse:
        log.error("store refused a request", extra={"error": str(exc)})
        return problem(request, 503, "store_error", f"the store refused the request: {exc}",
                       {"Retry-After": str(retry_after_s)})

    async def _read_model(request: Request, exc: Exception) -> JSONResponse:
        # what answers at a read model's address is not it, or the cluster refused a query the API built: the
        # operator's to fix, the same for every retry; the ledger's routes keep working (/portfolio without its
        # read-model fields, `degraded`)
        log.error("read model refused a request", extra={"error": str(exc), "path": request.url.path})
        return problem(request, 503, "read_model_error", f"a read model refused the request: {exc}",
                       {"Retry-After": str(retry_after_s)})

    for refusal in (ClickHouseRefused, SearchRequestError):
        app.add_exception_handler(refusal, _read_model)


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries (Problem bodies) for the given error statuses."""
    text = {400: "Malformed JSON, or a search cursor not handed out for this query",
            401: "Missing or unknown API key",
            403: "Not yours / admin only / a user key's route",
            404: "Not found (order, account, portfolio)", 409: "Conflict",
            415: "The body is not sent as application/json",
            422: "Invalid fields, unknown symbol, stale price, insufficient funds or shares",
            429: "Rate limit exceeded (see Retry-After)", 503: "A backing service is unavailable (see Retry-After)"}
    retry = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}
    return {s: {"model": Problem, "description": text.get(s, "Error"),
                **({"headers": retry} if s in (429, 503) else {})} for s in statuses}
