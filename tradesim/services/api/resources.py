"""The clients one API process holds (created at startup, closed at shutdown) and the API-key cache."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

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
from tradesim.ports import TradeAnalytics, TradeSearch
from tradesim.services.api import metrics
from tradesim.services.api.admin_key import load_admin_key
from tradesim.settings import Settings


@dataclass
class Resources:
    settings: Settings
    redis: aredis.Redis
    kafka: AckedProducer
    db: DynamoDB
    admin_key: str
    search: TradeSearch
    analytics: TradeAnalytics
    #: what close() calls besides the clients above (the read models' own clients)
    closers: list[Callable[[], None]] = field(default_factory=list)
    idempotency: IdempotencyStore = field(init=False)
    limiter: RateLimiter = field(init=False)
    accounts: AccountStore = field(init=False)
    orders: OrderStore = field(init=False)
    portfolios: PortfolioStore = field(init=False)
    view: PortfolioView = field(init=False)
    _keys: dict[str, tuple[Account, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        api = self.settings.api
        self.idempotency = IdempotencyStore(self.redis, pending_ttl_s=max(60, int(api.kafka_timeout_s * 4)),
                                            done_ttl_s=api.idempotency_ttl_s)
        self.limiter = RateLimiter(self.redis)
        self.accounts = AccountStore(self.db)
        self.orders = OrderStore(self.db)
        self.portfolios = PortfolioStore(self.db)
        self.view = PortfolioView(self.redis)

    @property
    def stale_after_s(self) -> float:
        return self.settings.api.price_stale_after_s or self.settings.marketdata.stale_after_s

    async def account_for(self, api_key_hash: str) -> Account | None:
        """The key's account, cached for api.auth_cache_s (unknown keys are not cached). Raises Unavailable."""
        hit = self._keys.get(api_key_hash)
        now = time.monotonic()
        if hit is not None and hit[1] > now:
            return hit[0]
        with metrics.timed("dynamodb", "account_by_key"):
            account = await anyio.to_thread.run_sync(self.accounts.by_key_hash, api_key_hash)
        if account is not None and self.settings.api.auth_cache_s > 0:
            if len(self._keys) > 100_000:
                self._keys.clear()
            self._keys[api_key_hash] = (account, now + self.settings.api.auth_cache_s)
        return account

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
                   closers=[search.close, analytics.close])

    async def close(self) -> None:
        await anyio.to_thread.run_sync(self.kafka.close)
        await self.redis.aclose()
        self.db.close()
        for close in self.closers:
            close()
