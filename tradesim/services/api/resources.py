"""The clients one API process holds (created at startup, closed at shutdown) and the API-key cache."""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import anyio
import redis.asyncio as aredis

from tradesim.adapters.clickhouse.trades import TradeStore
from tradesim.adapters.dynamodb.accounts import Account, AccountStore
from tradesim.adapters.dynamodb.client import DynamoDB
from tradesim.adapters.dynamodb.orders import OrderStore
from tradesim.adapters.dynamodb.portfolios import PortfolioStore
from tradesim.adapters.kafka.acked import AckedProducer
from tradesim.adapters.redis.idempotency import IdempotencyStore
from tradesim.adapters.redis.portfolio_view import PortfolioView
from tradesim.adapters.redis.quotes import connect_async
from tradesim.adapters.redis.ratelimit import RateLimiter
from tradesim.adapters.search.trades import TradeIndex
from tradesim.adapters.tracing import API_SERVICE, Tracing
from tradesim.ports import TradeAnalytics, TradeSearch, Unavailable
from tradesim.services.admin_key import load_admin_key
from tradesim.services.api import metrics
from tradesim.settings import Settings

#: entries of the key cache and of the per-address lookup counters before they are dropped (memory bound)
MAX_CACHED_KEYS = 100_000
#: threads a worker gives reads of the read models (OpenSearch, ClickHouse) beside anyio's shared 40, so that one
#: of them stalled holds these and not the threads orders, accounts and readiness checks need
READ_MODEL_THREADS = 16
#: while Redis stays full, one log line per protection it weakens this often (each request counts in the metric)
DEGRADED_LOG_EVERY_S = 60.0
V = TypeVar("V")
log = logging.getLogger("tradesim.api")


def _bounded_put(cache: OrderedDict[str, V], key: str, value: V) -> None:
    """Insert as the newest entry; past MAX_CACHED_KEYS the oldest goes (one at a time, never the whole cache)."""
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > MAX_CACHED_KEYS:
        cache.popitem(last=False)


class LookupsExhausted(Exception):
    """A client address looked up api.unknown_keys_per_s unknown keys this second already."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"{limit} unknown API keys this second from this address")


@dataclass
class Resources:
    settings: Settings
    redis: aredis.Redis
    kafka: AckedProducer
    db: DynamoDB
    admin_key: str
    search: TradeSearch
    analytics: TradeAnalytics
    tracing: Tracing
    #: what close() calls besides the clients above (the read models' own clients)
    closers: list[Callable[[], None]] = field(default_factory=list)
    idempotency: IdempotencyStore = field(init=False)
    limiter: RateLimiter = field(init=False)
    accounts: AccountStore = field(init=False)
    orders: OrderStore = field(init=False)
    portfolios: PortfolioStore = field(init=False)
    view: PortfolioView = field(init=False)
    _keys: OrderedDict[str, tuple[Account, float]] = field(default_factory=OrderedDict)
    _unknown: OrderedDict[str, float] = field(default_factory=OrderedDict)  # key hash → remembered until
    _lookups: OrderedDict[str, tuple[int, int]] = field(default_factory=OrderedDict)  # address → (second, misses)
    _degraded_logged: dict[str, float] = field(default_factory=dict)  # what → when last logged (monotonic)
    #: (turns at a read-model thread, the threads themselves): made in the event loop, at the first read
    _read_limits: tuple[anyio.CapacityLimiter, anyio.CapacityLimiter] | None = None

    def __post_init__(self) -> None:
        api = self.settings.api
        self.idempotency = IdempotencyStore(self.redis, pending_ttl_s=max(60, int(api.kafka_timeout_s * 4)),
                                            done_ttl_s=api.idempotency_ttl_s)
        self.limiter = RateLimiter(self.redis, local_keys=MAX_CACHED_KEYS)
        self.accounts = AccountStore(self.db)
        self.orders = OrderStore(self.db)
        self.portfolios = PortfolioStore(self.db)
        self.view = PortfolioView(self.redis)

    @property
    def stale_after_s(self) -> float:
        return self.settings.stale_price_after_s

    async def account_for(self, api_key_hash: str, client: str | None = None) -> Account | None:
        """The key's account, cached for api.auth_cache_s; a key that matched nothing is remembered as unknown for
        api.unknown_key_cache_s. Once `client` looked up api.unknown_keys_per_s keys this second that were not
        valid (or still are in flight), its lookups past the caches raise LookupsExhausted instead of querying.
        Raises Unavailable."""
        api = self.settings.api
        now = time.monotonic()
        hit = self._keys.get(api_key_hash)
        if hit is not None and hit[1] > now:
            return hit[0]
        unknown_until = self._unknown.get(api_key_hash)
        if unknown_until is not None and unknown_until > now:
            return None
        second = int(now)
        if client is not None:  # counted before the query, so concurrent lookups cannot all pass the check
            misses = self._misses(client, second)
            if misses >= api.unknown_keys_per_s:
                raise LookupsExhausted(api.unknown_keys_per_s)
            _bounded_put(self._lookups, client, (second, misses + 1))
        try:
            with metrics.timed("dynamodb", "account_by_key"):
                account = await anyio.to_thread.run_sync(self.accounts.by_key_hash, api_key_hash)
        except Exception:
            self._uncount(client, second)
            raise
        if account is not None:
            self._uncount(client, second)
            if api.auth_cache_s > 0:
                _bounded_put(self._keys, api_key_hash, (account, now + api.auth_cache_s))
        elif api.unknown_key_cache_s > 0:
            _bounded_put(self._unknown, api_key_hash, now + api.unknown_key_cache_s)
        return account

    def degraded(self, what: str, detail: str) -> None:
        """A request went on with a protection weakened because Redis refused its write for memory: counted in
        `tradesim_api_degraded_total{what}`, logged at most every DEGRADED_LOG_EVERY_S per `what` (a line per
        request would flood the log while Redis stays full)."""
        metrics.DEGRADED.labels(what).inc()
        now = time.monotonic()
        if now - self._degraded_logged.get(what, -math.inf) >= DEGRADED_LOG_EVERY_S:
            self._degraded_logged[what] = now
            log.warning("redis is full and refuses writes: %s", detail, extra={"what": what})

    def _uncount(self, client: str | None, second: int) -> None:
        if client is not None and (seen := self._lookups.get(client)) is not None and seen[0] == second:
            self._lookups[client] = (second, max(0, seen[1] - 1))

    async def read_model(self, call: Callable[..., V], *args: object) -> V:
        """A blocking read of OpenSearch or ClickHouse on the read models' own threads. A request that waits for
        one longer than the stores' timeout raises Unavailable (503): they are stalled or overloaded, and a client
        waits no longer than a read of them may take."""
        if self._read_limits is None:
            self._read_limits = (anyio.CapacityLimiter(READ_MODEL_THREADS), anyio.CapacityLimiter(READ_MODEL_THREADS))
        turns, threads = self._read_limits
        wait_s = max(self.settings.opensearch.timeout_s, self.settings.clickhouse.timeout_s)
        got = False
        with anyio.move_on_after(wait_s):
            await turns.acquire()
            got = True
        if not got:
            raise Unavailable(f"the read models took no request for {wait_s:g} s (stalled, or {READ_MODEL_THREADS} "
                              "reads already wait on them); retry")
        try:
            return await anyio.to_thread.run_sync(call, *args, limiter=threads)
        finally:
            turns.release()

    def forget_keys_of(self, user_id: str) -> None:
        """Drop the user's cached keys from this process (after a key rotation)."""
        for key_hash, (account, _) in list(self._keys.items()):
            if account.user_id == user_id:
                del self._keys[key_hash]

    def _misses(self, client: str, second: int) -> int:
        seen, count = self._lookups.get(client, (second, 0))
        return count if seen == second else 0

    @classmethod
    def open(cls, settings: Settings) -> Resources:
        api = settings.api
        kafka = AckedProducer(settings.kafka, api.kafka_timeout_s)
        kafka.start()
        # the read models' clients connect lazily: the API starts without OpenSearch or ClickHouse, and reads of
        # them answer 503 (the portfolio degrades) until they are back
        search = TradeIndex.from_settings(settings.opensearch)
        analytics = TradeStore.from_settings(settings.clickhouse)
        return cls(settings=settings, redis=connect_async(settings.redis.client_url, api.store_timeout_s),
                   kafka=kafka, db=DynamoDB(settings.dynamodb, timeout_s=api.store_timeout_s, max_attempts=1),
                   admin_key=load_admin_key(settings, create=True) or "", search=search, analytics=analytics,
                   tracing=Tracing(settings.tracing, API_SERVICE, root=True, processes=api.workers),
                   closers=[search.close, analytics.close])

    async def close(self) -> None:
        await anyio.to_thread.run_sync(self.kafka.close)
        await self.redis.aclose()
        self.db.close()
        for close in self.closers:
            close()
        await anyio.to_thread.run_sync(self.tracing.shutdown)
