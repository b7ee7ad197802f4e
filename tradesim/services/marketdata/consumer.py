"""The consume loop: batched consume(), write-through to the price cache, dead-letter malformed records.

Offsets are committed only after a batch is in Redis, so a crash re-delivers; the cache's (run_id, seq) guard
makes the re-delivery harmless (at-least-once in, exactly-once effect on the cache).
"""

from __future__ import annotations

import logging
import threading
import time

import redis
from confluent_kafka import Consumer, KafkaError, Message, Producer

from tradesim.adapters.kafka.client import consumer as make_consumer
from tradesim.adapters.kafka.client import consumer_lag
from tradesim.adapters.kafka.client import producer as make_producer
from tradesim.adapters.redis.client import connect
from tradesim.adapters.redis.prices import PriceCache
from tradesim.domain.errors import InvalidRecord
from tradesim.domain.events import Tick, decode
from tradesim.services.marketdata import metrics
from tradesim.settings import Settings

log = logging.getLogger("tradesim.marketdata.consumer")


def dead_letter(producer: Producer, topic: str, msg: Message, reason: str) -> None:
    producer.produce(topic, key=msg.key(), value=msg.value(), headers=[
        ("reason", reason.encode()),
        ("source", f"{msg.topic()}/{msg.partition()}/{msg.offset()}".encode()),
        ("service", b"marketdata"),
    ])


class TickConsumer:
    def __init__(self, settings: Settings, stop: threading.Event) -> None:
        self.settings = settings
        self.stop = stop
        self._consumer: Consumer | None = None
        self._dlq: Producer | None = None
        self._cache = PriceCache(connect(settings.redis, timeout_s=2.0))
        self._last_lag = 0.0

    def run(self) -> None:
        s = self.settings
        # Low fetch wait: a quiet feed must still reach clients in milliseconds, not after the 500 ms default.
        self._consumer = make_consumer(s.kafka, s.marketdata.group_id, **{"fetch.wait.max.ms": 10})
        self._dlq = make_producer(s.kafka)
        self._consumer.subscribe([s.topics.market_data])
        log.info("consuming", extra={"topic": s.topics.market_data, "group": s.marketdata.group_id})
        try:
            while not self.stop.is_set():
                # Block for the first record only, then drain what is already fetched: a quiet feed gets
                # millisecond latency, a busy one still gets batches (consume() alone waits out its timeout).
                first = self._consumer.poll(0.1)
                batch = [] if first is None else [first, *self._consumer.consume(s.marketdata.batch_size - 1, 0)]
                if batch:
                    self._handle(batch, self._dlq)
                    self._consumer.commit(asynchronous=True)
                self._dlq.poll(0)
                self._report_lag()
        finally:
            self._dlq.flush(10)
            self._consumer.close()

    def _handle(self, batch: list[Message], dlq: Producer) -> None:
        good: list[tuple[Tick, bytes]] = []
        for msg in batch:
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("consume error", extra={"error": str(err)})
                continue
            metrics.TICKS_IN.inc()
            raw = msg.value() or b""
            try:
                tick = decode(Tick, raw)
            except InvalidRecord as exc:
                metrics.DEAD_LETTERS.inc()
                dead_letter(dlq, self.settings.topics.dead_letter, msg, f"invalid tick: {exc}")
                continue
            good.append((tick, raw))
        if not good:
            return
        backoff = 0.1
        while not self.stop.is_set():
            try:
                applied = self._cache.apply(good, now_ms=int(time.time() * 1000))
                metrics.TICKS_APPLIED.inc(applied)
                metrics.TICKS_STALE.inc(len(good) - applied)
                return
            except redis.RedisError as exc:
                # Redis restarting: keep the batch (offsets are not committed) and retry with a capped backoff.
                metrics.REDIS_ERRORS.inc()
                log.warning("redis write failed, retrying", extra={"error": str(exc), "backoff_s": backoff})
                self.stop.wait(backoff)
                backoff = min(backoff * 2, 2.0)

    def _report_lag(self) -> None:
        now = time.monotonic()
        if now - self._last_lag < 5 or self._consumer is None:
            return
        self._last_lag = now
        lag = consumer_lag(self._consumer)
        if lag is not None:
            metrics.LAG.set(lag)
