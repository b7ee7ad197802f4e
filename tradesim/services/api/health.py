"""/healthz (the process answers) and /readyz (Kafka, Redis and DynamoDB answer)."""

from __future__ import annotations

import asyncio

import anyio
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from tradesim.services.api.deps import Res
from tradesim.services.api.schemas import Health, Readiness

router = APIRouter(tags=["health"])
_TIMEOUT_S = 2.0


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is up (no backing service is asked)."""
    return Health()


@router.get("/readyz", response_model=Readiness,
            responses={503: {"model": Readiness, "description": "A backing service is unavailable",
                             "headers": {"Retry-After": {"description": "seconds to wait",
                                                         "schema": {"type": "integer"}}}}})
async def readyz(res: Res) -> JSONResponse:
    """Ready when Kafka, Redis and DynamoDB each answer within 2 s."""

    async def kafka() -> None:
        await anyio.to_thread.run_sync(res.kafka.ping, _TIMEOUT_S)

    async def redis() -> None:
        await res.redis.ping()

    async def dynamodb() -> None:
        await anyio.to_thread.run_sync(lambda: res.db.client.describe_table(TableName=res.orders.table))

    names = ("kafka", "redis", "dynamodb")
    results = await asyncio.gather(*(asyncio.wait_for(c(), _TIMEOUT_S + 1) for c in (kafka, redis, dynamodb)),
                                   return_exceptions=True)
    checks = {n: "ok" if r is None else f"{type(r).__name__}: {r}"[:300] for n, r in zip(names, results, strict=True)}
    ready = all(v == "ok" for v in checks.values())
    body = Readiness(status="ready" if ready else "unavailable", checks=checks)
    headers = None if ready else {"Retry-After": str(res.settings.api.retry_after_s)}
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503, headers=headers)
