"""The FastAPI application: routers, problem-body errors, request ids, metrics."""

from __future__ import annotations

import gc
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import tradesim
from tradesim.services.api import accounts, analytics, errors, health, metrics, orders, portfolio, trades
from tradesim.services.api.gate import Gate
from tradesim.services.api.resources import Resources
from tradesim.settings import Settings

log = logging.getLogger("tradesim.api")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")


class RequestContext:
    """Pure ASGI middleware (no per-request task like BaseHTTPMiddleware): X-Request-ID in and out, metrics."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), "")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        start = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = metrics.route_of(scope)
            method = scope["method"]
            metrics.LATENCY.labels(method, route).observe(time.perf_counter() - start)
            metrics.REQUESTS.labels(method, route, str(status)).inc()
            if status >= 500:
                log.error("request failed", extra={"request_id": request_id, "route": route, "status": status})


def create_app(settings: Settings, resources: Resources | None = None, *, tune_gc: bool = False) -> FastAPI:
    """The app; `resources` are opened at startup unless given (tests may pass their own). `tune_gc`: the app
    owns its process (the API's entry point and its uvicorn workers), so it may tune the garbage collector."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        res = resources or Resources.open(settings)
        app.state.resources = res
        if tune_gc:
            # Startup objects (routes, models, clients) never die: keep them out of the cyclic GC, and collect the
            # young generation less often. Each request allocates thousands of short-lived objects; at the default
            # threshold (700) a collection ran every few requests and showed in the p99. Process-wide, so only
            # when the API owns its process: in a host that keeps many objects alive (a test session embedding
            # the app) the larger generations made collections long enough to stall other threads.
            gc.freeze()
            gc.set_threshold(20_000, 50, 50)
        try:
            yield
        finally:
            if resources is None:
                await res.close()

    # FastAPI's OpenTelemetry hooks are off: metrics are Prometheus (/metrics), and the hooks' per-request checks
    # of the global OTel providers cost more than some routes
    app = FastAPI(title="tradesim order API", version=tradesim.__version__, lifespan=lifespan,
                  telemetry={"tracing": False, "metrics": False, "logs": False},
                  description="Accounts, orders, portfolio, trade history and analytics of the tradesim trading "
                  "simulator. Errors are problem bodies `{code, message, request_id}`; money is a decimal string.")
    errors.install(app, settings.api.retry_after_s)
    app.include_router(health.router)
    app.include_router(accounts.router)
    app.include_router(orders.router)
    app.include_router(portfolio.router)
    app.include_router(trades.router)
    app.include_router(analytics.router)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        body, media_type = metrics.exposition()
        return Response(body, media_type=media_type)

    app.add_middleware(Gate, max_body_bytes=settings.api.max_body_bytes, body_timeout_s=settings.api.body_timeout_s)
    app.add_middleware(RequestContext)  # outermost: the gate's answers carry the request id too
    return app


def app_from_env() -> FastAPI:
    """Factory for uvicorn workers: settings from the TRADESIM_* environment, and the service's JSON log lines (a
    worker is a fresh interpreter: before, its lines were bare messages, their fields dropped)."""
    from tradesim import logs
    from tradesim.settings import load_settings

    logs.setup("api")
    _exit_with_the_server()
    return create_app(load_settings(), tune_gc=True)


def _exit_with_the_server() -> None:
    """In a uvicorn worker: get SIGTERM when the server process dies (see tradesim.lifetime)."""
    import multiprocessing
    import signal

    from tradesim.lifetime import die_with_parent

    parent = multiprocessing.parent_process()
    if parent is not None and parent.pid is not None:  # None: the server itself (one worker)
        die_with_parent(parent.pid, signal.SIGTERM)
