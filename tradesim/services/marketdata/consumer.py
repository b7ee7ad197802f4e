"""The consume loops that feed Redis: ticks (market_data → price cache) and bars (market_bars → recent bars).

Both are the same loop: batched consume(), write-through to a Redis cache, dead-letter malformed records, commit
offsets only after a batch is in Redis and its dead letters are in Kafka, so a crash re-delivers; each cache's
ordering guard makes the re-delivery harmless (at-least-once in, exactly-once effect on the cache).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import redis
from confluent_kafka import Consumer, KafkaError, Message
from prometheus_client import Counter, Gauge

from tradesim.adapters.kafka.client import SHORT_SESSION, consumer_lag
from tradesim.adapters.kafka.client import consumer as make_consumer
from tradesim.adapters.kafka.dead_letters import DeadLetterSender
from tradesim.adapters.redis.bars import BarCache
from tradesim.adapters.redis.client import connect
from tradesim.adapters.redis.prices import PriceCache
from tradesim.domain.errors import InvalidRecord
from tradesim.domain.events import Bar, Event, Tick, decode
from tradesim.services.marketdata import metrics
from tradesim.settings import Settings

log = logging.getLogger("tradesim.marketdata.consumer")
#: How long the broker holds a fetch that finds nothing new. A record that arrives meanwhile answers it at once
#: (fetch.min.bytes 1), so this bounds idle polling, not latency: at 10 ms the service's three consumers cost
#: Kafka ~300 empty fetches a second. It also bounds how long a metadata request (the outcome feed's partition
#: refresh, every 10 s) waits behind the connection's pending fetch, hence not librdkafka's 500 ms.
FETCH_WAIT_MS = 100
#: How long Kafka has to acknowledge a batch's dead letters before they are sent again (the batch held meanwhile).
LETTER_DEADLINE_S = 5.0
E = TypeVar("E", bound=Event)


@dataclass(frozen=True)
class Counters:
    received: Counter
    applied: Counter
    ignored: Counter | None
    lag: Gauge


class CacheConsumer(Generic[E]):
    """Consumes `topic` as `group` and writes each batch of `kind` records with `write` (returns how many moved
    the cache)."""

    def __init__(self, settings: Settings, stop: threading.Event, *, topic: str, group: str, kind: type[E],
                 write: Callable[[list[tuple[E, bytes]]], int], counters: Counters,
                 letters: Callable[[], DeadLetterSender] | None = None) -> None:
        self.settings = settings
        self.stop = stop
        self.topic = topic
        self.group = group
        self.kind = kind
        self.write = write
        self.counters = counters
        self._letters = letters or (lambda: DeadLetterSender.connect(
            settings.kafka, settings.topics.dead_letter, "marketdata", LETTER_DEADLINE_S))
        self._consumer: Consumer | None = None
        self._last_lag = 0.0

    def run(self) -> None:
        s = self.settings
        self._consumer = make_consumer(s.kafka, self.group, **{"fetch.wait.max.ms": FETCH_WAIT_MS, **SHORT_SESSION})
        dlq = self._letters()
        self._consumer.subscribe([self.topic])
        log.info("consuming", extra={"topic": self.topic, "group": self.group})
        try:
            while not self.stop.is_set():
                # Block for the first record only, then drain what is already fetched: a quiet feed gets
                # millisecond latency, a busy one still gets batches (consume() alone waits out its timeout).
                first = self._consumer.poll(0.1)
                batch = [] if first is None else [first, *self._consumer.consume(s.marketdata.batch_size - 1, 0)]
                if batch and self._handle(batch, dlq):
                    self._consumer.commit(asynchronous=True)
                dlq.poll()
                self._report_lag()
        finally:
            dlq.close(2)
            self._consumer.close()

    def _handle(self, batch: list[Message], dlq: DeadLetterSender) -> bool:
        """Write the batch's good records and dead-letter the rest; False if the service stopped before both were
        done (the batch's offsets must then stay uncommitted, so the next start re-delivers it)."""
        good: list[tuple[E, bytes]] = []
        letters: list[tuple[Message, str]] = []
        for msg in batch:
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("consume error", extra={"error": str(err), "topic": self.topic})
                continue
            self.counters.received.inc()
            raw = msg.value() or b""
            try:
                good.append((decode(self.kind, raw), raw))
            except InvalidRecord as exc:
                metrics.DEAD_LETTERS.inc()
                reason = f"invalid {self.kind.__name__.lower()}: {exc}"
                log.warning("dead letter", extra={"reason": reason[:500],
                                                  "source": f"{msg.topic()}/{msg.partition()}/{msg.offset()}"})
                letters.append((msg, reason))
        for msg, reason in letters:
            dlq.send(msg, reason)
        return ((not good or self._until_done(lambda: self._write(good)))
                and (not letters or self._until_done(lambda: self._letters_out(letters, dlq))))

    def _write(self, good: list[tuple[E, bytes]]) -> bool:
        try:
            applied = self.write(good)
        except redis.RedisError as exc:
            # Redis restarting: keep the batch (offsets are not committed) and retry.
            metrics.REDIS_ERRORS.inc()
            log.warning("redis write failed, retrying", extra={"error": str(exc)})
            return False
        self.counters.applied.inc(applied)
        if self.counters.ignored is not None:
            self.counters.ignored.inc(len(good) - applied)
        return True

    def _letters_out(self, letters: list[tuple[Message, str]], dlq: DeadLetterSender) -> bool:
        if dlq.delivered(self.stop):
            return True
        if self.stop.is_set():
            return False  # uncommitted: the next start sends them
        metrics.DEAD_LETTER_RETRIES.inc()
        log.warning("dead letters not acknowledged, sending them again",
                    extra={"letters": len(letters), "error": dlq.last_error})
        for msg, reason in letters:
            dlq.send(msg, reason)
        return False

    def _until_done(self, attempt: Callable[[], bool]) -> bool:
        """Repeat `attempt` with a capped backoff until it succeeds (True) or the service stops (False)."""
        backoff = 0.1
        while not self.stop.is_set():
            if attempt():
                return True
            self.stop.wait(backoff)
            backoff = min(backoff * 2, 2.0)
        return False

    def _report_lag(self) -> None:
        now = time.monotonic()
        if now - self._last_lag < 5 or self._consumer is None:
            return
        self._last_lag = now
        lag = consumer_lag(self._consumer)
        if lag is not None:
            self.counters.lag.set(lag)


def tick_consumer(settings: Settings, stop: threading.Event) -> CacheConsumer[Tick]:
    cache = PriceCache(connect(settings.redis, timeout_s=2.0))
    return CacheConsumer(
        settings, stop, topic=settings.topics.market_data, group=settings.marketdata.group_id, kind=Tick,
        write=lambda batch: cache.apply(batch, now_ms=int(time.time() * 1000)),
        counters=Counters(metrics.TICKS_IN, metrics.TICKS_APPLIED, metrics.TICKS_STALE, metrics.LAG))


def bar_consumer(settings: Settings, stop: threading.Event) -> CacheConsumer[Bar]:
    cache = BarCache(connect(settings.redis, timeout_s=2.0))
    return CacheConsumer(
        settings, stop, topic=settings.topics.market_bars, group=f"{settings.marketdata.group_id}-bars", kind=Bar,
        write=cache.apply, counters=Counters(metrics.BARS_IN, metrics.BARS_APPLIED, None, metrics.BARS_LAG))
