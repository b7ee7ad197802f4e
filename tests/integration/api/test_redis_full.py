"""A full Redis (maxmemory, noeviction) degrades the API, it does not fail everything: reads that need no Redis
write answer, POST /orders answers 503 with Retry-After (nothing accepted, nothing lost), and everything
recovers once space frees. Per key family: docs/design/redis-full.md."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import httpx
import pytest
import redis

from tradesim.adapters.redis.client import connect
from tradesim.settings import Settings

from .conftest import User, order

pytestmark = pytest.mark.integration
CHUNK = 64 * 1024


@pytest.fixture
def full_redis(settings: Settings) -> Iterator[redis.Redis]:
    """Redis with its cap lowered to just above what it holds, then filled until it refuses writes."""
    r = connect(settings.redis)
    original = r.config_get("maxmemory")["maxmemory"]
    tag = secrets.token_hex(4)
    r.config_set("maxmemory", int(r.info("memory")["used_memory"]) + 4 * 1024 * 1024)
    try:
        for i in range(1_000):  # 64 MiB at most: far more than the 4 MiB of room
            try:
                r.set(f"fill:{tag}:{i}", b"x" * CHUNK)
            except redis.exceptions.OutOfMemoryError:
                break
        else:
            pytest.fail("Redis never refused a write")
        # hold it full: expiring keys (rate-limit counters) free a few bytes every second, which would let a
        # small write through; a cap 2 MiB under what it holds refuses writes until real space frees
        r.config_set("maxmemory", int(r.info("memory")["used_memory"]) - 2 * 1024 * 1024)
        yield r
    finally:
        for key in r.scan_iter(f"fill:{tag}:*", count=1000):
            r.delete(key)
        r.config_set("maxmemory", original)
        r.close()


def test_a_full_redis_degrades_and_recovers(http: httpx.Client, user: User, symbol: str,
                                            full_redis: redis.Redis) -> None:
    assert http.get("/accounts/me", headers=user.auth).status_code == 200  # rate limit counter skipped
    assert http.get("/orders", headers=user.auth).status_code == 200
    key = {"Idempotency-Key": secrets.token_hex(8)}
    refused = http.post("/orders", json=order(symbol), headers={**user.auth, **key})
    assert refused.status_code == 503, refused.text
    assert refused.json()["code"] == "unavailable"
    assert int(refused.headers["retry-after"]) >= 1
    assert http.get("/orders", headers=user.auth).json()["orders"] == []  # nothing was accepted

    metrics = http.get("/metrics").text
    assert 'tradesim_api_degraded_total{what="rate_limit"}' in metrics

    for key_name in full_redis.scan_iter("fill:*", count=1000):  # space frees
        full_redis.delete(key_name)
    placed = http.post("/orders", json=order(symbol), headers={**user.auth, **key})
    assert placed.status_code == 202, placed.text  # the same request, retried, goes through
