"""Prometheus metrics of the API (served at /metrics on the API's own port)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess

from tradesim.settings import Settings

_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
REQUESTS = Counter("tradesim_api_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram("tradesim_api_request_seconds", "HTTP request latency", ["method", "route"], buckets=_BUCKETS)
KAFKA_PUBLISH = Histogram("tradesim_api_kafka_publish_seconds", "Produce → acknowledged latency", ["event"],
                          buckets=_BUCKETS)
KAFKA_ERRORS = Counter("tradesim_api_kafka_publish_errors_total", "Records Kafka did not acknowledge", ["event"])
STORE_LATENCY = Histogram("tradesim_api_store_seconds", "Redis / DynamoDB call latency", ["store", "op"],
                          buckets=_BUCKETS)
DEGRADED = Counter("tradesim_api_degraded_total", "Requests served with a protection weakened because Redis refused "
                   "its write for memory (rate_limit: counted in one API process only; idempotency: the key's "
                   "Redis record not written, its claim in Orders guards it alone)", ["what"])
STORE_ERRORS = Counter("tradesim_api_store_errors_total", "Failed Redis / DynamoDB calls", ["store", "op"])
ORDERS = Counter("tradesim_api_orders_total", "POST /orders outcomes", ["outcome"])
ORDER_RECORD_FAILURES = Counter("tradesim_api_order_record_failures_total",
                                "Accepted orders whose Idempotency-Key answer could not be kept in Redis after the "
                                "Kafka ack (a retry then finds the order's claim in Orders)")

T = TypeVar("T")


@contextmanager
def timed(store: str, op: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    except Exception:
        STORE_ERRORS.labels(store, op).inc()
        raise
    finally:
        STORE_LATENCY.labels(store, op).observe(time.perf_counter() - start)


async def atimed(store: str, op: str, call: Callable[[], Awaitable[T]]) -> T:
    with timed(store, op):
        return await call()


def route_of(scope: Mapping[str, Any]) -> str:
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"


def fresh_multiprocess_dir(settings: Settings) -> Path:
    """An empty folder for the workers' metric files (left-overs of an earlier run would add to the counts)."""
    path = settings.stack_dir / "api" / f"metrics-{settings.api.port}"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def exposition() -> tuple[bytes, str]:
    """/metrics of this process, or of every worker when uvicorn runs several (multiprocess mode)."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
