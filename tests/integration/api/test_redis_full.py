"""A Redis at its cap with nothing it may evict (maxmemory, its memory held by keys without a TTL) degrades the API,
it does not refuse trading: rate limits are counted in each API process, an order with an Idempotency-Key goes on
guarded by its claim in `Orders` alone (a retry gets that order again), and everything recovers once space frees.
Per key family: docs/design/redis-full.md."""

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
    """Redis with its cap lowered to just above what it holds, then filled with keys without a TTL (which it may
    not evict) until it refuses writes."""
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
        # hold it full: expiring and evicted keys (rate-limit counters, records with a TTL) free a few bytes now
        # and then, which would let a small write through; a cap 2 MiB under what it holds refuses writes until
        # real space frees
        r.config_set("maxmemory", int(r.info("memory")["used_memory"]) - 2 * 1024 * 1024)
        yield r
    finally:
        for key in r.scan_iter(f"fill:{tag}:*", count=1000):
            r.delete(key)
        r.config_set("maxmemory", original)
        r.close()


def test_a_full_redis_degrades_and_recovers(http: httpx.Client, user: User, symbol: str,
                                            full_redis: redis.Redis) -> None:
    assert http.get("/accounts/me", headers=user.auth).status_code == 200  # counted in the API process
    assert http.get("/orders", headers=user.auth).status_code == 200
    key = {"Idempotency-Key": secrets.token_hex(8)}
    placed = http.post("/orders", json=order(symbol), headers={**user.auth, **key})
    assert placed.status_code == 202, placed.text  # no Redis record of the key: its claim in `Orders` guards it
    order_id = placed.json()["order_id"]
    again = http.post("/orders", json=order(symbol), headers={**user.auth, **key})
    assert again.status_code == 202, again.text
    assert (again.json()["order_id"], again.headers["idempotent-replayed"]) == (order_id, "true")
    assert [o["order_id"] for o in http.get("/orders", headers=user.auth).json()["orders"]] == [order_id]

    metrics = http.get("/metrics").text
    assert 'tradesim_api_degraded_total{what="rate_limit"}' in metrics
    assert 'tradesim_api_degraded_total{what="idempotency"}' in metrics

    for key_name in full_redis.scan_iter("fill:*", count=1000):  # space frees
        full_redis.delete(key_name)
    later = http.post("/orders", json=order(symbol), headers={**user.auth, **key})
    assert later.status_code == 202, later.text  # the same request, retried, is still that one order
    assert later.json()["order_id"] == order_id
    assert [o["order_id"] for o in http.get("/orders", headers=user.auth).json()["orders"]] == [order_id]


def test_the_exporter_counts_the_writes_a_full_redis_refused(settings: Settings, full_redis: redis.Redis) -> None:
    """The alert's counter read from the live server: the reply's name and shape (`errorstat_OOM`, `count=`) are
    Redis's, which a unit test can only assume."""
    from prometheus_client import REGISTRY

    from tradesim.stack import exporter

    probe = exporter.Exporter.__new__(exporter.Exporter)  # the Redis source only: no Kafka, Flink or stack
    probe.settings = settings
    for name in ("_components", "_lags", "_disk", "_flink"):
        setattr(probe, name, lambda: None)

    def refused() -> float | None:
        probe.run_once()
        return REGISTRY.get_sample_value("tradesim_redis_refused_writes_total")

    before = refused()
    assert before is not None
    assert before >= 1  # the fixture's filling ended on a refused write
    for _ in range(3):
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            full_redis.set(f"fill:{secrets.token_hex(4)}:0", b"x" * CHUNK)
    assert (refused() or 0) >= before + 3  # more if a stack process was refused meanwhile
