"""The components of the stack, in start order (each starts once the ones it `needs` answer; the others side by
side). A new server is one more module and one more line here."""

from __future__ import annotations

from tradesim.settings import Settings
from tradesim.stack.api import ApiService
from tradesim.stack.clickhouse import ClickHouse
from tradesim.stack.component import Component
from tradesim.stack.dynamodb import DynamoDB
from tradesim.stack.errors import UserError
from tradesim.stack.flink import Flink
from tradesim.stack.jaeger import Jaeger
from tradesim.stack.kafka import Kafka
from tradesim.stack.market import MarketService
from tradesim.stack.marketdata import MarketDataService
from tradesim.stack.opensearch import OpenSearch
from tradesim.stack.persistence import PersistenceService
from tradesim.stack.prometheus import Prometheus, StackExporter
from tradesim.stack.redis import Redis
from tradesim.stack.toxiproxy import ToxiproxyServer

COMPONENT_TYPES: tuple[type[Component], ...] = (
    Kafka, Redis, DynamoDB, OpenSearch, ClickHouse,
    # optional (chaos.enabled): the proxies the services and jobs then reach Redis and DynamoDB through
    ToxiproxyServer,
    # optional (tracing.enabled): receives spans before any service or job sends one
    Jaeger,
    Flink,
    # services start after the servers they use
    MarketDataService,
    PersistenceService,
    ApiService,
    # observability: the exporter reads the others' state; Prometheus scrapes everything
    StackExporter,
    Prometheus,
    # on demand: runs only after `tradesim market start` (see stack/market.py)
    MarketService,
)
NAMES: tuple[str, ...] = tuple(c.name for c in COMPONENT_TYPES)


def build(settings: Settings, only: list[str] | None = None) -> list[Component]:
    """Components to act on, in start order; raises UserError for an unknown name."""
    wanted = [n.strip() for n in only if n.strip()] if only else list(NAMES)
    if only and not wanted:
        raise UserError(f"no component named (an empty name); known: {', '.join(NAMES)}")
    unknown = [n for n in wanted if n not in NAMES]
    if unknown:
        raise UserError(f"unknown component {', '.join(map(repr, unknown))}; known: {', '.join(NAMES)}")
    return [cls(settings) for cls in COMPONENT_TYPES if cls.name in wanted]
