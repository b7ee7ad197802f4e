"""Redis at its memory cap (docs/design/redis-full.md): what the stack tells Redis to drop, and what the API does
when a write is refused all the same. The API runs in process against a fake Redis that refuses writes needing
memory, as `maxmemory` does with nothing left to evict, and in-memory stand-ins for DynamoDB and Kafka."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from redis.client import NEVER_DECODE
from redis.exceptions import OutOfMemoryError

from tests.unit.api_answers import answer_to_raising
from tradesim.adapters.dynamodb.accounts import Account, hash_key
from tradesim.adapters.dynamodb.orders import order_item
from tradesim.adapters.redis import idempotency
from tradesim.adapters.redis.prices import price_key
from tradesim.adapters.tracing import Tracing
from tradesim.domain.events import OrderPlaced
from tradesim.ports import StoreFull
from tradesim.services.api import resources as resources_module
from tradesim.services.api.app import create_app
from tradesim.services.api.resources import Resources
from tradesim.settings import Settings
from tradesim.stack.redis import Redis
from tradesim.testing.factories import tick

KEY = "alice-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
#: the commands of ours Redis refuses at its cap (flagged `denyoom`); reads, EXPIRE and DEL go on
DENYOOM = frozenset({"incr", "set"})
OOM = "command not allowed when used memory > 'maxmemory'."


@dataclass
class FullRedis:
    """The asyncio client's calls the order path makes, on dicts; `full`: writes that need memory answer OOM."""

    strings: dict[str, str] = field(default_factory=dict)
    hashes: dict[str, dict[str, str | bytes]] = field(default_factory=dict)  # bytes: a value as any writer left it
    full: bool = True
    refused: list[str] = field(default_factory=list)
    ttls: dict[str, int] = field(default_factory=dict)  # key → the TTL last given to it (s or ms, as given)

    def pipeline(self, transaction: bool = False) -> Pipe:
        return Pipe(self)

    def register_script(self, source: str) -> Script:
        return Script(self, source)

    async def hmget(self, key: str, fields: list[str]) -> list[Any]:
        return self.run("hmget", key, fields)

    async def hgetall(self, key: str) -> dict[str, str]:
        return self.run("hgetall", key)

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        return self.run("execute_command", *args, **options)

    def run(self, name: str, key: str, *args: Any, nx: bool = False, **ttl: Any) -> Any:
        if name in DENYOOM and self.full:
            self.refused.append(name)
            return OutOfMemoryError(OOM)
        if name == "incr":
            self.strings[key] = str(int(self.strings.get(key, "0")) + 1)
            return int(self.strings[key])
        if name == "expire":
            if key in self.strings:
                self.ttls[key] = args[0]
            return int(key in self.strings)
        if name == "set":
            if nx and key in self.strings:
                return None
            self.strings[key] = args[0]
            self.ttls.pop(key, None)
            if ttl.get("ex") or ttl.get("px"):
                self.ttls[key] = ttl.get("ex") or ttl["px"]
            return True
        if name == "get":
            return self.strings.get(key)
        if name == "hmget":  # decoded, as the API's client does: a value not UTF-8 raises UnicodeDecodeError
            found = [self.hashes.get(key, {}).get(f) for f in args[0]]
            return [v.decode() if isinstance(v, bytes) else v for v in found]
        if name == "execute_command" and key == "HMGET" and NEVER_DECODE in ttl:  # answered as bytes
            found = [self.hashes.get(args[0], {}).get(f) for f in args[1:]]
            return [v.encode() if isinstance(v, str) else v for v in found]
        if name == "hgetall":
            return dict(self.hashes.get(key, {}))
        raise NotImplementedError(name)


@dataclass
class Pipe:
    redis: FullRedis
    queued: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = field(default_factory=list)

    def __getattr__(self, name: str) -> Any:
        def queue(*args: Any, **kwargs: Any) -> Pipe:
            self.queued.append((name, args, kwargs))
            return self
        return queue

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        answers = [self.redis.run(name, *args, **kwargs) for name, args, kwargs in self.queued]
        first = next((a for a in answers if isinstance(a, Exception)), None)
        if raise_on_error and first is not None:
            raise first  # as redis-py: every command ran, the first error is raised
        return answers


@dataclass
class Script:
    redis: FullRedis
    source: str

    async def __call__(self, keys: list[str], args: list[Any]) -> Any:
        if self.source == idempotency._RELEASE:  # compare-and-delete: a DEL needs no memory
            return int(self.redis.strings.get(keys[0]) == args[0] and bool(self.redis.strings.pop(keys[0])))
        raise NotImplementedError("no other script runs on these paths")


class Orders:
    """`Orders` claims: a conditional put per order id."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}

    def claim(self, order: OrderPlaced) -> dict[str, Any] | None:
        if order.order_id in self.items:
            return dict(self.items[order.order_id])
        self.items[order.order_id] = order_item(order)
        return None

    def get(self, order_id: str) -> dict[str, Any] | None:
        return dict(self.items[order_id]) if order_id in self.items else None

    def mark_replayed(self, order: OrderPlaced) -> bool:
        self.items[order.order_id]["replayed"] = True
        return True


class Kafka:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def send(self, topic: str, key: bytes, value: bytes, headers: Any = None) -> None:
        self.sent.append(key)


@pytest.fixture
def redis() -> FullRedis:
    r = FullRedis()
    now_ms = str(int(time.time() * 1000))
    r.hashes[price_key("ACME")] = {"tick": tick("ACME", 1).model_dump_json(), "updated_ms": now_ms}
    r.hashes["pf:alice"] = {"v": "1", "cash": "100000", "n": "0"}
    return r


def _resources(settings: Settings, redis: FullRedis, rate_limit_per_s: int | None = None) -> Resources:
    res = Resources(settings=settings, redis=redis, kafka=Kafka(), db=SimpleNamespace(settings=settings.dynamodb),
                    admin_key="admin-key", search=None, analytics=None, tracing=Tracing.off())
    alice = Account("alice", hash_key(KEY), Decimal(100_000), 0, rate_limit_per_s)
    res.accounts = SimpleNamespace(by_key_hash=lambda h: alice if h == alice.api_key_hash else None)
    res.orders = Orders()
    return res


def _calls(res: Resources, *requests: tuple[str, str, dict[str, Any]]) -> list[httpx.Response]:
    app = create_app(res.settings, res)
    app.state.resources = res  # what the lifespan does; httpx's ASGI transport sends no lifespan events

    async def go() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
            return [await client.request(method, path, **kw) for method, path, kw in requests]

    return asyncio.run(go())


def _degraded(what: str) -> float:
    return REGISTRY.get_sample_value("tradesim_api_degraded_total", {"what": what}) or 0.0


def test_the_stacks_redis_evicts_only_keys_with_a_ttl(settings: Settings) -> None:
    """Counters, Idempotency-Key records and holdings views carry a TTL and may go; prices and bars carry none."""
    server = Redis(settings)
    server.configure()
    lines = (server.dir / "redis.conf").read_text().splitlines()
    assert f"maxmemory {settings.redis.maxmemory_mb}mb" in lines
    assert "maxmemory-policy volatile-lru" in lines


def test_the_docker_runtimes_redis_has_the_native_stacks_cap_and_policy() -> None:
    """A review: the compose file's Redis had no cap at all, so the docker runtime's never evicted and grew."""
    import yaml

    from tradesim.adapters.redis.client import MAXMEMORY_POLICY
    from tradesim.settings import RedisSettings

    compose = yaml.safe_load((Path(__file__).resolve().parents[2] / "docker" / "compose.yaml").read_text())
    argv = compose["services"]["redis"]["command"]
    given = dict(zip(argv[1::2], argv[2::2], strict=False))
    cap = RedisSettings.model_fields["maxmemory_mb"].default
    assert (given["--maxmemory"], given["--maxmemory-policy"]) == (f"{cap}mb", MAXMEMORY_POLICY)


def test_every_key_an_order_leaves_in_redis_carries_a_ttl(settings: Settings, redis: FullRedis) -> None:
    """Only keys with a TTL may be evicted: what the order path writes must be among them, or it fills Redis."""
    redis.full = False
    res = _resources(settings, redis)
    order = {"json": {"symbol": "ACME", "side": "buy", "qty": 1}, "headers": {**AUTH, "Idempotency-Key": "k1"}}
    (placed,) = _calls(res, ("POST", "/orders", order))
    assert placed.status_code == 202, placed.text
    assert {k.split(":")[0] for k in redis.strings} == {"rl", "idem"}
    assert set(redis.ttls) == set(redis.strings)


def test_an_order_goes_on_at_a_full_redis_guarded_by_its_claim_in_orders(settings: Settings,
                                                                        redis: FullRedis) -> None:
    """Before: the rate limiter's INCR was refused for memory and every POST /orders answered 503."""
    res = _resources(settings, redis)
    before = _degraded("rate_limit"), _degraded("idempotency")
    order = {"json": {"symbol": "ACME", "side": "buy", "qty": 1}, "headers": {**AUTH, "Idempotency-Key": "k1"}}
    first, again = _calls(res, ("POST", "/orders", order), ("POST", "/orders", order))

    assert first.status_code == 202, first.text
    assert again.status_code == 202, again.text  # the retry finds the claim in `Orders`: the same order
    assert again.json()["order_id"] == first.json()["order_id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert list(res.orders.items) == [first.json()["order_id"]]
    assert {"incr", "set"} <= set(redis.refused)
    assert not redis.strings  # Redis kept nothing of either request
    assert (_degraded("rate_limit") - before[0], _degraded("idempotency") - before[1]) == (2, 2)


def test_the_rate_limit_is_counted_in_the_process_while_redis_refuses_its_count(
        settings: Settings, redis: FullRedis, monkeypatch: pytest.MonkeyPatch) -> None:
    """Orders and reads alike: the limit holds (per API process), rather than refusing or passing everything."""
    monkeypatch.setattr(resources_module, "time", SimpleNamespace(time=lambda: 1_000.25, monotonic=time.monotonic))
    res = _resources(settings, redis, rate_limit_per_s=2)
    order = {"json": {"symbol": "ACME", "side": "buy", "qty": 1}, "headers": AUTH}
    read = {"headers": AUTH}
    answers = _calls(res, ("POST", "/orders", order), ("GET", "/orders/o_none", read), ("POST", "/orders", order),
                     ("GET", "/orders/o_none", read))
    assert [a.status_code for a in answers] == [202, 404, 429, 429]
    assert answers[2].json()["code"] == "rate_limited"
    assert answers[2].headers["Retry-After"] == "1"
    assert len(res.kafka.sent) == 1


def test_a_redis_count_that_has_room_still_decides(settings: Settings, redis: FullRedis) -> None:
    redis.full = False
    res = _resources(settings, redis, rate_limit_per_s=1)
    order = {"json": {"symbol": "ACME", "side": "buy", "qty": 1}, "headers": AUTH}
    redis.strings[f"rl:{hash_key(KEY)[:32]}:{int(time.time())}"] = "5"  # another API process counted these
    redis.strings[f"rl:{hash_key(KEY)[:32]}:{int(time.time()) + 1}"] = "5"  # (the second may turn meanwhile)
    (answer,) = _calls(res, ("POST", "/orders", order))
    assert answer.status_code == 429


@pytest.mark.parametrize("refusal", [StoreFull("redis: " + OOM), OutOfMemoryError(OOM)])
def test_a_write_redis_refuses_for_memory_is_a_clear_503(refusal: Exception) -> None:
    """Before: 503 `unavailable` quoting the pipeline ("Command # 1 (INCRBY rl:<key hash>:...) of pipeline ...")."""
    answer = answer_to_raising(refusal, retry_after_s=3)
    assert answer.status_code == 503
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["Retry-After"] == "3"
    assert answer.json() == {"code": "store_full", "request_id": None,
                             "message": "Redis is at its memory cap and refuses writes; retry later"}
